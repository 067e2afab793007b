"""Makes one attempt's events and offers them to the emitter (never blocking), keeps what the trainer has
completed (what a checkpoint holds), and says the agent is alive when nothing else has been said for a while.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from agent import tuning
from agent.emitter import Emitter
from agent.parsers.base import Metric, Parsed, Progress
from spotter.events import JobEvent, JobHeartbeat, JobMetric, JobProgress, Phase

log = logging.getLogger(__name__)
E = TypeVar("E", bound=JobEvent)

HEARTBEAT_SECONDS = 60.0
# How many "completed" marks are kept to date a checkpoint file by (one per epoch or progress line).
READ_SLACK = 0.5  # seconds: how late a completion's line may be parsed after the trainer printed it
HISTORY = 10_000


def heartbeat_due(last_offered: float, now: float, interval: float) -> bool:
    return now - last_offered >= interval


class Reporter:
    def __init__(
        self,
        emitter: Emitter,
        job_id: str,
        attempt: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.emitter = emitter
        self.job_id = job_id
        self.attempt = attempt
        self.clock = clock
        self.wall = wall
        self.current = 0  # the epoch or iteration in progress
        self.phase: Phase | None = None
        self.last_offered = clock()
        self._lock = threading.Lock()
        # (wall time, epoch or iteration completed by then), in time order: what a file written at t holds.
        self._times: list[float] = []
        self._completed: list[int] = []
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def event(self, cls: type[E], **fields: Any) -> E:
        """One of this attempt's events, not yet offered."""
        return cls(job_id=self.job_id, attempt=self.attempt, **fields)

    def emit(self, cls: type[JobEvent], **fields: Any) -> None:
        self.emitter.offer(self.event(cls, **fields))
        self.last_offered = self.clock()

    # -- what the trainer has done ------------------------------------------------------------------------------

    def _completed_now(self, value: int) -> None:
        with self._lock:
            self._times.append(self.wall())
            self._completed.append(value)
            if len(self._times) > HISTORY:
                del self._times[: len(self._times) - HISTORY]
                del self._completed[: len(self._completed) - HISTORY]

    @property
    def completed(self) -> int | None:
        """The last epoch (validated) or iteration (reported) the trainer completed, None before the first."""
        with self._lock:
            return self._completed[-1] if self._completed else None

    def completed_by(self, when: float) -> int | None:
        """What the trainer had completed at wall time `when` (a checkpoint file's mtime): what the file holds.

        A completion is timed when its line is parsed, a moment after the trainer printed it and so possibly
        after the checkpoint written right behind it: a completion up to half the shortest recent interval
        between completions (at most READ_SLACK seconds) after `when` still counts."""
        with self._lock:
            recent = self._times[-8:]
            gaps = [b - a for a, b in itertools.pairwise(recent)]
            slack = min([READ_SLACK, *(g / 2 for g in gaps)])
            i = bisect.bisect_right(self._times, when + slack)
            return self._completed[i - 1] if i else None

    def on_parsed(self, item: Parsed) -> None:
        if isinstance(item, Progress):
            self.current = item.current
            if item.unit == "iteration":
                self._completed_now(item.current)
            self.emit(
                JobProgress,
                unit=item.unit,
                current=item.current,
                total=item.total,
                loss=item.loss,
                eta_seconds=item.eta_seconds,
            )
        elif isinstance(item, Metric):
            # The final validation of best weights carries no epoch of its own: it belongs to the last one.
            current = self.current if item.current is None else item.current
            if item.unit == "epoch" and item.current is not None:
                # YOLO frameworks validate an epoch, then save last.pt: the file after this holds this epoch.
                self._completed_now(item.current)
            self.emit(
                JobMetric,
                unit=item.unit,
                current=current,
                map50=item.map50,
                map50_95=item.map50_95,
                precision=item.precision,
                recall=item.recall,
            )

    # -- heartbeat ----------------------------------------------------------------------------------------------

    def start_heartbeat(self, interval: float | None = None) -> None:
        """From a daemon thread: a JobHeartbeat whenever nothing was offered for `interval` seconds."""
        every = tuning.seconds("SPOTTER_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS) if interval is None else interval
        self._heartbeat = threading.Thread(target=self._beat, args=(every,), name="spotter-heartbeat", daemon=True)
        self._heartbeat.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(max(0.05, min(interval, interval - (self.clock() - self.last_offered)))):
            if heartbeat_due(self.last_offered, self.clock(), interval):
                try:
                    self.emit(JobHeartbeat, phase=self.phase)
                except Exception:
                    log.exception("making a heartbeat failed")
