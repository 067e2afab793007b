"""Recipes as data: each framework's phases as argv templates (`<name>.toml`), rendered from a validated job spec.

A template names values with `{placeholder}` from a fixed set: the job spec's typed fields (catalog names, bounded
ints), what the catalog says of the model, and what the agent chose (paths, the instance's GPU). An argv item
may also be a group `{ when = "…", argv = […] }`, kept only when its condition holds (several GPUs, a resumed
attempt, a value the job sets…). Rendering substitutes item by item into argv lists: nothing reaches a shell.
Recipe files are read with importlib.resources, so they load from the agent's zipapp as well.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.image import ImageNeeds
from agent.parsers import FRAMEWORKS
from agent.plan import Argv, ArtifactPath, BuildStep, DataStep, Layout, Plan, Pretrained, Promoted, Source, Step
from spotter import catalog
from spotter.catalog import CatalogError
from spotter.spec import JOB_ID_RE, InitialWeights, RunSpec

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
# Values a template may name. From the job spec: these carry what a person typed, so each is checked again here.
SPEC_VALUES = frozenset({"model", "name", "epochs", "iterations", "img", "batch", "gpus", "devices"})
# From the agent: its interpreter, the folders it chose, the machine it runs on, a restored checkpoint.
AGENT_VALUES = frozenset(
    {"python", "work", "src", "data_dir", "cpus", "cuda_arch", "torch_cuda_arch", "cudnn_half", "checkpoint"}
)
# From the catalog entry of the model (`Model.recipe_vars`).
MODEL_VARS = frozenset({"base_cfg", "config_file", "pretrained", "mini_batch"})
PLACEHOLDERS = SPEC_VALUES | AGENT_VALUES | MODEL_VARS
# Conditions of an argv group besides "this placeholder has a value". `from_pretrained` holds for `from=promoted`
# too (the promoted weights take the pretrained ones' place); `from_promoted` holds on a fresh attempt that starts
# from promoted weights (a resumed one starts from its checkpoint, and nothing promoted yet means pretrained).
FLAGS = frozenset({"multi_gpu", "resume", "fresh", "from_scratch", "from_pretrained", "from_promoted"})
CONDITIONS = FLAGS | PLACEHOLDERS
# Where a resumed attempt puts the checkpoint it restarts from, under the work directory (and under the job's
# S3 prefix): one name per suffix, whatever the framework calls its own.
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_STEM = "last"
DATA_DIR = "data"
# Compute capabilities from sm_70 (Volta) on have the tensor cores darknet's CUDNN_HALF uses.
TENSOR_CORES_FROM = 70

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_SM = re.compile(r"^sm_(\d)(\d+)$")
_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class RecipeError(ValueError):
    """A recipe that cannot be loaded, or cannot run the given spec."""


def check_template(text: str) -> str:
    unknown = set(PLACEHOLDER.findall(text)) - PLACEHOLDERS
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)} in {text!r}")
    rest = PLACEHOLDER.sub("", text)
    if "{" in rest or "}" in rest:
        raise ValueError(f"stray brace in {text!r}")
    return text


def _relative(text: str) -> str:
    path = PurePosixPath(check_template(text))
    if path.is_absolute() or ".." in path.parts or text.count("*") > 1:
        raise ValueError(f"{text!r} must be a relative path inside the work directory, with at most one `*`")
    return text


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Group(_Model):
    """argv items kept only when `when` holds: a flag of FLAGS, or a placeholder that has a value."""

    when: str
    argv: tuple[str, ...] = Field(min_length=1)

    @field_validator("when")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in CONDITIONS:
            raise ValueError(f"unknown condition {v!r}; conditions: {', '.join(sorted(CONDITIONS))}")
        return v

    @field_validator("argv")
    @classmethod
    def _templates(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_template(item) for item in v)


Item = str | Group


def _argv(v: tuple[Item, ...]) -> tuple[Item, ...]:
    if not v:
        raise ValueError("a command needs at least one argument")
    for item in v:
        if isinstance(item, str):
            check_template(item)
    if not isinstance(v[0], str):
        raise ValueError("a command starts with its program, not a group")
    return v


class StepTemplate(_Model):
    """One phase's commands, run in `cwd` (the work directory when unset) with `env` over the agent's own."""

    commands: tuple[tuple[Item, ...], ...] = Field(min_length=1)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("commands")
    @classmethod
    def _commands(cls, v: tuple[tuple[Item, ...], ...]) -> tuple[tuple[Item, ...], ...]:
        return tuple(_argv(argv) for argv in v)

    @field_validator("cwd")
    @classmethod
    def _cwd(cls, v: str | None) -> str | None:
        return None if v is None else check_template(v)

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return {name: check_template(value) for name, value in v.items()}


class SourceTemplate(_Model):
    repo: str = Field(pattern=r"^https://[A-Za-z0-9.-]+/[A-Za-z0-9._/-]+$")
    ref: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    dir: str = Field(pattern=_FOLDER.pattern)  # a folder of the work directory


class BuildTemplate(_Model):
    """The compile step the build cache keys and stores, and `setup`: what puts its outputs to use, run after
    every build, restored from the cache or not (e.g. installing the wheel the build made)."""

    source: SourceTemplate
    commands: tuple[tuple[Item, ...], ...] = Field(min_length=1)
    outputs: tuple[str, ...] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    setup: tuple[tuple[Item, ...], ...] = ()

    @field_validator("commands", "setup")
    @classmethod
    def _commands(cls, v: tuple[tuple[Item, ...], ...]) -> tuple[tuple[Item, ...], ...]:
        return tuple(_argv(argv) for argv in v)

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_relative(item) for item in v)

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return {name: check_template(value) for name, value in v.items()}


class DataTemplate(_Model):
    layout: Layout
    commands: tuple[tuple[Item, ...], ...] = ()

    @field_validator("commands")
    @classmethod
    def _commands(cls, v: tuple[tuple[Item, ...], ...]) -> tuple[tuple[Item, ...], ...]:
        return tuple(_argv(argv) for argv in v)


class PretrainedTemplate(_Model):
    name: str
    dest: str
    when: str | None = None

    @field_validator("name", "dest")
    @classmethod
    def _templates(cls, v: str) -> str:
        return check_template(v)

    @field_validator("when")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        if v is not None and v not in CONDITIONS:
            raise ValueError(f"unknown condition {v!r}")
        return v


class ArtifactFile(_Model):
    path: str  # relative to the work directory; one `*` takes the newest match
    required: bool = False

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return _relative(v)


class Resume(_Model):
    """The checkpoint the framework keeps writing (relative to the work directory, one `*` for the newest): an
    interrupted attempt's is what the next one restarts from, as `{checkpoint}`."""

    checkpoint: str

    @field_validator("checkpoint")
    @classmethod
    def _path(cls, v: str) -> str:
        return _relative(v)


class Gpu(_Model):
    """What one run needs of the machine; the catalog's GpuNeeds of each model must ask for at least this."""

    min_memory_gib: int = Field(ge=0)
    max_gpus: int = Field(ge=1, le=8)


# `from=promoted` is accepted wherever "pretrained" is: the promoted weights go where the pretrained ones would.
Start = Literal["scratch", "pretrained"]


class Recipe(_Model):
    """One `<name>.toml`: the parser, the unit, GPU needs, what the image must carry, then the phases in the order
    they run."""

    name: str = Field(pattern=_NAME.pattern)
    parser: str
    unit: Literal["epoch", "iteration"]
    gpu: Gpu
    image: ImageNeeds  # checked before the install phase (agent.image)
    starts: tuple[Start, ...] = ("scratch", "pretrained")  # the `from=` values this recipe can train from
    src: str | None = Field(None, pattern=_FOLDER.pattern)  # the framework's folder in the work directory: {src}
    install: StepTemplate | None = None
    build: BuildTemplate | None = None
    data: DataTemplate
    pretrained: tuple[PretrainedTemplate, ...] = ()
    train: StepTemplate
    evaluate: StepTemplate | None = None
    resume: Resume | None = None
    artifacts: dict[str, ArtifactFile] = Field(min_length=1)

    @field_validator("parser")
    @classmethod
    def _parser(cls, v: str) -> str:
        if v not in FRAMEWORKS:
            raise ValueError(f"unknown parser {v!r}; parsers: {', '.join(FRAMEWORKS)}")
        return v

    @field_validator("artifacts")
    @classmethod
    def _artifact_names(cls, v: dict[str, ArtifactFile]) -> dict[str, ArtifactFile]:
        for name in v:
            if not _NAME.match(name.replace("_", "-")):
                raise ValueError(f"artifact name {name!r} must be lower-case letters, digits, - and _")
        return v

    def render(
        self,
        run: RunSpec,
        *,
        workdir: Path,
        python: str,
        gpu_arch: str | None,
        cpus: int,
        resume: bool = False,
    ) -> Plan:
        """Every phase of one attempt of `run` as final argv lists; `resume` restarts from `{checkpoint}`.

        A run with `initial_weights` (from=promoted, with weights promoted) fetches them in place of the pretrained
        file; from=promoted with nothing promoted yet starts as from=pretrained.
        """
        spec = run.spec
        params = spec.params
        # The spec's values first: the checks below compare them.
        values = {
            **spec_values(run),
            **self._agent_values(workdir, python, gpu_arch, cpus, resume),
            **model_values(spec.model),
        }
        start = "pretrained" if params.from_ == "promoted" else params.from_
        if start not in self.starts:
            raise RecipeError(f"recipe {self.name} trains from {' or '.join(self.starts)}, not from {params.from_}")
        initial = run.initial_weights
        if initial is not None and params.from_ != "promoted":
            raise RecipeError(
                f"the run spec names promoted weights (job {initial.job_id}'s) for a job that trains from {params.from_}"
            )
        if params.gpus > self.gpu.max_gpus:
            raise RecipeError(f"recipe {self.name} trains on at most {self.gpu.max_gpus} GPUs, not {params.gpus}")
        if resume and self.resume is None:
            raise RecipeError(f"recipe {self.name} cannot resume")
        flags = {
            "multi_gpu": params.gpus > 1,
            "resume": resume,
            "fresh": not resume,
            "from_scratch": params.from_ == "scratch",
            "from_pretrained": params.from_ in ("pretrained", "promoted"),
            "from_promoted": initial is not None and not resume,
        }
        r = _Renderer(self.name, values, flags)
        data_dir = workdir / DATA_DIR
        pretrained = tuple(
            Pretrained(name=r.fill(p.name), dest=Path(r.fill(p.dest)))
            for p in self.pretrained
            if p.when is None or r.holds(p.when)
        )
        promoted = None if initial is None else in_place_of(self.name, initial, pretrained, resume)
        return Plan(
            recipe=self.name,
            parser=self.parser,
            install=None if self.install is None else r.step("install", self.install),
            build=None if self.build is None else r.build(self.name, self.build, workdir),
            setup=(
                Step("build", r.commands(self.build.setup), cwd=workdir / self.build.source.dir)
                if self.build is not None and self.build.setup
                else None
            ),
            data=DataStep(
                dataset=spec.dataset,
                layout=self.data.layout,
                out=data_dir,
                classes=run.classes,
                commands=r.commands(self.data.commands),
            ),
            pretrained=pretrained if promoted is None else (),
            promoted=promoted,
            train=r.step("train", self.train),
            evaluate=None if self.evaluate is None else r.step("evaluate", self.evaluate),
            artifacts=tuple(
                ArtifactPath(name, workdir / r.fill(a.path), a.required) for name, a in self.artifacts.items()
            ),
            resume_from=(
                None if self.resume is None else ArtifactPath("checkpoint", workdir / r.fill(self.resume.checkpoint))
            ),
        )

    def _agent_values(
        self, workdir: Path, python: str, gpu_arch: str | None, cpus: int, resume: bool
    ) -> dict[str, str | None]:
        sm = _SM.match(gpu_arch or "")
        capability = None if sm is None else int(sm.group(1) + sm.group(2))
        checkpoint = (
            restored_checkpoint(workdir, PurePosixPath(self.resume.checkpoint).suffix)
            if resume and self.resume is not None
            else None
        )
        return {
            "python": python,
            "work": str(workdir),
            "src": None if self.src is None else str(workdir / self.src),
            "data_dir": str(workdir / DATA_DIR),
            "cpus": str(max(1, cpus)),
            "cuda_arch": None if sm is None else f"{sm.group(1)}{sm.group(2)}",
            "torch_cuda_arch": None if sm is None else f"{sm.group(1)}.{sm.group(2)}",
            "cudnn_half": None if capability is None else str(int(capability >= TENSOR_CORES_FROM)),
            "checkpoint": None if checkpoint is None else str(checkpoint),
        }


def in_place_of(
    recipe: str, initial: InitialWeights, pretrained: tuple[Pretrained, ...], resume: bool
) -> Promoted | None:
    """The promoted weights, fetched to where the attempt's one pretrained file would go: the commands that name that
    file stay as they are. None for a resumed attempt that fetches no pretrained file (its checkpoint is its start)."""
    if not pretrained and resume:
        return None
    if len(pretrained) != 1:
        names = ", ".join(p.name for p in pretrained) or "none"
        raise RecipeError(
            f"recipe {recipe} cannot start from promoted weights: they replace its one pretrained file, and it "
            f"fetches {names}"
        )
    return Promoted(initial.key, initial.sha256, initial.size, initial.job_id, pretrained[0].dest)


def restored_checkpoint(workdir: Path, suffix: str) -> Path:
    """Where a resumed attempt puts the checkpoint it restarts from (`{checkpoint}`)."""
    return workdir / CHECKPOINTS_DIR / f"{CHECKPOINT_STEM}{suffix}"


def _checked_int(name: str, value: object) -> str | None:
    # The spec's fields are typed ints; a str here means the spec was built around its validation.
    if value is None:
        return None
    if type(value) is not int:
        raise RecipeError(f"the job spec's {name} must be a whole number, not {value!r}")
    return str(value)


def run_name(run: RunSpec) -> str:
    """The name of this training's files and folders: `<model>-<dataset>` (seed 000's yolov4-persons), or
    `<model>-<job>` for a dataset named by its S3 prefix."""
    spec = run.spec
    dataset = spec.dataset if _NAME.match(spec.dataset) else spec.job_id
    return f"{spec.model}-{dataset}"


def spec_values(run: RunSpec) -> dict[str, str | None]:
    """The job spec's values for templates, each checked again: a spec value that could mean anything to a shell
    (or split into two arguments) is refused here, whatever built the spec."""
    spec = run.spec
    params = spec.params
    if not _NAME.match(spec.model) or spec.model not in catalog.MODELS:
        raise RecipeError(f"the job spec's model {spec.model!r} is not a catalog model")
    if not JOB_ID_RE.match(spec.job_id):
        raise RecipeError(f"the job spec's job id {spec.job_id!r} is not a job id")
    try:
        catalog.dataset(spec.dataset)
    except CatalogError as e:
        raise RecipeError(f"the job spec's dataset {spec.dataset!r} is not a dataset: {e}") from None
    gpus = _checked_int("gpus", params.gpus)
    return {
        "model": spec.model,
        "name": run_name(run),
        "epochs": _checked_int("epochs", params.epochs),
        "iterations": _checked_int("iterations", params.iterations),
        "img": _checked_int("img", params.img),
        "batch": _checked_int("batch", params.batch),
        "gpus": gpus,
        "devices": ",".join(str(i) for i in range(int(gpus or 1))),
    }


def model_values(model: str) -> dict[str, str | None]:
    given: Mapping[str, str] = catalog.model(model).recipe_vars
    unknown = set(given) - MODEL_VARS
    if unknown:
        raise RecipeError(f"catalog model {model} has recipe variables no template may name: {sorted(unknown)}")
    return {name: given.get(name) for name in MODEL_VARS}


class _Renderer:
    """Fills templates of one recipe for one spec."""

    def __init__(self, recipe: str, values: Mapping[str, str | None], flags: Mapping[str, bool]) -> None:
        self.recipe = recipe
        self.values = values
        self.flags = flags

    def holds(self, condition: str) -> bool:
        if condition in self.flags:
            return self.flags[condition]
        return self.values[condition] is not None

    def fill(self, template: str) -> str:
        def one(m: re.Match[str]) -> str:
            value = self.values[m.group(1)]
            if value is None:
                raise RecipeError(f"recipe {self.recipe} needs `{m.group(1)}`, which {_WHY_UNSET[m.group(1)]}")
            return value

        return PLACEHOLDER.sub(one, template)

    def argv(self, items: tuple[Item, ...]) -> Argv:
        out: list[str] = []
        for item in items:
            if isinstance(item, str):
                out.append(self.fill(item))
            elif self.holds(item.when):
                out.extend(self.fill(part) for part in item.argv)
        return tuple(out)

    def commands(self, commands: tuple[tuple[Item, ...], ...]) -> tuple[Argv, ...]:
        return tuple(self.argv(c) for c in commands)

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        return {name: self.fill(value) for name, value in env.items()}

    def step(self, phase: Literal["install", "train", "evaluate"], t: StepTemplate) -> Step:
        return Step(
            phase,
            self.commands(t.commands),
            cwd=None if t.cwd is None else Path(self.fill(t.cwd)),
            env=self.env(t.env),
        )

    def build(self, recipe: str, b: BuildTemplate, workdir: Path) -> BuildStep:
        return BuildStep(
            recipe=recipe,
            source=Source(repo=b.source.repo, ref=b.source.ref, dir=workdir / b.source.dir),
            commands=self.commands(b.commands),
            outputs=tuple(self.fill(o) for o in b.outputs),
            env=self.env(b.env),
        )


_WHY_UNSET: dict[str, str] = {
    **{name: "the job spec leaves unset" for name in SPEC_VALUES},
    **{name: "the catalog does not give for this model" for name in MODEL_VARS},
    "src": "the recipe has no `src` folder",
    "cuda_arch": "only a catalog GPU instance gives (this machine has no known GPU architecture)",
    "torch_cuda_arch": "only a catalog GPU instance gives (this machine has no known GPU architecture)",
    "cudnn_half": "only a catalog GPU instance gives (this machine has no known GPU architecture)",
    "checkpoint": "only a resumed attempt has",
}


def available() -> list[str]:
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in resources.files(__name__).iterdir()
        if entry.name.endswith(".toml")
    )


def load(name: str) -> Recipe:
    """The recipe `<name>.toml` of this package, validated."""
    if not _NAME.match(name) or name not in available():
        raise RecipeError(f"unknown recipe {name!r}; recipes: {', '.join(available())}")
    text = resources.files(__name__).joinpath(f"{name}.toml").read_text(encoding="utf-8")
    try:
        return Recipe.model_validate({"name": name, **tomllib.loads(text)})
    except (tomllib.TOMLDecodeError, ValidationError) as e:
        raise RecipeError(f"recipe {name} is invalid: {e}") from None
