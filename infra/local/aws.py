"""moto in server mode, provisioned with the resources template.yaml declares (the template is the source).

Intrinsics (Ref, Fn::Sub, Fn::GetAtt, Fn::Join) are resolved to the local physical names; parameters take
their defaults unless the run overrides them (checked against the parameter's constraints, as CloudFormation
does). Each function's EventBridge rules are created on the bus with an SQS queue as target (moto cannot
deliver to Lambda), and the dispatcher hands what arrives there to the in-process handler. Functions get
their names and ARNs before anything else is resolved: environments and policies name other functions.
Scheduler schedule groups are created in moto; the schedules in them are fired by infra.local.schedules.
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

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"
LOCAL_AMI = "ami-12c6146b"  # one of moto's built-in images stands in for the GPU image


SPOT_DISCOUNT = 0.35  # local spot prices: this fraction of the on-demand list price (moto quotes $0.00001)


def _patch_moto() -> None:
    """Fill what moto lacks for the launcher: DeleteLaunchTemplateVersions, and spot prices of a plausible size."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses.launch_templates import LaunchTemplates
    from moto.ec2.responses.spot_instances import SpotInstances

    from spotter.catalog import GPU_TYPES

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
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }


@dataclass
class FunctionDef:
    logical_id: str
    name: str
    handler: str
    environment: dict[str, str]
    arn: str = ""  # arn:aws:lambda:<region>:<account>:function:<name>, what schedules and rules target
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


class _Resolver:
    def __init__(self, stack: str) -> None:
        self.refs: dict[str, str] = {
            "AWS::StackName": stack,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.attrs: dict[tuple[str, str], str] = {}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                ref = self.refs[arg]
                return ref
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attrs[(logical, attr)]
            if key == "Fn::Join":
                sep, items = arg
                resolved = self(items)
                return sep.join(resolved if isinstance(resolved, list) else [resolved])
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self(arg[1]))
                return re.sub(r"\$\{([^}]+)\}", lambda m: self._sub(m.group(1), extra), text)
        return {k: self(v) for k, v in value.items()}

    def _sub(self, name: str, extra: dict[str, str]) -> str:
        if name in extra:
            return extra[name]
        if "." in name:
            logical, attr = name.split(".", 1)
            return self.attrs[(logical, attr)]
        return self.refs[name]


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


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def provision(
    slack_credentials: dict[str, str],
    stack: str = "spotter",
    template: Path = TEMPLATE,
    *,
    parameters: dict[str, str] | None = None,
) -> Resources:
    """Create what template.yaml declares in the moto behind AWS_ENDPOINT_URL; return the local names.

    `parameters` override the template's parameter defaults (a ParameterError names a bad one).
    """
    from samtranslator.yaml_helper import yaml_parse

    doc = yaml_parse(template.read_text())
    res: dict[str, Any] = doc["Resources"]
    r = _Resolver(stack)
    r.refs.update(parameter_values(doc, parameters))
    ec2, s3, ddb = boto3.client("ec2"), boto3.client("s3"), boto3.client("dynamodb")
    events, sqs, sm, iam, scheduler = (
        boto3.client("events"),
        boto3.client("sqs"),
        boto3.client("secretsmanager"),
        boto3.client("iam"),
        boto3.client("scheduler"),
    )

    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = sorted(
        (s["AvailabilityZone"], s["SubnetId"])
        for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    )
    r.refs.update(GpuImageId=LOCAL_AMI, VpcId=vpc)
    r.refs["SubnetIds"] = [s for _, s in subnets]  # type: ignore[assignment]

    # Every function's name and ARN first: environments and policies refer to other functions.
    function_names: dict[str, str] = {}
    for logical, spec in res.items():
        if spec["Type"] == "AWS::Serverless::Function":
            props = spec["Properties"]
            name = r(props["FunctionName"]) if "FunctionName" in props else f"{stack}-{logical}"
            function_names[logical] = name
            r.refs[logical], r.attrs[(logical, "Arn")] = name, function_arn(name)

    schedule_groups: list[str] = []
    for logical, spec in res.items():
        props = spec.get("Properties", {})
        kind = spec["Type"]
        if kind == "AWS::S3::Bucket":
            name = f"{stack}-{logical.lower()}"
            s3.create_bucket(Bucket=name)
            r.refs[logical] = name
            r.attrs[(logical, "Arn")] = f"arn:aws:s3:::{name}"
        elif kind == "AWS::DynamoDB::Table":
            name = f"{stack}-{logical.lower()}"
            ddb.create_table(
                TableName=name,
                BillingMode=props["BillingMode"],
                KeySchema=props["KeySchema"],
                AttributeDefinitions=props["AttributeDefinitions"],
                GlobalSecondaryIndexes=props.get("GlobalSecondaryIndexes", []),
            )
            r.refs[logical] = name
        elif kind == "AWS::Events::EventBus":
            name = r(props["Name"])
            arn = events.create_event_bus(Name=name)["EventBusArn"]
            r.refs[logical], r.attrs[(logical, "Arn")] = name, arn
        elif kind == "AWS::SecretsManager::Secret":
            arn = sm.create_secret(Name=r(props["Name"]), SecretString=json.dumps(slack_credentials))["ARN"]
            r.refs[logical] = arn
        elif kind == "AWS::Scheduler::ScheduleGroup":
            name = r(props["Name"]) if "Name" in props else f"{stack}-{logical}"
            arn = scheduler.create_schedule_group(Name=name)["ScheduleGroupArn"]
            r.refs[logical], r.attrs[(logical, "Arn")] = name, arn
            schedule_groups.append(name)
    for logical, spec in res.items():
        props = spec.get("Properties", {})
        if spec["Type"] == "AWS::IAM::Role":
            name = f"{stack}-{logical}"
            arn = iam.create_role(
                RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"])
            )["Role"]["Arn"]
            for pol in props.get("Policies", []):
                iam.put_role_policy(
                    RoleName=name, PolicyName=pol["PolicyName"], PolicyDocument=json.dumps(r(pol["PolicyDocument"]))
                )
            r.refs[logical], r.attrs[(logical, "Arn")] = name, arn
    for logical, spec in res.items():
        props = spec.get("Properties", {})
        if spec["Type"] == "AWS::IAM::InstanceProfile":
            name = f"{stack}-{logical}"
            arn = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Arn"]
            for role in r(props["Roles"]):
                iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
            r.refs[logical], r.attrs[(logical, "Arn")] = name, arn
        elif spec["Type"] == "AWS::EC2::SecurityGroup":
            gid = ec2.create_security_group(
                GroupName=f"{stack}-{logical}", Description=props["GroupDescription"], VpcId=vpc
            )["GroupId"]
            r.refs[logical] = gid
    for logical, spec in res.items():
        if spec["Type"] == "AWS::EC2::LaunchTemplate":
            props = r(spec["Properties"])
            lt = ec2.create_launch_template(
                LaunchTemplateName=props["LaunchTemplateName"], LaunchTemplateData=props["LaunchTemplateData"]
            )
            r.refs[logical] = lt["LaunchTemplate"]["LaunchTemplateId"]

    globals_env = doc.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    functions: dict[str, FunctionDef] = {}
    for logical, spec in res.items():
        if spec["Type"] != "AWS::Serverless::Function":
            continue
        props = spec["Properties"]
        name = function_names[logical]
        env = {**r(globals_env), **r(props.get("Environment", {}).get("Variables", {}))}
        fn = FunctionDef(logical, name, props["Handler"], {k: str(v) for k, v in env.items()}, function_arn(name))
        for event_name, ev in props.get("Events", {}).items():
            if ev["Type"] in ("ScheduleV2", "Schedule"):
                fn.schedules.append(str(ev["Properties"].get("ScheduleExpression") or ev["Properties"]["Schedule"]))
                continue
            if ev["Type"] != "EventBridgeRule":
                continue
            ep = ev["Properties"]
            bus = r(ep.get("EventBusName", "default"))
            rule = f"{stack}-{logical}-{event_name}"
            queue = sqs.create_queue(QueueName=rule, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
            qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(ep["Pattern"]))
            events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "local-dispatcher", "Arn": qarn}])
            fn.queues.append(queue)
        functions[logical] = fn

    return Resources(
        stack=stack,
        table=r.refs["JobsTable"],
        bucket=r.refs["ArtifactsBucket"],
        bus_name=r.refs["EventBus"],
        secret_id=r.refs["SlackSecret"],
        launch_template_id=r.refs["LaunchTemplate"],
        subnets=[s for _, s in subnets],
        functions=functions,
        schedule_groups=schedule_groups,
    )


_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float:
    """The period of a `rate(…)` schedule expression, in seconds (cron and at expressions are not periodic here)."""
    m = _RATE.match(expression.strip())
    if not m:
        raise ValueError(f"{expression!r} is not a rate(N minutes|hours|days) expression")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2).rstrip("s")]
