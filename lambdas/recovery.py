"""What happens to a job when its instance goes: relaunch from the last checkpoint, wait out a backoff, or give up.

The decisions are pure functions of the job record (and the instance's state as EC2 reports it); `Recovery` carries
them out through the store's guarded transitions and tells the channel through `Job Changed` notes. Deliveries
repeat: every write is guarded, and a repeated decision finds the job already moved and does nothing.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from spotter import layout, lifecycle
from spotter.aws import client, instance_arn
from spotter.config import ControlSettings
from spotter.events import Bus, JobEvent, JobRelaunch, from_eventbridge
from spotter.lifecycle import Outcome
from spotter.status import JobStatus
from spotter.store import Failure, JobRecord, JobsStore, TransitionError

log = logging.getLogger(__name__)

# EC2 states in which an instance no longer runs the job.
GONE_STATES = frozenset({"shutting-down", "terminated", "stopping", "stopped"})
ON_A_BOX = frozenset({JobStatus.LAUNCHING, JobStatus.RUNNING, JobStatus.UPLOADING})


@dataclass(frozen=True)
class Relaunch:
    attempt: int  # the attempt to launch
    delay: float  # seconds from now
    note: str


@dataclass(frozen=True)
class GiveUp:
    kind: str
    message: str


@dataclass(frozen=True)
class CancelNow:
    by: str


AfterInterruption = Relaunch | GiveUp | CancelNow


def _unit(rec: JobRecord) -> str:
    return rec.spec.unit


def resume_point(rec: JobRecord) -> int | None:
    """The epoch or iteration the next attempt resumes after (None: it starts from scratch)."""
    cp = rec.resumable_checkpoint
    if cp is None:
        return None
    return cp.current if cp.current is not None else 0


def work_lost(rec: JobRecord) -> int | None:
    """Epochs or iterations the ended attempt had done beyond the checkpoint the next one resumes from."""
    att = rec.current_attempt
    reached = att.progress_at_end if att and att.progress_at_end is not None else None
    if reached is None:
        return None
    start = resume_point(rec)
    # Progress counts the epoch under way (1-based); a checkpoint holds completed ones.
    done = max(0, reached - 1) if rec.spec.unit == "epoch" else reached
    return max(0, done - (start or 0))


def after_interruption(rec: JobRecord, settings: ControlSettings, why: str) -> AfterInterruption:
    """The next step for an INTERRUPTED job: relaunch (now or after a backoff), cancel it, or give up."""
    if rec.cancel is not None:
        return CancelNow(rec.cancel.by)
    if rec.attempt >= settings.max_attempts:
        return GiveUp(
            "attempts",
            f"{why} Gave up after {rec.attempt} attempts (the cap is {settings.max_attempts}). "
            f"Spot capacity for {', '.join(rec.spec.instance_types())} is scarce now: try again later, "
            f"another `instance=`, or `spot=false`.",
        )
    nxt = rec.attempt + 1
    delay = settings.relaunch_delay(nxt)
    unit = _unit(rec)
    point = resume_point(rec)
    lost = work_lost(rec)
    start = f"resumes after {unit} {point} from the last checkpoint" if point is not None else "restarts from scratch"
    if point is None:
        start += " (no checkpoint was saved)"
    lost_text = f" Work lost: {lost} {unit}{'s' if lost != 1 else ''}." if lost is not None else ""
    when = "now" if delay <= 0 else f"in {delay:.0f} s"
    return Relaunch(nxt, delay, f"{why} Attempt {nxt} {start}, launching {when}.{lost_text}")


def vanished(rec: JobRecord | None, instance_id: str, state: str) -> bool:
    """EC2 says the current attempt's instance is gone while the job was still on it, with no word from the agent."""
    if rec is None or rec.status not in ON_A_BOX or state not in GONE_STATES:
        return False
    att = rec.current_attempt
    return att is not None and att.instance_id == instance_id


@dataclass
class Recovery:
    settings: ControlSettings
    store: JobsStore
    bus: Bus
    s3: Any = None  # made on first use where not given (the recorder's recovery reads no ends)

    def agent_end(self, rec: JobRecord) -> JobEvent | None:
        """How the current attempt ended, if its agent said so before its instance went (None: it said nothing)."""
        att = rec.current_attempt
        if att is None or att.instance_id is None:
            return None  # never launched: no agent to have said anything
        s3 = self.s3 if self.s3 is not None else client("s3", self.settings.region)
        outputs = layout.Outputs(rec.job_id, instance_arn(self.settings.region, att.instance_id))
        try:
            body = s3.get_object(Bucket=self.settings.bucket, Key=outputs.attempt_end(att.number))["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise  # unsure whether the agent spoke: the caller decides again later
        return from_eventbridge(json.loads(body))

    def after_interruption(self, job_id: str, why: str, cause: str) -> None:
        """Carry out the next step for a job just marked INTERRUPTED, and say it in the thread."""
        rec = self.store.get(job_id)
        if rec.status is not JobStatus.INTERRUPTED:
            return
        step = after_interruption(rec, self.settings, why)
        if isinstance(step, CancelNow):
            self._end(rec, lambda: self.store.mark_cancelled(job_id, step.by), cause, None)
        elif isinstance(step, GiveUp):
            failure = Failure(phase="train", kind=step.kind, message=step.message)
            self._end(rec, lambda: self.store.mark_failed(job_id, failure), cause, None)
        else:
            at = time.time() + step.delay if step.delay > 0 else None
            self.store.set_relaunch_at(job_id, rec.attempt, at)
            self.store.add_note(job_id, step.note)
            lifecycle.announce(self.bus, Outcome(self.store.get(job_id), note=step.note), cause)
            if at is None:
                self.relaunch(job_id, rec.attempt)

    def relaunch(self, job_id: str, interrupted_attempt: int) -> None:
        """Ask the launcher for the next attempt (it takes INTERRUPTED → LAUNCHING through its own guard)."""
        self.bus.put(JobRelaunch(job_id=job_id, attempt=interrupted_attempt))

    def instance_gone(self, job_id: str, instance_id: str, state: str, cause: str) -> bool:
        """The job's instance went without the agent reporting: interrupt the attempt, then recover. True if acted."""
        rec = self.store.find(job_id)
        if rec is None or not vanished(rec, instance_id, state):
            return False
        said = self.agent_end(rec)
        if said is not None:
            # The agent ended the attempt and powered off; its last events are slower than EC2's. Publish the
            # end again: the recorder applies it once, whichever copy comes first.
            log.info(
                "instance gone after its agent ended the attempt: publishing that end again",
                extra={"job_id": job_id, "attempt": rec.attempt, "end": said.detail_type},
            )
            self.bus.put(said)
            return False
        try:
            rec = self.store.mark_interrupted(job_id, rec.attempt, reason="vanished")
        except TransitionError as e:
            log.info("instance gone, job already moved on", extra={"reason": str(e)})
            return False
        why = f"Instance `{instance_id}` is {state} and the agent said nothing (spot reclaim or host failure)."
        lifecycle.announce(self.bus, Outcome(rec, changed=True, status_changed=True), cause)
        self.after_interruption(job_id, why, cause)
        return True

    def _end(self, rec: JobRecord, mark: Any, cause: str, note: str | None) -> None:
        try:
            ended = mark()
        except TransitionError as e:
            log.info("job already decided", extra={"reason": str(e)})
            return
        lifecycle.announce(self.bus, Outcome(ended, changed=True, status_changed=True, note=note), cause)
