"""Spot interruption on the local stack: how long from EC2's notice to the checkpoint in S3 (a 250 MB one), and how
much work the resumed attempt redoes.

A YOLOv8n job (the Ultralytics stand-in, its checkpoint made 250 MB) is interrupted halfway: the IMDS stand-in
announces the reclaim and the instance is terminated two minutes later, as EC2 does. Measured:

- notice → checkpoint: from the announcement to the job record showing the attempt INTERRUPTED with the checkpoint
  the agent uploaded after the notice (sha256 recorded), i.e. the checkpoint is in S3 and reported;
- work lost on resume: epochs the first attempt had completed beyond the epoch the second attempt resumed after,
  against one checkpoint interval (the stand-in, like Ultralytics, writes last.pt every epoch).

Targets: notice → checkpoint under 30 s; work lost at most one checkpoint interval.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from bench.results import at_most, publish

CHECKPOINT_BYTES = 250 * 1000 * 1000
EPOCHS = 6
EPOCH_SECONDS = 3.0
NOTICE_TARGET_SECONDS = 30.0
NOTICE_SECONDS = 120.0  # as in AWS: the instance is terminated two minutes after the notice
CHECKPOINT_INTERVAL_EPOCHS = 1


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"bench spot: timed out waiting for {what}")


def measure() -> dict[str, Any]:
    from infra.local.stack import LocalStack
    from spotter.status import JobStatus

    stack = LocalStack(
        trainer="standin",
        emit=lambda record: None,
        standin_epoch_seconds=EPOCH_SECONDS,
        image_environ={"SPOTTER_STANDIN_WEIGHTS_BYTES": str(CHECKPOINT_BYTES)},
        spot_notice_seconds=NOTICE_SECONDS,
    )
    with stack:
        stack.slash(f"shapes yolov8n epochs={EPOCHS}")
        job = stack.jobs[-1]

        def halfway() -> bool:
            rec = stack.store.get(job)
            return bool(rec.progress and rec.progress.fraction and rec.progress.fraction >= 0.5)

        _wait(halfway, 300, "half of the training")
        host = _wait(lambda: stack.hosts.host_for_job(job), 10, "the job's host")
        noticed = time.time()
        stack.hosts.interrupt(host)

        def checkpointed() -> Any:
            rec = stack.store.get(job)
            att = rec.attempts[0]
            if att.ended_reason == "interrupted" and rec.checkpoint and rec.checkpoint.at >= noticed:
                return rec
            return None

        rec = _wait(checkpointed, 120, "the checkpoint after the notice")
        notice_seconds = time.time() - noticed
        size = rec.checkpoint.size
        done = stack.wait(job, JobStatus.SUCCEEDED, 600)
        upload_seconds = _plain_upload(stack.resources.bucket, size)
    first, second = done.attempts[0], done.attempts[1]
    reached = first.progress_at_end or 0
    completed = max(0, reached - 1)  # progress names the epoch under way
    resumed = second.resumed_from or 0
    return {
        "notice_to_checkpoint_s": round(notice_seconds, 2),
        "checkpoint_bytes": size,
        "epochs_completed_before_notice": completed,
        "resumed_after_epoch": resumed,
        "work_lost_epochs": max(0, completed - resumed),
        "attempts": len(done.attempts),
        "plain_upload_s": round(upload_seconds, 2),
    }


def _plain_upload(bucket: str, size: int) -> float:
    """Seconds boto3's upload_file alone takes to put `size` bytes in the same local S3: the notice's baseline."""
    import tempfile

    import boto3

    with tempfile.NamedTemporaryFile() as f:
        f.truncate(size)
        t = time.perf_counter()
        boto3.client("s3").upload_file(f.name, bucket, "bench/plain-upload")
        return time.perf_counter() - t


def main() -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # the in-process Lambdas' logs and metrics (CloudWatch in AWS) stay off the figures
    try:
        f = measure()
    finally:
        sys.stdout = out
    mb = f["checkpoint_bytes"] / 1e6
    return publish(
        [
            at_most(
                f"spot notice -> checkpoint in S3 ({mb:.0f} MB)",
                f["notice_to_checkpoint_s"],
                "s",
                NOTICE_TARGET_SECONDS,
                f"plain upload of {mb:.0f} MB {f['plain_upload_s']:.1f} s",
            ),
            at_most(
                "work lost on resume",
                f["work_lost_epochs"],
                "epochs",
                CHECKPOINT_INTERVAL_EPOCHS,
                f"{CHECKPOINT_INTERVAL_EPOCHS} checkpoint interval; completed {f['epochs_completed_before_notice']}, "
                f"resumed after {f['resumed_after_epoch']}",
            ),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
