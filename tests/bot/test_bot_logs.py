"""`/train logs`: the newest log's last lines, read from its end only, and a fresh link to each log."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from bot.logs import TAIL_BYTES, log_files, log_view, tail
from spotter.aws import client
from tests.spotter.helpers import outputs_of

BUCKET = "artifacts"


@pytest.fixture
def s3(aws: str) -> object:
    c = client("s3")  # SigV4, as the Slack app signs links
    c.create_bucket(Bucket=BUCKET)
    return c


def _put(s3: object, job: str, attempt: int, phase: str, text: str) -> None:
    key = outputs_of(job, attempt).log(attempt, phase)  # each attempt on its own instance
    s3.put_object(Bucket=BUCKET, Key=key, Body=text.encode())  # type: ignore[attr-defined]


def test_no_logs_yet(s3: object) -> None:
    assert log_view(s3, BUCKET, "persons-abc234", 3600) is None


def test_the_newest_log_of_the_latest_attempt_is_shown_with_links_to_all(s3: object) -> None:
    job = "persons-abc234"
    _put(s3, job, 1, "install", "installed\n")
    _put(s3, job, 1, "train", "".join(f"epoch {i}\n" for i in range(100)))
    time.sleep(1.1)  # S3 keeps modification times to the second
    _put(s3, job, 2, "train", "".join(f"resumed epoch {i}\n" for i in range(50, 80)) + "\n\n")
    s3.put_object(Bucket=BUCKET, Key=outputs_of(job, 2).checkpoint(".log"), Body=b"not a log")  # type: ignore[attr-defined]
    assert [(f.attempt, f.phase) for f in log_files(s3, BUCKET, job)] == [(1, "install"), (1, "train"), (2, "train")]
    view = log_view(s3, BUCKET, job, 3600)
    assert view is not None
    assert (view.latest.attempt, view.latest.phase) == (2, "train")
    assert view.tail == [f"resumed epoch {i}" for i in range(50, 80)]
    assert len(view.others) == 2
    # The link is presigned, short-lived, and fetches the whole log.
    query = parse_qs(urlparse(view.url).query)
    assert query["X-Amz-Expires"] == ["3600"]
    got = requests.get(view.url, timeout=10)
    assert got.status_code == 200 and got.text.startswith("resumed epoch 50")


def test_a_huge_log_is_read_from_its_end_and_a_cut_line_dropped(s3: object) -> None:
    job = "persons-big234"
    lines = [f"{i:08d} " + "x" * 90 for i in range(5000)]  # ~500 KB
    _put(s3, job, 1, "train", "\n".join(lines) + "\n")
    (log,) = log_files(s3, BUCKET, job)
    assert log.size > TAIL_BYTES
    got = tail(s3, BUCKET, log)
    assert got == lines[-30:]


def test_carriage_return_progress_keeps_the_last_state_of_each_line(s3: object) -> None:
    job = "persons-bar234"
    _put(s3, job, 1, "train", "start\n 10%|#  \r 50%|#####  \r100%|##########\ndone\n")
    (log,) = log_files(s3, BUCKET, job)
    assert tail(s3, BUCKET, log) == ["start", "100%|##########", "done"]


def test_terminal_colours_and_erase_codes_are_dropped(s3: object) -> None:
    job = "persons-ansi23"
    _put(s3, job, 1, "train", "\x1b[K      Class  Images\n\x1b[34m\x1b[1mval: \x1b[0mScanning\n")
    (log,) = log_files(s3, BUCKET, job)
    assert tail(s3, BUCKET, log) == ["      Class  Images", "val: Scanning"]
