"""The job status enum and its allowed transitions (the one place they are defined).

QUEUED ─▶ LAUNCHING ─▶ RUNNING ─▶ UPLOADING ─▶ SUCCEEDED
             ▲  │          │           │
             │  └──────────┴───────────┴──▶ INTERRUPTED ─┐
             └───────────────────────────────────────────┘ (resume: same job, attempt + 1)
any non-terminal state ─▶ FAILED | CANCELLED
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    """Recorded by the Slack app; `Job Queued` is on the bus, no instance asked for yet."""
    LAUNCHING = "LAUNCHING"
    """The launcher asked EC2 for an instance (or has one booting); no agent phase has started."""
    RUNNING = "RUNNING"
    """The agent is working through its phases: install, data, train."""
    UPLOADING = "UPLOADING"
    """Training is over; the agent is copying weights and results to S3."""
    SUCCEEDED = "SUCCEEDED"
    """Terminal: weights are in S3 with their sha256."""
    FAILED = "FAILED"
    """Terminal: a phase, the launch or the instance failed; the record names which and why."""
    CANCELLED = "CANCELLED"
    """Terminal: a person cancelled the job."""
    INTERRUPTED = "INTERRUPTED"
    """The spot instance was reclaimed; the job waits to be relaunched from its last checkpoint."""

    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
_ACTIVE = frozenset(JobStatus) - TERMINAL

# For each target status, the statuses a job may be in to move there.
ALLOWED_SOURCES: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset(),
    JobStatus.LAUNCHING: frozenset({JobStatus.QUEUED, JobStatus.INTERRUPTED}),
    JobStatus.RUNNING: frozenset({JobStatus.LAUNCHING}),
    JobStatus.UPLOADING: frozenset({JobStatus.RUNNING}),
    JobStatus.SUCCEEDED: frozenset({JobStatus.UPLOADING}),
    JobStatus.FAILED: _ACTIVE,
    JobStatus.CANCELLED: _ACTIVE,
    JobStatus.INTERRUPTED: frozenset({JobStatus.LAUNCHING, JobStatus.RUNNING, JobStatus.UPLOADING}),
}

# The forward path a healthy job walks; events that arrive out of order are applied along it.
FORWARD = (JobStatus.QUEUED, JobStatus.LAUNCHING, JobStatus.RUNNING, JobStatus.UPLOADING, JobStatus.SUCCEEDED)


def can_transition(source: JobStatus, target: JobStatus) -> bool:
    return source in ALLOWED_SOURCES[target]


def forward_path(source: JobStatus, target: JobStatus) -> list[JobStatus]:
    """The steps from `source` to `target` along the forward path, or [] if `target` is not ahead."""
    if source not in FORWARD or target not in FORWARD:
        return []
    i, j = FORWARD.index(source), FORWARD.index(target)
    return list(FORWARD[i + 1 : j + 1]) if j > i else []
