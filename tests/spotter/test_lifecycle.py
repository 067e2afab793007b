"""Bus events applied to the store when deliveries overlap: a step another delivery took is not a failure."""

from __future__ import annotations

import pytest

from spotter import lifecycle
from spotter.events import JobError, JobFinished, JobPhase
from spotter.status import JobStatus
from spotter.store import JobRecord, JobsStore, TransitionError
from tests.spotter.helpers import make_spec


def _running(store: JobsStore, seed: str) -> str:
    spec = make_spec(seed=seed)
    store.create(spec, trigger=seed)
    store.mark_launching(spec.job_id, 1)
    store.mark_running(spec.job_id, 1)
    return spec.job_id


class _Overtaken(JobsStore):
    """A store whose first read is overtaken: another delivery moves the job to UPLOADING right after it."""

    def __init__(self, table: str) -> None:
        super().__init__(table)
        self.overtaken = False

    def find(self, job_id: str) -> JobRecord | None:
        rec = super().find(job_id)
        if not self.overtaken:
            self.overtaken = True
            super().mark_uploading(job_id, 1)  # the upload phase's delivery, running at the same moment
        return rec


def test_finished_still_ends_the_job_when_a_phase_delivery_took_the_upload_step_first(store: JobsStore) -> None:
    job = _running(store, "race")
    racing = _Overtaken(store.table)

    outcome = lifecycle.apply(racing, JobFinished(job_id=job, attempt=1, seq=9, artifacts=[]))

    assert racing.overtaken
    assert outcome.status_changed and outcome.record is not None
    assert store.get(job).status is JobStatus.SUCCEEDED


def test_a_phase_delivered_after_the_end_is_announced_once_and_leaves_the_job_decided(store: JobsStore) -> None:
    job = _running(store, "late")
    lifecycle.apply(store, JobFinished(job_id=job, attempt=1, seq=9, artifacts=[]))

    late = JobPhase(job_id=job, attempt=1, seq=3, phase="build", state="cached")
    outcome, again = lifecycle.apply(store, late), lifecycle.apply(store, late)
    ended = lifecycle.apply(store, JobPhase(job_id=job, attempt=1, seq=8, phase="upload", state="finished"))

    assert outcome.phase_changed and not outcome.status_changed
    assert not again.changed and not again.phase_changed and not ended.changed
    rec = store.get(job)
    assert rec.status is JobStatus.SUCCEEDED and rec.phase is None


def test_a_phase_of_an_older_attempt_after_the_end_is_not_announced(store: JobsStore) -> None:
    job = _running(store, "older")
    lifecycle.apply(store, JobFinished(job_id=job, attempt=1, seq=9, artifacts=[]))

    outcome = lifecycle.apply(store, JobPhase(job_id=job, attempt=2, seq=3, phase="build", state="started"))

    assert not outcome.changed and not outcome.phase_changed


@pytest.mark.parametrize(
    "event",
    [
        JobFinished(job_id="", attempt=1, seq=9, artifacts=[]),
        JobError(job_id="", attempt=1, seq=9, phase="train", kind="exit", message="exit 1"),
    ],
)
def test_an_end_that_cannot_be_recorded_is_raised_for_the_bus_to_retry(
    store: JobsStore, event: JobFinished | JobError, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _running(store, "retry")

    def refuse(job_id: str, *args: object, **kwargs: object) -> JobRecord:
        raise TransitionError(job_id, JobStatus.RUNNING, JobStatus.SUCCEEDED, "")

    monkeypatch.setattr(store, "mark_succeeded", refuse)
    monkeypatch.setattr(store, "mark_failed", refuse)

    with pytest.raises(TransitionError):
        lifecycle.apply(store, event.model_copy(update={"job_id": job}))
    assert store.get(job).status in (JobStatus.RUNNING, JobStatus.UPLOADING)


def test_a_phase_start_delivered_after_a_later_one_is_still_announced_once(store: JobsStore) -> None:
    job = _running(store, "order")
    data = lifecycle.apply(store, JobPhase(job_id=job, attempt=1, seq=5, phase="data", state="started"))
    build = lifecycle.apply(store, JobPhase(job_id=job, attempt=1, seq=4, phase="build", state="cached"))
    again = lifecycle.apply(store, JobPhase(job_id=job, attempt=1, seq=4, phase="build", state="cached"))

    assert data.phase_changed and build.phase_changed and not again.phase_changed
    assert store.get(job).phase == "data"  # the record keeps the newest phase
