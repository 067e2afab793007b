"""Recognise the failures every framework shows the same way: CUDA OOM, the OOM killer, Python tracebacks,
and native crashes (a failed C assertion, a segfault, an abort).

NaN losses are not here: only a framework's parser knows which field is the loss.
"""

from __future__ import annotations

import re

from agent.parsers.base import ErrorKind, ErrorSeen, Parsed

_OOM = re.compile(
    r"CUDA out of memory|CUDA [Ee]rror[^:]*: out of memory|cudaErrorMemoryAllocation"
    r"|CUDNN_STATUS_ALLOC_FAILED|CUBLAS_STATUS_ALLOC_FAILED"
)
# A shell's job report ("line 1:  4242 Killed  python train.py"), the kernel's OOM killer,
# and PyTorch's DataLoader losing a worker to it.
_KILLED = re.compile(r"(?:^|\s)\d+\s+Killed(?:\s|$)|Killed process \d+|oom-kill|killed by signal: Killed")
# darknet ends on `assert(0)` after a CUDA error ("darknet: ./src/utils.c:331: error: Assertion `0' failed."),
# and the shell then reports the abort; a segfault shows only the shell's report.
_NATIVE_CRASH = re.compile(r"Assertion [`'].*' failed|Segmentation fault|\(core dumped\)")
_TRACEBACK = "Traceback (most recent call last):"
# What Python prints between the tracebacks of one chained exception.
_CHAIN_MARKERS = ("During handling of the above exception", "The above exception was the direct cause")

# Where the watch is in a traceback: outside one, in its frames, just past its exception line
# (a chain marker may follow), or between the tracebacks of a chain.
_IDLE, _IN_TRACEBACK, _ENDED, _CHAINED = 0, 1, 2, 3


def may_show_failure(line: str) -> bool:
    """False for a line that cannot show a failure: a few one-character tests, far cheaper than the patterns.

    Each test is a memchr, several times cheaper than a substring search. Every failure `ErrorWatch` looks for
    has an "l", "m" or "F" (which most progress rows lack), and these characters: "y" or "F" an OOM ("memory",
    "ALLOC_FAILED"), "K" or "-" and "k" a kill ("Killed", "oom-kill"), "'" or "S" a native crash ("Assertion `0'
    failed", "Segmentation fault"), "(" and "T" or "p" the traceback header and "(core dumped)". The pairs keep
    progress rows, which often hold one of the two characters, on the cheap path.
    """
    return ("l" in line or "m" in line or "F" in line) and (
        "y" in line
        or "F" in line
        or "K" in line
        or "'" in line
        or "S" in line
        or ("-" in line and "k" in line)
        or ("(" in line and ("T" in line or "p" in line))
    )


class ErrorWatch:
    """Checks each line for framework-independent failures.

    A traceback is reported once, as a crash whose line is the exception it ends with
    ("RuntimeError: …" says more than the header); the tracebacks of a chained exception count as one.
    If the log stops inside a traceback, `pending()` reports it with its header line.
    """

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self._state = _IDLE
        # The text before "Traceback" (torch prefixes each rank's lines, e.g. "[rank0]: ").
        self._tb_prefix = ""
        self._tb_header = ""
        self._tb_reported = False
        # A native crash was reported and nothing has been parsed since: the abort that follows is the same crash.
        self._native_crash = False

    def check(self, line: str, out: list[Parsed]) -> None:
        """Append what this line shows to `out` (which holds what the framework parser made of the line)."""
        if self._state or self._native_crash or may_show_failure(line):
            self._check(line, out)

    def _check(self, line: str, out: list[Parsed]) -> None:
        parsed = bool(out)
        if _TRACEBACK in line:
            self._start_traceback(line, out)
        elif self._state:
            self._follow_traceback(line, out)
        # Cheap substring tests first: the regexes run on a handful of lines per run.
        if ("emory" in line or "ALLOC_FAILED" in line) and _OOM.search(line):
            self._once("oom", line.strip(), out)
        if ("Killed" in line or "oom-kill" in line) and (line.strip() == "Killed" or _KILLED.search(line)):
            self._once("killed", line.strip(), out)
        if ("ssertion" in line or "core dumped" in line or "Segmentation fault" in line) and _NATIVE_CRASH.search(line):
            if not self._native_crash:
                self._native_crash = True
                self._once("crash", line.strip(), out)
        elif parsed and self._native_crash:
            self._native_crash = False  # training went on: a later native crash is a new one

    def pending(self) -> ErrorSeen | None:
        """The crash of a traceback that has not reached its exception line yet."""
        if self._state == _IN_TRACEBACK and not self._tb_reported:
            return ErrorSeen("crash", self._tb_header)
        return None

    def _once(self, kind: ErrorKind, line: str, out: list[Parsed]) -> None:
        # The same OOM, kill or exception is often printed by every rank, re-raised by the caller, or repeated
        # with the C library's reason appended ("CUDA Error: out of memory: No such file or directory"):
        # report it once.
        key = (kind, line)
        if key in self._seen or any(k == kind and line.startswith(seen) for k, seen in self._seen):
            self._seen.add(key)
            return
        self._seen.add(key)
        out.append(ErrorSeen(kind, line))

    def _start_traceback(self, line: str, out: list[Parsed]) -> None:
        if self._state == _CHAINED:
            # The next traceback of a chain belongs to the crash already reported.
            self._tb_reported = True
        else:
            pending = self.pending()
            if pending:
                out.append(pending)
            self._tb_reported = False
        self._state = _IN_TRACEBACK
        self._tb_prefix = line[: line.index(_TRACEBACK)]
        self._tb_header = line.strip()

    def _follow_traceback(self, line: str, out: list[Parsed]) -> None:
        prefix = self._tb_prefix
        body = line[len(prefix) :] if prefix and line.startswith(prefix) else line
        if not body.strip():
            return
        if self._state == _IN_TRACEBACK:
            if body[0] in " \t":
                return  # a frame: "  File …" and its source line
            # The first unindented line closes the traceback: it is the exception.
            if not self._tb_reported:
                self._once("crash", line.strip(), out)
            self._state = _ENDED
        elif body.startswith(_CHAIN_MARKERS):
            self._state = _CHAINED
        else:
            self._state = _IDLE
