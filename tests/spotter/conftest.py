from __future__ import annotations

import boto3
import pytest

from spotter.store import JobsStore
from tests.spotter.helpers import table_definition


@pytest.fixture
def store(aws: str) -> JobsStore:
    boto3.client("dynamodb").create_table(**table_definition("jobs"))
    return JobsStore("jobs")
