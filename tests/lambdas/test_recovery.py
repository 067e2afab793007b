"""Recovery's decisions as pure functions of the job record and what EC2 says of the instance."""

from __future__ import annotations

import pytest

from lambdas.recovery import CancelNow, GiveUp, Relaunch, after_interruption, resume_point, vanished
from spotter.config import ControlSettings
from spotter.status import JobStatus
from spotter.store import Attempt, CancelRequest, Checkpoint, JobRecord
from tests.spotter.helpers import make_spec

SETTINGS = ControlSettings(jobs_table="t", bucket="b", bus_name="bus", max_attempts=3)


def _record(status: JobStatus, attempt: int = 1, checkpoint: int | None = None, **extra: object) -> JobRecord:
    spec = make_spec(seed="v", epochs="6")
    cp = None
    if checkpoint is not None:
        cp = Checkpoint(key="jobs/x/checkpoints/last.pt", sha256="a" * 64, size=1, current=checkpoint, attempt=attempt)
    return JobRecord(
        job_id=spec.job_id,
        status=status,
        spec=spec,
        channel="C1",
        created_at="2026-12-01T00:00:00+00:00",
        updated_at="2026-12-01T00:00:00+00:00",
        attempt=attempt,
        attempts=[Attempt(number=n, instance_id=f"i-{n}") for n in range(1, attempt + 1)],
        checkpoint=cp,
        **extra,
    )


@pytest.mark.parametrize(
    ("status", "instance", "state", "gone"),
    [
        (JobStatus.RUNNING, "i-1", "terminated", True),
        (JobStatus.RUNNING, "i-1", "shutting-down", True),
        (JobStatus.LAUNCHING, "i-1", "stopped", True),
        (JobStatus.RUNNING, "i-1", "running", False),  # still there
        (JobStatus.RUNNING, "i-9", "terminated", False),  # another attempt's instance
        (JobStatus.INTERRUPTED, "i-1", "terminated", False),  # the agent said so already
        (JobStatus.SUCCEEDED, "i-1", "terminated", False),  # the agent powered off after its work
    ],
)
def test_an_instance_has_vanished_only_under_a_job_still_on_it(
    status: JobStatus, instance: str, state: str, gone: bool
) -> None:
    assert vanished(_record(status), instance, state) is gone
    assert vanished(None, instance, state) is False


def test_after_an_interruption_the_job_relaunches_cancels_or_gives_up() -> None:
    first = after_interruption(_record(JobStatus.INTERRUPTED, 1, checkpoint=3), SETTINGS, "Reclaimed.")
    assert isinstance(first, Relaunch) and (first.attempt, first.delay) == (2, 0.0)
    assert "resumes after epoch 3" in first.note
    scratch = after_interruption(_record(JobStatus.INTERRUPTED, 2), SETTINGS, "Gone.")
    assert isinstance(scratch, Relaunch) and scratch.delay > 0 and "restarts from scratch" in scratch.note
    cancelled = _record(JobStatus.INTERRUPTED, 1, cancel=CancelRequest(by="U2", at=1.0))
    assert after_interruption(cancelled, SETTINGS, "x") == CancelNow("U2")
    last = after_interruption(_record(JobStatus.INTERRUPTED, 3, checkpoint=5), SETTINGS, "Reclaimed.")
    assert isinstance(last, GiveUp) and last.kind == "attempts" and "3 attempts" in last.message


def test_a_checkpoint_of_the_whole_training_is_no_resume_point() -> None:
    assert resume_point(_record(JobStatus.INTERRUPTED, checkpoint=5)) == 5
    assert resume_point(_record(JobStatus.INTERRUPTED, checkpoint=6)) is None
    assert resume_point(_record(JobStatus.INTERRUPTED)) is None
