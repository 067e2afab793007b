"""infra.local.aws provisions template.yaml into moto: schedule group, function ARNs, parameters and their overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from samtranslator.yaml_helper import yaml_parse

from infra.local.aws import (
    LOCAL_PARAMETERS,
    TEMPLATE,
    ParameterError,
    Resources,
    check_parameters,
    parameter_values,
    provision,
)

CREDS = {"bot_token": "xoxb-test", "signing_secret": "s3cr3t"}


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml_parse(TEMPLATE.read_text())
    return doc


@pytest.fixture
def resources(aws: str) -> Resources:
    return provision(CREDS, stack="spotter-test")


def test_the_schedule_group_exists_in_moto_and_the_slack_app_is_told_its_name(resources: Resources) -> None:
    slack = resources.functions["SlackFunction"].environment

    assert resources.schedule_groups == ["spotter-test"]
    assert slack["SPOTTER_SCHEDULE_GROUP"] == "spotter-test"
    group = boto3.client("scheduler").get_schedule_group(Name="spotter-test")
    assert group["Arn"] == "arn:aws:scheduler:us-east-1:123456789012:schedule-group/spotter-test"


def test_every_function_has_its_lambda_arn_and_environments_name_other_functions(resources: Resources) -> None:
    slack = resources.functions["SlackFunction"].environment
    run = resources.functions["ScheduledRunFunction"]

    assert run.name == "spotter-test-scheduled-run"
    assert run.arn == "arn:aws:lambda:us-east-1:123456789012:function:spotter-test-scheduled-run"
    assert slack["SPOTTER_SCHEDULE_TARGET_ARN"] == run.arn
    for fn in resources.functions.values():
        assert fn.arn == f"arn:aws:lambda:us-east-1:123456789012:function:{fn.name}"
    assert resources.function_by_arn(run.arn) is run
    assert resources.function_by_arn(run.arn + ":live") is run  # a qualified ARN names the same function
    assert resources.function_by_arn(run.arn + "-other") is None


def test_the_scheduler_role_is_created_and_passed_to_the_slack_app(resources: Resources) -> None:
    role_arn = resources.functions["SlackFunction"].environment["SPOTTER_SCHEDULER_ROLE_ARN"]

    role = boto3.client("iam").get_role(RoleName="spotter-test-SchedulerRole")["Role"]
    assert role_arn == role["Arn"]
    statement = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert statement["Principal"] == {"Service": "scheduler.amazonaws.com"}


def test_access_parameters_take_their_defaults(resources: Resources) -> None:
    slack = resources.functions["SlackFunction"].environment

    for key in ("SPOTTER_ALLOWED_TEAM", "SPOTTER_ALLOWED_CHANNELS", "SPOTTER_ALLOWED_USERS", "SPOTTER_ADMINS"):
        assert slack[key] == ""
    assert slack["SPOTTER_PRESIGN_SECONDS"] == "3600"


def test_parameter_overrides_reach_the_functions(aws: str) -> None:
    resources = provision(
        CREDS,
        stack="spotter-test",
        parameters={"AllowedChannels": "C1,C2", "Admins": "U0ALICE", "DownloadLinkSeconds": "600"},
    )

    slack = resources.functions["SlackFunction"].environment
    assert slack["SPOTTER_ALLOWED_CHANNELS"] == "C1,C2"
    assert slack["SPOTTER_ADMINS"] == "U0ALICE"
    assert slack["SPOTTER_PRESIGN_SECONDS"] == "600"
    assert resources.functions["NotifierFunction"].environment["SPOTTER_PRESIGN_SECONDS"] == "600"


def test_parameter_values_are_the_defaults_with_overrides() -> None:
    values = parameter_values(_doc(), {"MaxConcurrentInstances": "1"})

    assert values["MaxConcurrentInstances"] == "1"
    assert values["AllowedChannels"] == ""
    assert values["MaxAttempts"] == "5"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"AllowedChanels": "C1"}, "no parameter 'AllowedChanels'"),
        ({"AllowedChannels": "general"}, "does not match its AllowedPattern"),
        ({"AllowedUsers": "U1,,U2"}, "does not match its AllowedPattern"),
        ({"DownloadLinkSeconds": "10"}, "below its MinValue 60"),
        ({"DownloadLinkSeconds": "99999"}, "above its MaxValue 43200"),
        ({"MaxAttempts": "many"}, "is a Number"),
        ({"VpcId": "vpc-1"}, "set by the local stack"),
    ],
)
def test_bad_overrides_are_refused_with_the_reason(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        check_parameters(overrides)


def test_the_unknown_parameter_error_lists_the_ones_there_are() -> None:
    with pytest.raises(ParameterError) as e:
        check_parameters({"Nope": "1"})

    assert "AllowedChannels" in str(e.value) and "DownloadLinkSeconds" in str(e.value)
    assert not any(name in str(e.value) for name in LOCAL_PARAMETERS)


def test_allowed_values_are_checked(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text("Parameters:\n  Mode:\n    Type: String\n    Default: a\n    AllowedValues: [a, b]\n")

    assert check_parameters({"Mode": "b"}, template)["Mode"] == "b"
    with pytest.raises(ParameterError, match="is not one of a, b"):
        check_parameters({"Mode": "c"}, template)
