"""infra.local.aws provisions what template.yaml translates to into moto: the table, the bucket, rules and their
taps, schedules, roles, log groups, the functions' settings; parameters and their overrides; and it refuses a
resource it cannot stand up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from samtranslator.yaml_helper import yaml_parse

from infra.local.aws import (
    LOCAL_PARAMETERS,
    TEMPLATE,
    MotoServer,
    ParameterError,
    Resources,
    check_parameters,
    parameter_values,
    provision,
)
from infra.local.faults import Faults
from infra.local.provision import NOTHING_TO_STAND_UP, ProvisionError, Resolver, lifecycle_rule
from infra.sam import translate

CREDS = {"bot_token": "xoxb-test", "signing_secret": "s3cr3t"}  # pragma: allowlist secret
STACK = "spotter-test"


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml_parse(TEMPLATE.read_text())
    return doc


def _translated() -> dict[str, Any]:
    resources: dict[str, Any] = translate(_doc())["Resources"]
    return resources


def _of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r.get("Properties") or {} for name, r in _translated().items() if r["Type"] == kind}


def _with(tmp_path: Path, change: Any) -> Path:
    """A copy of template.yaml that `change` edited (written as JSON, which is YAML too)."""
    doc = _doc()
    change(doc)
    path = tmp_path / "template.yaml"
    path.write_text(json.dumps(doc))
    return path


def _defaults(value: Any) -> Any:
    """A template value with each `Ref` to a parameter replaced by the parameter's default."""
    defaults = parameter_values(_doc())
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in defaults:
        return defaults[value["Ref"]]
    if isinstance(value, dict):
        return {k: _defaults(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_defaults(v) for v in value]
    return value


@pytest.fixture
def resources(aws: str) -> Resources:
    return provision(CREDS, stack=STACK)


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


# -- the table ---------------------------------------------------------------------------------------------------


def test_the_table_is_the_templates_with_ttl_point_in_time_recovery_and_encryption(resources: Resources) -> None:
    ddb = boto3.client("dynamodb")
    props = _doc()["Resources"]["JobsTable"]["Properties"]

    table = ddb.describe_table(TableName=resources.table)["Table"]
    assert table["KeySchema"] == props["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(props["AttributeDefinitions"], key=str)
    assert {ix["IndexName"]: ix["KeySchema"] for ix in table["GlobalSecondaryIndexes"]} == {
        ix["IndexName"]: ix["KeySchema"] for ix in props["GlobalSecondaryIndexes"]
    }
    assert table["BillingModeSummary"]["BillingMode"] == props["BillingMode"]
    assert table["SSEDescription"]["Status"] == "ENABLED"
    ttl = ddb.describe_time_to_live(TableName=resources.table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": props["TimeToLiveSpecification"]["AttributeName"]}
    backups = ddb.describe_continuous_backups(TableName=resources.table)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def test_a_changed_table_key_in_the_template_is_the_local_tables_key(aws: str, tmp_path: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        table = doc["Resources"]["JobsTable"]["Properties"]
        table["AttributeDefinitions"] += [
            {"AttributeName": "tenant", "AttributeType": "S"},
            {"AttributeName": "updated_at", "AttributeType": "N"},
        ]
        table["KeySchema"] = [{"AttributeName": "tenant", "KeyType": "HASH"}]
        table["KeySchema"].append({"AttributeName": "job_id", "KeyType": "RANGE"})
        by_status = next(ix for ix in table["GlobalSecondaryIndexes"] if ix["IndexName"] == "by-status")
        by_status["KeySchema"][1] = {"AttributeName": "updated_at", "KeyType": "RANGE"}

    resources = provision(CREDS, stack=STACK, template=_with(tmp_path, change))

    table = boto3.client("dynamodb").describe_table(TableName=resources.table)["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "tenant", "KeyType": "HASH"},
        {"AttributeName": "job_id", "KeyType": "RANGE"},
    ]
    by_status = next(ix for ix in table["GlobalSecondaryIndexes"] if ix["IndexName"] == "by-status")
    assert by_status["KeySchema"][1] == {"AttributeName": "updated_at", "KeyType": "RANGE"}
    assert {"AttributeName": "updated_at", "AttributeType": "N"} in table["AttributeDefinitions"]


# -- the bucket --------------------------------------------------------------------------------------------------


def test_the_bucket_has_the_templates_versioning_encryption_and_public_access_block(resources: Resources) -> None:
    s3 = boto3.client("s3")
    props = _doc()["Resources"]["ArtifactsBucket"]["Properties"]

    assert s3.get_bucket_versioning(Bucket=resources.bucket)["Status"] == props["VersioningConfiguration"]["Status"]
    rules = s3.get_bucket_encryption(Bucket=resources.bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    wanted = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert [r["ApplyServerSideEncryptionByDefault"] for r in rules] == [
        w["ServerSideEncryptionByDefault"] for w in wanted
    ]
    block = s3.get_public_access_block(Bucket=resources.bucket)["PublicAccessBlockConfiguration"]
    assert block == props["PublicAccessBlockConfiguration"]


def test_the_bucket_has_the_templates_lifecycle_rules(resources: Resources) -> None:
    wanted = _defaults(_doc()["Resources"]["ArtifactsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"])
    got = {r["ID"]: r for r in boto3.client("s3").get_bucket_lifecycle_configuration(Bucket=resources.bucket)["Rules"]}

    assert list(got) == [w["Id"] for w in wanted]
    for rule in wanted:
        have = got[rule["Id"]]
        assert have["Status"] == rule["Status"]
        if "ExpirationInDays" in rule:
            assert have["Expiration"] == {"Days": int(rule["ExpirationInDays"])}
        else:
            assert "Expiration" not in have
        for key in ("AbortIncompleteMultipartUpload", "NoncurrentVersionExpiration"):
            assert have.get(key) == ({k: int(v) for k, v in rule[key].items()} if key in rule else None)
        tags = rule.get("TagFilters", [])
        filters = have.get("Filter", {})
        have_tags = [filters["Tag"]] if "Tag" in filters else filters.get("And", {}).get("Tags", [])
        assert have_tags == tags


def test_lifecycle_rules_are_translated_to_the_s3_api_shapes() -> None:
    rule = lifecycle_rule(
        {
            "Id": "logs",
            "Status": "Enabled",
            "Prefix": "jobs/",
            "TagFilters": [{"Key": "spotter:kind", "Value": "log"}],
            "ExpirationInDays": "90",
            "Transitions": [{"StorageClass": "GLACIER", "TransitionInDays": 30}],
            "NoncurrentVersionExpirationInDays": 1,
        }
    )

    assert rule == {
        "ID": "logs",
        "Status": "Enabled",
        "Filter": {"And": {"Prefix": "jobs/", "Tags": [{"Key": "spotter:kind", "Value": "log"}]}},
        "Expiration": {"Days": 90},
        "Transitions": [{"StorageClass": "GLACIER", "Days": 30}],
        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
    }
    assert lifecycle_rule({"Id": "all", "Status": "Enabled"})["Filter"] == {}
    with pytest.raises(ProvisionError, match="ObjectLockRule"):
        lifecycle_rule({"Id": "x", "Status": "Enabled", "ObjectLockRule": {}})


def test_the_bucket_policy_is_the_templates_with_the_bucket_named(resources: Resources) -> None:
    wanted = _doc()["Resources"]["ArtifactsBucketPolicy"]["Properties"]["PolicyDocument"]

    policy = json.loads(boto3.client("s3").get_bucket_policy(Bucket=resources.bucket)["Policy"])
    assert [(s.get("Sid"), s["Effect"], s["Action"], s.get("Condition")) for s in policy["Statement"]] == [
        (s.get("Sid"), s["Effect"], s["Action"], s.get("Condition")) for s in wanted["Statement"]
    ]
    arn = f"arn:aws:s3:::{resources.bucket}"
    assert policy["Statement"][0]["Resource"] == [arn, f"{arn}/*"]


@pytest.fixture
def local_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The local stack's own moto (with its patches), not the tests' plain one."""
    from spotter.aws import reset_clients

    moto = MotoServer(Faults(lambda _record: None)).start()
    requests.post(f"{moto.endpoint}/moto-api/reset", timeout=10)  # moto's state is the process's, shared
    for key, value in moto.environ().items():
        monkeypatch.setenv(key, value)
    reset_clients()
    try:
        yield moto.endpoint
    finally:
        moto.stop()
        reset_clients()


def test_local_requests_count_as_tls_for_the_bucket_policy_and_other_denials_still_apply(local_aws: str) -> None:
    resources = provision(CREDS, stack=STACK)
    s3 = boto3.client("s3")

    s3.put_object(Bucket=resources.bucket, Key="jobs/j1/job.json", Body=b"{}")
    assert s3.get_object(Bucket=resources.bucket, Key="jobs/j1/job.json")["Body"].read() == b"{}"
    url = s3.generate_presigned_url("get_object", Params={"Bucket": resources.bucket, "Key": "jobs/j1/job.json"})
    assert requests.get(url, timeout=10).content == b"{}"  # plain HTTP here, as TLS is in AWS

    policy = json.loads(s3.get_bucket_policy(Bucket=resources.bucket)["Policy"])
    arn = f"arn:aws:s3:::{resources.bucket}"
    policy["Statement"].append({"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": f"{arn}/*"})
    s3.put_bucket_policy(Bucket=resources.bucket, Policy=json.dumps(policy))
    assert requests.get(url, timeout=10).status_code == 403


# -- rules, schedules, functions ---------------------------------------------------------------------------------


def test_each_translated_rule_has_its_pattern_and_a_tap_its_function_reads(resources: Resources) -> None:
    events, sqs = boto3.client("events"), boto3.client("sqs")
    rules = _of_type("AWS::Events::Rule")
    assert len(rules) >= 5

    for logical, props in rules.items():
        bus = resources.bus_name if "EventBusName" in props else "default"
        rule = events.describe_rule(Name=f"{STACK}-{logical}", EventBusName=bus)
        assert json.loads(rule["EventPattern"]) == props["EventPattern"]
        (target,) = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]
        (wanted,) = props["Targets"]
        assert target["Arn"].startswith("arn:aws:sqs:")
        assert target.get("RetryPolicy") == wanted["RetryPolicy"]
        assert ("DeadLetterConfig" in target) == ("DeadLetterConfig" in wanted)
        function = resources.functions[wanted["Arn"]["Fn::GetAtt"][0]]
        url = sqs.get_queue_url(QueueName=target["Arn"].rsplit(":", 1)[1])["QueueUrl"]
        assert url in function.queues


def test_an_event_on_the_bus_reaches_the_tap_of_the_rule_that_matches_it(resources: Resources) -> None:
    events, sqs = boto3.client("events"), boto3.client("sqs")
    launcher = resources.function_by_handler("lambdas.launcher.handler")
    detail = json.dumps({"job_id": "j1"})

    events.put_events(
        Entries=[
            {"Source": "spotter.bot", "DetailType": "Job Queued", "Detail": detail, "EventBusName": resources.bus_name}
        ]
    )

    (queue,) = launcher.queues
    messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2)["Messages"]
    assert json.loads(messages[0]["Body"])["detail-type"] == "Job Queued"


def test_the_watchdog_runs_on_the_translated_schedule(resources: Resources) -> None:
    (props,) = _of_type("AWS::Scheduler::Schedule").values()
    watchdog = resources.functions[props["Target"]["Arn"]["Fn::GetAtt"][0]]

    assert watchdog.schedules == [props["ScheduleExpression"]]
    schedule = boto3.client("scheduler").get_schedule(Name=props["Name"])
    assert schedule["Target"]["Arn"] == watchdog.arn
    assert schedule["ScheduleExpression"] == props["ScheduleExpression"]
    assert not any(f.schedules for f in resources.functions.values() if f is not watchdog)


def test_function_settings_come_from_the_translated_functions(resources: Resources) -> None:
    functions = _of_type("AWS::Lambda::Function")

    assert set(resources.functions) == set(functions)
    for logical, props in functions.items():
        fn = resources.functions[logical]
        assert fn.handler == props["Handler"]
        assert set(fn.environment) == set(props["Environment"]["Variables"])
        assert fn.timeout == props["Timeout"]
        assert fn.role == boto3.client("iam").get_role(RoleName=f"{STACK}-{logical}Role")["Role"]["Arn"]
    assert resources.functions["WatchdogFunction"].environment["SPOTTER_JOB_RECORD_DAYS"] == str(
        parameter_values(_doc())["JobRecordDays"]
    )


def _role_documents(role: str) -> list[Any]:
    """The role's inline policies and the customer managed ones attached to it."""
    iam = boto3.client("iam")
    documents = [
        iam.get_role_policy(RoleName=role, PolicyName=n)["PolicyDocument"]
        for n in iam.list_role_policies(RoleName=role)["PolicyNames"]
    ]
    for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
        documents.append(
            iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)["PolicyVersion"]["Document"]
        )
    return documents


def test_the_roles_sam_generates_have_their_policies_resolved(resources: Resources) -> None:
    table_arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{resources.table}"

    documents = json.dumps(_role_documents(f"{STACK}-RecorderFunctionRole"))
    assert table_arn in documents
    assert f"arn:aws:s3:::{resources.bucket}/models/*" in documents
    assert "Fn::" not in documents and "${" not in documents
    profile = boto3.client("iam").get_instance_profile(InstanceProfileName=f"{STACK}-InstanceProfile")
    assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == [f"{STACK}-InstanceRole"]


def test_log_groups_keep_the_templates_retention(resources: Resources) -> None:
    groups = _defaults(_of_type("AWS::Logs::LogGroup"))
    if not groups:
        pytest.skip("template.yaml declares no log group")

    have = {g["logGroupName"]: g for g in boto3.client("logs").describe_log_groups()["logGroups"]}
    for logical, props in groups.items():
        name = props.get("LogGroupName", f"{STACK}-{logical}")
        assert have[name].get("retentionInDays") == int(props["RetentionInDays"])


def test_the_security_group_has_only_the_templates_egress(resources: Resources) -> None:
    ec2 = boto3.client("ec2")
    props = _doc()["Resources"]["InstanceSecurityGroup"]["Properties"]

    (group,) = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"{STACK}-InstanceSecurityGroup"]}]
    )["SecurityGroups"]
    assert [(p["IpProtocol"], [r["CidrIp"] for r in p["IpRanges"]]) for p in group["IpPermissionsEgress"]] == [
        (r["IpProtocol"], [r["CidrIp"]]) for r in props["SecurityGroupEgress"]
    ]
    assert group["IpPermissions"] == []


# -- what cannot be stood up ---------------------------------------------------------------------------------------


def test_a_resource_type_the_local_stack_cannot_stand_up_is_refused_by_name(aws: str, tmp_path: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["Resources"]["JobsStream"] = {"Type": "AWS::Kinesis::Stream", "Properties": {"ShardCount": 1}}

    with pytest.raises(ProvisionError, match=r"JobsStream: .*AWS::Kinesis::Stream"):
        provision(CREDS, stack=STACK, template=_with(tmp_path, change))


def test_a_property_the_local_stack_does_not_apply_is_refused_by_name(aws: str, tmp_path: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["Resources"]["JobsTable"]["Properties"]["KinesisStreamSpecification"] = {"StreamArn": "arn:x"}

    with pytest.raises(ProvisionError, match=r"JobsTable .*KinesisStreamSpecification"):
        provision(CREDS, stack=STACK, template=_with(tmp_path, change))


def test_the_types_with_nothing_to_stand_up_are_the_lambda_wiring_moto_cannot_run() -> None:
    kinds = {r["Type"] for r in _translated().values()}

    assert set(NOTHING_TO_STAND_UP) == {"AWS::Lambda::Permission", "AWS::Lambda::EventInvokeConfig", "AWS::Lambda::Url"}
    assert "AWS::Lambda::Url" in kinds  # the Slack function's URL: the stand-in posts to the handler in-process


# -- intrinsics and conditions -----------------------------------------------------------------------------------


def test_conditions_and_fn_if_decide_what_is_created_and_what_a_value_is(aws: str, tmp_path: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc.setdefault("Conditions", {})["LimitedTeam"] = {"Fn::Not": [{"Fn::Equals": [{"Ref": "AllowedTeam"}, ""]}]}
        variables = doc["Resources"]["SlackFunction"]["Properties"]["Environment"]["Variables"]
        variables["SPOTTER_TEAM_MODE"] = {"Fn::If": ["LimitedTeam", "one", "any"]}
        variables["SPOTTER_ONLY_FOR_ONE_TEAM"] = {"Fn::If": ["LimitedTeam", "yes", {"Ref": "AWS::NoValue"}]}
        doc["Resources"]["TeamQueue"] = {"Type": "AWS::SQS::Queue", "Condition": "LimitedTeam", "Properties": {}}

    template = _with(tmp_path, change)
    anyone = provision(CREDS, stack=STACK, template=template).functions["SlackFunction"].environment
    assert anyone["SPOTTER_TEAM_MODE"] == "any"
    assert "SPOTTER_ONLY_FOR_ONE_TEAM" not in anyone
    assert "QueueUrls" not in boto3.client("sqs").list_queues(QueueNamePrefix=f"{STACK}-TeamQueue")

    requests.post(f"{aws}/moto-api/reset", timeout=10)
    one = provision(CREDS, stack=STACK, template=template, parameters={"AllowedTeam": "T0ONE"})
    assert one.functions["SlackFunction"].environment["SPOTTER_TEAM_MODE"] == "one"
    assert one.functions["SlackFunction"].environment["SPOTTER_ONLY_FOR_ONE_TEAM"] == "yes"
    assert boto3.client("sqs").list_queues(QueueNamePrefix=f"{STACK}-TeamQueue")["QueueUrls"]


def test_the_resolver_handles_the_intrinsics_templates_use() -> None:
    resolve = Resolver({"AWS::StackName": "s", "Subnets": ["a", "b"], "Name": "x"})
    resolve.attrs[("Bucket", "Arn")] = "arn:aws:s3:::s-bucket"

    assert resolve({"Fn::Sub": "${AWS::StackName}-${Bucket.Arn}/${!Literal}"}) == "s-arn:aws:s3:::s-bucket/${Literal}"
    assert resolve({"Fn::Sub": ["${a}-${Name}", {"a": {"Ref": "AWS::StackName"}}]}) == "s-x"
    assert resolve({"Fn::Join": [",", {"Ref": "Subnets"}]}) == "a,b"
    assert resolve({"Fn::Select": [1, {"Fn::Split": [",", "p,q"]}]}) == "q"
    assert resolve([{"Ref": "AWS::NoValue"}, 1]) == [1]
    with pytest.raises(ProvisionError, match=r"Fn::GetAtt Bucket\.DomainName"):
        resolve({"Fn::GetAtt": ["Bucket", "DomainName"]})
    with pytest.raises(ProvisionError, match="Fn::Transform"):
        resolve({"Fn::Transform": {}})
