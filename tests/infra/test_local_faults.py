"""The local AWS's injected faults: which S3 operation a request is, what CreateFleet answers without capacity,
and how a scenario's `inject` steps are checked."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from infra.local.aws import rate_seconds
from infra.local.faults import Faults, FaultyAws, s3_operation, split_overrides
from infra.local.scenario import Inject, ScenarioError, load

S3_AUTH = "AWS4-HMAC-SHA256 Credential=testing/20261207/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x"
EC2_AUTH = S3_AUTH.replace("/s3/", "/ec2/")


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "operation"),
    [
        ("PUT", "/b/jobs/j/job.json", {}, {}, "PutObject"),
        ("PUT", "/b/k", {"partNumber": ["1"], "uploadId": ["u"]}, {}, "UploadPart"),
        ("PUT", "/b/k", {}, {"x-amz-copy-source": "/b/o"}, "CopyObject"),
        ("POST", "/b/k", {"uploads": [""]}, {}, "CreateMultipartUpload"),
        ("POST", "/b/k", {"uploadId": ["u"]}, {}, "CompleteMultipartUpload"),
        ("GET", "/b/k", {}, {}, "GetObject"),
        ("HEAD", "/b/k", {}, {}, "HeadObject"),
        ("GET", "/b", {"list-type": ["2"]}, {}, "ListObjectsV2"),
        ("GET", "/b/", {"list-type": ["2"]}, {}, "ListObjectsV2"),
        ("DELETE", "/b/k", {}, {}, "DeleteObject"),
        ("DELETE", "/b/k", {"uploadId": ["u"]}, {}, "AbortMultipartUpload"),
    ],
)
def test_each_s3_request_is_named_by_its_operation(
    method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], operation: str
) -> None:
    assert s3_operation(method, path, query, headers) == operation


class _Moto:
    """What reached moto."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        self.bodies.append(environ["wsgi.input"].read(length))
        start_response("200 OK", [])
        return [b"moto"]


def _call(app: FaultyAws, method: str, path: str, auth: str, body: bytes = b"", query: str = "") -> tuple[str, bytes]:
    status: list[str] = []
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "HTTP_AUTHORIZATION": auth,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    out = b"".join(app(environ, lambda s, _headers: status.append(s)))
    return status[0], out


def test_an_s3_fault_answers_its_operation_the_given_times_then_moto_does() -> None:
    seen: list[dict[str, Any]] = []
    faults = Faults(seen.append)
    faults.s3_error("PutObject", 500, times=2)
    moto = _Moto()
    app = FaultyAws(moto, faults)

    answers = [_call(app, "PUT", "/bucket/jobs/j/checkpoints/last.pt", S3_AUTH, b"x") for _ in range(3)]
    get = _call(app, "GET", "/bucket/jobs/j/job.json", S3_AUTH)

    assert [a[0] for a in answers] == ["500 InternalError", "500 InternalError", "200 OK"]
    assert b"<Code>InternalError</Code>" in answers[0][1]
    assert get == ("200 OK", b"moto") and len(moto.bodies) == 2
    assert [(r["operation"], r["status"]) for r in seen] == [("PutObject", 500)] * 2


class _Overlap:
    """An application that notes how many requests it is answering at once, and that its answers are closed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = self.closed = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.02)
        start_response("200 OK", [])
        app = self

        class Answer:
            def __iter__(self) -> Iterator[bytes]:
                time.sleep(0.01)  # the body is made while it is read
                with app.lock:
                    app.now -= 1
                yield b"{}"

            def close(self) -> None:
                with app.lock:
                    app.closed += 1

        return Answer()


@pytest.mark.parametrize(("service", "one_at_a_time"), [("dynamodb", True), ("sqs", False)])
def test_dynamodb_requests_are_answered_one_at_a_time_as_dynamodb_applies_them(
    service: str, one_at_a_time: bool
) -> None:
    inner = _Overlap()
    app = FaultyAws(inner, Faults(lambda _: None))
    auth = S3_AUTH.replace("/s3/", f"/{service}/")

    def call() -> tuple[str, bytes]:
        status: list[str] = []
        answer = app({"REQUEST_METHOD": "POST", "HTTP_AUTHORIZATION": auth}, lambda s, _h: status.append(s))
        body = b"".join(answer)
        if close := getattr(answer, "close", None):
            close()
        return status[0], body

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: call(), range(12)))

    assert answers == [("200 OK", b"{}")] * 12
    assert (inner.most == 1) is one_at_a_time
    assert inner.closed == 12


def _fleet(market: str, types: list[str]) -> bytes:
    form = [("Action", "CreateFleet"), ("TargetCapacitySpecification.DefaultTargetCapacityType", market)]
    for n, t in enumerate(types, 1):
        form += [
            (f"LaunchTemplateConfigs.1.Overrides.{n}.InstanceType", t),
            (f"LaunchTemplateConfigs.1.Overrides.{n}.SubnetId", f"subnet-{n}"),
        ]
    return urlencode(form).encode()


def test_a_fleet_with_no_capacity_in_any_pool_gets_an_error_per_pool_and_no_instance() -> None:
    faults = Faults(lambda _r: None)
    faults.no_capacity([], "spot")
    moto = _Moto()
    status, body = _call(FaultyAws(moto, faults), "POST", "/", EC2_AUTH, _fleet("spot", ["g4dn.xlarge", "g5.xlarge"]))

    assert status == "200 OK" and moto.bodies == []
    assert body.count(b"<errorCode>InsufficientInstanceCapacity</errorCode>") == 2
    assert b"<instanceType>g5.xlarge</instanceType>" in body and b"<fleetInstanceSet/>" in body
    assert b"There is no Spot capacity available" in body


def test_pools_with_capacity_go_to_moto_renumbered_and_another_market_is_untouched() -> None:
    faults = Faults(lambda _r: None)
    faults.no_capacity(["g4dn.xlarge"], "spot")
    moto = _Moto()
    app = FaultyAws(moto, faults)

    _call(app, "POST", "/", EC2_AUTH, _fleet("spot", ["g4dn.xlarge", "g5.xlarge"]))
    _call(app, "POST", "/", EC2_AUTH, _fleet("on-demand", ["g4dn.xlarge"]))

    spot, on_demand = (dict(parse_qsl(b.decode())) for b in moto.bodies)
    assert spot["LaunchTemplateConfigs.1.Overrides.1.InstanceType"] == "g5.xlarge"
    assert "LaunchTemplateConfigs.1.Overrides.2.InstanceType" not in spot
    assert on_demand["LaunchTemplateConfigs.1.Overrides.1.InstanceType"] == "g4dn.xlarge"


def test_split_overrides_keeps_the_rest_of_the_request() -> None:
    form = parse_qsl(_fleet("spot", ["a", "b", "c"]).decode())
    rest, rejected = split_overrides(form, lambda t: t == "b")
    kept = dict(rest)
    assert [r["InstanceType"] for r in rejected] == ["b"]
    assert (
        kept["LaunchTemplateConfigs.1.Overrides.1.InstanceType"],
        kept["LaunchTemplateConfigs.1.Overrides.2.InstanceType"],
    ) == ("a", "c")
    assert kept["Action"] == "CreateFleet"


def test_the_schedule_rate_is_read_from_the_template_expression() -> None:
    assert rate_seconds("rate(5 minutes)") == 300
    assert rate_seconds("rate(1 hour)") == 3600
    with pytest.raises(ValueError, match="not a rate"):
        rate_seconds("cron(0 2 * * ? *)")


def test_each_fault_a_scenario_injects_is_checked(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "- inject: {spot_interruption: {job: last, at_progress: 0.5}}\n"
        "- inject: {capacity_error: {instance_types: [g4dn.xlarge], market: spot}}\n"
        "- inject: {s3: {operation: PutObject, status: 500, times: 3}}\n"
        "- inject: {kill_agent: {}}\n"
    )
    steps = load(f)
    assert [type(s) for s in steps] == [Inject] * 4
    for text, message in [
        ("- inject: {spot_interruption: {at_progress: 2}}\n", "at_progress"),
        ("- inject: {capacity_error: {market: reserved}}\n", "market"),
        ("- inject: {s3: {operation: 'rm -rf'}}\n", "operation"),
        ("- inject: {meteor: {}}\n", "meteor"),
        ("- inject: {kill_agent: {}, s3: {operation: PutObject}}\n", "one fault per step"),
    ]:
        f.write_text(text)
        with pytest.raises(ScenarioError, match=message):
            load(f)
