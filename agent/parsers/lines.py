"""Cut a training process's raw output into the logical lines the parsers read.

Progress bars redraw with `\\r`, so `\\r` ends a line as `\\n` does (CRLF counts once); ANSI escapes
(colours, `ESC[K`, cursor moves) are removed; bytes are decoded as UTF-8 even when a character is
split across reads.
"""

from __future__ import annotations

import codecs
import re

# CSI sequences (colours, ESC[K, cursor moves), OSC sequences (titles, links), two-byte escapes;
# a lone ESC left by a truncated sequence goes too.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])?")
_BREAK = re.compile(r"(\r\n|\r|\n)")
# A process that never ends a line (a runaway bar, binary output) must not grow the buffer forever.
MAX_LINE = 64 * 1024


class LineSplitter:
    """Incremental splitter: `feed(bytes)` returns the lines completed so far, `flush()` the rest at EOF."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = ""

    def feed(self, data: bytes) -> list[str]:
        text = self._tail + self._decoder.decode(data)
        # A trailing "\r" may be the first half of a CRLF that the next read completes.
        cut = len(text) - 1 if text.endswith("\r") else len(text)
        end = max(text.rfind("\n", 0, cut), text.rfind("\r", 0, cut))
        if end < 0:
            if len(text) > MAX_LINE:
                self._tail = ""
                return _lines(text + "\n")
            self._tail = text
            return []
        self._tail = text[end + 1 :]
        return _lines(text[: end + 1])

    def flush(self) -> list[str]:
        """What is left after the last line break (the final line of a log without a trailing newline)."""
        text = self._tail + self._decoder.decode(b"", final=True)
        self._tail = ""
        if not text:
            return []
        return _lines(text if text.endswith("\r") else text + "\n")


def _lines(text: str) -> list[str]:
    """The lines of `text`, which ends with a line break."""
    parts = _BREAK.split(text)  # content, break, content, break, …, ""
    lines: list[str] = []
    for i in range(0, len(parts) - 1, 2):
        line = parts[i]
        if "\x1b" in line:
            line = _ANSI.sub("", line)
        # The empty piece before a redraw's "\r" (after "\n", or "\rESC[K") is not a line of its own.
        if line or parts[i + 1] != "\r":
            lines.append(line)
    return lines
