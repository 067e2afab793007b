"""Starting weights: pretrained ones from the bucket's cache/pretrained/ (verified downloads, kept files, clear errors,
publishing) and promoted ones, checked against the sha256 the run spec names."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from agent.inputs import InputError, fetch_pretrained, fetch_promoted, main, publish_pretrained
from agent.plan import Pretrained, Promoted

BUCKET = "spotter-test"


@pytest.fixture
def s3(aws: str) -> Iterator[Any]:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield client


def _publish(s3: Any, name: str, body: bytes, sha256: str | None = None) -> None:
    s3.put_object(
        Bucket=BUCKET,
        Key=f"cache/pretrained/{name}",
        Body=body,
        Metadata={"sha256": sha256 or hashlib.sha256(body).hexdigest()},
    )


def _gets(s3: Any) -> list[str]:
    """The keys of every GetObject this client sends from now on."""
    keys: list[str] = []
    s3.meta.events.register("provide-client-params.s3.GetObject", lambda params, **_: keys.append(params["Key"]))
    return keys


def test_several_files_arrive_verified_and_a_verified_one_is_kept(tmp_path: Path, s3: Any) -> None:
    files = {"yolov4.conv.137": b"conv" * 1000, "R-50.pkl": b"pkl" * 500, "yolov5n.pt": b"pt" * 300}
    for name, body in files.items():
        _publish(s3, name, body)
    items = [Pretrained(name, tmp_path / "weights" / name) for name in files]

    fetch_pretrained(items, s3=s3, bucket=BUCKET)

    assert {item.dest.name: item.dest.read_bytes() for item in items} == files
    assert not list((tmp_path / "weights").glob("*.part"))
    gets = _gets(s3)
    fetch_pretrained(items, s3=s3, bucket=BUCKET)
    assert gets == []


def test_a_stale_local_file_is_replaced(tmp_path: Path, s3: Any) -> None:
    _publish(s3, "yolov4-tiny.conv.29", b"new weights")
    dest = tmp_path / "yolov4-tiny.conv.29"
    dest.write_bytes(b"old weights")
    fetch_pretrained([Pretrained("yolov4-tiny.conv.29", dest)], s3=s3, bucket=BUCKET)
    assert dest.read_bytes() == b"new weights"


def test_a_missing_file_says_which_and_how_to_publish_it(tmp_path: Path, s3: Any) -> None:
    _publish(s3, "R-50.pkl", b"pkl")
    items = [Pretrained("R-50.pkl", tmp_path / "R-50.pkl"), Pretrained("yolov4.conv.137", tmp_path / "conv")]
    with pytest.raises(InputError) as e:
        fetch_pretrained(items, s3=s3, bucket=BUCKET)
    assert f"s3://{BUCKET}/cache/pretrained/yolov4.conv.137" in str(e.value)
    assert f"python -m agent.inputs publish --bucket {BUCKET} yolov4.conv.137" in str(e.value)
    assert not (tmp_path / "conv").exists()


def test_bytes_that_do_not_match_their_sha256_are_refused(tmp_path: Path, s3: Any) -> None:
    _publish(s3, "yolov5n.pt", b"tampered", sha256="0" * 64)
    dest = tmp_path / "yolov5n.pt"
    with pytest.raises(InputError, match="sha256"):
        fetch_pretrained([Pretrained("yolov5n.pt", dest)], s3=s3, bucket=BUCKET)
    assert not dest.exists() and not list(tmp_path.iterdir())


def test_an_object_without_sha256_metadata_is_refused(tmp_path: Path, s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="cache/pretrained/yolov5n.pt", Body=b"x")
    with pytest.raises(InputError, match="no sha256 metadata"):
        fetch_pretrained([Pretrained("yolov5n.pt", tmp_path / "w.pt")], s3=s3, bucket=BUCKET)


def test_a_name_with_a_path_is_refused(tmp_path: Path, s3: Any) -> None:
    with pytest.raises(InputError, match="not a pretrained file name"):
        fetch_pretrained([Pretrained("../agent/spotter-agent.pyz", tmp_path / "x")], s3=s3, bucket=BUCKET)


def test_publish_puts_the_file_with_its_sha256_where_fetch_finds_it(
    tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "yolov4.conv.137"
    source.write_bytes(b"\x00\x00\x00\x00\x02\x00\x00\x00" * 64)
    assert main(["publish", "--bucket", BUCKET, str(source)]) == 0
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    assert capsys.readouterr().out.strip() == f"s3://{BUCKET}/cache/pretrained/yolov4.conv.137 sha256 {sha256}"
    head = s3.head_object(Bucket=BUCKET, Key="cache/pretrained/yolov4.conv.137")
    assert head["Metadata"]["sha256"] == sha256

    dest = tmp_path / "fetched" / "yolov4.conv.137"
    fetch_pretrained([Pretrained("yolov4.conv.137", dest)], s3=s3, bucket=BUCKET)
    assert dest.read_bytes() == source.read_bytes()

    key, _ = publish_pretrained(source, s3=s3, bucket=BUCKET, name="yolov4-renamed.conv.137")
    assert key == "cache/pretrained/yolov4-renamed.conv.137"
    assert main(["publish", "--bucket", BUCKET, str(tmp_path / "missing")]) == 1


PROMOTED_KEY = "models/persons/yolov5n/persons-prev01/best.pt"


def _promoted(dest: Path, body: bytes, sha256: str | None = None) -> Promoted:
    return Promoted(PROMOTED_KEY, sha256 or hashlib.sha256(body).hexdigest(), len(body), "persons-prev01", dest)


def test_promoted_weights_arrive_verified_where_the_pretrained_file_goes(tmp_path: Path, s3: Any) -> None:
    body = b"promoted best.pt" * 100
    s3.put_object(Bucket=BUCKET, Key=PROMOTED_KEY, Body=body)
    dest = tmp_path / "yolov5n.pt"
    dest.write_bytes(b"the pretrained file of an earlier attempt")

    fetch_promoted(_promoted(dest, body), s3=s3, bucket=BUCKET)

    assert dest.read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yolov5n.pt"]


def test_promoted_weights_that_fail_their_sha256_check_are_refused(tmp_path: Path, s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=PROMOTED_KEY, Body=b"overwritten since")
    dest = tmp_path / "yolov5n.pt"
    with pytest.raises(InputError) as e:
        fetch_promoted(_promoted(dest, b"what was promoted", sha256="0" * 64), s3=s3, bucket=BUCKET)
    actual = hashlib.sha256(b"overwritten since").hexdigest()
    assert str(e.value) == (
        f"the promoted weights of job persons-prev01 (s3://{BUCKET}/{PROMOTED_KEY}) downloaded with sha256 {actual} "
        f"(17 bytes), the run spec names {'0' * 64} (17 bytes): not training from them"
    )
    assert not list(tmp_path.iterdir())


def test_promoted_weights_gone_from_the_bucket_say_so(tmp_path: Path, s3: Any) -> None:
    with pytest.raises(InputError, match=r"promoted weights of job persons-prev01 .* are gone from the bucket"):
        fetch_promoted(_promoted(tmp_path / "yolov5n.pt", b"x"), s3=s3, bucket=BUCKET)
    assert not list(tmp_path.iterdir())
