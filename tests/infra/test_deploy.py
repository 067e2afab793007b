"""`make deploy` / `make destroy` (infra.deploy) against moto and a recording `sam`, and the functions' build inputs.

The recording sam answers `sam deploy` as CloudFormation would for what this program reads back: a stack with the
template's parameters, the Bucket and SlackRequestUrl outputs, an instance profile, and the Slack secret without a
value. moto's CloudFormation cannot hold an AWS::SecretsManager::Secret, so the stand-in stack names the secret
through an SSM parameter of the same name (the program only reads the resource's physical id).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from samtranslator.yaml_helper import yaml_parse

from infra import deploy as deploy_module
from infra.deploy import DeployError, SubprocessRunner, main
from infra.functions import LOCK, PYPROJECT, check_lock, read_lock, requirements
from infra.package import FILENAME

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "xoxb-1111-2222-secret-token"  # pragma: allowlist secret
SIGNING = "8f14e45fceea167a5a36dedd4bea2543"  # pragma: allowlist secret
FUNCTION_URL = "https://abc123.lambda-url.us-east-1.on.aws/"
REQUEST_URL = "https://abc123.lambda-url.us-east-1.on.aws/slack/events"

STAND_IN_STACK = {
    "Parameters": {
        "VpcId": {"Type": "String"},
        "SubnetIds": {"Type": "String"},
        "AgentVersion": {"Type": "String", "Default": "0.1.0"},
        "MaxConcurrentInstances": {"Type": "String", "Default": "4"},
        "MaxDailySpendUsd": {"Type": "String", "Default": "100"},
    },
    "Resources": {
        # As in the template: it outlives the stack unless --delete-data empties it.
        "ArtifactsBucket": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain"},
        "SlackSecret": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {"Name": {"Fn::Sub": "${AWS::StackName}/slack"}, "Type": "String", "Value": "stand-in"},
        },
        "InstanceRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            },
        },
        "InstanceProfile": {"Type": "AWS::IAM::InstanceProfile", "Properties": {"Roles": [{"Ref": "InstanceRole"}]}},
    },
    "Outputs": {"SlackRequestUrl": {"Value": FUNCTION_URL}, "Bucket": {"Value": {"Ref": "ArtifactsBucket"}}},
}


def _flag(argv: Sequence[str], name: str) -> str:
    return argv[list(argv).index(name) + 1]


def _overrides(argv: Sequence[str]) -> dict[str, str]:
    start = list(argv).index("--parameter-overrides") + 1
    return dict(p.split("=", 1) for p in argv[start:])


@dataclass
class RecordingSam:
    """`sam` as the program runs it: each call recorded; build leaves a template, deploy makes the stand-in stack."""

    calls: list[list[str]] = field(default_factory=list)
    envs: list[dict[str, str]] = field(default_factory=list)
    # For each deploy: the agent keys already in the stack's bucket when it ran.
    agent_keys_at_deploy: list[list[str]] = field(default_factory=list)

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> None:
        self.calls.append(list(argv))
        self.envs.append(dict(env))
        command = argv[1]
        if command == "build":
            config = tomllib.loads(Path(_flag(argv, "--config-file")).read_text())
            build_dir = cwd / config["default"]["build"]["parameters"]["build_dir"]
            build_dir.mkdir(parents=True, exist_ok=True)
            (build_dir / "template.yaml").write_text("Resources: {}\n")
        elif command == "deploy":
            self._deploy(argv)

    def _deploy(self, argv: Sequence[str]) -> None:
        session = boto3.session.Session(region_name=_flag(argv, "--region"))
        cf, s3 = session.client("cloudformation"), session.client("s3")
        name = _flag(argv, "--stack-name")
        parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in _overrides(argv).items()]
        try:
            stack = cf.describe_stacks(StackName=name)["Stacks"][0]
        except cf.exceptions.ClientError:
            stack = None
        if stack is None:
            self.agent_keys_at_deploy.append([])
            cf.create_stack(StackName=name, TemplateBody=json.dumps(STAND_IN_STACK), Parameters=parameters)
            session.client("secretsmanager").create_secret(Name=f"{name}/slack")
            return
        bucket = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["Bucket"]
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="agent/").get("Contents", [])
        self.agent_keys_at_deploy.append([o["Key"] for o in listed])
        cf.update_stack(StackName=name, TemplateBody=json.dumps(STAND_IN_STACK), Parameters=parameters)

    def commands(self) -> list[str]:
        return [call[1] for call in self.calls]

    def deploy_argv(self) -> list[str]:
        return [call for call in self.calls if call[1] == "deploy"][-1]


@dataclass
class ScriptedPrompter:
    """Answers from a table; a question not in it fails the test (the program asked for something it had)."""

    answers: dict[str, str] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    defaults: dict[str, str | None] = field(default_factory=dict)

    def ask(self, key: str, question: str, default: str | None = None, *, how: str) -> str:
        self.asked.append(key)
        self.defaults[key] = default
        assert key in self.answers, f"asked for {key} ({question}), which it should have found"
        return self.answers[key] or (default or "")

    def ask_secret(self, key: str, question: str, *, how: str) -> str:
        self.asked.append(key)
        assert key in self.answers, f"asked for {key} ({question}), which it should have found"
        return self.answers[key]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """What the program reads from a checkout: samconfig.toml and the app manifest (sam's part is recorded)."""
    for name in ("samconfig.toml", "slack-manifest.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


@pytest.fixture
def no_slack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(deploy_module.TOKEN_ENV, raising=False)
    monkeypatch.delenv(deploy_module.SIGNING_SECRET_ENV, raising=False)


@dataclass
class Run:
    code: int
    out: str


def run(checkout: Path, sam: RecordingSam, prompter: ScriptedPrompter, *argv: str) -> Run:
    out = io.StringIO()
    code = main(
        list(argv),
        root=checkout,
        session_factory=lambda profile: boto3.session.Session(region_name="us-east-1"),
        runner=sam,
        prompter=prompter,
        out=out,
    )
    return Run(code, out.getvalue())


def stack_resource(logical_id: str) -> str:
    cf = boto3.client("cloudformation", region_name="us-east-1")
    detail = cf.describe_stack_resource(StackName="spotter", LogicalResourceId=logical_id)["StackResourceDetail"]
    return str(detail["PhysicalResourceId"])


def default_network() -> tuple[str, list[str]]:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    by_zone = sorted((s["AvailabilityZone"], s["SubnetId"]) for s in subnets)
    return vpc, [subnet for _, subnet in by_zone]


FIRST_ANSWERS = {"VpcId": "", "SubnetIds": "", "SlackBotToken": TOKEN, "SlackSigningSecret": SIGNING}


@pytest.fixture
def deployed(aws: str, checkout: Path, no_slack_env: None) -> Iterator[RecordingSam]:
    sam = RecordingSam()
    done = run(checkout, sam, ScriptedPrompter(dict(FIRST_ANSWERS)), "deploy", "--sam", "fake-sam")
    assert done.code == 0, done.out
    yield sam


# -- samconfig.toml and the template's build settings --------------------------------------------------------


def test_samconfig_deploys_the_built_template_with_iam_capability() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]
    shared = config["global"]["parameters"]
    build = config["build"]["parameters"]
    deploy = config["deploy"]["parameters"]
    assert shared["stack_name"] == "spotter" and re.fullmatch(r"[a-z]{2}-[a-z]+-\d", shared["region"])
    assert config["validate"]["parameters"]["lint"] is True
    # In place: a scratch copy would carry .venv for each function.
    assert build["build_in_source"] is True
    assert deploy["template_file"] == f"{build['build_dir']}/template.yaml"
    assert not Path(build["build_dir"]).is_absolute() and build["build_dir"].startswith("build/")  # git-ignored
    assert deploy["resolve_s3"] is True and deploy["confirm_changeset"] is False
    assert deploy["fail_on_empty_changeset"] is False  # a deploy with nothing new still publishes and prints
    # Named IAM resources would need CAPABILITY_NAMED_IAM as well.
    sam = yaml_parse((ROOT / "template.yaml").read_text())
    named = [
        name
        for name, r in sam["Resources"].items()
        if r["Type"].startswith("AWS::IAM::") and {"RoleName", "InstanceProfileName"} & set(r.get("Properties", {}))
    ]
    assert deploy["capabilities"] == ("CAPABILITY_NAMED_IAM CAPABILITY_IAM" if named else "CAPABILITY_IAM")
    assert deploy_module.SamConfig.load(ROOT / "samconfig.toml").parameter_overrides == {}


def test_every_function_builds_through_the_makefile() -> None:
    sam = yaml_parse((ROOT / "template.yaml").read_text())
    assert sam["Globals"]["Function"]["CodeUri"] == "."  # the directory holding the Makefile
    assert sam["Globals"]["Function"]["Runtime"] == "python3.11"
    assert sam["Globals"]["Function"]["Architectures"] == ["x86_64"]
    functions = [n for n, r in sam["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]
    assert functions
    for name in functions:
        assert sam["Resources"][name].get("Metadata") == {"BuildMethod": "makefile"}, name
        assert name.endswith("Function"), f"{name}: the Makefile's build-%Function target builds it only so named"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^build-%Function:", makefile, re.MULTILINE)


def test_the_lock_matches_pyproject() -> None:
    assert check_lock() == []
    listed, pins = read_lock()
    assert sorted(listed) == sorted(requirements())
    assert {"slack-bolt", "slack-sdk", "aws-lambda-powertools", "matplotlib", "pydantic", "boto3"} <= set(pins)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: t.replace('    "tzdata>=2024.1",', '    "tzdata>=2024.1",\n    "pydantic-settings>=2",'), "new"),
        (lambda t: t.replace('"slack-bolt==1.30.0"', '"slack-bolt==1.31.0"'), "does not satisfy"),
    ],
    ids=["a new control dependency", "a changed pin"],
)
def test_a_pyproject_change_without_a_new_lock_is_reported(tmp_path: Path, edit: Any, problem: str) -> None:
    changed = edit(PYPROJECT.read_text())
    assert changed != PYPROJECT.read_text()
    (tmp_path / "pyproject.toml").write_text(changed)
    problems = check_lock(tmp_path / "pyproject.toml", LOCK)
    assert problems and any(problem in p and "make lock" in p for p in problems), problems


# -- deploy ----------------------------------------------------------------------------------------------------


def test_first_deploy_asks_for_the_network_and_slack_then_builds_deploys_publishes(
    deployed: RecordingSam, checkout: Path
) -> None:
    sam = deployed
    assert sam.commands() == ["--version", "build", "deploy"]
    assert sam.calls[1] == ["fake-sam", "build", "--config-file", str(checkout / "samconfig.toml")]
    vpc, subnets = default_network()
    argv = sam.deploy_argv()
    version = _overrides(argv)["AgentVersion"]
    assert re.fullmatch(r"0\.1\.0-[0-9a-f]{12}", version)
    assert argv == [
        "fake-sam",
        "deploy",
        "--config-file",
        str(checkout / "samconfig.toml"),
        "--template-file",
        str(checkout / "build" / "sam" / "template.yaml"),
        "--stack-name",
        "spotter",
        "--region",
        "us-east-1",
        "--parameter-overrides",
        f"AgentVersion={version}",
        f"SubnetIds={','.join(subnets)}",
        f"VpcId={vpc}",
    ]
    # The agent package is in the new stack's bucket under the key the template builds from AgentVersion.
    s3 = boto3.client("s3", region_name="us-east-1")
    bucket = stack_resource("ArtifactsBucket")
    key = f"agent/{version}/{FILENAME}"
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["sha256"].startswith(version.rsplit("-", 1)[1])
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    # The Slack credentials are in the stack's secret.
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    stored = json.loads(secrets.get_secret_value(SecretId=stack_resource("SlackSecret"))["SecretString"])
    assert stored == {"bot_token": TOKEN, "signing_secret": SIGNING}
    manifest = (checkout / "build" / "slack-manifest.yaml").read_text()
    assert REQUEST_URL in manifest and "<function-url>" not in manifest


def test_first_deploy_offers_the_default_vpc_and_a_subnet_per_zone(
    aws: str, checkout: Path, no_slack_env: None
) -> None:
    prompter = ScriptedPrompter(dict(FIRST_ANSWERS))
    done = run(checkout, RecordingSam(), prompter, "deploy")
    assert done.code == 0, done.out
    assert prompter.asked == ["VpcId", "SubnetIds", "SlackBotToken", "SlackSigningSecret"]
    vpc, subnets = default_network()
    assert prompter.defaults == {"VpcId": vpc, "SubnetIds": ",".join(subnets)}
    assert f"Slack Request URL: {REQUEST_URL}" in done.out
    assert "build/slack-manifest.yaml" in done.out


def test_the_slack_credentials_never_show(aws: str, checkout: Path, no_slack_env: None) -> None:
    sam = RecordingSam()
    done = run(checkout, sam, ScriptedPrompter(dict(FIRST_ANSWERS)), "deploy")
    assert done.code == 0, done.out
    for secret in (TOKEN, SIGNING):
        assert secret not in done.out
        assert not [call for call in sam.calls if any(secret in arg for arg in call)]
        assert not [env for env in sam.envs if any(secret in value for value in env.values())]


def test_a_redeploy_asks_nothing_and_keeps_the_secret(deployed: RecordingSam, checkout: Path) -> None:
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    secret_id = stack_resource("SlackSecret")
    versions = [v["VersionId"] for v in secrets.list_secret_version_ids(SecretId=secret_id)["Versions"]]
    sam = RecordingSam()
    prompter = ScriptedPrompter()  # any question fails
    done = run(checkout, sam, prompter, "deploy")
    assert done.code == 0, done.out
    assert prompter.asked == []
    vpc, subnets = default_network()
    overrides = _overrides(sam.deploy_argv())
    assert overrides["VpcId"] == vpc and overrides["SubnetIds"] == ",".join(subnets)  # from the stack
    # The bucket exists now: the package is published before sam deploy points the launcher at it.
    assert sam.agent_keys_at_deploy == [[f"agent/{overrides['AgentVersion']}/{FILENAME}"]]
    assert [v["VersionId"] for v in secrets.list_secret_version_ids(SecretId=secret_id)["Versions"]] == versions
    assert "Slash Commands" in done.out and "/invite @Spotter" in done.out


def test_replace_slack_secret_asks_again(deployed: RecordingSam, checkout: Path) -> None:
    prompter = ScriptedPrompter({"SlackBotToken": "xoxb-new-token", "SlackSigningSecret": "f" * 32})
    done = run(checkout, RecordingSam(), prompter, "deploy", "--replace-slack-secret")
    assert done.code == 0, done.out
    assert prompter.asked == ["SlackBotToken", "SlackSigningSecret"]
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    stored = json.loads(secrets.get_secret_value(SecretId=stack_resource("SlackSecret"))["SecretString"])
    assert stored == {"bot_token": "xoxb-new-token", "signing_secret": "f" * 32}


def test_without_the_slack_app_yet_deploy_goes_on_and_says_how_to_finish(
    aws: str, checkout: Path, no_slack_env: None
) -> None:
    prompter = ScriptedPrompter({"VpcId": "", "SubnetIds": "", "SlackBotToken": ""})
    done = run(checkout, RecordingSam(), prompter, "deploy")
    assert done.code == 0, done.out
    assert prompter.asked == ["VpcId", "SubnetIds", "SlackBotToken"]
    assert "From a manifest" in done.out and "make deploy` again" in done.out
    # The next deploy asks for them (and only them).
    prompter = ScriptedPrompter({"SlackBotToken": TOKEN, "SlackSigningSecret": SIGNING})
    assert run(checkout, RecordingSam(), prompter, "deploy").code == 0
    assert prompter.asked == ["SlackBotToken", "SlackSigningSecret"]


def test_a_token_that_is_not_a_bot_token_is_asked_again_then_refused(
    aws: str, checkout: Path, no_slack_env: None
) -> None:
    prompter = ScriptedPrompter({"VpcId": "", "SubnetIds": "", "SlackBotToken": "xoxp-a-user-token"})
    done = run(checkout, RecordingSam(), prompter, "deploy")
    assert done.code == 1
    assert prompter.asked == ["VpcId", "SubnetIds"] + ["SlackBotToken"] * deploy_module.SECRET_TRIES
    assert "xoxp-a-user-token" not in done.out
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    with pytest.raises(secrets.exceptions.ResourceNotFoundException):
        secrets.get_secret_value(SecretId=stack_resource("SlackSecret"))


def test_samconfig_flags_and_environment_leave_nothing_to_ask(
    aws: str, checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    a = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    b = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.2.0/24", AvailabilityZone="us-east-1b")["Subnet"]["SubnetId"]
    config = checkout / "samconfig.toml"
    config.write_text(
        config.read_text().replace(
            "parameter_overrides = [",
            f'parameter_overrides = [\n    "VpcId={vpc}",\n    "SubnetIds={a},{b}",\n    "MaxConcurrentInstances=2",',
        )
    )
    monkeypatch.setenv(deploy_module.TOKEN_ENV, TOKEN)
    monkeypatch.setenv(deploy_module.SIGNING_SECRET_ENV, SIGNING)
    sam = RecordingSam()
    prompter = ScriptedPrompter()
    done = run(checkout, sam, prompter, "deploy", "--parameter", "MaxDailySpendUsd=50")
    assert done.code == 0, done.out
    assert prompter.asked == []
    overrides = _overrides(sam.deploy_argv())
    assert {k: v for k, v in overrides.items() if k != "AgentVersion"} == {
        "MaxConcurrentInstances": "2",
        "MaxDailySpendUsd": "50",
        "SubnetIds": f"{a},{b}",
        "VpcId": vpc,
    }
    # Subnets without public addresses get a word about egress.
    assert "give instances no public IP" in done.out
    assert all(deploy_module.TOKEN_ENV not in env for env in sam.envs)  # sam never sees the credentials
    assert TOKEN not in done.out and SIGNING not in done.out


def test_subnets_outside_the_vpc_stop_before_anything_is_built(aws: str, checkout: Path, no_slack_env: None) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    other = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    stray = ec2.create_subnet(VpcId=other, CidrBlock="10.30.1.0/24")["Subnet"]["SubnetId"]
    sam = RecordingSam()
    done = run(checkout, sam, ScriptedPrompter({"VpcId": ""}), "deploy", "--subnet-ids", stray)
    assert done.code == 1
    assert sam.commands() == ["--version"]


def test_a_bad_parameter_is_refused(aws: str, checkout: Path) -> None:
    with pytest.raises(DeployError, match="Key=Value"):
        deploy_module.parse_parameter("AllowedChannels=C1 C2")


# -- destroy ---------------------------------------------------------------------------------------------------


def test_destroy_keeps_the_bucket_and_its_data(deployed: RecordingSam, checkout: Path) -> None:
    bucket = stack_resource("ArtifactsBucket")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket=bucket, Key="jobs/persons-1/artifacts/best.weights", Body=b"w")
    done = run(checkout, RecordingSam(), ScriptedPrompter({"confirm": "spotter"}), "destroy")
    assert done.code == 0, done.out
    cf = boto3.client("cloudformation", region_name="us-east-1")
    assert [s["StackName"] for s in cf.describe_stacks()["Stacks"]] == []
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 2  # the agent and the weights
    assert f"kept s3://{bucket} (2 object(s)" in done.out


def test_destroy_with_delete_data_removes_the_bucket(deployed: RecordingSam, checkout: Path) -> None:
    bucket = stack_resource("ArtifactsBucket")
    s3 = boto3.client("s3", region_name="us-east-1")
    # Versioned, as the template makes it (moto's CloudFormation does not apply VersioningConfiguration).
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"first", b"second"):  # two versions of one key, both to go
        s3.put_object(Bucket=bucket, Key="jobs/persons-1/artifacts/best.weights", Body=body)
    s3.delete_object(Bucket=bucket, Key="jobs/persons-1/artifacts/best.weights")  # and a delete marker
    assert len(s3.list_object_versions(Bucket=bucket)["Versions"]) == 3
    done = run(checkout, RecordingSam(), ScriptedPrompter(), "destroy", "--delete-data", "--yes")
    assert done.code == 0, done.out
    names = [b["Name"] for b in boto3.client("s3", region_name="us-east-1").list_buckets()["Buckets"]]
    assert bucket not in names


def test_destroy_needs_the_stack_name_typed(deployed: RecordingSam, checkout: Path) -> None:
    done = run(checkout, RecordingSam(), ScriptedPrompter({"confirm": "yes"}), "destroy")
    assert done.code == 1
    assert stack_resource("ArtifactsBucket")  # still there


def test_destroy_stops_at_running_training_instances(deployed: RecordingSam, checkout: Path) -> None:
    iam = boto3.client("iam", region_name="us-east-1")
    profile = iam.get_instance_profile(InstanceProfileName=stack_resource("InstanceProfile"))["InstanceProfile"]
    ec2 = boto3.client("ec2", region_name="us-east-1")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, InstanceType="g4dn.xlarge", IamInstanceProfile={"Arn": profile["Arn"]}
    )["Instances"][0]["InstanceId"]
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)  # someone else's: not ours to stop or terminate

    refused = run(checkout, RecordingSam(), ScriptedPrompter(), "destroy", "--yes")
    assert refused.code == 1
    assert stack_resource("ArtifactsBucket")

    done = run(checkout, RecordingSam(), ScriptedPrompter(), "destroy", "--yes", "--terminate-instances")
    assert done.code == 0, done.out
    assert f"terminated {instance}" in done.out
    states = {
        i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
    }
    assert states.pop(instance) == "terminated"
    assert set(states.values()) == {"running"}


def test_destroy_without_a_stack_says_so(aws: str, checkout: Path) -> None:
    done = run(checkout, RecordingSam(), ScriptedPrompter(), "destroy", "--yes")
    assert done.code == 0
    assert "nothing to delete" in done.out


# -- the command runner ----------------------------------------------------------------------------------------


def test_the_runner_streams_redacts_and_reports_the_exit_code(tmp_path: Path) -> None:
    out = io.StringIO()
    runner = SubprocessRunner(out, {TOKEN})
    script = f"import sys; print('using {TOKEN}'); print('to stderr', file=sys.stderr); sys.exit(3)"
    with pytest.raises(DeployError, match="exit 3"):
        runner.run([sys.executable, "-c", script], cwd=tmp_path, env={})
    assert out.getvalue().splitlines() == ["using ****", "to stderr"]


def test_the_runner_names_the_make_target_for_a_missing_sam(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="make sam"):
        SubprocessRunner(io.StringIO()).run(["/nonexistent/sam", "--version"], cwd=tmp_path, env={})


def test_the_command_line_help_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "infra.deploy", "destroy", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0 and "--delete-data" in done.stdout
