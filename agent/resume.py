"""Verified resume: the checkpoint the run spec names is downloaded and checked against its sha256 before the
trainer is told to go on from it; anything else trains from scratch, and says why."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from agent.inputs import download_checked
from spotter import layout
from spotter.spec import ResumeFrom

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Restored:
    resumed: bool
    detail: str | None  # for the data phase's end: "resumed from epoch 7", or why not


def describe(resume: ResumeFrom, unit: str) -> str:
    if resume.current is None:
        return f"resumed from the checkpoint of attempt {resume.attempt}"
    return f"resumed from {unit} {resume.current}"


def _status(e: ClientError) -> str:
    error = e.response.get("Error", {})
    return str(error.get("Code") or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def restore(resume: ResumeFrom | None, dest: Path | None, *, s3: Any, bucket: str, unit: str) -> Restored:
    """Download `resume` to `dest` and verify it; `dest` None means the recipe cannot resume."""
    if resume is None:
        return Restored(False, None)
    uri = layout.s3_uri(bucket, resume.key)
    if dest is None:
        log.warning("the job names a checkpoint (%s) but its recipe cannot resume: training from scratch", uri)
        return Restored(False, "the recipe cannot resume: trained from scratch")
    try:
        sha256, size = download_checked(s3, bucket, resume.key, dest, resume.sha256)
    except ClientError as e:
        missing = _status(e) in ("404", "NoSuchKey", "NotFound")
        why = "is missing" if missing else f"cannot be downloaded ({e})"
        log.warning("the checkpoint %s %s: training from scratch", uri, why)
        return Restored(False, f"checkpoint {why.split(' (')[0]}: trained from scratch")
    except BotoCoreError as e:
        log.warning("the checkpoint %s cannot be downloaded (%s): training from scratch", uri, e)
        return Restored(False, "checkpoint cannot be downloaded: trained from scratch")
    if sha256 != resume.sha256:
        log.error(
            "the checkpoint %s has sha256 %s (%d bytes), the job recorded %s (%d bytes): training from scratch",
            uri,
            sha256,
            size,
            resume.sha256,
            resume.size,
        )
        return Restored(False, "checkpoint failed its sha256 check: trained from scratch")
    detail = describe(resume, unit)
    log.info("%s: %s (attempt %d's, sha256 %s verified)", uri, detail, resume.attempt, sha256)
    return Restored(True, detail)
