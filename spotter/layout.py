"""The bucket's layout: the one owner of every S3 key the project writes or reads, the one s3:// URI parser and
the one sha256 of a file.

```
agent/<version>/spotter-agent.pyz   the agent package the instances install
cache/build/<recipe>/<key>/         built frameworks, keyed by source commit + image + GPU arch
cache/pretrained/<name>             starting weights, fetched ahead of training
datasets/<name>/<version>/          datasets, with a manifest
jobs/<job>/job.json                 the run spec the agent reads
jobs/<job>/control.json             what the control plane asks of a running agent (cancel)
jobs/<job>/by/<instance ARN>/       what one attempt's instance wrote (`Outputs`):
    logs/attempt-<n>/…                  full logs
    checkpoints/…                       its latest checkpoint (what the next attempt resumes from)
    artifacts/…                         final and best weights, results
    build/…                             a build offered to the cache
    ends/attempt-<n>.json               how the attempt ended
models/<dataset>/<model>/…          promoted weights
```

An instance writes only below its own ARN: that is the one part of a key IAM can tie to the instance writing it
(the `${ec2:SourceInstanceARN}` policy variable of its role's session), so a box cannot touch another job's
outputs, nor another attempt's. The control plane takes a key an agent reports only where `written_by` says the
attempt's instance wrote it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
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
OUTPUTS_DIR = "by"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_STEM = "last"
HASH_CHUNK = 1024 * 1024

# arn:<partition>:ec2:<region>:<account>:instance/<instance id>, as IAM spells ec2:SourceInstanceARN.
_INSTANCE_ARN = re.compile(r"^arn:[a-z-]+:ec2:[a-z0-9-]+:[0-9]{12}:instance/(i-[0-9a-f]{8,17})$")
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


def logs(job_id: str) -> str:
    """Where the outputs of every attempt of the job are listed from (their logs among them)."""
    return f"{job(job_id)}{OUTPUTS_DIR}/"


def instance_arn(partition: str, region: str, account: str, instance_id: str) -> str:
    arn = f"arn:{partition}:ec2:{region}:{account}:instance/{instance_id}"
    if not _INSTANCE_ARN.match(arn):
        raise ValueError(f"{arn!r} is not an EC2 instance ARN")
    return arn


@dataclass(frozen=True)
class Outputs:
    """The keys one attempt's instance writes, all below `jobs/<job>/by/<instance ARN>/`."""

    job_id: str
    instance_arn: str

    def __post_init__(self) -> None:
        if not _INSTANCE_ARN.match(self.instance_arn):
            raise ValueError(f"{self.instance_arn!r} is not an EC2 instance ARN")

    @property
    def prefix(self) -> str:
        return f"{job(self.job_id)}{OUTPUTS_DIR}/{self.instance_arn}/"

    def log(self, attempt: int, phase: str) -> str:
        return f"{self.prefix}logs/attempt-{attempt}/{phase}.log"

    def attempt_end(self, attempt: int) -> str:
        """How the attempt ended, as its agent said it on the bus (an EventBridge-shaped event), written just before.

        Recovery reads it when the instance is gone before the bus has delivered that event: the attempt did not
        vanish.
        """
        return f"{self.prefix}ends/attempt-{attempt}.json"

    def checkpoint(self, suffix: str) -> str:
        """The attempt's latest checkpoint (one object, overwritten as training goes): the next attempt's start."""
        return f"{self.prefix}{CHECKPOINTS_DIR}/{CHECKPOINT_STEM}{suffix}"

    def artifact(self, name: str, suffix: str) -> str:
        return f"{self.prefix}artifacts/{name}{suffix}"

    def build(self, recipe: str, key: str) -> str:
        """A build this attempt uploaded, offered to the build cache."""
        return f"{self.prefix}build/{recipe}-{key}.tar.gz"


def written_by(key: str, job_id: str, instance_id: str | None) -> bool:
    """Whether `key` is among the outputs of job `job_id`'s instance `instance_id` (the only place it could write)."""
    head = f"{job(job_id)}{OUTPUTS_DIR}/"
    if instance_id is None or not key.startswith(head):
        return False
    marker = f":instance/{instance_id}/"
    at = key.find(marker, len(head))
    if at < 0:
        return False
    arn = key[len(head) : at + len(marker) - 1]
    return bool(_INSTANCE_ARN.match(arn)) and len(key) > at + len(marker)


def kind_tagging(kind: ObjectKind) -> str:
    """The `Tagging` of an upload the lifecycle rules expire (`spotter:kind=<kind>`, URL-encoded as S3 takes it)."""
    return urlencode({KIND_TAG: kind})
