"""The agent package: the same bytes from the same source, only the agent's code, runnable on its own."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest

from infra.package import FIXED_DATE, build_agent, main, publish_agent

ROOT = Path(__file__).resolve().parents[2]


def test_two_builds_give_the_same_bytes(tmp_path: Path) -> None:
    first, sha = build_agent(tmp_path / "a")
    second, again = build_agent(tmp_path / "b")
    assert first.name == "spotter-agent.pyz"
    assert sha == again == hashlib.sha256(first.read_bytes()).hexdigest()
    assert first.read_bytes() == second.read_bytes()


def test_only_the_agent_and_the_core_go_in(tmp_path: Path) -> None:
    path, _ = build_agent(tmp_path)
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names) and "__main__.py" in names
    assert all(n == "__main__.py" or n.startswith(("spotter/", "agent/")) for n in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/tests/" in n]
    assert {i.date_time for i in infos} == {FIXED_DATE}
    on_disk = {
        p.relative_to(ROOT).as_posix()
        for package in ("spotter", "agent")
        for p in (ROOT / package).rglob("*")
        if p.suffix in (".py", ".toml") and not {"__pycache__", "tests"} & set(p.parts)
    }
    assert on_disk <= set(names)
    assert [n for n in names if n.startswith("agent/recipes/") and n.endswith(".toml")]  # package data travels


def test_the_package_runs_on_its_own(tmp_path: Path) -> None:
    path, _ = build_agent(tmp_path)
    # -I and another working directory: nothing from the checkout is on the path, only the archive.
    done = subprocess.run(
        [sys.executable, "-I", str(path), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "run" in done.stdout


def test_publish_uploads_with_the_sha256(aws: str) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="spotter-pkg")
    sha = publish_agent("spotter-pkg", "agent/0.1.0/spotter-agent.pyz", s3)
    head = s3.head_object(Bucket="spotter-pkg", Key="agent/0.1.0/spotter-agent.pyz")
    body = s3.get_object(Bucket="spotter-pkg", Key="agent/0.1.0/spotter-agent.pyz")["Body"].read()
    assert head["Metadata"]["sha256"] == sha == hashlib.sha256(body).hexdigest()


def test_build_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--out", str(tmp_path)]) == 0
    sha = hashlib.sha256((tmp_path / "spotter-agent.pyz").read_bytes()).hexdigest()
    assert capsys.readouterr().out.strip().endswith(f"sha256={sha}")
