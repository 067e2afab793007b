"""Datasets in Slack: `/train s3://bucket/prefix/ <model>`, and what `/train datasets` and `/train models` list."""

from __future__ import annotations

import time

import pytest

from bot import views
from bot.commands import CommandError, TrainCommand, parse
from spotter import catalog
from tests.bot.conftest import AwsCalls, Bench, function_url_event
from tests.bot.test_bot_app import ack_text, queued_job
from tests.bot.test_bot_views import check_limits, shown


def test_an_s3_prefix_is_a_dataset_as_typed() -> None:
    cmd = parse("s3://team-data/Exports/Boats_v2/ yolov8n epochs=3")
    assert isinstance(cmd, TrainCommand)
    assert (cmd.dataset, cmd.model, cmd.params.epochs) == ("s3://team-data/Exports/Boats_v2/", "yolov8n", 3)
    hive = parse("s3://team-data/year=2024/ YOLOv8n")  # `=` in a prefix is no option
    assert isinstance(hive, TrainCommand) and hive.dataset == "s3://team-data/year=2024/"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("s3://team-data/boats yolov8n", "ends with `/`"),
        ("s3://team-data/../x/ yolov8n", "`..`"),
        ("s3://team-data/$(reboot)/ yolov8n", "folder names of letters"),
        ("s3://Team/boats/ yolov8n", "is not an S3 bucket name"),
    ],
)
def test_a_bad_s3_prefix_says_why_with_an_example(text: str, says: str) -> None:
    with pytest.raises(CommandError) as e:
        parse(text)
    assert says in str(e.value) and f"`/train {catalog.S3_EXAMPLE} " in str(e.value)


def test_datasets_lists_format_size_and_classes_and_how_to_bring_ones_own() -> None:
    message = views.datasets_message()
    check_limits(message)
    text = shown(message)
    for d in catalog.DATASETS.values():
        assert f"`{d.name}` {d.description}; stored as {d.format}; {d.size}; {len(d.classes)} classes: " in text
    assert "5 classes: pedestrians, riders, partially-visible persons, ignore regions, crowd" in text
    assert "80 classes: person, bicycle, car, motorcycle, airplane, bus, …, toothbrush" in text
    assert "8000 train / 1000 val images" in text and "118287 train / 5000 val images" in text
    for needs in ("`/train s3://bucket/prefix/ <model>`", "`data.yaml`", "`obj.names`", "`annotations/", "`.xml`"):
        assert needs in text, needs
    assert message["text"] == f"Datasets: {', '.join(catalog.DATASETS)}, or your own s3://bucket/prefix/"


def test_models_are_listed_by_framework() -> None:
    message = views.models_message()
    check_limits(message)
    sections = [b["text"]["text"] for b in message["blocks"]]
    recipes = {m.recipe for m in catalog.MODELS.values()}
    assert len(sections) == 1 + len(recipes)
    for section in sections[1:]:
        recipe = section.splitlines()[0].strip("*")
        assert recipe in recipes
        listed = [line.split("`")[1] for line in section.splitlines()[1:]]
        assert listed == [m.name for m in catalog.MODELS.values() if m.recipe == recipe]
    for m in catalog.MODELS.values():
        assert m.name in message["text"]


def test_an_s3_dataset_is_queued_from_the_ack_without_aws(bench: Bench, aws_calls: AwsCalls) -> None:
    assert "Datasets:" in ack_text(bench.slash("datasets"))
    aws_calls.calls.clear()
    bench.gate.clear()
    started = time.perf_counter()
    job = queued_job(bench.post(function_url_event(bench.slash_body("s3://team-data/Exports/Boats_v2/ yolov8n"))))
    assert aws_calls.calls == [] and time.perf_counter() - started < 0.5
    assert job.startswith("boats-v2-")
    bench.gate.set()
    bench.settle()
    assert bench.store.get(job).spec.dataset == "s3://team-data/Exports/Boats_v2/"
