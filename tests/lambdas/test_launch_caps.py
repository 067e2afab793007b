"""The caps at launch against moto: live Spotter instances and today's spend, checked before any CreateFleet."""

from __future__ import annotations

import re
import time
from typing import Any

from spotter import layout
from spotter.events import JobLaunched
from spotter.status import JobStatus
from tests.lambdas.stack import BUCKET, IMAGE_ID, Stack, queue_job
from tests.spotter.helpers import force_status


def _caps(stack: Stack, **caps: Any) -> None:
    stack.settings = stack.settings.model_copy(update=caps)


def _run(stack: Stack, job_id: str, app: str = "spotter") -> str:
    """An instance as a launch leaves it (tagged with the app and its job)."""
    tags = [{"Key": "spotter:app", "Value": app}, {"Key": "spotter:job", "Value": job_id}]
    return str(
        stack.ec2.run_instances(
            ImageId=IMAGE_ID,
            MinCount=1,
            MaxCount=1,
            InstanceType="g4dn.xlarge",
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"][0]["InstanceId"]
    )


def _refused(stack: Stack, job: str, fleets: list[dict[str, Any]]) -> str:
    rec = stack.store.get(job)
    assert rec.status is JobStatus.FAILED and rec.failure is not None and rec.failure.kind == "budget"
    assert fleets == [] and stack.instances(job) == []
    [error] = [e["detail"] for e in stack.bus_events() if e["detail-type"] == "Job Error"]
    assert (error["kind"], error["message"]) == ("budget", rec.failure.message)
    return rec.failure.message


def test_the_concurrent_instance_cap_refuses_with_no_instance(stack: Stack) -> None:
    _caps(stack, max_concurrent_instances=2)
    _run(stack, "shapes-other1")
    _run(stack, "shapes-other2")
    _run(stack, "shapes-notours", app="someone-else")  # not a Spotter instance: not counted
    stopped = _run(stack, "shapes-other3")
    stack.ec2.terminate_instances(InstanceIds=[stopped])
    job = queue_job(stack, "c")
    fleets = stack.record(stack.ec2, "CreateFleet")

    outcome = stack.launcher().launch(job)

    assert outcome.result == "failed"
    message = _refused(stack, job, fleets)
    assert "2 Spotter instance(s)" in message and "cap is 2" in message and "`MaxConcurrentInstances`" in message
    assert "Contents" not in stack.s3.list_objects_v2(Bucket=BUCKET, Prefix=layout.job(job))  # nothing written


def test_the_jobs_own_instance_does_not_count_against_the_cap(stack: Stack) -> None:
    _caps(stack, max_concurrent_instances=1)
    job = queue_job(stack, "own")
    force_status(stack.store, job, JobStatus.INTERRUPTED, attempt=1)
    _run(stack, job)  # the interrupted attempt's box, still shutting down

    outcome = stack.launcher().launch(job)

    assert outcome.result == "launched" and outcome.attempt == 2


def test_the_daily_spend_cap_refuses_with_no_instance(stack: Stack) -> None:
    _caps(stack, max_daily_spend_usd=50)
    now = time.time()
    spender = queue_job(stack, "spender")
    stack.store.mark_launching(spender, 1)
    # A minute at $3600/hour: $60 spent today by another job.
    stack.store.record_launch(
        JobLaunched(
            job_id=spender,
            instance_id="i-0123456789abcdef0",
            instance_type="g5.12xlarge",
            availability_zone="us-east-1a",
            market="spot",
            price_usd_hour=3600.0,
            at=now - 60,
        )
    )
    job = queue_job(stack, "s")
    fleets = stack.record(stack.ec2, "CreateFleet")

    outcome = stack.launcher().launch(job)

    assert outcome.result == "failed"
    message = _refused(stack, job, fleets)
    assert "$50.00" in message and "`MaxDailySpendUsd`" in message
    assert re.search(r"\$6[0-9]\.\d\d spent today", message)  # the minute so far, and the seconds since
