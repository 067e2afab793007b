"""Recipes render to exact argv lists from the spec alone; envcheck installs only what is off."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import envcheck, recipes
from spotter.spec import RunSpec

REPO = Path(__file__).resolve().parents[2]

WORK = Path("/opt/spotter/work/shapes-abc234")
PY = "/usr/bin/python3"
MakeSpec = Callable[..., RunSpec]


def test_ultralytics_renders_exact_argv(make_spec: MakeSpec) -> None:
    plan = recipes.load("ultralytics").render(make_spec(epochs=3), workdir=WORK, python=PY)

    assert plan.parser == "ultralytics"
    assert [(c.phase, list(c.argv)) for c in plan.phases] == [
        ("install", [PY, "-m", "agent.envcheck", "ultralytics==8.4.190"]),
        ("data", [PY, "-m", "agent.datasets.shapes", "--out", f"{WORK}/data"]),
        (
            "train",
            [
                PY, "-m", "agent.trainers.yolo",
                "--data", f"{WORK}/data/data.yaml",
                "--model", "yolov8n.yaml",
                "--epochs", "3",
                "--imgsz", "128",
                "--batch", "16",
                "--gpus", "1",
                "--project", f"{WORK}/runs",
                "--name", "train",
            ],
        ),
    ]  # fmt: skip
    assert [(a.name, a.path, a.required) for a in plan.artifacts] == [
        ("best", WORK / "runs/train/weights/best.pt", True),
        ("last", WORK / "runs/train/weights/last.pt", False),
        ("results", WORK / "runs/train/results.csv", False),
    ]


def test_pretrained_starts_from_the_published_weights(make_spec: MakeSpec) -> None:
    plan = recipes.load("ultralytics").render(make_spec(from_="pretrained"), workdir=WORK, python=PY)
    train = dict(zip(plan.phases[2].argv, plan.phases[2].argv[1:], strict=False))
    assert train["--model"] == "yolov8n.pt"


def test_argv_is_plain_strings_each_one_argument(make_spec: MakeSpec) -> None:
    """Values are typed (catalog names, bounded ints): no argument can carry shell text or split in two."""
    plan = recipes.load("ultralytics").render(make_spec(), workdir=Path("/w d;$(x)"), python=PY)
    for command in plan.phases:
        assert isinstance(command.argv, tuple)
        assert all(type(a) is str for a in command.argv)
    # A path with spaces and metacharacters stays inside its one argument, verbatim.
    assert "/w d;$(x)/data" in plan.phases[1].argv


def test_a_template_naming_an_unknown_value_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown placeholder"):
        recipes.Command(argv=("{python}", "{channel}"))
    with pytest.raises(ValueError, match="stray brace"):
        recipes.Command(argv=("{python}", "{python.__class__}"))


def test_unknown_recipe_lists_the_known_ones() -> None:
    with pytest.raises(recipes.RecipeError, match="ultralytics"):
        recipes.load("../etc/passwd")


def test_recipes_load_from_the_agent_zipapp(tmp_path: Path) -> None:
    """The instance runs the agent as a zipapp: recipe files must come out of the zip."""
    pyz = tmp_path / "agent.pyz"
    with zipfile.ZipFile(pyz, "w") as z:
        for package in ("agent", "spotter"):
            for f in (REPO / package).rglob("*"):
                if f.is_file() and "__pycache__" not in f.parts:
                    z.write(f, f.relative_to(REPO).as_posix())
    code = "import agent.recipes as r; print(r.available(), r.load('ultralytics').parser, r.__file__)"
    # -S: no .pth files, and a cwd outside the repo: nothing but the zip can answer for `agent`.
    path = f"{pyz}:{sysconfig.get_paths()['purelib']}"
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={"PYTHONPATH": path},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("['ultralytics'] ultralytics ")
    assert str(pyz) in out


def test_envcheck_leaves_an_installed_pin_alone(capsys: pytest.CaptureFixture[str]) -> None:
    installed: list[list[str]] = []
    assert envcheck.main(["ultralytics==8.4.190"], installer=installed.append, version_of=lambda n: "8.4.190") == 0
    assert installed == []
    assert "ultralytics 8.4.190 is installed" in capsys.readouterr().out


def test_envcheck_installs_a_missing_or_mismatched_pin() -> None:
    versions = {"ultralytics": None, "pydantic": "2.0.0"}
    installed: list[list[str]] = []

    def install(reqs: list[str]) -> None:
        installed.append(reqs)
        versions.update({r.split("==")[0]: r.split("==")[1] for r in reqs})

    code = envcheck.main(["ultralytics==8.4.190", "pydantic==2.13.5"], installer=install, version_of=versions.get)
    assert code == 0
    assert installed == [["ultralytics==8.4.190", "pydantic==2.13.5"]]


def test_envcheck_fails_when_the_install_does_not_take(capsys: pytest.CaptureFixture[str]) -> None:
    code = envcheck.main(["ultralytics==8.4.190"], installer=lambda reqs: None, version_of=lambda n: None)
    assert code == 1
    assert "still not installed" in capsys.readouterr().err


def test_envcheck_reads_real_distribution_metadata() -> None:
    assert envcheck.installed_version("pydantic") is not None
    assert envcheck.installed_version("no-such-distribution-spotter") is None


def test_envcheck_refuses_loose_requirements() -> None:
    with pytest.raises(envcheck.EnvError, match="exact pin"):
        envcheck.parse_pin("ultralytics>=8")


def test_the_standin_is_an_installed_distribution_to_envcheck(standin: Path) -> None:
    """Under the stand-in, the install phase finds the pin satisfied and installs nothing."""
    out = subprocess.run(
        [sys.executable, "-m", "agent.envcheck", "ultralytics==8.4.190"],
        env={"PYTHONPATH": f"{standin}:{REPO}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "ultralytics 8.4.190 is installed" in out.stdout
