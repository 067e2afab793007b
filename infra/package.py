"""Builds the agent package the instances run (`spotter-agent.pyz`) and publishes it to S3 with its sha256.

The zipapp holds only the `spotter` and `agent` packages, in sorted order with fixed timestamps, so the
same source always gives the same bytes and the same sha256 (which the user data verifies).

    python -m infra.package build [--out DIR]
    python -m infra.package publish --bucket BUCKET [--key agent/<version>/spotter-agent.pyz]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spotter.aws import client

PACKAGES = ("spotter", "agent")
FILENAME = "spotter-agent.pyz"
# The earliest time a zip entry can hold: no build time leaks into the bytes.
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
SKIP_DIRS = frozenset({"__pycache__", "tests"})
SKIP_SUFFIXES = frozenset({".pyc", ".pyo"})
MAIN = b"""\"\"\"The Spotter agent package: `python3 spotter-agent.pyz run --job ID --spec S3_URI`.\"\"\"

import runpy

runpy.run_module("agent", run_name="__main__", alter_sys=True)
"""


def package_files(package: str) -> Iterator[tuple[str, Path]]:
    """(name in the archive, file on disk) for every shipped file of an importable package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not an importable package")
    root = Path(next(iter(spec.submodule_search_locations)))
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if not path.is_file() or path.suffix in SKIP_SUFFIXES:
            continue
        if any(part in SKIP_DIRS or part.startswith(".") or part.startswith("test_") for part in rel.parts):
            continue
        yield f"{package}/{rel.as_posix()}", path


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, whichever machine builds it
    info.external_attr = 0o644 << 16
    return info


def build_agent(out_dir: Path) -> tuple[Path, str]:
    """Write `spotter-agent.pyz` into `out_dir`; returns its path and sha256."""
    entries = {name: path.read_bytes() for package in PACKAGES for name, path in package_files(package)}
    entries["__main__.py"] = MAIN
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / FILENAME
    with zipfile.ZipFile(target, "w") as zf:
        for name in sorted(entries):
            zf.writestr(_entry(name), entries[name], compresslevel=9)
    return target, hashlib.sha256(target.read_bytes()).hexdigest()


def publish_agent(bucket: str, key: str, s3_client: Any) -> str:
    """Build the package and upload it with its sha256 as object metadata; returns the sha256."""
    with tempfile.TemporaryDirectory() as tmp:
        path, sha256 = build_agent(Path(tmp))
        s3_client.put_object(
            Bucket=bucket,
            Key=key,
            Body=path.read_bytes(),
            Metadata={"sha256": sha256},
            ContentType="application/zip",
        )
    return sha256


def default_key() -> str:
    return f"agent/{importlib.metadata.version('spotter')}/{FILENAME}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.package", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the package into a directory")
    build.add_argument("--out", type=Path, default=Path("dist"))
    publish = commands.add_parser("publish", help="build and upload the package to S3")
    publish.add_argument("--bucket", required=True)
    publish.add_argument("--key", default=default_key())
    args = parser.parse_args(argv)
    if args.command == "build":
        path, sha256 = build_agent(args.out)
        print(f"{path} sha256={sha256}")
    else:
        sha256 = publish_agent(args.bucket, args.key, client("s3"))
        print(f"s3://{args.bucket}/{args.key} sha256={sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
