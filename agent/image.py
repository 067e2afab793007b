"""What a recipe needs of the machine image (its `[image]` table), and the check the agent makes of it before the
install phase: the framework Python and its torch, probed in a subprocess of that Python (a broken torch takes the
probe down, not the agent), and the CUDA toolkit's nvcc.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, StrictBool, ValidationError

# Importing torch the first time on a volume fresh from its snapshot reads a few GB from S3-backed blocks.
PROBE_TIMEOUT_SECONDS = 300.0
NVCC_TIMEOUT_SECONDS = 60.0
# Where nvcc is looked for when it is not on PATH (user data runs without the CUDA profile): the default toolkit
# the DLAMIs link as /usr/local/cuda, then any other one installed beside it, newest first.
NVCC_PLACES = ("/usr/local/cuda/bin/nvcc", "/usr/local/cuda-*/bin/nvcc")
# What works: the image whose framework Python carries a CUDA build of torch, with the toolkit it was built with.
# Short: a failure's message is clipped at 300 characters, and the interpreter's path comes before it.
REMEDY = "boot the Deep Learning AMI with PyTorch (GpuImageId oss-nvidia-driver-gpu-pytorch-2.11-ubuntu-24.04)"
# How much of an import error the one-line message quotes (the failure's lines carry all of it).
QUOTED_ERROR_CHARS = 50
# The probe's lines start with this, among whatever the interpreter or torch prints while loading.
PROBE_MARK = "spotter-image-probe "
PROBE = """
import json, sys
def say(**fields):
    print({mark} + json.dumps(fields), flush=True)
say(probe="python", version=".".join(map(str, sys.version_info[:3])), executable=sys.executable)
if "--torch" in sys.argv[1:]:
    try:
        import torch
    except ModuleNotFoundError as e:
        if e.name == "torch":
            say(probe="torch", missing=True)
        else:
            say(probe="torch", error=f"{type(e).__name__}: {e}")
    except Exception as e:
        say(probe="torch", error=f"{type(e).__name__}: {e}")
    else:
        try:
            available = bool(torch.cuda.is_available())
        except Exception:
            available = False
        say(probe="torch", version=str(torch.__version__), cuda=torch.version.cuda, cuda_available=available)
""".replace("{mark}", repr(PROBE_MARK))

_CLAUSE = re.compile(r"^(>=|<=|==|!=|>|<)(\d+(?:\.\d+)*)$")
_RELEASE = re.compile(r"^v?(\d+(?:\.\d+)*)")
_NVCC_RELEASE = re.compile(r"release (\d+(?:\.\d+)*)")
_CUDA_DIR = re.compile(r"cuda-(\d+(?:\.\d+)*)")


def release(version: str) -> tuple[int, ...] | None:
    """The release numbers a version starts with: 2.11.0+cu128 → (2, 11, 0); None when it starts with none."""
    m = _RELEASE.match(version.strip())
    return None if m is None else tuple(int(part) for part in m.group(1).split("."))


def _clauses(text: str) -> list[tuple[str, tuple[int, ...]]]:
    out = []
    for raw in text.split(","):
        m = _CLAUSE.match(raw.replace(" ", ""))
        if m is None:
            raise ValueError(
                f"{text!r} is not a version range: give comma-separated clauses of >=, >, <=, <, == or != and a "
                'release such as 3.10 (e.g. ">=3.10,<3.12")'
            )
        out.append((m.group(1), tuple(int(part) for part in m.group(2).split("."))))
    return out


def _versions(text: str) -> str:
    return ",".join(f"{op}{'.'.join(map(str, numbers))}" for op, numbers in _clauses(text))


# A range of releases as a recipe states it: ">=2.0", ">=3.10,<3.12". Pre-release and local tags are not compared.
Versions = Annotated[str, AfterValidator(_versions)]


def admits(versions: str, version: str) -> bool:
    """Whether `version` lies in the range `versions`; a version with no release numbers lies in none."""
    found = release(version)
    if found is None:
        return False
    for op, wanted in _clauses(versions):
        width = max(len(found), len(wanted))
        a, b = found + (0,) * (width - len(found)), wanted + (0,) * (width - len(wanted))
        ok = {">=": a >= b, ">": a > b, "<=": a <= b, "<": a < b, "==": a == b, "!=": a != b}[op]
        if not ok:
            return False
    return True


class ImageNeeds(BaseModel):
    """A recipe's `[image]`: what its commands need the image to carry already, before its install phase runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    python: Versions  # the framework Python the recipe's {python} runs
    # torch importable in that Python: a build compiled against it (no build isolation), or training that imports it
    # when no install step brings it. On a GPU instance it must be a CUDA build that sees the GPU.
    torch: Versions | None = None
    cuda: StrictBool = False  # the CUDA toolkit's nvcc: a build compiles CUDA code for the instance's GPU


class _Found(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PythonFound(_Found):
    probe: str
    version: str
    executable: str


class TorchFound(_Found):
    """torch as the image's Python imports it: its version and CUDA build, or why it is not there."""

    probe: str
    version: str | None = None
    cuda: str | None = None  # torch.version.cuda: None for a CPU build
    cuda_available: bool | None = None
    missing: bool = False
    error: str | None = None


@dataclass(frozen=True)
class NvccFound:
    path: Path | None  # None: no nvcc on PATH or in NVCC_PLACES
    release: str | None = None  # "12.8"
    error: str | None = None  # it is there but did not say its release


@dataclass(frozen=True)
class Found:
    """What the image has, as far as the recipe asks."""

    python: str  # the interpreter the agent was given for {python}
    python_version: str | None = None
    executable: str | None = None
    torch: TorchFound | None = None
    nvcc: NvccFound | None = None
    failure: str | None = None  # why the interpreter did not answer the probe

    def lines(self) -> list[str]:
        """One line each of what was found: the agent's log and the failure report quote them."""
        if self.python_version is None:
            out = [f"python: {self.python} did not answer ({self.failure})"]
        else:
            out = [f"python: {self.python} is Python {self.python_version} ({self.executable})"]
        t = self.torch
        if t is not None:
            if t.missing:
                out.append("torch: not installed")
            elif t.error is not None:
                out.append(f"torch: import failed: {t.error}")
            else:
                cuda = f"CUDA {t.cuda}" if t.cuda else "no CUDA (a CPU build)"
                seen = "sees a GPU" if t.cuda_available else "sees no GPU"
                out.append(f"torch: {t.version}, {cuda}, {seen}")
        n = self.nvcc
        if n is not None:
            if n.path is None:
                out.append(f"nvcc: none on PATH or at {' or '.join(NVCC_PLACES)}")
            else:
                out.append(f"nvcc: {n.path}, " + (f"CUDA {n.release}" if n.release else f"no release ({n.error})"))
        return out


class ImageUnfit(Exception):
    """The image lacks what the recipe needs: the first problem as the message, everything found as the lines."""

    def __init__(self, message: str, lines: Sequence[str]) -> None:
        super().__init__(message)
        self.message = message
        self.lines = list(lines)


def _run(
    argv: Sequence[str], *, env: Mapping[str, str], timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str] | str:
    """The finished process, or why it could not be asked (no answer in time, not runnable)."""
    try:
        return subprocess.run(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"no answer within {timeout:g}s"
    except OSError as e:
        return f"it cannot be run: {e.strerror or e}"


def probe_python(
    python: str, *, torch: bool, env: Mapping[str, str], cwd: Path, timeout: float = PROBE_TIMEOUT_SECONDS
) -> Found:
    """Ask `python` its version (and torch's, with `torch`) in a subprocess of it."""
    argv = [python, "-c", PROBE, *(["--torch"] if torch else [])]
    done = _run(argv, env=env, timeout=timeout, cwd=cwd)
    if isinstance(done, str):
        return Found(python, failure=done)
    answers: dict[str, dict[str, Any]] = {}
    for line in done.stdout.splitlines():
        if line.startswith(PROBE_MARK):
            try:
                fields = json.loads(line[len(PROBE_MARK) :])
            except json.JSONDecodeError:
                continue
            if isinstance(fields, dict) and isinstance(fields.get("probe"), str):
                answers[fields["probe"]] = fields
    ended = _how_it_ended(done)
    try:
        py = PythonFound.model_validate(answers["python"]) if "python" in answers else None
        found_torch = TorchFound.model_validate(answers["torch"]) if "torch" in answers else None
    except ValidationError as e:
        return Found(python, failure=f"its answer is not the probe's: {e.errors()[0]['msg']}")
    if py is None:
        return Found(python, failure=ended)
    if torch and found_torch is None:
        # The interpreter answered, then died importing torch (a segfault in a CUDA library, say).
        found_torch = TorchFound(probe="torch", error=f"the interpreter died importing torch ({ended})")
    return Found(python, python_version=py.version, executable=py.executable, torch=found_torch)


def _how_it_ended(done: subprocess.CompletedProcess[str]) -> str:
    code = done.returncode
    if code < 0 and -code in signal.valid_signals():
        how = f"killed by {signal.Signals(-code).name}"
    else:
        how = f"exit status {code}"
    last = next((ln.strip() for ln in reversed(done.stderr.splitlines()) if ln.strip()), "")
    return f"{how}: {last[:200]}" if last else how


def _toolkit_order(path: str) -> tuple[int, ...]:
    m = _CUDA_DIR.search(path)
    return tuple(int(part) for part in m.group(1).split(".")) if m else ()


def find_nvcc(path_env: str | None, places: Sequence[str] = NVCC_PLACES) -> Path | None:
    """nvcc on PATH, else at the first of `places` (globs, the newest toolkit first) that has one."""
    on_path = shutil.which("nvcc", path=path_env)
    if on_path:
        return Path(on_path)
    for place in places:
        for match in sorted(glob.glob(place), key=_toolkit_order, reverse=True):
            if os.path.isfile(match) and os.access(match, os.X_OK):
                return Path(match)
    return None


def probe_nvcc(
    path_env: str | None,
    *,
    env: Mapping[str, str],
    places: Sequence[str] = NVCC_PLACES,
    timeout: float = NVCC_TIMEOUT_SECONDS,
) -> NvccFound:
    """Where nvcc is and the CUDA release its `--version` names."""
    nvcc = find_nvcc(path_env, places)
    if nvcc is None:
        return NvccFound(None)
    done = _run([str(nvcc), "--version"], env=env, timeout=timeout)
    if isinstance(done, str):
        return NvccFound(nvcc, error=done.replace("no answer", "`nvcc --version` gave no answer", 1))
    m = _NVCC_RELEASE.search(done.stdout)
    if done.returncode != 0 or m is None:
        return NvccFound(nvcc, error=_how_it_ended(done))
    return NvccFound(nvcc, release=m.group(1))


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= QUOTED_ERROR_CHARS else line[: QUOTED_ERROR_CHARS - 1] + "…"


def _below_floor(versions: str, version: str) -> bool:
    """Whether `version` fails one of the range's lower bounds (>=, >)."""
    return any(
        op in (">=", ">") and not admits(f"{op}{'.'.join(map(str, n))}", version) for op, n in _clauses(versions)
    )


def _major(version: str) -> int | None:
    numbers = release(version)
    return numbers[0] if numbers else None


def unmet(recipe: str, needs: ImageNeeds, found: Found, *, gpu: bool) -> list[str]:
    """Each need of the recipe the image does not meet, said as what is missing, what was found and what works.

    `gpu`: the machine is a catalog GPU instance, where torch must be a CUDA build that sees the GPU.
    """
    where = found.python
    if found.python_version is None:
        return [f"{recipe} runs with the image's Python {where}, which did not answer ({found.failure}): {REMEDY}"]
    problems = []
    if not admits(needs.python, found.python_version):
        # Too old: the DLAMI's is new enough. Too new: the recipe's pins stop before it, and the image must change.
        remedy = (
            REMEDY
            if _below_floor(needs.python, found.python_version)
            else f"boot an image whose framework Python is {needs.python} (the stack's GpuImageId)"
        )
        problems.append(
            f"{recipe} needs Python {needs.python} in the image ({where} is Python {found.python_version}): {remedy}"
        )
    t = found.torch
    if needs.torch is not None and t is not None:
        if t.missing:
            problems.append(f"{recipe} needs torch {needs.torch} in the image's Python ({where} has none): {REMEDY}")
        elif t.error is not None or t.version is None:
            problems.append(
                f"{recipe} needs torch {needs.torch}, and importing it in {where} fails "
                f"({_short(t.error or 'no version')}): {REMEDY}"
            )
        elif not admits(needs.torch, t.version):
            problems.append(
                f"{recipe} needs torch {needs.torch} in the image's Python ({where} has torch {t.version}): {REMEDY}"
            )
        elif gpu and t.cuda is None:
            problems.append(
                f"{recipe} needs a CUDA build of torch on this GPU instance ({where} has torch {t.version}, a CPU "
                f"build): {REMEDY}"
            )
        elif gpu and not t.cuda_available:
            problems.append(
                f"{recipe} needs torch to see this instance's GPU, and torch {t.version} in {where} sees none: the "
                f"image's NVIDIA driver is missing or older than CUDA {t.cuda} needs (the Deep Learning AMIs carry "
                "a matching one)"
            )
    n = found.nvcc
    if needs.cuda and n is not None:
        if n.path is None:
            problems.append(
                f"{recipe} compiles CUDA code and the image has no CUDA toolkit (no nvcc on PATH or under "
                f"/usr/local/cuda*/bin): {REMEDY}"
            )
        elif n.release is None:
            problems.append(f"{recipe} compiles CUDA code and the image's nvcc ({n.path}) fails: {n.error}")
        elif t is not None and t.cuda and _major(t.cuda) != _major(n.release):
            problems.append(
                f"{recipe} compiles against torch built for CUDA {t.cuda}, and the image's nvcc ({n.path}) is CUDA "
                f"{n.release}: torch builds no extension across CUDA major versions; put the matching toolkit at "
                "/usr/local/cuda (the Deep Learning AMI with PyTorch has it there)"
            )
    return problems


def check(
    recipe: str,
    needs: ImageNeeds,
    *,
    python: str,
    gpu: bool,
    env: Mapping[str, str],
    cwd: Path,
    nvcc_places: Sequence[str] = NVCC_PLACES,
) -> Found:
    """Probe the image for what `needs` asks; raises ImageUnfit naming the first need it does not meet."""
    found = probe_python(python, torch=needs.torch is not None, env=env, cwd=cwd)
    if needs.cuda:
        nvcc = probe_nvcc(env.get("PATH"), env=env, places=nvcc_places)
        found = replace(found, nvcc=nvcc)
    problems = unmet(recipe, needs, found, gpu=gpu)
    if problems:
        raise ImageUnfit(problems[0], [*found.lines(), *problems[1:]])
    return found
