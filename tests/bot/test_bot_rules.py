"""The caps a new job must fit under and who may cancel a job: pure decisions over plain data."""

from __future__ import annotations

import pytest

from bot.rules import CapReached, cancel_refused, cap_reached
from bot.settings import AppSettings
from spotter.status import JobStatus
from spotter.store import CancelRequest
from tests.bot.test_bot_views import running


@pytest.mark.parametrize(
    ("active", "spent", "expected"),
    [
        (0, 0.0, None),
        (1, 49.99, None),
        (2, 0.0, CapReached("instances", 2, 2)),
        (3, 0.0, CapReached("instances", 3, 2)),
        (1, 50.0, CapReached("spend", 50.0, 50.0)),
        (2, 80.0, CapReached("instances", 2, 2)),  # the instance cap first: it clears soonest
    ],
)
def test_caps(active: int, spent: float, expected: CapReached | None) -> None:
    assert cap_reached(active, spent, max_instances=2, max_daily_usd=50.0) == expected


def test_a_zero_cap_refuses_everything_and_names_its_parameter() -> None:
    cap = cap_reached(0, 0.0, max_instances=0, max_daily_usd=10)
    assert cap is not None and cap.parameter == "MaxConcurrentInstances"
    spend = cap_reached(0, 0.0, max_instances=1, max_daily_usd=0)
    assert spend is not None and spend.parameter == "MaxDailySpendUsd"


@pytest.mark.parametrize(
    ("status", "user", "admins", "cancel", "reason"),
    [
        (JobStatus.RUNNING, "U0ALICE", (), None, None),  # the requester
        (JobStatus.QUEUED, "U0ADMIN", ("U0ADMIN",), None, None),  # an admin
        (JobStatus.INTERRUPTED, "U0ALICE", (), None, None),
        (JobStatus.RUNNING, "U0BOB", ("U0ADMIN",), None, "not_allowed"),
        (JobStatus.RUNNING, "U0BOB", (), None, "not_allowed"),
        (JobStatus.SUCCEEDED, "U0ALICE", (), None, "ended"),
        (JobStatus.CANCELLED, "U0ADMIN", ("U0ADMIN",), None, "ended"),
        (JobStatus.RUNNING, "U0ALICE", (), CancelRequest(by="U0ALICE", at=1.0), "already_requested"),
        (JobStatus.RUNNING, "U0BOB", (), CancelRequest(by="U0ALICE", at=1.0), "not_allowed"),
    ],
)
def test_who_may_cancel(
    status: JobStatus, user: str, admins: tuple[str, ...], cancel: CancelRequest | None, reason: str | None
) -> None:
    rec = running().model_copy(update={"status": status, "cancel": cancel})
    refused = cancel_refused(rec, user, admins)
    assert (refused.reason if refused else None) == reason


def test_admins_come_from_the_environment() -> None:
    base = {"SPOTTER_JOBS_TABLE": "t", "SPOTTER_BUCKET": "b", "SPOTTER_BUS_NAME": "e", "SPOTTER_SLACK_SECRET": "s"}
    assert AppSettings.from_env(base).admins == frozenset()
    settings = AppSettings.from_env(base | {"SPOTTER_ADMINS": " U0ADMIN, W0OTHER ,,"})
    assert settings.admins == {"U0ADMIN", "W0OTHER"}
