"""What a job cost: each attempt's hourly price (the zone's spot price at launch, or the on-demand list price)
times its runtime, and what the same hours would have cost on demand (the catalog's dated price table)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from spotter import catalog
from spotter.store import Attempt, JobRecord


@dataclass(frozen=True)
class AttemptCost:
    number: int
    instance_type: str | None
    market: str | None
    availability_zone: str | None
    price_usd_hour: float | None
    hours: float
    usd: float
    on_demand_usd: float  # the same hours on demand (0 where the type is not in the price table)
    running: bool  # still accruing


@dataclass(frozen=True)
class JobCost:
    job_id: str
    attempts: tuple[AttemptCost, ...]

    @property
    def usd(self) -> float:
        return sum(a.usd for a in self.attempts)

    @property
    def on_demand_usd(self) -> float:
        return sum(a.on_demand_usd for a in self.attempts)

    @property
    def saving_usd(self) -> float:
        return max(0.0, self.on_demand_usd - self.usd)

    @property
    def saving_fraction(self) -> float | None:
        return self.saving_usd / self.on_demand_usd if self.on_demand_usd > 0 else None

    @property
    def hours(self) -> float:
        return sum(a.hours for a in self.attempts)


def on_demand_price(instance_type: str | None) -> float | None:
    gpu = catalog.GPU_TYPES.get(instance_type or "")
    return gpu.on_demand_usd_hour if gpu else None


def attempt_cost(att: Attempt, now: float) -> AttemptCost:
    running = att.ended_at is None
    hours = 0.0
    if att.started_at is not None and att.instance_id is not None:
        hours = max(0.0, ((now if running else att.ended_at or now) - att.started_at) / 3600)
    on_demand = on_demand_price(att.instance_type)
    price = att.price_usd_hour if att.price_usd_hour is not None else on_demand
    return AttemptCost(
        number=att.number,
        instance_type=att.instance_type,
        market=att.market,
        availability_zone=att.availability_zone,
        price_usd_hour=price,
        hours=hours,
        usd=(price or 0.0) * hours,
        on_demand_usd=(on_demand or 0.0) * hours,
        running=running and att.instance_id is not None,
    )


def job_cost(rec: JobRecord, now: float) -> JobCost:
    return JobCost(rec.job_id, tuple(attempt_cost(a, now) for a in rec.attempts))


def day_start(now: float) -> str:
    """The ISO time of today's midnight UTC (the daily spend cap's day)."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.isoformat(timespec="milliseconds")


def days_ago(now: float, days: int) -> str:
    return (datetime.fromtimestamp(now, UTC) - timedelta(days=days)).isoformat(timespec="milliseconds")


def spend_since(records: list[JobRecord], now: float) -> float:
    """USD spent by these jobs' attempts so far (running ones up to now)."""
    return sum(job_cost(r, now).usd for r in records)
