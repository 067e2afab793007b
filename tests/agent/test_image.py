"""The image check: each recipe's `[image]` parses, the probe reads a real and a fake interpreter, and an image that
lacks what a recipe needs fails the job in the install phase, before any install command, saying what would work."""

from __future__ import annotations

import json
import os
import sys
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from agent import cli, image, recipes
from agent.image import PROBE_MARK, REMEDY, Found, ImageNeeds, ImageUnfit, NvccFound, TorchFound
from agent.imds import Imds
from agent.job import run_job
from infra.local.hosts import NVCC_SHIM, STANDIN_CUDA_RELEASE
from spotter.events import JobError, JobPhase
from tests.agent.test_agent import RecordingBus

JOB_ID = "shapes-abc234"
DLAMI_PYTHON = "/opt/pytorch/bin/python"
SYSTEM_PYTHON = "/usr/bin/python3"

# What each recipe asks of the image, as its TOML states it.
NEEDS = {
    "darknet": ImageNeeds(python=">=3.10", cuda=True),
    "detectron2": ImageNeeds(python=">=3.10", torch=">=2.0", cuda=True),
    "scaled-yolov4": ImageNeeds(python=">=3.10,<3.12", torch=">=2.0", cuda=True),
    "ultralytics": ImageNeeds(python=">=3.10"),
    "yolov5": ImageNeeds(python=">=3.10"),
}


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def fake_python(path: Path, *, version: str = "3.12.3", torch: dict[str, Any] | None = None, tail: str = "") -> Path:
    """An interpreter that answers the probe as `version` with `torch` (only when the probe asks with --torch)."""
    python = {"probe": "python", "version": version, "executable": DLAMI_PYTHON}
    lines = ["#!/bin/sh", "echo 'loading…'", f"echo '{PROBE_MARK}{json.dumps(python)}'"]
    if torch is not None:
        answer = json.dumps({"probe": "torch", **torch})
        lines.append(f"case \" $* \" in *' --torch '*) echo '{PROBE_MARK}{answer}';; esac")
    return _executable(path, "\n".join([*lines, tail, ""]))


def fake_nvcc(path: Path, release: str) -> Path:
    return _executable(path, f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.93'\n")


CUDA_TORCH = {"version": "2.11.0+cu128", "cuda": "12.8", "cuda_available": True}


def _found(torch: TorchFound | None = None, nvcc: NvccFound | None = None, version: str = "3.12.3") -> Found:
    return Found(DLAMI_PYTHON, python_version=version, executable=DLAMI_PYTHON, torch=torch, nvcc=nvcc)


def _torch(**fields: Any) -> TorchFound:
    return TorchFound(probe="torch", **fields)


# -- what the recipes need ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_each_recipe_states_what_it_needs_of_the_image(name: str) -> None:
    assert recipes.load(name).image == NEEDS[name]


def test_every_recipe_is_covered() -> None:
    assert sorted(NEEDS) == recipes.available()


def _recipe_text(name: str) -> dict[str, Any]:
    return tomllib.loads(resources.files(recipes).joinpath(f"{name}.toml").read_text())


@pytest.mark.parametrize(
    "table, expected",
    [
        ({"python": ">=3.10", "nvcc": True}, "image.nvcc\n  Extra inputs are not permitted"),
        ({"python": "3.10+"}, "'3.10+' is not a version range"),
        ({"python": ">=3.10", "torch": ">=2.x"}, "'>=2.x' is not a version range"),
        ({"torch": ">=2.0"}, "image.python\n  Field required"),
        ({"python": ">=3.10", "cuda": "yes"}, "image.cuda\n  Input should be a valid boolean"),
    ],
)
def test_an_image_table_with_unknown_keys_or_bad_ranges_is_refused_clearly(
    table: dict[str, Any], expected: str
) -> None:
    data = {**_recipe_text("detectron2"), "image": table}
    with pytest.raises(ValueError) as refused:
        recipes.Recipe.model_validate({"name": "detectron2", **data})
    assert expected in str(refused.value)


def test_a_recipe_without_an_image_table_is_refused() -> None:
    data = {k: v for k, v in _recipe_text("darknet").items() if k != "image"}
    with pytest.raises(ValueError, match=r"image\n  Field required"):
        recipes.Recipe.model_validate({"name": "darknet", **data})


@pytest.mark.parametrize(
    "versions, version, expected",
    [
        (">=3.10", "3.10.0", True),
        (">=3.10", "3.9.18", False),
        (">=3.10,<3.12", "3.11.7", True),
        (">=3.10,<3.12", "3.12.3", False),
        (">=2.0", "2.11.0+cu128", True),
        (">=2.0", "2.0", True),
        (">=2.0", "1.13.1+cu117", False),
        ("==2.11", "2.11.0", True),
        ("!=2.5", "2.5.0", False),
        (">2.0", "2.0.0", False),
        (">=2.0", "unknown", False),
    ],
)
def test_version_ranges(versions: str, version: str, expected: bool) -> None:
    assert image.admits(versions, version) is expected


# -- what an image lacks, in words --------------------------------------------------------------------------------


def test_an_image_without_torch_is_refused_with_what_would_work() -> None:
    found = Found(SYSTEM_PYTHON, python_version="3.12.3", executable=SYSTEM_PYTHON, torch=_torch(missing=True))

    [problem] = image.unmet("detectron2", NEEDS["detectron2"], found, gpu=True)

    assert problem == (
        "detectron2 needs torch >=2.0 in the image's Python (/usr/bin/python3 has none): boot the Deep Learning AMI "
        "with PyTorch (GpuImageId oss-nvidia-driver-gpu-pytorch-2.11-ubuntu-24.04)"
    )


def test_an_old_python_is_refused() -> None:
    [problem] = image.unmet("yolov5", NEEDS["yolov5"], _found(version="3.8.10"), gpu=True)
    assert problem == f"yolov5 needs Python >=3.10 in the image ({DLAMI_PYTHON} is Python 3.8.10): {REMEDY}"


def test_a_python_past_the_recipes_pins_asks_for_another_image_not_the_dlami() -> None:
    found = _found(torch=_torch(**CUDA_TORCH), nvcc=NvccFound(Path("/usr/local/cuda/bin/nvcc"), "12.8"))
    [problem] = image.unmet("scaled-yolov4", NEEDS["scaled-yolov4"], found, gpu=True)
    assert problem == (
        f"scaled-yolov4 needs Python >=3.10,<3.12 in the image ({DLAMI_PYTHON} is Python 3.12.3): boot an image "
        "whose framework Python is >=3.10,<3.12 (the stack's GpuImageId)"
    )


@pytest.mark.parametrize(
    "torch, gpu, expected",
    [
        ({"version": "1.13.1+cu117", "cuda": "11.7", "cuda_available": True}, True, "has torch 1.13.1+cu117"),
        ({"error": "ImportError: libcudart.so.12: cannot open shared object file"}, True, "fails (ImportError: libc"),
        ({"version": "2.11.0+cpu", "cuda": None, "cuda_available": False}, True, "a CUDA build of torch"),
        ({"version": "2.11.0+cu128", "cuda": "12.8", "cuda_available": False}, True, "NVIDIA driver is missing"),
    ],
)
def test_a_torch_that_cannot_build_or_train_is_refused(torch: dict[str, Any], gpu: bool, expected: str) -> None:
    found = _found(torch=_torch(**torch), nvcc=NvccFound(Path("/usr/local/cuda/bin/nvcc"), "12.8"))
    problem = image.unmet("detectron2", NEEDS["detectron2"], found, gpu=gpu)[0]
    assert problem.startswith("detectron2 needs ") and expected in problem
    assert len(problem) <= 300  # the one-line message a JobError carries, unclipped


def test_a_cpu_torch_is_enough_off_the_catalogs_gpus() -> None:
    needs = ImageNeeds(python=">=3.10", torch=">=2.0")
    cpu = _torch(version="2.11.0+cpu", cuda=None, cuda_available=False)
    assert image.unmet("ultralytics", needs, _found(torch=cpu), gpu=False) == []


def test_a_toolkit_of_another_cuda_major_version_than_torchs_is_refused() -> None:
    found = _found(torch=_torch(**CUDA_TORCH), nvcc=NvccFound(Path("/usr/local/cuda-13.0/bin/nvcc"), "13.0"))
    [problem] = image.unmet("detectron2", NEEDS["detectron2"], found, gpu=True)
    assert "built for CUDA 12.8, and the image's nvcc (/usr/local/cuda-13.0/bin/nvcc) is CUDA 13.0" in problem


# -- the probes ---------------------------------------------------------------------------------------------------


def test_the_probe_reads_the_real_interpreter(tmp_path: Path) -> None:
    found = image.probe_python(sys.executable, torch=False, env=os.environ, cwd=tmp_path)
    assert found.python_version == ".".join(map(str, sys.version_info[:3]))
    assert found.torch is None and found.failure is None


def test_the_probe_reads_a_fake_interpreter_and_asks_for_torch_only_when_needed(tmp_path: Path) -> None:
    python = fake_python(tmp_path / "python", torch=CUDA_TORCH)

    without = image.probe_python(str(python), torch=False, env=os.environ, cwd=tmp_path)
    found = image.probe_python(str(python), torch=True, env=os.environ, cwd=tmp_path)

    assert (without.python_version, without.executable, without.torch) == ("3.12.3", DLAMI_PYTHON, None)
    assert found.torch == _torch(**CUDA_TORCH)
    assert found.lines() == [
        f"python: {python} is Python 3.12.3 ({DLAMI_PYTHON})",
        "torch: 2.11.0+cu128, CUDA 12.8, sees a GPU",
    ]


def _torch_package(root: Path, body: str) -> dict[str, str]:
    """An environment whose `import torch` runs `body`: the real probe script against a torch of the test's making."""
    _executable(root / "torch" / "__init__.py", body)
    return {**os.environ, "PYTHONPATH": str(root)}


def test_the_real_probe_reads_torchs_version_and_cuda_build(tmp_path: Path) -> None:
    env = _torch_package(
        tmp_path,
        "import types\n__version__ = '2.11.0+cu128'\nversion = types.SimpleNamespace(cuda='12.8')\n"
        "cuda = types.SimpleNamespace(is_available=lambda: False)\n",
    )
    found = image.probe_python(sys.executable, torch=True, env=env, cwd=tmp_path)
    assert found.torch == _torch(version="2.11.0+cu128", cuda="12.8", cuda_available=False)


def test_a_torch_that_fails_to_import_is_reported_not_raised(tmp_path: Path) -> None:
    env = _torch_package(tmp_path, "raise ImportError('libcudart.so.12: cannot open shared object file')\n")
    found = image.probe_python(sys.executable, torch=True, env=env, cwd=tmp_path)
    assert found.torch == _torch(error="ImportError: libcudart.so.12: cannot open shared object file")


def test_a_torch_that_kills_the_interpreter_is_reported(tmp_path: Path) -> None:
    env = _torch_package(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    found = image.probe_python(sys.executable, torch=True, env=env, cwd=tmp_path)
    assert found.python_version is not None and found.torch is not None
    assert found.torch.error == "the interpreter died importing torch (killed by SIGSEGV)"


def test_an_interpreter_that_does_not_answer_is_reported(tmp_path: Path) -> None:
    silent = _executable(tmp_path / "python", "#!/bin/sh\necho 'no such thing' >&2\nexit 3\n")
    found = image.probe_python(str(silent), torch=True, env=os.environ, cwd=tmp_path)
    assert found.failure == "exit status 3: no such thing"
    [problem] = image.unmet("ultralytics", NEEDS["ultralytics"], found, gpu=False)
    assert problem.startswith(f"ultralytics runs with the image's Python {silent}, which did not answer (exit status 3")


def test_nvcc_is_found_on_path_first_then_in_the_newest_toolkit(tmp_path: Path) -> None:
    fake_nvcc(tmp_path / "cuda-12.4" / "bin" / "nvcc", "12.4")
    fake_nvcc(tmp_path / "cuda-12.10" / "bin" / "nvcc", "12.10")
    places = (str(tmp_path / "cuda" / "bin" / "nvcc"), str(tmp_path / "cuda-*" / "bin" / "nvcc"))
    empty = tmp_path / "empty-bin"
    empty.mkdir()

    assert image.probe_nvcc(str(empty), env=os.environ, places=places) == NvccFound(
        tmp_path / "cuda-12.10" / "bin" / "nvcc", "12.10"
    )
    on_path = fake_nvcc(tmp_path / "bin" / "nvcc", "12.8")
    assert image.probe_nvcc(str(on_path.parent), env=os.environ, places=places) == NvccFound(on_path, "12.8")
    assert image.probe_nvcc(str(empty), env=os.environ, places=()) == NvccFound(None)


def test_the_local_images_nvcc_answers_the_probe(tmp_path: Path) -> None:
    shim = _executable(tmp_path / "bin" / "nvcc", NVCC_SHIM.format(release=STANDIN_CUDA_RELEASE))
    assert image.probe_nvcc(str(shim.parent), env=os.environ, places=()) == NvccFound(shim, STANDIN_CUDA_RELEASE)


# -- the check as a whole -----------------------------------------------------------------------------------------


def test_a_cuda_build_on_an_image_without_nvcc_is_refused(tmp_path: Path) -> None:
    python = fake_python(tmp_path / "python", version="3.11.7")
    env = {**os.environ, "PATH": str(tmp_path / "empty")}

    with pytest.raises(ImageUnfit) as unfit:
        image.check("darknet", NEEDS["darknet"], python=str(python), gpu=True, env=env, cwd=tmp_path, nvcc_places=())

    assert unfit.value.message == (
        "darknet compiles CUDA code and the image has no CUDA toolkit (no nvcc on PATH or under "
        f"/usr/local/cuda*/bin): {REMEDY}"
    )
    assert unfit.value.lines[-1].startswith("nvcc: none on PATH")


def test_a_satisfied_image_passes_and_says_what_it_found(tmp_path: Path) -> None:
    python = fake_python(tmp_path / "python", version="3.11.7", torch=CUDA_TORCH)
    nvcc = fake_nvcc(tmp_path / "cuda-12.8" / "bin" / "nvcc", "12.8")
    env = {**os.environ, "PATH": str(tmp_path / "empty")}

    found = image.check(
        "scaled-yolov4",
        NEEDS["scaled-yolov4"],
        python=str(python),
        gpu=True,
        env=env,
        cwd=tmp_path,
        nvcc_places=(str(tmp_path / "cuda-*" / "bin" / "nvcc"),),
    )

    assert found.lines() == [
        f"python: {python} is Python 3.11.7 ({DLAMI_PYTHON})",
        "torch: 2.11.0+cu128, CUDA 12.8, sees a GPU",
        f"nvcc: {nvcc}, CUDA 12.8",
    ]


def test_an_image_without_torch_fails_the_job_before_any_install_command(
    job: Any, poweroff: Any, bare_imds: Imds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "work"
    needs_torch = recipes.load("ultralytics").model_copy(
        update={
            "image": ImageNeeds(python=">=3.10", torch=">=2.0"),
            "install": recipes.StepTemplate(commands=(("touch", "{work}/installed"),)),
        }
    )
    monkeypatch.setattr(recipes, "load", lambda name: needs_torch)
    python = fake_python(tmp_path / "bin" / "python3", version="3.12.3", torch={"missing": True})
    bus = RecordingBus()

    code = run_job(JOB_ID, job.url, workdir=workdir, poweroff=poweroff, bus=bus, imds=bare_imds, python=str(python))

    assert code == 1 and poweroff.calls == 1
    assert not (workdir / "installed").exists()
    assert not any(isinstance(e, JobPhase) for e in bus.events)
    error = bus.events[-1]
    assert isinstance(error, JobError)
    assert (error.phase, error.kind) == ("install", "image")
    assert error.message == f"ultralytics needs torch >=2.0 in the image's Python ({python} has none): {REMEDY}"
    assert error.last_lines == [f"python: {python} is Python 3.12.3 ({DLAMI_PYTHON})", "torch: not installed"]
    log = (workdir / "logs" / "agent.log").read_text()
    assert f"recipes run with {python}" in log and "image: torch: not installed" in log


def test_the_agent_runs_recipes_with_the_python_the_bootstrap_names(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(cli, "install_signal_handlers", lambda: None)
    monkeypatch.setattr(cli, "run_job", lambda *args, **kwargs: seen.update(kwargs) or 0)
    spec = f"s3://spotter-test/jobs/{JOB_ID}/job.json"

    assert cli.cli(["run", "--job", JOB_ID, "--spec", spec, "--python", DLAMI_PYTHON]) == 0
    assert seen["python"] == DLAMI_PYTHON
    assert cli.cli(["run", "--job", JOB_ID, "--spec", spec]) == 0
    assert seen["python"] == sys.executable
