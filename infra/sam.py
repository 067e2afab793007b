"""Checks template.yaml offline: translates it with samtranslator and asserts the invariants the code relies on.

    python -m infra.sam check template.yaml      (exit 1 with one line per problem)

Training instances: IMDSv2 only with one hop, shut down means terminated, encrypted volumes, and a role without
table, secret or parameter access, writing to S3 only below its own ARN. Buckets: no public access, encrypted, versioned, TLS only. IAM: Resource "*" only
for reads and the writes AWS allows no narrower (WILDCARD_WRITES). Functions: every handler imports. Rules: every detail-type is a Spotter event. Jobs
table: the channel index the store queries.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

from spotter.events import EVENT_TYPES
from spotter.store import CHANNEL_INDEX, EXPIRES_ATTRIBUTE

PLACEHOLDER_CODE_URI = "s3://placeholder/code.zip"
PARAMETERS = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
# What the instance role must never be able to do: the jobs table, Slack's secret, parameters.
FORBIDDEN_INSTANCE_ACTIONS = ("dynamodb:", "secretsmanager:", "ssm:")
S3_WRITE_VERBS = ("s3:put", "s3:delete", "s3:abortmultipartupload", "s3:restoreobject", "s3:replicate")
SPOTTER_SOURCE_PREFIX = "spotter."
# Write actions a statement may grant on Resource "*", each because AWS offers no narrower grant that works (the
# template says why at the statement). Any other action on "*" must only read.
WILDCARD_WRITES = {
    "ec2:createfleet": "an instant fleet's launch is authorized against resources it creates, which have no ARN yet",
    "ec2:runinstances": "CreateFleet (instant) runs the instances with the caller's RunInstances rights",
}
READ_VERBS = ("describe", "list", "get", "batchget", "query", "scan", "head")


def _placeholder_code(owner: dict[str, Any]) -> None:
    if isinstance(owner.get("CodeUri"), str) and not owner["CodeUri"].startswith("s3://"):
        owner["CodeUri"] = PLACEHOLDER_CODE_URI


def translate(sam: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation that SAM would deploy (local CodeUri values replaced: the translator takes s3:// only)."""
    _placeholder_code(sam.get("Globals", {}).get("Function", {}))
    for resource in sam.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            _placeholder_code(resource.get("Properties") or {})
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=PARAMETERS["AWS::Region"]))
    cfn: dict[str, Any] = translator.translate(sam, parameter_values=dict(PARAMETERS), get_managed_policy_map=dict)
    return cfn


def _of_type(cfn: dict[str, Any], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, resource in cfn.get("Resources", {}).items():
        if resource.get("Type") == kind:
            yield name, resource.get("Properties") or {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def check_launch_templates(cfn: dict[str, Any]) -> list[str]:
    problems = []
    templates = list(_of_type(cfn, "AWS::EC2::LaunchTemplate"))
    if not templates:
        problems.append("no AWS::EC2::LaunchTemplate: the launcher needs one")
    for name, props in templates:
        data = props.get("LaunchTemplateData") or {}
        tokens = (data.get("MetadataOptions") or {}).get("HttpTokens")
        if tokens != "required":
            problems.append(f"{name}: MetadataOptions.HttpTokens is {tokens!r}, must be 'required' (IMDSv2 only)")
        shutdown = data.get("InstanceInitiatedShutdownBehavior")
        if shutdown != "terminate":
            problems.append(f"{name}: InstanceInitiatedShutdownBehavior is {shutdown!r}, must be 'terminate'")
        if not data.get("IamInstanceProfile"):
            problems.append(f"{name}: no IamInstanceProfile; the agent reaches S3 and the bus through it")
        hops = (data.get("MetadataOptions") or {}).get("HttpPutResponseHopLimit")
        if hops != 1:
            problems.append(
                f"{name}: MetadataOptions.HttpPutResponseHopLimit is {hops!r}, must be 1 (no container reaches IMDS)"
            )
        volumes = [m.get("Ebs") or {} for m in data.get("BlockDeviceMappings") or []]
        if not volumes:
            problems.append(f"{name}: no BlockDeviceMappings: the root volume's size and encryption must be set")
        for ebs in volumes:
            if ebs.get("Encrypted") is not True:
                problems.append(f"{name}: an EBS volume is not Encrypted")
    return problems


def check_buckets(cfn: dict[str, Any]) -> list[str]:
    """Every bucket: public access blocked, encrypted, versioned, and a policy that refuses requests without TLS."""
    problems = []
    denied_plain: set[str] = set()
    for _, props in _of_type(cfn, "AWS::S3::BucketPolicy"):
        bucket = props.get("Bucket")
        for statement in _statements(props.get("PolicyDocument") or {}):
            condition = (statement.get("Condition") or {}).get("Bool") or {}
            insecure = str(condition.get("aws:SecureTransport")).lower() == "false"
            resources = _as_list(statement.get("Resource", []))
            denies = statement.get("Effect") == "Deny" and statement.get("Principal") == "*"
            if denies and insecure and len(resources) >= 2 and isinstance(bucket, dict) and "Ref" in bucket:
                denied_plain.add(bucket["Ref"])
    for name, props in _of_type(cfn, "AWS::S3::Bucket"):
        block = props.get("PublicAccessBlockConfiguration") or {}
        for key in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
            if block.get(key) is not True:
                problems.append(f"{name}: PublicAccessBlockConfiguration.{key} is not true")
        if not (props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration"):
            problems.append(f"{name}: no BucketEncryption")
        if (props.get("VersioningConfiguration") or {}).get("Status") != "Enabled":
            problems.append(f"{name}: versioning is not Enabled")
        if name not in denied_plain:
            problems.append(f"{name}: no bucket policy denies requests without TLS (aws:SecureTransport false)")
    return problems


def _policy_documents(cfn: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, props in _of_type(cfn, "AWS::IAM::Role"):
        for policy in props.get("Policies", []):
            yield name, policy.get("PolicyDocument") or {}
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for name, props in _of_type(cfn, kind):
            yield name, props.get("PolicyDocument") or {}


def check_wildcard_writes(cfn: dict[str, Any]) -> list[str]:
    """Resource "*" only for reads, and for the writes AWS allows nothing narrower (WILDCARD_WRITES)."""
    problems = []
    for owner, document in _policy_documents(cfn):
        for statement in _statements(document):
            if statement.get("Effect") != "Allow" or "*" not in _as_list(statement.get("Resource", [])):
                continue
            for action in _as_list(statement.get("Action", [])):
                lowered = str(action).lower()
                verb = lowered.split(":", 1)[-1]
                if lowered in WILDCARD_WRITES or (verb.startswith(READ_VERBS) and "*" not in verb):
                    continue
                sid = statement.get("Sid", "a statement")
                problems.append(f'{owner}: {sid} allows {action} on Resource "*"; name the resources it writes')
    return problems


def check_jobs_ttl(cfn: dict[str, Any]) -> list[str]:
    problems = []
    for name, props in _of_type(cfn, "AWS::DynamoDB::Table"):
        ttl = props.get("TimeToLiveSpecification") or {}
        if ttl.get("Enabled") is not True or ttl.get("AttributeName") != EXPIRES_ATTRIBUTE:
            problems.append(f"{name}: TimeToLiveSpecification must enable {EXPIRES_ATTRIBUTE!r}, the store's expiry")
    return problems


def placeholder(value: Any, name: str) -> str:
    """An environment value as a handler sees it at import: an intrinsic (a Ref, a GetAtt) stands in as a name."""
    return value if isinstance(value, str) else f"placeholder-{name.lower()}"


@contextlib.contextmanager
def _lambda_environment(variables: dict[str, Any]) -> Iterator[None]:
    """The environment the function's module sees at cold start (intrinsics as placeholders)."""
    saved = dict(os.environ)
    os.environ.update({k: placeholder(v, k) for k, v in variables.items()})
    os.environ.setdefault("AWS_REGION", PARAMETERS["AWS::Region"])
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def check_handlers(cfn: dict[str, Any]) -> list[str]:
    problems = []
    for name, props in _of_type(cfn, "AWS::Lambda::Function"):
        handler = props.get("Handler")
        if not isinstance(handler, str) or "." not in handler:
            problems.append(f"{name}: Handler {handler!r} is not module.function")
            continue
        module_name, function = handler.rsplit(".", 1)
        variables = (props.get("Environment") or {}).get("Variables") or {}
        try:
            with _lambda_environment(variables):
                module = importlib.import_module(module_name)
        except Exception as e:
            problems.append(f"{name}: Handler {handler}: cannot import {module_name} ({type(e).__name__}: {e})")
            continue
        if not callable(getattr(module, function, None)):
            problems.append(f"{name}: Handler {handler}: {module_name} has no function {function}")
    return problems


def check_rules(cfn: dict[str, Any]) -> list[str]:
    """Rules that match Spotter sources must name detail-types Spotter puts on the bus."""
    problems = []
    for name, props in _of_type(cfn, "AWS::Events::Rule"):
        pattern = props.get("EventPattern") or {}
        sources = [s for s in _as_list(pattern.get("source", [])) if isinstance(s, str)]
        if not any(s.startswith(SPOTTER_SOURCE_PREFIX) for s in sources):
            continue
        detail_types = _as_list(pattern.get("detail-type", []))
        if not detail_types:
            problems.append(f"{name}: a rule on Spotter events must list its detail-types")
        for detail_type in detail_types:
            if detail_type not in EVENT_TYPES:
                problems.append(
                    f"{name}: detail-type {detail_type!r} is not a Spotter event ({', '.join(EVENT_TYPES)})"
                )
    return problems


def _instance_roles(cfn: dict[str, Any]) -> set[str]:
    roles: set[str] = set()
    for _, props in _of_type(cfn, "AWS::IAM::InstanceProfile"):
        for role in props.get("Roles", []):
            if isinstance(role, dict) and "Ref" in role:
                roles.add(role["Ref"])
    return roles


def _statements(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from _as_list(document.get("Statement", []))


def check_instance_role(cfn: dict[str, Any]) -> list[str]:
    problems = []
    roles = _instance_roles(cfn)
    if not roles:
        problems.append("no AWS::IAM::InstanceProfile with a role from this template")
    resources = cfn.get("Resources", {})
    for role in sorted(roles):
        props = (resources.get(role) or {}).get("Properties") or {}
        documents = [p.get("PolicyDocument") or {} for p in props.get("Policies", [])]
        for _, policy in _of_type(cfn, "AWS::IAM::Policy"):
            if {"Ref": role} in policy.get("Roles", []):
                documents.append(policy.get("PolicyDocument") or {})
        if props.get("ManagedPolicyArns"):
            problems.append(f"{role}: managed policies cannot be checked here; give the instance role inline ones")
        for document in documents:
            for statement in _statements(document):
                if statement.get("Effect") != "Allow":
                    continue
                if "NotAction" in statement:
                    problems.append(f"{role}: the instance role allows everything but {statement['NotAction']}")
                for action in _as_list(statement.get("Action", [])):
                    lowered = str(action).lower()
                    if lowered == "*" or lowered.startswith(FORBIDDEN_INSTANCE_ACTIONS):
                        problems.append(f"{role}: the instance role allows {action}")
                    if lowered.startswith(S3_WRITE_VERBS) or lowered in ("s3:*", "s3:put*"):
                        problems.extend(
                            f"{role}: {action} on {resource} is not below the instance's own ARN"
                            for resource in _as_list(statement.get("Resource", []))
                            if not _below_own_arn(resource)
                        )
    return problems


def _below_own_arn(resource: Any) -> bool:
    """An S3 object ARN naming the writer's own instance (the ${ec2:SourceInstanceARN} policy variable)."""
    text = resource.get("Fn::Sub") if isinstance(resource, dict) else resource
    if isinstance(text, list):
        text = text[0]
    if not isinstance(text, str):
        return False
    variable = "${!ec2:SourceInstanceARN}/" if isinstance(resource, dict) else "${ec2:SourceInstanceARN}/"
    return variable in text


def check_jobs_table(cfn: dict[str, Any]) -> list[str]:
    for name, props in _of_type(cfn, "AWS::DynamoDB::Table"):
        for index in props.get("GlobalSecondaryIndexes", []):
            if index.get("IndexName") == CHANNEL_INDEX:
                hash_keys = [k["AttributeName"] for k in index.get("KeySchema", []) if k.get("KeyType") == "HASH"]
                if hash_keys != ["channel"]:
                    return [f"{name}: index {CHANNEL_INDEX} must have hash key 'channel', not {hash_keys}"]
                return []
    return [f"no DynamoDB table has the global secondary index {CHANNEL_INDEX!r} that spotter.store queries"]


CHECKS = (
    check_launch_templates,
    check_handlers,
    check_rules,
    check_instance_role,
    check_jobs_table,
    check_jobs_ttl,
    check_buckets,
    check_wildcard_writes,
)


def check_template(sam: dict[str, Any]) -> list[str]:
    """Every invariant's problems for a parsed SAM template, or an empty list."""
    try:
        cfn = translate(copy.deepcopy(sam))
    except Exception as e:
        return [f"SAM translation failed: {e}"]
    return [problem for check_one in CHECKS for problem in check_one(cfn)]


def check(path: Path) -> list[str]:
    return check_template(yaml_parse(path.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.sam", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check_cmd = commands.add_parser("check", help="translate the template and check its invariants")
    check_cmd.add_argument("template", type=Path)
    args = parser.parse_args(argv)
    problems = check(args.template)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{args.template}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.template}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
