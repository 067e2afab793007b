"""The build cache on the instance: check out a framework at its pinned commit, then restore its build from S3 or
build it and offer the result to the cache.

Builds are read from `cache/build/<recipe>/<key>/build.tar.gz`, but the instance writes only under its job's
prefix (`jobs/<job>/build/…`): third-party code runs here, so the control plane (lambdas.build_cache) decides
what enters the cache that later jobs trust. Outputs must be relocatable: each job checks out into its own folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from agent.plan import BuildStep, Source, Step
from agent.uploader import TRANSFER_CONFIG
from spotter import layout
from spotter.events import Artifact
from spotter.layout import sha256_of

log = logging.getLogger(__name__)

# Part of every key: bump it when what goes into a key or an archive changes, so old entries are never reused.
KEY_VERSION = 1
# Stands for the checkout folder in the key: each job checks out under its own work directory.
SOURCE_DIR_TOKEN = "{source_dir}"
# Local git queries (rev-parse) only; fetches run as build steps under the phase's deadline.
GIT_QUERY_TIMEOUT_SECONDS = 60
# A private or mistyped repository must fail, not wait for a password nobody will type.
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0"}
_FULL_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class BuildFailed(Exception):
    """The checkout or the build did not produce what the recipe needs; the message is for people."""


@dataclass(frozen=True)
class BuildOutcome:
    key: str
    cached: bool
    artifact: Artifact | None  # the build this attempt uploaded (None when restored, or when the upload failed)


def cache_key(step: BuildStep, *, commit: str, image_id: str, gpu_arch: str) -> str:
    """The hex sha256 of everything that shapes the build: recipe, repository, resolved commit, commands,
    outputs, environment, machine image and GPU architecture."""
    source_dir = str(step.source.dir)

    def portable(text: str) -> str:
        return text.replace(source_dir, SOURCE_DIR_TOKEN)

    shaped = {
        "version": KEY_VERSION,
        "recipe": step.recipe,
        "repo": step.source.repo,
        "commit": commit,
        "commands": [[portable(arg) for arg in argv] for argv in step.commands],
        "outputs": list(step.outputs),
        "env": {name: portable(value) for name, value in step.env.items()},
        "image_id": image_id,
        "gpu_arch": gpu_arch,
    }
    return hashlib.sha256(json.dumps(shaped, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def ensure_build(
    step: BuildStep,
    *,
    s3: Any,
    bucket: str,
    outputs: layout.Outputs,
    attempt: int,
    image_id: str,
    gpu_arch: str,
    run: Callable[[Step], bool],
) -> BuildOutcome:
    """Check out the source, then restore its build from the cache or build it and upload the result with the attempt's outputs.

    `run` runs a step in the build phase (its output goes to the build log) and says whether it succeeded.
    """
    _check_outputs_declared(step.outputs)
    commit = checkout(step.source, run)
    key = cache_key(step, commit=commit, image_id=image_id, gpu_arch=gpu_arch)
    log.info("%s at %s on %s/%s: build cache key %s", step.recipe, commit, image_id, gpu_arch, key)
    if _restore(step, s3, bucket, key):
        return BuildOutcome(key=key, cached=True, artifact=None)
    if not run(Step("build", step.commands, cwd=step.source.dir, env=step.env)):
        raise BuildFailed(f"the {step.recipe} build failed (see the build log)")
    missing = _missing_outputs(step)
    if missing:
        raise BuildFailed(f"the {step.recipe} build finished without {', '.join(missing)}")
    artifact = _store(step, s3, bucket, outputs, attempt, key)
    return BuildOutcome(key=key, cached=False, artifact=artifact)


# -- the checkout -----------------------------------------------------------------------------------------


def checkout(source: Source, run: Callable[[Step], bool]) -> str:
    """Check `source.ref` out into `source.dir` (a shallow fetch where the server allows it); returns the commit.

    An existing checkout already at that commit is used as it is.
    """
    where = str(source.dir)
    if (source.dir / ".git").is_dir():
        head = _rev_parse(source.dir, "HEAD")
        if head is not None and head == _rev_parse(source.dir, f"{source.ref}^{{commit}}"):
            log.info("using the existing checkout of %s at %s", source.repo, head)
            return head
        prepare: tuple[tuple[str, ...], ...] = ()
    else:
        source.dir.parent.mkdir(parents=True, exist_ok=True)
        prepare = (("git", "init", "--quiet", where),)
    switch = ("git", "-C", where, "-c", "advice.detachedHead=false", "checkout", "--force", "--detach")
    # A named ref is kept as a local tag, so a later attempt in the same folder finds it without fetching.
    wanted = source.ref if _FULL_COMMIT.match(source.ref) else f"+{source.ref}:{_tag_ref(source.ref)}"
    shallow = (
        *prepare,
        ("git", "-C", where, "fetch", "--depth", "1", source.repo, wanted),
        (*switch, "FETCH_HEAD"),
    )
    if not run(Step("build", shallow, env=GIT_ENV)):
        # Some servers refuse to serve a single commit by id: take the whole history and pick the ref from it.
        log.warning("a shallow fetch of %s at %s failed: fetching the whole history", source.repo, source.ref)
        unshallow = ("--unshallow",) if (source.dir / ".git" / "shallow").exists() else ()
        full = (
            ("git", "-C", where, "fetch", "--tags", *unshallow, source.repo, "+refs/heads/*:refs/remotes/origin/*"),
            (*switch, source.ref),
        )
        if not run(Step("build", full, env=GIT_ENV)):
            raise BuildFailed(f"cannot check out {source.repo} at {source.ref} (see the build log)")
    commit = _rev_parse(source.dir, "HEAD")
    if commit is None:
        raise BuildFailed(f"{source.dir} has no commit checked out after fetching {source.repo} at {source.ref}")
    if _FULL_COMMIT.match(source.ref) and commit != source.ref:
        raise BuildFailed(f"{source.repo}: checked out {commit}, not the pinned commit {source.ref}")
    return commit


def _tag_ref(ref: str) -> str:
    return ref if ref.startswith("refs/") else f"refs/tags/{ref}"


def _rev_parse(repo_dir: Path, rev: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo_dir), "rev-parse", "--verify", "--quiet", rev],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GIT_QUERY_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise BuildFailed(f"git rev-parse {rev} in {repo_dir} failed: {e}") from None
    return done.stdout.strip() if done.returncode == 0 else None


# -- the cache ---------------------------------------------------------------------------------------------


def _check_outputs_declared(outputs: Sequence[str]) -> None:
    if not outputs:
        raise BuildFailed("the build step names no outputs to cache")
    for output in outputs:
        path = PurePosixPath(output)
        if path.is_absolute() or ".." in path.parts or str(path) in ("", "."):
            raise BuildFailed(f"build output {output!r} must be a path inside the checkout")


def _missing_outputs(step: BuildStep) -> list[str]:
    return [output for output in step.outputs if not (step.source.dir / output).exists()]


def _status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _restore(step: BuildStep, s3: Any, bucket: str, key: str) -> bool:
    """Extract the cached build over the checkout if there is one and its bytes are what its metadata says."""
    object_key = layout.build_cache(step.recipe, key)
    try:
        head = s3.head_object(Bucket=bucket, Key=object_key)
    except ClientError as e:
        if _status(e) != 404:
            log.warning("cannot look up the build cache (%s): building", e)
        else:
            log.info("no build in the cache for key %s: building", key)
        return False
    metadata = head.get("Metadata", {})
    built_by = metadata.get("built-by", "unknown")
    with tempfile.TemporaryDirectory(prefix=".build-cache-", dir=step.source.dir.parent) as tmp:
        archive = Path(tmp) / "build.tar.gz"
        try:
            s3.download_file(bucket, object_key, str(archive), Config=TRANSFER_CONFIG)
        except (ClientError, BotoCoreError) as e:
            log.warning("cannot download the cached build %s (%s): building", object_key, e)
            return False
        actual, _ = sha256_of(archive)
        if actual != metadata.get("sha256"):
            log.warning(
                "ignoring the cached build %s: its sha256 is %s, its metadata says %s; building",
                object_key,
                actual,
                metadata.get("sha256"),
            )
            return False
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(step.source.dir, filter="data")
        except (tarfile.TarError, OSError) as e:
            log.warning("cannot extract the cached build %s (%s): building", object_key, e)
            return False
    missing = _missing_outputs(step)
    if missing:
        log.warning("the cached build %s lacks %s: building", object_key, ", ".join(missing))
        return False
    log.info("build restored from cache %s (built by job %s)", key, built_by)
    return True


def pack(root: Path, outputs: Sequence[str], archive: Path) -> None:
    """Write `outputs` (files or folders under `root`) to a tar.gz in sorted order, without owner names."""
    paths: set[Path] = set()
    for output in outputs:
        path = root / output
        paths.add(path)
        if path.is_dir() and not path.is_symlink():
            paths.update(path.rglob("*"))

    def anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(paths, key=lambda p: p.relative_to(root).as_posix()):
            tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False, filter=anonymous)


def _store(step: BuildStep, s3: Any, bucket: str, outputs: layout.Outputs, attempt: int, key: str) -> Artifact | None:
    """Upload the build with the attempt's outputs for the cache function to promote; a failed upload costs only
    the next job a rebuild, so it is logged, not raised."""
    object_key = outputs.build(step.recipe, key)
    with tempfile.TemporaryDirectory(prefix=".build-cache-", dir=step.source.dir.parent) as tmp:
        archive = Path(tmp) / "build.tar.gz"
        pack(step.source.dir, step.outputs, archive)
        sha256, size = sha256_of(archive)
        metadata = {"sha256": sha256, "job": outputs.job_id, "attempt": str(attempt)}
        try:
            s3.upload_file(
                str(archive),
                bucket,
                object_key,
                ExtraArgs={"Metadata": metadata, "Tagging": layout.kind_tagging("build-offer")},
                Config=TRANSFER_CONFIG,
            )
        except (ClientError, BotoCoreError, S3UploadFailedError) as e:
            log.warning("the build could not be stored for the cache (%s); carrying on without it", e)
            return None
    log.info("build stored for the cache as %s (%s, %d bytes)", key, object_key, size)
    return Artifact(name="build", key=object_key, sha256=sha256, size=size)
