"""The phase runner: raw output logged as it comes, lines parsed, return codes classified, process groups killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import runner as runner_mod
from agent.parsers.base import ErrorSeen, Parsed, Progress
from agent.runner import PhaseRunner, Terminated, outcome_of

REPO = Path(__file__).resolve().parents[2]


class Recorder:
    """A parser that reports `epoch N` lines as progress and out-of-memory lines as errors, and keeps every line."""

    framework = "test"

    def __init__(self) -> None:
        self.lines: list[str] = []

    def feed(self, line: str) -> list[Parsed]:
        self.lines.append(line)
        if line.startswith("epoch "):
            return [Progress("epoch", int(line.split()[1]), 3)]
        if "out of memory" in line:
            return [ErrorSeen("oom", line)]
        return []

    def summary(self) -> dict[str, object]:
        return {}


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# A child that starts a grandchild in its process group, says both pids, and waits.
SPAWNS_GRANDCHILD = """
import os, subprocess, sys, time
g = subprocess.Popen(["sleep", "60"])
print(os.getpid(), g.pid, flush=True)
time.sleep(60)
"""


def pids_from_log(log: Path, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().strip():
            return [int(p) for p in log.read_text().split()]
        time.sleep(0.02)
    raise AssertionError(f"nothing in {log}")


def test_output_is_logged_raw_and_parsed_line_by_line(tmp_path: Path) -> None:
    child = (
        "import sys, time\n"
        "out = sys.stdout.buffer\n"
        "out.write(b'epoch 1\\r\\x1b[Kepoch 2'); out.flush(); time.sleep(0.1)\n"
        "out.write(b'\\r\\x1b[Kepoch 3\\n'); out.flush()\n"
        "sys.stderr.write('RuntimeError: CUDA out of memory\\n'); sys.stderr.flush()\n"
        "out.write(b'no newline at the end')\n"
    )
    parser = Recorder()
    seen: list[Parsed] = []
    result = PhaseRunner(tmp_path, on_parsed=seen.append).run("train", py(child), parser=parser)

    assert result.ok and result.returncode == 0
    assert result.log_path == tmp_path / "logs" / "train.log"
    assert result.log_path.read_bytes() == (
        b"epoch 1\r\x1b[Kepoch 2\r\x1b[Kepoch 3\nRuntimeError: CUDA out of memory\nno newline at the end"
    )
    assert parser.lines == [
        "epoch 1",
        "epoch 2",
        "epoch 3",
        "RuntimeError: CUDA out of memory",
        "no newline at the end",
    ]
    assert [p.current for p in seen if isinstance(p, Progress)] == [1, 2, 3]
    assert result.errors == (ErrorSeen("oom", "RuntimeError: CUDA out of memory"),)
    assert result.last_lines[-1] == "no newline at the end"


def test_keeps_only_the_last_lines(tmp_path: Path) -> None:
    result = PhaseRunner(tmp_path).run("data", py("for i in range(100): print(i)"))
    assert result.last_lines == tuple(str(i) for i in range(100 - runner_mod.LAST_LINES, 100))


def test_children_get_no_stdin_and_run_in_the_workdir(tmp_path: Path) -> None:
    code = "import os, sys; print(os.getcwd()); print(repr(sys.stdin.read()))"
    result = PhaseRunner(tmp_path).run("data", py(code))
    assert result.last_lines == (str(tmp_path), "''")


@pytest.mark.parametrize(
    ("code", "outcome", "returncode"),
    [
        ("pass", "ok", 0),
        ("raise SystemExit(3)", "exit", 3),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "killed", -9),
    ],
)
def test_return_code_policy(tmp_path: Path, code: str, outcome: str, returncode: int) -> None:
    result = PhaseRunner(tmp_path).run("train", py(code))
    assert (result.outcome, result.returncode) == (outcome, returncode)


def test_a_deadline_overrides_the_exit_status() -> None:
    assert outcome_of(0, timed_out=True) == "timeout"
    assert outcome_of(-15, timed_out=True) == "timeout"


def test_a_command_that_cannot_start_is_a_failed_phase(tmp_path: Path) -> None:
    result = PhaseRunner(tmp_path).run("install", ["/nonexistent/tool", "--x"])
    assert (result.outcome, result.returncode) == ("exit", 127)
    assert "cannot run /nonexistent/tool" in result.last_lines[0]
    assert "cannot run" in result.log_path.read_text()


def test_the_deadline_kills_the_whole_process_group(tmp_path: Path) -> None:
    runner = PhaseRunner(tmp_path)
    started = time.monotonic()
    result = runner.run("train", py(SPAWNS_GRANDCHILD), deadline=time.monotonic() + 1.0)

    assert result.outcome == "timeout"
    assert result.returncode == -signal.SIGTERM
    assert 1.0 <= time.monotonic() - started < 5
    child, grandchild = pids_from_log(result.log_path)
    assert wait_dead(child) and wait_dead(grandchild)


def test_a_child_ignoring_sigterm_gets_sigkill_after_the_grace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_mod, "KILL_GRACE_SECONDS", 0.5)
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)"
    )
    started = time.monotonic()
    result = PhaseRunner(tmp_path).run("train", py(code), deadline=time.monotonic() + 0.5)

    assert (result.outcome, result.returncode) == ("timeout", -signal.SIGKILL)
    assert time.monotonic() - started < 5


def test_leftovers_holding_the_pipe_end_with_the_phase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_mod, "DRAIN_SECONDS", 0.5)
    code = "import os, subprocess\ng = subprocess.Popen(['sleep', '60'])\nprint(g.pid, flush=True)"
    started = time.monotonic()
    result = PhaseRunner(tmp_path).run("data", py(code))

    assert result.ok
    assert time.monotonic() - started < 5
    (grandchild,) = pids_from_log(result.log_path)
    assert wait_dead(grandchild)


def test_the_group_is_killed_when_the_agent_is_stopped_midway(tmp_path: Path) -> None:
    def stop(item: Parsed) -> None:
        raise Terminated(signal.SIGTERM)

    code = "import subprocess, time\ng = subprocess.Popen(['sleep', '60'])\nprint('epoch', g.pid, flush=True)\ntime.sleep(60)"
    with pytest.raises(Terminated):
        PhaseRunner(tmp_path, on_parsed=stop).run("train", py(code), parser=Recorder())
    (_, grandchild) = (tmp_path / "logs" / "train.log").read_text().split()
    assert wait_dead(int(grandchild))
    assert not runner_mod._ACTIVE_GROUPS


def test_sigterm_to_the_agent_process_kills_the_running_phase(tmp_path: Path) -> None:
    agent_code = (
        "import sys\nfrom pathlib import Path\n"
        "from agent.runner import PhaseRunner, Terminated, install_signal_handlers\n"
        "install_signal_handlers()\n"
        f"code = {SPAWNS_GRANDCHILD!r}\n"
        "try:\n"
        "    PhaseRunner(Path(sys.argv[1])).run('train', [sys.executable, '-c', code])\n"
        "except Terminated:\n"
        "    sys.exit(143)\n"
    )
    agent = subprocess.Popen(
        [sys.executable, "-c", agent_code, str(tmp_path)], env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    try:
        child, grandchild = pids_from_log(tmp_path / "logs" / "train.log")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(10) == 143
        assert wait_dead(child) and wait_dead(grandchild)
    finally:
        agent.kill()
