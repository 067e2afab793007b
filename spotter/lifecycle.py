"""Applies bus events to the jobs store: the one place that decides what an event does to a job.

Deliveries may repeat and arrive out of order; every write below is guarded, so a stale or repeated
event changes nothing and comes back as `Outcome(changed=False)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from spotter import layout
from spotter.events import (
    Artifact,
    Bus,
    JobCancelled,
    JobCancelRequested,
    JobChanged,
    JobCheckpoint,
    JobError,
    JobEvent,
    JobFinished,
    JobHeartbeat,
    JobInterrupted,
    JobLaunched,
    JobMetric,
    JobPhase,
    JobProgress,
    JobQueued,
)
from spotter.status import JobStatus, forward_path
from spotter.store import Checkpoint, Failure, JobRecord, JobsStore, Promotion, TransitionError


@dataclass(frozen=True)
class Outcome:
    record: JobRecord | None
    changed: bool = False
    status_changed: bool = False
    phase_changed: bool = False
    new_best: bool = False
    note: str | None = None  # what the thread should hear of it, beyond the card
    refused: str | None = None  # why the event was not applied, where it was refused rather than stale


def changed_event(outcome: Outcome, cause: str, *, phase: str | None = None, cached: bool = False) -> JobChanged | None:
    """The notifier's view of an outcome, or None when there is nothing to show."""
    rec = outcome.record
    if rec is None or not (outcome.changed or outcome.note):
        return None
    return JobChanged(
        job_id=rec.job_id,
        attempt=max(1, rec.attempt),
        cause=cause,
        status=rec.status.value,
        status_changed=outcome.status_changed,
        phase_changed=outcome.phase_changed,
        phase=phase if outcome.phase_changed else None,
        cached=cached,
        new_best=outcome.new_best,
        note=outcome.note,
    )


def announce(bus: Bus, outcome: Outcome, cause: str, **kwargs: object) -> None:
    """Tell the notifier what changed (raises BusError: the caller's delivery is retried and decides again)."""
    ev = changed_event(outcome, cause, **kwargs)  # type: ignore[arg-type]
    if ev is not None:
        bus.put(ev)


def _advance(store: JobsStore, rec: JobRecord, target: JobStatus, attempt: int) -> JobRecord:
    """Walk the forward path to `target` (e.g. a late Phase event: LAUNCHING → RUNNING → UPLOADING)."""
    step = {
        JobStatus.RUNNING: store.mark_running,
        JobStatus.UPLOADING: store.mark_uploading,
    }
    for status in forward_path(rec.status, target):
        if status not in step:
            continue
        try:
            rec = step[status](rec.job_id, attempt)
        except TransitionError:
            # Deliveries run concurrently: another event of this attempt may have taken the step first.
            current = store.find(rec.job_id)
            if (
                current is None
                or current.attempt != attempt
                or current.status.is_terminal()
                or not (current.status is status or forward_path(status, current.status))
            ):
                raise
            rec = current
    return rec


def apply(store: JobsStore, event: JobEvent, *, promotion: Promotion | None = None) -> Outcome:
    """Apply `event`; `promotion` is what the weights of a scheduled run that finished did to the promoted ones."""
    try:
        return _apply(store, event, promotion)
    except TransitionError:
        rec = store.find(event.job_id)
        if (
            isinstance(event, JobFinished | JobError)
            and rec
            and rec.attempt == event.attempt
            and not rec.status.is_terminal()
        ):
            raise  # the end of a job that is still going is never dropped: the bus delivers it again
        return Outcome(rec)


def _apply(store: JobsStore, ev: JobEvent, promotion: Promotion | None = None) -> Outcome:
    rec = store.find(ev.job_id)
    if rec is None:
        return Outcome(None)  # not ours (another stack's job on a shared bus) or deleted
    if isinstance(ev, JobQueued):
        return Outcome(rec)
    if isinstance(ev, JobCancelRequested):
        return _cancel_requested(store, rec, ev)
    if isinstance(ev, JobError) and rec.status is JobStatus.FAILED and rec.failure and rec.failure.phase == ev.phase:
        # The launcher records its own failures before announcing them: the announcement still counts.
        return Outcome(rec, changed=True, status_changed=True)
    if isinstance(ev, JobPhase) and rec.attempt == ev.attempt and rec.status.is_terminal():
        # A phase this attempt started before its end, delivered after it (deliveries race): the job stays decided,
        # the thread still hears of it, once.
        first = ev.state in ("started", "cached") and store.first_sight_of_phase(ev.job_id, ev.attempt, ev.phase)
        return Outcome(rec, changed=first, phase_changed=first)
    if rec.attempt != ev.attempt or rec.status.is_terminal():
        return Outcome(rec)  # an older attempt's straggler, or a job already decided
    foreign = foreign_outputs(rec, ev)
    if foreign:
        # Only the attempt's own instance can write below its ARN: a key elsewhere is not this attempt's output.
        why = f"{', '.join(foreign)} is not an output of attempt {ev.attempt}'s instance"
        return Outcome(rec, refused=why)
    before = rec.status
    if isinstance(ev, JobLaunched):
        rec = store.record_launch(ev)
        return Outcome(rec, changed=True)
    if isinstance(ev, JobPhase):
        target = JobStatus.UPLOADING if ev.phase == "upload" else JobStatus.RUNNING
        rec = _advance(store, rec, target, ev.attempt)
        starts = ev.state in ("started", "cached")
        updated = store.record_phase(ev.job_id, ev.attempt, ev.phase, ev.seq) if starts else None
        # A phase's start is announced once, even when it arrives after a later phase's (deliveries race).
        first = starts and store.first_sight_of_phase(ev.job_id, ev.attempt, ev.phase)
        return Outcome(
            updated or rec,
            changed=updated is not None or first or rec.status != before,
            status_changed=rec.status != before,
            phase_changed=first,
        )
    if isinstance(ev, JobProgress):
        rec = _advance(store, rec, JobStatus.RUNNING, ev.attempt)
        updated = store.record_progress(ev)
        return Outcome(updated or rec, changed=updated is not None, status_changed=rec.status != before)
    if isinstance(ev, JobMetric):
        rec = _advance(store, rec, JobStatus.RUNNING, ev.attempt)
        updated, new_best = store.record_metric(ev)
        return Outcome(updated or rec, changed=updated is not None, new_best=new_best)
    if isinstance(ev, JobHeartbeat):
        rec = _advance(store, rec, JobStatus.RUNNING, ev.attempt)
        updated = store.record_heartbeat(ev.job_id, ev.attempt)
        return Outcome(updated or rec, changed=rec.status != before, status_changed=rec.status != before)
    if isinstance(ev, JobCheckpoint):
        updated = store.record_checkpoint(ev.job_id, ev.attempt, _checkpoint(ev.artifact, ev))
        return Outcome(updated or rec, changed=updated is not None)
    if isinstance(ev, JobInterrupted):
        if ev.checkpoint is not None:
            store.record_checkpoint(ev.job_id, ev.attempt, _checkpoint(ev.checkpoint, ev))
        rec = store.mark_interrupted(ev.job_id, ev.attempt, reason="interrupted")
        return Outcome(rec, changed=True, status_changed=True)
    if isinstance(ev, JobCancelled):
        by = rec.cancel.by if rec.cancel else "unknown"
        rec = store.mark_cancelled(ev.job_id, by, artifacts=ev.artifacts, attempt=ev.attempt)
        return Outcome(rec, changed=True, status_changed=True)
    if isinstance(ev, JobError):
        rec = store.mark_failed(
            ev.job_id,
            Failure(phase=ev.phase, kind=ev.kind, message=ev.message, last_lines=ev.last_lines),
            attempt=ev.attempt,
        )
        return Outcome(rec, changed=True, status_changed=True)
    if isinstance(ev, JobFinished):
        rec = _advance(store, rec, JobStatus.UPLOADING, ev.attempt)
        rec = store.mark_succeeded(ev.job_id, ev.attempt, ev.artifacts, ev.metrics, promotion)
        return Outcome(rec, changed=True, status_changed=True)
    return Outcome(rec)


# Where a job has no agent to tell (nothing launched yet, or between attempts), a cancel ends it at once.
NO_AGENT = frozenset({JobStatus.QUEUED, JobStatus.INTERRUPTED})


def foreign_outputs(rec: JobRecord, ev: JobEvent) -> list[str]:
    """The keys `ev` reports as its attempt's outputs that the attempt's instance did not write."""
    instance_id = rec.instance_of(ev.attempt)
    return [key for key in _reported_keys(ev) if not layout.written_by(key, ev.job_id, instance_id)]


def _reported_keys(ev: JobEvent) -> list[str]:
    """The S3 keys an agent's event names as its attempt's outputs."""
    if isinstance(ev, JobCheckpoint):
        return [ev.artifact.key]
    if isinstance(ev, JobInterrupted):
        return [] if ev.checkpoint is None else [ev.checkpoint.key]
    if isinstance(ev, JobCancelled | JobFinished):
        return [a.key for a in ev.artifacts]
    return []


def _cancel_requested(store: JobsStore, rec: JobRecord, ev: JobCancelRequested) -> Outcome:
    if rec.status.is_terminal():
        return Outcome(rec)
    requested = store.request_cancel(ev.job_id, ev.by) or rec
    if rec.status in NO_AGENT or (rec.status is JobStatus.LAUNCHING and not _has_instance(rec)):
        rec = store.mark_cancelled(ev.job_id, ev.by)
        return Outcome(rec, changed=True, status_changed=True)
    note = f"<@{ev.by}> asked to cancel: the agent uploads what it has, then the instance is terminated."
    return Outcome(requested, changed=True, note=note)


def _has_instance(rec: JobRecord) -> bool:
    att = rec.current_attempt
    return att is not None and att.instance_id is not None


def _checkpoint(artifact: Artifact, ev: JobCheckpoint | JobInterrupted) -> Checkpoint:
    return Checkpoint(
        key=artifact.key, sha256=artifact.sha256, size=artifact.size, current=ev.current, attempt=ev.attempt, at=ev.at
    )
