"""The `/train` grammar: slash command text → one typed command, or a CommandError that says what would work.

Pure and fast (no I/O): the Slack ack path parses with it and must answer within Slack's three seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from spotter import catalog, spec
from spotter.catalog import CatalogError
from spotter.spec import JOB_ID_RE, PARAM_KEYS, SpecError, TrainParams

PlannedName = Literal["logs", "schedule", "schedules", "unschedule"]
PLANNED: tuple[PlannedName, ...] = ("logs", "schedule", "schedules", "unschedule")

# What `/train help` lists, in this order: usage and what it does.
USAGE: dict[str, tuple[str, str]] = {
    "train": (
        "/train <dataset> <model> [key=value …]",
        "start a training job (the dataset may be `s3://bucket/prefix/`)",
    ),
    "status": ("/train status [job]", "a job's card (this channel's latest job without an id)"),
    "list": ("/train list", "this channel's recent jobs"),
    "weights": ("/train weights <job>", "a fresh download link for a finished job's weights"),
    "cancel": ("/train cancel <job>", "stop a job (yours, or any as an admin), keeping the weights written so far"),
    "cost": ("/train cost [job]", "what a job cost against on-demand (this channel's last 30 days without an id)"),
    "datasets": ("/train datasets", "what can be trained on"),
    "models": ("/train models", "what can be trained"),
    "help": ("/train help", "this help"),
}

EXAMPLE_DATASET = next(iter(catalog.DATASETS))
EXAMPLE_MODEL = next(iter(catalog.MODELS))
EXAMPLE_JOB = spec.new_job_id(EXAMPLE_DATASET, seed="example")


class CommandError(ValueError):
    """Text that is not a valid command; the message (Slack mrkdwn) names the problem and what would work."""


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TrainCommand(_Command):
    """`/train <dataset> <model> [key=value …]`: options already checked against the catalog and the spec rules."""

    kind: Literal["train"] = "train"
    dataset: str
    model: str
    options: tuple[tuple[str, str], ...] = ()
    params: TrainParams


class StatusCommand(_Command):
    kind: Literal["status"] = "status"
    job_id: str | None = None


class ListCommand(_Command):
    kind: Literal["list"] = "list"


class WeightsCommand(_Command):
    kind: Literal["weights"] = "weights"
    job_id: str


class CancelCommand(_Command):
    kind: Literal["cancel"] = "cancel"
    job_id: str


class CostCommand(_Command):
    kind: Literal["cost"] = "cost"
    job_id: str | None = None


class DatasetsCommand(_Command):
    kind: Literal["datasets"] = "datasets"


class ModelsCommand(_Command):
    kind: Literal["models"] = "models"


class HelpCommand(_Command):
    kind: Literal["help"] = "help"


class PlannedCommand(_Command):
    """A subcommand of the design that does not exist yet: answered as such, never read as a dataset name."""

    kind: Literal["planned"] = "planned"
    name: PlannedName


Command = Annotated[
    TrainCommand
    | StatusCommand
    | ListCommand
    | WeightsCommand
    | CancelCommand
    | CostCommand
    | DatasetsCommand
    | ModelsCommand
    | HelpCommand
    | PlannedCommand,
    Field(discriminator="kind"),
]

_NO_ARGS: dict[str, type[ListCommand | DatasetsCommand | ModelsCommand]] = {
    "list": ListCommand,
    "datasets": DatasetsCommand,
    "models": ModelsCommand,
}


def parse(text: str) -> Command:
    """The command in a slash command's text (whitespace-split; names are case-insensitive)."""
    words = text.split()
    if not words:
        return HelpCommand()
    head, args = words[0].lower(), words[1:]
    if head == "help":
        return HelpCommand()
    if head in PLANNED:
        return PlannedCommand.model_validate({"name": head})
    if head in _NO_ARGS:
        if args:
            raise CommandError(f"`/train {head}` takes nothing after it (got `{' '.join(args)}`). Try `/train {head}`.")
        return _NO_ARGS[head]()
    if head == "status":
        if len(args) > 1:
            raise CommandError(f"`/train status` takes at most one job id, e.g. `/train status {EXAMPLE_JOB}`.")
        return StatusCommand(job_id=_job_id(args[0]) if args else None)
    if head == "weights":
        if len(args) != 1:
            raise CommandError(f"`/train weights` takes one job id, e.g. `/train weights {EXAMPLE_JOB}`.")
        return WeightsCommand(job_id=_job_id(args[0]))
    if head == "cancel":
        if len(args) != 1:
            raise CommandError(f"`/train cancel` takes one job id, e.g. `/train cancel {EXAMPLE_JOB}`.")
        return CancelCommand(job_id=_job_id(args[0]))
    if head == "cost":
        if len(args) > 1:
            raise CommandError(f"`/train cost` takes at most one job id, e.g. `/train cost {EXAMPLE_JOB}`.")
        return CostCommand(job_id=_job_id(args[0]) if args else None)
    return _train(words)


def _job_id(word: str) -> str:
    job_id = word.lower()
    if not JOB_ID_RE.match(job_id):
        raise CommandError(f"`{word}` is not a job id: ids look like `{EXAMPLE_JOB}` (`/train list` shows them).")
    return job_id


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def example(dataset: str = EXAMPLE_DATASET, model: str = EXAMPLE_MODEL) -> str:
    """A `/train` line that would work, with the model's own training length spelled out."""
    key = f"{catalog.MODELS[model].unit}s"
    length = catalog.MODELS[model].defaults.get(key)
    return f"/train {dataset} {model}" + (f" {key}={int(length)}" if length else "")


def _train(words: list[str]) -> TrainCommand:
    # S3 keys are case-sensitive: an s3:// prefix is taken as typed.
    first = words[0] if catalog.is_s3_uri(words[0]) else words[0].lower()
    if "=" in first and not catalog.is_s3_uri(first):
        raise CommandError(f"Start with a dataset and a model, then options: `{example()}`.")
    try:
        ds = catalog.dataset(first)
    except CatalogError as e:
        if catalog.is_s3_uri(first):
            raise CommandError(f"{e} Example: `/train {catalog.S3_EXAMPLE} {EXAMPLE_MODEL}`.") from None
        commands = _names(k for k in USAGE if k != "train")
        raise CommandError(f"{e} Commands: {commands}. Example: `{example()}`.") from None
    if len(words) < 2 or "=" in words[1]:
        got = f" (got `{words[1]}`)" if len(words) > 1 else ""
        raise CommandError(
            f"Give a model after the dataset{got}. Models: {_names(sorted(catalog.MODELS))}. "
            f"Example: `{example(ds.name)}`."
        )
    try:
        m = catalog.model(words[1].lower())
    except CatalogError as e:
        raise CommandError(f"{e} Example: `{example(ds.name)}`.") from None
    pairs: list[tuple[str, str]] = []
    for word in words[2:]:
        key, sep, value = word.partition("=")
        if not sep:
            raise CommandError(
                f"`{word}` is not an option: options are `key=value` pairs after the model, "
                f"e.g. `{example(ds.name, m.name)}`. Options: {_names(PARAM_KEYS)}."
            )
        if not key:
            raise CommandError(f"`{word}` has no option name before `=`. Options: {_names(PARAM_KEYS)}.")
        pairs.append((key.lower(), value))
    try:
        params = spec.parse_params(pairs, m)
    except SpecError as e:
        raise CommandError(f"{e} Example: `{example(ds.name, m.name)}`.") from None
    return TrainCommand(dataset=ds.name, model=m.name, options=tuple(pairs), params=params)
