"""The launcher's decisions over plain data: option sets, what a fleet's errors mean, the message, caps, resume."""

from __future__ import annotations

import re
from typing import Any

import pytest

from lambdas.launch import (
    MESSAGE_MAX,
    Tried,
    client_token,
    failure_kind,
    failure_message,
    falls_through,
    option_sets,
    over_caps,
    quota_advice,
    resume_from,
    tried_pools,
    vcpus,
)
from spotter.config import Settings
from spotter.status import JobStatus
from spotter.store import Checkpoint, JobRecord
from tests.spotter.helpers import make_spec

TYPES = ("g4dn.xlarge", "g6.xlarge")
ZONES = {"subnet-a": "us-east-1a", "subnet-b": "us-east-1b"}
OVERRIDES = [{"InstanceType": t, "SubnetId": s} for t in TYPES for s in ZONES]
NO_SPOT = "There is no Spot capacity available that matches your request."


def _error(code: str, message: str, instance_type: str | None = None, subnet: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"ErrorCode": code, "ErrorMessage": message, "Lifecycle": "spot"}
    if instance_type:
        err["LaunchTemplateAndOverrides"] = {"Overrides": {"InstanceType": instance_type, "SubnetId": subnet}}
    return err


def _settings(**caps: Any) -> Settings:
    return Settings(jobs_table="t", bucket="b", bus_name="bus", **caps)


# -- option sets -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, markets",
    [("auto", ["spot", "on-demand"]), ("true", ["spot"]), ("false", ["on-demand"])],
)
def test_option_sets_follow_the_spot_mode(mode: Any, markets: list[str]) -> None:
    sets = option_sets(mode, list(TYPES))
    assert [s.market for s in sets] == markets
    assert all(s.instance_types == TYPES for s in sets)


def test_client_tokens_differ_per_attempt_and_option_set_and_fit_ec2s_limit() -> None:
    spot, on_demand = option_sets("auto", list(TYPES))
    tokens = {client_token("shapes-abc234", a, o) for a in (1, 2) for o in (spot, on_demand)}
    assert len(tokens) == 4
    assert client_token("shapes-abc234", 1, spot) == client_token("shapes-abc234", 1, spot)
    long_id = "a" * 63
    token = client_token(long_id, 10, on_demand)
    assert len(token) <= 64 and token != client_token(long_id, 10, spot)


# -- a fleet answer without an instance -------------------------------------------------------------------------


def test_every_override_is_recorded_with_the_error_that_names_it() -> None:
    errors = [
        _error("InsufficientInstanceCapacity", NO_SPOT, "g4dn.xlarge", "subnet-a"),
        _error("SpotMaxPriceTooLow", "price too low", "g4dn.xlarge", "subnet-b"),
        _error("UnfulfillableCapacity", "not now", "g6.xlarge", "subnet-a"),
    ]
    tried = tried_pools("spot", OVERRIDES, errors, ZONES)
    assert [(t.instance_type, t.zone, t.code) for t in tried] == [
        ("g4dn.xlarge", "us-east-1a", "InsufficientInstanceCapacity"),
        ("g4dn.xlarge", "us-east-1b", "SpotMaxPriceTooLow"),
        ("g6.xlarge", "us-east-1a", "UnfulfillableCapacity"),
        ("g6.xlarge", "us-east-1b", None),  # EC2 named nothing for this pool: still counted as tried
    ]
    assert all(t.market == "spot" and t.reason == "capacity" for t in tried)
    assert falls_through(tried) and failure_kind(tried) == "capacity"


def test_an_error_naming_no_override_applies_to_every_pool() -> None:
    tried = tried_pools("on-demand", OVERRIDES, [_error("VcpuLimitExceeded", "vCPU limit")], ZONES)
    assert len(tried) == 4 and {t.code for t in tried} == {"VcpuLimitExceeded"}
    assert {t.market for t in tried} == {"on-demand"}  # the asked market, whatever Lifecycle says
    assert falls_through(tried) and failure_kind(tried) == "quota"


def test_a_configuration_error_stops_the_fallback() -> None:
    tried = tried_pools("spot", OVERRIDES, [_error("InvalidParameterValue", "bad AMI")], ZONES)
    assert not falls_through(tried) and failure_kind(tried) == "launch"


@pytest.mark.parametrize(
    "codes, kind",
    [
        (["InsufficientInstanceCapacity", "InsufficientInstanceCapacity"], "capacity"),
        (["MaxSpotInstanceCountExceeded", "InsufficientInstanceCapacity"], "quota"),
        (["InsufficientInstanceCapacity", "InvalidParameterValue"], "launch"),
    ],
)
def test_the_failure_kind_over_both_markets(codes: list[str], kind: str) -> None:
    tried = [
        Tried("spot", "g4dn.xlarge", "us-east-1a", codes[0]),
        Tried("on-demand", "g4dn.xlarge", "us-east-1a", codes[1]),
    ]
    assert failure_kind(tried) == kind


# -- the message ---------------------------------------------------------------------------------------------------


def test_the_capacity_message_names_every_type_and_zone_per_market() -> None:
    spot = tried_pools("spot", OVERRIDES, [_error("InsufficientInstanceCapacity", NO_SPOT)], ZONES)
    on_demand = tried_pools(
        "on-demand",
        OVERRIDES,
        [_error("InsufficientInstanceCapacity", "We currently do not have sufficient capacity")],
        ZONES,
    )
    message = failure_message("shapes-abc234", spot + on_demand, "us-east-1")

    assert "capacity" in message and "`shapes-abc234`" in message
    spot_part, on_demand_part = message.split("*on-demand*")
    for part, text in ((spot_part, NO_SPOT), (on_demand_part, "We currently do not have sufficient capacity")):
        assert "`g4dn.xlarge` in us-east-1a, us-east-1b" in part and "`g6.xlarge` in us-east-1a, us-east-1b" in part
        assert f"InsufficientInstanceCapacity: {text}" in part
    assert "Service Quota" not in message and "quota" not in message.lower()


def test_a_spot_quota_then_on_demand_capacity_says_both() -> None:
    spot = tried_pools(
        "spot", OVERRIDES, [_error("MaxSpotInstanceCountExceeded", "Max spot instance count exceeded")], ZONES
    )
    on_demand = tried_pools("on-demand", OVERRIDES, [_error("InsufficientInstanceCapacity", "none")], ZONES)
    message = failure_message("shapes-abc234", spot + on_demand, "eu-west-1")

    assert failure_kind(spot + on_demand) == "quota"
    assert "spot: over the account's quota" in message and "on-demand: no capacity" in message
    assert "MaxSpotInstanceCountExceeded: Max spot instance count exceeded" in message
    assert "*All G and VT Spot Instance Requests* (L-3819A6DF) in *eu-west-1*" in message
    assert "https://eu-west-1.console.aws.amazon.com/servicequotas/home/services/ec2/quotas/L-3819A6DF" in message
    assert "vCPUs" in message and "`g4dn.xlarge`, needs 4 vCPUs" in message
    assert "Running On-Demand" not in message  # on-demand was not refused for quota


@pytest.mark.parametrize(
    "market, instance_type, name, code",
    [
        ("on-demand", "g5.xlarge", "Running On-Demand G and VT instances", "L-DB2E81BA"),
        ("on-demand", "p3.2xlarge", "Running On-Demand P instances", "L-417A185B"),
        ("spot", "p3.2xlarge", "All P Spot Instance Requests", "L-7212CCBC"),
    ],
)
def test_quota_advice_names_the_quota_of_the_family(market: Any, instance_type: str, name: str, code: str) -> None:
    advice = quota_advice(market, [instance_type], "us-west-2")
    assert f"*{name}* ({code}) in *us-west-2*" in advice and "Service Quotas console" in advice
    assert f"`{instance_type}`, needs {vcpus(instance_type)} vCPUs" in advice


@pytest.mark.parametrize(
    "instance_type, n", [("g4dn.xlarge", 4), ("g5.2xlarge", 8), ("g6.12xlarge", 48), ("p3.2xlarge", 8)]
)
def test_vcpus_by_size(instance_type: str, n: int) -> None:
    assert vcpus(instance_type) == n


def test_ec2_text_is_escaped_for_mrkdwn_and_the_message_fits_a_job_error() -> None:
    many = [{"InstanceType": f"g{i}.xlarge", "SubnetId": s} for i in range(40) for s in ZONES]
    tried = tried_pools("spot", many, [_error("InsufficientInstanceCapacity", "<b>no</b> & more")], ZONES)
    message = failure_message("shapes-abc234", tried, "us-east-1")
    assert len(message) <= MESSAGE_MAX
    assert "&lt;b&gt;no&lt;/b&gt; &amp; more" in message and "<b>" not in message


# -- caps ----------------------------------------------------------------------------------------------------------


def test_caps_refuse_with_the_numbers_and_the_parameter() -> None:
    settings = _settings(max_concurrent_instances=3, max_daily_spend_usd=50)
    assert over_caps("shapes-abc234", 2, 49.99, settings) is None
    instances = over_caps("shapes-abc234", 3, 0.0, settings)
    assert instances is not None and re.search(r"3 Spotter instance.*cap is 3", instances)
    assert "`MaxConcurrentInstances`" in instances and "`shapes-abc234`" in instances
    spend = over_caps("shapes-abc234", 0, 50.5, settings)
    assert spend is not None and "$50.50" in spend and "$50.00" in spend and "`MaxDailySpendUsd`" in spend


# -- resume ----------------------------------------------------------------------------------------------------------


def _record(checkpoint: Checkpoint | None) -> JobRecord:
    spec = make_spec(seed="r")
    return JobRecord(
        job_id=spec.job_id,
        status=JobStatus.INTERRUPTED,
        spec=spec,
        channel="C1",
        created_at="2026-01-01T00:00:00+00:00",
        updated_at="2026-01-01T00:00:00+00:00",
        attempt=1,
        checkpoint=checkpoint,
    )


def test_a_relaunch_resumes_from_the_recorded_checkpoint() -> None:
    cp = Checkpoint(key="jobs/x/checkpoints/last.pt", sha256="a" * 64, size=1234, current=7, attempt=1, at=1.0)
    resume = resume_from(_record(cp), 2)
    assert resume is not None
    assert (resume.key, resume.sha256, resume.size, resume.current, resume.attempt) == (cp.key, cp.sha256, 1234, 7, 1)
    assert resume_from(_record(cp), 1) is None  # a first attempt never resumes
    assert resume_from(_record(None), 2) is None  # nothing saved: from scratch


def test_a_checkpoint_that_holds_the_whole_training_is_not_resumed() -> None:
    # The frameworks refuse to resume a finished run ("nothing to resume"): the next attempt trains afresh.
    rec = _record(None)
    whole = Checkpoint(key="jobs/x/checkpoints/last.pt", sha256="a" * 64, size=1, current=rec.spec.length, attempt=1)
    assert resume_from(_record(whole), 2) is None
    assert resume_from(_record(whole.model_copy(update={"current": rec.spec.length - 1})), 2) is not None
