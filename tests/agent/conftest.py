"""Agent fixtures: a job spec in moto's S3, a tapped bus (EventBridge rule → SQS), the framework stand-in, and
a `shutdown` shim first on PATH for every test, so nothing here can power the machine off."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest

from agent.imds import Imds
from spotter.events import Bus, JobEvent, from_eventbridge
from spotter.spec import JobSpec, RunSpec, TrainParams

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "infra" / "local" / "standin"
BUCKET = "spotter-test"
BUS = "spotter-test"
JOB_ID = "shapes-abc234"


@pytest.fixture(autouse=True)
def shutdown_shim(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `shutdown` that only records its arguments, ahead of the real one on PATH; returns the record file."""
    bin_dir = tmp_path_factory.mktemp("shim-bin")
    record = bin_dir / "shutdown.calls"
    shim = bin_dir / "shutdown"
    shim.write_text(f'#!/bin/sh\necho "$@" >> "{record}"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return record


class Poweroff:
    """A recording stand-in for powering the machine off."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@pytest.fixture
def poweroff() -> Poweroff:
    return Poweroff()


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Phases see the Ultralytics stand-in first on PYTHONPATH; epochs and progress reports are quick."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(STANDIN), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("SPOTTER_STANDIN_EPOCH_SECONDS", "0.3")
    monkeypatch.setenv("SPOTTER_PROGRESS_INTERVAL", "0.1")
    monkeypatch.delenv("SPOTTER_STANDIN_FAIL_AT_EPOCH", raising=False)
    return STANDIN


def _run_spec(epochs: int = 3, from_: str = "scratch", max_hours: float = 1.0) -> RunSpec:
    spec = JobSpec(
        job_id=JOB_ID,
        dataset="shapes",
        model="yolov8n",
        recipe="ultralytics",
        unit="epoch",
        params=TrainParams.model_validate(
            {"epochs": epochs, "img": 128, "batch": 16, "max_hours": max_hours, "from": from_}
        ),
        requested_by="U0TEST",
        channel="C0TEST",
    )
    return RunSpec(
        spec=spec, attempt=1, bucket=BUCKET, bus_name=BUS, region="us-east-1", classes=("rectangle", "circle")
    )


@pytest.fixture
def make_spec() -> Callable[..., RunSpec]:
    """RunSpec of a shapes/yolov8n job: make_spec(epochs=3, from_="scratch", max_hours=1.0)."""
    return _run_spec


@dataclass
class Job:
    run: RunSpec
    url: str
    s3: Any


@pytest.fixture
def job(aws: str) -> Job:
    """A 3-epoch shapes/yolov8n job whose spec is at s3://spotter-test/jobs/<job>/job.json."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    run = _run_spec()
    key = f"jobs/{JOB_ID}/job.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=run.model_dump_json().encode())
    return Job(run=run, url=f"s3://{BUCKET}/{key}", s3=s3)


class BusTap:
    """The project's bus in moto, with a rule copying every agent event to an SQS queue the test reads."""

    def __init__(self) -> None:
        self.events_client = boto3.client("events", region_name="us-east-1")
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        self.events_client.create_event_bus(Name=BUS)
        self.queue_url = self.sqs.create_queue(QueueName="bus-tap")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.events_client.put_rule(
            Name="tap", EventBusName=BUS, EventPattern=json.dumps({"source": ["spotter.agent"]}), State="ENABLED"
        )
        self.events_client.put_targets(Rule="tap", EventBusName=BUS, Targets=[{"Id": "queue", "Arn": arn}])
        self.bus = Bus(BUS, self.events_client)
        self.seen: list[JobEvent] = []

    def drain(self, timeout: float = 5.0) -> list[JobEvent]:
        """Every event delivered so far, ordered by seq (EventBridge keeps no order)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msgs = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                break
            for m in msgs:
                self.seen.append(from_eventbridge(json.loads(m["Body"])))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return sorted(self.seen, key=lambda e: e.seq)


@pytest.fixture
def bus_tap(aws: str) -> Iterator[BusTap]:
    yield BusTap()


# -- the instance metadata service ---------------------------------------------------------------------------

INSTANCE_ID = "i-0123456789abcdef0"


class ImdsStandIn(BaseHTTPRequestHandler):
    """IMDSv2 as EC2 serves it: a token from PUT, then metadata GETs that must carry it."""

    token = "AQAEA-test-token"
    meta: ClassVar[dict[str, str]] = {}

    def do_PUT(self) -> None:
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self._send(200, self.token)
        else:
            self._send(400, "")

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != self.token:
            self._send(401, "")
            return
        value = self.meta.get(self.path.removeprefix("/latest/meta-data/"))
        self._send(200, value) if value is not None else self._send(404, "")

    def _send(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(meta: dict[str, str]) -> Iterator[str]:
    handler = type("Served", (ImdsStandIn,), {"meta": meta})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def imds_meta() -> dict[str, str]:
    """What `imds_endpoint` serves; a test adds a notice or an image id to it as it goes."""
    return {"instance-id": INSTANCE_ID, "instance-type": "g4dn.xlarge", "placement/availability-zone": "us-east-1a"}


@pytest.fixture
def imds_endpoint(imds_meta: dict[str, str]) -> Iterator[str]:
    yield from _serve(imds_meta)


@pytest.fixture
def no_imds() -> Imds:
    """An IMDS endpoint nothing listens on: refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return Imds(f"http://127.0.0.1:{port}", timeout=0.5)


@pytest.fixture
def bare_imds() -> Iterator[Imds]:
    """A metadata service that knows only which instance this is (no type, no image: no GPU the catalog knows)."""
    for endpoint in _serve({"instance-id": INSTANCE_ID}):
        yield Imds(endpoint)
