"""Helpers for core tests: specs and a table built from template.yaml's own definition."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from samtranslator.yaml_helper import yaml_parse

from spotter import layout
from spotter.spec import JobSpec, build_spec
from spotter.status import JobStatus
from spotter.store import JobsStore

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"  # moto's
ON_A_BOX = (JobStatus.RUNNING, JobStatus.UPLOADING)


def instance_for(job_id: str, attempt: int = 1) -> str:
    """The instance a test's attempt runs on (one per job and attempt, as EC2 gives)."""
    return "i-" + hashlib.sha256(f"{job_id}/{attempt}".encode()).hexdigest()[:17]


def outputs_of(job_id: str, attempt: int = 1) -> layout.Outputs:
    """Where that attempt's agent writes (what the recorder takes as its outputs)."""
    return layout.Outputs(job_id, layout.instance_arn("aws", "us-east-1", ACCOUNT, instance_for(job_id, attempt)))


def table_definition(name: str) -> dict[str, Any]:
    """CreateTable arguments for the JobsTable exactly as template.yaml declares it (STYLE #9)."""
    props = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]["JobsTable"]["Properties"]
    return {
        "TableName": name,
        "BillingMode": props["BillingMode"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "GlobalSecondaryIndexes": props["GlobalSecondaryIndexes"],
    }


def make_spec(seed: str = "t1", dataset: str = "shapes", model: str = "yolov8n", **params: str) -> JobSpec:
    return build_spec(dataset, model, list(params.items()), requested_by="U1", channel="C1", seed=seed)


def force_status(store: JobsStore, job_id: str, status: JobStatus, attempt: int = 1) -> None:
    """Put a job in any state directly (test set-up only; product code goes through the transitions).

    A job on a box has its attempt's instance (`instance_for`) recorded, as the launcher would have.
    """
    current: dict[str, Any] = {"number": {"N": str(attempt)}}
    if status in ON_A_BOX:
        current["instance_id"] = {"S": instance_for(job_id, attempt)}
    store.db.update_item(
        TableName=store.table,
        Key={"job_id": {"S": job_id}},
        UpdateExpression="SET #s = :s, attempt = :a, attempts = :l",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={
            ":s": {"S": status.value},
            ":a": {"N": str(attempt)},
            ":l": {"L": [{"M": current}]},
        },
    )


def record_instances(store: JobsStore, job_id: str, attempts: int = 1) -> None:
    """Give the job `attempts` attempts, each on its `instance_for` instance (test set-up only)."""
    store.db.update_item(
        TableName=store.table,
        Key={"job_id": {"S": job_id}},
        UpdateExpression="SET attempt = :a, attempts = :l",
        ExpressionAttributeValues={
            ":a": {"N": str(attempts)},
            ":l": {
                "L": [
                    {"M": {"number": {"N": str(n)}, "instance_id": {"S": instance_for(job_id, n)}}}
                    for n in range(1, attempts + 1)
                ]
            },
        },
    )
