"""What a rendered recipe asks the agent to do for one attempt: the contract between recipes, the build
cache, dataset preparation and the phases in agent.attempt.

Every argv here is final (rendered from the validated spec); nothing is ever handed to a shell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Argv = tuple[str, ...]
Layout = Literal["yolo", "darknet", "coco"]


@dataclass(frozen=True)
class Source:
    """Framework source code at a pinned commit, checked out into `dir`."""

    repo: str  # an https git URL; git's own `url.<base>.insteadOf` config may point it at a mirror
    ref: str  # a tag or a full commit; the build cache keys on the commit it resolves to
    dir: Path


@dataclass(frozen=True)
class Step:
    """One phase's commands, run one after the other; the phase fails at the first that fails."""

    phase: Literal["install", "build", "data", "train", "evaluate"]
    commands: tuple[Argv, ...]
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildStep:
    """Compile the framework. Its outputs are cached in S3 under a key of everything that shapes them."""

    recipe: str
    source: Source
    commands: tuple[Argv, ...]  # run in source.dir
    outputs: tuple[str, ...]  # files or folders relative to source.dir that make up the build
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DataStep:
    """Get the dataset into `out` in the layout the trainer reads, then run the recipe's own data commands."""

    dataset: str  # a catalog name or an s3:// prefix
    layout: Layout
    out: Path
    classes: tuple[str, ...]
    commands: tuple[Argv, ...] = ()  # after the dataset is in place, e.g. writing darknet's .cfg


@dataclass(frozen=True)
class Pretrained:
    """Starting weights fetched ahead from the bucket's `cache/pretrained/` (hubs time out on busy boxes)."""

    name: str  # e.g. "yolov4.conv.137", "R-50.pkl"
    dest: Path


@dataclass(frozen=True)
class Promoted:
    """The promoted weights a `from=promoted` run starts from: fetched by key to where the recipe's pretrained
    weights would go (so the trainer's command names the same file) and checked against the sha256 the run spec
    names."""

    key: str
    sha256: str
    size: int
    job_id: str  # the run whose weights were promoted
    dest: Path


@dataclass(frozen=True)
class ArtifactPath:
    name: str  # best, last, final, results…
    path: Path  # may contain one `*` (e.g. runs/train/exp*/weights/best.pt): the newest match is taken
    required: bool = False


@dataclass(frozen=True)
class Plan:
    recipe: str
    parser: str
    install: Step | None
    build: BuildStep | None
    data: DataStep
    pretrained: tuple[Pretrained, ...]
    train: Step
    evaluate: Step | None
    artifacts: tuple[ArtifactPath, ...]
    resume_from: ArtifactPath | None = None  # the checkpoint a resumed attempt restarts from
    promoted: Promoted | None = None  # in place of `pretrained`, on a run that starts from promoted weights
    setup: Step | None = None  # after the build, restored from the cache or not: puts it to use (installs its wheel)
