"""`Job Changed` → Slack: the job card, drawn from the record and updated in place, and replies in its thread.

The notifier never decides state: the control plane (recorder, EC2 events, watchdog) applies every event to the
job record and says what changed in `Job Changed`; this reads the record as it is now and shows it. The card
changes at most once per job per `card_interval_seconds`: progress inside the window is skipped (the next update
catches up), status changes and the job's end wait for the window. EventBridge retries an invocation that raises,
so only a job's end raises when Slack fails; anything else is logged, not retried into a storm.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import views
from bot.slack import load_credentials, web_client, weights_link
from spotter.config import BotSettings
from spotter.events import JobChanged, UnknownEvent, from_eventbridge
from spotter.status import JobStatus
from spotter.store import JobRecord, JobsStore, SlackRef

logger = Logger()
# The template sets the namespace for deployed functions; the local stack runs this handler without it.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Spotter"))

# Waiting for the card's window (STYLE #11: tests swap it for one that records instead of sleeping long).
SLEEP: Callable[[float], None] = time.sleep
MIN_WAIT_SECONDS = 0.05  # never spin: at least this long between two looks at the window
# A new best mAP50 goes to the thread once it beats the last one announced by this much (the card always shows it).
BEST_ANNOUNCE_STEP = 0.02
ANNOUNCED_PHASES = frozenset({"install", "build", "data", "train", "evaluate", "upload"})


def transient(error: Exception) -> bool:
    """Worth another delivery: Slack unreachable, overloaded or failing, not refusing (a deleted card, a channel
    the bot left), which no retry would change."""
    return not isinstance(error, SlackApiError) or error.response.status_code in (429, 500, 502, 503, 504)


def ending(rec: JobRecord) -> bool:
    """The job has ended and the channel has not been told yet."""
    return rec.status.is_terminal() and rec.announced is not rec.status


class Notifier:
    """Shows what the control plane did to a job: reads the record, replies in the thread, updates the card."""

    def __init__(self, settings: BotSettings, client: WebClient, store: JobsStore | None = None) -> None:
        self.settings = settings
        self.client = client
        self.store = store or JobsStore(settings.jobs_table)
        self.interval = settings.card_interval_seconds

    @classmethod
    def from_env(cls) -> Notifier:
        settings = BotSettings.from_env()
        creds = load_credentials(settings)
        return cls(settings, web_client(creds.bot_token.get_secret_value(), settings))

    def handle(self, ev: JobChanged) -> None:
        rec = self.store.find(ev.job_id)
        if rec is None:
            return self._ignore("a change to a job that does not exist")
        end = ending(rec)
        if rec.status.is_terminal() and not end and not ev.note:
            return self._ignore("the job's end was announced already")
        metrics.add_metric(name="EventsHandled", unit=MetricUnit.Count, value=1)
        if rec.slack is None:
            logger.info("the job has no card to show this on")
            return None
        if end and not self.store.claim_announcement(rec.job_id, rec.status):
            return self._ignore("another delivery is announcing the end")
        try:
            if end:
                self._show_end(rec, rec.slack, ev.note)
            else:
                for reply in self._replies(ev, rec):
                    self._post_reply(rec.slack, reply)
                if not rec.status.is_terminal():
                    self._update_card(rec.job_id, rec.slack, urgent=ev.status_changed)
        except (SlackClientError, OSError) as e:
            metrics.add_metric(name="SlackFailures", unit=MetricUnit.Count, value=1)
            if end and transient(e):
                self.store.release_announcement(rec.job_id)
                raise  # EventBridge retries the delivery: a job's end must reach the channel
            logger.warning("Slack call failed; the next update catches up", error=str(e))
        return None

    def _ignore(self, why: str) -> None:
        metrics.add_metric(name="EventsIgnored", unit=MetricUnit.Count, value=1)
        logger.info(f"ignored: {why}")

    def _replies(self, ev: JobChanged, rec: JobRecord) -> list[views.Message]:
        """The thread replies a change deserves: the control plane's note, a new phase, a new best mAP50."""
        out: list[views.Message] = []
        if ev.note:
            # A note on an interrupted job says how it resumes: the person who started it wants to know.
            out.append(views.note_reply(rec, ev.note, notify_requester=ev.status == JobStatus.INTERRUPTED.value))
        if ev.phase_changed and ev.phase in ANNOUNCED_PHASES:
            out.append(views.phase_reply(rec, ev.phase, cached=ev.cached))
        best = rec.best.map50 if rec.best else None
        if (
            ev.new_best
            and best is not None
            and self.store.claim_best_announcement(rec.job_id, best, BEST_ANNOUNCE_STEP)
        ):
            out.append(views.best_reply(rec))
        return out

    def _post_reply(self, ref: SlackRef, message: views.Message) -> None:
        self.client.chat_postMessage(channel=ref.channel, thread_ts=ref.thread_ts, **message)

    def _claim_card(self, job_id: str, *, wait: bool) -> bool:
        """Take the card's window; progress skips a closed window, a status change or the end waits for it."""
        # The window opens `interval` after the previous update's call ended, which was a moment after its claim.
        deadline = time.time() + 2 * self.interval
        while not self.store.claim_card_slot(job_id, self.interval, now=(now := time.time())):
            if not wait or now >= deadline:
                metrics.add_metric(name="CardUpdatesSkipped", unit=MetricUnit.Count, value=1)
                return False
            opens = self.store.get(job_id).card_updated_at + self.interval
            SLEEP(max(MIN_WAIT_SECONDS, min(opens, deadline, now + self.interval) - now))
        return True

    def _update_card(self, job_id: str, ref: SlackRef, *, urgent: bool) -> None:
        if self._claim_card(job_id, wait=urgent):
            # Drawn from the record as it is now: an event applied meanwhile (even the job's end) is not drawn over.
            self._draw_card(self.store.get(job_id), ref)

    def _show_end(self, rec: JobRecord, ref: SlackRef, note: str | None) -> None:
        """The result, cancel or failure in the thread, then the final card (in the card's next window)."""
        link = weights_link(rec, self.settings)
        url = link[1] if link else None
        now = time.time()
        if rec.status is JobStatus.SUCCEEDED:
            self._post_reply(ref, views.result_reply(rec, now=now, weights_url=url))
        elif rec.status is JobStatus.CANCELLED:
            self._post_reply(ref, views.cancelled_reply(rec, now=now, weights=link, note=note))
        else:
            self._post_reply(ref, views.failure_reply(rec, now=now, note=note))
        if self._claim_card(rec.job_id, wait=True):
            self._draw_card(self.store.get(rec.job_id), ref, weights_url=url)

    def _draw_card(self, rec: JobRecord, ref: SlackRef, weights_url: str | None = None) -> None:
        if weights_url is None and rec.status.is_terminal():
            link = weights_link(rec, self.settings)
            weights_url = link[1] if link else None
        card = views.job_card(rec, now=time.time(), weights_url=weights_url)
        self.client.chat_update(channel=ref.channel, ts=ref.card_ts, **card)
        # Measured from the call's end, Slack sees two updates of a card at least `interval` apart.
        self.store.card_drawn(rec.job_id, time.time())


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
    notifier.handle(ev)
