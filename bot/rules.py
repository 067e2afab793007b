"""Who may do what, and when: where and by whom jobs may be started and schedules managed, the caps a new job must
fit under, and who may cancel a job. Pure: data in, decision out (the caller resolves user-group membership)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from bot.settings import AppSettings
from spotter.store import JobRecord

# -- access: team, channel, user ---------------------------------------------------------------------------------

# A refusal names at most this many people or channels; the rest are counted.
NAMED_AT_MOST = 10


@dataclass(frozen=True)
class AccessRefused:
    """Why a request was refused, and who may (or where it works) so the answer can name them.

    `reason`: "team" (the app answers another workspace; nothing about it is named), "channel" (not one of
    `channels`), "user" (not one of `users` nor in one of `usergroups`), "admin" (schedules are for the admins
    `users` and members of `usergroups`).
    """

    action: Literal["start", "schedule"]
    reason: Literal["team", "channel", "user", "admin"]
    channels: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    usergroups: tuple[str, ...] = ()


def is_admin(user: str, member_of: Collection[str], settings: AppSettings) -> bool:
    return user in settings.admins or any(g in settings.admin_usergroups for g in member_of)


def _may_start(user: str, member_of: Collection[str], settings: AppSettings) -> bool:
    if not settings.allowed_users and not settings.allowed_usergroups:
        return True
    return (
        user in settings.allowed_users
        or any(g in settings.allowed_usergroups for g in member_of)
        or is_admin(user, member_of, settings)
    )


def _starters(settings: AppSettings) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The users and user groups who may start jobs when the list is limited: the allowed ones and the admins."""
    users = tuple(sorted(settings.allowed_users | settings.admins))
    groups = tuple(sorted(settings.allowed_usergroups | settings.admin_usergroups))
    return users, groups


def start_refused(
    team_id: str, channel: str, user: str, member_of: Collection[str], settings: AppSettings
) -> AccessRefused | None:
    """None when `user` may start a job in `channel` of team `team_id`; `member_of` are their user groups."""
    if settings.allowed_team and team_id != settings.allowed_team:
        return AccessRefused("start", "team")
    if settings.allowed_channels and channel not in settings.allowed_channels:
        return AccessRefused("start", "channel", channels=tuple(sorted(settings.allowed_channels)))
    if not _may_start(user, member_of, settings):
        users, groups = _starters(settings)
        return AccessRefused("start", "user", users=users, usergroups=groups)
    return None


def schedule_refused(user: str, member_of: Collection[str], settings: AppSettings) -> AccessRefused | None:
    """None when `user` may make or delete schedules: an admin, or, with no admins set, anyone who may start jobs.

    Team and channel are `start_refused`'s to check: a schedule starts jobs in its channel, so both apply.
    """
    if settings.admins or settings.admin_usergroups:
        if is_admin(user, member_of, settings):
            return None
        return AccessRefused(
            "schedule",
            "admin",
            users=tuple(sorted(settings.admins)),
            usergroups=tuple(sorted(settings.admin_usergroups)),
        )
    if not _may_start(user, member_of, settings):
        users, groups = _starters(settings)
        return AccessRefused("schedule", "user", users=users, usergroups=groups)
    return None


def _listed(names: Sequence[str], last: str) -> str:
    """`a`, `a and b`, `a, b and c` (`last` is the final joining word), with the rest counted past NAMED_AT_MOST."""
    shown = list(names[:NAMED_AT_MOST])
    if len(names) > NAMED_AT_MOST:
        shown.append(f"{len(names) - NAMED_AT_MOST} more")
    if len(shown) == 1:
        return shown[0]
    return f"{', '.join(shown[:-1])} {last} {shown[-1]}"


def _who(refused: AccessRefused) -> str:
    return _listed([*(f"<@{u}>" for u in refused.users), *(f"<!subteam^{g}>" for g in refused.usergroups)], "or")


def refusal_text(refused: AccessRefused) -> str:
    """The ephemeral answer to a refused request (Slack mrkdwn): what was refused, and who may or where it works."""
    what = "start jobs" if refused.action == "start" else "make or delete schedules"
    if refused.reason == "team":
        return "Spotter is not set up for this workspace."
    if refused.reason == "channel":
        channels = _listed([f"<#{c}>" for c in refused.channels], "and")
        return f"Jobs can be started in {channels} only."
    if refused.reason == "admin":
        return f"Only Spotter's admins ({_who(refused)}) may {what}; ask one of them."
    return f"Only {_who(refused)} may {what} here; ask one of them."


# -- caps ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapReached:
    """A new job would go over a cap: which one, where things stand, and the template parameter that sets it."""

    cap: Literal["instances", "spend"]
    current: float
    limit: float

    @property
    def parameter(self) -> str:
        return "MaxConcurrentInstances" if self.cap == "instances" else "MaxDailySpendUsd"


def cap_reached(
    active_jobs: int, spent_today_usd: float, *, max_instances: int, max_daily_usd: float
) -> CapReached | None:
    """The cap a new job would go over (the instance cap first: it clears soonest), or None if it fits."""
    if active_jobs >= max_instances:
        return CapReached("instances", active_jobs, max_instances)
    if spent_today_usd >= max_daily_usd:
        return CapReached("spend", spent_today_usd, max_daily_usd)
    return None


# -- cancel --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CancelRefused:
    """Why `user` may not cancel the job: it has ended, or it is someone else's and they are no admin."""

    reason: Literal["ended", "not_allowed", "already_requested"]


def cancel_refused(
    rec: JobRecord,
    user: str,
    admins: Collection[str],
    *,
    member_of: Collection[str] = (),
    admin_usergroups: Collection[str] = (),
) -> CancelRefused | None:
    """None when `user` may cancel `rec` now: the job is still going, and they requested it or are an admin
    (one of `admins`, or in one of `admin_usergroups`: `member_of` are the user's groups)."""
    if rec.status.is_terminal():
        return CancelRefused("ended")
    admin = user in admins or any(g in admin_usergroups for g in member_of)
    if user != rec.spec.requested_by and not admin:
        return CancelRefused("not_allowed")
    if rec.cancel is not None:
        return CancelRefused("already_requested")
    return None
