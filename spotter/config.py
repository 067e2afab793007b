"""Configuration from the environment, validated once at cold start (a bad deployment fails loudly)."""

from __future__ import annotations

import os
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

T = TypeVar("T", bound="Settings")


class ConfigError(RuntimeError):
    pass


class Settings(BaseModel):
    """Reads `SPOTTER_<FIELD>` variables (upper case); subclasses add what their deployable needs."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    region: str = Field(
        default_factory=lambda: os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    )
    jobs_table: str
    bucket: str
    bus_name: str

    @classmethod
    def from_env(cls: type[T], environ: dict[str, str] | None = None) -> T:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            key = f"SPOTTER_{name.upper()}"
            if key in env:
                values[name] = env[key]
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            missing = [f"SPOTTER_{str(err['loc'][0]).upper()}" for err in e.errors() if err["type"] == "missing"]
            if missing:
                raise ConfigError(f"{cls.__name__}: set {', '.join(missing)}") from None
            raise ConfigError(f"{cls.__name__}: {e}") from None


class BotSettings(Settings):
    slack_secret: str = Field(description="Secrets Manager id of {bot_token, signing_secret}")
    slack_api_url: str = "https://slack.com/api/"
    card_interval_seconds: float = 10.0
    presign_seconds: int = 3 * 24 * 3600


class LauncherSettings(Settings):
    launch_template: str
    subnets: tuple[str, ...] = ()
    agent_key: str = Field(description="S3 key of the agent package the instances run")

    @field_validator("subnets", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return tuple(s.strip() for s in v.split(",") if s.strip()) if isinstance(v, str) else v
