"""The Slack app's settings: the bot's shared ones plus who may use Spotter, where, and who administers it.

Each is a `SPOTTER_<NAME>` variable; the lists are comma-separated Slack ids (the template's parameters of the
same names check their shape at deploy time, these at cold start).
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from spotter.config import BotSettings

_USER = re.compile(r"^[UW][A-Z0-9]+$")
_CHANNEL = re.compile(r"^[CG][A-Z0-9]+$")
_USERGROUP = re.compile(r"^S[A-Z0-9]+$")


def _ids(v: object) -> object:
    return frozenset(s.strip() for s in v.split(",") if s.strip()) if isinstance(v, str) else v


def _check(ids: frozenset[str], pattern: re.Pattern[str], what: str) -> frozenset[str]:
    bad = sorted(i for i in ids if not pattern.match(i))
    if bad:
        raise ValueError(
            f"{bad[0]} is not a Slack {what} id" if len(bad) == 1 else f"{', '.join(bad)} are not Slack {what} ids"
        )
    return ids


class AppSettings(BotSettings):
    """Who may do what. Empty lists allow everyone: a workspace with no configuration works for all its members.

    - `SPOTTER_ALLOWED_TEAM`: the Slack team (workspace) id the app answers; empty: any it is installed in.
    - `SPOTTER_ALLOWED_CHANNELS`: channel ids where jobs may be started; empty: every channel.
    - `SPOTTER_ALLOWED_USERS`, `SPOTTER_ALLOWED_USERGROUPS`: user ids and user group ids whose members may start
      jobs; both empty: anyone. Admins may always start jobs.
    - `SPOTTER_ADMINS`, `SPOTTER_ADMIN_USERGROUPS`: user ids and user group ids whose members administer Spotter:
      they may cancel anyone's job, and only they may manage schedules (anyone who may start jobs may when there
      are no admins).
    """

    allowed_team: str = Field("", pattern=r"^(T[A-Z0-9]+)?$")
    allowed_channels: frozenset[str] = Field(default_factory=frozenset)
    allowed_users: frozenset[str] = Field(default_factory=frozenset)
    allowed_usergroups: frozenset[str] = Field(default_factory=frozenset)
    admins: frozenset[str] = Field(default_factory=frozenset)
    admin_usergroups: frozenset[str] = Field(default_factory=frozenset)

    _split = field_validator(
        "allowed_channels", "allowed_users", "allowed_usergroups", "admins", "admin_usergroups", mode="before"
    )(_ids)

    @field_validator("allowed_team", mode="before")
    @classmethod
    def _strip(cls, v: object) -> object:
        return v.strip() if isinstance(v, str) else v

    @field_validator("allowed_channels")
    @classmethod
    def _channels(cls, v: frozenset[str]) -> frozenset[str]:
        return _check(v, _CHANNEL, "channel")

    @field_validator("allowed_users", "admins")
    @classmethod
    def _users(cls, v: frozenset[str]) -> frozenset[str]:
        return _check(v, _USER, "user")

    @field_validator("allowed_usergroups", "admin_usergroups")
    @classmethod
    def _usergroups(cls, v: frozenset[str]) -> frozenset[str]:
        return _check(v, _USERGROUP, "user group")

    @property
    def usergroups(self) -> frozenset[str]:
        """The user groups the access rules read: the caller resolves the asking user's membership of these."""
        return self.allowed_usergroups | self.admin_usergroups
