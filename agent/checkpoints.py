"""Checkpoint sync: while training runs, the framework's newest checkpoint goes to the job's checkpoint key (with its
sha256) as soon as it is whole, from threads of its own, so training never waits on S3.

One watcher thread looks at the recipe's checkpoint path; a file counts once its size and mtime have held still
for STABLE_SECONDS (a half-written file is never sent). One uploader thread sends it: a staged copy, so the trainer
can rewrite its file meanwhile. There is one pending slot: a newer file replaces a queued older one.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent import tuning
from agent.globs import newest
from agent.reporter import Reporter
from agent.uploader import Uploader
from spotter.events import Artifact, JobCheckpoint

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
STABLE_SECONDS = 2.0


@dataclass(frozen=True)
class Signature:
    path: Path
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, path: Path) -> Signature | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return cls(path, st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class Synced:
    artifact: Artifact
    current: int | None  # the epoch or iteration it holds
    signature: Signature


class Stability:
    """Decides when a file has held still long enough to be sent (pure over signatures and times)."""

    def __init__(self, stable: float) -> None:
        self.stable = stable
        self.seen: Signature | None = None
        self.since = 0.0

    def observe(self, sig: Signature | None, now: float) -> Signature | None:
        """The signature to send, once `sig` has been the same for `stable` seconds; else None."""
        if sig != self.seen:
            self.seen, self.since = sig, now
            return None
        if sig is not None and now - self.since >= self.stable:
            return sig
        return None


class CheckpointSync:
    def __init__(
        self,
        pattern: Path,
        *,
        uploader: Uploader,
        reporter: Reporter,
        staging: Path,
        poll: float | None = None,
        stable: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pattern = pattern
        self.uploader = uploader
        self.reporter = reporter
        self.staging = staging
        self.poll = tuning.seconds("SPOTTER_CHECKPOINT_POLL_SECONDS", POLL_SECONDS) if poll is None else poll
        self.stability = Stability(
            tuning.seconds("SPOTTER_CHECKPOINT_STABLE_SECONDS", STABLE_SECONDS) if stable is None else stable
        )
        self.clock = clock
        self.last: Synced | None = None
        self._cond = threading.Condition()
        self._pending: Signature | None = None
        self._uploading: Signature | None = None
        self._queued_or_sent: Signature | None = None
        self._stopping = False
        self._wake = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="spotter-checkpoint-watch", daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name="spotter-checkpoint-send", daemon=True)

    def start(self) -> CheckpointSync:
        self._watcher.start()
        self._sender.start()
        return self

    def sync_now(self) -> None:
        """Look at the checkpoint now rather than at the next poll (a rebalance recommendation)."""
        self._wake.set()

    # -- watching -----------------------------------------------------------------------------------------------

    def _watch(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
            try:
                self.look()
            except Exception:
                log.exception("looking for a new checkpoint at %s failed", self.pattern)
            self._wake.wait(self.poll)
            self._wake.clear()

    def look(self) -> None:
        """One look at the checkpoint path: queue the newest file once it is whole and not yet sent."""
        path = newest(self.pattern)
        sig = None if path is None else Signature.of(path)
        ready = self.stability.observe(sig, self.clock())
        if ready is not None:
            self.offer(ready)

    def offer(self, sig: Signature) -> None:
        """Queue `sig` for upload unless it is what was queued or sent last; a newer file replaces a queued one."""
        with self._cond:
            if sig == self._queued_or_sent:
                return
            self._queued_or_sent = sig
            self._pending = sig
            self._cond.notify_all()

    # -- sending ------------------------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stopping:
                    self._cond.wait()
                if self._pending is None:
                    return
                sig, self._pending = self._pending, None
                self._uploading = sig
            try:
                self.send(sig)
            except Exception as e:
                log.warning("syncing the checkpoint %s failed: %s", sig.path, e)
            finally:
                with self._cond:
                    self._uploading = None
                    self._cond.notify_all()

    def send(self, sig: Signature) -> Synced | None:
        """Upload a staged copy of the file `sig` describes; None if the file changed while it was copied."""
        current = self.reporter.completed_by(sig.mtime_ns / 1e9)
        self.staging.mkdir(parents=True, exist_ok=True)
        staged = self.staging / f"{self.pattern.name.replace('*', '_')}.sync"
        shutil.copyfile(sig.path, staged)
        if Signature.of(sig.path) != sig:
            log.info("checkpoint %s changed while it was staged: waiting for the next one", sig.path)
            return None
        try:
            artifact = self.uploader.upload_checkpoint(staged, sig.path.suffix)
        finally:
            staged.unlink(missing_ok=True)
        synced = Synced(artifact, current, sig)
        with self._cond:
            self.last = synced
        log.info("checkpoint %s synced to %s (holds %s)", sig.path.name, artifact.key, current)
        self.reporter.emit(JobCheckpoint, artifact=artifact, current=current)
        return synced

    # -- the end ------------------------------------------------------------------------------------------------

    def stop(self, timeout: float) -> bool:
        """Stop watching and wait (up to `timeout`) for an upload in flight; a queued one is dropped."""
        with self._cond:
            self._stopping = True
            self._pending = None
            self._cond.notify_all()
            self._wake.set()
            deadline = self.clock() + timeout
            while self._uploading is not None:
                left = deadline - self.clock()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def final(self, timeout: float) -> Synced | None:
        """After the trainer has stopped: wait for the upload in flight, then send the newest file if it was not
        sent yet (no writer is left to half-write it). Returns the checkpoint the job can resume from, if any."""
        started = self.clock()
        if not self.stop(timeout):
            log.warning("a checkpoint upload was still running after %.0fs: using the last one synced", timeout)
            return self.last
        path = newest(self.pattern)
        sig = None if path is None else Signature.of(path)
        if sig is None:
            log.info("no checkpoint at %s", self.pattern)
            return self.last
        if self.last is not None and self.last.signature == sig:
            return self.last
        result: list[Synced | None] = []

        def send() -> None:
            try:
                result.append(self.send(sig))
            except Exception as e:
                log.warning("uploading the checkpoint %s failed: %s", sig.path, e)

        sender = threading.Thread(target=send, name="spotter-checkpoint-final", daemon=True)
        sender.start()
        sender.join(max(0.0, timeout - (self.clock() - started)))
        if sender.is_alive():
            log.warning(
                "uploading the checkpoint %s took longer than %.0fs: using the last one synced", sig.path, timeout
            )
        return self.last
