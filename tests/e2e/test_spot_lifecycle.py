"""End to end on the local stack: what happens when things go wrong — spot reclaims, vanished instances, no
capacity, a dead agent, a cancel, a cap. Each ends in a terminal state with no instance left running."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.test_scenarios import SCENARIOS, Run, run

# Epochs long enough that a fault armed for mid-training lands there on a loaded machine.
SLOW = ("--epoch-seconds", "1")


def _no_instance_running(r: Run) -> None:
    live = [i for i in r.final["instances"] if i["state"] not in ("terminated", "shutting-down")]
    assert live == [], live


def _progress(r: Run, job: str) -> dict[int, list[int]]:
    """The epochs each attempt reported, in the order the recorder received them."""
    out: dict[int, list[int]] = {}
    for e in r.aws("event delivered"):
        if (
            e.get("detail-type") == "Job Progress"
            and e.get("job") == job
            and e.get("function", "").endswith("RecorderFunction")
        ):
            out.setdefault(e["attempt"], []).append(e["current"])
    return out


def _thread(r: Run) -> str:
    return "\n".join(json.dumps(p) for p in r.slack("chat.postMessage") if p.get("thread_ts"))


def _one_card(r: Run) -> None:
    cards = [p for p in r.slack("chat.postMessage") if not p.get("thread_ts")]
    assert len(cards) == 1, cards


def _resumed(r: Run, job: dict[str, Any]) -> None:
    assert job["status"] == "SUCCEEDED", r.why()
    first, second = job["attempts"]
    assert first["instance_id"] != second["instance_id"]
    assert {first["state"], second["state"]} == {"terminated"}
    progress = _progress(r, job["job"])
    resumed = second["resumed_from"]
    assert resumed is not None and resumed >= 1, job
    # The second attempt starts after the checkpoint's epoch, not at 1.
    assert min(progress[2]) == resumed + 1, progress
    assert max(progress[1]) >= resumed
    _one_card(r)
    _no_instance_running(r)


def test_a_spot_interruption_resumes_from_the_checkpoint_saved_in_the_notice() -> None:
    r = run(SCENARIOS / "spot_interruption.yaml", *SLOW)
    assert r.code == 0, r.why()
    (job,) = r.final["jobs"]
    _resumed(r, job)
    assert job["attempts"][0]["ended_reason"] == "interrupted"
    assert r.aws("spot interruption announced") or r.aws("spot interruption"), r.why()
    thread = _thread(r)
    assert "Attempt 2 resumes after epoch" in thread


def test_an_instance_that_vanishes_is_relaunched_from_the_last_synced_checkpoint() -> None:
    r = run(SCENARIOS / "instance_vanishes.yaml", *SLOW)
    assert r.code == 0, r.why()
    (job,) = r.final["jobs"]
    _resumed(r, job)
    assert job["attempts"][0]["ended_reason"] == "vanished"
    assert "said nothing" in _thread(r)


def test_no_spot_capacity_with_spot_only_fails_naming_every_type_tried() -> None:
    r = run(SCENARIOS / "capacity_spot_only.yaml")
    assert r.code == 0, r.why()
    (job,) = r.final["jobs"]
    assert job["status"] == "FAILED"
    thread = _thread(r)
    assert "capacity" in thread
    for instance_type in ("g4dn.xlarge", "g5.xlarge", "g6.xlarge"):
        assert instance_type in thread
    assert r.aws("instance launched") == []
    _no_instance_running(r)


def test_no_spot_capacity_with_spot_auto_trains_on_demand() -> None:
    r = run(SCENARIOS / "capacity_auto.yaml")
    assert r.code == 0, r.why()
    (job,) = r.final["jobs"]
    assert job["status"] == "SUCCEEDED"
    (attempt,) = job["attempts"]
    assert attempt["market"] == "on-demand" and attempt["state"] == "terminated"
    _no_instance_running(r)


def test_a_dead_agent_is_failed_by_the_watchdog_and_its_instance_terminated() -> None:
    r = run(SCENARIOS / "kill_agent.yaml", *SLOW)
    assert r.code == 0, r.why()
    (job,) = r.final["jobs"]
    assert job["status"] == "FAILED"
    assert "heartbeat" in job["failure"].lower()
    assert "heartbeat" in _thread(r).lower()
    _no_instance_running(r)


def test_a_cancel_mid_training_keeps_the_weights_so_far_and_terminates_the_instance() -> None:
    r = run(SCENARIOS / "cancel.yaml", "--epoch-seconds", "1")  # the cancel lands mid-training, even under load
    assert r.code == 0, r.why()
    (job,) = r.final["jobs"]
    assert job["status"] == "CANCELLED"
    names = {a["name"] for a in job["artifacts"]}
    assert names & {"best", "last"}, job["artifacts"]
    assert [a["state"] for a in job["attempts"]] == ["terminated"]
    assert any("Cancelling" in json.dumps(a) for a in r.responses()), r.responses()
    _no_instance_running(r)


def test_a_request_over_the_instance_cap_is_refused_with_no_instance() -> None:
    r = run(SCENARIOS / "caps.yaml", "--env", "SPOTTER_MAX_CONCURRENT_INSTANCES=1")
    assert r.code == 0, r.why()
    (job,) = r.final["jobs"]  # the second request created no job
    assert job["status"] == "SUCCEEDED"
    refused = [json.dumps(a) for a in r.responses() if "MaxConcurrentInstances" in json.dumps(a)]
    assert len(refused) == 1, r.responses()
    assert len(r.aws("instance launched")) == 1
    _no_instance_running(r)


def test_s3_errors_on_uploads_are_retried_and_the_job_loses_nothing() -> None:
    r = run(SCENARIOS / "s3_errors.yaml")
    assert r.code == 0, r.why()
    (job,) = r.final["jobs"]
    assert job["status"] == "SUCCEEDED"
    assert [(e["operation"], e["status"]) for e in r.aws("s3 fault")] == [("PutObject", 500)] * 2
    assert {"best", "last"} <= {a["name"] for a in job["artifacts"]}
    _no_instance_running(r)
