"""End to end: a darknet build made by one job is promoted into the build cache and restored by the next job."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.test_scenarios import SCENARIOS, Run, run


def _thread(r: Run, job: str) -> str:
    """The texts of the replies in the thread under `job`'s card."""
    cards = {u["ts"] for u in r.slack("chat.update") if job in json.dumps(u)}
    return "\n".join(p.get("text", "") for p in r.slack("chat.postMessage") if p.get("thread_ts") in cards)


def _metrics(r: Run, name: str) -> list[float]:
    """The values of one metric the in-process Lambdas published (CloudWatch in AWS, stderr here)."""
    return [value for record in _json_records(r.stderr) if "_aws" in record for value in record.get(name, [])]


def _json_records(text: str) -> list[dict[str, Any]]:
    """Every JSON object printed, also where two threads' prints met on one line (print's newline comes last)."""
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        i = line.find("{")
        while i != -1:
            try:
                record, end = decoder.raw_decode(line, i)
            except ValueError:
                i = line.find("{", i + 1)
                continue
            if isinstance(record, dict):
                out.append(record)
            i = line.find("{", end)
    return out


def test_the_second_job_of_a_recipe_restores_the_build_of_the_first() -> None:
    r = run(SCENARIOS / "build_cache.yaml", timeout=900)
    assert r.code == 0, r.why()
    first, second = r.final["jobs"]
    assert (first["status"], second["status"]) == ("SUCCEEDED", "SUCCEEDED")
    assert [a["state"] for job in (first, second) for a in job["attempts"]] == ["terminated", "terminated"]
    assert {i["state"] for i in r.final["instances"]} == {"terminated"}
    assert first["map50"] and second["map50"]

    # Only the first job built, so only its build was offered to the cache, and the cache function took it.
    offered = [e["job"] for e in r.aws("event delivered") if e["detail-type"] == "Job Build Ready"]
    assert offered == [first["job"]]
    assert _metrics(r, "BuildsPromoted") == [1.0]
    assert _metrics(r, "BuildsRefused") == _metrics(r, "BuildsAlreadyCached") == []

    # The channel: the first thread shows the build running, the second the build coming from the cache.
    built, restored = _thread(r, first["job"]), _thread(r, second["job"])
    assert "build started" in built and "build restored from cache" not in built
    assert "build restored from cache" in restored
