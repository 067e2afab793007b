"""The `/train` grammar: what parses into which command, and what an error says instead."""

from __future__ import annotations

import time

import pytest
from pydantic import TypeAdapter

from bot import commands
from bot.commands import (
    SCHEDULE_ID_RE,
    SUBCOMMANDS,
    USAGE,
    CancelCommand,
    Command,
    CommandError,
    CostCommand,
    DatasetsCommand,
    HelpCommand,
    ListCommand,
    LogsCommand,
    ModelsCommand,
    PromotedWeightsCommand,
    ScheduleCommand,
    SchedulesCommand,
    ScheduleWhen,
    StatusCommand,
    TrainCommand,
    UnscheduleCommand,
    WeightsCommand,
    example,
    new_schedule_id,
    parse,
)
from bot.schedules import next_run
from spotter import catalog
from spotter.spec import PARAM_KEYS

DATASETS = [f"`{d}`" for d in catalog.DATASETS]
MODELS = [f"`{m}`" for m in catalog.MODELS]
OPTIONS = [f"`{k}`" for k in PARAM_KEYS]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", HelpCommand()),
        ("   ", HelpCommand()),
        ("help", HelpCommand()),
        ("HELP me", HelpCommand()),
        ("list", ListCommand()),
        ("datasets", DatasetsCommand()),
        ("models", ModelsCommand()),
        ("status", StatusCommand()),
        ("status shapes-abc234", StatusCommand(job_id="shapes-abc234")),
        ("status Shapes-ABC234", StatusCommand(job_id="shapes-abc234")),
        ("weights shapes-abc234", WeightsCommand(job_id="shapes-abc234")),
        ("weights shapes-abc234 last", WeightsCommand(job_id="shapes-abc234", which="last")),
        ("weights Shapes-ABC234 LAST", WeightsCommand(job_id="shapes-abc234", which="last")),
        ("weights shapes-abc234 best", WeightsCommand(job_id="shapes-abc234", which="best")),
        # a catalog dataset (or an s3:// prefix) is no job: the promoted weights of that dataset and model
        ("weights persons yolov4", PromotedWeightsCommand(dataset="persons", model="yolov4")),
        ("weights Persons YOLOv4", PromotedWeightsCommand(dataset="persons", model="yolov4")),
        (
            "weights s3://my-bucket/boats/ yolov8n",
            PromotedWeightsCommand(dataset="s3://my-bucket/boats/", model="yolov8n"),
        ),
        ("cancel shapes-abc234", CancelCommand(job_id="shapes-abc234")),
        ("cancel Shapes-ABC234", CancelCommand(job_id="shapes-abc234")),
        ("logs shapes-abc234", LogsCommand(job_id="shapes-abc234")),
        ("logs Shapes-ABC234", LogsCommand(job_id="shapes-abc234")),
        ("schedules", SchedulesCommand()),
        ("unschedule persons-yolov4-k3m9", UnscheduleCommand(schedule_id="persons-yolov4-k3m9")),
        ("unschedule Persons-YOLOv4-K3M9", UnscheduleCommand(schedule_id="persons-yolov4-k3m9")),
        ("cost", CostCommand()),
        ("cost shapes-abc234", CostCommand(job_id="shapes-abc234")),
    ],
)
def test_subcommands(text: str, expected: Command) -> None:
    assert parse(text) == expected


def test_train_with_defaults_from_the_model() -> None:
    cmd = parse("shapes yolov8n")
    assert isinstance(cmd, TrainCommand)
    assert (cmd.dataset, cmd.model, cmd.options) == ("shapes", "yolov8n", ())
    assert cmd.params.epochs == catalog.MODELS["yolov8n"].defaults["epochs"]


def test_train_with_options_any_case_and_spacing() -> None:
    cmd = parse("  Shapes   YOLOv8n  Epochs=5 batch=8\tspot=false from=pretrained ")
    assert isinstance(cmd, TrainCommand)
    assert (cmd.dataset, cmd.model) == ("shapes", "yolov8n")
    assert cmd.options == (("epochs", "5"), ("batch", "8"), ("spot", "false"), ("from", "pretrained"))
    assert (cmd.params.epochs, cmd.params.batch, cmd.params.spot, cmd.params.from_) == (5, 8, "false", "pretrained")


@pytest.mark.parametrize(
    ("text", "must_say"),
    [
        # an unknown dataset: named, with the datasets, the commands and a line that works
        ("faces yolov8n", ["`faces`", *DATASETS, "`s3://bucket/prefix/`", "`status`", "`list`", f"`{example()}`"]),
        # a subcommand that is misspelt reads as a dataset: the commands are listed too
        ("stats", ["`stats`", "`status`", *DATASETS]),
        ("shapes", ["Give a model", *MODELS, f"`{example('shapes')}`"]),
        ("shapes epochs=5", ["(got `epochs=5`)", *MODELS]),
        ("shapes yolov99", ["`yolov99`", *MODELS, f"`{example('shapes')}`"]),
        ("epochs=5 shapes yolov8n", ["dataset and a model", f"`{example()}`"]),
        ("shapes yolov8n fast", ["`fast` is not an option", "`key=value`", *OPTIONS]),
        ("shapes yolov8n =5", ["`=5`", "no option name", *OPTIONS]),
        ("shapes yolov8n colour=red", ["`colour`", *OPTIONS, f"`{example('shapes', 'yolov8n')}`"]),
        ("shapes yolov8n epochs=5 epochs=6", ["`epochs` is given twice", f"`{example('shapes', 'yolov8n')}`"]),
        ("shapes yolov8n epochs=lots", ["`epochs=lots`", "whole number from 1 to 10000", "`epochs=50`"]),
        ("shapes yolov8n epochs=0", ["`epochs=0`", "from 1 to 10000"]),
        ("shapes yolov8n img=100", ["`img=100`", "multiple of 32", "96"]),
        ("shapes yolov8n instance=m5.large", ["`instance=m5.large`", "g4dn.xlarge"]),
        ("shapes yolov8n iterations=500", ["trains in epochs", "`epochs=`"]),
        ("shapes yolov8n spot=maybe", ["`spot=maybe`", "`spot=true`"]),
        ("list all", ["`/train list` takes nothing", "`all`"]),
        ("status a b", ["at most one job id", "`/train status "]),
        ("status ../etc", ["`../etc` is not a job id", "`/train list`"]),
        ("weights", ["`/train weights` takes a job id", "`/train weights shapes-", "a dataset and a model"]),
        ("cancel", ["`/train cancel` takes one job id", "e.g. `/train cancel "]),
        ("cancel a b", ["`/train cancel` takes one job id"]),
        ("cancel ../x", ["`../x` is not a job id"]),
        ("cost a b", ["`/train cost` takes at most one job id"]),
    ],
)
def test_errors_name_the_problem_and_what_would_work(text: str, must_say: list[str]) -> None:
    with pytest.raises(CommandError) as e:
        parse(text)
    for part in must_say:
        assert part in str(e.value), f"{text!r}: {part!r} not in {str(e.value)!r}"


def test_examples_in_errors_parse() -> None:
    for ds in catalog.DATASETS:
        for m in catalog.MODELS:
            assert isinstance(parse(example(ds, m).removeprefix("/train ")), TrainCommand)


def test_commands_form_a_discriminated_union() -> None:
    adapter: TypeAdapter[Command] = TypeAdapter(Command)
    for text in (
        "shapes yolov8n epochs=3",
        "status shapes-abc234",
        "weights shapes-abc234",
        "weights shapes-abc234 last",
        "weights persons yolov4",
        "cancel shapes-abc234",
        "logs shapes-abc234",
        "schedule persons yolov4 weekly mon 02:00 tz=Europe/Berlin iterations=2000",
        "schedules",
        "unschedule persons-yolov4-k3m9",
        "cost",
        "list",
        "help",
    ):
        cmd = parse(text)
        assert adapter.validate_python(cmd.model_dump(by_alias=True)) == cmd


def test_parsing_takes_microseconds() -> None:
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        parse("shapes yolov8n epochs=5 batch=8 img=128")
        parse("status shapes-abc234")
        parse("schedule persons yolov4 cron(0 2 ? * MON-FRI *) iterations=2000")
    per_call = (time.perf_counter() - start) / (3 * n)
    assert per_call < 200e-6, f"{per_call * 1e6:.0f} µs per parse"


# -- did you mean ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "must_say"),
    [
        # a misspelt subcommand: the command it was meant to be, all commands, and the datasets to train on
        ("staus", ["Unknown command `staus`: did you mean `/train status`?", "`schedules`", *DATASETS]),
        ("staus shapes-abc234", ["did you mean `/train status`?"]),
        ("shedule persons yolov4 daily 02:00", ["did you mean `/train schedule`?"]),
        ("unschedul persons-yolov4-k3m9", ["did you mean `/train unschedule`?"]),
        ("wieghts shapes-abc234", ["did you mean `/train weights`?"]),
        # a misspelt dataset: the closest one, and still every dataset
        ("persns yolov4", ["Unknown dataset `persns`: did you mean `persons`?", *DATASETS, "`s3://bucket/prefix/`"]),
        ("coco yolov8n", ["Unknown dataset `coco`: did you mean `coco2017`?", *DATASETS]),
        ("persns yolov4", ["Example: `/train persons yolov8n epochs=20`."]),  # the example uses the suggestion
        ("shapes yolov4-tny", ["Unknown model `yolov4-tny`: did you mean `yolov4-tiny`?", *MODELS]),
        ("shapes YOLOV8", ["Unknown model `YOLOV8`: did you mean `yolov8"]),
        ("shapes yolov8n epoch=5", ["Unknown option `epoch`: did you mean `epochs`?", *OPTIONS]),
        ("shapes yolov8n Bach=4", ["Unknown option `bach`: did you mean `batch`?"]),
        ("shapes yolov8n tz=Europe/Berlin", ["`tz=` is the time zone of a schedule", "`/train schedule shapes"]),
    ],
)
def test_typos_get_the_closest_name(text: str, must_say: list[str]) -> None:
    with pytest.raises(CommandError) as e:
        parse(text)
    for part in must_say:
        assert part in str(e.value), f"{text!r}: {part!r} not in {str(e.value)!r}"


@pytest.mark.parametrize("text", ["faces yolov8n", "shapes gpt4", "shapes yolov8n colour=red", "xyzzy"])
def test_nothing_close_suggests_nothing(text: str) -> None:
    with pytest.raises(CommandError) as e:
        parse(text)
    assert "did you mean" not in str(e.value).lower()


# -- logs, weights, schedules, unschedule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "must_say"),
    [
        ("logs", ["`/train logs` takes one job id", "e.g. `/train logs shapes-"]),
        ("logs a b", ["`/train logs` takes one job id"]),
        ("logs ../etc", ["`../etc` is not a job id", "`/train list`"]),
        ("weights a b c", ["`/train weights` takes a job id", "a dataset and a model"]),
        ("weights ../x", ["`../x` is not a job id"]),
        ("weights persons", ["`persons` is a dataset: give a model too", "`/train weights persons yolov8n`"]),
        ("weights persons yolov44", ["Unknown model `yolov44`: did you mean `yolov4`?", *MODELS]),
        ("weights persns yolov4", ["Unknown dataset `persns`: did you mean `persons`?", *DATASETS]),
        ("weights shapes-abc234 lst", ["`lst` does not go after a job id: did you mean `last`?", "a dataset and"]),
        ("weights s3://Bad_Bucket/x/ yolov4", ["is not an S3 bucket name", "`/train weights s3://my-bucket/"]),
        ("schedules now", ["`/train schedules` takes nothing after it", "`now`"]),
        ("unschedule", ["`/train unschedule` takes one schedule id", "`/train schedules`"]),
        ("unschedule a b", ["`/train unschedule` takes one schedule id"]),
        ("unschedule ../x", ["`../x` is not a schedule id", "ids look like `shapes-yolov8n-", "`/train schedules`"]),
    ],
)
def test_lookup_errors(text: str, must_say: list[str]) -> None:
    with pytest.raises(CommandError) as e:
        parse(text)
    for part in must_say:
        assert part in str(e.value), f"{text!r}: {part!r} not in {str(e.value)!r}"


def test_schedule_ids_are_readable_deterministic_and_parse() -> None:
    first = new_schedule_id("persons", "yolov4", seed="T1trigger")
    assert first == new_schedule_id("persons", "yolov4", seed="T1trigger")
    assert first != new_schedule_id("persons", "yolov4", seed="T1other")
    assert first.startswith("persons-yolov4-") and len(first) == len("persons-yolov4-") + 4
    assert new_schedule_id("s3://my-bucket/data/Boats 2/", "yolov8n", seed="s").startswith("boats-2-yolov8n-")
    for dataset in catalog.DATASETS:
        for model in catalog.MODELS:
            schedule_id = new_schedule_id(dataset, model, seed="x")
            assert SCHEDULE_ID_RE.match(schedule_id) and len(schedule_id) <= 64, schedule_id
            assert parse(f"unschedule {schedule_id}") == UnscheduleCommand(schedule_id=schedule_id)


# -- schedule --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expression", "label", "timezone"),
    [
        ("schedule persons yolov4 daily 02:00", "cron(0 2 * * ? *)", "daily 02:00", "UTC"),
        ("schedule persons yolov4 DAILY 2:30", "cron(30 2 * * ? *)", "daily 02:30", "UTC"),
        ("schedule persons yolov4 daily 00:00 tz=utc", "cron(0 0 * * ? *)", "daily 00:00", "UTC"),
        ("schedule persons yolov4 weekly mon 02:00", "cron(0 2 ? * MON *)", "weekly Mon 02:00", "UTC"),
        ("schedule persons yolov4 weekly Sunday 23:59", "cron(59 23 ? * SUN *)", "weekly Sun 23:59", "UTC"),
        ("schedule persons yolov4 daily 02:00 tz=europe/berlin", "cron(0 2 * * ? *)", "daily 02:00", "Europe/Berlin"),
        ("schedule persons yolov4 cron(0 2 * * ? *)", "cron(0 2 * * ? *)", "cron(0 2 * * ? *)", "UTC"),
        # a cron(…) is read from the raw text: its spaces, any case
        (
            "schedule persons yolov4   cron( 0  2 ? *  mon-fri * )  tz=America/New_York",
            "cron(0 2 ? * MON-FRI *)",
            "cron(0 2 ? * MON-FRI *)",
            "America/New_York",
        ),
        ("schedule persons yolov4 cron(0/15 8-18 ? * MON#2 2027)", "cron(0/15 8-18 ? * MON#2 2027)", None, "UTC"),
        ("schedule persons yolov4 cron(0 2 L * ? *)", "cron(0 2 L * ? *)", None, "UTC"),
        ("schedule persons yolov4 cron(0 2 15W JAN,JUL ? *)", "cron(0 2 15W JAN,JUL ? *)", None, "UTC"),
        ("schedule persons yolov4 cron(0 9 ? * 2-6 */2)", "cron(0 9 ? * 2-6 */2)", None, "UTC"),
    ],
)
def test_schedule_when(text: str, expression: str, label: str | None, timezone: str) -> None:
    cmd = parse(text)
    assert isinstance(cmd, ScheduleCommand)
    assert (cmd.dataset, cmd.model) == ("persons", "yolov4")
    assert cmd.when == ScheduleWhen(expression=expression, label=label or expression)
    assert cmd.timezone == timezone
    assert cmd.options == ()
    assert cmd.params.from_ == "promoted"  # a scheduled run starts from the weights promoted last


def test_schedule_expressions_are_ones_scheduler_runs() -> None:
    for text in ("daily 02:00", "weekly mon 02:00", "weekly sun 23:59", "cron(0 2 ? * MON-FRI *)"):
        cmd = parse(f"schedule persons yolov4 {text} tz=Europe/Berlin")
        assert isinstance(cmd, ScheduleCommand)
        assert next_run(cmd.when.expression, cmd.timezone) is not None, text


def test_schedule_options_are_validated_like_a_train_command() -> None:
    cmd = parse("schedule shapes yolov8n daily 02:00 tz=Europe/Berlin Epochs=5 batch=8 spot=false")
    assert isinstance(cmd, ScheduleCommand)
    assert cmd.options == (("epochs", "5"), ("batch", "8"), ("spot", "false"))  # as given, without tz
    train = parse("shapes yolov8n epochs=5 batch=8 spot=false from=promoted")
    assert isinstance(train, TrainCommand)
    assert cmd.params == train.params
    # from= may still be given: pretrained (or scratch) instead of the promoted weights
    again = parse("schedule shapes yolov8n daily 02:00 from=pretrained")
    assert isinstance(again, ScheduleCommand)
    assert again.options == (("from", "pretrained"),) and again.params.from_ == "pretrained"


def test_schedule_takes_an_s3_dataset_as_typed() -> None:
    cmd = parse("schedule s3://my-bucket/Boats/ yolov8n daily 03:00")
    assert isinstance(cmd, ScheduleCommand) and cmd.dataset == "s3://my-bucket/Boats/"


@pytest.mark.parametrize(
    ("text", "must_say"),
    [
        ("schedule", ["Give a dataset, a model and when to run", "`/train schedule shapes yolov8n daily 02:00`"]),
        ("schedule persons", ["Give a model after the dataset", *MODELS]),
        ("schedule persons cron(0 2 * * ? *)", ["Give a model after the dataset (got `cron(0 2 * * ? *)`)"]),
        ("schedule persns yolov4 daily 02:00", ["Unknown dataset `persns`: did you mean `persons`?", *DATASETS]),
        ("schedule persons yolov44 daily 02:00", ["Unknown model `yolov44`: did you mean `yolov4`?", *MODELS]),
        (
            "schedule persons yolov4",
            ["Say when to run after the model", "`daily 02:00`", "`weekly mon 02:00`", "`cron(0 2 * * ? *)`"],
        ),
        ("schedule persons yolov4 iterations=2000 daily 02:00", ["Say when to run", "(got `iterations=2000`)"]),
        ("schedule persons yolov4 dayly 02:00", ["`dayly` is not a time to run: did you mean `daily`?"]),
        ("schedule persons yolov4 at(2026-12-24T18:00:00)", ["is not a time to run", "`daily 02:00`"]),
        ("schedule persons yolov4 daily", ["Give the time after `daily`", "HH:MM"]),
        ("schedule persons yolov4 daily 25:00", ["`25:00` is not a time of day", "hours go from 00 to 23"]),
        ("schedule persons yolov4 daily 24:00", ["`24:00` is not a time of day", "hours go from 00 to 23"]),
        ("schedule persons yolov4 daily 02:60", ["`02:60` is not a time of day", "minutes go from 00 to 59"]),
        ("schedule persons yolov4 daily 2am", ["`2am` is not a time", "HH:MM on a 24-hour clock"]),
        ("schedule persons yolov4 weekly 02:00", ["Give a day and a time after `weekly`", "`mon`", "`sun`"]),
        ("schedule persons yolov4 weekly mnday 02:00", ["`mnday` is not a day: did you mean `mon`?", "`sun`"]),
        ("schedule persons yolov4 weekly thurs 02:00", ["did you mean `thu`?"]),
        ("schedule persons yolov4 weekly mon 2", ["`2` is not a time", "HH:MM"]),
        # cron(…): six fields, each in its range, exactly one `?` among the two day fields
        ("schedule persons yolov4 cron(0 2 * * ? *", ["`cron(0 2 * * ? *` has no closing `)`"]),
        ("schedule persons yolov4 cron(0 2 * * *)", ["has 5 fields", "wants 6", "a Unix cron has 5"]),
        ("schedule persons yolov4 cron(0 2 * * ? * *)", ["has 7 fields", "wants 6", "minutes, hours, day-of-month"]),
        ("schedule persons yolov4 cron()", ["has 0 fields"]),
        ("schedule persons yolov4 cron(0 2 * * * *)", ["exactly one of day-of-month", "must be `?`"]),
        ("schedule persons yolov4 cron(0 2 ? * ? *)", ["exactly one of day-of-month", "`cron(0 2 ? * MON *)`"]),
        ("schedule persons yolov4 cron(0 25 * * ? *)", ["`25` is out of range for hours", "0–23"]),
        ("schedule persons yolov4 cron(60 2 * * ? *)", ["`60` is out of range for minutes", "0–59"]),
        ("schedule persons yolov4 cron(0 2 32 * ? *)", ["`32` is out of range for day-of-month"]),
        ("schedule persons yolov4 cron(0 2 ? * 8 *)", ["`8` is out of range for day-of-week", "1 is Sunday"]),
        ("schedule persons yolov4 cron(0 2 ? 13 MON *)", ["`13` is out of range for month", "JAN–DEC"]),
        ("schedule persons yolov4 cron(0 2 * * ? 1969)", ["`1969` is out of range for year"]),
        ("schedule persons yolov4 cron(0 2 ? * FOO *)", ["the day-of-week field `FOO` is not valid", "SUN–SAT"]),
        ("schedule persons yolov4 cron(0 ? * * ? *)", ["the hours field `?` is not valid"]),
        ("schedule persons yolov4 cron(*/0 2 * * ? *)", ["the minutes field `*/0` is not valid"]),
        ("schedule persons yolov4 cron(0 2 * * ? *;reboot)", ["the year field `*;REBOOT` is not valid"]),
        ("schedule persons yolov4 cron(0 2 * MON ? *)", ["the month field `MON` is not valid"]),
        # time zones: IANA names, with the closest one for a typo or a city alone
        (
            "schedule persons yolov4 daily 02:00 tz=Europe/Berln",
            ["Unknown time zone `Europe/Berln`", "`tz=Europe/Berlin`?"],
        ),
        ("schedule persons yolov4 daily 02:00 tz=Berlin", ["did you mean `tz=Europe/Berlin`?"]),
        ("schedule persons yolov4 daily 02:00 tz=new_york", ["did you mean `tz=America/New_York`?"]),
        ("schedule persons yolov4 daily 02:00 tz=Mars/Olympus", ["Unknown time zone `Mars/Olympus`.", "IANA name"]),
        ("schedule persons yolov4 daily 02:00 tz=UTC tz=Europe/Berlin", ["`tz` is given twice"]),
        # the options of a train command, plus tz
        ("schedule persons yolov4 daily 02:00 epoch=5", ["Unknown option `epoch`: did you mean `epochs`?", "`tz`"]),
        ("schedule persons yolov4 daily 02:00 fast", ["`fast` is not an option", "`key=value`"]),
        ("schedule persons yolov4 daily 02:00 epochs=5", ["trains in iterations", "`iterations=`"]),
        ("schedule persons yolov4 daily 02:00 iterations=lots", ["`iterations=lots`", "whole number from 100"]),
        ("schedule persons yolov4 daily 02:00 from=sideways", ["`from=sideways`", "`from=promoted`"]),
    ],
)
def test_schedule_errors(text: str, must_say: list[str]) -> None:
    with pytest.raises(CommandError) as e:
        parse(text)
    for part in must_say:
        assert part in str(e.value), f"{text!r}: {part!r} not in {str(e.value)!r}"


def test_without_a_time_zone_database_only_utc_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "_zones", dict)
    cmd = parse("schedule persons yolov4 daily 02:00 tz=UTC")
    assert isinstance(cmd, ScheduleCommand) and cmd.timezone == "UTC"
    with pytest.raises(CommandError, match="no time zone database: only `tz=UTC` works"):
        parse("schedule persons yolov4 daily 02:00 tz=Europe/Berlin")


# -- help ------------------------------------------------------------------------------------------------------

# One line of each USAGE entry that parses into its command.
USAGE_EXAMPLES = {
    "train": ("shapes yolov8n", TrainCommand),
    "status": ("status", StatusCommand),
    "list": ("list", ListCommand),
    "cancel": ("cancel shapes-abc234", CancelCommand),
    "logs": ("logs shapes-abc234", LogsCommand),
    "weights": ("weights shapes-abc234 last", WeightsCommand),
    "promoted": ("weights shapes yolov8n", PromotedWeightsCommand),
    "schedule": ("schedule shapes yolov8n weekly mon 02:00 tz=Europe/Berlin epochs=5", ScheduleCommand),
    "schedules": ("schedules", SchedulesCommand),
    "unschedule": ("unschedule shapes-yolov8n-abcd", UnscheduleCommand),
    "datasets": ("datasets", DatasetsCommand),
    "models": ("models", ModelsCommand),
    "cost": ("cost", CostCommand),
    "help": ("help", HelpCommand),
}


def test_help_lists_every_command_in_the_grammar_order() -> None:
    assert list(USAGE) == list(USAGE_EXAMPLES)  # the design's order: train, status, list, cancel, logs, weights, …
    for key, (text, kind) in USAGE_EXAMPLES.items():
        assert isinstance(parse(text), kind), key
        usage = USAGE[key][0]
        assert usage.startswith("/train ") and usage.split()[1] in (*SUBCOMMANDS, "<dataset>"), usage
    assert set(SUBCOMMANDS) == {text.split()[0] for text, _ in USAGE_EXAMPLES.values()} - {"shapes"}
    schedule = " ".join(USAGE["schedule"])
    for part in ("daily HH:MM", "weekly mon HH:MM", "cron(…)", "tz=", "from=promoted", "promoted"):
        assert part in schedule, part
