"""The watchdog (every 5 minutes): nothing of ours runs without a live job, and no job waits forever.

- an instance tagged as ours whose job has ended, is unknown, or has moved to a later attempt is terminated;
- a job on a box whose heartbeat is stale, or that outlived its `max_hours`, fails and its instance is terminated;
- a job stuck in QUEUED or LAUNCHING fails (and whatever it launched is terminated);
- a cancel the agent did not carry out in time is carried out here: instance terminated, job CANCELLED;
- an INTERRUPTED job whose backoff has passed (or whose relaunch was lost) is relaunched;
- a job whose instance EC2 reports gone, with no word from the agent, is recovered as the EC2 events handler would.

`decide` is a pure function of the jobs, their instances and the time; `Watchdog` gathers those and carries the
actions out, each written to the job record (notes, failure) and said in the thread. The dead-man switch on the box
(`shutdown +max_hours`) stays as the last line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from lambdas.recovery import GONE_STATES, ON_A_BOX, Recovery
from spotter import lifecycle
from spotter.aws import client
from spotter.config import ControlSettings
from spotter.events import Bus
from spotter.lifecycle import Outcome
from spotter.status import JobStatus
from spotter.store import Failure, JobRecord, JobsStore, TransitionError

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Spotter"))
copy_config_to_registered_loggers(source_logger=logger, include={"lambdas"})

TAG_APP, APP, TAG_JOB, TAG_ATTEMPT = "spotter:app", "spotter", "spotter:job", "spotter:attempt"
LIVE_STATES = frozenset({"pending", "running", "stopping", "stopped"})
# An ended job's agent uploads its last logs and powers off by itself: give it this long before terminating.
ENDED_GRACE_SECONDS = 120.0
# Past max_hours the box's own dead-man switch should have fired; this much later the watchdog acts.
MAX_HOURS_GRACE_SECONDS = 600.0


@dataclass(frozen=True)
class Instance:
    instance_id: str
    state: str
    job_id: str | None
    attempt: int | None
    launched_at: float | None = None

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


@dataclass(frozen=True)
class Terminate:
    instance_ids: tuple[str, ...]
    job_id: str | None
    reason: str


@dataclass(frozen=True)
class Fail:
    job_id: str
    attempt: int
    kind: str
    message: str
    terminate: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cancel:
    job_id: str
    by: str
    message: str
    terminate: tuple[str, ...] = ()


@dataclass(frozen=True)
class Relaunch:
    job_id: str
    attempt: int  # the interrupted attempt


@dataclass(frozen=True)
class Vanished:
    job_id: str
    instance_id: str
    state: str


Action = Terminate | Fail | Cancel | Relaunch | Vanished


@dataclass
class Pass:
    """What one pass decided, for its log line and metrics."""

    actions: list[Action] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.actions:
            out[type(a).__name__] = out.get(type(a).__name__, 0) + 1
        return out


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _since(rec: JobRecord) -> float:
    """When the current attempt last showed life: its heartbeat, or its start."""
    att = rec.current_attempt
    started = att.started_at if att and att.started_at else _created(rec)
    return max(rec.heartbeat_at or 0.0, started)


def _created(rec: JobRecord) -> float:
    return datetime.fromisoformat(rec.created_at).timestamp()


def _job_decision(
    rec: JobRecord, live: list[Instance], gone: list[Instance], now: float, s: ControlSettings
) -> Action | None:
    att = rec.current_attempt
    ids = tuple(sorted(i.instance_id for i in live))
    if rec.cancel is not None and now - rec.cancel.at > s.cancel_grace_seconds:
        return Cancel(
            rec.job_id,
            rec.cancel.by,
            f"The agent did not carry out the cancel within {_minutes(s.cancel_grace_seconds)}: the watchdog "
            "terminated the instance. Weights uploaded before then are kept.",
            ids,
        )
    if rec.status is JobStatus.QUEUED and now - _created(rec) > s.launching_timeout_seconds:
        return Fail(
            rec.job_id,
            rec.attempt,
            "launch",
            f"The job waited {_minutes(now - _created(rec))} for the launcher, which never picked it up.",
            ids,
        )
    if rec.status is JobStatus.INTERRUPTED:
        ended = att.ended_at if att and att.ended_at else _since(rec)
        due = rec.relaunch_at if rec.relaunch_at is not None else ended + s.vanish_settle_seconds
        return Relaunch(rec.job_id, rec.attempt) if now >= due else None
    if rec.status not in ON_A_BOX or att is None:
        return None
    quiet = now - _since(rec)
    mine = [i for i in gone if i.instance_id == att.instance_id]
    if mine and quiet > s.vanish_settle_seconds:  # the agent's last events would have arrived by now
        return Vanished(rec.job_id, mine[0].instance_id, mine[0].state)
    if rec.status is JobStatus.LAUNCHING and quiet > s.launching_timeout_seconds:
        return Fail(
            rec.job_id,
            rec.attempt,
            "launch",
            f"The instance did not start the agent within {_minutes(s.launching_timeout_seconds)} "
            f"({att.instance_id or 'no instance'}); the watchdog terminated it.",
            ids,
        )
    if rec.status is not JobStatus.LAUNCHING and quiet > s.heartbeat_stale_seconds:
        return Fail(
            rec.job_id,
            rec.attempt,
            "heartbeat",
            f"No heartbeat from the agent for {_minutes(quiet)} (the limit is {_minutes(s.heartbeat_stale_seconds)}):"
            f" it died or lost its network. The watchdog terminated {', '.join(ids) or 'its instance'}.",
            ids,
        )
    ran = now - (att.started_at or now)
    if ran > rec.spec.params.max_hours * 3600 + MAX_HOURS_GRACE_SECONDS:
        return Fail(
            rec.job_id,
            rec.attempt,
            "timeout",
            f"The attempt ran {ran / 3600:.1f} h, past the job's `max_hours={rec.spec.params.max_hours:g}`: "
            "the watchdog terminated its instance.",
            ids,
        )
    return None


def decide(
    jobs: Iterable[JobRecord],
    instances: Iterable[Instance],
    ended: dict[str, JobRecord | None],
    now: float,
    settings: ControlSettings,
) -> list[Action]:
    """One pass: `jobs` are the active jobs, `instances` ours in any state, `ended` the records of the other jobs
    named by instance tags (None: no such job)."""
    instances = list(instances)
    actions: list[Action] = []
    active: dict[str, JobRecord] = {r.job_id: r for r in jobs}
    for rec in active.values():
        mine = [i for i in instances if i.job_id == rec.job_id]
        current = rec.current_attempt.instance_id if rec.current_attempt else None
        live = [i for i in mine if i.live and (i.attempt == rec.attempt or i.instance_id == current)]
        stale = [i for i in mine if i.live and i not in live]
        if stale:
            actions.append(
                Terminate(tuple(i.instance_id for i in stale), rec.job_id, "left over from an earlier attempt")
            )
        action = _job_decision(rec, live, [i for i in mine if i.state in GONE_STATES], now, settings)
        if action is not None:
            actions.append(action)
    orphans: dict[str | None, list[str]] = {}
    reasons: dict[str | None, str] = {}
    for inst in instances:
        if not inst.live or inst.job_id in active:
            continue
        other = ended.get(inst.job_id) if inst.job_id else None
        if other is None:
            orphans.setdefault(inst.job_id, []).append(inst.instance_id)
            reasons[inst.job_id] = "its job does not exist"
        elif other.finished_at is None or now - other.finished_at > ENDED_GRACE_SECONDS:
            orphans.setdefault(inst.job_id, []).append(inst.instance_id)
            reasons[inst.job_id] = f"its job ended {other.status.value}"
    for job_id, ids in orphans.items():
        actions.append(Terminate(tuple(sorted(ids)), job_id, reasons[job_id]))
    return actions


def _instance(raw: dict[str, Any]) -> Instance:
    tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
    attempt = tags.get(TAG_ATTEMPT, "")
    launched = raw.get("LaunchTime")
    return Instance(
        instance_id=raw["InstanceId"],
        state=raw["State"]["Name"],
        job_id=tags.get(TAG_JOB),
        attempt=int(attempt) if attempt.isdigit() else None,
        launched_at=launched.timestamp() if isinstance(launched, datetime) else None,
    )


@dataclass
class Watchdog:
    settings: ControlSettings
    store: JobsStore
    bus: Bus
    ec2: Any
    s3: Any = None

    @classmethod
    def from_settings(cls, settings: ControlSettings) -> Watchdog:
        store, bus = JobsStore(settings.jobs_table, record_days=settings.job_record_days), Bus(settings.bus_name)
        return cls(settings, store, bus, client("ec2", settings.region), client("s3", settings.region))

    def instances(self) -> list[Instance]:
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": f"tag:{TAG_APP}", "Values": [APP]}]
        )
        return [_instance(i) for page in pages for r in page["Reservations"] for i in r["Instances"]]

    def run(self, now: float | None = None) -> Pass:
        now = time.time() if now is None else now
        jobs = self.store.list_active()
        instances = self.instances()
        active = {r.job_id for r in jobs}
        others = {i.job_id for i in instances if i.job_id and i.job_id not in active and i.live}
        ended = {job_id: self.store.find(job_id) for job_id in others}
        done = Pass(decide(jobs, instances, ended, now, self.settings))
        for action in done.actions:
            try:
                self._carry_out(action)
            except (ClientError, BotoCoreError, TransitionError) as e:
                # One job's trouble never stops the pass: the next pass looks again.
                logger.warning("watchdog action failed", action=repr(action), error=str(e))
        return done

    def _terminate(self, ids: Iterable[str]) -> None:
        ids = sorted(set(ids))
        if ids:
            self.ec2.terminate_instances(InstanceIds=ids)

    def _note(self, job_id: str, note: str, outcome: Outcome) -> None:
        self.store.add_note(job_id, note)
        lifecycle.announce(self.bus, outcome, "Watchdog")

    def _carry_out(self, action: Action) -> None:
        logger.info("watchdog", action=repr(action))
        if isinstance(action, Terminate):
            self._terminate(action.instance_ids)
            if action.job_id:
                note = f"Watchdog: terminated {', '.join(action.instance_ids)} ({action.reason})."
                rec = self.store.find(action.job_id)
                if rec is not None:
                    self._note(action.job_id, note, Outcome(rec, note=None if rec.status.is_terminal() else note))
        elif isinstance(action, Fail | Cancel) and self._agent_ended(action.job_id):
            return
        elif isinstance(action, Fail):
            self._terminate(action.terminate)
            failure = Failure(phase="watchdog", kind=action.kind, message=action.message)
            rec = self.store.mark_failed(action.job_id, failure, attempt=action.attempt)
            self._note(action.job_id, f"Watchdog: {action.message}", Outcome(rec, changed=True, status_changed=True))
        elif isinstance(action, Cancel):
            self._terminate(action.terminate)
            rec = self.store.mark_cancelled(action.job_id, action.by)
            self._note(action.job_id, f"Watchdog: {action.message}", Outcome(rec, changed=True, status_changed=True))
        elif isinstance(action, Relaunch):
            self.recovery.relaunch(action.job_id, action.attempt)
        else:
            self.recovery.instance_gone(action.job_id, action.instance_id, action.state, "Watchdog")

    @property
    def recovery(self) -> Recovery:
        return Recovery(self.settings, self.store, self.bus, self.s3)

    def _agent_ended(self, job_id: str) -> bool:
        """The attempt's agent said how it ended and its events are on their way: publish that end again rather
        than failing or cancelling a job that is not stuck."""
        rec = self.store.find(job_id)
        if rec is None or rec.status not in ON_A_BOX:
            return False
        said = self.recovery.agent_end(rec)
        if said is None:
            return False
        logger.info("the agent had ended the attempt: publishing its end again", end=said.detail_type)
        self.bus.put(said)
        return True


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run by the schedule; its event carries nothing the pass needs."""
    done = Watchdog.from_settings(ControlSettings.from_env()).run()
    counts = done.counts()
    for name, n in counts.items():
        metrics.add_metric(name=f"Watchdog{name}", unit=MetricUnit.Count, value=n)
    logger.info("watchdog pass", extra={"actions": counts})
    return {"actions": counts}
