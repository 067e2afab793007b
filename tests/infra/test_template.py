"""template.yaml: cfn-lint clean, the invariants of `python -m infra.sam check`, and that the check catches breakage.

The check runs as the command, in its own process: it imports every handler module, which should not
happen inside the test session.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


def _sam() -> dict[str, Any]:
    sam: dict[str, Any] = yaml_parse(TEMPLATE.read_text())
    return sam


def test_cfn_lint_is_clean() -> None:
    cfn_lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or shutil.which("cfn-lint")
    assert cfn_lint, "cfn-lint is installed with the dev extra"
    done = subprocess.run([cfn_lint, str(TEMPLATE)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _check(template: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.sam", "check", str(template)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_invariants_hold() -> None:
    done = _check(TEMPLATE)
    assert done.returncode == 0, done.stderr


def test_imdsv1_is_reported(tmp_path: Path) -> None:
    text = TEMPLATE.read_text()
    assert text.count("HttpTokens: required") == 1
    copy = tmp_path / "template.yaml"
    copy.write_text(text.replace("HttpTokens: required", "HttpTokens: optional"))
    done = _check(copy)
    assert done.returncode == 1
    assert "HttpTokens is 'optional', must be 'required'" in done.stderr


def _resources(sam: dict[str, Any]) -> dict[str, Any]:
    resources: dict[str, Any] = sam["Resources"]
    return resources


def _stop_on_shutdown(sam: dict[str, Any]) -> None:
    _resources(sam)["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["InstanceInitiatedShutdownBehavior"] = "stop"


def _instance_reads_the_table(sam: dict[str, Any]) -> None:
    statements = _resources(sam)["InstanceRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    statements.append({"Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": "*"})


def _instance_reads_secrets(sam: dict[str, Any]) -> None:
    statements = _resources(sam)["InstanceRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    statements.append({"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"})


def _unknown_detail_type(sam: dict[str, Any]) -> None:
    pattern = _resources(sam)["RecorderFunction"]["Properties"]["Events"]["JobEvents"]["Properties"]["Pattern"]
    pattern["detail-type"].append("Job Exploded")


def _missing_handler(sam: dict[str, Any]) -> None:
    _resources(sam)["LauncherFunction"]["Properties"]["Handler"] = "lambdas.launcher.no_such_function"


def _renamed_index(sam: dict[str, Any]) -> None:
    _resources(sam)["JobsTable"]["Properties"]["GlobalSecondaryIndexes"][0]["IndexName"] = "by-chan"


def _two_hops(sam: dict[str, Any]) -> None:
    _resources(sam)["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["MetadataOptions"][
        "HttpPutResponseHopLimit"
    ] = 2


def _plain_volume(sam: dict[str, Any]) -> None:
    data = _resources(sam)["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] = False


def _public_bucket(sam: dict[str, Any]) -> None:
    _resources(sam)["ArtifactsBucket"]["Properties"]["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] = False


def _unversioned_bucket(sam: dict[str, Any]) -> None:
    _resources(sam)["ArtifactsBucket"]["Properties"]["VersioningConfiguration"]["Status"] = "Suspended"


def _plain_http_allowed(sam: dict[str, Any]) -> None:
    del _resources(sam)["ArtifactsBucketPolicy"]


def _wildcard_write(sam: dict[str, Any]) -> None:
    statements = _resources(sam)["InstanceRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    statements.append({"Sid": "Everywhere", "Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"})


def _instance_writes_every_job(sam: dict[str, Any]) -> None:
    statements = _resources(sam)["InstanceRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    (own,) = [s for s in statements if s.get("Sid") == "WriteOwnOutputs"]
    own["Resource"] = {"Fn::Sub": "${ArtifactsBucket.Arn}/jobs/*"}


def _function_wildcard_write(sam: dict[str, Any]) -> None:
    policies = _resources(sam)["WatchdogFunction"]["Properties"]["Policies"]
    policies.append({"Statement": [{"Sid": "AnyTable", "Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"}]})


def _records_never_expire(sam: dict[str, Any]) -> None:
    del _resources(sam)["JobsTable"]["Properties"]["TimeToLiveSpecification"]


@pytest.mark.parametrize(
    "breakage, reported",
    [
        (_stop_on_shutdown, "InstanceInitiatedShutdownBehavior is 'stop'"),
        (_instance_reads_the_table, "the instance role allows dynamodb:GetItem"),
        (_instance_reads_secrets, "the instance role allows secretsmanager:GetSecretValue"),
        (_unknown_detail_type, "detail-type 'Job Exploded' is not a Spotter event"),
        (_missing_handler, "lambdas.launcher has no function no_such_function"),
        (_renamed_index, "global secondary index 'by-channel'"),
        (_two_hops, "HttpPutResponseHopLimit is 2, must be 1"),
        (_plain_volume, "an EBS volume is not Encrypted"),
        (_public_bucket, "ArtifactsBucket: PublicAccessBlockConfiguration.BlockPublicPolicy is not true"),
        (_unversioned_bucket, "ArtifactsBucket: versioning is not Enabled"),
        (_plain_http_allowed, "no bucket policy denies requests without TLS"),
        (_wildcard_write, 'Everywhere allows s3:PutObject on Resource "*"'),
        (_instance_writes_every_job, "s3:PutObject on {'Fn::Sub': '${ArtifactsBucket.Arn}/jobs/*'} is not below"),
        (_function_wildcard_write, 'AnyTable allows dynamodb:* on Resource "*"'),
        (_records_never_expire, "TimeToLiveSpecification must enable 'expires_at'"),
    ],
)
def test_each_broken_invariant_is_reported(
    breakage: Callable[[dict[str, Any]], None], reported: str, tmp_path: Path
) -> None:
    sam = _sam()
    breakage(sam)
    broken = tmp_path / "template.json"  # JSON is YAML: the parsed template, intrinsics and all, written back
    broken.write_text(json.dumps(sam))
    done = _check(broken)
    assert done.returncode == 1 and reported in done.stderr, done.stderr


def test_a_job_end_slack_refused_for_now_is_delivered_again_and_one_that_never_got_through_is_kept() -> None:
    from infra.sam import translate

    cfn = translate(_sam())["Resources"]
    config = cfn["NotifierFunctionEventInvokeConfig"]["Properties"]
    assert (config["MaximumRetryAttempts"], config["MaximumEventAgeInSeconds"]) == (2, 3600)
    queue = config["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert cfn[queue]["Type"] == "AWS::SQS::Queue"
    role = json.dumps(cfn["NotifierFunctionRole"]["Properties"]["Policies"])
    assert "sqs:SendMessage" in role and queue in role
    # A Job Changed the rule could not deliver at all is kept too.
    rule = cfn["NotifierFunctionJobChanges"]["Properties"]["Targets"][0]
    assert rule["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["NotifierDeadLetterQueue", "Arn"]}


CHECKOV = ROOT / ".venv" / "checkov" / "bin" / "checkov"


def _checkov(template: Path) -> dict[str, Any]:
    assert CHECKOV.exists(), "checkov has its own virtualenv, which `make test` and `make check` create"
    done = subprocess.run(
        # --skip-download: nothing fetched from Prisma Cloud (the checks are all in the package)
        [str(CHECKOV), "-f", str(template), "--framework", "cloudformation", "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_checkov_finds_no_failure_and_each_skip_says_why_at_its_resource() -> None:
    report = _checkov(TEMPLATE)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert report["summary"]["parsing_errors"] == 0 and not failed, failed
    reasons = {
        (c["check_id"], c["resource"]): c["check_result"]["suppress_comment"].strip()
        for c in report["results"]["skipped_checks"]
    }
    vague = {skip: why for skip, why in reasons.items() if len(why.split()) < 12}
    assert not vague, f"a skip needs a specific reason at the resource: {vague}"


def test_checkov_catches_a_bucket_made_public(tmp_path: Path) -> None:
    copy = tmp_path / "template.yaml"
    copy.write_text(TEMPLATE.read_text().replace("BlockPublicPolicy: true", "BlockPublicPolicy: false"))
    failed = {c["check_id"] for c in _checkov(copy)["results"]["failed_checks"]}
    assert "CKV_AWS_54" in failed
