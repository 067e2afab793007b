"""Run one phase's command: its own process group, every byte logged as it comes, parsed line by line, under a deadline.

The read loop only writes to a local file and hands parsed items to a callback that must not block
(the emitter's `offer`), so a slow network never holds back the child's output.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Literal

from agent.parsers.base import ErrorSeen, Parsed, Parser
from agent.parsers.lines import LineSplitter

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
# How often the loop wakes without output, to check the deadline and the child.
POLL_SECONDS = 0.2
# Between SIGTERM and SIGKILL: time for a framework to flush its logs and checkpoint.
KILL_GRACE_SECONDS = 10.0
# After the phase's process exits, how long leftovers of its group may keep the pipe open.
DRAIN_SECONDS = 5.0
LAST_LINES = 40

# "stopped": the agent asked the phase to stop (a spot interruption notice, a cancel).
Outcome = Literal["ok", "exit", "killed", "timeout", "stopped"]

# Process groups started here and not yet reaped: killed if the agent itself goes away.
_ACTIVE_GROUPS: set[int] = set()


class Terminated(BaseException):
    """The agent received SIGTERM/SIGHUP. A BaseException, like KeyboardInterrupt, so no handler swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    # Once is enough: a repeated signal must not cut short the report and the power-off that follow.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into `Terminated` in the main thread, so the running phase's group is killed on the way out."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_terminated)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@atexit.register
def kill_active_groups() -> None:
    for pgid in list(_ACTIVE_GROUPS):
        _signal_group(pgid, signal.SIGKILL)
        _ACTIVE_GROUPS.discard(pgid)


def outcome_of(returncode: int, timed_out: bool, stopped: bool = False) -> Outcome:
    """The return-code policy: 0 is success, death by a signal is `killed`, anything else `exit`."""
    if stopped:
        return "stopped"
    if timed_out:
        return "timeout"
    if returncode == 0:
        return "ok"
    return "killed" if returncode < 0 else "exit"


@dataclass(frozen=True)
class PhaseResult:
    phase: str
    outcome: Outcome
    returncode: int
    seconds: float
    last_lines: tuple[str, ...]
    errors: tuple[ErrorSeen, ...]
    log_path: Path

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class PhaseRunner:
    """Runs phase commands in `workdir`, logging each to `workdir/logs/<phase>.log`.

    Setting `stop` (from any thread) stops the running command's process group as the deadline would.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        on_parsed: Callable[[Parsed], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        stop: threading.Event | None = None,
    ) -> None:
        self.workdir = workdir
        self.env = dict(os.environ if env is None else env)
        self.on_parsed = on_parsed
        self.clock = clock
        self.stop = stop

    def log_path(self, phase: str) -> Path:
        return self.workdir / "logs" / f"{phase}.log"

    def run(
        self, phase: str, argv: Sequence[str], *, parser: Parser | None = None, deadline: float | None = None
    ) -> PhaseResult:
        """Run `argv` to completion or until `deadline` (a value of `clock`); never raises for the child's failures."""
        started = self.clock()
        log_path = self.log_path(phase)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        lines: collections.deque[str] = collections.deque(maxlen=LAST_LINES)
        errors: list[ErrorSeen] = []

        def take(text: str) -> None:
            lines.append(text)
            if parser is None:
                return
            try:
                for item in parser.feed(text):
                    if isinstance(item, ErrorSeen):
                        errors.append(item)
                    if self.on_parsed is not None:
                        self.on_parsed(item)
            except Exception:
                # A parser or callback bug costs events, never the phase or its log.
                log.exception("parsing a %s line failed", phase)

        with open(log_path, "ab", buffering=0) as out:
            try:
                proc = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    env=self.env,
                    start_new_session=True,
                )
            except OSError as e:
                message = f"cannot run {argv[0]}: {e}"
                out.write(message.encode() + b"\n")
                return PhaseResult(phase, "exit", 127, self.clock() - started, (message,), (), log_path)
            _ACTIVE_GROUPS.add(proc.pid)
            try:
                timed_out, stopped = self._pump(proc, out.write, take, deadline)
            finally:
                if proc.poll() is None:
                    # Leaving early (the agent is being stopped): the phase must not outlive it.
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.wait()
                _ACTIVE_GROUPS.discard(proc.pid)
        seconds = self.clock() - started
        outcome = outcome_of(proc.returncode, timed_out, stopped)
        log.info("%s: %s (status %s) after %.1fs", phase, outcome, proc.returncode, seconds)
        return PhaseResult(phase, outcome, proc.returncode, seconds, tuple(lines), tuple(errors), log_path)

    def _pump(
        self,
        proc: subprocess.Popen[bytes],
        write: Callable[[bytes], object],
        take: Callable[[str], None],
        deadline: float | None,
    ) -> tuple[bool, bool]:
        """Copy the child's output until it and its pipe are done; returns whether the deadline, and whether
        `stop`, ended it."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        splitter = LineSplitter()
        timed_out = False
        stopped = False
        kill_at: float | None = None
        drain_until: float | None = None
        eof = False
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                now = self.clock()
                exited = proc.poll() is not None
                if exited and eof:
                    break
                if exited and drain_until is None:
                    drain_until = now + DRAIN_SECONDS
                if drain_until is not None and now >= drain_until:
                    # Something the phase started still holds the pipe: end it with the phase.
                    _signal_group(proc.pid, signal.SIGKILL)
                    break
                if deadline is not None and not timed_out and not stopped and now >= deadline:
                    timed_out = True
                    log.warning("deadline reached: stopping process group %d", proc.pid)
                    _signal_group(proc.pid, signal.SIGTERM)
                    kill_at = now + KILL_GRACE_SECONDS
                if self.stop is not None and not stopped and not timed_out and not exited and self.stop.is_set():
                    stopped = True
                    log.warning("asked to stop: stopping process group %d", proc.pid)
                    _signal_group(proc.pid, signal.SIGTERM)
                    kill_at = now + KILL_GRACE_SECONDS
                if kill_at is not None and now >= kill_at:
                    _signal_group(proc.pid, signal.SIGKILL)
                    kill_at = None
                if eof:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(POLL_SECONDS)
                    continue
                if not sel.select(POLL_SECONDS):
                    continue
                try:
                    chunk = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    continue
                if not chunk:
                    eof = True
                    sel.unregister(fd)
                    continue
                write(chunk)
                for text in splitter.feed(chunk):
                    take(text)
        for text in splitter.flush():
            take(text)
        proc.stdout.close()
        proc.wait()
        return timed_out, stopped
