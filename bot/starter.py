"""Starting a job: the one path for `/train` and for a schedule's run — caps, the record, the card, `Job Queued`.

The request's trigger (a Slack request's team and trigger id, a schedule's run time) names the job: a retried or
replayed request finds the job it made and starts nothing. A job whose card or `Job Queued` could not be made is
marked failed, never left QUEUED with nobody to launch it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aws_lambda_powertools import Logger
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import rules, views
from spotter import cost
from spotter.config import BotSettings
from spotter.events import Bus, JobQueued
from spotter.spec import JobSpec
from spotter.store import DuplicateJob, Failure, JobRecord, JobsStore, SlackRef

logger = Logger()


@dataclass(frozen=True)
class Started:
    """What came of a start: the job (new, or the one this trigger made before), or the refusal of a cap."""

    record: JobRecord | None = None
    refusal: views.Message | None = None
    existing: bool = False


class StartFailed(Exception):
    """The job was recorded but could not be announced; it is marked failed (`job_id` names it)."""

    def __init__(self, job_id: str, cause: Exception) -> None:
        super().__init__(f"job {job_id} could not be started: {type(cause).__name__}")
        self.job_id = job_id
        self.cause = cause


class Starter:
    def __init__(self, settings: BotSettings, store: JobsStore | None = None, bus: Bus | None = None) -> None:
        self.settings = settings
        self.store = store or JobsStore(settings.jobs_table, record_days=settings.job_record_days)
        self.bus = bus or Bus(settings.bus_name)

    def start(
        self, job_spec: JobSpec, trigger: str, client: WebClient, *, describe: Callable[[Exception], str] | None = None
    ) -> Started:
        """Record the job, post its card, put `Job Queued`. Raises StartFailed once the job is recorded and failed."""
        existing = self.store.find(job_spec.job_id)
        if existing is not None and existing.trigger == trigger:
            logger.info("replayed request: the job exists, nothing more to do", job_id=job_spec.job_id)
            return Started(existing, existing=True)
        refusal = self.over_cap(job_spec.job_id, job_spec.channel)
        if refusal is not None:
            return Started(refusal=refusal)
        try:
            rec = self.store.create(job_spec, trigger=trigger)
        except DuplicateJob as e:
            logger.info("replayed request: the job exists, nothing more to do", job_id=e.existing.job_id)
            return Started(e.existing, existing=True)
        try:
            return Started(self._announce(rec, client))
        except Exception as e:
            logger.exception("could not announce the job", job_id=rec.job_id)
            self._fail(rec.job_id, e, client, describe)
            raise StartFailed(rec.job_id, e) from e

    def over_cap(self, job_id: str, channel: str) -> views.Message | None:
        """The refusal of a job that would go over a cap (the launcher checks again before it asks EC2)."""
        now = time.time()
        active = self.store.list_active()
        spent = cost.spend_since(self.store.list_since(cost.day_start(now)), now)
        cap = rules.cap_reached(
            len(active),
            spent,
            max_instances=self.settings.max_concurrent_instances,
            max_daily_usd=self.settings.max_daily_spend_usd,
        )
        if cap is None:
            return None
        logger.info("refused: over a cap", job_id=job_id, cap=cap.cap, current=cap.current, limit=cap.limit)
        return views.cap_message(job_id, cap, [r.job_id for r in active if r.channel == channel])

    def _announce(self, rec: JobRecord, client: WebClient) -> JobRecord:
        card = client.chat_postMessage(channel=rec.channel, **views.job_card(rec, now=time.time()))
        ref = SlackRef(channel=str(card["channel"]), card_ts=str(card["ts"]), thread_ts=str(card["ts"]))
        rec = self.store.set_slack(rec.job_id, ref) or rec
        self.bus.put(JobQueued(job_id=rec.job_id))
        logger.info("job queued", job_id=rec.job_id, channel=ref.channel)
        return rec

    def _fail(
        self, job_id: str, error: Exception, client: WebClient, describe: Callable[[Exception], str] | None
    ) -> None:
        """No job stays QUEUED without `Job Queued` on the bus: mark it failed, and say so on its card if it has one."""
        kind = str(error.response.get("error")) if isinstance(error, SlackApiError) else type(error).__name__
        failure = Failure(
            phase="queue", kind=kind, message=describe(error) if describe else f"The job could not be queued ({kind})."
        )
        try:
            rec = self.store.mark_failed(job_id, failure)
            if rec.slack is not None:
                client.chat_update(
                    channel=rec.slack.channel, ts=rec.slack.card_ts, **views.job_card(rec, now=time.time())
                )
        except Exception:
            logger.exception("could not record the failure", job_id=job_id)
