"""The events on the project's EventBridge bus: one pydantic model per detail-type, and the bus itself.

Deployables meet here and in the jobs store. Anyone may add rules on the bus; these shapes are its API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from spotter import layout
from spotter.aws import client

SOURCE_BOT = "spotter.bot"
SOURCE_LAUNCHER = "spotter.launcher"
SOURCE_AGENT = "spotter.agent"
# The control plane's own handlers (recorder, EC2 events, watchdog): what they decided, for the notifier.
SOURCE_CONTROL = "spotter.control"

ErrorKind = Literal[
    "oom",
    "nan_loss",
    "killed",
    "crash",
    "exit",
    "image",  # the machine image lacks what the recipe needs (agent.image): found before anything is installed
    "launch",
    "timeout",
    "capacity",
    "quota",
    "budget",
    "vanished",
    "heartbeat",
    "attempts",
]
Phase = Literal["install", "build", "data", "train", "evaluate", "upload", "launch"]
PHASES: tuple[str, ...] = ("install", "build", "data", "train", "evaluate", "upload")


class JobEvent(BaseModel):
    """Fields every event carries. `seq` orders one attempt's events (EventBridge does not)."""

    # Schemas build on first use: the Slack function's ack path never touches an event.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    detail_type: ClassVar[str]
    source: ClassVar[str]

    job_id: str
    attempt: int = Field(1, ge=1)
    seq: int = Field(0, ge=0)
    at: float = Field(default_factory=time.time)


class JobQueued(JobEvent):
    detail_type = "Job Queued"
    source = SOURCE_BOT


class JobLaunched(JobEvent):
    detail_type = "Job Launched"
    source = SOURCE_LAUNCHER
    instance_id: str
    instance_type: str
    availability_zone: str | None = None
    market: Literal["spot", "on-demand"]
    price_usd_hour: float | None = None
    resumed_from: int | None = None  # the epoch or iteration of the checkpoint this attempt resumes from


class JobPhase(JobEvent):
    detail_type = "Job Phase"
    source = SOURCE_AGENT
    phase: Phase
    state: Literal["started", "finished", "cached"]
    seconds: float | None = None
    detail: str | None = Field(None, max_length=500)


class JobProgress(JobEvent):
    detail_type = "Job Progress"
    source = SOURCE_AGENT
    unit: Literal["epoch", "iteration"]
    current: int = Field(ge=0)
    total: int | None = Field(None, ge=1)
    loss: float | None = None
    eta_seconds: float | None = None

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.current / self.total) if self.total else None


class JobMetric(JobEvent):
    detail_type = "Job Metric"
    source = SOURCE_AGENT
    unit: Literal["epoch", "iteration"]
    current: int = Field(ge=0)
    map50: float | None = Field(None, ge=0, le=1)
    map50_95: float | None = Field(None, ge=0, le=1)
    precision: float | None = Field(None, ge=0, le=1)
    recall: float | None = Field(None, ge=0, le=1)


class Artifact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    name: str
    key: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class JobHeartbeat(JobEvent):
    """The agent is alive (sent when nothing else has been for a while: a long install, build or data phase)."""

    detail_type = "Job Heartbeat"
    source = SOURCE_AGENT
    phase: Phase | None = None


class JobCheckpoint(JobEvent):
    detail_type = "Job Checkpoint"
    source = SOURCE_AGENT
    artifact: Artifact
    current: int | None = None


class JobError(JobEvent):
    detail_type = "Job Error"
    source = SOURCE_AGENT
    phase: Phase
    kind: ErrorKind
    message: str = Field(max_length=2000)
    last_lines: list[str] = Field(default_factory=list, max_length=50)


class FinalMetrics(BaseModel):
    """The trained weights' scores as the framework printed them last (fractions), with per-class AP where given."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    map50: float | None = Field(None, ge=0, le=1)
    map50_95: float | None = Field(None, ge=0, le=1)
    precision: float | None = Field(None, ge=0, le=1)
    recall: float | None = Field(None, ge=0, le=1)
    per_class_ap50: dict[str, float] = Field(default_factory=dict)


class JobFinished(JobEvent):
    detail_type = "Job Finished"
    source = SOURCE_AGENT
    artifacts: list[Artifact]
    seconds: float | None = None
    metrics: FinalMetrics | None = None  # None: the framework printed no final scores


class JobBuildReady(JobEvent):
    """A framework build this attempt uploaded with its outputs, offered to the shared build cache."""

    detail_type = "Job Build Ready"
    source = SOURCE_AGENT
    recipe: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    key: str = Field(pattern=r"^[0-9a-f]{64}$")  # the build cache key: sha256 of what shaped the build
    artifact: Artifact

    # Where builds live: the agent reads it, and uploads its own build with its outputs (`layout.Outputs.build`);
    # the build cache function copies that here.
    @staticmethod
    def cache_object_key(recipe: str, key: str) -> str:
        return layout.build_cache(recipe, key)

    def offered_by(self, instance_id: str | None) -> bool:
        """The artifact is where that instance, the attempt's, uploads this build (nothing else could write it)."""
        key = self.artifact.key
        return layout.written_by(key, self.job_id, instance_id) and key.endswith(
            f"/build/{self.recipe}-{self.key}.tar.gz"
        )


class JobInterrupted(JobEvent):
    """The agent saw EC2's spot interruption notice, saved what it could and is stopping: relaunch from `checkpoint`."""

    detail_type = "Job Interrupted"
    source = SOURCE_AGENT
    action: str = Field("terminate", max_length=20)  # what EC2 announced: terminate, stop or hibernate
    notice_at: float | None = None  # when the agent saw the notice
    checkpoint: Artifact | None = None  # uploaded after the notice (None: nothing to resume from)
    current: int | None = None  # the epoch or iteration the checkpoint holds


class JobCancelled(JobEvent):
    """The agent stopped training on a cancel and uploaded what it had."""

    detail_type = "Job Cancelled"
    source = SOURCE_AGENT
    artifacts: list[Artifact] = Field(default_factory=list)


class JobCancelRequested(JobEvent):
    """A person asked to cancel the job (the requester, or an admin)."""

    detail_type = "Job Cancel Requested"
    source = SOURCE_BOT
    by: str = Field(pattern=r"^[A-Z0-9]{2,32}$")


class JobRelaunch(JobEvent):
    """The control plane wants the next attempt of an INTERRUPTED job launched (the launcher takes it like Job Queued)."""

    detail_type = "Job Relaunch"
    source = SOURCE_CONTROL


class JobChanged(JobEvent):
    """What the one writer of job state did with an event: the notifier's input (it never decides state).

    `cause` is the detail-type that caused the change, or the control plane's own reason (`Watchdog`, `Instance
    Vanished`, …); `note` is a thread message the control plane wants said, in Slack mrkdwn.
    """

    detail_type = "Job Changed"
    source = SOURCE_CONTROL
    cause: str = Field(max_length=60)
    status: str
    status_changed: bool = False
    phase_changed: bool = False
    phase: str | None = None
    cached: bool = False
    new_best: bool = False
    note: str | None = Field(None, max_length=3000)


EVENT_TYPES: dict[str, type[JobEvent]] = {
    cls.detail_type: cls
    for cls in (
        JobQueued,
        JobLaunched,
        JobPhase,
        JobProgress,
        JobMetric,
        JobCheckpoint,
        JobError,
        JobFinished,
        JobBuildReady,
        JobHeartbeat,
        JobInterrupted,
        JobCancelled,
        JobCancelRequested,
        JobRelaunch,
        JobChanged,
    )
}


class UnknownEvent(ValueError):
    pass


def from_eventbridge(event: dict[str, Any]) -> JobEvent:
    """Parse an EventBridge event (as a rule delivers it to a target) into its model."""
    cls = EVENT_TYPES.get(event.get("detail-type", ""))
    if cls is None:
        raise UnknownEvent(f"not a Spotter event: {event.get('detail-type')!r}")
    return cls.model_validate(event.get("detail") or {})


def to_eventbridge(event: JobEvent) -> dict[str, Any]:
    """The event as a rule delivers it (what `from_eventbridge` reads back)."""
    return {"source": event.source, "detail-type": event.detail_type, "detail": event.model_dump(mode="json")}


def to_entry(event: JobEvent, bus_name: str, source: str | None = None) -> dict[str, Any]:
    return {
        "EventBusName": bus_name,
        "Source": source or event.source,
        "DetailType": event.detail_type,
        "Detail": event.model_dump_json(),
        "Resources": [f"spotter:job/{event.job_id}"],
    }


class BusError(RuntimeError):
    pass


class Bus:
    """Puts events on the project's bus, in batches of ten, retrying entries EventBridge rejects."""

    MAX_BATCH = 10
    ATTEMPTS = 4
    BACKOFF_SECONDS = 0.5

    def __init__(self, bus_name: str, events_client: Any = None) -> None:
        self.bus_name = bus_name
        self._client = events_client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = client("events")
        return self._client

    def put(self, events: Sequence[JobEvent] | JobEvent, source: str | None = None) -> None:
        """Put events (their own source unless `source` is given, e.g. a launcher's JobError)."""
        batch = [events] if isinstance(events, JobEvent) else list(events)
        for i in range(0, len(batch), self.MAX_BATCH):
            self._put_batch([to_entry(e, self.bus_name, source) for e in batch[i : i + self.MAX_BATCH]])

    def _put_batch(self, entries: list[dict[str, Any]]) -> None:
        pending = entries
        for attempt in range(self.ATTEMPTS):
            resp = self.client.put_events(Entries=pending)
            if not resp.get("FailedEntryCount"):
                return
            pending = [e for e, r in zip(pending, resp["Entries"], strict=True) if r.get("ErrorCode")]
            if attempt + 1 < self.ATTEMPTS:
                time.sleep(self.BACKOFF_SECONDS * 2**attempt)
        codes = sorted({r.get("ErrorCode", "?") for r in resp["Entries"] if r.get("ErrorCode")})
        raise BusError(f"{len(pending)} event(s) rejected by the bus: {', '.join(codes)}")


def dumps(events: Iterable[JobEvent]) -> str:
    """Events as JSON lines (the agent's `parse` output and the local stack's log)."""
    return "\n".join(json.dumps({"detail-type": e.detail_type, **e.model_dump()}) for e in events)
