"""Every allowed and every forbidden status transition, through the real store on DynamoDB (moto)."""

from __future__ import annotations

import itertools

import pytest

from spotter.status import ALLOWED_SOURCES, TERMINAL, JobStatus, can_transition, forward_path
from spotter.store import Failure, JobsStore, TransitionError
from tests.spotter.helpers import force_status, make_spec

ALL = list(JobStatus)
EXPECTED_ALLOWED = {
    (JobStatus.QUEUED, JobStatus.LAUNCHING),
    (JobStatus.INTERRUPTED, JobStatus.LAUNCHING),
    (JobStatus.LAUNCHING, JobStatus.RUNNING),
    (JobStatus.RUNNING, JobStatus.UPLOADING),
    (JobStatus.UPLOADING, JobStatus.SUCCEEDED),
    (JobStatus.LAUNCHING, JobStatus.INTERRUPTED),
    (JobStatus.RUNNING, JobStatus.INTERRUPTED),
    (JobStatus.UPLOADING, JobStatus.INTERRUPTED),
    *((s, JobStatus.FAILED) for s in ALL if s not in TERMINAL),
    *((s, JobStatus.CANCELLED) for s in ALL if s not in TERMINAL),
}


def test_the_table_is_exactly_the_lifecycle() -> None:
    actual = {(s, t) for t, sources in ALLOWED_SOURCES.items() for s in sources}
    assert actual == EXPECTED_ALLOWED


def test_terminal_states() -> None:
    assert {s for s in JobStatus if s.is_terminal()} == {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
    for t in TERMINAL:
        assert not any(can_transition(t, target) for target in JobStatus)


def test_forward_path() -> None:
    assert forward_path(JobStatus.LAUNCHING, JobStatus.UPLOADING) == [JobStatus.RUNNING, JobStatus.UPLOADING]
    assert forward_path(JobStatus.UPLOADING, JobStatus.RUNNING) == []
    assert forward_path(JobStatus.FAILED, JobStatus.SUCCEEDED) == []


def _do(store: JobsStore, job_id: str, target: JobStatus, attempt: int) -> None:
    if target is JobStatus.LAUNCHING:
        store.mark_launching(job_id, attempt + 1)
    elif target is JobStatus.RUNNING:
        store.mark_running(job_id, attempt)
    elif target is JobStatus.UPLOADING:
        store.mark_uploading(job_id, attempt)
    elif target is JobStatus.SUCCEEDED:
        store.mark_succeeded(job_id, attempt, [])
    elif target is JobStatus.FAILED:
        store.mark_failed(job_id, Failure(phase="train", kind="exit", message="boom"))
    elif target is JobStatus.CANCELLED:
        store.mark_cancelled(job_id, by="U1")
    elif target is JobStatus.INTERRUPTED:
        store.mark_interrupted(job_id, attempt)
    else:
        pytest.skip("QUEUED is only ever created")


@pytest.mark.parametrize(
    ("source", "target"),
    [(s, t) for s, t in itertools.product(ALL, ALL) if t is not JobStatus.QUEUED],
    ids=lambda s: s.value,
)
def test_transition_in_dynamodb(store: JobsStore, source: JobStatus, target: JobStatus) -> None:
    spec = make_spec(seed=f"{source}-{target}")
    store.create(spec, trigger=f"{source}-{target}")
    force_status(store, spec.job_id, source, attempt=1)
    if (source, target) in EXPECTED_ALLOWED:
        _do(store, spec.job_id, target, attempt=1)
        assert store.get(spec.job_id).status is target
    else:
        with pytest.raises(TransitionError) as err:
            _do(store, spec.job_id, target, attempt=1)
        assert err.value.current is source
        assert store.get(spec.job_id).status is source


def test_events_of_another_attempt_cannot_move_the_job(store: JobsStore) -> None:
    spec = make_spec(seed="attempts")
    store.create(spec, trigger="attempts")
    store.mark_launching(spec.job_id, 1)
    with pytest.raises(TransitionError, match="attempt 1"):
        store.mark_running(spec.job_id, 2)
    with pytest.raises(TransitionError):
        store.mark_launching(spec.job_id, 3)  # attempts are opened one at a time
    assert store.get(spec.job_id).status is JobStatus.LAUNCHING
