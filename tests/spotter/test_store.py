"""The jobs store on DynamoDB: creation, replays, channel boards, ordering of progress, best mAP, the card throttle."""

from __future__ import annotations

import time
from typing import Any

import pytest

from spotter import board
from spotter.board import JobRow
from spotter.config import ConfigError, Settings
from spotter.events import JobLaunched, JobMetric, JobProgress
from spotter.spec import build_spec
from spotter.status import JobStatus
from spotter.store import DuplicateJob, Failure, JobRecord, JobsStore
from tests.spotter.helpers import force_status, make_spec


def _running(store: JobsStore, seed: str = "s") -> str:
    spec = make_spec(seed=seed)
    store.create(spec, trigger=seed)
    store.mark_launching(spec.job_id, 1)
    store.mark_running(spec.job_id, 1)
    return spec.job_id


def test_create_and_replay(store: JobsStore) -> None:
    spec = make_spec(seed="a")
    rec = store.create(spec, trigger="T:a")
    assert rec.status is JobStatus.QUEUED and store.get(spec.job_id).spec == spec
    with pytest.raises(DuplicateJob) as dup:
        store.create(spec, trigger="T:a")
    assert dup.value.existing.job_id == spec.job_id


def test_channel_index_newest_first(store: JobsStore) -> None:
    ids = []
    for i in range(3):
        spec = make_spec(seed=f"c{i}")
        store.create(spec, trigger=f"c{i}")
        ids.append(spec.job_id)
    assert [r.job_id for r in store.list_channel("C1")] == ids[::-1]
    assert store.list_channel("C-other") == []


def _created(store: JobsStore, n: int, channel: str = "C1", prefix: str = "j") -> list[str]:
    ids = []
    for i in range(n):
        spec = build_spec("shapes", "yolov8n", [], requested_by="U1", channel=channel, seed=f"{prefix}{i}")
        store.create(spec, trigger=f"{prefix}{i}")
        ids.append(spec.job_id)
    return ids


def _board_item(store: JobsStore, channel: str = "C1") -> dict[str, Any]:
    item: dict[str, Any] = store.db.get_item(TableName=store.table, Key=board.board_key(channel))["Item"]
    return item


class _NoIndexQueries(JobsStore):
    def channel_jobs(self, channel: str, limit: int = 10) -> list[JobRecord]:
        raise AssertionError("the by-channel index was read")


def test_a_channel_lists_its_newest_jobs_from_its_board_without_the_index(store: JobsStore) -> None:
    ids = _created(store, 12)
    other = _created(store, 3, channel="C2", prefix="o")

    listed = _NoIndexQueries(store.table).list_channel("C1", 10)

    assert [r.job_id for r in listed] == ids[::-1][:10]
    assert all(r.status is JobStatus.QUEUED and r.channel == "C1" and r.model == "yolov8n" for r in listed)
    assert [r.job_id for r in store.list_channel("C2")] == other[::-1]  # fewer than asked: from the index


def test_the_board_follows_each_job_and_is_never_set_back(store: JobsStore) -> None:
    ids = _created(store, 10)
    job = ids[3]
    store.mark_launching(job, 1)
    store.mark_running(job, 1)
    store.record_progress(JobProgress(job_id=job, attempt=1, seq=2, unit="epoch", current=7, total=20, loss=1.5))
    store.record_metric(JobMetric(job_id=job, attempt=1, seq=3, unit="epoch", current=7, map50=0.61))
    rec = store.get(job)
    stale = rec.model_copy(update={"status": JobStatus.QUEUED, "progress": None})

    store.board.show(stale, rec.version - 1)  # a delivery that lost the race writes its older record's row

    (row,) = [r for r in _NoIndexQueries(store.table).list_channel("C1", 10) if r.job_id == job]
    assert (row.status, row.current, row.total, row.best_map50) == (JobStatus.RUNNING, 7, 20, 0.61)
    assert row == JobRow.of(rec)
    store.mark_failed(job, Failure(phase="train", kind="exit", message="exit 1"), attempt=1)
    (row,) = [r for r in _NoIndexQueries(store.table).list_channel("C1", 10) if r.job_id == job]
    assert row.status is JobStatus.FAILED and row.finished_at is not None


def test_a_retried_create_keeps_the_row_it_finds(store: JobsStore) -> None:
    spec = make_spec(seed="retried")
    store.create(spec, trigger="T:retried")
    store.mark_launching(spec.job_id, 1)
    with pytest.raises(DuplicateJob):
        store.create(spec, trigger="T:retried")
    rows = [name for name in _board_item(store) if name.startswith(board.ROW_PREFIX)]
    assert rows == [board.ROW_PREFIX + spec.job_id]
    assert store.list_channel("C1", 1)[0].status is JobStatus.LAUNCHING


def test_a_board_is_trimmed_to_its_newest_rows(store: JobsStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(board, "KEEP", 4)
    monkeypatch.setattr(board, "TRIM_AT", 8)
    ids = _created(store, 20)

    held = sorted(name for name in _board_item(store) if name.startswith(board.ROW_PREFIX))
    assert 4 <= len(held) <= 8 and held == sorted(board.ROW_PREFIX + i for i in ids[::-1][: len(held)])
    assert [r.job_id for r in _NoIndexQueries(store.table).list_channel("C1", 4)] == ids[::-1][:4]
    store.mark_launching(ids[0], 1)  # a job whose row was dropped stays off the board
    assert board.ROW_PREFIX + ids[0] not in _board_item(store)


def test_jobs_recorded_before_the_channel_had_a_board_are_listed_from_the_index(store: JobsStore) -> None:
    ids = _created(store, 11)
    store.db.delete_item(TableName=store.table, Key=board.board_key("C1"))
    assert [r.job_id for r in store.list_channel("C1", 10)] == ids[::-1][:10]


def test_a_board_is_no_job(store: JobsStore) -> None:
    ids = _created(store, 3)
    assert sorted(r.job_id for r in store.list_status(JobStatus.QUEUED)) == sorted(ids)
    assert sorted(r.job_id for r in store.list_active()) == sorted(ids)
    assert sorted(r.job_id for r in store.list_since("2000-01-01T00:00:00Z", "C1")) == sorted(ids)
    assert store.find(board.KEY_PREFIX + "C1") is None


def test_launch_is_recorded_on_the_attempt(store: JobsStore) -> None:
    spec = make_spec(seed="l")
    store.create(spec, trigger="l")
    store.mark_launching(spec.job_id, 1)
    rec = store.record_launch(
        JobLaunched(
            job_id=spec.job_id,
            attempt=1,
            instance_id="i-1",
            instance_type="g4dn.xlarge",
            availability_zone="us-east-1a",
            market="spot",
            price_usd_hour=0.21,
        )
    )
    att = rec.current_attempt
    assert att and (att.instance_id, att.instance_type, att.market, att.price_usd_hour) == (
        "i-1",
        "g4dn.xlarge",
        "spot",
        0.21,
    )


def test_progress_never_goes_backwards(store: JobsStore) -> None:
    job = _running(store)

    def p(seq: int, cur: int) -> JobProgress:
        return JobProgress(job_id=job, attempt=1, seq=seq, unit="epoch", current=cur, total=20, loss=1.5)

    assert store.record_progress(p(5, 3)) is not None
    assert store.record_progress(p(4, 2)) is None  # late delivery of an older event
    assert store.record_progress(JobProgress(job_id=job, attempt=2, seq=9, unit="epoch", current=9, total=20)) is None
    rec = store.get(job)
    assert rec.progress and rec.progress.current == 3 and rec.progress.fraction == 0.15


def test_best_map_and_history(store: JobsStore) -> None:
    job = _running(store)

    def m(seq: int, cur: int, v: float) -> JobMetric:
        return JobMetric(job_id=job, attempt=1, seq=seq, unit="epoch", current=cur, map50=v, map50_95=v / 2)

    assert store.record_metric(m(1, 1, 0.3))[1] is True
    assert store.record_metric(m(2, 2, 0.6))[1] is True
    assert store.record_metric(m(3, 3, 0.5))[1] is False
    rec, new_best = store.record_metric(m(3, 3, 0.9))  # a redelivery of seq 3 changes nothing
    assert new_best is False and rec is None
    rec = store.get(job)
    assert rec.best and rec.best.map50 == 0.6 and rec.metrics and rec.metrics.map50 == 0.5
    assert [h.map50 for h in rec.metric_history] == [0.3, 0.6, 0.5]


def test_card_slot_at_most_once_per_interval(store: JobsStore) -> None:
    job = _running(store)
    assert store.claim_card_slot(job, 10, now=1000.0)
    assert not store.claim_card_slot(job, 10, now=1005.0)
    assert store.claim_card_slot(job, 10, now=1010.0)
    assert not store.claim_card_slot("no-such-job", 10, now=2000.0)


def test_a_slow_card_update_moves_the_next_window(store: JobsStore) -> None:
    job = _running(store, "slow")
    assert store.claim_card_slot(job, 10, now=1000.0)
    store.card_drawn(job, 1003.0)  # the update's call ended 3 s after its claim
    store.card_drawn(job, 1001.0)  # an earlier end changes nothing
    assert not store.claim_card_slot(job, 10, now=1010.0)
    assert store.claim_card_slot(job, 10, now=1013.0)
    store.card_drawn("no-such-job", 1.0)
    assert store.find("no-such-job") is None


def test_a_new_attempt_reports_afresh(store: JobsStore) -> None:
    job = _running(store, "resumed")
    store.record_progress(JobProgress(job_id=job, attempt=1, seq=900, unit="epoch", current=9, total=20))
    store.record_metric(JobMetric(job_id=job, attempt=1, seq=901, unit="epoch", current=9, map50=0.4))
    store.mark_interrupted(job, 1)
    store.mark_launching(job, 2)
    store.mark_running(job, 2)
    # the new agent's sequence starts over: its first events must count
    assert store.record_progress(JobProgress(job_id=job, attempt=2, seq=1, unit="epoch", current=10, total=20))
    rec, _ = store.record_metric(JobMetric(job_id=job, attempt=2, seq=2, unit="epoch", current=10, map50=0.5))
    assert rec is not None and rec.metrics is not None and rec.metrics.map50 == 0.5
    assert store.record_phase(job, 2, "train", seq=3) is not None


def test_best_announcements_need_a_real_step(store: JobsStore) -> None:
    job = _running(store, "announce")
    assert not store.claim_best_announcement(job, 0.004, 0.02)  # nothing worth saying yet
    assert store.claim_best_announcement(job, 0.30, 0.02)
    assert not store.claim_best_announcement(job, 0.31, 0.02)  # a point better is not news
    assert store.claim_best_announcement(job, 0.33, 0.02)
    assert not store.claim_best_announcement(job, 0.33, 0.02)  # a redelivery announces nothing


def test_best_announcements_are_spaced_in_time_and_capped(store: JobsStore) -> None:
    job = _running(store, "spaced")

    def claim(map50: float, now: float) -> bool:
        return store.claim_best_announcement(job, map50, 0.02, interval=300, limit=3, now=now)

    assert claim(0.30, now=1000.0)
    assert not claim(0.50, now=1299.0), "a real step, but too soon after the last"
    assert claim(0.50, now=1300.0)
    assert not claim(0.51, now=2000.0), "late enough, but not a real step"
    assert claim(0.60, now=2000.0)
    assert not claim(0.90, now=9000.0), "three announced: the cap"
    assert not store.claim_best_announcement("no-such-job", 0.5, 0.02, interval=0, now=1.0)


def test_the_parts_of_an_end_are_claimed_once_each(store: JobsStore) -> None:
    job = _running(store, "end")
    assert store.claim_announcement(job, JobStatus.FAILED, "reply", now=1000.0) is None, "the job has not ended"
    force_status(store, job, JobStatus.FAILED)

    reply = store.claim_announcement(job, JobStatus.FAILED, "reply", now=1000.0)
    assert reply == 1000.0
    assert store.claim_announcement(job, JobStatus.FAILED, "reply", now=1001.0) is None, "held by a live delivery"
    card = store.claim_announcement(job, JobStatus.FAILED, "card", now=1001.0)
    assert card is not None, "each part is claimed on its own"
    assert store.announcement_shown(job, "reply", reply)
    rec = store.get(job)
    assert rec.announced_part("reply") and not rec.announced_part("card") and rec.announced is JobStatus.FAILED
    assert store.claim_announcement(job, JobStatus.FAILED, "reply", now=5000.0) is None, "shown: never again"

    store.release_announcement(job, "card", card)  # Slack did not take it
    assert store.get(job).announced_card is None
    again = store.claim_announcement(job, JobStatus.FAILED, "card", now=1002.0)
    assert again is not None and store.announcement_shown(job, "card", again)
    assert store.get(job).announced_part("card")


def test_a_claim_retried_after_its_answer_was_lost_is_still_the_claimers(
    store: JobsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _running(store, "retried")
    force_status(store, job, JobStatus.SUCCEEDED)
    update = store.db.update_item

    def landed_then_retried(**kwargs: Any) -> Any:
        update(**kwargs)  # the first try lands, its answer is lost, the SDK sends it again
        return update(**kwargs)

    monkeypatch.setattr(store.db, "update_item", landed_then_retried)
    mine = store.claim_announcement(job, JobStatus.SUCCEEDED, "chart", now=1000.0)
    assert mine == 1000.0, "refused only by its own claim"
    assert store.claim_announcement(job, JobStatus.SUCCEEDED, "chart", now=1000.0) is None, "another delivery's"
    monkeypatch.undo()
    assert store.announcement_shown(job, "chart", mine)
    assert store.claim_announcement(job, JobStatus.SUCCEEDED, "chart", now=1000.0) is None, "shown"


def test_a_part_held_by_a_delivery_that_died_is_taken_over_after_its_lease(store: JobsStore) -> None:
    job = _running(store, "lease")
    force_status(store, job, JobStatus.SUCCEEDED)
    dead = store.claim_announcement(job, JobStatus.SUCCEEDED, "chart", lease=60, now=1000.0)
    assert dead is not None
    assert store.claim_announcement(job, JobStatus.SUCCEEDED, "chart", lease=60, now=1059.0) is None
    taken = store.claim_announcement(job, JobStatus.SUCCEEDED, "chart", lease=60, now=1060.0)
    assert taken == 1060.0
    store.release_announcement(job, "chart", dead)  # the old holder waking up gives back nothing of the new one's
    assert not store.announcement_shown(job, "chart", dead)
    claim = store.get(job).announced_chart
    assert claim is not None and claim.claimed_at == 1060.0 and not claim.done
    assert store.announcement_shown(job, "chart", taken)
    assert store.get(job).announced_part("chart")


def test_an_ended_job_gets_its_expiry_and_a_running_one_none(store: JobsStore) -> None:
    job = _running(store, "ttl")

    def expires() -> int | None:
        item = store.db.get_item(TableName=store.table, Key={"job_id": {"S": job}})["Item"]
        return int(item["expires_at"]["N"]) if "expires_at" in item else None

    assert expires() is None, "a job still going never expires"
    store.mark_failed(job, Failure(phase="train", kind="exit", message="boom"), attempt=1)
    days = store.record_days
    assert days == 400
    assert abs(expires() - (time.time() + days * 86400)) < 60  # type: ignore[operator]

    env = {"SPOTTER_JOBS_TABLE": "jobs", "SPOTTER_BUCKET": "b", "SPOTTER_BUS_NAME": "bus"}
    assert Settings.from_env({**env, "SPOTTER_JOB_RECORD_DAYS": "30"}).job_record_days == 30
    for bad in ("0", "soon"):
        with pytest.raises(ConfigError, match="job_record_days"):
            Settings.from_env({**env, "SPOTTER_JOB_RECORD_DAYS": bad})
