"""The operator's dataset tool against moto: publish (manifest last, resumable, never over a version), verify, list."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from agent.datasets.manifest import Manifest
from infra.datasets import main, publish
from tests.agent.test_datasets_convert import CLASSES, write_darknet_tree, write_voc_tree

BUCKET = "spotter-operator-test"
PREFIX = "datasets/boats/1/"


@pytest.fixture
def s3(aws: str) -> Any:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def persons_zip(tmp_path: Path) -> Path:
    """Like seed 000's persons.zip: one top folder, and the junk a Mac adds."""
    tree = write_darknet_tree(tmp_path / "tree")
    target = tmp_path / "boats.zip"
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                zf.write(path, f"boats/{path.relative_to(tree).as_posix()}")
        zf.writestr("__MACOSX/boats/._train.txt", b"junk")
        zf.writestr("boats/.DS_Store", b"junk")
    return target


def manifest_in(s3: Any, prefix: str = PREFIX) -> Manifest:
    return Manifest.model_validate_json(s3.get_object(Bucket=BUCKET, Key=f"{prefix}manifest.json")["Body"].read())


def test_publish_a_zip(s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = persons_zip(tmp_path)
    argv = ["publish", "--name", "boats", "--version", "1", "--format", "darknet", "--from", str(src)]
    assert main([*argv, "--bucket", BUCKET]) == 0
    m = manifest_in(s3)
    assert (m.name, m.version, m.format, m.classes, m.source) == ("boats", "1", "darknet", CLASSES, "boats.zip")
    assert m.splits == {"train": "train.txt", "val": "val.txt"}
    local = tmp_path / "tree"
    assert sorted(f.path for f in m.files) == sorted(p.relative_to(local).as_posix() for p in local.rglob("*.*"))
    for f in m.files:
        data = (local / f.path).read_bytes()
        assert (f.size, f.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        head = s3.head_object(Bucket=BUCKET, Key=f"{PREFIX}files/{f.path}", ChecksumMode="ENABLED")
        assert base64.b64decode(head["ChecksumSHA256"]).hex() == f.sha256  # S3 checked the upload too
    out = capsys.readouterr().out
    assert "train: 3 images, 3 boxes, 1 empty labels, 2 classes" in out
    assert "boats 1: darknet, 2 classes, splits train train.txt, val val.txt; 13 files" in out
    assert "uploaded 13 files, 0 already there" in out


def test_a_version_is_never_overwritten(s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_voc_tree(tmp_path / "voc")
    publish(s3, BUCKET, name="boats", version="1", src=src, classes=CLASSES)
    before = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}manifest.json")["Body"].read()
    assert main(["publish", "--name", "boats", "--version", "1", "--from", str(src), "--bucket", BUCKET]) == 1
    assert "is published already; versions never change" in capsys.readouterr().err
    assert s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}manifest.json")["Body"].read() == before


class FailingUploads:
    """An S3 client whose uploads fail after the first few, as a dropped connection would leave a publish."""

    def __init__(self, s3: Any, allowed: int) -> None:
        self.s3 = s3
        self.allowed = allowed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.s3, name)

    def upload_file(self, *args: Any, **kwargs: Any) -> None:
        if self.allowed <= 0:
            raise ConnectionError("connection reset")
        self.allowed -= 1
        self.s3.upload_file(*args, **kwargs)


def test_a_half_published_version_has_no_manifest_and_finishes_when_run_again(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_darknet_tree(tmp_path / "tree")
    with pytest.raises(ConnectionError):
        publish(FailingUploads(s3, allowed=5), BUCKET, name="boats", version="1", src=src)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX).get("Contents", [])]
    assert 0 < len(keys) < 13 and f"{PREFIX}manifest.json" not in keys
    assert main(["list", "--bucket", BUCKET]) == 0
    assert "boats 1: incomplete (no manifest): publish it again to finish" in capsys.readouterr().out

    publish(s3, BUCKET, name="boats", version="1", src=src)
    assert f"uploaded {13 - len(keys)} files, {len(keys)} already there" in capsys.readouterr().out
    assert len(manifest_in(s3).files) == 13


def test_verify_finds_damage(s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    publish(s3, BUCKET, name="boats", version="1", src=write_darknet_tree(tmp_path / "tree"))
    verify = ["verify", "--name", "boats", "--version", "1", "--bucket", BUCKET]
    assert main(verify) == 0
    assert "boats 1: every file matches its manifest" in capsys.readouterr().out

    body = bytearray(s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}files/labels/a.txt")["Body"].read())
    body[0] ^= 0x01
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}files/labels/a.txt", Body=bytes(body))
    s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}files/images/b.jpg")
    assert main([*verify, "--quick"]) == 1  # sizes only: the same-size damage goes unseen
    assert capsys.readouterr().out.splitlines() == ["images/b.jpg: missing"]
    assert main(verify) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "images/b.jpg: missing" and out[1].startswith("labels/a.txt: SHA-256 ")


def test_list_shows_versions_and_unpublished_catalog_datasets(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(s3, BUCKET, name="persons", version="1", src=write_darknet_tree(tmp_path / "tree"), source="persons.zip")
    capsys.readouterr()
    assert main(["list", "--bucket", BUCKET]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("persons 1: darknet, 2 classes, 13 files, ") and lines[0].endswith("from persons.zip")
    assert "aerial-maritime 1: in the catalog, not published" in lines
    assert "coco2017 1: in the catalog, not published" in lines
    assert not any(line.startswith("shapes") for line in lines)  # generated, never published


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--name", "Boats!"], "name 'Boats!': lower-case letters"),
        (["--version", "../2"], "version '../2'"),
        (["--format", "coco"], "no train/val/test split found in this coco dataset"),
        (["--classes", "dock,boat"], r"the classes given (dock, boat) are not the dataset's (boat, dock)"),
        (["--from", "/nonexistent/boats.zip"], "does not exist"),
    ],
)
def test_publish_says_what_is_wrong(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    options = {"--name": "boats", "--version": "1", "--from": str(write_darknet_tree(tmp_path / "tree"))}
    for key, value in zip(args[::2], args[1::2], strict=True):
        options[key] = value
    assert main(["publish", *[x for kv in options.items() for x in kv], "--bucket", BUCKET]) == 1
    assert says in capsys.readouterr().err
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_the_manifest_is_plain_json(s3: Any, tmp_path: Path) -> None:
    publish(s3, BUCKET, name="boats", version="1", src=write_darknet_tree(tmp_path / "tree"))
    doc = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}manifest.json")["Body"].read())
    assert set(doc) == {"name", "version", "format", "classes", "splits", "files", "created_at", "source"}
    assert set(doc["files"][0]) == {"path", "size", "sha256"}
