"""Faults the local AWS answers with, as AWS would: no capacity from CreateFleet, errors from S3.

`Faults` holds what a scenario injected; `FaultyAws` wraps moto's WSGI application and answers a matching
request itself (CreateFleet's pools without capacity come back in the fleet's `Errors`, an S3 operation gets
S3's error document) and hands every other request to moto unchanged. The product code sees only HTTP.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from io import BytesIO
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode
from xml.sax.saxutils import escape

Emit = Callable[[dict[str, Any]], None]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# What EC2 says when a pool has no capacity, by market.
NO_SPOT = "There is no Spot capacity available that matches your request."
NO_ON_DEMAND = "We currently do not have sufficient {type} capacity in the Availability Zone you requested."
QUOTA_MESSAGES = {
    "VcpuLimitExceeded": "You have requested more vCPU capacity than your current vCPU limit of 0 allows for the "
    "instance bucket that the specified instance type belongs to.",
    "MaxSpotInstanceCountExceeded": "Max spot instance count exceeded",
}
CAPACITY_CODE = "InsufficientInstanceCapacity"
S3_ERRORS = {
    403: ("AccessDenied", "Access Denied"),
    404: ("NoSuchKey", "The specified key does not exist."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("SlowDown", "Please reduce your request rate."),
}
_OVERRIDE = re.compile(r"^LaunchTemplateConfigs\.(\d+)\.Overrides\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class CapacityFault:
    """No capacity (or a quota) for these instance types (every type when empty) in this market ("any": both)."""

    instance_types: frozenset[str]
    market: str  # spot | on-demand | any
    code: str = CAPACITY_CODE

    def refuses(self, instance_type: str, market: str) -> bool:
        return self.market in ("any", market) and (not self.instance_types or instance_type in self.instance_types)

    def message(self, instance_type: str, market: str) -> str:
        if self.code in QUOTA_MESSAGES:
            return QUOTA_MESSAGES[self.code]
        return NO_SPOT if market == "spot" else NO_ON_DEMAND.format(type=instance_type)


@dataclass
class S3Fault:
    """`status` for this S3 operation, `times` times (None: every time) and/or for `for_seconds` (None: no limit)."""

    operation: str
    status: int
    times: int | None = None
    until: float | None = None
    hang_seconds: float | None = None

    def take(self, now: float) -> bool:
        if self.until is not None and now > self.until:
            return False
        if self.times is not None:
            if self.times <= 0:
                return False
            self.times -= 1
        return True


class Faults:
    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._lock = threading.Lock()
        self.capacity: list[CapacityFault] = []
        self.s3: list[S3Fault] = []

    def no_capacity(self, instance_types: Iterable[str], market: str, code: str = CAPACITY_CODE) -> None:
        with self._lock:
            self.capacity.append(CapacityFault(frozenset(instance_types), market, code))

    def s3_error(
        self,
        operation: str,
        status: int,
        *,
        times: int | None = None,
        for_seconds: float | None = None,
        hang_seconds: float | None = None,
    ) -> None:
        until = time.monotonic() + for_seconds if for_seconds is not None else None
        with self._lock:
            self.s3.append(S3Fault(operation, status, times, until, hang_seconds))

    def refusal(self, instance_type: str, market: str) -> CapacityFault | None:
        with self._lock:
            return next((f for f in self.capacity if f.refuses(instance_type, market)), None)

    def s3_fault(self, operation: str) -> S3Fault | None:
        now = time.monotonic()
        with self._lock:
            return next((f for f in self.s3 if f.operation in (operation, "*") and f.take(now)), None)

    def emit(self, record: dict[str, Any]) -> None:
        self._emit(record)


# -- S3 requests ------------------------------------------------------------------------------------------------


def s3_operation(method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> str:
    """The S3 API operation a path-style request is (the ones the product makes; others by method)."""
    parts = path.lstrip("/").split("/", 1)
    has_key = len(parts) == 2 and parts[1] != ""
    if not has_key:
        if method == "GET":
            return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
        return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket", "POST": "DeleteObjects"}.get(
            method, method
        )
    if method == "PUT":
        if "partNumber" in query:
            return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        return "CompleteMultipartUpload" if "uploadId" in query else "PostObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "GET":
        return "ListParts" if "uploadId" in query else "GetObject"
    return "HeadObject" if method == "HEAD" else method


def _service(environ: dict[str, Any]) -> str:
    """The signing service of a request: from the Authorization header, or a presigned URL's credential."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = re.search(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request", auth)
    if m:
        return m.group(1)
    q = parse_qs(environ.get("QUERY_STRING", ""))
    cred = (q.get("X-Amz-Credential") or [""])[0].split("/")
    return cred[3] if len(cred) >= 5 else ""


def _s3_error(status: int, operation: str) -> tuple[str, bytes]:
    code, message = S3_ERRORS.get(status, ("InternalError", "We encountered an internal error. Please try again."))
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>local-fault-{operation}</RequestId></Error>"
    )
    return f"{status} {code}", body.encode()


# -- CreateFleet -----------------------------------------------------------------------------------------------


def split_overrides(
    form: list[tuple[str, str]], refused: Callable[[str], bool]
) -> tuple[list[tuple[str, str]], list[dict[str, str]]]:
    """The form without the overrides `refused` (by instance type) rejects, renumbered; and those rejected."""
    overrides: dict[tuple[int, int], dict[str, str]] = {}
    rest: list[tuple[str, str]] = []
    for key, value in form:
        m = _OVERRIDE.match(key)
        if m:
            overrides.setdefault((int(m.group(1)), int(m.group(2))), {})[m.group(3)] = value
        else:
            rest.append((key, value))
    kept: dict[int, list[dict[str, str]]] = {}
    rejected: list[dict[str, str]] = []
    for (config, _), fields in sorted(overrides.items()):
        if refused(fields.get("InstanceType", "")):
            rejected.append(fields)
        else:
            kept.setdefault(config, []).append(fields)
    for config, items in kept.items():
        for n, fields in enumerate(items, 1):
            rest.extend((f"LaunchTemplateConfigs.{config}.Overrides.{n}.{k}", v) for k, v in fields.items())
    return rest, rejected


def _fleet_errors(rejected: list[dict[str, str]], market: str, faults: Faults) -> str:
    items = []
    for o in rejected:
        fault = faults.refusal(o.get("InstanceType", ""), market)
        code = fault.code if fault else CAPACITY_CODE
        message = fault.message(o.get("InstanceType", ""), market) if fault else NO_SPOT
        items.append(
            "<item><launchTemplateAndOverrides><overrides>"
            f"<instanceType>{escape(o.get('InstanceType', ''))}</instanceType>"
            f"<subnetId>{escape(o.get('SubnetId', ''))}</subnetId>"
            f"</overrides></launchTemplateAndOverrides><lifecycle>{escape(market)}</lifecycle>"
            f"<errorCode>{escape(code)}</errorCode><errorMessage>{escape(message)}</errorMessage></item>"
        )
    return "".join(items)


class FaultyAws:
    """moto's WSGI application with the injected faults in front of it.

    DynamoDB applies the requests on an item one at a time, so a condition is checked and the write made as one
    step; moto's threaded server runs them side by side (two conditional claims can both succeed, a read can fail
    on an item being written). DynamoDB requests are therefore answered one at a time here.
    """

    def __init__(self, app: WsgiApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults
        self._dynamodb = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        service = _service(environ)
        if service == "s3" and self.faults.s3:
            answered = self._s3(environ, start_response)
            if answered is not None:
                return answered
        if service == "ec2" and self.faults.capacity and environ.get("REQUEST_METHOD") == "POST":
            return self._ec2(environ, start_response)
        if service == "dynamodb":
            with self._dynamodb:
                answer = self.app(environ, start_response)
                try:
                    return [b"".join(answer)]
                finally:
                    if close := getattr(answer, "close", None):
                        close()
        return self.app(environ, start_response)

    def _s3(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes] | None:
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        operation = s3_operation(
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("PATH_INFO", "/"),
            parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True),
            headers,
        )
        fault = self.faults.s3_fault(operation)
        if fault is None:
            return None
        self.faults.emit(
            {"aws": "s3 fault", "operation": operation, "status": fault.status, "path": environ.get("PATH_INFO")}
        )
        if fault.hang_seconds:
            time.sleep(fault.hang_seconds)
        status, body = _s3_error(fault.status, operation)
        start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [body]

    def _ec2(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        form = parse_qsl(raw.decode(), keep_blank_values=True)
        fields = dict(form)
        if fields.get("Action") != "CreateFleet":
            return self._forward(environ, start_response, raw)
        market = fields.get("TargetCapacitySpecification.DefaultTargetCapacityType", "on-demand")
        rest, rejected = split_overrides(form, lambda t: self.faults.refusal(t, market) is not None)
        for o in rejected:
            self.faults.emit(
                {
                    "aws": "capacity error",
                    "instance_type": o.get("InstanceType"),
                    "subnet": o.get("SubnetId"),
                    "market": market,
                }
            )
        if not rejected:
            return self._forward(environ, start_response, raw)
        errors = _fleet_errors(rejected, market, self.faults)
        if not any(_OVERRIDE.match(k) for k, _ in rest):
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                '<CreateFleetResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
                "<requestId>local-fault</requestId><fleetId>fleet-local-no-capacity</fleetId>"
                f"<errorSet>{errors}</errorSet><fleetInstanceSet/></CreateFleetResponse>"
            ).encode()
            start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
            return [body]
        return self._forward(environ, start_response, urlencode(rest).encode())

    def _forward(self, environ: dict[str, Any], start_response: Callable[..., Any], body: bytes) -> Iterable[bytes]:
        environ = {**environ, "wsgi.input": BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        return self.app(environ, start_response)
