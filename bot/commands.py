"""The `/train` grammar: slash command text → one typed command, or a CommandError that says what would work.

Pure and fast (no I/O but the time zone database, read once when a `tz=` is given): the Slack ack path parses
with it and must answer within Slack's three seconds.
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from spotter import catalog, spec
from spotter.spec import JOB_ID_RE, PARAM_KEYS, SpecError, TrainParams

# What `/train help` lists, in the order of the design's grammar: usage and what it does.
USAGE: dict[str, tuple[str, str]] = {
    "train": (
        "/train <dataset> <model> [key=value …]",
        "start a training job (the dataset may be `s3://bucket/prefix/`)",
    ),
    "status": ("/train status [job]", "a job's card (this channel's latest job without an id)"),
    "list": ("/train list", "this channel's recent jobs"),
    "cancel": ("/train cancel <job>", "stop a job (yours, or any as an admin), keeping the weights written so far"),
    "logs": ("/train logs <job>", "the end of a job's log, with links to all of its logs"),
    "weights": ("/train weights <job> [last]", "a fresh download link for a job's best weights (or its last ones)"),
    "promoted": ("/train weights <dataset> <model>", "the weights that schedules promoted for that dataset and model"),
    "schedule": (
        "/train schedule <dataset> <model> <daily HH:MM|weekly mon HH:MM|cron(…)> [tz=Area/City] [key=value …]",
        "retrain on a schedule, in UTC unless `tz=` says otherwise: each run starts from the weights promoted last "
        "(`from=promoted`) and its own are promoted when its mAP50 is better",
    ),
    "schedules": ("/train schedules", "this channel's schedules and when each runs next"),
    "unschedule": ("/train unschedule <id>", "delete a schedule (`/train schedules` shows the ids)"),
    "datasets": ("/train datasets", "what can be trained on"),
    "models": ("/train models", "what can be trained"),
    "cost": ("/train cost [job]", "what a job cost against on-demand (this channel's last 30 days without an id)"),
    "help": ("/train help", "this help"),
}

# The words that start a command other than a training job, in the order of USAGE.
SUBCOMMANDS: tuple[str, ...] = tuple(
    dict.fromkeys(word for usage, _ in USAGE.values() if not (word := usage.split()[1]).startswith("<"))
)

# EventBridge Scheduler names a schedule with up to 64 characters; ours are lower-case, like job ids.
SCHEDULE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{2,63}$")

EXAMPLE_DATASET = next(iter(catalog.DATASETS))
EXAMPLE_MODEL = next(iter(catalog.MODELS))
EXAMPLE_JOB = spec.new_job_id(EXAMPLE_DATASET, seed="example")
EXAMPLE_CRON = "cron(0 2 * * ? *)"
SCHEDULE_ONLY_KEYS: tuple[str, ...] = ("tz",)
DEFAULT_TIMEZONE = "UTC"
# How alike a typo and a name must be (difflib's ratio) for "did you mean".
SUGGEST_CUTOFF = 0.7


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


class CancelCommand(_Command):
    kind: Literal["cancel"] = "cancel"
    job_id: str


class LogsCommand(_Command):
    kind: Literal["logs"] = "logs"
    job_id: str


class WeightsCommand(_Command):
    """A job's own weights: its best (the default) or its last."""

    kind: Literal["weights"] = "weights"
    job_id: str
    which: Literal["best", "last"] = "best"


class PromotedWeightsCommand(_Command):
    """The weights schedules promoted for a dataset × model (`models/<dataset>/<model>/`)."""

    kind: Literal["promoted_weights"] = "promoted_weights"
    dataset: str
    model: str


class ScheduleWhen(_Command):
    """When a schedule runs: the EventBridge Scheduler expression, and how people read it."""

    expression: str = Field(pattern=r"^cron\(\S+( \S+){5}\)$")  # e.g. `cron(0 2 * * ? *)`
    label: str  # e.g. `daily 02:00`, `weekly Mon 02:00`, or the cron expression itself


class ScheduleCommand(_Command):
    """`/train schedule …`: a training job's dataset, model and options, plus when and in which time zone.

    `options` are the `key=value` pairs as given (without `tz=`); `params` are what each run trains with, which
    start from the promoted weights (`from=promoted`) unless a `from=` says otherwise.
    """

    kind: Literal["schedule"] = "schedule"
    dataset: str
    model: str
    when: ScheduleWhen
    timezone: str = DEFAULT_TIMEZONE  # an IANA name, as Scheduler's ScheduleExpressionTimezone wants it
    options: tuple[tuple[str, str], ...] = ()
    params: TrainParams


class SchedulesCommand(_Command):
    kind: Literal["schedules"] = "schedules"


class UnscheduleCommand(_Command):
    kind: Literal["unschedule"] = "unschedule"
    schedule_id: str = Field(pattern=SCHEDULE_ID_RE.pattern)


class CostCommand(_Command):
    kind: Literal["cost"] = "cost"
    job_id: str | None = None


class DatasetsCommand(_Command):
    kind: Literal["datasets"] = "datasets"


class ModelsCommand(_Command):
    kind: Literal["models"] = "models"


class HelpCommand(_Command):
    kind: Literal["help"] = "help"


Command = Annotated[
    TrainCommand
    | StatusCommand
    | ListCommand
    | CancelCommand
    | LogsCommand
    | WeightsCommand
    | PromotedWeightsCommand
    | ScheduleCommand
    | SchedulesCommand
    | UnscheduleCommand
    | CostCommand
    | DatasetsCommand
    | ModelsCommand
    | HelpCommand,
    Field(discriminator="kind"),
]

_NO_ARGS: dict[str, type[ListCommand | SchedulesCommand | DatasetsCommand | ModelsCommand]] = {
    "list": ListCommand,
    "schedules": SchedulesCommand,
    "datasets": DatasetsCommand,
    "models": ModelsCommand,
}


def parse(text: str) -> Command:
    """The command in a slash command's text (whitespace-split but for a `cron(…)`; names are case-insensitive)."""
    words = text.split()
    if not words:
        return HelpCommand()
    head, args = words[0].lower(), words[1:]
    if head == "help":
        return HelpCommand()
    if head in _NO_ARGS:
        if args:
            raise CommandError(f"`/train {head}` takes nothing after it (got `{' '.join(args)}`). Try `/train {head}`.")
        return _NO_ARGS[head]()
    if head == "status":
        if len(args) > 1:
            raise CommandError(f"`/train status` takes at most one job id, e.g. `/train status {EXAMPLE_JOB}`.")
        return StatusCommand(job_id=_job_id(args[0]) if args else None)
    if head == "cancel":
        return CancelCommand(job_id=_one_job_id("cancel", args))
    if head == "logs":
        return LogsCommand(job_id=_one_job_id("logs", args))
    if head == "weights":
        return _weights(args)
    if head == "schedule":
        return _schedule(text.split(maxsplit=1)[1] if args else "")
    if head == "unschedule":
        if len(args) != 1:
            raise CommandError(
                f"`/train unschedule` takes one schedule id, e.g. `/train unschedule {example_schedule_id()}` "
                "(`/train schedules` shows them)."
            )
        return UnscheduleCommand(schedule_id=_schedule_id(args[0]))
    if head == "cost":
        if len(args) > 1:
            raise CommandError(f"`/train cost` takes at most one job id, e.g. `/train cost {EXAMPLE_JOB}`.")
        return CostCommand(job_id=_job_id(args[0]) if args else None)
    return _train(words)


# -- ids ---------------------------------------------------------------------------------------------------------


def new_schedule_id(dataset: str, model: str, seed: str) -> str:
    """A short, readable, deterministic schedule id, e.g. `persons-yolov4-k3m9`: one request names one schedule."""
    # The tail of a job id for the same seed: the same digest and the same unmistakable letters and digits.
    tail = spec.new_job_id(dataset, seed).rsplit("-", 1)[1][:4]
    return f"{spec.job_stem(dataset)}-{model}-{tail}"


def example_schedule_id() -> str:
    return new_schedule_id(EXAMPLE_DATASET, EXAMPLE_MODEL, seed="example")


def _job_id(word: str) -> str:
    job_id = word.lower()
    if not JOB_ID_RE.match(job_id):
        raise CommandError(f"`{word}` is not a job id: ids look like `{EXAMPLE_JOB}` (`/train list` shows them).")
    return job_id


def _one_job_id(head: str, args: list[str]) -> str:
    if len(args) != 1:
        raise CommandError(f"`/train {head}` takes one job id, e.g. `/train {head} {EXAMPLE_JOB}`.")
    return _job_id(args[0])


def _schedule_id(word: str) -> str:
    schedule_id = word.lower()
    if not SCHEDULE_ID_RE.match(schedule_id):
        raise CommandError(
            f"`{word}` is not a schedule id: ids look like `{example_schedule_id()}` (`/train schedules` shows them)."
        )
    return schedule_id


# -- names and suggestions -----------------------------------------------------------------------------------------


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` is most likely a typo of (or the one choice it starts), or None."""
    options = list(choices)
    found = difflib.get_close_matches(word, options, n=1, cutoff=SUGGEST_CUTOFF)
    if found:
        return found[0]
    starts = [c for c in options if len(word) >= 3 and c.startswith(word)]
    return starts[0] if len(starts) == 1 else None


def _did_you_mean(suggestion: str | None) -> str:
    """`: did you mean `x`?` after the problem, or just the end of its sentence."""
    return f": did you mean `{suggestion}`?" if suggestion else "."


def _score(word: str, choice: str | None) -> float:
    return difflib.SequenceMatcher(None, word, choice).ratio() if choice else 0.0


def example(dataset: str = EXAMPLE_DATASET, model: str = EXAMPLE_MODEL) -> str:
    """A `/train` line that would work, with the model's own training length spelled out."""
    key = f"{catalog.MODELS[model].unit}s"
    length = catalog.MODELS[model].defaults.get(key)
    return f"/train {dataset} {model}" + (f" {key}={int(length)}" if length else "")


def schedule_example(dataset: str = EXAMPLE_DATASET, model: str = EXAMPLE_MODEL) -> str:
    return f"/train schedule {dataset} {model} daily 02:00"


def _datasets_line() -> str:
    return f"Datasets: {_names(catalog.DATASETS)}, or your own `s3://bucket/prefix/`."


def _dataset(word: str, *, first: bool, usage: Callable[[str], str]) -> catalog.Dataset:
    """The dataset a command names; an unknown one gets the closest name (and, first on the line, command).

    `usage` makes the example line for a dataset: the one suggested, or an s3:// prefix when that was meant.
    """
    if catalog.is_s3_uri(word):
        try:
            return catalog.s3_dataset(word)
        except catalog.CatalogError as e:
            raise CommandError(f"{e} Example: `{usage(catalog.S3_EXAMPLE)}`.") from None
    name = word.lower()
    if name in catalog.DATASETS:
        return catalog.DATASETS[name]
    dataset = _closest(name, catalog.DATASETS)
    command = _closest(name, SUBCOMMANDS) if first else None
    if command is not None and _score(name, command) >= _score(name, dataset):
        raise CommandError(
            f"Unknown command `{word}`: did you mean `/train {command}`? Commands: {_names(SUBCOMMANDS)}. "
            f"To train, start with a dataset. {_datasets_line()} Example: `{usage(EXAMPLE_DATASET)}`."
        )
    commands = f" Commands: {_names(SUBCOMMANDS)}." if first else ""
    raise CommandError(
        f"Unknown dataset `{word}`{_did_you_mean(dataset)} {_datasets_line()}{commands} "
        f"Example: `{usage(dataset or EXAMPLE_DATASET)}`."
    )


def _model(word: str, usage: str) -> catalog.Model:
    name = word.lower()
    if name in catalog.MODELS:
        return catalog.MODELS[name]
    suggestion = _closest(name, catalog.MODELS)
    raise CommandError(
        f"Unknown model `{word}`{_did_you_mean(suggestion)} Models: {_names(sorted(catalog.MODELS))}. "
        f"Example: `{usage}`."
    )


def _no_model(got: str | None, usage: str) -> CommandError:
    return CommandError(
        f"Give a model after the dataset{f' (got `{got}`)' if got else ''}. "
        f"Models: {_names(sorted(catalog.MODELS))}. Example: `{usage}`."
    )


def _pairs(words: list[str], usage: str, extra_keys: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """`key=value` words as (lower-case key, value) pairs, every key a known option."""
    keys = (*PARAM_KEYS, *extra_keys)
    pairs: list[tuple[str, str]] = []
    for word in words:
        key, sep, value = word.partition("=")
        key = key.lower()
        if not sep:
            raise CommandError(
                f"`{word}` is not an option: options are `key=value` pairs after the model, "
                f"e.g. `{usage}`. Options: {_names(keys)}."
            )
        if not key:
            raise CommandError(f"`{word}` has no option name before `=`. Options: {_names(keys)}.")
        if key in SCHEDULE_ONLY_KEYS and key not in keys:
            raise CommandError(
                f"`{key}=` is the time zone of a schedule: it goes with `/train schedule`, "
                f"e.g. `{schedule_example()} tz=Europe/Berlin`. A training job starts when you ask."
            )
        if key not in keys:
            raise CommandError(
                f"Unknown option `{key}`{_did_you_mean(_closest(key, keys))} Options: {_names(keys)}. "
                f"Example: `{usage}`."
            )
        pairs.append((key, value))
    return pairs


def _params(pairs: list[tuple[str, str]], model: catalog.Model, usage: str) -> TrainParams:
    try:
        return spec.parse_params(pairs, model)
    except SpecError as e:
        raise CommandError(f"{e} Example: `{usage}`.") from None


# -- train -------------------------------------------------------------------------------------------------------


def _train(words: list[str]) -> TrainCommand:
    first = words[0]
    if "=" in first and not catalog.is_s3_uri(first):
        raise CommandError(f"Start with a dataset and a model, then options: `{example()}`.")
    ds = _dataset(first, first=True, usage=example)
    if len(words) < 2 or "=" in words[1]:
        raise _no_model(words[1] if len(words) > 1 else None, example(ds.name))
    m = _model(words[1], example(ds.name))
    pairs = _pairs(words[2:], example(ds.name, m.name))
    params = _params(pairs, m, example(ds.name, m.name))
    return TrainCommand(dataset=ds.name, model=m.name, options=tuple(pairs), params=params)


# -- weights -----------------------------------------------------------------------------------------------------


def _promoted_example(dataset: str) -> str:
    return f"/train weights {dataset} {EXAMPLE_MODEL}"


def _weights(args: list[str]) -> WeightsCommand | PromotedWeightsCommand:
    """`weights <job> [last]`, or `weights <dataset> <model>`: a catalog dataset or an s3:// prefix is no job."""
    usage = (
        f"`/train weights` takes a job id (`/train weights {EXAMPLE_JOB}`, or `/train weights {EXAMPLE_JOB} last` "
        f"for its last weights), or a dataset and a model for the promoted weights "
        f"(`/train weights {EXAMPLE_DATASET} {EXAMPLE_MODEL}`)."
    )
    if not args or len(args) > 2:
        raise CommandError(usage)
    first = args[0]
    is_dataset = catalog.is_s3_uri(first) or first.lower() in catalog.DATASETS
    if is_dataset:
        ds = _dataset(first, first=False, usage=_promoted_example)
        if len(args) < 2:
            raise CommandError(
                f"`{ds.name}` is a dataset: give a model too for the weights schedules promoted, "
                f"e.g. `/train weights {ds.name} {EXAMPLE_MODEL}`."
            )
        m = _model(args[1], _promoted_example(ds.name))
        return PromotedWeightsCommand(dataset=ds.name, model=m.name)
    if len(args) == 2:
        which = args[1].lower()
        if which in ("best", "last"):
            return WeightsCommand(job_id=_job_id(first), which="last" if which == "last" else "best")
        if which in catalog.MODELS or _closest(which, catalog.MODELS):
            # A dataset and a model, the dataset misspelt: say so, with the closest dataset.
            _dataset(first, first=False, usage=_promoted_example)
        raise CommandError(
            f"`{args[1]}` does not go after a job id{_did_you_mean(_closest(which, ('best', 'last')))} {usage}"
        )
    return WeightsCommand(job_id=_job_id(first))


# -- schedule ----------------------------------------------------------------------------------------------------

# A `cron(…)` is one token though it holds spaces (up to its `)`, or to the end when it has none).
_SCHEDULE_TOKEN = re.compile(r"cron\([^)]*\)?|\S+", re.IGNORECASE)
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
WEEKDAYS: dict[str, str] = {
    "mon": "monday",
    "tue": "tuesday",
    "wed": "wednesday",
    "thu": "thursday",
    "fri": "friday",
    "sat": "saturday",
    "sun": "sunday",
}
_WHEN_KINDS = ("daily", "weekly", "cron(…)")
_WHEN_FORMS = f"`daily 02:00`, `weekly mon 02:00` or `{EXAMPLE_CRON}`"


def _schedule(rest: str) -> ScheduleCommand:
    tokens = _SCHEDULE_TOKEN.findall(rest)
    usage = schedule_example()
    if not tokens or ("=" in tokens[0] and not catalog.is_s3_uri(tokens[0])):
        raise CommandError(f"Give a dataset, a model and when to run: `{usage}`.")
    ds = _dataset(tokens[0], first=False, usage=schedule_example)
    usage = schedule_example(ds.name)
    if len(tokens) < 2 or "=" in tokens[1] or tokens[1].lower().startswith("cron("):
        raise _no_model(tokens[1] if len(tokens) > 1 else None, usage)
    m = _model(tokens[1], usage)
    usage = schedule_example(ds.name, m.name)
    when, used = _when(tokens[2:], usage)
    pairs = _pairs(tokens[2 + used :], usage, extra_keys=SCHEDULE_ONLY_KEYS)
    tz_values = [v for k, v in pairs if k == "tz"]
    if len(tz_values) > 1:
        raise CommandError("`tz` is given twice.")
    timezone = _timezone(tz_values[0]) if tz_values else DEFAULT_TIMEZONE
    train_pairs = [(k, v) for k, v in pairs if k not in SCHEDULE_ONLY_KEYS]
    start = ("from", catalog.default_start(m))
    run_pairs = train_pairs if any(k == "from" for k, _ in train_pairs) else [*train_pairs, start]
    params = _params(run_pairs, m, usage)
    return ScheduleCommand(
        dataset=ds.name,
        model=m.name,
        when=when,
        timezone=timezone,
        options=tuple(train_pairs),
        params=params,
    )


def _when(tokens: list[str], usage: str) -> tuple[ScheduleWhen, int]:
    """When the schedule runs, and how many tokens said it."""
    if not tokens or "=" in tokens[0]:
        got = f" (got `{tokens[0]}`)" if tokens else ""
        raise CommandError(
            f"Say when to run after the model{got}: {_WHEN_FORMS}, in UTC unless `tz=Area/City` follows. "
            f"Example: `{usage}`."
        )
    kind = tokens[0].lower()
    if kind == "daily":
        if len(tokens) < 2:
            raise CommandError(f"Give the time after `daily`, as HH:MM on a 24-hour clock: `{usage}`.")
        hour, minute = _time(tokens[1])
        return ScheduleWhen(expression=f"cron({minute} {hour} * * ? *)", label=f"daily {hour:02}:{minute:02}"), 2
    if kind == "weekly":
        if len(tokens) < 3:
            raise CommandError(
                f"Give a day and a time after `weekly`, e.g. `weekly mon 02:00`. Days: {_names(WEEKDAYS)}."
            )
        day = _weekday(tokens[1])
        hour, minute = _time(tokens[2])
        return (
            ScheduleWhen(
                expression=f"cron({minute} {hour} ? * {day.upper()} *)",
                label=f"weekly {day.title()} {hour:02}:{minute:02}",
            ),
            3,
        )
    if kind.startswith("cron("):
        expression = _cron(tokens[0])
        return ScheduleWhen(expression=expression, label=expression), 1
    suggestion = _closest(kind, _WHEN_KINDS)
    raise CommandError(f"`{tokens[0]}` is not a time to run{_did_you_mean(suggestion)} Say {_WHEN_FORMS}.")


def _time(word: str) -> tuple[int, int]:
    match = _TIME.match(word)
    if not match:
        raise CommandError(f"`{word}` is not a time: give it as HH:MM on a 24-hour clock, e.g. `02:00` or `23:30`.")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23:
        raise CommandError(f"`{word}` is not a time of day: hours go from 00 to 23 (a 24-hour clock), e.g. `23:00`.")
    if minute > 59:
        raise CommandError(f"`{word}` is not a time of day: minutes go from 00 to 59, e.g. `{hour:02}:30`.")
    return hour, minute


def _weekday(word: str) -> str:
    name = word.lower()
    for short, full in WEEKDAYS.items():
        if name in (short, full):
            return short
    suggestion = _closest(name, [*WEEKDAYS, *WEEKDAYS.values()])
    meant = next((s for s, f in WEEKDAYS.items() if suggestion in (s, f)), None)
    raise CommandError(f"`{word}` is not a day{_did_you_mean(meant)} Days: {_names(WEEKDAYS)}.")


# -- cron(…) as EventBridge Scheduler reads it ---------------------------------------------------------------------

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")  # Scheduler: 1 is Sunday


@dataclass(frozen=True)
class _CronField:
    name: str
    low: int
    high: int
    takes: str  # the forms it takes, for the error message
    names: tuple[str, ...] = ()  # names for low, low + 1, …


_CRON_FIELDS = (
    _CronField("minutes", 0, 59, "0–59"),
    _CronField("hours", 0, 23, "0–23"),
    _CronField("day-of-month", 1, 31, "1–31, `?`, `L`, `LW` or `15W`"),
    _CronField("month", 1, 12, "1–12 or JAN–DEC", _MONTHS),
    _CronField("day-of-week", 1, 7, "1–7 (1 is Sunday), SUN–SAT, `?`, `6L` or `MON#2`", _DAYS),
    _CronField("year", 1970, 2199, "1970–2199"),
)
_VALUE = r"(\d+|[A-Z]{3})"
_RANGE = re.compile(rf"^(?:\*|{_VALUE}(?:-{_VALUE})?)(?:/(\d+))?$")
_DOM_SPECIAL = re.compile(r"^(?:L|LW|(\d+)W)$")
_DOW_SPECIAL = re.compile(rf"^(?:L|{_VALUE}L|{_VALUE}#([1-5]))$")


def _cron(token: str) -> str:
    """A `cron(m h dom mon dow year)` checked field by field, with names upper-cased and single spaces."""
    if not token.endswith(")"):
        raise CommandError(f"`{token}` has no closing `)`: give all six fields inside, e.g. `{EXAMPLE_CRON}`.")
    fields = token[len("cron(") : -1].upper().split()
    shown = f"cron({' '.join(fields)})"
    if len(fields) != len(_CRON_FIELDS):
        unix = " (a Unix cron has 5; Scheduler's adds a year and puts `?` in day-of-month or day-of-week)"
        raise CommandError(
            f"`{shown}` has {len(fields)} fields; EventBridge Scheduler wants 6: minutes, hours, day-of-month, "
            f"month, day-of-week, year{unix if len(fields) == 5 else ''}. Example: `{EXAMPLE_CRON}` (02:00 every day)."
        )
    for field, text in zip(_CRON_FIELDS, fields, strict=True):
        _cron_field(field, text, shown)
    if (fields[2] == "?") == (fields[4] == "?"):
        raise CommandError(
            f"`{shown}`: exactly one of day-of-month (the 3rd field) and day-of-week (the 5th) must be `?`, "
            f"e.g. `{EXAMPLE_CRON}` (every day) or `cron(0 2 ? * MON *)` (Mondays)."
        )
    return shown


def _cron_field(field: _CronField, text: str, shown: str) -> None:
    bad = CommandError(
        f"`{shown}`: the {field.name} field `{text}` is not valid: it takes {field.takes}, with `,` `-` `*` `/`."
    )
    if text == "?":
        if field.name not in ("day-of-month", "day-of-week"):
            raise bad
        return
    for part in text.split(","):
        values: list[str] = []
        if field.name == "day-of-month" and (special := _DOM_SPECIAL.match(part)):
            values = [v for v in special.groups() if v]
        elif field.name == "day-of-week" and (special := _DOW_SPECIAL.match(part)):
            values = [v for v in special.groups()[:2] if v]
        elif match := _RANGE.match(part):
            first, last, step = match.groups()
            if step is not None and int(step) < 1:
                raise bad
            values = [v for v in (first, last) if v]
        else:
            raise bad
        for value in values:
            number = field.low + field.names.index(value) if value in field.names else None
            if number is None and not value.isdigit():
                raise bad
            if not field.low <= (number if number is not None else int(value)) <= field.high:
                raise CommandError(f"`{shown}`: `{value}` is out of range for {field.name}, which takes {field.takes}.")


# -- time zones ----------------------------------------------------------------------------------------------------


@cache
def _zones() -> Mapping[str, str]:
    """Every IANA time zone name by its lower-case form (read once: the database is a few hundred files)."""
    return {z.lower(): z for z in zoneinfo.available_timezones()}


def _timezone(value: str) -> str:
    """The IANA name `value` spells (in any case), or a CommandError with the closest name."""
    if value.upper() == DEFAULT_TIMEZONE:
        return DEFAULT_TIMEZONE
    zones = _zones()
    if not zones:
        raise CommandError(f"This deployment has no time zone database: only `tz={DEFAULT_TIMEZONE}` works.")
    key = value.lower()
    if key in zones:
        return zones[key]
    # A city alone (`tz=Berlin`) names the zone that ends with it.
    by_city = sorted(z for low, z in zones.items() if "/" in low and low.rsplit("/", 1)[1] == key)
    suggestion = by_city[0] if by_city else None
    if suggestion is None:
        close = difflib.get_close_matches(key, list(zones), n=1, cutoff=0.6)
        suggestion = zones[close[0]] if close else None
    mean = f": did you mean `tz={suggestion}`?" if suggestion else "."
    raise CommandError(
        f"Unknown time zone `{value}`{mean} Give an IANA name such as `tz=Europe/Berlin` or `tz=America/New_York` "
        f"(schedules run in {DEFAULT_TIMEZONE} without `tz=`)."
    )
