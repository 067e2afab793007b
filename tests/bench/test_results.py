"""The figures every benchmark reports, and how `make bench` gathers them into bench/results.json."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bench import __main__ as bench_main
from bench.results import RESULTS_ENV, Result, at_least, at_most, gather, publish, table


def test_a_target_is_met_on_its_side_of_the_limit() -> None:
    assert at_most("ack", 9.99, "ms", 10).meets and at_most("ack", 10, "ms", 10).meets
    assert not at_most("ack", 10.01, "ms", 10).meets
    assert at_least("ratio", 0.98, "x", 0.98).meets and not at_least("ratio", 0.9799, "x", 0.98).meets
    assert at_most("ack", 3.14159, "ms", 10, "bare 2 ms").row() == {
        "name": "ack",
        "value": 3.142,
        "unit": "ms",
        "target": "<= 10",
        "baseline": "bare 2 ms",
        "meets": True,
    }


def test_publish_prints_a_table_and_appends_where_make_bench_gathers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = tmp_path / "results.jsonl"
    monkeypatch.setenv(RESULTS_ENV, str(where))
    out = io.StringIO()
    assert publish([at_most("a", 1, "s", 2, "b 1 s")], out=out) == 0
    assert publish([at_least("c", 1, "x", 2)], out=out, faults=[{"row": "spot", "outcome": "ok", "seconds": 3}]) == 1
    text = out.getvalue()
    assert "MISSED" in text and "b 1 s" in text and "<= 2" in text
    assert gather(where) == {
        "results": [
            {"name": "a", "value": 1, "unit": "s", "target": "<= 2", "baseline": "b 1 s", "meets": True},
            {"name": "c", "value": 1, "unit": "x", "target": ">= 2", "baseline": None, "meets": False},
        ],
        "faults": [{"row": "spot", "outcome": "ok", "seconds": 3}],
    }


def test_publish_outside_make_bench_only_prints(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert publish([at_most("a", 1, "s", 2)], out=io.StringIO()) == 0
    assert list(tmp_path.iterdir()) == []


def test_the_table_has_every_column() -> None:
    lines = table([Result("figure one", 1.5, "s", "<= 2", None, True)]).splitlines()
    assert lines[0].split() == ["figure", "value", "unit", "target", "baseline", "(same", "run)"]
    assert lines[2].split() == ["figure", "one", "1.5", "s", "<=", "2", "-", "ok"]


def test_an_unknown_benchmark_is_named_with_the_ones_there_are(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main.main(["nope"]) == 2
    err = capsys.readouterr().err
    assert "no benchmark named nope" in err and "parsers" in err


def test_make_bench_writes_results_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_main, "RESULTS_FILE", tmp_path / "results.json")
    monkeypatch.setenv("BENCH_PARSER_LINES", "5000")
    code = bench_main.main(["parsers"])
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["benchmarks"] == ["parsers"] and doc["did_not_run"] == []
    assert len(doc["results"]) == 5 and all(r["unit"] == "lines/s" and r["baseline"] for r in doc["results"])
    assert code == (0 if all(r["meets"] for r in doc["results"]) else 1)
