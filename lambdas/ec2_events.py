"""EC2's own events about our instances → the job: a spot interruption warning and a rebalance recommendation are
said in the thread (the agent acts on both itself, from the instance metadata); an instance
that shuts down or terminates under a job still on it (the agent said nothing: a reclaim before the agent could act,
a host failure) interrupts that attempt, and the job is relaunched from its last synced checkpoint or from scratch.

The events come from the default bus (source aws.ec2); the instance's `spotter:job` tag names the job.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lambdas.recovery import Recovery, vanished
from spotter import lifecycle
from spotter.aws import client
from spotter.config import ControlSettings
from spotter.events import Bus
from spotter.lifecycle import Outcome
from spotter.store import JobRecord, JobsStore

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Spotter"))
copy_config_to_registered_loggers(source_logger=logger, include={"lambdas"})

TAG_JOB = "spotter:job"
SPOT_WARNING = "EC2 Spot Instance Interruption Warning"
STATE_CHANGE = "EC2 Instance State-change Notification"
REBALANCE = "EC2 Instance Rebalance Recommendation"
Result = Literal["interrupted", "warned", "ignored"]


class NotSettled(RuntimeError):
    """Too early to call an instance vanished: its agent's last events may still be on the bus. Retried."""


class Ec2Event(BaseModel):
    """The part of an aws.ec2 event this handler reads (EventBridge's envelope, EC2's detail)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    detail_type: Literal[
        "EC2 Spot Instance Interruption Warning",
        "EC2 Instance State-change Notification",
        "EC2 Instance Rebalance Recommendation",
    ] = Field(alias="detail-type")
    source: Literal["aws.ec2"]
    detail: dict[str, Any]
    time: datetime | None = None

    @property
    def instance_id(self) -> str:
        return str(self.detail["instance-id"])

    @property
    def state(self) -> str:
        """The new state of a state change; `shutting-down` for a spot warning (it is coming)."""
        return str(self.detail.get("state") or "shutting-down")


@dataclass
class Ec2Events:
    settings: ControlSettings
    store: JobsStore
    bus: Bus
    ec2: Any
    s3: Any = None

    @classmethod
    def from_settings(cls, settings: ControlSettings) -> Ec2Events:
        store, bus = JobsStore(settings.jobs_table, record_days=settings.job_record_days), Bus(settings.bus_name)
        return cls(settings, store, bus, client("ec2", settings.region), client("s3", settings.region))

    def job_of(self, instance_id: str) -> str | None:
        """The job an instance runs, from its tag (None for an instance that is not ours)."""
        try:
            found = self.ec2.describe_tags(
                Filters=[{"Name": "resource-id", "Values": [instance_id]}, {"Name": "key", "Values": [TAG_JOB]}]
            )["Tags"]
        except ClientError as e:
            logger.warning("cannot read the instance's tags", instance_id=instance_id, error=str(e))
            raise
        return str(found[0]["Value"]) if found else None

    def _running_on(self, job_id: str, instance_id: str) -> JobRecord | None:
        """The job, if it is still going and its current attempt runs on this instance (a notice is for it)."""
        rec = self.store.find(job_id)
        att = rec.current_attempt if rec else None
        if rec is None or rec.status.is_terminal() or att is None or att.instance_id != instance_id:
            return None
        return rec

    def handle(self, ev: Ec2Event) -> Result:
        job_id = self.job_of(ev.instance_id)
        if job_id is None:
            return "ignored"
        logger.append_keys(job_id=job_id, instance_id=ev.instance_id)
        recovery = Recovery(self.settings, self.store, self.bus, self.s3)
        if ev.detail_type == SPOT_WARNING:
            rec = self._running_on(job_id, ev.instance_id)
            if rec is None:
                return "ignored"
            action = ev.detail.get("instance-action", "terminate")
            note = (
                f"EC2 will reclaim spot instance `{ev.instance_id}` in 2 minutes ({action}): the agent is saving "
                "a checkpoint, and the job resumes from it on a new instance."
            )
            lifecycle.announce(self.bus, Outcome(rec, note=note), "Spot Interruption Warning")
            return "warned"
        if ev.detail_type == REBALANCE:
            rec = self._running_on(job_id, ev.instance_id)
            if rec is None:
                return "ignored"
            if not self.store.claim_instance_notice(job_id, rec.attempt, "rebalance"):
                return "ignored"  # a redelivery: the thread has heard it
            note = (
                f"EC2 recommends moving off spot instance `{ev.instance_id}`: its capacity is at elevated risk of "
                "reclaim. The agent syncs a checkpoint now, so an interruption would cost little."
            )
            lifecycle.announce(self.bus, Outcome(rec, note=note), "Rebalance Recommendation")
            return "warned"
        rec = self.store.find(job_id)
        if not vanished(rec, ev.instance_id, ev.state):
            return "ignored"
        age = time.time() - (ev.time.timestamp() if ev.time else time.time())
        if age < self.settings.vanish_settle_seconds:
            # An agent that finished, failed or saw the notice powers off right after its last events: they may
            # be delivered after this one. The function's retry decides again once they would have arrived.
            raise NotSettled(
                f"{ev.instance_id} is {ev.state}; deciding once its last events had {self.settings.vanish_settle_seconds:g} s"
            )
        if recovery.instance_gone(job_id, ev.instance_id, ev.state, "Instance Vanished"):
            return "interrupted"
        return "ignored"


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        ev = Ec2Event.model_validate(event)
    except ValidationError as e:
        logger.error("not an EC2 event this function takes", detail_type=event.get("detail-type"), error=str(e))
        metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=1)
        return {"result": "rejected"}
    result = Ec2Events.from_settings(ControlSettings.from_env()).handle(ev)
    metrics.add_metric(name=f"Ec2Events{result.capitalize()}", unit=MetricUnit.Count, value=1)
    logger.info(f"ec2 event {result}", extra={"detail_type": ev.detail_type, "state": ev.state})
    return {"result": result}
