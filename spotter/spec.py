"""The job spec: what a person asked for, validated against the catalog before anything happens."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spotter import catalog, layout

JOB_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
_JOB_ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l: ids are read and typed by people


class SpecError(ValueError):
    """A job request that cannot run; the message says what was wrong and what would work."""


SpotMode = Literal["auto", "true", "false"]


class TrainParams(BaseModel):
    """The `key=value` options of `/train`. Every value is typed and bounded: none reaches a shell as text."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    epochs: int | None = Field(None, ge=1, le=10_000, description="passes over the training set")
    iterations: int | None = Field(None, ge=100, le=2_000_000, description="optimizer steps (darknet, detectron2)")
    batch: int | None = Field(None, ge=1, le=1024, description="images per batch")
    img: int | None = Field(None, ge=32, le=4096, description="training image size in pixels, a multiple of 32")
    gpus: int = Field(1, ge=1, le=8, description="GPUs to train on")
    instance: str | None = Field(None, description="one EC2 instance type instead of the catalog's choice")
    spot: SpotMode = Field("auto", description="auto (spot, else on-demand), true (spot only) or false (on-demand)")
    max_hours: float = Field(4.0, gt=0, le=72, description="hard limit; the instance powers off after it")
    from_: Literal["scratch", "pretrained", "promoted"] = Field(
        "scratch", alias="from", description="scratch, pretrained, or promoted (the weights promoted by a schedule)"
    )

    @field_validator("spot", mode="before")
    @classmethod
    def _spot_mode(cls, v: object) -> object:
        # Records written before `auto` existed hold a boolean; people may type yes/no or on-demand.
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return {"yes": "true", "spot": "true", "no": "false", "on-demand": "false", "ondemand": "false"}.get(
                v.lower(), v.lower()
            )
        return v

    @field_validator("img")
    @classmethod
    def _multiple_of_32(cls, v: int | None) -> int | None:
        if v is not None and v % 32:
            raise ValueError(f"must be a multiple of 32 (e.g. {max(32, round(v / 32) * 32)})")
        return v

    @field_validator("instance")
    @classmethod
    def _known_instance(cls, v: str | None) -> str | None:
        if v is not None and v not in catalog.GPU_TYPES:
            raise ValueError(f"must be one of {', '.join(catalog.GPU_TYPES)}")
        return v

    @model_validator(mode="after")
    def _one_length(self) -> TrainParams:
        if self.epochs is not None and self.iterations is not None:
            raise ValueError("give either epochs or iterations, not both")
        return self


PARAM_KEYS: tuple[str, ...] = tuple(f.alias or name for name, f in TrainParams.model_fields.items())

_PARAM_HELP: dict[str, str] = {
    "epochs": "a whole number from 1 to 10000, e.g. `epochs=50`",
    "iterations": "a whole number from 100 to 2000000, e.g. `iterations=6000`",
    "batch": "a whole number from 1 to 1024, e.g. `batch=16`",
    "img": "a multiple of 32 from 32 to 4096, e.g. `img=640`",
    "gpus": "a whole number from 1 to 8, e.g. `gpus=2`",
    "instance": "an instance type, e.g. `instance=g5.xlarge`",
    "spot": "`spot=auto` (spot, else on-demand), `spot=true` (spot only) or `spot=false` (on-demand)",
    "max_hours": "hours from 0.1 to 72, e.g. `max_hours=6`",
    "from": "`from=scratch`, `from=pretrained` or `from=promoted`",
}


def parse_params(pairs: list[tuple[str, str]], model: catalog.Model) -> TrainParams:
    """Turn `key=value` pairs into TrainParams filled with the model's defaults, or raise SpecError."""
    seen: dict[str, str] = {}
    for key, value in pairs:
        if key not in PARAM_KEYS:
            raise SpecError(f"Unknown option `{key}`. Options: {', '.join(f'`{k}`' for k in PARAM_KEYS)}.")
        if key in seen:
            raise SpecError(f"`{key}` is given twice.")
        seen[key] = value
    if model.unit == "epoch" and "iterations" in seen:
        raise SpecError(f"`{model.name}` trains in epochs: use `epochs=` instead of `iterations=`.")
    if model.unit == "iteration" and "epochs" in seen:
        raise SpecError(f"`{model.name}` trains in iterations: use `iterations=` instead of `epochs=`.")
    merged: dict[str, Any] = {k: v for k, v in model.defaults.items() if k not in seen}
    merged.update(seen)
    try:
        return TrainParams.model_validate(merged)
    except ValidationError as e:
        err = e.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else ""
        key = "from" if key == "from_" else key
        if key:
            given = seen.get(key, merged.get(key))
            hint = _PARAM_HELP.get(key, "")
            reason = err["msg"].removeprefix("Value error, ")
            return_msg = f"`{key}={given}` is not valid ({reason}): {key} takes {hint}."
            raise SpecError(return_msg) from None
        raise SpecError(err["msg"].removeprefix("Value error, ") + ".") from None


def job_stem(dataset: str) -> str:
    """The readable start of a job id: a catalog name, or the last folder of an s3:// prefix (else its bucket)."""
    if catalog.is_s3_uri(dataset):
        parts = [p for p in dataset[len(catalog.S3_SCHEME) :].split("/") if p]
        dataset = re.sub(r"[^a-z0-9]+", "-", parts[-1].lower()).strip("-") if parts else ""
    return dataset[:20].rstrip("-") or "s3"


def new_job_id(dataset: str, seed: str) -> str:
    """A short, readable, deterministic id: the same Slack request always names the same job."""
    digest = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    tail = ""
    for _ in range(6):
        digest, r = divmod(digest, len(_JOB_ID_ALPHABET))
        tail += _JOB_ID_ALPHABET[r]
    return f"{job_stem(dataset)}-{tail}"


class JobSpec(BaseModel):
    """A validated training request: the job record holds it, the agent runs it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    job_id: str = Field(pattern=JOB_ID_RE.pattern)
    dataset: str
    model: str
    recipe: str
    unit: Literal["epoch", "iteration"]
    params: TrainParams
    requested_by: str
    channel: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    schedule_id: str | None = None  # set on the runs a schedule started: their weights may be promoted

    @model_validator(mode="after")
    def _in_catalog(self) -> JobSpec:
        catalog.dataset(self.dataset)
        m = catalog.model(self.model)
        if m.recipe != self.recipe:
            raise ValueError(f"model {self.model} uses recipe {m.recipe}, not {self.recipe}")
        return self

    @property
    def max_minutes(self) -> int:
        return max(1, round(self.params.max_hours * 60))

    @property
    def length(self) -> int:
        """How many epochs or iterations the job trains for."""
        value = self.params.epochs if self.unit == "epoch" else self.params.iterations
        return int(value or 0)

    def instance_types(self) -> list[str]:
        if self.params.instance:
            return [self.params.instance]
        return catalog.model(self.model).gpu.instance_types(self.params.gpus)


def build_spec(
    dataset: str,
    model: str,
    pairs: list[tuple[str, str]],
    *,
    requested_by: str,
    channel: str,
    seed: str,
    schedule_id: str | None = None,
) -> JobSpec:
    """Validate a request against the catalog and the option rules; raise SpecError or CatalogError."""
    ds = catalog.dataset(dataset)
    m = catalog.model(model)
    params = parse_params(pairs, m)
    return JobSpec(
        job_id=new_job_id(ds.name, seed),
        dataset=ds.name,
        model=m.name,
        recipe=m.recipe,
        unit=m.unit,
        params=params,
        requested_by=requested_by,
        channel=channel,
        schedule_id=schedule_id,
    )


class InitialWeights(BaseModel):
    """Weights a `from=promoted` run starts from (in place of the pretrained ones): checked by sha256 on the box."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    key: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    job_id: str  # the run whose weights were promoted
    map50: float | None = None


class ResumeFrom(BaseModel):
    """The checkpoint an attempt restarts from: the agent downloads it and checks its sha256 before using it."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    key: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    current: int | None = Field(None, ge=0)  # the epoch or iteration it holds
    attempt: int = Field(ge=1)  # the attempt that wrote it


class RunSpec(BaseModel):
    """What the agent on the instance reads from `jobs/<job>/job.json`: the job plus where to report."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    spec: JobSpec
    attempt: int = Field(ge=1)
    bucket: str
    bus_name: str
    region: str
    classes: tuple[str, ...]
    resume: ResumeFrom | None = None  # None: train from the start (a first attempt, or nothing was saved)
    # `from=promoted`: the promoted weights to start from; None when nothing is promoted yet (start pretrained).
    initial_weights: InitialWeights | None = None

    @property
    def prefix(self) -> str:
        return layout.job(self.spec.job_id)
