"""Who may start jobs and manage schedules where, the caps a new job must fit under, and who may cancel a job:
pure decisions over plain data."""

from __future__ import annotations

import pytest

from bot.rules import (
    NAMED_AT_MOST,
    AccessRefused,
    CancelRefused,
    CapReached,
    cancel_refused,
    cap_reached,
    is_admin,
    refusal_text,
    schedule_refused,
    start_refused,
)
from bot.settings import AppSettings
from spotter.config import ConfigError
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


def test_an_admin_group_member_may_cancel_anyones_job() -> None:
    rec = running()
    assert cancel_refused(rec, "U0BOB", (), member_of={"S0ADMINS"}, admin_usergroups={"S0ADMINS"}) is None
    refused = cancel_refused(rec, "U0BOB", (), member_of={"S0OTHER"}, admin_usergroups={"S0ADMINS"})
    assert refused == CancelRefused("not_allowed")


BASE = {"SPOTTER_JOBS_TABLE": "t", "SPOTTER_BUCKET": "b", "SPOTTER_BUS_NAME": "e", "SPOTTER_SLACK_SECRET": "s"}


def settings(**env: str) -> AppSettings:
    return AppSettings.from_env(BASE | {f"SPOTTER_{k.upper()}": v for k, v in env.items()})


def test_admins_come_from_the_environment() -> None:
    assert AppSettings.from_env(BASE).admins == frozenset()
    assert settings(admins=" U0ADMIN, W0OTHER ,,").admins == {"U0ADMIN", "W0OTHER"}


def test_access_settings_come_from_the_environment() -> None:
    empty = AppSettings.from_env(BASE)
    assert (empty.allowed_team, empty.allowed_channels, empty.allowed_users) == ("", frozenset(), frozenset())
    assert (empty.allowed_usergroups, empty.admin_usergroups, empty.usergroups) == (frozenset(),) * 3
    s = settings(
        allowed_team="T0TEAM",
        allowed_channels="C0ML, G0PRIVATE",
        allowed_users="U0ALICE",
        allowed_usergroups="S0ML",
        admin_usergroups="S0OPS,",
    )
    assert s.allowed_team == "T0TEAM"
    assert s.allowed_channels == {"C0ML", "G0PRIVATE"}
    assert (s.allowed_users, s.allowed_usergroups, s.admin_usergroups) == ({"U0ALICE"}, {"S0ML"}, {"S0OPS"})
    assert s.usergroups == {"S0ML", "S0OPS"}  # the groups whose membership the caller resolves


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"allowed_channels": "#general"}, "#general is not a Slack channel id"),
        ({"allowed_users": "alice,U1"}, "alice is not a Slack user id"),
        ({"admins": "S0OPS"}, "S0OPS is not a Slack user id"),
        ({"allowed_usergroups": "U0ALICE,ops"}, "U0ALICE, ops are not Slack user group ids"),
        ({"admin_usergroups": "C0ML"}, "C0ML is not a Slack user group id"),
        ({"allowed_team": "acme"}, "allowed_team"),
    ],
)
def test_access_settings_that_are_no_slack_ids_fail_at_cold_start(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        settings(**env)


OPEN = AppSettings.from_env(BASE)
LOCKED = settings(
    allowed_team="T0TEAM",
    allowed_channels="C0ML,C0GPU",
    allowed_users="U0ALICE",
    allowed_usergroups="S0ML",
    admins="U0ADMIN",
    admin_usergroups="S0OPS",
)


@pytest.mark.parametrize(
    ("s", "team", "channel", "user", "member_of", "expected"),
    [
        (OPEN, "T0ANY", "C0ANY", "U0ANY", (), None),  # nothing configured: anyone, anywhere
        (LOCKED, "T0TEAM", "C0ML", "U0ALICE", (), None),  # an allowed user
        (LOCKED, "T0TEAM", "C0GPU", "U0BOB", ("S0ML",), None),  # a member of an allowed group
        (LOCKED, "T0TEAM", "C0ML", "U0ADMIN", (), None),  # admins may always start jobs
        (LOCKED, "T0TEAM", "C0ML", "U0CAROL", ("S0OPS",), None),  # so may admin group members
        (LOCKED, "T0OTHER", "C0ML", "U0ALICE", (), AccessRefused("start", "team")),
        (
            LOCKED,
            "T0TEAM",
            "C0RANDOM",
            "U0ALICE",
            (),
            AccessRefused("start", "channel", channels=("C0GPU", "C0ML")),
        ),
        (
            LOCKED,
            "T0TEAM",
            "C0ML",
            "U0BOB",
            ("S0OTHER",),
            AccessRefused("start", "user", users=("U0ADMIN", "U0ALICE"), usergroups=("S0ML", "S0OPS")),
        ),
        # the team first, then the channel: an allowed user in the wrong channel is told where it works
        (LOCKED, "T0OTHER", "C0RANDOM", "U0BOB", (), AccessRefused("start", "team")),
        (LOCKED, "T0TEAM", "C0RANDOM", "U0BOB", (), AccessRefused("start", "channel", channels=("C0GPU", "C0ML"))),
        (settings(allowed_channels="C0ML"), "T0ANY", "C0ML", "U0ANY", (), None),  # channels only: anyone in them
        (
            settings(allowed_usergroups="S0ML"),
            "T0ANY",
            "C0ANY",
            "U0ANY",
            (),
            AccessRefused("start", "user", usergroups=("S0ML",)),
        ),
    ],
)
def test_who_may_start_jobs_where(
    s: AppSettings, team: str, channel: str, user: str, member_of: tuple[str, ...], expected: AccessRefused | None
) -> None:
    assert start_refused(team, channel, user, member_of, s) == expected


@pytest.mark.parametrize(
    ("s", "user", "member_of", "expected"),
    [
        (OPEN, "U0ANY", (), None),  # no admins and no user lists: anyone may schedule
        (settings(allowed_users="U0ALICE"), "U0ALICE", (), None),  # no admins: whoever may start jobs
        (
            settings(allowed_users="U0ALICE"),
            "U0BOB",
            (),
            AccessRefused("schedule", "user", users=("U0ALICE",)),
        ),
        (LOCKED, "U0ADMIN", (), None),
        (LOCKED, "U0CAROL", ("S0OPS",), None),
        # with admins set, schedules are theirs alone, even for those who may start jobs
        (LOCKED, "U0ALICE", ("S0ML",), AccessRefused("schedule", "admin", users=("U0ADMIN",), usergroups=("S0OPS",))),
        (settings(admin_usergroups="S0OPS"), "U0ANY", (), AccessRefused("schedule", "admin", usergroups=("S0OPS",))),
    ],
)
def test_who_may_manage_schedules(
    s: AppSettings, user: str, member_of: tuple[str, ...], expected: AccessRefused | None
) -> None:
    assert schedule_refused(user, member_of, s) == expected


def test_admins_by_id_or_group() -> None:
    assert is_admin("U0ADMIN", (), LOCKED) and is_admin("U0CAROL", {"S0OPS"}, LOCKED)
    assert not is_admin("U0ALICE", {"S0ML"}, LOCKED) and not is_admin("U0ANY", (), OPEN)


@pytest.mark.parametrize(
    ("refused", "text"),
    [
        (AccessRefused("start", "team"), "Spotter is not set up for this workspace."),
        (AccessRefused("start", "channel", channels=("C1",)), "Jobs can be started in <#C1> only."),
        (AccessRefused("start", "channel", channels=("C1", "C2")), "Jobs can be started in <#C1> and <#C2> only."),
        (
            AccessRefused("start", "channel", channels=("C1", "C2", "C3")),
            "Jobs can be started in <#C1>, <#C2> and <#C3> only.",
        ),
        (
            AccessRefused("start", "user", users=("U1",), usergroups=("S9",)),
            "Only <@U1> or <!subteam^S9> may start jobs here; ask one of them.",
        ),
        (
            AccessRefused("start", "user", users=("U1", "U2"), usergroups=("S9",)),
            "Only <@U1>, <@U2> or <!subteam^S9> may start jobs here; ask one of them.",
        ),
        (
            AccessRefused("schedule", "admin", users=("U1",)),
            "Only Spotter's admins (<@U1>) may make or delete schedules; ask one of them.",
        ),
        (
            AccessRefused("schedule", "user", usergroups=("S9",)),
            "Only <!subteam^S9> may make or delete schedules here; ask one of them.",
        ),
    ],
)
def test_refusals_say_what_and_who_may(refused: AccessRefused, text: str) -> None:
    assert refusal_text(refused) == text


def test_a_long_list_is_cut_and_counted() -> None:
    users = tuple(f"U{i:02}" for i in range(NAMED_AT_MOST + 3))
    text = refusal_text(AccessRefused("start", "user", users=users))
    assert text.count("<@U") == NAMED_AT_MOST and "or 3 more may start jobs" in text


def test_a_refusal_of_the_team_names_nothing_of_the_configuration() -> None:
    refused = start_refused("T0OTHER", "C0ML", "U0ALICE", (), LOCKED)
    assert refused is not None
    text = refusal_text(refused)
    for configured in ("T0TEAM", "C0ML", "C0GPU", "U0ALICE", "U0ADMIN", "S0ML", "S0OPS"):
        assert configured not in text
