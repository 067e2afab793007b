"""Who may do what, and when: the caps a new job must fit under, and who may cancel a job. Pure: data in, decision out."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from spotter.store import JobRecord


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


@dataclass(frozen=True)
class CancelRefused:
    """Why `user` may not cancel the job: it has ended, or it is someone else's and they are no admin."""

    reason: Literal["ended", "not_allowed", "already_requested"]


def cancel_refused(rec: JobRecord, user: str, admins: Collection[str]) -> CancelRefused | None:
    """None when `user` may cancel `rec` now: the job is still going, and they requested it or are an admin."""
    if rec.status.is_terminal():
        return CancelRefused("ended")
    if user != rec.spec.requested_by and user not in admins:
        return CancelRefused("not_allowed")
    if rec.cancel is not None:
        return CancelRefused("already_requested")
    return None
