"""Puts Spotter into an AWS account (`make deploy`) and takes it out again (`make destroy`).

    python -m infra.deploy [deploy] [--vpc-id VPC] [--subnet-ids A,B] [--parameter Key=Value …] [--replace-slack-secret]
    python -m infra.deploy destroy [--delete-data] [--terminate-instances] [--yes]

Deploy, in order: the prerequisites (the SAM CLI, credentials, a region); the parameters, asking only for what
samconfig.toml, the flags and the deployed stack do not say (VpcId, SubnetIds); `sam build`; `sam deploy`; the
agent package into the stack's bucket; the Slack Request URL and the app manifest that carries it; the Slack app's
credentials into the stack's secret, asked for only while it holds none; what to do next. Every effect outside this
process goes through a Runner (commands) or the boto3 session, so the tests drive all of it against moto and a
recording `sam`.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import importlib.metadata
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError, WaiterError
from pydantic import SecretStr

from bot.slack import SlackCredentials
from infra.package import build_agent, publish_agent
from lambdas.launch import QUOTAS, quota_console_url, quota_family, vcpus
from spotter import catalog, layout
from spotter.aws import RETRY_CONFIG, S3_CONFIG

ROOT = Path(__file__).resolve().parents[1]
SAMCONFIG = "samconfig.toml"
MANIFEST = "slack-manifest.yaml"
MANIFEST_URL = "https://<function-url>/slack/events"
EVENTS_PATH = "slack/events"
# Where the app's credentials come from when no one should be asked (CI, a script); never from the command line.
TOKEN_ENV = "SLACK_BOT_TOKEN"
SIGNING_SECRET_ENV = "SLACK_SIGNING_SECRET"  # pragma: allowlist secret
# Logical ids in template.yaml that deploy and destroy look up in the stack.
SECRET_RESOURCE = "SlackSecret"  # pragma: allowlist secret
BUCKET_RESOURCE = "ArtifactsBucket"
PROFILE_RESOURCE = "InstanceProfile"
NETWORK_PARAMETERS = ("VpcId", "SubnetIds")
SECRET_TRIES = 3
AGENT_PARAMETER = "AgentVersion"
# The smallest GPU type the catalog launches: a spot quota under its vCPUs launches nothing on spot.
SMALLEST_GPU_VCPUS = min(n for t in catalog.GPU_TYPES if quota_family(t) == "G" and (n := vcpus(t)) is not None)
STACK_POLL_SECONDS = 10
STACK_MAX_POLLS = 360  # an hour
INSTANCE_POLL_SECONDS = 10
LIVE_INSTANCE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
BUSY_SUFFIX = "_IN_PROGRESS"


class DeployError(RuntimeError):
    """Something a person has to fix; the message says what."""


class Runner(Protocol):
    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> None:
        """Run a command to its end, its output shown as it comes; raise DeployError if it fails."""


class Prompter(Protocol):
    def ask(self, key: str, question: str, default: str | None = None, *, how: str) -> str:
        """An answer (the default on an empty one); `how` says how to give it without being asked."""

    def ask_secret(self, key: str, question: str, *, how: str) -> str:
        """An answer typed without echo."""


@dataclass
class SubprocessRunner:
    """Commands in their own process group, no stdin, stderr merged, each line shown (redacted) as it comes."""

    out: TextIO
    redact: set[str] = field(default_factory=set)

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> None:
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env={"PYTHONUNBUFFERED": "1", **env},  # sam is Python: lines as they happen, in order
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise DeployError(f"{argv[0]} not found: run `make sam` (the SAM CLI in .venv/sam)") from None
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                for secret in self.redact:
                    line = line.replace(secret, "****")
                self.out.write(line)
                self.out.flush()
            code = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted: take sam and whatever it started down with us
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
        if code != 0:
            raise DeployError(f"`{' '.join(argv[:2])}` failed (exit {code}); its output is above")


@dataclass
class TerminalPrompter:
    out: TextIO
    interactive: bool

    def _refuse(self, question: str, how: str) -> DeployError:
        return DeployError(f"{question}: not found, and there is no terminal to ask on ({how})")

    def ask(self, key: str, question: str, default: str | None = None, *, how: str) -> str:
        if not self.interactive:
            if default is None:
                raise self._refuse(question, how)
            print(f"{question}: {default} (no terminal to ask on: the default)", file=self.out, flush=True)
            return default
        suffix = f" [{default}]" if default else ""
        answer = input(f"{question}{suffix}: ").strip()
        return answer or (default or "")

    def ask_secret(self, key: str, question: str, *, how: str) -> str:
        if not self.interactive:
            print(f"{question}: skipped (no terminal to ask on; {how})", file=self.out, flush=True)
            return ""
        return getpass.getpass(f"{question}: ", stream=self.out).strip()


@dataclass(frozen=True)
class SamConfig:
    """What samconfig.toml says about this deployment (its `default` environment)."""

    stack_name: str
    region: str | None
    build_dir: str
    parameter_overrides: dict[str, str]

    @classmethod
    def load(cls, path: Path) -> SamConfig:
        default = tomllib.loads(path.read_text()).get("default", {})

        def section(name: str) -> dict[str, Any]:
            return dict(default.get(name, {}).get("parameters", {}))

        merged = {**section("global"), **section("deploy")}
        build = {**section("global"), **section("build")}
        overrides = merged.get("parameter_overrides") or []
        pairs = overrides.split() if isinstance(overrides, str) else list(overrides)
        return cls(
            stack_name=str(merged.get("stack_name") or "spotter"),
            region=merged.get("region"),
            build_dir=str(build.get("build_dir") or ".aws-sam/build"),
            parameter_overrides=dict(parse_parameter(p) for p in pairs),
        )


def parse_parameter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    # sam deploy takes Key=Value pairs separated by spaces: a value with a space or a quote would split.
    if not sep or not re.fullmatch(r"[A-Za-z0-9]+", key) or re.search(r"[\s\"']", value):
        raise DeployError(f"{text!r}: a parameter is Key=Value, with no spaces or quotes in the value")
    return key, value


@dataclass
class Context:
    """Where and how the program acts: the checkout, the AWS session, the command runner, the prompter, stdout."""

    root: Path
    session: Any
    runner: Runner
    prompter: Prompter
    out: TextIO
    sam: str = "sam"
    profile: str | None = None
    region: str = ""
    # Values no output may show (the runner redacts them); the Slack credentials join once read.
    secrets: set[str] = field(default_factory=set)
    config: SamConfig = field(init=False)

    def __post_init__(self) -> None:
        self.config = SamConfig.load(self.root / SAMCONFIG)

    def client(self, service: str) -> Any:
        return self.session.client(
            service, region_name=self.region, config=S3_CONFIG if service == "s3" else RETRY_CONFIG
        )

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def sam_env(self) -> dict[str, str]:
        """The environment sam runs in: ours, less the Slack credentials (it has no use for them)."""
        env = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, SIGNING_SECRET_ENV)}
        env.setdefault("SAM_CLI_TELEMETRY", "0")
        return env

    def sam_argv(self, *args: str) -> list[str]:
        argv = [self.sam, *args]
        return [*argv, "--profile", self.profile] if self.profile else argv


# -- prerequisites --------------------------------------------------------------------------------------------


def check_prerequisites(ctx: Context, region: str | None, *, need_sam: bool) -> str:
    """The SAM CLI runs, the credentials work, a region is set; returns the account id."""
    if need_sam:
        ctx.runner.run([ctx.sam, "--version"], cwd=ctx.root, env=ctx.sam_env())
    ctx.region = region or ctx.config.region or ctx.session.region_name or ""
    if not ctx.region:
        raise DeployError("no AWS region: set `region` in samconfig.toml, pass --region, or export AWS_REGION")
    try:
        identity = ctx.client("sts").get_caller_identity()
    except (BotoCoreError, ClientError) as e:
        raise DeployError(
            f"AWS credentials do not work ({e}): run `aws configure` or `aws sso login`, or export AWS_PROFILE"
        ) from None
    ambient = ctx.session.region_name
    note = (
        f" (your environment says {ambient}; samconfig.toml or --region chose this one)"
        if ambient and ambient != ctx.region
        else ""
    )
    ctx.say(f"AWS account {identity['Account']} as {identity['Arn']}, region {ctx.region}{note}")
    return str(identity["Account"])


def check_spot_quota(ctx: Context) -> None:
    """Warn when the account's G/VT spot quota cannot hold even the smallest GPU type (it is 0 in new accounts)."""
    quota = QUOTAS[("spot", "G")]
    try:
        value = ctx.client("service-quotas").get_service_quota(ServiceCode="ec2", QuotaCode=quota.code)["Quota"][
            "Value"
        ]
    except (BotoCoreError, ClientError) as e:
        ctx.say(
            f"note: could not read the EC2 quota {quota.name!r} ({type(e).__name__}): see that it is at least "
            f"{SMALLEST_GPU_VCPUS} vCPUs (8 for a g4dn.2xlarge) at {quota_console_url(ctx.region, quota)}"
        )
        return
    if value < SMALLEST_GPU_VCPUS:
        ctx.say(
            f"warning: {quota.name} is {value:g} vCPUs in {ctx.region}: no spot GPU instance can start. Request 8 or "
            f"more at {quota_console_url(ctx.region, quota)} (README: Deploy to your AWS account)."
        )


# -- the stack ------------------------------------------------------------------------------------------------


def describe_stack(ctx: Context) -> dict[str, Any] | None:
    try:
        stacks = ctx.client("cloudformation").describe_stacks(StackName=ctx.config.stack_name)["Stacks"]
    except ClientError as e:
        if "does not exist" in str(e):
            return None
        raise
    return dict(stacks[0]) if stacks else None


def outputs(stack: Mapping[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def stack_parameters(stack: Mapping[str, Any] | None) -> dict[str, str]:
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in (stack or {}).get("Parameters", [])}


def resource_id(ctx: Context, logical_id: str) -> str:
    detail = ctx.client("cloudformation").describe_stack_resource(
        StackName=ctx.config.stack_name, LogicalResourceId=logical_id
    )["StackResourceDetail"]
    return str(detail["PhysicalResourceId"])


def wait_for_stack(ctx: Context, waiter_name: str) -> None:
    waiter = ctx.client("cloudformation").get_waiter(waiter_name)
    waiter.wait(
        StackName=ctx.config.stack_name, WaiterConfig={"Delay": STACK_POLL_SECONDS, "MaxAttempts": STACK_MAX_POLLS}
    )


def ready_stack(ctx: Context) -> dict[str, Any] | None:
    """The stack as it stands, None if there is none; a first creation that rolled back is removed first."""
    stack = describe_stack(ctx)
    if stack is None:
        return None
    status = str(stack["StackStatus"])
    if status.endswith(BUSY_SUFFIX):
        raise DeployError(f"stack {ctx.config.stack_name} is {status}: wait until it settles, then run this again")
    if status == "ROLLBACK_COMPLETE":
        # A failed first creation leaves an empty stack that can only be deleted (retained resources stay).
        ctx.say(f"stack {ctx.config.stack_name} is ROLLBACK_COMPLETE (its first creation failed): deleting it")
        ctx.client("cloudformation").delete_stack(StackName=ctx.config.stack_name)
        wait_for_stack(ctx, "stack_delete_complete")
        return None
    return stack


# -- parameters -----------------------------------------------------------------------------------------------


def default_vpc(ctx: Context) -> str | None:
    vpcs = ctx.client("ec2").describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    return str(vpcs[0]["VpcId"]) if vpcs else None


def subnets_of(ctx: Context, vpc_id: str) -> list[dict[str, Any]]:
    found = ctx.client("ec2").describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    return sorted(found, key=lambda s: (s["AvailabilityZone"], s["SubnetId"]))


def one_per_zone(subnets: Sequence[Mapping[str, Any]]) -> list[str]:
    """A subnet per Availability Zone, those that give instances a public address first (they need egress)."""
    chosen: dict[str, str] = {}
    for subnet in sorted(subnets, key=lambda s: not s.get("MapPublicIpOnLaunch", False)):
        chosen.setdefault(subnet["AvailabilityZone"], subnet["SubnetId"])
    return [chosen[zone] for zone in sorted(chosen)]


def network(ctx: Context, known: dict[str, str]) -> dict[str, str]:
    """VpcId and SubnetIds: as known, else asked, the default VPC and a subnet per zone offered; checked in EC2."""
    how = "pass --vpc-id/--subnet-ids or add VpcId=…, SubnetIds=… to samconfig.toml's parameter_overrides"
    vpc = known.get("VpcId") or ctx.prompter.ask("VpcId", "VPC for the training instances", default_vpc(ctx), how=how)
    if not vpc:
        raise DeployError(f"no VPC given and the region has no default VPC ({how})")
    subnet_ids = known.get("SubnetIds")
    if not subnet_ids:
        candidates = subnets_of(ctx, vpc)
        for s in candidates:
            public = "public IPs" if s.get("MapPublicIpOnLaunch") else "no public IPs"
            ctx.say(f"  {s['SubnetId']}  {s['AvailabilityZone']}  {s.get('CidrBlock', '')}  {public}")
        offered = ",".join(one_per_zone(candidates)) or None
        subnet_ids = ctx.prompter.ask(
            "SubnetIds", "Subnets for the training instances (comma-separated, one per zone)", offered, how=how
        )
    wanted = [s.strip() for s in subnet_ids.split(",") if s.strip()]
    if not wanted:
        raise DeployError(f"no subnets given ({how})")
    try:
        found = ctx.client("ec2").describe_subnets(SubnetIds=wanted)["Subnets"]
    except ClientError as e:
        raise DeployError(f"subnets {', '.join(wanted)}: {e}") from None
    elsewhere = sorted(s["SubnetId"] for s in found if s["VpcId"] != vpc)
    if elsewhere:
        raise DeployError(f"subnets {', '.join(elsewhere)} are not in {vpc}")
    private = sorted(s["SubnetId"] for s in found if not s.get("MapPublicIpOnLaunch"))
    if private:
        ctx.say(
            f"note: {', '.join(private)} give instances no public IP: they reach S3, EventBridge and the package "
            "mirrors only through a NAT gateway (or VPC endpoints and a mirror)"
        )
    return {"VpcId": vpc, "SubnetIds": ",".join(wanted)}


def agent_version() -> str:
    """The agent package's version: the project's, and the package's sha256 so each build has a key of its own
    (an instance booting while a deploy replaces the package never fetches bytes that fail its check)."""
    with tempfile.TemporaryDirectory() as tmp:
        _, sha256 = build_agent(Path(tmp))
    return _versioned(sha256)


def _versioned(sha256: str) -> str:
    return f"{importlib.metadata.version('spotter')}-{sha256[:12]}"


# -- Slack credentials ----------------------------------------------------------------------------------------


def secret_is_set(ctx: Context, secret_id: str) -> bool:
    try:
        raw = ctx.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False  # the template creates the secret without a value
        raise
    try:
        SlackCredentials.model_validate_json(raw)
    except ValueError:
        return False
    return True


def slack_credentials(ctx: Context, manifest: Path) -> SlackCredentials | None:
    """The Slack app's credentials from the environment, or asked; None when they are to be given later."""
    token, signing = os.environ.get(TOKEN_ENV, "").strip(), os.environ.get(SIGNING_SECRET_ENV, "").strip()
    how = f"export {TOKEN_ENV} and {SIGNING_SECRET_ENV}"
    if not (token and signing):
        shown = manifest.relative_to(ctx.root)
        ctx.say()
        ctx.say(
            "The Slack app, if it does not exist yet: https://api.slack.com/apps → Create New App → From a manifest"
        )
        ctx.say(f"→ your workspace → paste {shown} (YAML) → Create; then Install to Workspace → Allow.")
    for _ in range(SECRET_TRIES):
        if not token:
            token = ctx.prompter.ask_secret(
                "SlackBotToken",
                "Bot User OAuth Token, xoxb-… (OAuth & Permissions; Enter to give it later with `make deploy`)",
                how=how,
            )
            if not token:
                return None
        if token.startswith("xoxb-"):
            break
        ctx.say("That is not a bot token: it starts with xoxb- (OAuth & Permissions → Bot User OAuth Token).")
        token = ""
    else:
        raise DeployError("no bot token given (it starts with xoxb-)")
    for _ in range(SECRET_TRIES):
        if not signing:
            signing = ctx.prompter.ask_secret("SlackSigningSecret", "Signing Secret (Basic Information)", how=how)
        if re.fullmatch(r"\S+", signing):
            break
        ctx.say("The signing secret is one word (Basic Information → App Credentials → Signing Secret).")
        signing = ""
    else:
        raise DeployError("no signing secret given")
    ctx.secrets |= {token, signing}
    return SlackCredentials(bot_token=SecretStr(token), signing_secret=SecretStr(signing))


def put_slack_secret(ctx: Context, secret_id: str, credentials: SlackCredentials) -> None:
    value = {
        "bot_token": credentials.bot_token.get_secret_value(),
        "signing_secret": credentials.signing_secret.get_secret_value(),
    }
    ctx.client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=json.dumps(value))
    ctx.say(f"Slack credentials stored in {secret_id}")


# -- deploy ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployOptions:
    region: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    replace_slack_secret: bool = False


def deploy(ctx: Context, options: DeployOptions) -> None:
    check_prerequisites(ctx, options.region, need_sam=True)
    stack = ready_stack(ctx)
    deployed = stack_parameters(stack)

    values = {**ctx.config.parameter_overrides, **options.parameters}
    known = {k: values.get(k) or deployed.get(k, "") for k in NETWORK_PARAMETERS}
    values |= network(ctx, {k: v for k, v in known.items() if v})
    values[AGENT_PARAMETER] = agent_version()
    check_spot_quota(ctx)

    ctx.runner.run([ctx.sam, "build", "--config-file", str(ctx.root / SAMCONFIG)], cwd=ctx.root, env=ctx.sam_env())
    template = ctx.root / ctx.config.build_dir / "template.yaml"
    if not template.is_file():
        raise DeployError(f"sam build left no {template}")

    agent_key = layout.agent_package(values[AGENT_PARAMETER])
    bucket = outputs(stack).get("Bucket") if stack else None
    if bucket:  # the new key is there before the launcher is told about it
        publish(ctx, bucket, agent_key)
    ctx.runner.run(
        ctx.sam_argv(
            "deploy",
            "--config-file",
            str(ctx.root / SAMCONFIG),
            "--template-file",
            str(template),
            "--stack-name",
            ctx.config.stack_name,
            "--region",
            ctx.region,
            "--parameter-overrides",
            *(f"{k}={v}" for k, v in sorted(values.items())),
        ),
        cwd=ctx.root,
        env=ctx.sam_env(),
    )
    stack = describe_stack(ctx)
    found = outputs(stack or {})
    if not {"Bucket", "SlackRequestUrl"} <= set(found):
        raise DeployError(f"stack {ctx.config.stack_name} has no Bucket and SlackRequestUrl outputs after sam deploy")
    if not bucket:
        publish(ctx, found["Bucket"], agent_key)

    # The credentials last: the secret exists now, and whoever creates the app has its Request URL.
    request_url = f"{found['SlackRequestUrl'].rstrip('/')}/{EVENTS_PATH}"
    manifest = write_manifest(ctx.root, request_url)
    ctx.say(f"Slack Request URL: {request_url} (in {manifest.relative_to(ctx.root)})")
    secret_id = resource_id(ctx, SECRET_RESOURCE)
    secret_set = secret_is_set(ctx, secret_id)
    if options.replace_slack_secret or not secret_set:
        credentials = slack_credentials(ctx, manifest)
        if credentials is not None:
            put_slack_secret(ctx, secret_id, credentials)
            secret_set = True
    next_steps(ctx, request_url, manifest, found["Bucket"], secret_set=secret_set)


def publish(ctx: Context, bucket: str, key: str) -> None:
    sha256 = publish_agent(bucket, key, ctx.client("s3"))
    if key != layout.agent_package(_versioned(sha256)):
        raise DeployError(f"the agent package changed while deploying (now sha256={sha256}): run this again")
    ctx.say(f"agent package: s3://{bucket}/{key} sha256={sha256}")


def write_manifest(root: Path, request_url: str) -> Path:
    """The app manifest with this deployment's Request URL, ready to paste into Slack."""
    lines = (root / MANIFEST).read_text().replace(MANIFEST_URL, request_url).splitlines(keepends=True)
    body = "".join(itertools.dropwhile(lambda line: line.startswith("#"), lines))  # the header says how to fill it
    target = root / "build" / MANIFEST
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f"# {MANIFEST} for {request_url} (written by make deploy)\n{body}")
    return target


def next_steps(ctx: Context, request_url: str, manifest: Path, bucket: str, *, secret_set: bool) -> None:
    shown = manifest.relative_to(ctx.root)
    ctx.say()
    ctx.say(f"Spotter is deployed: stack {ctx.config.stack_name} in {ctx.region}, bucket {bucket}.")
    ctx.say(f"Slack Request URL: {request_url}")
    ctx.say("Next:")
    if not secret_set:
        ctx.say(f"  1. Create the Slack app from {shown} and install it (README: Deploy to your AWS account).")
        ctx.say("  2. Run `make deploy` again: it asks for the app's Bot User OAuth Token and Signing Secret.")
        return
    ctx.say("  1. The app's Slash Commands → /train and Interactivity & Shortcuts use the Request URL above")
    ctx.say(f"     (set when the app was made from {shown}; after a new stack, paste it into both).")
    ctx.say("  2. In a channel: /invite @Spotter, then /train help and /train shapes yolov8n.")


# -- destroy --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DestroyOptions:
    region: str | None = None
    delete_data: bool = False
    terminate_instances: bool = False
    yes: bool = False


def live_instances(ctx: Context) -> list[str]:
    """Training instances of this stack (they run with its instance profile) that are not terminated."""
    profile = resource_id(ctx, PROFILE_RESOURCE)
    pages = (
        ctx.client("ec2")
        .get_paginator("describe_instances")
        .paginate(Filters=[{"Name": "instance-state-name", "Values": list(LIVE_INSTANCE_STATES)}])
    )
    return sorted(
        i["InstanceId"]
        for page in pages
        for reservation in page["Reservations"]
        for i in reservation["Instances"]
        if str((i.get("IamInstanceProfile") or {}).get("Arn", "")).endswith(f"/{profile}")
    )


def empty_bucket(ctx: Context, bucket: str) -> int:
    s3 = ctx.client("s3")
    deleted = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        batch = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        if batch:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            deleted += len(batch)
    return deleted


def object_count(ctx: Context, bucket: str) -> int:
    pages = ctx.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sum(page.get("KeyCount", 0) for page in pages)


def delete_stack(ctx: Context, keep: list[str]) -> None:
    """Delete the stack. The template retains the bucket; a stack deployed before it did fails on a bucket that
    holds objects, and is then deleted again with that bucket retained."""
    cf = ctx.client("cloudformation")
    cf.delete_stack(StackName=ctx.config.stack_name)
    try:
        wait_for_stack(ctx, "stack_delete_complete")
        return
    except WaiterError:
        stack = describe_stack(ctx)
        if stack is None:
            return
    failed = sorted(
        r["LogicalResourceId"]
        for r in cf.describe_stack_resources(StackName=ctx.config.stack_name)["StackResources"]
        if r["ResourceStatus"] == "DELETE_FAILED"
    )
    if not failed or set(failed) - set(keep):
        raise DeployError(f"stack {ctx.config.stack_name} is {stack['StackStatus']}: {failed} could not be deleted")
    cf.delete_stack(StackName=ctx.config.stack_name, RetainResources=failed)
    wait_for_stack(ctx, "stack_delete_complete")


def forget_secret(ctx: Context, secret_id: str) -> None:
    """A secret the stack left scheduled for deletion would block the next deploy of the same stack name."""
    sm = ctx.client("secretsmanager")
    try:
        if sm.describe_secret(SecretId=secret_id).get("DeletedDate"):
            sm.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise


def destroy(ctx: Context, options: DestroyOptions) -> None:
    account = check_prerequisites(ctx, options.region, need_sam=False)
    name = ctx.config.stack_name
    stack = describe_stack(ctx)
    if stack is None:
        ctx.say(f"no stack {name} in {ctx.region}: nothing to delete")
        return
    if str(stack["StackStatus"]).endswith(BUSY_SUFFIX):
        raise DeployError(f"stack {name} is {stack['StackStatus']}: wait until it settles, then run this again")
    if not options.yes:
        what = "and all its data" if options.delete_data else "(its bucket and data stay)"
        answer = ctx.prompter.ask(
            "confirm", f"Delete stack {name} in account {account}, {ctx.region} {what}? Type its name", how="pass --yes"
        )
        if answer != name:
            raise DeployError("not confirmed: nothing deleted")
    bucket = resource_id(ctx, BUCKET_RESOURCE)
    secret_id = resource_id(ctx, SECRET_RESOURCE)
    running = live_instances(ctx)
    if running and not options.terminate_instances:
        raise DeployError(
            f"training instances still run: {', '.join(running)}. Cancel their jobs (/train cancel) or pass "
            "--terminate-instances; the stack's security group cannot go while they use it"
        )
    if running:
        ec2 = ctx.client("ec2")
        ec2.terminate_instances(InstanceIds=running)
        ec2.get_waiter("instance_terminated").wait(
            InstanceIds=running, WaiterConfig={"Delay": INSTANCE_POLL_SECONDS, "MaxAttempts": 60}
        )
        ctx.say(f"terminated {', '.join(running)}")
    if options.delete_data:
        ctx.say(f"deleted {empty_bucket(ctx, bucket)} objects from s3://{bucket}")
    delete_stack(ctx, keep=[] if options.delete_data else [BUCKET_RESOURCE])
    forget_secret(ctx, secret_id)
    ctx.say(f"stack {name} deleted from {ctx.region}")
    bucket_left = bucket_exists(ctx, bucket)
    if bucket_left and options.delete_data:
        ctx.client("s3").delete_bucket(Bucket=bucket)
        ctx.say(f"bucket {bucket} deleted")
    elif bucket_left:
        ctx.say(
            f"kept s3://{bucket} ({object_count(ctx, bucket)} object(s): weights, datasets, logs); a new stack makes "
            "a new bucket. To delete this one later: S3 console → the bucket → Empty, then Delete (it keeps object "
            "versions, which `aws s3 rb --force` leaves behind)."
        )


def bucket_exists(ctx: Context, bucket: str) -> bool:
    try:
        ctx.client("s3").head_bucket(Bucket=bucket)
    except ClientError:
        return False
    return True


# -- command line ---------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", help="AWS profile (default: the usual credential chain)")
    common.add_argument("--region", help="AWS region (default: samconfig.toml's, then your environment's)")
    commands = parser.add_subparsers(dest="command", required=True)
    dep = commands.add_parser(
        "deploy", parents=[common], help="build, deploy, publish the agent, store the Slack credentials"
    )
    dep.add_argument("--sam", default=os.environ.get("SAM", "sam"), help="the SAM CLI (make passes .venv/sam's)")
    dep.add_argument("--vpc-id")
    dep.add_argument("--subnet-ids", help="comma-separated, one per Availability Zone")
    dep.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE", help="a template parameter")
    dep.add_argument("--replace-slack-secret", action="store_true", help="ask for the Slack credentials again")
    des = commands.add_parser("destroy", parents=[common], help="delete the stack (the bucket and its data stay)")
    des.add_argument("--delete-data", action="store_true", help="empty and delete the bucket too")
    des.add_argument("--terminate-instances", action="store_true", help="terminate training instances still up")
    des.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def main(
    argv: list[str] | None = None,
    *,
    root: Path = ROOT,
    session_factory: Callable[[str | None], Any] | None = None,
    runner: Runner | None = None,
    prompter: Prompter | None = None,
    out: TextIO | None = None,
) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["deploy", *argv]  # deploy is what the bare command does
    args = _parser().parse_args(argv)
    out = out or sys.stdout
    secrets: set[str] = set()
    make_session = session_factory or (lambda profile: boto3.session.Session(profile_name=profile))
    ctx = Context(
        root=root,
        session=make_session(args.profile),
        runner=runner or SubprocessRunner(out, secrets),
        prompter=prompter or TerminalPrompter(out, interactive=sys.stdin.isatty()),
        out=out,
        sam=getattr(args, "sam", None) or os.environ.get("SAM", "sam"),
        profile=args.profile,
        secrets=secrets,
    )
    try:
        with _terminate_as_exit():
            if args.command == "destroy":
                destroy(ctx, DestroyOptions(args.region, args.delete_data, args.terminate_instances, args.yes))
            else:
                parameters = dict(parse_parameter(p) for p in getattr(args, "parameter", []))
                if getattr(args, "vpc_id", None):
                    parameters["VpcId"] = args.vpc_id
                if getattr(args, "subnet_ids", None):
                    parameters["SubnetIds"] = args.subnet_ids
                deploy(ctx, DeployOptions(args.region, parameters, getattr(args, "replace_slack_secret", False)))
    except DeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError, WaiterError) as e:
        print(f"error: AWS said: {e}", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so a running sam is taken down with us."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
