"""Capacity across markets against moto: spot, then on-demand when spot has nothing; what the job says when neither.

moto's CreateFleet always places the first override, so the refusals are EC2's wire answers given to the
real client for the markets a test names; the other markets reach moto.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSResponse

from spotter.status import JobStatus
from tests.lambdas.stack import Stack, ec2_error, ec2_response, queue_job
from tests.spotter.helpers import make_spec

NO_SPOT = "There is no Spot capacity available that matches your request."
NO_ON_DEMAND = "We currently do not have sufficient capacity in the Availability Zone you requested."

Refusal = Callable[[dict[str, Any]], AWSResponse]


def in_errors(code: str, message: str) -> Refusal:
    """EC2's answer with no instance and one error per pool, as it gives when a market has no capacity."""

    def respond(request: dict[str, Any]) -> AWSResponse:
        market = request["TargetCapacitySpecification"]["DefaultTargetCapacityType"]
        items = "".join(
            "<item><launchTemplateAndOverrides><overrides>"
            f"<instanceType>{o['InstanceType']}</instanceType><subnetId>{o['SubnetId']}</subnetId>"
            f"</overrides></launchTemplateAndOverrides><lifecycle>{market}</lifecycle>"
            f"<errorCode>{code}</errorCode><errorMessage>{message}</errorMessage></item>"
            for o in request["LaunchTemplateConfigs"][0]["Overrides"]
        )
        return ec2_response(
            "CreateFleet", f"<fleetId>fleet-0123</fleetId><errorSet>{items}</errorSet><fleetInstanceSet/>"
        )

    return respond


def as_call_error(code: str, message: str) -> Refusal:
    """EC2 refusing the call itself (quotas often come this way)."""
    return lambda _request: ec2_error(code, message)


def refuse(stack: Stack, **by_market: Refusal) -> list[dict[str, Any]]:
    """Answer CreateFleet for the given markets (on_demand= for on-demand); returns every request sent."""
    fleets = stack.record(stack.ec2, "CreateFleet")

    def respond(**_: Any) -> AWSResponse | None:
        request = fleets[-1]
        market = request["TargetCapacitySpecification"]["DefaultTargetCapacityType"].replace("-", "_")
        refusal = by_market.get(market)
        return refusal(request) if refusal else None

    stack.ec2.meta.events.register("before-send.ec2.CreateFleet", respond)
    return fleets


def _queue(stack: Stack, seed: str = "f", **params: str) -> str:
    return queue_job(stack, seed, **params)


def _market(request: dict[str, Any]) -> str:
    return str(request["TargetCapacitySpecification"]["DefaultTargetCapacityType"])


def _job_errors(stack: Stack) -> list[dict[str, Any]]:
    return [e["detail"] for e in stack.bus_events() if e["detail-type"] == "Job Error"]


def test_auto_falls_back_to_on_demand_when_spot_has_no_capacity(stack: Stack) -> None:
    job = _queue(stack)
    fleets = refuse(stack, spot=in_errors("InsufficientInstanceCapacity", NO_SPOT))
    deletes = stack.record(stack.ec2, "DeleteLaunchTemplateVersions")

    outcome = stack.launcher().launch(job)

    assert outcome.result == "launched" and outcome.market == "on-demand"
    assert [_market(f) for f in fleets] == ["spot", "on-demand"]
    assert fleets[1]["OnDemandOptions"] == {"AllocationStrategy": "lowest-price"} and "SpotOptions" not in fleets[1]
    # Each option set asks anew: reusing the spot call's token would get EC2's answer to that call back.
    assert [f["ClientToken"] for f in fleets] == [f"{job}-1-spot", f"{job}-1-on-demand"]
    assert fleets[0]["LaunchTemplateConfigs"][0]["Overrides"] == fleets[1]["LaunchTemplateConfigs"][0]["Overrides"]
    att = stack.store.get(job).current_attempt
    assert att is not None and att.market == "on-demand" and att.instance_id == outcome.instance_id
    [instance] = stack.instances(job)
    assert instance["InstanceId"] == outcome.instance_id
    assert len(deletes) == 1  # one template version for the attempt, deleted once both calls are done


def test_spot_true_fails_on_no_spot_capacity_and_says_what_was_tried(stack: Stack) -> None:
    job = _queue(stack, spot="true")
    fleets = refuse(stack, spot=in_errors("InsufficientInstanceCapacity", NO_SPOT))
    deletes = stack.record(stack.ec2, "DeleteLaunchTemplateVersions")

    outcome = stack.launcher().launch(job)

    assert outcome.result == "failed" and [_market(f) for f in fleets] == ["spot"]
    rec = stack.store.get(job)
    assert rec.status is JobStatus.FAILED and rec.failure is not None
    assert (rec.failure.phase, rec.failure.kind) == ("launch", "capacity")
    message = rec.failure.message
    assert "capacity" in message and f"InsufficientInstanceCapacity: {NO_SPOT}" in message
    zones = ", ".join(stack.zones[s] for s in stack.settings.subnets)
    for instance_type in make_spec(seed="f").instance_types():
        assert f"`{instance_type}` in {zones}" in message
    assert "*on-demand*" not in message and "`spot=auto`" in message
    [error] = _job_errors(stack)
    assert (error["kind"], error["phase"], error["message"], error["attempt"]) == ("capacity", "launch", message, 1)
    assert stack.instances(job) == [] and len(deletes) == 1


def test_spot_false_goes_straight_to_on_demand(stack: Stack) -> None:
    job = _queue(stack, spot="false")
    fleets = refuse(stack, spot=in_errors("InsufficientInstanceCapacity", NO_SPOT))

    outcome = stack.launcher().launch(job)

    assert outcome.result == "launched" and outcome.market == "on-demand"
    assert [(_market(f), f["ClientToken"]) for f in fleets] == [("on-demand", f"{job}-1-on-demand")]


def test_auto_with_no_capacity_anywhere_names_both_markets(stack: Stack) -> None:
    job = _queue(stack)
    refuse(
        stack,
        spot=in_errors("InsufficientInstanceCapacity", NO_SPOT),
        on_demand=in_errors("InsufficientInstanceCapacity", NO_ON_DEMAND),
    )

    outcome = stack.launcher().launch(job)

    assert outcome.result == "failed" and outcome.market == "on-demand"
    rec = stack.store.get(job)
    assert rec.failure is not None and rec.failure.kind == "capacity"
    spot_part, on_demand_part = rec.failure.message.split("*on-demand*")
    assert NO_SPOT in spot_part and NO_ON_DEMAND in on_demand_part
    assert all(zone in on_demand_part for zone in stack.zones.values())
    assert stack.instances(job) == []


def test_a_spot_quota_refusal_still_tries_on_demand_and_says_both(stack: Stack) -> None:
    job = _queue(stack)
    fleets = refuse(
        stack,
        spot=as_call_error("MaxSpotInstanceCountExceeded", "Max spot instance count exceeded"),
        on_demand=in_errors("VcpuLimitExceeded", "You have requested more vCPU capacity than your current limit"),
    )

    outcome = stack.launcher().launch(job)

    assert outcome.result == "failed" and [_market(f) for f in fleets] == ["spot", "on-demand"]
    rec = stack.store.get(job)
    assert rec.failure is not None and rec.failure.kind == "quota"
    message = rec.failure.message
    assert "MaxSpotInstanceCountExceeded: Max spot instance count exceeded" in message
    assert "VcpuLimitExceeded" in message
    assert "*All G and VT Spot Instance Requests* (L-3819A6DF) in *us-east-1*" in message
    assert "*Running On-Demand G and VT instances* (L-DB2E81BA) in *us-east-1*" in message
    assert "Service Quotas console" in message and "vCPUs" in message
    [error] = _job_errors(stack)
    assert error["kind"] == "quota"
    assert stack.instances(job) == []


def test_a_spot_quota_refusal_with_on_demand_capacity_launches_on_demand(stack: Stack) -> None:
    job = _queue(stack)
    refuse(stack, spot=as_call_error("MaxSpotInstanceCountExceeded", "Max spot instance count exceeded"))

    outcome = stack.launcher().launch(job)

    assert outcome.result == "launched" and outcome.market == "on-demand"
    assert len(stack.instances(job)) == 1


def test_a_refusal_that_is_not_capacity_or_quota_does_not_fall_back(stack: Stack) -> None:
    job = _queue(stack)
    fleets = refuse(stack, spot=as_call_error("InvalidParameterValue", "The image id is not valid"))

    outcome = stack.launcher().launch(job)

    assert outcome.result == "failed" and [_market(f) for f in fleets] == ["spot"]
    rec = stack.store.get(job)
    assert rec.failure is not None and rec.failure.kind == "launch"
    assert "InvalidParameterValue: The image id is not valid" in rec.failure.message
    assert stack.instances(job) == []
