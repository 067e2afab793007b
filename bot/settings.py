"""The Slack app's settings: the bot's shared ones plus who administers Spotter in the workspace."""

from __future__ import annotations

from pydantic import Field, field_validator

from spotter.config import BotSettings


class AppSettings(BotSettings):
    """`SPOTTER_ADMINS`: comma-separated Slack user ids who may cancel anyone's job (none by default)."""

    admins: frozenset[str] = Field(default_factory=frozenset)

    @field_validator("admins", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return frozenset(s.strip() for s in v.split(",") if s.strip()) if isinstance(v, str) else v
