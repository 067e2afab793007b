"""Job spec validation: catalog names, options, bounds, and the messages a person sees."""

from __future__ import annotations

import pytest

from spotter import catalog
from spotter.catalog import CatalogError, GpuNeeds
from spotter.spec import SpecError, TrainParams, build_spec, new_job_id
from tests.spotter.helpers import make_spec


def test_defaults_come_from_the_model() -> None:
    spec = make_spec()
    assert (spec.params.epochs, spec.params.img, spec.params.batch) == (20, 128, 16)
    assert spec.recipe == "ultralytics" and spec.unit == "epoch" and spec.length == 20
    assert spec.max_minutes == 120
    assert spec.params.spot == "auto" and spec.params.from_ == "scratch"


def test_options_override_defaults() -> None:
    spec = make_spec(epochs="5", img="256", batch="8", spot="false", max_hours="0.5", **{"from": "pretrained"})
    assert (spec.params.epochs, spec.params.img, spec.params.batch) == (5, 256, 8)
    assert spec.params.spot == "false" and spec.max_minutes == 30 and spec.params.from_ == "pretrained"


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ({"epochs": "abc"}, "`epochs=abc` is not valid"),
        ({"epochs": "0"}, "epochs takes a whole number from 1 to 10000"),
        ({"img": "100"}, "multiple of 32 (e.g. 96)"),
        ({"batch": "2048"}, "`batch=2048` is not valid"),
        ({"instance": "t2.micro"}, "must be one of g4dn.xlarge"),
        ({"spot": "maybe"}, "`spot=auto` (spot, else on-demand), `spot=true` (spot only) or `spot=false`"),
        ({"max_hours": "100"}, "hours from 0.1 to 72"),
        ({"from": "yesterday"}, "`from=scratch`, `from=pretrained` or `from=promoted`"),
        ({"lr": "0.1"}, "Unknown option `lr`. Options: `epochs`"),
        ({"iterations": "1000"}, "`yolov8n` trains in epochs: use `epochs=`"),
    ],
)
def test_bad_options_name_the_problem_and_what_works(pairs: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError) as e:
        make_spec(**pairs)
    assert message in str(e.value)


def test_duplicate_option() -> None:
    with pytest.raises(SpecError, match="`epochs` is given twice"):
        build_spec("shapes", "yolov8n", [("epochs", "1"), ("epochs", "2")], requested_by="U", channel="C", seed="s")


def test_unknown_names_list_the_catalog() -> None:
    with pytest.raises(CatalogError, match=r"Unknown dataset `cats`\. Datasets: .*`shapes`.*`s3://bucket/prefix/`"):
        make_spec(dataset="cats")
    with pytest.raises(CatalogError, match=r"Unknown model `yolov99`\. Models: .*`yolov8n`"):
        make_spec(model="yolov99")


def test_shell_text_never_survives_validation() -> None:
    for evil in ("1;rm -rf /", "$(reboot)", "`id`", "5 && shutdown"):
        with pytest.raises(SpecError):
            make_spec(epochs=evil)
    with pytest.raises(CatalogError):
        make_spec(dataset="shapes;reboot")


def test_job_ids_are_deterministic_readable_and_distinct() -> None:
    a, b = new_job_id("shapes", "T1:trig-1"), new_job_id("shapes", "T1:trig-2")
    assert a == new_job_id("shapes", "T1:trig-1") and a != b
    assert a.startswith("shapes-") and len(a) == len("shapes-") + 6
    assert not set(a.removeprefix("shapes-")) & set("01lo")


def test_instance_types_from_gpu_needs() -> None:
    assert make_spec().instance_types()[:3] == ["g4dn.xlarge", "g4dn.2xlarge", "g6.xlarge"]
    assert make_spec(instance="g5.xlarge").instance_types() == ["g5.xlarge"]
    four = make_spec(gpus="4").instance_types()
    assert four and all(t.endswith("12xlarge") for t in four)
    assert GpuNeeds(min_gpu_memory_gib=24).instance_types()[0] == "g6.xlarge"


def test_epochs_and_iterations_are_exclusive() -> None:
    with pytest.raises(ValueError, match="either epochs or iterations"):
        TrainParams(epochs=1, iterations=1000)


@pytest.mark.parametrize(
    ("uri", "stem"),
    [
        ("s3://my-bucket/datasets/boats/", "boats"),
        ("s3://team.data-1/exports/Aerial_Maritime.v2/", "aerial-maritime-v2"),
        ("s3://bkt/year=2024/month=05/", "month-05"),
        ("s3://bkt/", "bkt"),  # the whole bucket
        ("s3://bkt/a-very-long-folder-name-for-a-dataset/", "a-very-long-folder-n"),
    ],
)
def test_an_s3_prefix_is_a_dataset(uri: str, stem: str) -> None:
    spec = make_spec(dataset=uri)
    assert spec.dataset == uri and spec.job_id.startswith(f"{stem}-")
    assert catalog.dataset(uri).classes == ()  # they come from the dataset itself, on the instance
    assert catalog.dataset(uri).source == "s3" and catalog.dataset(uri).format is None


def test_an_s3_prefix_keeps_its_case() -> None:
    assert make_spec(dataset="S3://bkt/Data/Boats/").dataset == "s3://bkt/Data/Boats/"


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("s3://bkt/boats", "ends with `/`"),
        ("s3://bkt", "ends with `/`"),
        ("s3://bkt/../other/", "`.` or `..` folder"),
        ("s3://bkt/a/./b/", "`.` or `..` folder"),
        ("s3://bkt//a/", "folder names of letters"),
        ("s3://bkt/a;reboot/", "folder names of letters"),
        ("s3://bkt/$(reboot)/", "folder names of letters"),
        ("s3://bkt/`id`/", "folder names of letters"),
        ("s3://bkt/a b/", "folder names of letters"),
        ("s3://bkt/a|b&c/", "folder names of letters"),
        ("s3://bkt/<!channel>/", "folder names of letters"),
        ("s3://Bucket/a/", "is not an S3 bucket name"),
        ("s3://bk/a/", "is not an S3 bucket name"),
        ("s3://my..bucket/a/", "is not an S3 bucket name"),
        ("s3://192.168.1.10/a/", "is not an S3 bucket name"),
        ("s3://-bucket/a/", "is not an S3 bucket name"),
        ("s3://bkt;rm -rf/a/", "is not an S3 bucket name"),
        ("s3:///a/", "is not an S3 bucket name"),
        (f"s3://bkt/{'a/' * 300}", "folder names of letters"),
        ("https://bkt/a/", "Unknown dataset"),
    ],
)
def test_bad_s3_prefixes_say_what_is_wrong(uri: str, says: str) -> None:
    with pytest.raises(CatalogError) as e:
        make_spec(dataset=uri)
    assert says in str(e.value)
