"""Datasets in the project bucket: publish a version, verify one against its manifest, list them.

A version is immutable: `datasets/<name>/<version>/files/…` and, uploaded last, its `manifest.json` (every
file's size and SHA-256, the format, classes and splits). A publish that stops half-way leaves no manifest;
running it again uploads what is missing and writes the manifest. The instances prepare datasets from here.

    python -m infra.datasets publish --name persons --version 1 --format darknet --from persons.zip --bucket B
    python -m infra.datasets publish --name boats --version 2 --from export/ --bucket B [--classes boat,dock]
    python -m infra.datasets verify --name persons --version 1 --bucket B [--quick]
    python -m infra.datasets list --bucket B
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from agent.datasets.convert import read
from agent.datasets.formats import Tree, describe
from agent.datasets.manifest import (
    FILES,
    FORMATS,
    MANIFEST,
    NAME_RE,
    VERSION_RE,
    FileEntry,
    Format,
    Manifest,
)
from agent.datasets.transfer import LARGE_BYTES, WORKERS, human_size, list_objects, listed_remotes, s3_sha256
from spotter import catalog, layout
from spotter.aws import client

# Files archivers and desktops add that are no part of a dataset.
JUNK_DIRS = frozenset({"__MACOSX"})
JUNK_NAMES = frozenset({"Thumbs.db", "desktop.ini"})
_SMALL = TransferConfig(multipart_threshold=LARGE_BYTES, use_threads=False)
_LARGE = TransferConfig(multipart_threshold=LARGE_BYTES, multipart_chunksize=16 * 1024 * 1024, max_concurrency=WORKERS)
UPLOAD_ARGS = {"ChecksumAlgorithm": "SHA256"}  # S3 checks each upload and keeps the checksum


class PublishError(RuntimeError):
    """A publish, verify or list that cannot go on; the message says why."""


def _wanted(rel: Path) -> bool:
    return not any(p in JUNK_DIRS or p.startswith(".") for p in rel.parts) and rel.name not in JUNK_NAMES


@contextmanager
def staged(src: Path) -> Iterator[Path]:
    """The dataset's root folder: `src` itself, or a zip extracted to a temporary folder. A lone top folder
    (persons.zip holds `persons/…`) is the root."""
    with tempfile.TemporaryDirectory(prefix="spotter-dataset-") as tmp:
        if src.is_file():
            if not zipfile.is_zipfile(src):
                raise PublishError(f"{src} is neither a folder nor a zip file")
            with zipfile.ZipFile(src) as zf:
                zf.extractall(tmp)  # zipfile drops absolute paths and `..` from member names
            root = Path(tmp)
        elif src.is_dir():
            root = src
        else:
            raise PublishError(f"{src} does not exist")
        entries = [p for p in root.iterdir() if _wanted(p.relative_to(root))]
        while len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
            entries = [p for p in root.iterdir() if _wanted(p.relative_to(root))]
        yield root


def local_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and _wanted(p.relative_to(root))
    )


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def build_manifest(
    root: Path, *, name: str, version: str, fmt: Format | None, classes: tuple[str, ...], source: str
) -> Manifest:
    """Describe the tree, read every split (a bad label line fails here, not on a GPU), hash every file."""
    files = local_files(root)
    tree = Tree(root, files)
    desc = describe(tree, fmt, classes)
    for split_name, split in read(tree, desc, desc.classes).items():
        print(split.summary(split_name, len(desc.classes)), flush=True)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:  # hashlib lets go of the GIL on large buffers
        digests = list(pool.map(lambda f: layout.sha256_of(root / f)[0], files))
    entries = tuple(
        FileEntry(path=f, size=(root / f).stat().st_size, sha256=d) for f, d in zip(files, digests, strict=True)
    )
    return Manifest(
        name=name,
        version=version,
        format=desc.format,
        classes=desc.classes,
        splits=desc.splits,
        files=entries,
        source=source,
    )


def publish(
    s3: Any,
    bucket: str,
    *,
    name: str,
    version: str,
    src: Path,
    fmt: Format | None = None,
    classes: tuple[str, ...] = (),
    source: str = "",
) -> Manifest:
    if not NAME_RE.match(name):
        raise PublishError(f"name {name!r}: lower-case letters, digits and hyphens, 2 to 41 characters")
    if not VERSION_RE.match(version):
        raise PublishError(f"version {version!r}: letters, digits, `.`, `_` and `-`, up to 41 characters")
    prefix = layout.dataset(name, version)
    if _exists(s3, bucket, prefix + MANIFEST):
        raise PublishError(f"s3://{bucket}/{prefix} is published already; versions never change: publish a new one")
    with staged(src) as root:
        manifest = build_manifest(root, name=name, version=version, fmt=fmt, classes=classes, source=source or src.name)
        print(
            f"{name} {version}: {manifest.format}, {len(manifest.classes)} classes, splits "
            f"{', '.join(f'{k} {v}' for k, v in manifest.splits.items())}; {len(manifest.files)} files, "
            f"{human_size(manifest.size)}",
            flush=True,
        )
        uploaded = _upload(s3, bucket, prefix, root, manifest)
    # Last, and only if nobody published the version meanwhile: a version with a manifest is whole.
    s3.put_object(
        Bucket=bucket,
        Key=prefix + MANIFEST,
        Body=manifest.model_dump_json(indent=1).encode(),
        ContentType="application/json",
        IfNoneMatch="*",
    )
    print(
        f"uploaded {uploaded} files, {len(manifest.files) - uploaded} already there; s3://{bucket}/{prefix}{MANIFEST}"
    )
    return manifest


def _upload(s3: Any, bucket: str, prefix: str, root: Path, manifest: Manifest) -> int:
    """Upload the files an earlier, interrupted publish did not; returns how many were sent."""
    there = {r.path: r for r in listed_remotes(s3, bucket, prefix + FILES)}

    def present(f: FileEntry) -> bool:
        r = there.get(f.path)
        return r is not None and r.size == f.size and r.s3_checksum and s3_sha256(s3, bucket, r.key) == f.sha256

    def send(f: FileEntry, config: TransferConfig) -> bool:
        if present(f):
            return False
        s3.upload_file(str(root / f.path), bucket, prefix + FILES + f.path, ExtraArgs=UPLOAD_ARGS, Config=config)
        return True

    large = [f for f in manifest.files if f.size >= LARGE_BYTES]
    sent = sum(send(f, _LARGE) for f in large)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        sent += sum(pool.map(lambda f: send(f, _SMALL), [f for f in manifest.files if f.size < LARGE_BYTES]))
    return sent


def read_manifest(s3: Any, bucket: str, name: str, version: str) -> Manifest:
    key = layout.dataset(name, version) + MANIFEST
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as e:
        raise PublishError(f"s3://{bucket}/{key} cannot be read ({e.response.get('Error', {}).get('Code')})") from e
    return Manifest.model_validate_json(body)


def verify(s3: Any, bucket: str, name: str, version: str, *, quick: bool = False) -> list[str]:
    """What is wrong with a published version: missing or resized files and, unless quick, wrong contents."""
    manifest = read_manifest(s3, bucket, name, version)
    prefix = layout.dataset(name, version) + FILES
    sizes = {obj["Key"][len(prefix) :]: int(obj["Size"]) for obj in list_objects(s3, bucket, prefix)}
    problems = []
    for f in manifest.files:
        if f.path not in sizes:
            problems.append(f"{f.path}: missing")
        elif sizes[f.path] != f.size:
            problems.append(f"{f.path}: {sizes[f.path]} bytes, the manifest says {f.size}")
    if quick:
        return problems
    whole = [f for f in manifest.files if sizes.get(f.path) == f.size]

    def digest(f: FileEntry) -> str | None:
        h = hashlib.sha256()
        for chunk in s3.get_object(Bucket=bucket, Key=prefix + f.path)["Body"].iter_chunks(1 << 20):
            h.update(chunk)
        return None if h.hexdigest() == f.sha256 else f"{f.path}: SHA-256 {h.hexdigest()}, the manifest says {f.sha256}"

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        problems += [p for p in pool.map(digest, whole) if p]
    return problems


def versions(s3: Any, bucket: str) -> list[str]:
    """One line per published (or half-published) version, and per catalog dataset not published yet."""
    lines, seen = [], set()
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix="datasets/", Delimiter="/"):
        for named in page.get("CommonPrefixes", ()):
            name = named["Prefix"].split("/")[1]
            for vpage in paginator.paginate(Bucket=bucket, Prefix=named["Prefix"], Delimiter="/"):
                for ver in vpage.get("CommonPrefixes", ()):
                    version = ver["Prefix"].split("/")[2]
                    seen.add((name, version))
                    try:
                        m = read_manifest(s3, bucket, name, version)
                    except PublishError:
                        lines.append(f"{name} {version}: incomplete (no manifest): publish it again to finish")
                        continue
                    lines.append(
                        f"{name} {version}: {m.format}, {len(m.classes)} classes, {len(m.files)} files, "
                        f"{human_size(m.size)}, published {m.created_at:%Y-%m-%d} from {m.source}"
                    )
    for d in catalog.DATASETS.values():
        if d.source == "s3" and (d.name, d.version) not in seen:
            lines.append(f"{d.name} {d.version}: in the catalog, not published")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.datasets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pub = commands.add_parser("publish", help="upload a folder or zip as a new dataset version")
    pub.add_argument("--name", required=True)
    pub.add_argument("--version", required=True)
    pub.add_argument("--format", choices=FORMATS, help="how the files are laid out (default: detected)")
    pub.add_argument("--from", dest="src", type=Path, required=True, help="a folder or a zip (e.g. persons.zip)")
    pub.add_argument("--classes", default="", help="comma-separated; default: what the dataset names")
    pub.add_argument("--source", default="", help="where it came from, for the manifest (default: the file name)")
    pub.add_argument("--bucket", required=True)
    ver = commands.add_parser("verify", help="check a published version against its manifest")
    ver.add_argument("--name", required=True)
    ver.add_argument("--version", required=True)
    ver.add_argument("--bucket", required=True)
    ver.add_argument("--quick", action="store_true", help="sizes only; do not download and hash")
    lst = commands.add_parser("list", help="the versions in the bucket")
    lst.add_argument("--bucket", required=True)
    args = parser.parse_args(argv)
    s3 = client("s3")
    try:
        if args.command == "publish":
            classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
            publish(
                s3,
                args.bucket,
                name=args.name,
                version=args.version,
                src=args.src,
                fmt=args.format,
                classes=classes,
                source=args.source,
            )
        elif args.command == "verify":
            problems = verify(s3, args.bucket, args.name, args.version, quick=args.quick)
            for problem in problems:
                print(problem)
            if problems:
                print(f"{args.name} {args.version}: {len(problems)} problems", file=sys.stderr)
                return 1
            print(f"{args.name} {args.version}: every file matches its manifest")
        else:
            print("\n".join(versions(s3, args.bucket)))
    except (PublishError, ValueError, ClientError) as e:  # ValueError: the dataset's format, or its manifest
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
