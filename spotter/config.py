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
    # Caps (template parameters): a request over one gets a clear message and no instance.
    max_concurrent_instances: int = Field(4, ge=0)
    max_daily_spend_usd: float = Field(100.0, ge=0)
    # Days DynamoDB keeps a job's record after its end (the template's JobRecordDays, the table's TTL).
    job_record_days: int = Field(400, ge=1)

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
    # Download links (weights, their companion files, logs) are minted when asked for and work this long (S3's
    # presigned URLs work for a week at most).
    presign_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600)
    best_announce_interval_seconds: float = Field(
        300.0, ge=0, description="the least time between two new-best replies in a job's thread (the card shows all)"
    )


class LauncherSettings(Settings):
    launch_template: str
    subnets: tuple[str, ...] = ()
    agent_key: str = Field(description="S3 key of the agent package the instances run")

    @field_validator("subnets", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return tuple(s.strip() for s in v.split(",") if s.strip()) if isinstance(v, str) else v


class ControlSettings(Settings):
    """The control plane's handlers (recorder, EC2 events, watchdog): how hard to try, and when to give up."""

    max_attempts: int = Field(5, ge=1, le=50, description="attempts a job may have (the first and its relaunches)")
    relaunch_backoff_seconds: float = Field(
        60.0, ge=0, description="the wait before the 3rd attempt; doubled for each one after (the 2nd goes at once)"
    )
    relaunch_backoff_max_seconds: float = Field(900.0, ge=0)
    heartbeat_stale_seconds: float = Field(600.0, gt=0, description="a running job silent this long has failed")
    launching_timeout_seconds: float = Field(900.0, gt=0, description="a job LAUNCHING this long has failed")
    cancel_grace_seconds: float = Field(180.0, gt=0, description="how long the agent has to act on a cancel")
    vanish_settle_seconds: float = Field(
        60.0, ge=0, description="how long after an instance went its agent's last events may still be on their way"
    )

    def relaunch_delay(self, next_attempt: int) -> float:
        """How long to wait before launching attempt `next_attempt` of an interrupted job."""
        if next_attempt <= 2:
            return 0.0
        return min(self.relaunch_backoff_max_seconds, self.relaunch_backoff_seconds * 2 ** (next_attempt - 3))
