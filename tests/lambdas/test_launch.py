"""The launcher against moto: the CreateFleet it sends, the instance and record it leaves, and its failures.

Falling back across markets, capacity and quota messages: test_launch_fallback; caps: test_launch_caps;
resuming: test_launch_resume; the pure decisions: test_launch_plan.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from spotter import catalog, layout
from spotter.events import JobLaunched
from spotter.spec import RunSpec
from spotter.status import JobStatus
from tests.lambdas.stack import (
    BUCKET,
    Stack,
    json_error,
    latest_spot_price,
    queue_job,
)
from tests.spotter.helpers import force_status, make_spec


def _user_data(data: dict[str, Any]) -> str:
    return base64.b64decode(data["UserData"]).decode()


def test_spot_launch_sends_one_fleet_over_every_type_and_subnet(stack: Stack) -> None:
    job = queue_job(stack)
    fleets = stack.record(stack.ec2, "CreateFleet")
    versions = stack.record(stack.ec2, "CreateLaunchTemplateVersion")
    deletes = stack.record(stack.ec2, "DeleteLaunchTemplateVersions")

    outcome = stack.launcher().launch(job)

    assert outcome.result == "launched" and outcome.market == "spot" and outcome.attempt == 1
    [req] = fleets
    assert req["Type"] == "instant" and req["ClientToken"] == f"{job}-1-spot"
    assert req["TargetCapacitySpecification"] == {"TotalTargetCapacity": 1, "DefaultTargetCapacityType": "spot"}
    assert req["SpotOptions"] == {"AllocationStrategy": "price-capacity-optimized"}
    assert "OnDemandOptions" not in req
    [config] = req["LaunchTemplateConfigs"]
    types = make_spec(seed="a").instance_types()
    assert len(types) > 1
    assert sorted((o["InstanceType"], o["SubnetId"]) for o in config["Overrides"]) == sorted(
        (t, s) for t in types for s in stack.settings.subnets
    )
    [tags] = req["TagSpecifications"]
    assert tags["ResourceType"] == "instance"
    assert {t["Key"]: t["Value"] for t in tags["Tags"]} == {
        "spotter:job": job,
        "spotter:attempt": "1",
        "spotter:app": "spotter",
    }

    # The fleet used this attempt's version, which holds the template's data plus the user data.
    [version_req] = versions
    spec_ref = config["LaunchTemplateSpecification"]
    assert spec_ref["LaunchTemplateId"] == stack.settings.launch_template
    data = version_req["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert data["IamInstanceProfile"]["Arn"].endswith(":instance-profile/instance")
    script = _user_data(data)
    assert f"JOB_ID='{job}'" in script and "shutdown -h +120" in script
    assert f"SPEC_URI='s3://{BUCKET}/jobs/{job}/job.json'" in script
    by_type = {t["ResourceType"]: {x["Key"]: x["Value"] for x in t["Tags"]} for t in data["TagSpecifications"]}
    for resource in ("instance", "volume"):
        assert by_type[resource]["spotter:job"] == job and by_type[resource]["spotter:attempt"] == "1"
    assert by_type["volume"]["spotter:app"] == "spotter"  # the template's own tag survives the merge
    [delete] = deletes
    assert delete["Versions"] == [spec_ref["Version"]]

    # The instance exists, tagged with the job, and carries the user data.
    [instance] = stack.instances(job)
    assert instance["InstanceId"] == outcome.instance_id and instance["InstanceType"] == types[0]
    attr = stack.ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    assert base64.b64decode(attr["UserData"]["Value"]).decode() == script


def test_launch_records_the_attempt_and_announces_it(stack: Stack) -> None:
    job = queue_job(stack)
    outcome = stack.launcher().launch(job)

    rec = stack.store.get(job)
    assert rec.status is JobStatus.LAUNCHING and rec.attempt == 1
    att = rec.current_attempt
    assert att is not None
    zone = stack.zones[stack.settings.subnets[0]]  # moto places the first override
    expected = (outcome.instance_id, "g4dn.xlarge", zone, "spot", latest_spot_price("g4dn.xlarge", zone))
    assert (att.instance_id, att.instance_type, att.availability_zone, att.market, att.price_usd_hour) == expected

    [event] = [e for e in stack.bus_events() if e["detail-type"] == JobLaunched.detail_type]
    assert event["source"] == "spotter.launcher"
    assert event["detail"]["instance_id"] == outcome.instance_id and event["detail"]["price_usd_hour"] == 0.2104

    run = RunSpec.model_validate_json(stack.s3.get_object(Bucket=BUCKET, Key=f"jobs/{job}/job.json")["Body"].read())
    assert (run.attempt, run.bucket, run.bus_name, run.region) == (1, BUCKET, "spotter", "us-east-1")
    assert run.classes == catalog.dataset("shapes").classes and run.spec == rec.spec


def test_a_repeated_job_queued_launches_nothing(stack: Stack) -> None:
    job = queue_job(stack)
    fleets = stack.record(stack.ec2, "CreateFleet")
    first = stack.launcher().launch(job)
    again = stack.launcher().launch(job)

    assert first.result == "launched" and again.result == "skipped"
    assert len(fleets) == 1 and len(stack.instances(job)) == 1
    assert stack.store.get(job).attempt == 1


def test_a_failure_after_the_fleet_terminates_the_instance(stack: Stack) -> None:
    job = queue_job(stack)
    launched = stack.record(stack.ec2, "CreateFleet")

    failed: list[bool] = []

    def store_fails_once_after_launch(**kwargs: Any) -> Any:
        if launched and not failed:
            failed.append(True)
            return json_error("ValidationException", "boom")
        return None

    stack.dynamodb.meta.events.register("before-send.dynamodb.UpdateItem", store_fails_once_after_launch)
    outcome = stack.launcher().launch(job)

    assert outcome.result == "failed" and "ValidationException" in outcome.message
    assert outcome.instance_id is None
    assert stack.instances(job) == []
    assert len(stack.instances(job, states=("shutting-down", "terminated"))) == 1
    assert stack.store.get(job).status is JobStatus.FAILED
    assert [e["detail-type"] for e in stack.bus_events()] == ["Job Error"]


def test_on_demand_when_the_spec_says_spot_false(stack: Stack) -> None:
    job = queue_job(stack, spot="false")
    fleets = stack.record(stack.ec2, "CreateFleet")
    outcome = stack.launcher().launch(job)

    [req] = fleets
    assert req["TargetCapacitySpecification"]["DefaultTargetCapacityType"] == "on-demand"
    assert req["OnDemandOptions"] == {"AllocationStrategy": "lowest-price"} and "SpotOptions" not in req
    att = stack.store.get(job).current_attempt
    assert outcome.market == "on-demand" and att is not None and att.market == "on-demand"
    assert att.price_usd_hour == catalog.GPU_TYPES["g4dn.xlarge"].on_demand_usd_hour


def test_an_interrupted_job_resumes_as_the_next_attempt(stack: Stack) -> None:
    job = queue_job(stack)
    force_status(stack.store, job, JobStatus.INTERRUPTED, attempt=1)
    fleets = stack.record(stack.ec2, "CreateFleet")
    outcome = stack.launcher().launch(job)

    assert outcome.result == "launched" and outcome.attempt == 2
    assert fleets[0]["ClientToken"] == f"{job}-2-spot"
    rec = stack.store.get(job)
    assert rec.attempt == 2 and len(rec.attempts) == 2 and rec.attempts[1].instance_id == outcome.instance_id
    run = json.loads(stack.s3.get_object(Bucket=BUCKET, Key=layout.run_spec(job))["Body"].read())
    assert run["attempt"] == 2 and run["resume"] is None  # nothing was checkpointed: from scratch


def test_a_missing_agent_package_fails_before_any_instance(stack: Stack) -> None:
    stack.s3.delete_object(Bucket=BUCKET, Key=stack.settings.agent_key)
    job = queue_job(stack)
    fleets = stack.record(stack.ec2, "CreateFleet")
    outcome = stack.launcher().launch(job)

    assert outcome.result == "failed" and fleets == []
    rec = stack.store.get(job)
    assert rec.failure is not None and "python -m infra.package publish" in rec.failure.message


def test_only_launchable_jobs_launch(stack: Stack) -> None:
    assert stack.launcher().launch("shapes-nosuch").result == "skipped"
    job = queue_job(stack)
    force_status(stack.store, job, JobStatus.RUNNING)
    assert stack.launcher().launch(job).result == "skipped"
    assert stack.instances(job) == []
