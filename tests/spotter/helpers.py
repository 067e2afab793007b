"""Helpers for core tests: specs and a table built from template.yaml's own definition."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from samtranslator.yaml_helper import yaml_parse

from spotter.spec import JobSpec, build_spec
from spotter.status import JobStatus
from spotter.store import JobsStore

ROOT = Path(__file__).resolve().parents[2]


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
    """Put a job in any state directly (test set-up only; product code goes through the transitions)."""
    store.db.update_item(
        TableName=store.table,
        Key={"job_id": {"S": job_id}},
        UpdateExpression="SET #s = :s, attempt = :a, attempts = :l",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={
            ":s": {"S": status.value},
            ":a": {"N": str(attempt)},
            ":l": {"L": [{"M": {"number": {"N": str(attempt)}}}]},
        },
    )
