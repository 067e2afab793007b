"""The bucket's layout: the one owner of every S3 key the project writes or reads, the one s3:// URI parser and
the one sha256 of a file.

```
agent/<version>/spotter-agent.pyz   the agent package the instances install
cache/build/<recipe>/<key>/         built frameworks, keyed by source commit + image + GPU arch
cache/pretrained/<name>             starting weights, fetched ahead of training
datasets/<name>/<version>/          datasets, with a manifest
jobs/<job>/job.json                 the run spec the agent reads
jobs/<job>/control.json             what the control plane asks of a running agent (cancel)
jobs/<job>/logs/attempt-<n>/…       full logs
jobs/<job>/checkpoints/…            the latest checkpoint (what the next attempt resumes from)
jobs/<job>/artifacts/…              final and best weights, results
jobs/<job>/build/…                  a build offered to the cache
models/<dataset>/<model>/…          promoted weights
```
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

AGENT_PACKAGE = "spotter-agent.pyz"
# The tag the bucket's lifecycle rules select short-lived objects by (a rule's prefix cannot reach past jobs/<job>/):
# checkpoints and logs expire some days after their last write, a build once the cache could have copied it.
KIND_TAG = "spotter:kind"
ObjectKind = Literal["checkpoint", "log", "build-offer"]
PRETRAINED_PREFIX = "cache/pretrained/"
BUILD_CACHE_PREFIX = "cache/build/"
DATASETS_PREFIX = "datasets/"
JOBS_PREFIX = "jobs/"
MODELS_PREFIX = "models/"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_STEM = "last"
HASH_CHUNK = 1024 * 1024

_S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.*)$")


class S3UriError(ValueError):
    pass


def parse_s3_uri(uri: str, *, key_required: bool = True) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`; the key may be a prefix (`…/`) or, with key_required=False, empty."""
    m = _S3_URI.match(uri)
    if not m or (key_required and not m.group(2)):
        raise S3UriError(f"{uri!r} is not an s3://BUCKET/KEY url")
    return m.group(1), m.group(2)


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def sha256_of(path: Path) -> tuple[str, int]:
    """The file's sha256 and size, read in chunks: weights and checkpoints can be gigabytes."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# -- shared inputs -------------------------------------------------------------------------------------------


def agent_package(version: str) -> str:
    return f"agent/{version}/{AGENT_PACKAGE}"


def pretrained(name: str) -> str:
    return f"{PRETRAINED_PREFIX}{name}"


def build_cache(recipe: str, key: str) -> str:
    """A promoted build, which later jobs restore (only the build cache function writes here)."""
    return f"{BUILD_CACHE_PREFIX}{recipe}/{key}/build.tar.gz"


def dataset(name: str, version: str) -> str:
    """A published dataset version's prefix (its manifest.json and files/ are below it)."""
    return f"{DATASETS_PREFIX}{name}/{version}/"


def model(dataset: str, model: str) -> str:
    """Where promoted weights of `model` trained on `dataset` live."""
    return f"{MODELS_PREFIX}{dataset}/{model}/"


# -- one job's prefix ------------------------------------------------------------------------------------------


def job(job_id: str) -> str:
    return f"{JOBS_PREFIX}{job_id}/"


def run_spec(job_id: str) -> str:
    return f"{job(job_id)}job.json"


def control(job_id: str) -> str:
    """What the control plane asks of the job's running agent (a cancel); the agent polls it."""
    return f"{job(job_id)}control.json"


def log(job_id: str, attempt: int, phase: str) -> str:
    return f"{job(job_id)}logs/attempt-{attempt}/{phase}.log"


def logs(job_id: str) -> str:
    return f"{job(job_id)}logs/"


def attempt_end(job_id: str, attempt: int) -> str:
    """How one attempt ended, as its agent said it on the bus (an EventBridge-shaped event), written just before.

    Recovery reads it when the instance is gone before the bus has delivered that event: the attempt did not vanish.
    """
    return f"{job(job_id)}ends/attempt-{attempt}.json"


def checkpoint(job_id: str, suffix: str) -> str:
    """The job's latest checkpoint (one object, overwritten as training goes), which the next attempt resumes from."""
    return f"{job(job_id)}{CHECKPOINTS_DIR}/{CHECKPOINT_STEM}{suffix}"


def artifact(job_id: str, name: str, suffix: str) -> str:
    return f"{job(job_id)}artifacts/{name}{suffix}"


def job_build(job_id: str, recipe: str, key: str) -> str:
    """A build this job uploaded, offered to the build cache."""
    return f"{job(job_id)}build/{recipe}-{key}.tar.gz"


def kind_tagging(kind: ObjectKind) -> str:
    """The `Tagging` of an upload the lifecycle rules expire (`spotter:kind=<kind>`, URL-encoded as S3 takes it)."""
    return urlencode({KIND_TAG: kind})
