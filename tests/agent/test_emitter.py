"""The emitter: never blocks its producer, coalesces progress, keeps milestones whole and in order."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent import emitter as emitter_mod
from agent.emitter import Emitter
from agent.parsers.base import Metric, Parsed, Progress
from agent.runner import PhaseRunner
from spotter.events import JobError, JobEvent, JobFinished, JobMetric, JobPhase, JobProgress

JOB = "shapes-abc234"


class FakeBus:
    """Records batches; can be slow, and can fail its first `fail_times` calls (or all of them)."""

    def __init__(self, delay: float = 0.0, fail_times: int = 0) -> None:
        self.delay = delay
        self.fail_times = fail_times
        self.calls = 0
        self.batches: list[list[JobEvent]] = []
        self._lock = threading.Lock()

    def put(self, events: Sequence[JobEvent]) -> None:
        with self._lock:
            self.calls += 1
            call = self.calls
        time.sleep(self.delay)
        if call <= self.fail_times:
            raise ConnectionError("bus unreachable")
        with self._lock:
            self.batches.append(list(events))

    @property
    def events(self) -> list[JobEvent]:
        with self._lock:
            return [e for b in self.batches for e in b]


def progress(current: int) -> JobProgress:
    return JobProgress(job_id=JOB, unit="epoch", current=current, total=100)


def metric(current: int) -> JobMetric:
    return JobMetric(job_id=JOB, unit="epoch", current=current, map50=0.5)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emitter_mod, "RETRY_BASE_SECONDS", 0.05)
    monkeypatch.setattr(emitter_mod, "RETRY_MAX_SECONDS", 0.2)


def test_milestones_arrive_whole_in_order_with_increasing_seq() -> None:
    bus = FakeBus()
    em = Emitter(bus, progress_interval=60).start()
    offered: list[JobEvent] = [JobPhase(job_id=JOB, phase="train", state="started")]
    offered += [metric(i) for i in range(1, 31)]
    offered.append(JobFinished(job_id=JOB, artifacts=[]))
    for e in offered:
        em.offer(e)

    assert em.close(5)
    got = bus.events
    assert [e.model_dump(exclude={"seq"}) for e in got] == [e.model_dump(exclude={"seq"}) for e in offered]
    assert [e.seq for e in got] == list(range(1, len(offered) + 1))
    assert all(len(b) <= 10 for b in bus.batches)


def test_progress_is_coalesced_latest_wins() -> None:
    bus = FakeBus()
    em = Emitter(bus, progress_interval=0.3).start()
    started = time.monotonic()
    current = 0
    while time.monotonic() - started < 1.0:
        current += 1
        em.offer(progress(current))
        time.sleep(0.002)
    assert em.close(5)

    sent = [e for e in bus.events if isinstance(e, JobProgress)]
    # At most one per interval (plus the flush at close), each newer than the last, ending with the latest.
    assert 2 <= len(sent) <= 1.0 / 0.3 + 2
    assert [p.current for p in sent] == sorted(p.current for p in sent)
    assert sent[-1].current == current


def test_progress_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTTER_PROGRESS_INTERVAL", "1.5")
    assert Emitter(FakeBus()).interval == 1.5
    monkeypatch.delenv("SPOTTER_PROGRESS_INTERVAL")
    assert Emitter(FakeBus()).interval == emitter_mod.PROGRESS_INTERVAL


def test_offer_never_blocks_on_a_slow_bus() -> None:
    bus = FakeBus(delay=2.0)
    em = Emitter(bus, progress_interval=0).start()
    started = time.monotonic()
    for i in range(1, 2001):
        em.offer(metric(i) if i % 2 else progress(i))
    assert time.monotonic() - started < 0.5
    em.close(0.1)


def test_failed_puts_are_retried_and_the_ending_gets_out() -> None:
    bus = FakeBus(fail_times=3)
    em = Emitter(bus, progress_interval=60)
    em.offer(metric(1))
    em.offer(JobError(job_id=JOB, phase="train", kind="oom", message="train exited with status 1"))
    # Started once both are queued, so they make one batch: three failed puts of it, then the one that gets out.
    em.start()

    assert em.close(5)
    assert [type(e).__name__ for e in bus.events] == ["JobMetric", "JobError"]
    assert bus.calls == 4


def test_close_is_bounded_when_the_bus_stays_down() -> None:
    bus = FakeBus(fail_times=10**6)
    em = Emitter(bus, progress_interval=60).start()
    em.offer(JobFinished(job_id=JOB, artifacts=[]))
    started = time.monotonic()
    assert em.close(0.5) is False
    assert time.monotonic() - started < 1.5
    assert em.pending() == 1


class EveryLine:
    """A parser for which every line is a progress report and a validation result."""

    framework = "test"

    def feed(self, line: str) -> list[Parsed]:
        n = int(line.split()[1])
        return [Progress("epoch", n, 300, 1.0), Metric("epoch", n, map50=0.5)]

    def summary(self) -> dict[str, object]:
        return {}


@pytest.mark.parametrize("bus", [FakeBus(delay=2.0), FakeBus(delay=0.5, fail_times=10**6)], ids=["slow", "failing"])
def test_a_slow_or_failing_bus_does_not_slow_the_runner(tmp_path: Path, bus: FakeBus) -> None:
    em = Emitter(bus, progress_interval=0.1).start()

    def on_parsed(item: Parsed) -> None:
        if isinstance(item, Progress):
            em.offer(JobProgress(job_id=JOB, unit=item.unit, current=item.current, total=item.total))
        elif isinstance(item, Metric):
            em.offer(JobMetric(job_id=JOB, unit=item.unit, current=item.current or 0, map50=item.map50))

    child = "import sys\nfor i in range(1, 301):\n    print(f'epoch {i}', flush=True)\n"
    runner = PhaseRunner(tmp_path, on_parsed=on_parsed)
    started = time.monotonic()
    result = runner.run("train", [sys.executable, "-c", child], parser=EveryLine())
    elapsed = time.monotonic() - started

    assert result.ok
    assert elapsed < 1.5, f"the runner took {elapsed:.1f}s behind a bus that takes {bus.delay}s per call"
    assert result.log_path.read_text().splitlines() == [f"epoch {i}" for i in range(1, 301)]
    assert em.pending() >= 290  # all of it still waiting for the bus, none of it lost
    em.close(0)
