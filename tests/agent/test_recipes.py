"""Recipes render to exact argv lists from the spec alone (snapshots per recipe, in the seeds' command shapes);
spec values that could mean anything to a shell are refused; envcheck installs only what is off."""

from __future__ import annotations

import difflib
import os
import shlex
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent import envcheck, recipes
from agent.plan import Plan, Step
from spotter import catalog, layout
from spotter.spec import InitialWeights, JobSpec, RunSpec, TrainParams

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = Path(__file__).parent / "snapshots"
# SPOTTER_UPDATE_SNAPSHOTS=1 rewrites the snapshot files from what the recipes render now (review the diff).
UPDATE = os.environ.get("SPOTTER_UPDATE_SNAPSHOTS") == "1"

WORK = Path("/opt/spotter/work/shapes-abc234")
PY = "/usr/bin/python3"
T4 = "sm_75"
MakeSpec = Callable[..., RunSpec]
# The `from=` option as a person types it (a keyword no Python parameter can be named).
FROM_PRETRAINED: dict[str, Any] = {"from": "pretrained"}
FROM_PROMOTED: dict[str, Any] = {"from": "promoted"}


def run_spec(dataset: str, model: str, *, attempt: int = 1, **options: Any) -> RunSpec:
    """A spec as the bot builds it: the model's defaults, then the options as a person gives them."""
    m = catalog.model(model)
    spec = JobSpec(
        job_id=f"{dataset}-abc234",
        dataset=dataset,
        model=model,
        recipe=m.recipe,
        unit=m.unit,
        params=TrainParams.model_validate({**m.defaults, **options}),
        requested_by="U0TEST",
        channel="C0TEST",
    )
    classes = catalog.dataset(dataset).classes
    return RunSpec(spec=spec, attempt=attempt, bucket="b", bus_name="b", region="us-east-1", classes=classes)


def _step(label: str, step: Step | None, work: Path) -> list[str]:
    if step is None:
        return []
    where = f" (in {step.cwd.relative_to(work)})" if step.cwd is not None else ""
    env = " ".join(f"{k}={v}" for k, v in step.env.items())
    lines = [f"{label} env: {env}"] if env else []
    return lines + [f"{label}{where}: {shlex.join(argv)}" for argv in step.commands]


def describe(plan: Plan, work: Path) -> list[str]:
    """A plan as lines: each command shlex-joined (for reading; nothing is ever run through a shell)."""
    lines = _step("install", plan.install, work)
    if plan.build is not None:
        b = plan.build
        lines.append(f"build source: {b.source.repo} at {b.source.ref} into {b.source.dir.relative_to(work)}")
        if b.env:
            lines.append("build env: " + " ".join(f"{k}={v}" for k, v in b.env.items()))
        lines += [f"build: {shlex.join(argv)}" for argv in b.commands]
        lines.append(f"build outputs: {' '.join(b.outputs)}")
    lines += _step("setup", plan.setup, work)
    d = plan.data
    lines.append(f"data: {d.dataset} in {d.layout} layout into {d.out.relative_to(work)}")
    lines += [f"data: {shlex.join(argv)}" for argv in d.commands]
    lines += [f"pretrained: {p.name} -> {p.dest.relative_to(work)}" for p in plan.pretrained]
    if plan.promoted is not None:
        w = plan.promoted
        lines.append(f"promoted: {w.key} (job {w.job_id}, sha256 {w.sha256[:8]}…) -> {w.dest.relative_to(work)}")
    lines += _step("train", plan.train, work)
    lines += _step("evaluate", plan.evaluate, work)
    lines += [
        f"artifact {a.name}: {a.path.relative_to(work)}{' (required)' if a.required else ''}" for a in plan.artifacts
    ]
    if plan.resume_from is not None:
        lines.append(f"checkpoint: {plan.resume_from.path.relative_to(work)}")
    return [f"parser: {plan.parser}", *lines]


def promoted(run: RunSpec, file: str) -> RunSpec:
    """`run` as the launcher writes a from=promoted run's spec once a schedule promoted an earlier run's `file`."""
    spec = run.spec
    earlier = f"{spec.dataset}-prev01"
    weights = InitialWeights(
        key=f"{layout.model(spec.dataset, spec.model)}{earlier}/{file}",
        sha256="ab" * 32,
        size=1024,
        job_id=earlier,
        map50=0.71,
    )
    return run.model_copy(update={"initial_weights": weights})


# Per recipe: a seed's job first, then several GPUs, then the same job resumed by a later attempt; then a scheduled
# run from the weights it promoted (the option "promoted" names the promoted file), first fresh, then resumed.
SAMPLES: dict[str, list[tuple[str, str, str | None, dict[str, Any], bool]]] = {
    "darknet": [
        ("seed 000: /train persons yolov4 (max_batches by AlexeyAB's rule)", "persons", T4, {"model": "yolov4"}, False),
        (
            "/train persons yolov4-tiny iterations=8000 gpus=2",
            "persons",
            T4,
            {"model": "yolov4-tiny", "iterations": "8000", "gpus": "2"},
            False,
        ),
        ("attempt 2 of /train persons yolov4, resumed", "persons", "sm_86", {"model": "yolov4"}, True),
        (
            "a scheduled /train persons yolov4 from=promoted",
            "persons",
            T4,
            {"model": "yolov4", "from": "promoted", "promoted": "best.weights"},
            False,
        ),
        (
            "attempt 2 of the scheduled run, resumed",
            "persons",
            T4,
            {"model": "yolov4", "from": "promoted", "promoted": "best.weights"},
            True,
        ),
    ],
    "scaled-yolov4": [
        ("seed 001: /train aerial-maritime yolov4-csp", "aerial-maritime", T4, {"model": "yolov4-csp"}, False),
        (
            "seed 001 scaled up: /train aerial-maritime yolov4-csp gpus=4 batch=64",
            "aerial-maritime",
            T4,
            {"model": "yolov4-csp", "gpus": "4", "batch": "64"},
            False,
        ),
        ("attempt 2, resumed", "aerial-maritime", T4, {"model": "yolov4-csp"}, True),
    ],
    "yolov5": [
        (
            "seed 002: /train persons yolov5n from=pretrained",
            "persons",
            T4,
            {"model": "yolov5n", "from": "pretrained"},
            False,
        ),
        (
            "/train persons yolov5s gpus=2 batch=32",
            "persons",
            T4,
            {"model": "yolov5s", "gpus": "2", "batch": "32"},
            False,
        ),
        (
            "attempt 2 of /train persons yolov5n from=pretrained, resumed",
            "persons",
            T4,
            {"model": "yolov5n", "from": "pretrained"},
            True,
        ),
        (
            "a scheduled /train persons yolov5n from=promoted",
            "persons",
            T4,
            {"model": "yolov5n", "from": "promoted", "promoted": "best.pt"},
            False,
        ),
    ],
    "detectron2": [
        (
            "seed 004: /train coco2017 mask-rcnn-r50-fpn gpus=2",
            "coco2017",
            T4,
            {"model": "mask-rcnn-r50-fpn", "gpus": "2"},
            False,
        ),
        (
            "/train aerial-maritime faster-rcnn-r50-fpn iterations=2000 batch=4 img=640",
            "aerial-maritime",
            T4,
            {"model": "faster-rcnn-r50-fpn", "iterations": "2000", "batch": "4", "img": "640"},
            False,
        ),
        ("attempt 2, resumed", "coco2017", T4, {"model": "faster-rcnn-r50-fpn"}, True),
        (
            "a scheduled /train coco2017 faster-rcnn-r50-fpn from=promoted",
            "coco2017",
            T4,
            {"model": "faster-rcnn-r50-fpn", "from": "promoted", "promoted": "model_final.pth"},
            False,
        ),
    ],
    "ultralytics": [
        ("the CPU demo: /train shapes yolov8n on a machine with no GPU", "shapes", None, {"model": "yolov8n"}, False),
        (
            "/train aerial-maritime yolo11s from=pretrained gpus=2",
            "aerial-maritime",
            T4,
            {"model": "yolo11s", "from": "pretrained", "gpus": "2"},
            False,
        ),
        ("attempt 2, resumed", "shapes", None, {"model": "yolov8n"}, True),
        (
            "a scheduled /train shapes yolov8n from=promoted",
            "shapes",
            None,
            {"model": "yolov8n", "from": "promoted", "promoted": "best.pt"},
            False,
        ),
    ],
}


def render_samples(recipe: str) -> str:
    out: list[str] = []
    for title, dataset, arch, options, resume in SAMPLES[recipe]:
        options = dict(options)
        model = options.pop("model")
        file = options.pop("promoted", None)
        run = run_spec(dataset, model, attempt=2 if resume else 1, **options)
        if file is not None:
            run = promoted(run, file)
        work = Path("/opt/spotter/work") / run.spec.job_id
        plan = recipes.load(recipe).render(run, workdir=work, python="python3", gpu_arch=arch, cpus=8, resume=resume)
        out += [f"# {title} — {arch or 'no GPU'}, 8 CPUs, work {work}", *describe(plan, work), ""]
    return "\n".join(out)


@pytest.mark.parametrize("recipe", sorted(SAMPLES))
def test_rendered_commands_match_the_snapshot(recipe: str) -> None:
    rendered = render_samples(recipe)
    snapshot = SNAPSHOTS / f"{recipe}.txt"
    if UPDATE:
        snapshot.write_text(rendered)
    expected = snapshot.read_text()
    diff = "\n".join(difflib.unified_diff(expected.splitlines(), rendered.splitlines(), "snapshot", "rendered"))
    assert rendered == expected, f"{recipe} renders differently (SPOTTER_UPDATE_SNAPSHOTS=1 to accept):\n{diff}"


def test_every_recipe_has_samples() -> None:
    assert sorted(SAMPLES) == recipes.available()


@pytest.mark.parametrize("recipe", sorted(SAMPLES))
def test_snapshots_show_the_seed_command_shape(recipe: str) -> None:
    seed = {
        "darknet": "train (in darknet): ./darknet detector train data/yolov4-persons.data cfg/yolov4-persons.cfg "
        "yolov4.conv.137 -dont_show -map\n",
        "scaled-yolov4": "train (in ScaledYOLOv4): python3 train.py --img 416 --batch 16 --epochs 50 --data "
        "/opt/spotter/work/aerial-maritime-abc234/data/data.yaml --cfg ./models/yolov4-csp.yaml --weights '' "
        "--name yolov4-csp-aerial-maritime --cache\n",
        "yolov5": "--weights /opt/spotter/work/persons-abc234/yolov5n.pt --cfg models/yolov5n.yaml",
        "detectron2": "tools/train_net.py --num-gpus 2 --config-file /opt/spotter/work/coco2017-abc234/detectron2/"
        "configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml MODEL.WEIGHTS "
        "/opt/spotter/work/coco2017-abc234/R-50.pkl SOLVER.MAX_ITER 4000 ",
        "ultralytics": "train: python3 -m agent.trainers.yolo --data /opt/spotter/work/shapes-abc234/data/data.yaml "
        "--model yolov8n.yaml --epochs 20 --imgsz 128 --batch 16 --gpus 1",
    }[recipe]
    assert seed in (SNAPSHOTS / f"{recipe}.txt").read_text()


def test_ultralytics_renders_exact_argv(make_spec: MakeSpec) -> None:
    plan = recipes.load("ultralytics").render(make_spec(epochs=3), workdir=WORK, python=PY, gpu_arch=None, cpus=2)

    assert plan.parser == "ultralytics"
    assert plan.install is not None and plan.install.commands == ((PY, "-m", "agent.envcheck", "ultralytics==8.4.190"),)
    assert plan.build is None and plan.setup is None and plan.evaluate is None
    assert (plan.data.dataset, plan.data.layout, plan.data.out, plan.data.commands) == (
        "shapes",
        "yolo",
        WORK / "data",
        (),
    )
    assert plan.train.commands == (
        (
            PY, "-m", "agent.trainers.yolo",
            "--data", f"{WORK}/data/data.yaml",
            "--model", "yolov8n.yaml",
            "--epochs", "3",
            "--imgsz", "128",
            "--batch", "16",
            "--gpus", "1",
            "--project", f"{WORK}/runs",
            "--name", "train",
        ),
    )  # fmt: skip
    assert [(a.name, a.path, a.required) for a in plan.artifacts] == [
        ("best", WORK / "runs/train/weights/best.pt", True),
        ("last", WORK / "runs/train/weights/last.pt", False),
        ("results", WORK / "runs/train/results.csv", False),
    ]
    assert plan.resume_from is not None and plan.resume_from.path == WORK / "runs/train/weights/last.pt"


def test_pretrained_starts_from_the_published_weights_fetched_ahead(make_spec: MakeSpec) -> None:
    plan = recipes.load("ultralytics").render(
        make_spec(from_="pretrained"), workdir=WORK, python=PY, gpu_arch=None, cpus=2
    )
    train = dict(zip(plan.train.commands[0], plan.train.commands[0][1:], strict=False))
    assert train["--model"] == f"{WORK}/yolov8n.pt"
    assert [(p.name, p.dest) for p in plan.pretrained] == [("yolov8n.pt", WORK / "yolov8n.pt")]


def test_a_resumed_attempt_restarts_from_the_restored_checkpoint(make_spec: MakeSpec) -> None:
    plan = recipes.load("ultralytics").render(make_spec(), workdir=WORK, python=PY, gpu_arch=None, cpus=2, resume=True)
    assert plan.train.commands[0][-2:] == ("--resume", str(WORK / "checkpoints" / "last.pt"))
    assert recipes.restored_checkpoint(WORK, ".pt") == WORK / "checkpoints" / "last.pt"


def test_argv_is_plain_strings_each_one_argument(make_spec: MakeSpec) -> None:
    """Agent-chosen paths may hold anything: each stays inside its one argument, verbatim."""
    plan = recipes.load("ultralytics").render(make_spec(), workdir=Path("/w d;$(x)"), python=PY, gpu_arch=None, cpus=2)
    for step in (plan.install, plan.train):
        assert step is not None
        for argv in step.commands:
            assert isinstance(argv, tuple) and all(type(a) is str for a in argv)
    assert "/w d;$(x)/data/data.yaml" in plan.train.commands[0]


EVIL = "1;rm -rf /"


@pytest.mark.parametrize(
    ("placeholder", "spec_field", "params_field"),
    [
        ("model", "model", None),
        ("name", "dataset", None),
        ("name", "job_id", None),
        ("epochs", None, "epochs"),
        ("iterations", None, "iterations"),
        ("img", None, "img"),
        ("batch", None, "batch"),
        ("gpus", None, "gpus"),
    ],
)
def test_spec_values_with_shell_metacharacters_are_refused_before_rendering(
    placeholder: str, spec_field: str | None, params_field: str | None
) -> None:
    """Every placeholder that carries what a person typed: a spec built around pydantic's validation (as a tampered
    job.json read without it would be) is refused, for every recipe that names the value."""
    for recipe, samples in SAMPLES.items():
        title, dataset, arch, options, _ = samples[0]
        options = dict(options)
        run = run_spec(dataset, options.pop("model"), **options)
        spec, params = run.spec, run.spec.params
        if params_field is not None:
            params = TrainParams.model_construct(**{**params.__dict__, params_field: EVIL})
        spec = JobSpec.model_construct(
            **{**spec.__dict__, "params": params, **({spec_field: EVIL} if spec_field else {})}
        )
        tampered = RunSpec.model_construct(**{**run.__dict__, "spec": spec})
        with pytest.raises(recipes.RecipeError, match="job spec"):
            recipes.load(recipe).render(tampered, workdir=WORK, python=PY, gpu_arch=arch, cpus=2)
        assert placeholder in recipes.SPEC_VALUES, title


def test_the_validated_spec_refuses_them_first() -> None:
    for key in ("epochs", "batch", "img", "gpus", "iterations"):
        with pytest.raises(ValueError):
            TrainParams.model_validate({key: EVIL})
    with pytest.raises(ValueError):
        run_spec("shapes;reboot", "yolov8n")


def test_templates_name_only_known_values_and_conditions() -> None:
    with pytest.raises(ValueError, match="unknown placeholder"):
        recipes.StepTemplate(commands=(("{python}", "{channel}"),))
    with pytest.raises(ValueError, match="stray brace"):
        recipes.StepTemplate(commands=(("{python}", "{python.__class__}"),))
    with pytest.raises(ValueError, match="unknown condition"):
        recipes.Group(when="always", argv=("--x",))
    with pytest.raises(ValueError, match="starts with its program"):
        recipes.StepTemplate(commands=((recipes.Group(when="resume", argv=("x",)),),))
    with pytest.raises(ValueError, match="inside the work directory"):
        recipes.ArtifactFile(path="../../etc/passwd")


def test_unknown_recipe_lists_the_known_ones() -> None:
    with pytest.raises(recipes.RecipeError, match="ultralytics"):
        recipes.load("../etc/passwd")


def test_a_build_for_a_gpu_needs_a_catalog_gpu() -> None:
    with pytest.raises(recipes.RecipeError, match="needs `cudnn_half`, which only a catalog GPU instance gives"):
        recipes.load("darknet").render(run_spec("persons", "yolov4"), workdir=WORK, python=PY, gpu_arch=None, cpus=2)


def test_darknet_uses_tensor_cores_only_where_there_are_some() -> None:
    def make(arch: str) -> tuple[str, ...]:
        plan = recipes.load("darknet").render(
            run_spec("persons", "yolov4"), workdir=WORK, python=PY, gpu_arch=arch, cpus=4
        )
        assert plan.build is not None
        return plan.build.commands[0]

    assert "CUDNN_HALF=0" in make("sm_61") and "ARCH=-gencode arch=compute_61,code=[sm_61,compute_61]" in make("sm_61")
    assert "CUDNN_HALF=1" in make("sm_70") and "CUDNN_HALF=1" in make("sm_89")


def test_limits_of_a_recipe_are_refused_by_render() -> None:
    scaled = recipes.load("scaled-yolov4")
    with pytest.raises(recipes.RecipeError, match="from scratch, not from pretrained"):
        scaled.render(
            run_spec("aerial-maritime", "yolov4-csp", **FROM_PRETRAINED),
            workdir=WORK,
            python=PY,
            gpu_arch=T4,
            cpus=2,
        )
    with pytest.raises(recipes.RecipeError, match="at most 4 GPUs"):
        scaled.render(run_spec("aerial-maritime", "yolov4-csp", gpus="8"), workdir=WORK, python=PY, gpu_arch=T4, cpus=2)


@pytest.mark.parametrize("model", sorted(catalog.MODELS))
def test_every_catalog_model_renders_with_its_recipe(model: str) -> None:
    m = catalog.model(model)
    recipe = recipes.load(m.recipe)
    assert recipe.unit == m.unit
    # The catalog's GPU needs pick the instance types: they must ask for at least what the recipe needs.
    assert m.gpu.min_gpu_memory_gib >= recipe.gpu.min_memory_gib
    assert 1 <= m.gpu.count <= recipe.gpu.max_gpus
    assert set(m.recipe_vars) <= recipes.MODEL_VARS
    assert all(catalog.GPU_TYPES[t].gpu_memory_gib >= recipe.gpu.min_memory_gib for t in m.gpu.instance_types())
    dataset = {"darknet": "persons", "detectron2": "coco2017"}.get(m.recipe, "aerial-maritime")
    # from=promoted goes wherever from=pretrained does, with weights promoted or none yet.
    cases: list[tuple[str, bool]] = [(start, False) for start in recipe.starts]
    if "pretrained" in recipe.starts:
        cases += [("promoted", False), ("promoted", True)]
    for start, weights in cases:
        for gpus in ("1", str(recipe.gpu.max_gpus)):
            for resume in (False, True):
                options: dict[str, Any] = {"gpus": gpus, "from": start}
                run = run_spec(dataset, model, **options)
                plan = recipe.render(
                    promoted(run, "best.weights") if weights else run,
                    workdir=WORK,
                    python=PY,
                    gpu_arch=T4,
                    cpus=4,
                    resume=resume,
                )
                assert plan.recipe == m.recipe and plan.train.commands


def test_recipes_load_from_the_agent_zipapp(tmp_path: Path) -> None:
    """The instance runs the agent as a zipapp: recipe files must come out of the zip."""
    pyz = tmp_path / "agent.pyz"
    with zipfile.ZipFile(pyz, "w") as z:
        for package in ("agent", "spotter"):
            for f in (REPO / package).rglob("*"):
                if f.is_file() and "__pycache__" not in f.parts:
                    z.write(f, f.relative_to(REPO).as_posix())
    code = "import agent.recipes as r; print(r.available(), [r.load(n).parser for n in r.available()], r.__file__)"
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
    assert out.startswith(
        "['darknet', 'detectron2', 'scaled-yolov4', 'ultralytics', 'yolov5'] "
        "['darknet', 'detectron2', 'scaled-yolov4', 'ultralytics', 'yolov5'] "
    )
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


# The shape of AlexeyAB's cfg/yolov4-custom.cfg, cut down: [net] with its commented test settings, then layers
# ending in a 1x1 [convolutional] (filters=255 for COCO's 80 classes) before each [yolo].
SAMPLE_CFG = """[net]
# Testing
#batch=1
#subdivisions=1
# Training
batch=64
subdivisions=8
width=608
height=608
channels=3
momentum=0.949
learning_rate=0.001
burn_in=1000
max_batches = 500500
policy=steps
steps=400000,450000
scales=.1,.1

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=mish

[convolutional]
size=1
stride=1
pad=1
filters=255
activation=linear

[yolo]
mask = 0,1,2
anchors = 12, 16, 19, 36, 40, 28, 36, 75, 76, 55, 72, 146, 142, 110, 192, 243, 459, 401
classes=80
num=9

[route]
layers = -4

[convolutional]
size=1
stride=1
pad=1
filters=255
activation=linear

[yolo]
mask = 6,7,8
anchors = 12, 16, 19, 36, 40, 28, 36, 75, 76, 55, 72, 146, 142, 110, 192, 243, 459, 401
classes=80
num=9
"""


def test_darknet_cfg_sets_classes_filters_schedule_batch_and_size() -> None:
    from agent.trainers import darknet_cfg

    settings = darknet_cfg.Settings(classes=5, max_batches=10000, batch=64, subdivisions=16, width=416, height=416)
    out = darknet_cfg.render_cfg(SAMPLE_CFG, settings)
    lines = out.splitlines()

    net = lines[: lines.index("[convolutional]")]
    for line in ("batch=64", "subdivisions=16", "width=416", "height=416", "max_batches=10000", "steps=8000,9000"):
        assert line in net
    # Commented lines, and everything the job does not decide, stay as AlexeyAB wrote them.
    assert net[:5] == ["[net]", "# Testing", "#batch=1", "#subdivisions=1", "# Training"]
    assert "momentum=0.949" in net and "scales=.1,.1" in net
    assert lines.count("classes=5") == 2 and "classes=80" not in out
    # (classes + 5) × 3 masks in the [convolutional] right before each [yolo]; the first layer keeps its 32.
    assert lines.count("filters=30") == 2 and "filters=32" in lines and "filters=255" not in out
    assert len(lines) == len(SAMPLE_CFG.splitlines())


def test_darknet_max_batches_follow_alexeyabs_rule_unless_the_job_sets_them() -> None:
    from agent.trainers.darknet_cfg import max_batches, subdivisions

    assert max_batches(classes=1, train_images=500, iterations=None) == 6000
    assert max_batches(classes=5, train_images=8000, iterations=None) == 10000
    assert max_batches(classes=2, train_images=12000, iterations=None) == 12000
    assert max_batches(classes=5, train_images=8000, iterations=3000) == 3000
    assert subdivisions(64, 4) == 16
    assert subdivisions(64, 64) == 1
    assert subdivisions(30, 4) == 10  # darknet splits the batch evenly: the next divisor that fits


def test_darknet_cfg_writes_the_three_files_from_the_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.trainers import darknet_cfg

    data, darknet = tmp_path / "data", tmp_path / "darknet"
    (darknet / "cfg").mkdir(parents=True)
    (darknet / "cfg" / "yolov4-custom.cfg").write_text(SAMPLE_CFG)
    data.mkdir()
    (data / "obj.names").write_text("pedestrians\nriders\npartially-visible persons\nignore regions\ncrowd\n")
    (data / "train.txt").write_text("".join(f"{data}/train/{i}.jpg\n" for i in range(8000)))
    argv = ["--base", str(darknet / "cfg" / "yolov4-custom.cfg"), "--data-dir", str(data), "--darknet", str(darknet)]
    argv += ["--name", "yolov4-persons", "--batch", "64", "--mini-batch", "4", "--img", "416"]

    assert darknet_cfg.main(argv) == 0

    cfg = (darknet / "cfg" / "yolov4-persons.cfg").read_text()
    assert "max_batches=10000" in cfg and "steps=8000,9000" in cfg and "subdivisions=16" in cfg
    assert (darknet / "data" / "yolov4-persons.data").read_text() == (
        f"classes = 5\ntrain = {data}/train.txt\nvalid = {data}/valid.txt\n"
        f"names = {darknet}/data/yolov4-persons.names\nbackup = {darknet}/backup/\n"
    )
    assert (darknet / "data" / "yolov4-persons.names").read_text() == (data / "obj.names").read_text()
    assert (darknet / "backup").is_dir()
    assert "5 classes, max_batches=10000, steps=8000,9000" in capsys.readouterr().out


def test_darknet_ships_the_cfg_data_and_names_its_data_phase_writes(tmp_path: Path) -> None:
    """The darknet weights are of no use without the three files they were trained with: the data phase's own
    command writes them where the recipe's required artifacts are."""
    from agent.trainers import darknet_cfg

    work = tmp_path / "work"
    plan = recipes.load("darknet").render(run_spec("persons", "yolov4"), workdir=work, python=PY, gpu_arch=T4, cpus=2)
    artifacts = {a.name: (a.path, a.required) for a in plan.artifacts}
    assert {name: artifacts[name] for name in ("cfg", "data", "names")} == {
        "cfg": (work / "darknet" / "cfg" / "yolov4-persons.cfg", True),
        "data": (work / "darknet" / "data" / "yolov4-persons.data", True),
        "names": (work / "darknet" / "data" / "yolov4-persons.names", True),
    }
    (work / "darknet" / "cfg").mkdir(parents=True)
    (work / "darknet" / "cfg" / "yolov4-custom.cfg").write_text(SAMPLE_CFG)
    (work / "data").mkdir()
    (work / "data" / "obj.names").write_text("person\n")
    (work / "data" / "train.txt").write_text("a.jpg\n")
    [command] = plan.data.commands
    assert command[:3] == (PY, "-m", "agent.trainers.darknet_cfg")

    assert darknet_cfg.main(list(command[3:])) == 0

    assert all(artifacts[name][0].is_file() for name in ("cfg", "data", "names"))


def test_detectron2_hands_out_its_final_model_as_best() -> None:
    plan = recipes.load("detectron2").render(
        run_spec("coco2017", "faster-rcnn-r50-fpn"), workdir=WORK, python=PY, gpu_arch=T4, cpus=2
    )
    assert [(a.name, a.path.relative_to(WORK).as_posix(), a.required) for a in plan.artifacts] == [
        ("best", "model/model_final.pth", True),
        ("config", "model/config.yaml", False),
        ("last_checkpoint", "model/last_checkpoint", False),
        ("metrics", "model/metrics.json", False),
    ]
    assert plan.evaluate is not None and f"{WORK}/model/model_final.pth" in plan.evaluate.commands[0]


@pytest.mark.parametrize("recipe", sorted(SAMPLES))
def test_every_recipe_offers_best_weights_and_uploads_no_file_twice(recipe: str) -> None:
    title, dataset, arch, options, _ = SAMPLES[recipe][0]
    options = dict(options)
    plan = recipes.load(recipe).render(
        run_spec(dataset, options.pop("model"), **options), workdir=WORK, python=PY, gpu_arch=arch, cpus=2
    )
    best = [a for a in plan.artifacts if a.name == "best"]
    assert len(best) == 1 and best[0].required, title
    paths = [a.path for a in plan.artifacts]
    assert len(paths) == len(set(paths)), f"{recipe} uploads one file under two names"


def _render(recipe: str, run: RunSpec, arch: str | None = T4, resume: bool = False) -> Plan:
    return recipes.load(recipe).render(run, workdir=WORK, python=PY, gpu_arch=arch, cpus=2, resume=resume)


def test_promoted_weights_are_fetched_verified_in_place_of_the_pretrained_file() -> None:
    run = promoted(run_spec("persons", "yolov5n", **FROM_PROMOTED), "best.pt")
    plan = _render("yolov5", run)

    assert plan.pretrained == ()
    assert plan.promoted is not None
    assert (plan.promoted.key, plan.promoted.sha256, plan.promoted.size, plan.promoted.job_id) == (
        "models/persons/yolov5n/persons-prev01/best.pt",
        "ab" * 32,
        1024,
        "persons-prev01",
    )
    # The same file the pretrained weights would be: the train command is the from=pretrained one.
    pretrained = _render("yolov5", run_spec("persons", "yolov5n", **FROM_PRETRAINED))
    assert [p.dest for p in pretrained.pretrained] == [plan.promoted.dest] == [WORK / "yolov5n.pt"]
    assert plan.train == pretrained.train


def test_from_promoted_with_nothing_promoted_starts_as_from_pretrained() -> None:
    for recipe, dataset, model in (("yolov5", "persons", "yolov5n"), ("darknet", "persons", "yolov4")):
        plan = _render(recipe, run_spec(dataset, model, **FROM_PROMOTED))
        assert plan == _render(recipe, run_spec(dataset, model, **FROM_PRETRAINED)), recipe
        assert plan.promoted is None and len(plan.pretrained) == 1


def test_darknet_clears_the_promoted_weights_iteration_count_only_when_it_starts_from_them() -> None:
    run = promoted(run_spec("persons", "yolov4", **FROM_PROMOTED), "best.weights")
    fresh = _render("darknet", run)
    assert fresh.promoted is not None and fresh.promoted.dest == WORK / "darknet" / "yolov4.conv.137"
    assert fresh.train.commands[0][:6] == ("./darknet", "detector", "train", "data/yolov4-persons.data",
                                          "cfg/yolov4-persons.cfg", "yolov4.conv.137")  # fmt: skip
    assert fresh.train.commands[0][-1] == "-clear"
    # A resumed attempt goes on from its checkpoint and the iteration it holds: nothing promoted is fetched.
    resumed = _render("darknet", run.model_copy(update={"attempt": 2}), resume=True)
    assert resumed.promoted is None and resumed.pretrained == ()
    assert "-clear" not in resumed.train.commands[0]
    assert "-clear" not in _render("darknet", run_spec("persons", "yolov4", **FROM_PRETRAINED)).train.commands[0]


def test_detectron2_is_told_the_promoted_weights_are_a_checkpoint() -> None:
    run = promoted(run_spec("coco2017", "faster-rcnn-r50-fpn", **FROM_PROMOTED), "model_final.pth")
    plan = _render("detectron2", run)
    assert plan.promoted is not None and plan.promoted.dest == WORK / "R-50.pkl"
    train = plan.train.commands[0]
    assert train[train.index("MODEL.WEIGHTS") + 1] == f"{WORK}/R-50.pkl"
    assert train.index("--checkpoint-weights") < train.index(f"{WORK}/detectron2/tools/train_net.py")
    assert (
        "--checkpoint-weights"
        not in _render("detectron2", run_spec("coco2017", "faster-rcnn-r50-fpn")).train.commands[0]
    )


def test_promoted_weights_are_refused_where_they_cannot_be_the_start() -> None:
    with pytest.raises(recipes.RecipeError, match="trains from scratch, not from promoted"):
        _render("scaled-yolov4", run_spec("aerial-maritime", "yolov4-csp", **FROM_PROMOTED))
    with pytest.raises(
        recipes.RecipeError, match=r"promoted weights \(job persons-prev01's\) for a job that trains from pretrained"
    ):
        _render("yolov5", promoted(run_spec("persons", "yolov5n", **FROM_PRETRAINED), "best.pt"))
    # Ultralytics from scratch fetches nothing a promoted file could replace; a recipe that fetches two is ambiguous.
    bare = recipes.load("ultralytics").model_copy(update={"pretrained": ()})
    run = promoted(run_spec("shapes", "yolov8n", **FROM_PROMOTED), "best.pt")
    with pytest.raises(recipes.RecipeError, match="they replace its one pretrained file, and it fetches none"):
        bare.render(run, workdir=WORK, python=PY, gpu_arch=None, cpus=2)
    two = recipes.load("ultralytics")
    two = two.model_copy(
        update={"pretrained": (*two.pretrained, recipes.PretrainedTemplate(name="x.pt", dest="{work}/x.pt"))}
    )
    with pytest.raises(recipes.RecipeError, match=r"it fetches yolov8n\.pt, x\.pt"):
        two.render(run, workdir=WORK, python=PY, gpu_arch=None, cpus=2)


def test_darknet_cfg_fails_plainly_without_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.trainers import darknet_cfg

    (tmp_path / "base.cfg").write_text(SAMPLE_CFG)
    argv = ["--base", str(tmp_path / "base.cfg"), "--data-dir", str(tmp_path), "--darknet", str(tmp_path / "d")]
    assert darknet_cfg.main([*argv, "--name", "x", "--batch", "64", "--mini-batch", "4", "--img", "416"]) == 1
    assert "obj.names" in capsys.readouterr().err
    with pytest.raises(darknet_cfg.CfgError, match=r"no \[yolo\] layer"):
        darknet_cfg.render_cfg("[net]\nbatch=1\n", darknet_cfg.Settings(1, 6000, 64, 16, 416, 416))


class FakeDetectron2:
    """detectron2's entry points as train_net uses them, recording what the wrapper asks of them."""

    def __init__(self) -> None:
        self.registered: list[tuple[str, str, str]] = []
        self.launched: list[tuple[int, Any]] = []

    def modules(self) -> dict[str, Any]:
        import argparse
        import types

        def default_argument_parser() -> argparse.ArgumentParser:
            p = argparse.ArgumentParser()
            p.add_argument("--config-file", default="")
            p.add_argument("--resume", action="store_true")
            p.add_argument("--eval-only", action="store_true")
            p.add_argument("--num-gpus", type=int, default=1)
            p.add_argument("--num-machines", type=int, default=1)
            p.add_argument("--machine-rank", type=int, default=0)
            p.add_argument("--dist-url", default="auto")
            p.add_argument("opts", nargs=argparse.REMAINDER)
            return p

        def launch(fn: Callable[..., Any], num_gpus: int, **kwargs: Any) -> None:
            self.launched.append((num_gpus, fn(*kwargs["args"])))

        engine = types.ModuleType("detectron2.engine")
        engine.default_argument_parser = default_argument_parser  # type: ignore[attr-defined]
        engine.launch = launch  # type: ignore[attr-defined]
        datasets = types.ModuleType("detectron2.data.datasets")
        datasets.register_coco_instances = lambda name, meta, js, root: self.registered.append((name, js, root))  # type: ignore[attr-defined]
        return {
            "detectron2": types.ModuleType("detectron2"),
            "detectron2.engine": engine,
            "detectron2.data": types.ModuleType("detectron2.data"),
            "detectron2.data.datasets": datasets,
        }


def test_detectron2_wrapper_registers_the_splits_and_runs_train_net(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from agent.trainers import detectron2_train

    fake = FakeDetectron2()
    for name, module in fake.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    data = tmp_path / "data"
    for split in ("train", "val"):
        (data / "coco" / f"{split}2017").mkdir(parents=True)
        (data / "coco" / "annotations").mkdir(exist_ok=True)
        doc = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "boat"}, {"id": 2, "name": "dock"}]}
        (data / "coco" / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(doc))
    script = tmp_path / "train_net.py"
    script.write_text("def main(args):\n    return (args.resume, args.eval_only, args.opts)\n")
    checkpoint = tmp_path / "checkpoints" / "last.pth"
    out = tmp_path / "model"

    argv = ["--data", str(data), "--resume-from", str(checkpoint), str(script), "--num-gpus", "2"]
    argv += ["--config-file", "c.yaml", "SOLVER.MAX_ITER", "4000", "OUTPUT_DIR", str(out)]
    assert detectron2_train.main(argv) == 0

    coco = data.resolve() / "coco"
    assert fake.registered == [
        ("spotter_train", str(coco / "annotations" / "instances_train2017.json"), str(coco / "train2017")),
        ("spotter_val", str(coco / "annotations" / "instances_val2017.json"), str(coco / "val2017")),
    ]
    [(gpus, (resume, eval_only, opts))] = fake.launched
    assert (gpus, resume, eval_only) == (2, True, False)
    assert opts == [
        "SOLVER.MAX_ITER", "4000", "OUTPUT_DIR", str(out),
        "DATASETS.TRAIN", "('spotter_train',)", "DATASETS.TEST", "('spotter_val',)", "MODEL.ROI_HEADS.NUM_CLASSES", "2",
    ]  # fmt: skip
    # train_net --resume reads the checkpoint's name from OUTPUT_DIR/last_checkpoint.
    assert (out / "last_checkpoint").read_text() == str(checkpoint.resolve())


def test_detectron2_wrapper_hands_checkpoint_weights_over_under_a_pth_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from agent.trainers import detectron2_train

    fake = FakeDetectron2()
    for name, module in fake.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    data = tmp_path / "data"
    for split in ("train", "val"):
        (data / "coco" / f"{split}2017").mkdir(parents=True)
        (data / "coco" / "annotations").mkdir(exist_ok=True)
        doc = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "boat"}]}
        (data / "coco" / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(doc))
    script = tmp_path / "train_net.py"
    script.write_text("def main(args):\n    return args.opts\n")
    weights = tmp_path / "R-50.pkl"
    weights.write_bytes(b"PK\x03\x04 a torch checkpoint")
    argv = ["--data", str(data), "--checkpoint-weights", str(script), "--num-gpus", "1"]

    assert detectron2_train.main([*argv, "MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(tmp_path / "m")]) == 0

    [(_, opts)] = fake.launched
    link = tmp_path / "R-50.pkl.pth"
    # detectron2 merges overrides in order: the last MODEL.WEIGHTS is the one it loads.
    assert opts[-2:] == ["MODEL.WEIGHTS", str(link)]
    assert link.read_bytes() == weights.read_bytes()
    with pytest.raises(detectron2_train.DatasetLayoutError, match=r"--checkpoint-weights needs MODEL\.WEIGHTS"):
        detectron2_train.weights_as_checkpoint(["OUTPUT_DIR", "m"])
    with pytest.raises(detectron2_train.DatasetLayoutError, match="is not there"):
        detectron2_train.weights_as_checkpoint(["MODEL.WEIGHTS", str(tmp_path / "missing.pkl")])
    assert detectron2_train.weights_as_checkpoint(["MODEL.WEIGHTS", str(tmp_path / "model_final.pth")]) == []


def test_detectron2_wrapper_refuses_a_folder_not_in_coco_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.trainers import detectron2_train

    for name, module in FakeDetectron2().modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    assert detectron2_train.main(["--data", str(tmp_path), "train_net.py", "--num-gpus", "1"]) == 1
    assert "no train split" in capsys.readouterr().err
