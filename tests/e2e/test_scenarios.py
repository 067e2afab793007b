"""End to end through `python -m infra.local run`: signed slash commands in, Slack calls and EC2 out."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).parent / "scenarios"


@dataclass
class Run:
    code: int
    lines: list[dict[str, Any]]
    stderr: str

    @property
    def final(self) -> dict[str, Any]:
        assert "final" in self.lines[-1], self.lines[-1]
        return self.lines[-1]["final"]  # type: ignore[no-any-return]

    def why(self) -> str:
        """What a failed run said last: its final output lines (the failed wait among them) and its stderr."""
        tail = "\n".join(json.dumps(line)[:600] for line in self.lines[-12:])
        return f"stdout (last lines):\n{tail}\nstderr (end):\n{self.stderr[-1500:]}"

    def slack(self, method: str) -> list[dict[str, Any]]:
        return [r["args"] for r in self.lines if r.get("slack") == method]

    def responses(self) -> list[dict[str, Any]]:
        return [r["args"] for r in self.lines if r.get("slack") == "response"]

    def aws(self, what: str) -> list[dict[str, Any]]:
        return [r for r in self.lines if r.get("aws") == what]


def run(scenario: Path | str, *extra: str, timeout: float = 400) -> Run:
    proc = subprocess.run(
        [sys.executable, "-m", "infra.local", "run", "--trainer", "standin", *extra, str(scenario)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return Run(proc.returncode, lines, proc.stderr)


def _texts(messages: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(m) for m in messages)


def test_a_job_trains_reports_and_cleans_up() -> None:
    r = run(SCENARIOS / "train_succeeds.yaml")
    assert r.code == 0, r.why()
    (job,) = r.final["jobs"]
    assert job["status"] == "SUCCEEDED"
    assert job["best_map50"] >= 0.8 and job["map50"] >= 0.8
    (attempt,) = job["attempts"]
    assert attempt["market"] == "spot" and attempt["state"] == "terminated"
    assert attempt["instance_type"] in {
        "g4dn.xlarge",
        "g4dn.2xlarge",
        "g6.xlarge",
        "g5.xlarge",
        "g6.2xlarge",
        "g5.2xlarge",
        "p3.2xlarge",
    }
    names = {a["name"] for a in job["artifacts"]}
    assert {"best", "last"} <= {n.split(".")[0] for n in names}
    # Below the ARN of the instance that wrote them, the one place its role may write.
    own = f"jobs/{job['job']}/by/arn:aws:ec2:us-east-1:123456789012:instance/{attempt['instance_id']}/artifacts/"
    assert all(len(a["sha256"]) == 64 and a["key"].startswith(own) for a in job["artifacts"]), job["artifacts"]
    assert r.final["instances"] == [{"instance_id": attempt["instance_id"], "job": job["job"], "state": "terminated"}]

    # The channel: one card, updated in place; replies in its thread; the ack was ephemeral and immediate.
    posts = r.slack("chat.postMessage")
    cards = [p for p in posts if not p.get("thread_ts")]
    assert len(cards) == 1
    replies = [p for p in posts if p.get("thread_ts")]
    assert replies, "phase changes, best mAP and the result go to the card's thread"
    assert r.slack("chat.update"), "the card is updated in place"
    assert "SUCCEEDED" in _texts(r.slack("chat.update")[-1:]) or "Succeeded" in _texts(r.slack("chat.update")[-1:])
    assert job["job"] in _texts(r.responses())
    # AWS side: launched from the template, terminated by the agent's own power-off.
    (launched,) = r.aws("instance launched")
    assert launched["job"] == job["job"] and launched["market"] == "spot"
    assert [t["reason"] for t in r.aws("instance terminated")] == ["shutdown -h now"]
    delivered = {e["detail-type"] for e in r.aws("event delivered")}
    assert {"Job Queued", "Job Launched", "Job Phase", "Job Progress", "Job Metric", "Job Finished"} <= delivered


def test_a_failing_training_ends_failed_with_the_reason_in_the_thread() -> None:
    r = run(SCENARIOS / "train_fails.yaml")
    assert r.code == 0, r.why()
    (job,) = r.final["jobs"]
    assert job["status"] == "FAILED" and job["artifacts"] == []
    assert [a["state"] for a in job["attempts"]] == ["terminated"]
    replies = _texts([p for p in r.slack("chat.postMessage") if p.get("thread_ts")])
    assert "train" in replies and "CUDA out of memory" in replies


def test_bad_requests_get_specific_errors_and_create_nothing() -> None:
    r = run(SCENARIOS / "bad_requests.yaml")
    assert r.code == 0, r.why()
    texts = [json.dumps(a) for a in r.responses()]
    assert len(texts) == 5
    assert "cats" in texts[0] and "shapes" in texts[0]
    assert "yolov99" in texts[1] and "yolov8n" in texts[1]
    assert "epochs=lots" in texts[2]
    assert "lr" in texts[3] and "epochs" in texts[3]
    assert "model" in texts[4].lower()
    assert all(a.get("response_type", "ephemeral") == "ephemeral" for a in r.responses())
    assert r.slack("chat.postMessage") == [] and r.aws("instance launched") == []
    assert r.final == {"jobs": [], "instances": []}


def test_unsigned_stale_and_replayed_requests_create_nothing() -> None:
    r = run(SCENARIOS / "signatures.yaml")
    assert r.code == 0, r.why()
    statuses = [a.get("status") for a in r.responses()]
    assert statuses[:3] == [401, 401, 401] and statuses[3:] == [None, None]
    assert len(r.final["jobs"]) == 1 and len(r.final["instances"]) == 1
    assert len([p for p in r.slack("chat.postMessage") if not p.get("thread_ts")]) == 1
    assert len(r.aws("instance launched")) == 1


def test_a_wait_that_times_out_exits_1_with_the_final_line(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text('- slash: "/train shapes yolov8n epochs=2000"\n- wait: {job: last, status: SUCCEEDED, timeout: 3}\n')
    r = run(f)
    assert r.code == 1
    assert r.final["jobs"][0]["status"] in ("LAUNCHING", "RUNNING")
    assert any(e.get("scenario") == "wait failed" for e in r.lines)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read scenario"),
        ("- shout: hi\n", "unknown step `shout`"),
        ('- slash: "/train x y"\n  colour: red\n', "colour"),
        ("- wait: {job: last, status: DONE}\n", "status"),
        ("just text\n", "a non-empty YAML list"),
    ],
)
def test_bad_scenarios_are_rejected_clearly(tmp_path: Path, content: str | None, message: str) -> None:
    f = tmp_path / "bad.yaml"
    if content is not None:
        f.write_text(content)
    r = run(f if content is not None else tmp_path / "missing.yaml", timeout=60)
    assert r.code == 2 and r.lines == []
    assert message in r.stderr and "Traceback" not in r.stderr


demo_env = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None or importlib.util.find_spec("torch") is None,
    reason="the demo environment (torch + ultralytics) is not installed; `make demo` installs it",
)


@pytest.mark.demo_env
@demo_env
def test_the_demo_trains_for_real() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "infra.local", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=1200
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary["status"] == "SUCCEEDED" and summary["map50"] >= 0.8
    assert summary["weights_sha256_verified"] is True and summary["instance_state"] == "terminated"
    assert summary["attempts"] == 1
