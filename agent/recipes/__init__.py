"""Recipes as data: each framework's phases as argv templates (`<name>.toml`), rendered from a validated job spec.

Rendering only substitutes `{placeholder}`s with typed values of the spec (catalog names, bounded ints,
paths the agent chose), item by item, into an argv list: nothing is ever parsed by a shell.
Recipe files are read with importlib.resources, so they load from the agent's zipapp as well.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from spotter import catalog
from spotter.spec import RunSpec

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
# What a template may name; every value comes from the spec or from the agent itself.
PLACEHOLDERS = frozenset({"python", "work", "data_dir", "model", "weights", "epochs", "img", "batch", "gpus"})
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class RecipeError(ValueError):
    """A recipe that cannot be loaded, or cannot run the given spec."""


def _check_template(text: str) -> str:
    unknown = set(PLACEHOLDER.findall(text)) - PLACEHOLDERS
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)} in {text!r}")
    rest = PLACEHOLDER.sub("", text)
    if "{" in rest or "}" in rest:
        raise ValueError(f"stray brace in {text!r}")
    return text


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    argv: tuple[str, ...] = Field(min_length=1)

    @field_validator("argv")
    @classmethod
    def _templates(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_template(item) for item in v)


class ArtifactFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str
    required: bool = False

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        p = PurePosixPath(v)
        if p.is_absolute() or ".." in p.parts or not p.suffix:
            raise ValueError(f"{v!r} must be a relative path inside the work directory, with an extension")
        return v


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    parser: str
    install: Command
    data: dict[Literal["generated", "s3"], dict[str, Command]]
    train: Command
    weights: dict[Literal["scratch", "pretrained"], str]
    artifacts: dict[str, ArtifactFile]

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, str]) -> dict[str, str]:
        for text in v.values():
            _check_template(text)
        return v

    def render(self, run: RunSpec, *, workdir: Path, python: str) -> Plan:
        """The argv of every phase and the artifact paths for this spec, in the order they run."""
        spec = run.spec
        params = spec.params
        values: dict[str, str | None] = {
            "python": python,
            "work": str(workdir),
            "data_dir": str(workdir / "data"),
            "model": spec.model,
            "epochs": _opt(params.epochs),
            "img": _opt(params.img),
            "batch": _opt(params.batch),
            "gpus": str(params.gpus),
        }
        values["weights"] = _fill(self.weights[params.from_], values, self.name)
        dataset = catalog.dataset(spec.dataset)
        data = self.data.get(dataset.source, {}).get(dataset.name)
        if data is None:
            raise RecipeError(
                f"recipe {self.name} has no data step for dataset {dataset.name} (source {dataset.source})"
            )
        phases = (
            PhaseCommand("install", tuple(_fill(a, values, self.name) for a in self.install.argv)),
            PhaseCommand("data", tuple(_fill(a, values, self.name) for a in data.argv)),
            PhaseCommand("train", tuple(_fill(a, values, self.name) for a in self.train.argv)),
        )
        artifacts = tuple(ArtifactPath(name, workdir / a.path, a.required) for name, a in self.artifacts.items())
        return Plan(parser=self.parser, phases=phases, artifacts=artifacts)


@dataclass(frozen=True)
class PhaseCommand:
    phase: Literal["install", "data", "train"]
    argv: tuple[str, ...]


@dataclass(frozen=True)
class ArtifactPath:
    name: str
    path: Path
    required: bool


@dataclass(frozen=True)
class Plan:
    parser: str
    phases: tuple[PhaseCommand, ...]
    artifacts: tuple[ArtifactPath, ...]


def _opt(value: int | None) -> str | None:
    return None if value is None else str(value)


def _fill(template: str, values: dict[str, str | None], recipe: str) -> str:
    def one(m: re.Match[str]) -> str:
        value = values[m.group(1)]
        if value is None:
            raise RecipeError(f"recipe {recipe} needs `{m.group(1)}` but the job spec leaves it unset")
        return value

    return PLACEHOLDER.sub(one, template)


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
