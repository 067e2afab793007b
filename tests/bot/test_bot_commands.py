"""The `/train` grammar: what parses into which command, and what an error says instead."""

from __future__ import annotations

import time

import pytest
from pydantic import TypeAdapter

from bot.commands import (
    CancelCommand,
    Command,
    CommandError,
    CostCommand,
    DatasetsCommand,
    HelpCommand,
    ListCommand,
    ModelsCommand,
    PlannedCommand,
    StatusCommand,
    TrainCommand,
    WeightsCommand,
    example,
    parse,
)
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
        ("cancel shapes-abc234", CancelCommand(job_id="shapes-abc234")),
        ("cancel Shapes-ABC234", CancelCommand(job_id="shapes-abc234")),
        ("logs shapes-abc234", PlannedCommand(name="logs")),
        ("schedule shapes yolov8n daily 02:00", PlannedCommand(name="schedule")),
        ("schedules", PlannedCommand(name="schedules")),
        ("unschedule s-1", PlannedCommand(name="unschedule")),
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
        ("weights", ["`/train weights` takes one job id", "e.g. `/train weights "]),
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
        "cancel shapes-abc234",
        "cost",
        "list",
    ):
        cmd = parse(text)
        assert adapter.validate_python(cmd.model_dump(by_alias=True)) == cmd


def test_parsing_takes_microseconds() -> None:
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        parse("shapes yolov8n epochs=5 batch=8 img=128")
        parse("status shapes-abc234")
    per_call = (time.perf_counter() - start) / (2 * n)
    assert per_call < 200e-6, f"{per_call * 1e6:.0f} µs per parse"
