"""`Job Changed` → Slack: the job card, drawn from the record and updated in place, and replies in its thread.

The notifier never decides state: the control plane (recorder, EC2 events, watchdog) applies every event to the
job record and says what changed in `Job Changed`; this reads the record as it is now and shows it. The card
changes at most once per job per `card_interval_seconds`: progress inside the window is skipped (the next update
catches up), status changes and the job's end wait for the window.

A job's end is shown in parts, each claimed in the jobs store on its own: the thread reply (result, failure or
cancel), the result chart, the final card. A rate limit is waited out while the invocation has time; a part Slack
still does not take is given back, and the delivery raises, so EventBridge delivers it again and the retry redoes
only what Slack does not have. Anything else is logged, not retried into a storm.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import chart, replies, views
from bot.slack import SLACK_TIMEOUT_SECONDS, load_credentials, retry_after, web_client, weights_link, weights_links
from spotter.config import BotSettings
from spotter.events import Artifact, JobChanged, UnknownEvent, from_eventbridge
from spotter.status import JobStatus
from spotter.store import AnnouncementPart, JobRecord, JobsStore, SlackRef

logger = Logger()
# The template sets the namespace for deployed functions; the local stack runs this handler without it.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Spotter"))

T = TypeVar("T")

# Waiting and the time (STYLE #11: tests swap them to record instead of sleeping long, or to run a fake clock).
SLEEP: Callable[[float], None] = time.sleep
CLOCK: Callable[[], float] = time.time
MIN_WAIT_SECONDS = 0.05  # never spin: at least this long between two looks at the window
# A new best mAP50 goes to the thread once it beats the last one announced by this much, at most every
# `best_announce_interval_seconds` and this many times per job (the card always shows the best).
BEST_ANNOUNCE_STEP = 0.02
BEST_ANNOUNCE_MAX = 10
ANNOUNCED_PHASES = frozenset({"install", "build", "data", "train", "evaluate", "upload"})
# A part of a job's end held longer than this is held by a delivery that died (the function's timeout is 30 s).
END_LEASE_SECONDS = 60.0
# Kept back from the invocation's time: a Slack call started after it could outlast the function.
DEADLINE_MARGIN_SECONDS = SLACK_TIMEOUT_SECONDS + 2


class EndNotShown(RuntimeError):
    """Part of a job's end is not in Slack yet (Slack refused it for now, or another delivery holds it): the
    delivery fails so that it is retried, and the retry shows only those parts."""

    def __init__(self, job_id: str, parts: list[AnnouncementPart]) -> None:
        super().__init__(f"job {job_id}: the end's {', '.join(parts)} not shown yet")
        self.job_id, self.parts = job_id, parts


class CardWindowTaken(RuntimeError):
    """The card's window did not open before the invocation's deadline (other updates kept taking it)."""


def transient(error: Exception) -> bool:
    """Worth another delivery: Slack unreachable, overloaded or failing, not refusing (a deleted card, a channel
    the bot left, a missing scope), which no retry would change."""
    return not isinstance(error, SlackApiError) or error.response.status_code in (429, 500, 502, 503, 504)


def announced_phase(ev: JobChanged) -> str | None:
    """The phase whose start the change first sees, if the thread hears of it."""
    return ev.phase if ev.phase_changed and ev.phase in ANNOUNCED_PHASES else None


def end_parts(rec: JobRecord) -> tuple[AnnouncementPart, ...]:
    """What showing the job's end takes: the reply, the chart of a job that succeeded, the final card."""
    return ("reply", "chart", "card") if rec.status is JobStatus.SUCCEEDED else ("reply", "card")


def ending(rec: JobRecord) -> bool:
    """The job has ended and some part of its end is not in Slack yet."""
    return rec.status.is_terminal() and not all(rec.announced_part(p) for p in end_parts(rec))


class Notifier:
    """Shows what the control plane did to a job: reads the record, replies in the thread, updates the card."""

    def __init__(self, settings: BotSettings, client: WebClient, store: JobsStore | None = None) -> None:
        self.settings = settings
        self.client = client
        self.store = store or JobsStore(settings.jobs_table, record_days=settings.job_record_days)
        self.interval = settings.card_interval_seconds

    @classmethod
    def from_env(cls) -> Notifier:
        settings = BotSettings.from_env()
        creds = load_credentials(settings)
        return cls(settings, web_client(creds.bot_token.get_secret_value(), settings))

    def handle(self, ev: JobChanged, *, deadline: float) -> None:
        """Show the change; Slack calls are started no later than `deadline` (a CLOCK time)."""
        rec = self.store.find(ev.job_id)
        if rec is None:
            return self._ignore("a change to a job that does not exist")
        end = ending(rec)
        # A phase started before the end and delivered after it.
        late_phase = announced_phase(ev) if rec.status.is_terminal() and not ev.status_changed else None
        if rec.status.is_terminal() and not end and not ev.note and late_phase is None:
            return self._ignore("the job's end was announced already")
        metrics.add_metric(name="EventsHandled", unit=MetricUnit.Count, value=1)
        if rec.slack is None:
            logger.info("the job has no card to show this on")
            return None
        if late_phase is not None:
            # Said in the thread, the end left to its own delivery (a retry of this one would say the phase twice).
            if self.store.claim_phase_reply(rec.job_id, ev.attempt, late_phase):
                self._post_quietly(rec.slack, replies.phase_reply(rec, late_phase, cached=ev.cached))
            return None
        if end:
            # The end on the channel's board too, where the recorder's write of it may have failed: this delivery
            # is retried until the end is shown.
            self.store.board.show(rec, rec.version)
            return self._show_end(rec, rec.slack, ev.note, deadline)
        try:
            for reply in self._replies(ev, rec):
                self._post_reply(rec.slack, reply)
            if not rec.status.is_terminal():
                self._update_card(rec.job_id, rec.slack, urgent=ev.status_changed)
        except (SlackClientError, OSError) as e:
            metrics.add_metric(name="SlackFailures", unit=MetricUnit.Count, value=1)
            logger.warning("Slack call failed; the next update catches up", error=str(e))
        return None

    def _post_quietly(self, ref: SlackRef, message: views.Message) -> None:
        """A milestone in the thread; a failed post is logged, not retried (a retry could say it twice)."""
        try:
            self._post_reply(ref, message)
        except (SlackClientError, OSError) as e:
            metrics.add_metric(name="SlackFailures", unit=MetricUnit.Count, value=1)
            logger.warning("Slack call failed; the milestone is not in the thread", error=str(e))

    def _ignore(self, why: str) -> None:
        metrics.add_metric(name="EventsIgnored", unit=MetricUnit.Count, value=1)
        logger.info(f"ignored: {why}")

    def _replies(self, ev: JobChanged, rec: JobRecord) -> list[views.Message]:
        """The thread replies a change deserves: the control plane's note, a new phase, a new best mAP50."""
        out: list[views.Message] = []
        if ev.note:
            # A note on an interrupted job says how it resumes: the person who started it wants to know.
            out.append(replies.note_reply(rec, ev.note, notify_requester=ev.status == JobStatus.INTERRUPTED.value))
        if (phase := announced_phase(ev)) and self.store.claim_phase_reply(rec.job_id, ev.attempt, phase):
            out.append(replies.phase_reply(rec, phase, cached=ev.cached))
        best = rec.best.map50 if rec.best else None
        if (
            ev.new_best
            and best is not None
            and self.store.claim_best_announcement(
                rec.job_id,
                best,
                BEST_ANNOUNCE_STEP,
                interval=self.settings.best_announce_interval_seconds,
                limit=BEST_ANNOUNCE_MAX,
                now=CLOCK(),
            )
        ):
            out.append(replies.best_reply(rec))
        return out

    def _slack(self, call: Callable[[], T], deadline: float | None) -> T:
        """One Slack call. With a deadline, a rate limit is waited out (as Retry-After asks) while the wait ends
        before the deadline; past it, or without one, the 429 is raised."""
        while True:
            try:
                return call()
            except SlackApiError as e:
                wait = retry_after(e.response.headers) if e.response.status_code == 429 else None
                if deadline is None or wait is None or CLOCK() + wait > deadline:
                    raise
                metrics.add_metric(name="RateLimitWaits", unit=MetricUnit.Count, value=1)
                SLEEP(max(MIN_WAIT_SECONDS, wait))

    def _post_reply(self, ref: SlackRef, message: views.Message, deadline: float | None = None) -> None:
        self._slack(
            lambda: self.client.chat_postMessage(channel=ref.channel, thread_ts=ref.thread_ts, **message), deadline
        )

    def _claim_card(self, job_id: str, *, wait: bool, deadline: float | None = None) -> bool:
        """Take the card's window; progress skips a closed window, a status change or the end waits for it."""
        # The window opens `interval` after the previous update's call ended, which was a moment after its claim.
        until = CLOCK() + 2 * self.interval
        if deadline is not None:
            until = min(until, deadline)
        while not self.store.claim_card_slot(job_id, self.interval, now=(now := CLOCK())):
            if not wait or now >= until:
                metrics.add_metric(name="CardUpdatesSkipped", unit=MetricUnit.Count, value=1)
                return False
            opens = self.store.get(job_id).card_updated_at + self.interval
            SLEEP(max(MIN_WAIT_SECONDS, min(opens, until, now + self.interval) - now))
        return True

    def _update_card(self, job_id: str, ref: SlackRef, *, urgent: bool) -> None:
        if self._claim_card(job_id, wait=urgent):
            # Drawn from the record as it is now: an event applied meanwhile (even the job's end) is not drawn over.
            self._draw_card(self.store.get(job_id), ref)

    # -- the job's end ------------------------------------------------------------------------------------------

    def _show_end(self, rec: JobRecord, ref: SlackRef, note: str | None, deadline: float) -> None:
        """The result, cancel or failure in the thread, the chart after a result, then the final card (in the
        card's next window). Raises EndNotShown when a part has to wait for another delivery."""
        links = weights_links(rec, self.settings)
        undone: list[AnnouncementPart] = []
        message = self._end_reply(rec, note, links)
        replied = self._end_part(rec, "reply", lambda: self._post_reply(ref, message, deadline), undone)
        if "chart" in end_parts(rec):
            if replied:
                self._end_part(rec, "chart", lambda: self._upload_chart(rec, ref, deadline), undone)
            else:
                undone.append("chart")  # it follows the result in the thread
        url = links[0][1] if links else None
        self._end_part(rec, "card", lambda: self._final_card(rec.job_id, ref, url, deadline), undone)
        if undone:
            metrics.add_metric(name="EndsRetried", unit=MetricUnit.Count, value=1)
            logger.warning("part of the job's end is not in Slack yet: the delivery is retried", parts=undone)
            raise EndNotShown(rec.job_id, undone)

    def _end_reply(self, rec: JobRecord, note: str | None, links: list[tuple[Artifact, str]]) -> views.Message:
        now = CLOCK()
        if rec.status is JobStatus.SUCCEEDED:
            return replies.result_reply(rec, now=now, links=links, expires_in=self.settings.presign_seconds)
        if rec.status is JobStatus.CANCELLED:
            return replies.cancelled_reply(rec, now=now, weights=links[0] if links else None, note=note)
        return replies.failure_reply(rec, now=now, note=note)

    def _end_part(
        self, rec: JobRecord, part: AnnouncementPart, show: Callable[[], None], undone: list[AnnouncementPart]
    ) -> bool:
        """Show one part of the end unless Slack has it already; True once Slack has it (now or before)."""
        if rec.announced_part(part):
            return True
        claimed = self.store.claim_announcement(rec.job_id, rec.status, part, lease=END_LEASE_SECONDS, now=CLOCK())
        if claimed is None:
            if self.store.get(rec.job_id).announced_part(part):
                return True
            undone.append(part)  # another delivery holds it: the retry finds it shown, or takes over a dead hold
            return False
        try:
            show()
        except (SlackClientError, OSError, CardWindowTaken) as e:
            metrics.add_metric(name="SlackFailures", unit=MetricUnit.Count, value=1)
            if isinstance(e, TimeoutError) and part != "card":
                # The request reached Slack, which may have made the post: a second one could show twice.
                logger.warning("Slack did not answer in time; not posted again", part=part, error=str(e))
            elif transient(e):
                self.store.release_announcement(rec.job_id, part, claimed)
                logger.warning("Slack did not take it; given back for the retry", part=part, error=str(e))
                undone.append(part)
                return False
            else:
                logger.error("Slack refused it; a retry would not change that", part=part, error=str(e))
        if not self.store.announcement_shown(rec.job_id, part, claimed):
            logger.warning("held past its lease: another delivery took this part over", part=part)
        return True

    def _upload_chart(self, rec: JobRecord, ref: SlackRef, deadline: float) -> None:
        """The loss and mAP chart under the result; a job with nothing to draw gets none."""
        try:
            png = chart.render(rec)
        except Exception:
            # A chart that cannot be drawn must not keep the rest of the job's end from the channel.
            logger.exception("the result chart could not be drawn")
            return
        if png is None:
            return
        what = f"loss and mAP50 over the {rec.spec.unit}s of `{rec.job_id}`"
        self._slack(
            lambda: self.client.files_upload_v2(
                channel=ref.channel,
                thread_ts=ref.thread_ts,
                content=png,
                filename=f"{rec.job_id}-chart.png",
                title=f"{views.title(rec)} · {rec.job_id} · training curves",
                alt_txt=f"Training {what.replace('`', '')}",
                initial_comment=f":chart_with_upwards_trend: Training {what}",
            ),
            deadline,
        )

    def _final_card(self, job_id: str, ref: SlackRef, weights_url: str | None, deadline: float) -> None:
        if not self._claim_card(job_id, wait=True, deadline=deadline):
            raise CardWindowTaken(f"job {job_id}: the card's window did not open in time")
        self._draw_card(self.store.get(job_id), ref, weights_url, deadline)

    def _draw_card(
        self, rec: JobRecord, ref: SlackRef, weights_url: str | None = None, deadline: float | None = None
    ) -> None:
        if weights_url is None and rec.status.is_terminal():
            link = weights_link(rec, self.settings)
            weights_url = link[1] if link else None
        card = views.job_card(rec, now=CLOCK(), weights_url=weights_url)
        self._slack(lambda: self.client.chat_update(channel=ref.channel, ts=ref.card_ts, **card), deadline)
        # Measured from the call's end, Slack sees two updates of a card at least `interval` apart.
        self.store.card_drawn(rec.job_id, CLOCK())


_notifier: Notifier | None = None


def _cold_start() -> Notifier:
    """Settings, the secret and the Slack client are made once per process, here."""
    global _notifier
    _notifier = Notifier.from_env()
    return _notifier


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    notifier = _notifier or _cold_start()
    try:
        ev = from_eventbridge(event)
    except (UnknownEvent, ValidationError) as e:
        # A retry would fail the same way: drop it, loudly.
        logger.error("not a Spotter event", detail_type=event.get("detail-type"), error=str(e))
        metrics.add_metric(name="EventsIgnored", unit=MetricUnit.Count, value=1)
        return
    if not isinstance(ev, JobChanged):
        # The rule delivers `Job Changed` only; anything else is state the control plane has not decided yet.
        logger.error("not a Job Changed event: the notifier shows decided state only", detail_type=ev.detail_type)
        metrics.add_metric(name="EventsIgnored", unit=MetricUnit.Count, value=1)
        return
    logger.append_keys(job_id=ev.job_id, detail_type=ev.detail_type)
    deadline = CLOCK() + context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS
    notifier.handle(ev, deadline=deadline)
