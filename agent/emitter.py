"""Gets the agent's events onto the bus from a background thread, so reporting never holds back training.

`offer()` never blocks. Progress is coalesced (the latest wins, at most one per interval); milestones
(phase, metric, checkpoint, error, finished) go out at once, in order, and are retried until they get
out. Each event is stamped with `seq` when offered: EventBridge does not keep order, consumers use it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from agent import tuning
from spotter.events import JobEvent, JobProgress

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 15.0
# Milestones waiting while the bus is unreachable; a job's whole history fits many times over.
MAX_PENDING = 50_000
MAX_BATCH = 10
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0


class EventSink(Protocol):
    def put(self, events: Sequence[JobEvent]) -> None: ...


class Emitter:
    def __init__(
        self,
        bus: EventSink,
        *,
        progress_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.interval = (
            tuning.seconds("SPOTTER_PROGRESS_INTERVAL", PROGRESS_INTERVAL)
            if progress_interval is None
            else progress_interval
        )
        self.clock = clock
        self.dropped = 0
        self._cond = threading.Condition()
        self._seq = 0
        self._milestones: collections.deque[JobEvent] = collections.deque()
        self._progress: JobEvent | None = None
        self._next_progress_at = 0.0
        self._inflight: list[JobEvent] = []
        self._retry_at = 0.0
        self._failures = 0
        self._closing = False
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, name="spotter-emitter", daemon=True)

    def start(self) -> Emitter:
        self._thread.start()
        return self

    def offer(self, event: JobEvent) -> JobEvent:
        """Queue an event for the bus and return at once, whatever state the bus is in: the event with its seq."""
        with self._cond:
            self._seq += 1
            stamped = event.model_copy(update={"seq": self._seq})
            if isinstance(event, JobProgress):
                self._progress = stamped
            elif len(self._milestones) >= MAX_PENDING:
                self.dropped += 1
                if self.dropped == 1:
                    log.error("the bus has been unreachable for %d events: dropping milestones", MAX_PENDING)
                return stamped
            else:
                self._milestones.append(stamped)
            self._cond.notify()
        return stamped

    def pending(self) -> int:
        with self._cond:
            return len(self._inflight) + len(self._milestones) + (self._progress is not None)

    def close(self, timeout: float) -> bool:
        """Send what is queued (progress included, interval or not) within `timeout`; True if all got out."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            with self._cond:
                self._abandoned = True
                self._cond.notify()
            log.warning("emitter closed with %d event(s) not on the bus", self.pending())
            return False
        return self.pending() == 0

    def _next_batch(self) -> list[JobEvent] | None:
        """Wait (holding the condition) until a batch is due; None when closed and drained, or abandoned."""
        while True:
            if self._abandoned:
                return None
            now = self.clock()
            if self._inflight:
                if now >= self._retry_at:
                    return self._inflight
                self._cond.wait(self._retry_at - now)
                continue
            # Progress older than a queued milestone goes with it: the channel reads the events in order.
            progress_due = self._progress is not None and (
                self._closing
                or now >= self._next_progress_at
                or (bool(self._milestones) and self._progress.seq < self._milestones[-1].seq)
            )
            if self._milestones or progress_due:
                room = MAX_BATCH - 1 if progress_due else MAX_BATCH
                batch = [self._milestones.popleft() for _ in range(min(room, len(self._milestones)))]
                if progress_due and self._progress is not None:
                    batch.append(self._progress)
                    self._progress = None
                    self._next_progress_at = now + self.interval
                batch.sort(key=lambda e: e.seq)
                self._inflight = batch
                return batch
            if self._closing:
                return None
            self._cond.wait(self._next_progress_at - now if self._progress is not None else None)

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
            if batch is None:
                return
            try:
                self.bus.put(batch)
            except Exception as e:
                # At least once: a batch EventBridge partly took is sent again whole; consumers dedupe by seq.
                with self._cond:
                    delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2**self._failures)
                    self._failures += 1
                    self._retry_at = self.clock() + delay
                log.warning("putting %d event(s) on the bus failed (%s); retrying in %.1fs", len(batch), e, delay)
                continue
            with self._cond:
                self._inflight = []
                self._failures = 0
