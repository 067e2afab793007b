"""The one writer of job state: bus events from the agent, the launcher and the Slack app → the job record.

Each event goes through the state machine (spotter.lifecycle); what changed goes back on the bus as `Job Changed`
for the notifier, which renders the card from the record and never decides state. It needs no Slack credential:
a Slack outage or a bad token never stops a job record from advancing.

An interruption the agent reported is followed by the recovery step (relaunch, backoff or give up); a cancel request
is passed to the job's agent through its control object in S3.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from lambdas.recovery import Recovery
from spotter import layout, lifecycle
from spotter.aws import client
from spotter.config import ControlSettings
from spotter.events import (
    Bus,
    JobCancelled,
    JobCancelRequested,
    JobError,
    JobEvent,
    JobFinished,
    JobInterrupted,
    JobPhase,
    UnknownEvent,
    from_eventbridge,
)
from spotter.lifecycle import Outcome
from spotter.models import ModelRegistry
from spotter.status import JobStatus
from spotter.store import JobRecord, JobsStore, Promotion

logger = Logger()
# Flushing needs a namespace, also where the template's POWERTOOLS_* variables are not set (the local stack).
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Spotter"))
copy_config_to_registered_loggers(source_logger=logger, include={"lambdas"})

ENDS = (JobFinished, JobError, JobCancelled, JobInterrupted)


def recorded_end(ev: JobEvent, rec: JobRecord | None) -> bool:
    """`ev` ends an attempt and the record already shows it: a redelivery after the notifier was not told."""
    if rec is None or not isinstance(ev, ENDS) or rec.attempt != ev.attempt:
        return False
    expected = {
        JobFinished: JobStatus.SUCCEEDED,
        JobError: JobStatus.FAILED,
        JobCancelled: JobStatus.CANCELLED,
        JobInterrupted: JobStatus.INTERRUPTED,
    }[type(ev)]
    return rec.status is expected


@dataclass
class Recorder:
    settings: ControlSettings
    store: JobsStore
    bus: Bus
    s3: Any

    @classmethod
    def from_settings(cls, settings: ControlSettings) -> Recorder:
        store, bus = JobsStore(settings.jobs_table, record_days=settings.job_record_days), Bus(settings.bus_name)
        return cls(settings, store, bus, client("s3", settings.region))

    def record(self, ev: JobEvent) -> Outcome:
        if isinstance(ev, JobCancelRequested):
            self._tell_agent(ev)
        promotion = self._promotion(ev) if isinstance(ev, JobFinished) else None
        outcome = lifecycle.apply(self.store, ev, promotion=promotion)
        if not outcome.changed and recorded_end(ev, outcome.record):
            # The end was recorded by an earlier delivery that could not tell the notifier: tell it now.
            outcome = Outcome(outcome.record, changed=True, status_changed=True)
        phase = ev.phase if isinstance(ev, JobPhase) else None
        cached = isinstance(ev, JobPhase) and ev.state == "cached"
        lifecycle.announce(self.bus, outcome, ev.detail_type, phase=phase, cached=cached)
        rec = outcome.record
        if isinstance(ev, JobInterrupted) and rec is not None and rec.status is JobStatus.INTERRUPTED:
            why = f"EC2 reclaimed the spot instance (notice: {ev.action})."
            Recovery(self.settings, self.store, self.bus).after_interruption(ev.job_id, why, ev.detail_type)
        return outcome

    def _promotion(self, ev: JobFinished) -> Promotion | None:
        """A scheduled run that finished: its weights replace the promoted ones if they score better."""
        rec = self.store.find(ev.job_id)
        if rec is None or rec.spec.schedule_id is None or rec.attempt != ev.attempt or rec.status.is_terminal():
            return None
        if lifecycle.foreign_outputs(rec, ev):
            return None  # not the attempt's weights: lifecycle.apply refuses the event
        final = ev.metrics
        map50 = final.map50 if final and final.map50 is not None else (rec.best.map50 if rec.best else None)
        map50_95 = final.map50_95 if final and final.map50 is not None else (rec.best.map50_95 if rec.best else None)
        promotion = ModelRegistry(self.s3, self.settings.bucket).consider(rec, ev.artifacts, map50, map50_95, ev.at)
        logger.info("promotion decided", promoted=promotion.promoted, map50=map50, previous=promotion.previous_map50)
        return promotion

    def _tell_agent(self, ev: JobCancelRequested) -> None:
        """The agent polls its control object: a cancel reaches it there, whatever state the record is in."""
        body = json.dumps({"action": "cancel", "by": ev.by, "at": ev.at}).encode()
        self.s3.put_object(
            Bucket=self.settings.bucket, Key=layout.control(ev.job_id), Body=body, ContentType="application/json"
        )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        ev = from_eventbridge(event)
    except (UnknownEvent, ValidationError) as e:
        # A retry would fail the same way: drop it, loudly.
        logger.error("not a Spotter event", detail_type=event.get("detail-type"), error=str(e))
        metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=1)
        return {"recorded": False}
    logger.append_keys(job_id=ev.job_id, detail_type=ev.detail_type, attempt=ev.attempt)
    # Settings are read per invocation: cheap, and the local stack points one process at fresh stacks.
    outcome = Recorder.from_settings(ControlSettings.from_env()).record(ev)
    if outcome.refused:
        logger.warning("event refused", why=outcome.refused)
        metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=1)
        return {"recorded": False, "refused": outcome.refused}
    metrics.add_metric(name="EventsRecorded" if outcome.changed else "EventsUnchanged", unit=MetricUnit.Count, value=1)
    rec = outcome.record
    return {"recorded": outcome.changed, "status": rec.status.value if rec else None}
