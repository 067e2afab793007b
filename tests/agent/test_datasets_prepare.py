"""`prepare` against S3 (moto): published versions in every layout, corrupt objects, resumed attempts, `s3://`
prefixes without a manifest, the recipe's own data commands."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ResponseStreamingError
from botocore.response import StreamingBody

from agent.datasets import DatasetError, prepare
from agent.plan import DataStep, Step
from infra.datasets import local_files, publish
from spotter import catalog
from tests.agent.test_datasets_convert import (
    BUILDERS,
    CLASSES,
    STORED,
    expected,
    layout_boxes,
    png,
    write_yolo_tree,
)

BUCKET = "spotter-datasets-test"
COMMANDS = (("python", "-m", "agent.trainers.darknet_cfg", "--data-dir", "data"),)


@pytest.fixture
def s3(aws: str) -> Any:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def boats(monkeypatch: pytest.MonkeyPatch) -> catalog.Dataset:
    """A catalog entry for the tests' dataset, published (or not) by each test."""
    entry = catalog.Dataset(name="boats", description="test boats", classes=CLASSES, source="s3", format="yolo")
    monkeypatch.setitem(catalog.DATASETS, "boats", entry)
    return entry


class Wire:
    """The S3 client as prepare sees it: records object reads; can corrupt the first (or every) read of a key."""

    def __init__(
        self, s3: Any, corrupt: tuple[str, ...] = (), always: bool = False, broken: tuple[str, ...] = ()
    ) -> None:
        self.s3 = s3
        self.gets: list[str] = []
        self.corrupt = set(corrupt)
        self.always = always
        self.broken = set(broken)  # the first read of these breaks off

    def __getattr__(self, name: str) -> Any:
        return getattr(self.s3, name)

    def get_object(self, **kwargs: Any) -> Any:
        self.gets.append(kwargs["Key"])
        if kwargs["Key"] in self.broken:
            self.broken.discard(kwargs["Key"])
            raise ResponseStreamingError(error="connection reset by peer")
        response = self.s3.get_object(**kwargs)
        if kwargs["Key"] in self.corrupt:
            if not self.always:
                self.corrupt.discard(kwargs["Key"])
            data = bytearray(response["Body"].read())
            data[-1] ^= 0xFF  # same size, other bytes: only a checksum tells
            response["Body"] = StreamingBody(io.BytesIO(bytes(data)), len(data))
        return response


class Runs:
    def __init__(self, ok: bool = True) -> None:
        self.steps: list[Step] = []
        self.ok = ok

    def __call__(self, step: Step) -> bool:
        self.steps.append(step)
        return self.ok


def step(dataset: str, layout: str, out: Path, classes: tuple[str, ...] = CLASSES, **kw: Any) -> DataStep:
    return DataStep(dataset=dataset, layout=layout, out=out, classes=classes, **kw)  # type: ignore[arg-type]


def published(s3: Any, tmp_path: Path, source: str = "yolo", name: str = "boats", version: str = "1") -> Path:
    src = BUILDERS[source](tmp_path / f"src-{source}")
    publish(s3, BUCKET, name=name, version=version, src=src, classes=CLASSES)
    return src


def upload_tree(s3: Any, root: Path, prefix: str, checksum: bool = False) -> None:
    extra = {"ChecksumAlgorithm": "SHA256"} if checksum else {}
    for rel in local_files(root):
        s3.put_object(Bucket=BUCKET, Key=prefix + rel, Body=(root / rel).read_bytes(), **extra)


@pytest.mark.parametrize("source", ["yolo", "darknet", "coco", "voc"])
@pytest.mark.parametrize("layout", ["yolo", "darknet", "coco"])
def test_a_published_dataset_is_prepared_in_every_layout(
    s3: Any, boats: catalog.Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, layout: str
) -> None:
    published(s3, tmp_path, source)
    capsys.readouterr()
    runs = Runs()
    prepare(step("boats", layout, tmp_path / "data", commands=COMMANDS), s3=s3, bucket=BUCKET, run=runs)
    assert layout_boxes(tmp_path / "data", layout) == expected(source)
    out = capsys.readouterr().out
    assert f"s3://{BUCKET}/datasets/boats/1/manifest.json: boats 1 ({STORED[source]}, 2 classes" in out
    assert "train: 3 images, 3 boxes, 1 empty labels, 2 classes" in out
    assert "val: 2 images, 1 boxes, 1 empty labels, 2 classes" in out
    assert f"{STORED[source]} → {layout} layout in {tmp_path / 'data'}" in out
    assert runs.steps == [Step("data", COMMANDS)]


@pytest.mark.parametrize("damage", [b"x" * 5, None], ids=["truncated", "same-size"])
def test_a_corrupt_object_is_refused_by_name(
    s3: Any, boats: catalog.Dataset, tmp_path: Path, damage: bytes | None
) -> None:
    published(s3, tmp_path)
    key = "datasets/boats/1/files/images/train/b.png"
    body = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    body[10] ^= 0xFF
    s3.put_object(Bucket=BUCKET, Key=key, Body=damage or bytes(body))
    want = r"5 bytes instead of \d+" if damage else "SHA-256 [0-9a-f]{64} instead of [0-9a-f]{64}"
    with pytest.raises(DatasetError, match=rf"dataset boats: s3://{BUCKET}/{key} is corrupt: {want} \(downloaded 2"):
        prepare(step("boats", "yolo", tmp_path / "data"), s3=s3, bucket=BUCKET, run=Runs())


def test_a_download_that_arrives_corrupt_is_fetched_once_more(
    s3: Any, boats: catalog.Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    published(s3, tmp_path)
    key, other = "datasets/boats/1/files/images/val/d.png", "datasets/boats/1/files/labels/val/d.txt"
    wire = Wire(s3, corrupt=(key,), broken=(other,))
    prepare(step("boats", "yolo", tmp_path / "data"), s3=wire, bucket=BUCKET, run=Runs())
    assert wire.gets.count(key) == wire.gets.count(other) == 2
    text = capsys.readouterr().out
    assert "downloaded 10 files" in text and "2 fetched twice" in text
    assert layout_boxes(tmp_path / "data", "yolo") == expected("yolo")


def test_a_resumed_attempt_fetches_only_what_is_missing_or_damaged(
    s3: Any, boats: catalog.Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    published(s3, tmp_path)
    out = tmp_path / "data"
    prepare(step("boats", "yolo", out), s3=s3, bucket=BUCKET, run=Runs())
    assert "downloaded 10 files" in capsys.readouterr().out
    source = out / ".source"
    (source / "images" / "train" / "a.png").unlink()  # the attempt was stopped before this one arrived
    (source / "labels" / "train" / "b.txt").write_text("1 0.9 0.9 0.1 0.1\n")  # and this one is damaged

    wire = Wire(s3)
    prepare(step("boats", "yolo", out), s3=wire, bucket=BUCKET, run=Runs())
    assert sorted(wire.gets) == [
        "datasets/boats/1/files/images/train/a.png",
        "datasets/boats/1/files/labels/train/b.txt",
        "datasets/boats/1/manifest.json",
    ]
    assert "downloaded 2 files" in (text := capsys.readouterr().out) and "8 already here and verified" in text
    assert layout_boxes(out, "yolo") == expected("yolo")


@pytest.mark.parametrize("source", sorted(BUILDERS))
def test_an_s3_prefix_without_a_manifest_is_detected(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str
) -> None:
    upload_tree(s3, BUILDERS[source](tmp_path / "src"), f"users/Alice/{source}/")
    layout = {"yolo": "coco", "roboflow": "darknet", "coco": "yolo"}.get(source, "yolo")
    runs = Runs()
    prepare(
        step(f"s3://{BUCKET}/users/Alice/{source}/", layout, tmp_path / "data", classes=()), s3=s3, bucket="x", run=runs
    )
    assert layout_boxes(tmp_path / "data", layout) == expected(source)
    out = capsys.readouterr().out
    assert f"s3://{BUCKET}/users/Alice/{source}/: no manifest.json" in out
    assert f"detected {STORED[source]}: " in out and "classes boat, dock" in out
    assert runs.steps == []  # no data commands, nothing run


def test_s3_checksums_guard_a_prefix_without_a_manifest(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upload_tree(s3, write_yolo_tree(tmp_path / "src"), "raw/", checksum=True)
    key = "raw/images/train/a.png"
    wire = Wire(s3, corrupt=(key,))
    prepare(step(f"s3://{BUCKET}/raw/", "yolo", tmp_path / "data", classes=()), s3=wire, bucket="x", run=Runs())
    assert wire.gets.count(key) == 2
    text = capsys.readouterr().out
    assert "10 also against S3's SHA-256" in text and "1 fetched twice" in text
    with pytest.raises(DatasetError, match=rf"s3://{BUCKET}/{key} is corrupt: SHA-256"):
        prepare(
            step(f"s3://{BUCKET}/raw/", "yolo", tmp_path / "again", classes=()),
            s3=Wire(s3, corrupt=(key,), always=True),
            bucket="x",
            run=Runs(),
        )


def test_an_s3_prefix_with_a_manifest_uses_it(s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    published(s3, tmp_path, "darknet", name="persons-mini", version="2024.1")
    prefix = f"s3://{BUCKET}/datasets/persons-mini/2024.1/"
    prepare(step(prefix, "darknet", tmp_path / "data", classes=()), s3=s3, bucket="x", run=Runs())
    assert layout_boxes(tmp_path / "data", "darknet") == expected("darknet")
    assert f"{prefix}manifest.json: persons-mini 2024.1 (darknet" in capsys.readouterr().out


def test_what_cannot_be_prepared_is_said(s3: Any, boats: catalog.Dataset, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"datasets/boats/1/manifest.json does not exist: the version was never"):
        prepare(step("boats", "yolo", tmp_path / "a"), s3=s3, bucket=BUCKET, run=Runs())
    with pytest.raises(DatasetError, match=r"s3://spotter-datasets-test/nothing/ holds no files"):
        prepare(step(f"s3://{BUCKET}/nothing/", "yolo", tmp_path / "b", classes=()), s3=s3, bucket="x", run=Runs())
    published(s3, tmp_path)
    with pytest.raises(DatasetError, match="the job expects the classes boat, car, the dataset has boat, dock"):
        prepare(step("boats", "yolo", tmp_path / "c", classes=("boat", "car")), s3=s3, bucket=BUCKET, run=Runs())
    with pytest.raises(DatasetError, match="the recipe's data commands failed"):
        prepare(step("boats", "yolo", tmp_path / "d", commands=COMMANDS), s3=s3, bucket=BUCKET, run=Runs(ok=False))
    with pytest.raises(DatasetError, match="is not an S3 bucket name"):
        prepare(step("s3://Bad_Bucket/x/", "yolo", tmp_path / "e", classes=()), s3=s3, bucket=BUCKET, run=Runs())


def test_a_set_without_val_validates_on_test(s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    for split, stem in (("train", "a"), ("test", "b")):
        (src / "images" / split).mkdir(parents=True)
        (src / "labels" / split).mkdir(parents=True)
        (src / "images" / split / f"{stem}.png").write_bytes(png())
        (src / "labels" / split / f"{stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (src / "data.yaml").write_text("train: images/train\ntest: images/test\nnames: [boat]\n")
    upload_tree(s3, src, "seed2/")
    prepare(step(f"s3://{BUCKET}/seed2/", "yolo", tmp_path / "data", classes=()), s3=s3, bucket="x", run=Runs())
    assert "no val split: validating on the test split (images/test)" in capsys.readouterr().out
    assert (tmp_path / "data" / "labels" / "val" / "b.txt").read_text() == "0 0.5 0.5 0.2 0.2\n"


def test_the_generated_set_needs_no_bucket(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shapes = step("shapes", "darknet", tmp_path / "data", classes=("rectangle", "circle"))
    prepare(shapes, s3=None, bucket="", run=Runs())
    assert len((tmp_path / "data" / "train.txt").read_text().splitlines()) == 200
    assert (tmp_path / "data" / "obj.names").read_text() == "rectangle\ncircle\n"
    assert "train: 200 images" in capsys.readouterr().out
