"""Dataset preparation on the instance: the data on local disk, verified, in the layout the trainer reads.

Three sources: a generated set (`shapes`), a catalog dataset published under `datasets/<name>/<version>/` in
the project bucket, and a person's own `s3://bucket/prefix/` (published the same way, or any YOLO, darknet,
COCO or VOC tree). The stored copy goes to `<out>/.source/`; the layout is built beside it from hard links.
What it did goes to stdout, one line per step and per split: the phase log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from agent.datasets import shapes
from agent.datasets.convert import read, write
from agent.datasets.formats import FormatError, Tree, describe
from agent.datasets.manifest import FILES, MANIFEST, Description, Manifest
from agent.datasets.transfer import Remote, TransferError, download, human_size, listed_remotes
from agent.plan import DataStep, Step
from spotter import catalog, layout

SOURCE_DIR = ".source"
GENERATORS: dict[str, Callable[[Path], object]] = {"shapes": shapes.generate}


class DatasetError(RuntimeError):
    """A dataset that cannot be prepared; the message names the dataset and what is wrong (a file, a split…)."""


def _say(text: str) -> None:
    print(text, flush=True)


def prepare(step: DataStep, *, s3: Any, bucket: str, run: Callable[[Step], bool]) -> None:
    """Get `step.dataset` into `step.out` in `step.layout`, then run the recipe's own data commands."""
    started = time.monotonic()
    try:
        tree, desc = _fetch(step.dataset, s3, bucket, step.out / SOURCE_DIR)
        desc = _training_splits(desc)
        if step.classes and tuple(step.classes) != desc.classes:
            raise FormatError(
                f"the job expects the classes {', '.join(step.classes)}, the dataset has {', '.join(desc.classes)}"
            )
        splits = read(tree, desc, desc.classes)
        write(step.layout, step.out, tree, splits, desc.classes)
    # ValueError: the catalog's, the formats', a manifest's validation and a file that is not JSON.
    except (ValueError, TransferError, ClientError, BotoCoreError, OSError) as e:
        raise DatasetError(f"dataset {step.dataset}: {e}") from e
    for name, split in splits.items():
        _say(split.summary(name, len(desc.classes)))
    _say(f"{desc.format} → {step.layout} layout in {step.out} ({time.monotonic() - started:.1f} s)")
    if step.commands and not run(Step("data", step.commands)):
        raise DatasetError(f"dataset {step.dataset}: the recipe's data commands failed")


def _fetch(dataset: str, s3: Any, bucket: str, root: Path) -> tuple[Tree, Description]:
    if catalog.is_s3_uri(dataset):
        src_bucket, prefix = catalog.parse_s3_uri(dataset)
        return _from_s3(s3, src_bucket, prefix, root, published=False)
    entry = catalog.dataset(dataset)
    if entry.source == "s3":
        return _from_s3(s3, bucket, layout.dataset(entry.name, entry.version), root, published=True)
    GENERATORS[entry.name](root)
    tree = Tree.walk(root)
    _say(f"{entry.name}: generated {len(tree.files)} files")
    return tree, describe(tree, entry.format, entry.classes)


def _read_manifest(s3: Any, bucket: str, prefix: str) -> Manifest | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}{MANIFEST}")["Body"].read()
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return Manifest.model_validate_json(body)


def _from_s3(s3: Any, bucket: str, prefix: str, root: Path, *, published: bool) -> tuple[Tree, Description]:
    where = f"s3://{bucket}/{prefix}"
    manifest = _read_manifest(s3, bucket, prefix)
    if manifest is not None:
        remotes = [Remote(f.path, f"{prefix}{FILES}{f.path}", f.size, f.sha256) for f in manifest.files]
        _say(
            f"{where}{MANIFEST}: {manifest.name} {manifest.version} ({manifest.format}, {len(manifest.classes)} "
            f"classes, {len(remotes)} files, {human_size(manifest.size)}) from {manifest.source}"
        )
    elif published:
        raise FormatError(
            f"{where}{MANIFEST} does not exist: the version was never published, or its publishing did not "
            "finish (python -m infra.datasets publish)"
        )
    else:
        remotes = listed_remotes(s3, bucket, prefix)
        if not remotes:
            raise FormatError(f"{where} holds no files")
        checked = sum(r.s3_checksum for r in remotes)
        _say(
            f"{where}: no {MANIFEST}; {len(remotes)} files ({human_size(sum(r.size for r in remotes))}) checked "
            f"against S3's sizes, {checked} also against S3's SHA-256"
        )
    _say(download(s3, bucket, remotes, root).line())
    tree = Tree(root, (r.path for r in remotes))
    if manifest is not None:
        return tree, manifest.description
    desc = describe(tree)
    splits = ", ".join(f"{split} {path}" for split, path in desc.splits.items())
    _say(f"detected {desc.format}: {splits}; classes {', '.join(desc.classes)}")
    return tree, desc


def _training_splits(desc: Description) -> Description:
    """Train and val are needed; a set shipped with train and test only (as many are) validates on test."""
    splits = dict(desc.splits)
    if "val" not in splits and "test" in splits:
        splits["val"] = splits.pop("test")
        _say(f"no val split: validating on the test split ({splits['val']})")
    missing = [s for s in ("train", "val") if s not in splits]
    if missing:
        raise FormatError(f"no {' or '.join(missing)} split (found: {', '.join(splits) or 'none'})")
    return desc.model_copy(update={"splits": splits})
