"""The AWS side of a launch in moto, built from template.yaml's own definitions, plus wire-level test hooks.

Hooks sit on botocore's event system of a real client talking to moto: they record what was sent,
or answer one operation with a response EC2 would give (capacity errors, a spot price table), so the
code under test parses real wire responses.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse, HTTPHeaders
from samtranslator.yaml_helper import yaml_parse

from lambdas.launch import Launcher
from spotter.config import LauncherSettings
from spotter.events import SOURCE_AGENT, SOURCE_BOT, SOURCE_LAUNCHER, Bus
from spotter.store import JobsStore
from tests.spotter.helpers import make_spec, table_definition

ROOT = Path(__file__).resolve().parents[2]
TABLE = "jobs"
BUCKET = "spotter-test"
BUS = "spotter"
AGENT_KEY = "agent/0.1.0/spotter-agent.pyz"
# The template's image is an SSM parameter; any id stands in (moto does not check it, and listing its
# images costs a second per test).
IMAGE_ID = "ami-0123456789abcdef0"
EC2_XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/"

# Spot prices EC2 would answer (moto's are fake): per type and zone, (timestamp, USD/hour), oldest first.
SPOT_PRICES: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("g4dn.xlarge", "us-east-1a"): [("2026-01-01T00:00:00Z", "0.3100"), ("2026-01-01T06:00:00Z", "0.2104")],
    ("g4dn.xlarge", "us-east-1b"): [("2026-01-01T06:00:00Z", "0.2250")],
}


def template_resource(name: str) -> dict[str, Any]:
    resource: dict[str, Any] = yaml_parse((ROOT / "template.yaml").read_text())["Resources"][name]
    return resource


def _resolve(value: Any, refs: dict[str, Any]) -> Any:
    """Replace the template's Ref / GetAtt to resources that moto holds under other ids."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return refs[value["Ref"]]
        if set(value) == {"Fn::GetAtt"}:
            return refs[".".join(value["Fn::GetAtt"])]
        return {k: _resolve(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, refs) for v in value]
    return value


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def _headers(content_type: str) -> HTTPHeaders:
    headers = HTTPHeaders()
    headers["Content-Type"] = content_type
    return headers


def ec2_response(action: str, body: str) -> AWSResponse:
    xml = f'<{action}Response xmlns="{EC2_XMLNS}"><requestId>test</requestId>{body}</{action}Response>'
    return AWSResponse("https://ec2.local/", 200, _headers("text/xml"), _Body(xml.encode()))


def ec2_error(code: str, message: str) -> AWSResponse:
    """An EC2 (query protocol) client error as it comes over the wire."""
    xml = f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors></Response>"
    return AWSResponse("https://ec2.local/", 400, _headers("text/xml"), _Body(xml.encode()))


def json_error(code: str, message: str) -> AWSResponse:
    """A JSON-protocol (DynamoDB) client error as it comes over the wire."""
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message})
    return AWSResponse("https://dynamodb.local/", 400, _headers("application/x-amz-json-1.0"), _Body(body.encode()))


def answer_spot_prices(ec2: Any) -> None:
    """Make `ec2` get DescribeSpotPriceHistory answers from SPOT_PRICES, filtered as EC2 filters them."""
    asked: list[dict[str, Any]] = []

    def keep(params: dict[str, Any], **_: Any) -> None:
        asked.append(params)

    def respond(**_: Any) -> AWSResponse:
        params = asked[-1]
        zones = {v for f in params.get("Filters", []) if f["Name"] == "availability-zone" for v in f["Values"]}
        items = "".join(
            f"<item><instanceType>{t}</instanceType><productDescription>Linux/UNIX</productDescription>"
            f"<spotPrice>{price}</spotPrice><timestamp>{ts}</timestamp><availabilityZone>{zone}</availabilityZone></item>"
            for (t, zone), history in SPOT_PRICES.items()
            for ts, price in history
            if t in params.get("InstanceTypes", [t]) and (not zones or zone in zones)
        )
        return ec2_response("DescribeSpotPriceHistory", f"<spotPriceHistorySet>{items}</spotPriceHistorySet>")

    ec2.meta.events.register("provide-client-params.ec2.DescribeSpotPriceHistory", keep)
    ec2.meta.events.register("before-send.ec2.DescribeSpotPriceHistory", respond)


def latest_spot_price(instance_type: str, zone: str) -> float:
    return float(max(SPOT_PRICES[(instance_type, zone)], key=lambda e: datetime.fromisoformat(e[0]))[1])


def fleet_errors(overrides: list[dict[str, str]], code: str, message: str) -> Callable[..., AWSResponse]:
    """A CreateFleet answer with no instance and one error per override, as EC2 gives when capacity is short."""

    def respond(**_: Any) -> AWSResponse:
        items = "".join(
            "<item><launchTemplateAndOverrides><overrides>"
            f"<instanceType>{o['InstanceType']}</instanceType><subnetId>{o['SubnetId']}</subnetId>"
            f"</overrides></launchTemplateAndOverrides><lifecycle>spot</lifecycle>"
            f"<errorCode>{code}</errorCode><errorMessage>{message}</errorMessage></item>"
            for o in overrides
        )
        body = f"<fleetId>fleet-0123</fleetId><errorSet>{items}</errorSet><fleetInstanceSet/>"
        return ec2_response("CreateFleet", body)

    return respond


@dataclass
class Stack:
    settings: LauncherSettings
    queue_url: str
    zones: dict[str, str]
    ec2: Any = field(default_factory=lambda: boto3.client("ec2"))
    s3: Any = field(default_factory=lambda: boto3.client("s3"))
    sqs: Any = field(default_factory=lambda: boto3.client("sqs"))
    dynamodb: Any = field(default_factory=lambda: boto3.client("dynamodb"))
    events: Any = field(default_factory=lambda: boto3.client("events"))
    sent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def store(self) -> JobsStore:
        return JobsStore(self.settings.jobs_table, self.dynamodb)

    def launcher(self) -> Launcher:
        return Launcher(self.settings, self.store, Bus(self.settings.bus_name, self.events), self.ec2, self.s3)

    def record(self, service_client: Any, operation: str) -> list[dict[str, Any]]:
        """Every request of `operation` this client sends, as its parameters."""
        calls = self.sent.setdefault(operation, [])
        service = service_client.meta.service_model.endpoint_prefix

        def keep(params: dict[str, Any], **_: Any) -> None:
            calls.append(copy.deepcopy(params))

        service_client.meta.events.register(f"provide-client-params.{service}.{operation}", keep)
        return calls

    def bus_events(self, wait: int = 1) -> list[dict[str, Any]]:
        """The events the tap rule delivered so far."""
        found: list[dict[str, Any]] = []
        while True:
            msgs = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait)
            if not msgs.get("Messages"):
                return found
            for m in msgs["Messages"]:
                found.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
            wait = 0

    def instances(self, job_id: str, states: tuple[str, ...] = ("pending", "running")) -> list[dict[str, Any]]:
        found = self.ec2.describe_instances(
            Filters=[
                {"Name": "tag:spotter:job", "Values": [job_id]},
                {"Name": "instance-state-name", "Values": list(states)},
            ]
        )
        return [i for r in found["Reservations"] for i in r["Instances"]]

    def publish_fake_agent(self, body: bytes = b"agent") -> None:
        """An agent package object as publish_agent leaves it (the launcher only reads its sha256)."""
        sha = hashlib.sha256(body).hexdigest()
        self.s3.put_object(Bucket=BUCKET, Key=AGENT_KEY, Body=body, Metadata={"sha256": sha})


def make_stack() -> Stack:
    """Table, bucket, bus with an SQS tap, instance profile, subnets and the launch template, in moto."""
    ddb, s3, events = boto3.client("dynamodb"), boto3.client("s3"), boto3.client("events")
    sqs, ec2, iam = boto3.client("sqs"), boto3.client("ec2"), boto3.client("iam")
    ddb.create_table(**table_definition(TABLE))
    s3.create_bucket(Bucket=BUCKET)
    events.create_event_bus(Name=BUS)
    queue_url = sqs.create_queue(QueueName="tap")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="tap", EventBusName=BUS, EventPattern=json.dumps({"source": [SOURCE_BOT, SOURCE_LAUNCHER, SOURCE_AGENT]})
    )
    events.put_targets(Rule="tap", EventBusName=BUS, Targets=[{"Id": "q", "Arn": queue_arn}])

    iam.create_role(RoleName="instance", AssumeRolePolicyDocument="{}")
    profile = iam.create_instance_profile(InstanceProfileName="instance")["InstanceProfile"]
    iam.add_role_to_instance_profile(InstanceProfileName="instance", RoleName="instance")
    subnets = sorted(ec2.describe_subnets()["Subnets"], key=lambda s: s["AvailabilityZone"])[:2]
    group = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]

    props = template_resource("LaunchTemplate")["Properties"]
    refs = {"GpuImageId": IMAGE_ID, "InstanceProfile.Arn": profile["Arn"], "InstanceSecurityGroup": group}
    template = ec2.create_launch_template(
        LaunchTemplateName="spotter-gpu", LaunchTemplateData=_resolve(props["LaunchTemplateData"], refs)
    )["LaunchTemplate"]
    settings = LauncherSettings(
        region="us-east-1",
        jobs_table=TABLE,
        bucket=BUCKET,
        bus_name=BUS,
        launch_template=template["LaunchTemplateId"],
        subnets=tuple(s["SubnetId"] for s in subnets),
        agent_key=AGENT_KEY,
    )
    return Stack(settings, queue_url, {s["SubnetId"]: s["AvailabilityZone"] for s in subnets})


def queue_job(stack: Stack, seed: str = "a", **params: str) -> str:
    """A QUEUED job of the test spec (with `params` as its options), as the bot records it."""
    spec = make_spec(seed=seed, **params)
    stack.store.create(spec, trigger=seed)
    return spec.job_id
