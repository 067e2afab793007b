"""Stands up a translated template (the CloudFormation SAM produces) in moto: each resource in dependency order,
created through boto3 with its resolved properties, so the local stack holds what the template declares.

Every resource type has a creator here or a reason in NOTHING_TO_STAND_UP; any other type, and any property a
creator does not know, is refused with its name: what the template gains cannot be silently missing locally.
Lambda functions are not created in moto (it runs no code without Docker): their handlers run in-process, so
a rule's Lambda target becomes an SQS queue the dispatcher reads (a tap), and a schedule's Lambda target a
period the local stack's timer keeps.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

# Types the local stack has nothing to create for, and why.
NOTHING_TO_STAND_UP = {
    "AWS::Lambda::Permission": "who may invoke a function: the local handlers are called in-process",
    "AWS::Lambda::EventInvokeConfig": "Lambda's asynchronous retries and destinations: the dispatcher retries",
    "AWS::Lambda::Url": "moto cannot create Function URLs: the local Slack stand-in posts to the function in-process",
}
# The visibility timeout of a rule's tap: a handler still running is not handed the same event twice.
TAP_VISIBILITY_SECONDS = 60


class ProvisionError(ValueError):
    """The translated template holds something the local stack cannot stand up (named in the message)."""


_NO_VALUE = object()  # `Ref: AWS::NoValue`: the property (or list item) is left out


class Resolver:
    """CloudFormation's intrinsic functions, over the values known so far: parameters, pseudo parameters and the
    Ref values and attributes of the resources already created."""

    def __init__(
        self,
        refs: dict[str, Any],
        conditions: dict[str, Any] | None = None,
        mappings: dict[str, Any] | None = None,
    ) -> None:
        self.refs = dict(refs)
        self.attrs: dict[tuple[str, str], Any] = {}
        self._conditions = conditions or {}
        self._mappings = mappings or {}
        self._decided: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._decided:
            if name not in self._conditions:
                raise ProvisionError(f"condition {name!r} is not in the template's Conditions")
            self._decided[name] = bool(self(self._conditions[name]))
        return self._decided[name]

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self(item) for item in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" or key.startswith("Fn::") or (key == "Condition" and isinstance(arg, str)):
                return self._intrinsic(key, arg)
        resolved = {k: self(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _intrinsic(self, key: str, arg: Any) -> Any:
        if key == "Ref":
            if arg == "AWS::NoValue":
                return _NO_VALUE
            if arg not in self.refs:
                raise ProvisionError(f"Ref {arg}: no parameter or created resource has that name")
            return self.refs[arg]
        if key == "Fn::GetAtt":
            logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
            return self._attr(self(logical), self(attr))
        if key == "Fn::Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self(arg[1]))
            return re.sub(r"\$\{([^}]+)\}", lambda m: self._sub(m.group(1), extra), text)
        if key == "Fn::Join":
            sep, items = arg
            return str(sep).join(str(i) for i in self(items))
        if key == "Fn::If":
            name, then, otherwise = arg
            return self(then if self.condition(name) else otherwise)
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            left, right = self(arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self(arg[0])
        if key == "Fn::And":
            return all(self(arg))
        if key == "Fn::Or":
            return any(self(arg))
        if key == "Fn::Select":
            index, items = self(arg)
            return items[int(index)]
        if key == "Fn::Split":
            sep, text = self(arg)
            return str(text).split(sep)
        if key == "Fn::FindInMap":
            mapping, top, second = self(arg[:3])
            return self._mappings[mapping][top][second]
        if key == "Fn::GetAZs":
            return self.refs["AWS::AvailabilityZones"]
        raise ProvisionError(f"{key} is an intrinsic function the local stack does not resolve")

    def _attr(self, logical: str, attr: str) -> Any:
        if (logical, attr) not in self.attrs:
            raise ProvisionError(f"Fn::GetAtt {logical}.{attr}: the local stack has no such attribute")
        return self.attrs[(logical, attr)]

    def _sub(self, name: str, extra: dict[str, Any]) -> str:
        if name.startswith("!"):
            return "${" + name[1:] + "}"  # ${!Literal} is the literal text ${Literal}
        if name in extra:
            return str(extra[name])
        if "." in name and name not in self.refs:
            logical, attr = name.split(".", 1)
            return str(self._attr(logical, attr))
        return str(self._intrinsic("Ref", name))


def references(value: Any) -> Iterator[str]:
    """The names a value refers to (Ref, Fn::GetAtt, Fn::Sub's ${…}): what must exist before it is resolved."""
    if isinstance(value, list):
        for item in value:
            yield from references(item)
    elif isinstance(value, dict):
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" and isinstance(arg, str):
                yield arg
                return
            if key == "Fn::GetAtt":
                yield arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0]
                return
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                for name in re.findall(r"\$\{([^}!][^}]*)\}", text):
                    if name not in extra:
                        yield name.split(".", 1)[0]
                yield from references(extra)
                return
        for item in value.values():
            yield from references(item)


def creation_order(resources: dict[str, Any]) -> list[str]:
    """The logical ids, each after every resource it refers to or DependsOn (template order where free)."""
    needs: dict[str, set[str]] = {}
    for logical, spec in resources.items():
        depends = spec.get("DependsOn", [])
        named = set(references(spec.get("Properties", {}))) | set([depends] if isinstance(depends, str) else depends)
        needs[logical] = {n for n in named if n in resources and n != logical}
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(resources):
        ready = [lid for lid in resources if lid not in done and needs[lid] <= done]
        if not ready:
            stuck = sorted(lid for lid in resources if lid not in done)
            raise ProvisionError(f"resources refer to each other in a cycle: {', '.join(stuck)}")
        order.extend(ready)
        done.update(ready)
    return order


@dataclass
class Created:
    """One resource as it stands in moto (or, for a function, as the local stack runs it)."""

    logical_id: str
    kind: str
    ref: Any
    properties: dict[str, Any]  # resolved
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Provisioned:
    """What stand_up created: every resource by logical id, and what the local stack runs for each function."""

    created: dict[str, Created]
    taps: dict[str, list[str]]  # function ARN → URLs of the SQS queues its rules deliver to
    schedules: dict[str, list[str]]  # function ARN → schedule expressions that invoke it

    def of_type(self, kind: str) -> list[Created]:
        return [c for c in self.created.values() if c.kind == kind]


class _Clients:
    def __init__(self) -> None:
        self._made: dict[str, Any] = {}

    def __getattr__(self, service: str) -> Any:
        if service.startswith("_"):
            raise AttributeError(service)
        if service not in self._made:
            self._made[service] = boto3.client(service)  # type: ignore[call-overload]
        return self._made[service]


class _Context:
    def __init__(self, stack: str, region: str, account: str, empty_secret: str) -> None:
        self.stack, self.region, self.account = stack, region, account
        self.empty_secret = empty_secret
        self.aws = _Clients()
        self.functions: dict[str, str] = {}  # function ARN → logical id
        self.taps: dict[str, list[str]] = {}
        self.schedules: dict[str, list[str]] = {}

    def name(self, logical: str, limit: int, *, lower: bool = False) -> str:
        """`<stack>-<LogicalId>`, as CloudFormation names what the template leaves unnamed (without its random
        suffix, so local names stay the same run to run); a hash of the whole keeps a long one unique."""
        name = f"{self.stack}-{logical}"
        if len(name) > limit:
            name = f"{name[: limit - 9]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
        return name.lower() if lower else name

    def function_logical(self, arn: str, user: str) -> str | None:
        """The stack's function a target ARN names, None when it is no Lambda ARN; a Lambda ARN outside the stack
        is refused (locally only this stack's handlers can run)."""
        if arn.split(":")[2:3] != ["lambda"]:
            return None
        unqualified = ":".join(arn.split(":")[:7])
        if unqualified not in self.functions:
            raise ProvisionError(f"{user} targets {arn}, which is no function of this template")
        return self.functions[unqualified]


Creator = Callable[[_Context, str, dict[str, Any]], tuple[Any, dict[str, Any]]]


@dataclass(frozen=True)
class _Kind:
    create: Creator
    properties: frozenset[str]  # what the creator applies (or keeps, where said); anything else is refused


def _tags(tags: Any) -> list[dict[str, str]]:
    """CloudFormation's Tags, a list of Key/Value (or, for some types, a mapping), as the API's list."""
    if isinstance(tags, dict):
        return [{"Key": k, "Value": str(v)} for k, v in tags.items()]
    return [{"Key": t["Key"], "Value": str(t["Value"])} for t in tags or []]


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() == "true"


# -- DynamoDB -------------------------------------------------------------------------------------------------


def _table(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    name = p.get("TableName") or ctx.name(logical, 255, lower=True)
    args: dict[str, Any] = {
        "TableName": name,
        "KeySchema": p["KeySchema"],
        "AttributeDefinitions": p["AttributeDefinitions"],
        "BillingMode": p.get("BillingMode", "PROVISIONED"),
    }
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if key in p:
            args[key] = [{k: v for k, v in ix.items() if k != "ContributorInsightsSpecification"} for ix in p[key]]
    if "ProvisionedThroughput" in p:
        args["ProvisionedThroughput"] = {k: int(v) for k, v in p["ProvisionedThroughput"].items()}
    if "SSESpecification" in p:
        sse = p["SSESpecification"]
        args["SSESpecification"] = {"Enabled": _flag(sse.get("SSEEnabled", False))} | {
            k: sse[k] for k in ("SSEType", "KMSMasterKeyId") if k in sse
        }
    if "StreamSpecification" in p:
        args["StreamSpecification"] = {"StreamEnabled": True, **p["StreamSpecification"]}
    if "DeletionProtectionEnabled" in p:
        args["DeletionProtectionEnabled"] = _flag(p["DeletionProtectionEnabled"])
    if "TableClass" in p:
        args["TableClass"] = p["TableClass"]
    if "Tags" in p:
        args["Tags"] = _tags(p["Tags"])
    table = ctx.aws.dynamodb.create_table(**args)["TableDescription"]
    if "TimeToLiveSpecification" in p:
        ttl = p["TimeToLiveSpecification"]
        ctx.aws.dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": _flag(ttl["Enabled"])},
        )
    if "PointInTimeRecoverySpecification" in p:
        pitr = p["PointInTimeRecoverySpecification"]
        ctx.aws.dynamodb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={
                "PointInTimeRecoveryEnabled": _flag(pitr.get("PointInTimeRecoveryEnabled", False))
            },
        )
    attrs = {"Arn": table["TableArn"]}
    if "LatestStreamArn" in table:
        attrs["StreamArn"] = table["LatestStreamArn"]
    return name, attrs


# -- S3 -------------------------------------------------------------------------------------------------------

_LIFECYCLE_RULE_KEYS = {
    "Id",
    "Status",
    "Prefix",
    "TagFilters",
    "ObjectSizeGreaterThan",
    "ObjectSizeLessThan",
    "ExpirationInDays",
    "ExpirationDate",
    "ExpiredObjectDeleteMarker",
    "AbortIncompleteMultipartUpload",
    "NoncurrentVersionExpiration",
    "NoncurrentVersionExpirationInDays",
    "Transitions",
    "Transition",
    "NoncurrentVersionTransitions",
    "NoncurrentVersionTransition",
}


def lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule (ExpirationInDays, TagFilters, …) as S3's API takes it (Expiration.Days,
    Filter, …)."""
    unknown = set(rule) - _LIFECYCLE_RULE_KEYS
    if unknown:
        raise ProvisionError(f"lifecycle rule {rule.get('Id')!r}: {', '.join(sorted(unknown))} not translated")
    out: dict[str, Any] = {"Status": rule["Status"]}
    if "Id" in rule:
        out["ID"] = rule["Id"]
    conditions: dict[str, Any] = {}
    if "Prefix" in rule:
        conditions["Prefix"] = rule["Prefix"]
    tags = _tags(rule.get("TagFilters"))
    for key in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
        if key in rule:
            conditions[key] = int(rule[key])
    if len(conditions) + len(tags) > 1:
        out["Filter"] = {"And": conditions | ({"Tags": tags} if tags else {})}
    elif tags:
        out["Filter"] = {"Tag": tags[0]}
    else:
        out["Filter"] = conditions
    expiration: dict[str, Any] = {}
    if "ExpirationInDays" in rule:
        expiration["Days"] = int(rule["ExpirationInDays"])
    if "ExpirationDate" in rule:
        expiration["Date"] = rule["ExpirationDate"]
    if "ExpiredObjectDeleteMarker" in rule:
        expiration["ExpiredObjectDeleteMarker"] = _flag(rule["ExpiredObjectDeleteMarker"])
    if expiration:
        out["Expiration"] = expiration
    if "AbortIncompleteMultipartUpload" in rule:
        days = rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(days)}
    noncurrent = {k: int(v) for k, v in (rule.get("NoncurrentVersionExpiration") or {}).items()}
    if "NoncurrentVersionExpirationInDays" in rule:
        noncurrent["NoncurrentDays"] = int(rule["NoncurrentVersionExpirationInDays"])
    if noncurrent:
        out["NoncurrentVersionExpiration"] = noncurrent
    transitions = [*rule.get("Transitions", []), *([rule["Transition"]] if "Transition" in rule else [])]
    if transitions:
        out["Transitions"] = [
            {"StorageClass": t["StorageClass"]}
            | ({"Days": int(t["TransitionInDays"])} if "TransitionInDays" in t else {})
            | ({"Date": t["TransitionDate"]} if "TransitionDate" in t else {})
            for t in transitions
        ]
    older = [
        *rule.get("NoncurrentVersionTransitions", []),
        *([rule["NoncurrentVersionTransition"]] if "NoncurrentVersionTransition" in rule else []),
    ]
    if older:
        out["NoncurrentVersionTransitions"] = [
            {"StorageClass": t["StorageClass"], "NoncurrentDays": int(t["TransitionInDays"])}
            | ({"NewerNoncurrentVersions": int(t["NewerNoncurrentVersions"])} if "NewerNoncurrentVersions" in t else {})
            for t in older
        ]
    return out


def _bucket(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    s3 = ctx.aws.s3
    name = p.get("BucketName") or ctx.name(logical, 63, lower=True)
    if ctx.region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": ctx.region})
    if "BucketEncryption" in p:
        rules = [
            {"ApplyServerSideEncryptionByDefault": r["ServerSideEncryptionByDefault"]}
            | ({"BucketKeyEnabled": _flag(r["BucketKeyEnabled"])} if "BucketKeyEnabled" in r else {})
            for r in p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if "PublicAccessBlockConfiguration" in p:
        block = {k: _flag(v) for k, v in p["PublicAccessBlockConfiguration"].items()}
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
    if "OwnershipControls" in p:
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=p["OwnershipControls"])
    if "VersioningConfiguration" in p:
        s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": p["VersioningConfiguration"]["Status"]}
        )
    if "LifecycleConfiguration" in p:
        rules = [lifecycle_rule(r) for r in p["LifecycleConfiguration"]["Rules"]]
        s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
    if "Tags" in p:
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags(p["Tags"])})
    return name, {
        "Arn": f"arn:aws:s3:::{name}",
        "DomainName": f"{name}.s3.amazonaws.com",
        "RegionalDomainName": f"{name}.s3.{ctx.region}.amazonaws.com",
    }


def _bucket_policy(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    ctx.aws.s3.put_bucket_policy(Bucket=p["Bucket"], Policy=json.dumps(p["PolicyDocument"]))
    return p["Bucket"], {}


# -- EventBridge and Scheduler --------------------------------------------------------------------------------


def _event_bus(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    args: dict[str, Any] = {"Name": p["Name"]}
    if "Description" in p:
        args["Description"] = p["Description"]
    if "Tags" in p:
        args["Tags"] = _tags(p["Tags"])
    arn = ctx.aws.events.create_event_bus(**args)["EventBusArn"]
    return p["Name"], {"Arn": arn, "Name": p["Name"]}


def _tap(ctx: _Context, name: str) -> tuple[str, str]:
    """An SQS queue standing in for a Lambda target: (its URL, its ARN)."""
    url = ctx.aws.sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(TAP_VISIBILITY_SECONDS)})
    url = url["QueueUrl"]
    arn = ctx.aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def _rule(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The rule as the template has it (pattern, bus, state); each Lambda target is a tap queue with the target's
    RetryPolicy and DeadLetterConfig kept on it (moto fails PutEvents to a rule with a Lambda target). A
    scheduled rule's Lambda target gets the schedule's period instead: moto fires no scheduled rule."""
    name = p.get("Name") or ctx.name(logical, 64)
    bus = p.get("EventBusName", "default")
    args: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": p.get("State", "ENABLED")}
    if "EventPattern" in p:
        args["EventPattern"] = json.dumps(p["EventPattern"])
    if "ScheduleExpression" in p:
        args["ScheduleExpression"] = p["ScheduleExpression"]
    if "Description" in p:
        args["Description"] = p["Description"]
    arn = ctx.aws.events.put_rule(**args)["RuleArn"]
    targets = []
    for i, target in enumerate(p.get("Targets", [])):
        function = ctx.function_logical(target["Arn"], f"{logical} ({target['Id']})")
        if function is None:
            targets.append(target)
        elif "ScheduleExpression" in p:
            ctx.schedules.setdefault(target["Arn"], []).append(p["ScheduleExpression"])
        else:
            url, queue_arn = _tap(ctx, ctx.name(f"{logical}-{i}" if i else logical, 80))
            ctx.taps.setdefault(target["Arn"], []).append(url)
            targets.append({**target, "Arn": queue_arn})
    if targets:
        ctx.aws.events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
    return name, {"Arn": arn}


def _schedule_group(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    name = p.get("Name") or ctx.name(logical, 64)
    args: dict[str, Any] = {"Name": name} | ({"Tags": _tags(p["Tags"])} if "Tags" in p else {})
    arn = ctx.aws.scheduler.create_schedule_group(**args)["ScheduleGroupArn"]
    return name, {"Arn": arn}


_SCHEDULE_PASSED = (
    "GroupName",
    "ScheduleExpression",
    "ScheduleExpressionTimezone",
    "FlexibleTimeWindow",
    "Target",
    "State",
    "Description",
    "StartDate",
    "EndDate",
    "KmsKeyArn",
)


def _schedule(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The schedule in moto (which never fires it); a Lambda target also gets its period for the local timer."""
    name = p.get("Name") or ctx.name(logical, 64)
    args = {"Name": name} | {k: p[k] for k in _SCHEDULE_PASSED if k in p}
    arn = ctx.aws.scheduler.create_schedule(**args)["ScheduleArn"]
    target = p["Target"]["Arn"]
    if ctx.function_logical(target, logical) is not None and p.get("State", "ENABLED") == "ENABLED":
        ctx.schedules.setdefault(target, []).append(p["ScheduleExpression"])
    return name, {"Arn": arn}


# -- Secrets, IAM, EC2 ----------------------------------------------------------------------------------------


def _secret(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A secret the template leaves empty (an operator fills it after deploying) gets the local value."""
    args: dict[str, Any] = {"Name": p.get("Name") or ctx.name(logical, 512)}
    args["SecretString"] = p.get("SecretString", ctx.empty_secret)
    for key in ("Description", "KmsKeyId"):
        if key in p:
            args[key] = p[key]
    if "Tags" in p:
        args["Tags"] = _tags(p["Tags"])
    arn = ctx.aws.secretsmanager.create_secret(**args)["ARN"]
    return arn, {"Id": arn}


def _policy(document: dict[str, Any]) -> str:
    """A policy document as IAM takes it. SAM's policy templates leave out Version, which IAM reads as 2008-10-17
    and moto refuses: the local copy says 2012-10-17 (the documents use none of the newer policy variables)."""
    return json.dumps({"Version": "2012-10-17", **document})


# AWS's own policies: moto loads them only with MOTO_IAM_LOAD_MANAGED_POLICIES set; without, the role lacks them.
_AWS_MANAGED_POLICY = re.compile(r"^arn:[^:]+:iam::aws:policy/")


def _role(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    iam = ctx.aws.iam
    name = p.get("RoleName") or ctx.name(logical, 64)
    args: dict[str, Any] = {"RoleName": name, "AssumeRolePolicyDocument": _policy(p["AssumeRolePolicyDocument"])}
    for key in ("Path", "Description", "PermissionsBoundary"):
        if key in p:
            args[key] = p[key]
    if "MaxSessionDuration" in p:
        args["MaxSessionDuration"] = int(p["MaxSessionDuration"])
    if "Tags" in p:
        args["Tags"] = _tags(p["Tags"])
    role = iam.create_role(**args)["Role"]
    for policy in p.get("Policies", []):
        iam.put_role_policy(
            RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=_policy(policy["PolicyDocument"])
        )
    for arn in p.get("ManagedPolicyArns", []):
        try:
            iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        except ClientError as e:
            if not (e.response["Error"]["Code"] == "NoSuchEntity" and _AWS_MANAGED_POLICY.match(arn)):
                raise
    return name, {"Arn": role["Arn"], "RoleId": role["RoleId"]}


def _managed_policy(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    iam = ctx.aws.iam
    args: dict[str, Any] = {
        "PolicyName": p.get("ManagedPolicyName") or ctx.name(logical, 128),
        "PolicyDocument": _policy(p["PolicyDocument"]),
    }
    for key in ("Path", "Description"):
        if key in p:
            args[key] = p[key]
    policy = iam.create_policy(**args)["Policy"]
    arn = policy["Arn"]
    for role in p.get("Roles", []):
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    for user in p.get("Users", []):
        iam.attach_user_policy(UserName=user, PolicyArn=arn)
    for group in p.get("Groups", []):
        iam.attach_group_policy(GroupName=group, PolicyArn=arn)
    return arn, {"PolicyArn": arn, "PolicyId": policy["PolicyId"]}


def _inline_policy(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    iam, document = ctx.aws.iam, _policy(p["PolicyDocument"])
    for role in p.get("Roles", []):
        iam.put_role_policy(RoleName=role, PolicyName=p["PolicyName"], PolicyDocument=document)
    for user in p.get("Users", []):
        iam.put_user_policy(UserName=user, PolicyName=p["PolicyName"], PolicyDocument=document)
    for group in p.get("Groups", []):
        iam.put_group_policy(GroupName=group, PolicyName=p["PolicyName"], PolicyDocument=document)
    return ctx.name(logical, 128), {"Id": ctx.name(logical, 128)}


def _instance_profile(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    name = p.get("InstanceProfileName") or ctx.name(logical, 128)
    args = {"InstanceProfileName": name} | ({"Path": p["Path"]} if "Path" in p else {})
    arn = ctx.aws.iam.create_instance_profile(**args)["InstanceProfile"]["Arn"]
    for role in p["Roles"]:
        ctx.aws.iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
    return name, {"Arn": arn}


def ip_permission(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation security group rule (one CIDR or peer per rule) as EC2's IpPermissions entry."""
    out: dict[str, Any] = {"IpProtocol": str(rule["IpProtocol"])}
    for key in ("FromPort", "ToPort"):
        if key in rule:
            out[key] = int(rule[key])
    described = {"Description": rule["Description"]} if "Description" in rule else {}
    if "CidrIp" in rule:
        out["IpRanges"] = [{"CidrIp": rule["CidrIp"], **described}]
    if "CidrIpv6" in rule:
        out["Ipv6Ranges"] = [{"CidrIpv6": rule["CidrIpv6"], **described}]
    for key in ("SourceSecurityGroupId", "DestinationSecurityGroupId"):
        if key in rule:
            out["UserIdGroupPairs"] = [{"GroupId": rule[key], **described}]
    for key in ("SourcePrefixListId", "DestinationPrefixListId"):
        if key in rule:
            out["PrefixListIds"] = [{"PrefixListId": rule[key], **described}]
    return out


def _security_group(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    ec2 = ctx.aws.ec2
    args: dict[str, Any] = {
        "GroupName": p.get("GroupName") or ctx.name(logical, 255),
        "Description": p["GroupDescription"],
    }
    if "VpcId" in p:
        args["VpcId"] = p["VpcId"]
    if "Tags" in p:
        args["TagSpecifications"] = [{"ResourceType": "security-group", "Tags": _tags(p["Tags"])}]
    group = ec2.create_security_group(**args)["GroupId"]
    if "SecurityGroupIngress" in p:
        ingress = [ip_permission(r) for r in p["SecurityGroupIngress"]]
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=ingress)
    if "SecurityGroupEgress" in p:
        # The template's egress rules replace the allow-all one a new group starts with, as CloudFormation does.
        start = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissionsEgress"]
        if start:
            ec2.revoke_security_group_egress(GroupId=group, IpPermissions=start)
        egress = [ip_permission(r) for r in p["SecurityGroupEgress"]]
        ec2.authorize_security_group_egress(GroupId=group, IpPermissions=egress)
    vpc = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0].get("VpcId", "")
    return group, {"GroupId": group, "VpcId": vpc}


def _launch_template(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    args: dict[str, Any] = {
        "LaunchTemplateName": p.get("LaunchTemplateName") or ctx.name(logical, 128),
        "LaunchTemplateData": p["LaunchTemplateData"],
    }
    if "VersionDescription" in p:
        args["VersionDescription"] = p["VersionDescription"]
    if "TagSpecifications" in p:
        args["TagSpecifications"] = [
            {"ResourceType": s["ResourceType"], "Tags": _tags(s["Tags"])} for s in p["TagSpecifications"]
        ]
    lt = ctx.aws.ec2.create_launch_template(**args)["LaunchTemplate"]
    return lt["LaunchTemplateId"], {
        "LaunchTemplateId": lt["LaunchTemplateId"],
        "LatestVersionNumber": str(lt["LatestVersionNumber"]),
        "DefaultVersionNumber": str(lt["DefaultVersionNumber"]),
    }


# -- SQS, Logs, Lambda ----------------------------------------------------------------------------------------


def _attribute(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def _queue(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    fifo = _flag(p.get("FifoQueue", False))
    name = p.get("QueueName") or ctx.name(logical, 75) + (".fifo" if fifo else "")
    attributes = {k: _attribute(v) for k, v in p.items() if k not in ("QueueName", "Tags")}
    args: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
    if "Tags" in p:
        args["tags"] = {t["Key"]: t["Value"] for t in _tags(p["Tags"])}
    url = ctx.aws.sqs.create_queue(**args)["QueueUrl"]
    arn = ctx.aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, {"Arn": arn, "QueueName": name, "QueueUrl": url}


def _queue_policy(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    for url in p["Queues"]:
        ctx.aws.sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(p["PolicyDocument"])})
    return ctx.name(logical, 255), {}


def _log_group(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    logs = ctx.aws.logs
    name = p.get("LogGroupName") or ctx.name(logical, 512)
    args: dict[str, Any] = {"logGroupName": name}
    if "KmsKeyId" in p:
        args["kmsKeyId"] = p["KmsKeyId"]
    if "LogGroupClass" in p:
        args["logGroupClass"] = p["LogGroupClass"]
    if "Tags" in p:
        args["tags"] = {t["Key"]: t["Value"] for t in _tags(p["Tags"])}
    logs.create_log_group(**args)
    if "RetentionInDays" in p:
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(p["RetentionInDays"]))
    return name, {"Arn": f"arn:aws:logs:{ctx.region}:{ctx.account}:log-group:{name}:*"}


def _function(ctx: _Context, logical: str, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Nothing in moto: its Handler runs in-process. Its name and ARN are what rules and schedules target."""
    name = p.get("FunctionName") or ctx.name(logical, 64)
    arn = f"arn:aws:lambda:{ctx.region}:{ctx.account}:function:{name}"
    ctx.functions[arn] = logical
    return name, {"Arn": arn}


# What only Lambda's runtime reads (the code, its packaging, memory, tracing, where failures go): an in-process
# handler has nothing to apply them to (its Created record keeps them, resolved).
_LAMBDA_RUNTIME_ONLY = {
    "Code",
    "Runtime",
    "MemorySize",
    "Architectures",
    "TracingConfig",
    "Tags",
    "Description",
    "DeadLetterConfig",
    "Layers",
    "EphemeralStorage",
    "LoggingConfig",
    "PackageType",
    "ImageConfig",
    "KmsKeyArn",
    "ReservedConcurrentExecutions",
    "RuntimeManagementConfig",
    "SnapStart",
    "VpcConfig",
}

KINDS: dict[str, _Kind] = {
    "AWS::DynamoDB::Table": _Kind(
        _table,
        frozenset(
            {
                "TableName",
                "KeySchema",
                "AttributeDefinitions",
                "BillingMode",
                "GlobalSecondaryIndexes",
                "LocalSecondaryIndexes",
                "ProvisionedThroughput",
                "SSESpecification",
                "StreamSpecification",
                "TimeToLiveSpecification",
                "PointInTimeRecoverySpecification",
                "DeletionProtectionEnabled",
                "TableClass",
                "Tags",
            }
        ),
    ),
    "AWS::S3::Bucket": _Kind(
        _bucket,
        frozenset(
            {
                "BucketName",
                "BucketEncryption",
                "PublicAccessBlockConfiguration",
                "OwnershipControls",
                "VersioningConfiguration",
                "LifecycleConfiguration",
                "Tags",
            }
        ),
    ),
    "AWS::S3::BucketPolicy": _Kind(_bucket_policy, frozenset({"Bucket", "PolicyDocument"})),
    "AWS::Events::EventBus": _Kind(_event_bus, frozenset({"Name", "Description", "Tags"})),
    "AWS::Events::Rule": _Kind(
        _rule,
        frozenset({"Name", "EventBusName", "EventPattern", "ScheduleExpression", "State", "Description", "Targets"}),
    ),
    "AWS::Scheduler::ScheduleGroup": _Kind(_schedule_group, frozenset({"Name", "Tags"})),
    "AWS::Scheduler::Schedule": _Kind(_schedule, frozenset({"Name", *_SCHEDULE_PASSED})),
    "AWS::SecretsManager::Secret": _Kind(
        _secret, frozenset({"Name", "Description", "SecretString", "KmsKeyId", "Tags"})
    ),
    "AWS::IAM::Role": _Kind(
        _role,
        frozenset(
            {
                "RoleName",
                "AssumeRolePolicyDocument",
                "Policies",
                "ManagedPolicyArns",
                "Path",
                "Description",
                "PermissionsBoundary",
                "MaxSessionDuration",
                "Tags",
            }
        ),
    ),
    "AWS::IAM::ManagedPolicy": _Kind(
        _managed_policy,
        frozenset({"ManagedPolicyName", "PolicyDocument", "Path", "Description", "Roles", "Users", "Groups"}),
    ),
    "AWS::IAM::Policy": _Kind(_inline_policy, frozenset({"PolicyName", "PolicyDocument", "Roles", "Users", "Groups"})),
    "AWS::IAM::InstanceProfile": _Kind(_instance_profile, frozenset({"InstanceProfileName", "Path", "Roles"})),
    "AWS::EC2::SecurityGroup": _Kind(
        _security_group,
        frozenset({"GroupName", "GroupDescription", "VpcId", "SecurityGroupIngress", "SecurityGroupEgress", "Tags"}),
    ),
    "AWS::EC2::LaunchTemplate": _Kind(
        _launch_template,
        frozenset({"LaunchTemplateName", "LaunchTemplateData", "VersionDescription", "TagSpecifications"}),
    ),
    "AWS::SQS::Queue": _Kind(
        _queue,
        frozenset(
            {
                "QueueName",
                "Tags",
                "ContentBasedDeduplication",
                "DeduplicationScope",
                "DelaySeconds",
                "FifoQueue",
                "FifoThroughputLimit",
                "KmsDataKeyReusePeriodSeconds",
                "KmsMasterKeyId",
                "MaximumMessageSize",
                "MessageRetentionPeriod",
                "ReceiveMessageWaitTimeSeconds",
                "RedriveAllowPolicy",
                "RedrivePolicy",
                "SqsManagedSseEnabled",
                "VisibilityTimeout",
            }
        ),
    ),
    "AWS::SQS::QueuePolicy": _Kind(_queue_policy, frozenset({"Queues", "PolicyDocument"})),
    "AWS::Logs::LogGroup": _Kind(
        _log_group, frozenset({"LogGroupName", "RetentionInDays", "KmsKeyId", "LogGroupClass", "Tags"})
    ),
    "AWS::Lambda::Function": _Kind(
        _function, frozenset({"FunctionName", "Handler", "Environment", "Timeout", "Role", *_LAMBDA_RUNTIME_ONLY})
    ),
}


def stand_up(
    cfn: dict[str, Any],
    refs: dict[str, Any],
    *,
    stack: str,
    empty_secret: str,
) -> Provisioned:
    """Create every resource of `cfn` (a translated template) in the moto behind AWS_ENDPOINT_URL.

    `refs` holds what `Ref` gives before any resource exists: the parameters' values and the pseudo parameters
    (AWS::Region and AWS::AccountId among them). `empty_secret` is the value of a secret the template declares
    without one. Raises ProvisionError, naming the resource, for a type or property not stood up locally.
    """
    resources: dict[str, Any] = cfn.get("Resources", {})
    for logical, spec in resources.items():
        kind = spec.get("Type")
        if kind not in KINDS and kind not in NOTHING_TO_STAND_UP:
            raise ProvisionError(f"{logical}: the local stack cannot stand up a {kind} (infra/local/provision.py)")
    resolve = Resolver(refs, cfn.get("Conditions"), cfn.get("Mappings"))
    ctx = _Context(stack, refs["AWS::Region"], refs["AWS::AccountId"], empty_secret)
    created: dict[str, Created] = {}
    for logical in creation_order(resources):
        spec = resources[logical]
        kind = spec["Type"]
        if "Condition" in spec and not resolve.condition(spec["Condition"]):
            continue
        if kind in NOTHING_TO_STAND_UP:
            continue
        unknown = set(spec.get("Properties") or {}) - KINDS[kind].properties
        if unknown:
            raise ProvisionError(
                f"{logical} ({kind}): the local stack does not apply {', '.join(sorted(unknown))}"
                " (infra/local/provision.py)"
            )
        props = resolve(spec.get("Properties") or {})
        try:
            ref, attrs = KINDS[kind].create(ctx, logical, props)
        except ClientError as e:
            raise ProvisionError(f"{logical} ({kind}): moto refused it: {e}") from e
        resolve.refs[logical] = ref
        resolve.attrs.update({(logical, attr): value for attr, value in attrs.items()})
        created[logical] = Created(logical, kind, ref, props, attrs)
    return Provisioned(created, ctx.taps, ctx.schedules)
