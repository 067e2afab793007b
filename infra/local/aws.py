"""moto in server mode, and the local stack's view of what provisioning stood up in it from template.yaml.

provision() translates the template as SAM would (infra.sam.translate) and has infra.local.provision create
every translated resource; what it returns names them for the local stack: the table, the bucket, the bus,
and each function with its handler, its environment and the queues and schedules standing in for its
triggers. Parameters take their defaults unless the run overrides them (checked against the parameter's
constraints, as CloudFormation does); the GPU image, the VPC and its subnets are moto's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from infra.local.faults import Faults, FaultyAws
from infra.local.provision import stand_up

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"
LOCAL_AMI = "ami-12c6146b"  # one of moto's built-in images stands in for the GPU image
LAMBDA_DEFAULT_TIMEOUT = 3  # seconds: Lambda's, for a function whose template sets none
# What a request to the local moto is: plain HTTP on loopback stands in for AWS's TLS endpoints.
LOCAL_REQUEST_CONTEXT = {"aws:SecureTransport": "true"}


SPOT_DISCOUNT = 0.35  # local spot prices: this fraction of the on-demand list price (moto quotes $0.00001)


def _patch_moto() -> None:
    """Fill what moto lacks for the launcher: DeleteLaunchTemplateVersions, and spot prices of a plausible size;
    and bucket policies' conditions."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses.launch_templates import LaunchTemplates
    from moto.ec2.responses.spot_instances import SpotInstances

    from spotter.catalog import GPU_TYPES

    _patch_bucket_policy_conditions()
    if hasattr(LaunchTemplates, "delete_launch_template_versions"):
        return

    plain_history = SpotInstances.describe_spot_price_history

    def describe_spot_price_history(self: Any) -> ActionResult:
        result = plain_history(self)
        for entry in result.result["SpotPriceHistory"]:  # type: ignore[index]
            gpu = GPU_TYPES.get(entry["InstanceType"])
            if gpu:
                entry["SpotPrice"] = f"{gpu.on_demand_usd_hour * SPOT_DISCOUNT:.4f}"
        return result

    SpotInstances.describe_spot_price_history = describe_spot_price_history  # type: ignore[method-assign]

    def delete_launch_template_versions(self: Any) -> ActionResult:
        name = self._get_param("LaunchTemplateName")
        tid = self._get_param("LaunchTemplateId")
        template = (
            self.ec2_backend.get_launch_template(tid) if tid else self.ec2_backend.get_launch_template_by_name(name)
        )
        deleted = []
        for v in self._get_param("LaunchTemplateVersion", []) or self._get_param("Versions", []):
            # moto numbers versions by list position, so the version keeps its place with its data emptied.
            template.get_version(int(v)).data = {}
            deleted.append(
                {"LaunchTemplateId": template.id, "LaunchTemplateName": template.name, "VersionNumber": int(v)}
            )
        return ActionResult(
            {"SuccessfullyDeletedLaunchTemplateVersions": deleted, "UnsuccessfullyDeletedLaunchTemplateVersions": []}
        )

    LaunchTemplates.delete_launch_template_versions = delete_launch_template_versions  # type: ignore[attr-defined]


def _condition_holds(condition: dict[str, Any]) -> bool | None:
    """Whether a policy statement's Condition holds for a local request (LOCAL_REQUEST_CONTEXT); None when it
    tests something else (an operator or a key the local request does not carry)."""
    holds: bool | None = True
    for operator, tests in condition.items():
        for key, expected in tests.items():
            actual = LOCAL_REQUEST_CONTEXT.get(key)
            wanted = [str(e).lower() for e in (expected if isinstance(expected, list) else [expected])]
            if actual is None or operator not in ("Bool", "StringEquals", "StringNotEquals"):
                holds = None
            elif (actual.lower() in wanted) != (operator != "StringNotEquals"):
                return False
    return holds


def _patch_bucket_policy_conditions() -> None:
    """moto applies a bucket policy's statements with their Conditions ignored, so the template's TLS-only deny
    (Deny s3:* when aws:SecureTransport is false) would refuse every local request. A statement whose Condition
    does not hold for a local request is left out; one that tests anything else applies as moto applies it."""
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    if getattr(FakeBucket.get_permission, "local_conditions", False):
        return

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        document = json.loads(self.policy)
        statements = document.get("Statement", [])
        applying = [
            {k: v for k, v in s.items() if k != "Condition"}
            for s in (statements if isinstance(statements, list) else [statements])
            if _condition_holds(s.get("Condition") or {}) is not False
        ]
        return IAMPolicy(json.dumps({**document, "Statement": applying})).is_action_permitted(action, resource)

    get_permission.local_conditions = True  # type: ignore[attr-defined]
    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]


class _FaultyMotoServer(ThreadedMotoServer):
    """moto's threaded server with the injected faults in front of its application."""

    def __init__(self, faults: Faults) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self._faults = faults

    def _server_entry(self) -> None:
        app = FaultyAws(DomainDispatcherApplication(create_backend_app), self._faults)
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


class MotoServer:
    """AWS on 127.0.0.1 over real HTTP, answering with the faults a scenario injects."""

    def __init__(self, faults: Faults) -> None:
        _patch_moto()
        self.faults = faults
        self._server = _FaultyMotoServer(faults)
        self.endpoint = ""

    def start(self) -> MotoServer:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def environ(self) -> dict[str, str]:
        """What a process needs to talk to this AWS (the same variables a real box would get otherwise)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",  # pragma: allowlist secret
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }


@dataclass
class FunctionDef:
    """A translated AWS::Lambda::Function as the local stack runs it: its handler in-process."""

    logical_id: str
    name: str
    handler: str
    environment: dict[str, str]
    arn: str = ""  # arn:aws:lambda:<region>:<account>:function:<name>, what schedules and rules target
    role: str = ""  # the ARN of the role it runs as (created in moto; nothing checks it in-process)
    timeout: int = LAMBDA_DEFAULT_TIMEOUT  # seconds
    queues: list[str] = field(default_factory=list)  # SQS queue URLs tapping this function's rules
    schedules: list[str] = field(default_factory=list)  # its Scheduler/rate expressions, e.g. `rate(5 minutes)`


@dataclass
class Resources:
    stack: str
    table: str
    bucket: str
    bus_name: str
    secret_id: str
    launch_template_id: str
    subnets: list[str]
    functions: dict[str, FunctionDef]
    # The Scheduler schedule groups template.yaml declares (the Slack app creates its schedules in one).
    schedule_groups: list[str] = field(default_factory=list)

    def function_by_handler(self, handler: str) -> FunctionDef:
        return next(f for f in self.functions.values() if f.handler == handler)

    def function_by_arn(self, arn: str) -> FunctionDef | None:
        """The function an ARN names; a qualified ARN (`…:function:name:alias`) names the same function."""
        unqualified = ":".join(arn.split(":")[:7])
        return next((f for f in self.functions.values() if f.arn in (arn, unqualified)), None)

    def environment(self) -> dict[str, str]:
        """Every function's variables: the in-process Lambdas share one environment."""
        env: dict[str, str] = {}
        for f in self.functions.values():
            env.update(f.environment)
        return env


# Parameters the local stack sets itself: the image moto has, the default VPC and its subnets.
LOCAL_PARAMETERS = ("GpuImageId", "VpcId", "SubnetIds")


class ParameterError(ValueError):
    """A parameter override the template does not declare, or whose value breaks the parameter's constraints."""


def parameter_values(doc: dict[str, Any], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Each parameter's default, replaced by its override; overrides are checked as CloudFormation checks them
    (AllowedPattern, AllowedValues, MinValue/MaxValue, MinLength/MaxLength, Number)."""
    declared: dict[str, Any] = doc.get("Parameters", {})
    values = {name: str(p["Default"]) for name, p in declared.items() if "Default" in p}
    for name, value in (overrides or {}).items():
        param = declared.get(name)
        if param is None:
            known = ", ".join(n for n in declared if n not in LOCAL_PARAMETERS)
            raise ParameterError(f"template.yaml has no parameter {name!r} (parameters: {known})")
        if name in LOCAL_PARAMETERS:
            raise ParameterError(f"parameter {name} is set by the local stack (moto's image, VPC and subnets)")
        _check_parameter(name, param, value)
        values[name] = value
    return values


def check_parameters(overrides: dict[str, str], template: Path = TEMPLATE) -> dict[str, str]:
    """The parameter values a run with these overrides gets; raises ParameterError before anything starts."""
    from samtranslator.yaml_helper import yaml_parse

    return parameter_values(yaml_parse(template.read_text()), overrides)


def _check_parameter(name: str, param: dict[str, Any], value: str) -> None:
    if param.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            raise ParameterError(f"parameter {name} is a Number, not {value!r}") from None
        if "MinValue" in param and number < float(param["MinValue"]):
            raise ParameterError(f"parameter {name}={value} is below its MinValue {param['MinValue']}")
        if "MaxValue" in param and number > float(param["MaxValue"]):
            raise ParameterError(f"parameter {name}={value} is above its MaxValue {param['MaxValue']}")
    pattern = param.get("AllowedPattern")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        raise ParameterError(f"parameter {name}={value!r} does not match its AllowedPattern {pattern}")
    allowed = param.get("AllowedValues")
    if allowed is not None and value not in [str(a) for a in allowed]:
        raise ParameterError(f"parameter {name}={value!r} is not one of {', '.join(str(a) for a in allowed)}")
    if "MinLength" in param and len(value) < int(param["MinLength"]):
        raise ParameterError(f"parameter {name} is shorter than its MinLength {param['MinLength']}")
    if "MaxLength" in param and len(value) > int(param["MaxLength"]):
        raise ParameterError(f"parameter {name} is longer than its MaxLength {param['MaxLength']}")


def provision(
    slack_credentials: dict[str, str],
    stack: str = "spotter",
    template: Path = TEMPLATE,
    *,
    parameters: dict[str, str] | None = None,
) -> Resources:
    """Stand up the CloudFormation SAM translates template.yaml into, in the moto behind AWS_ENDPOINT_URL; return
    the local names.

    `parameters` override the template's parameter defaults (a ParameterError names a bad one); the GPU image,
    the VPC and its subnets are moto's. The Slack secret holds `slack_credentials`. A resource the local stack
    cannot stand up raises ProvisionError with its name.
    """
    from samtranslator.yaml_helper import yaml_parse

    from infra.sam import translate

    sam = yaml_parse(template.read_text())
    refs: dict[str, Any] = {
        "AWS::StackName": stack,
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        **parameter_values(sam, parameters),
    }
    ec2 = boto3.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = sorted(
        (s["AvailabilityZone"], s["SubnetId"])
        for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    )
    refs.update(GpuImageId=LOCAL_AMI, VpcId=vpc, SubnetIds=[s for _, s in subnets])
    refs["AWS::AvailabilityZones"] = sorted({az for az, _ in subnets})
    up = stand_up(translate(sam), refs, stack=stack, empty_secret=json.dumps(slack_credentials))

    functions: dict[str, FunctionDef] = {}
    for fn in up.of_type("AWS::Lambda::Function"):
        p, arn = fn.properties, fn.attrs["Arn"]
        variables = (p.get("Environment") or {}).get("Variables") or {}
        functions[fn.logical_id] = FunctionDef(
            logical_id=fn.logical_id,
            name=fn.ref,
            handler=p["Handler"],
            environment={k: _env_value(v) for k, v in variables.items()},
            arn=arn,
            role=str(p.get("Role", "")),
            timeout=int(p.get("Timeout", LAMBDA_DEFAULT_TIMEOUT)),
            queues=up.taps.get(arn, []),
            schedules=up.schedules.get(arn, []),
        )
    return Resources(
        stack=stack,
        table=up.created["JobsTable"].ref,
        bucket=up.created["ArtifactsBucket"].ref,
        bus_name=up.created["EventBus"].ref,
        secret_id=up.created["SlackSecret"].ref,
        launch_template_id=up.created["LaunchTemplate"].ref,
        subnets=[s for _, s in subnets],
        functions=functions,
        schedule_groups=[g.ref for g in up.of_type("AWS::Scheduler::ScheduleGroup")],
    )


def _env_value(value: Any) -> str:
    """An environment variable as Lambda sets it: a string (CloudFormation writes booleans in lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float:
    """The period of a `rate(…)` schedule expression, in seconds (cron and at expressions are not periodic here)."""
    m = _RATE.match(expression.strip())
    if not m:
        raise ValueError(f"{expression!r} is not a rate(N minutes|hours|days) expression")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2).rstrip("s")]
