"""The user data: what the rendered script holds, what it refuses, and a real run against moto.

The run uses a temporary SPOTTER_HOME and puts a `shutdown` shim first on PATH that only records its
arguments, as the local stack's host runner does: the real `shutdown` is never reached. Its `python3` records how
it was called; the image's framework Python is SPOTTER_FRAMEWORK_PYTHON (none, unless a test gives one).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.package import publish_agent
from lambdas.userdata import UserDataError, render_user_data
from spotter import catalog, layout
from spotter.spec import RunSpec
from tests.lambdas.stack import AGENT_KEY, BUCKET, BUS, Stack, make_stack
from tests.spotter.helpers import make_spec

JOB = "shapes-abc234"
SHA = "0" * 64
RUN_TIMEOUT_SECONDS = 120


def _render(**overrides: Any) -> str:
    values: dict[str, Any] = {
        "job_id": JOB,
        "spec_uri": f"s3://{BUCKET}/jobs/{JOB}/job.json",
        "agent_uri": f"s3://{BUCKET}/{AGENT_KEY}",
        "agent_sha256": SHA,
        "max_minutes": 120,
        "region": "us-east-1",
    }
    return render_user_data(**{**values, **overrides})


def test_the_script_is_valid_bash(tmp_path: Path) -> None:
    script = tmp_path / "user-data.sh"
    script.write_text(_render())
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_the_dead_man_switch_comes_before_anything_else() -> None:
    commands = [line for line in _render(max_minutes=90).splitlines() if line.strip() and not line.startswith("#")]
    assert commands[:2] == ["set -Eeuo pipefail", "shutdown -h +90"]


def test_the_recipes_python_is_the_dlamis_pytorch_environment_when_the_image_has_one() -> None:
    script = _render()
    assert 'FRAMEWORK_PYTHON="${SPOTTER_FRAMEWORK_PYTHON:-/opt/pytorch/bin/python}"' in script.splitlines()
    assert '--python "$FRAMEWORK_PYTHON"' in script


def test_values_are_quoted_and_nothing_secret_goes_in() -> None:
    script = _render()
    for line in (
        f"JOB_ID='{JOB}'",
        f"SPEC_URI='s3://{BUCKET}/jobs/{JOB}/job.json'",
        f"AGENT_URI='s3://{BUCKET}/{AGENT_KEY}'",
        f"AGENT_SHA256='{SHA}'",
        "export AWS_REGION='us-east-1'",
    ):
        assert line in script.splitlines()
    lowered = script.lower()
    for secret in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "xoxb", "signing_secret"):
        assert secret not in lowered
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in script


@pytest.mark.parametrize(
    "field, value",
    [
        ("job_id", "shapes;reboot"),
        ("job_id", "$(reboot)"),
        ("job_id", "`reboot`"),
        ("job_id", "shapes abc"),
        ("job_id", "shapes'abc"),
        ("job_id", "shapes\nreboot"),
        ("spec_uri", f"s3://{BUCKET}/jobs/$(reboot)/job.json"),
        ("spec_uri", f"s3://{BUCKET}/jobs/a b/job.json"),
        ("spec_uri", "https://example.com/job.json"),
        ("agent_uri", f"s3://{BUCKET}/agent/x';reboot;'"),
        ("agent_sha256", "abc"),
        ("agent_sha256", "G" * 64),
        ("region", "us-east-1; reboot"),
        ("max_minutes", 0),
        ("max_minutes", 72 * 60 + 1),
        ("max_minutes", "120; reboot"),
        ("max_minutes", True),
    ],
)
def test_unsafe_values_are_refused(field: str, value: Any) -> None:
    with pytest.raises(UserDataError):
        _render(**{field: value})


@dataclass
class Host:
    """A stand-in for the instance: its home, PATH shims and environment."""

    stack: Stack
    home: Path
    shutdown_record: Path
    python_record: Path
    env: dict[str, str]

    def run(self, script: str) -> subprocess.CompletedProcess[str]:
        path = self.home.parent / "user-data.sh"
        path.write_text(script)
        return subprocess.run(
            ["bash", str(path)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
        )

    @property
    def shutdowns(self) -> list[str]:
        return self.shutdown_record.read_text().splitlines() if self.shutdown_record.exists() else []

    @property
    def agent_runs(self) -> list[str]:
        """The arguments of each `python3` call that ran the agent package."""
        calls = self.python_record.read_text().splitlines() if self.python_record.exists() else []
        return [c for c in calls if "spotter-agent.pyz run " in c]

    @property
    def log(self) -> str:
        return (self.home / "bootstrap.log").read_text()


@pytest.fixture
def host(aws: str, tmp_path: Path) -> Host:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "shutdown.args"
    python_record = tmp_path / "python3.args"
    shims = {
        "shutdown": f'#!/bin/sh\necho "$*" >> "{record}"\n',
        "python3": f'#!/bin/sh\necho "$*" >> "{python_record}"\nexec "{sys.executable}" "$@"\n',
    }
    for name, text in shims.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "SPOTTER_HOME": str(tmp_path / "spotter"),
        "AWS_ENDPOINT_URL": aws,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # pragma: allowlist secret
        "AWS_EC2_METADATA_DISABLED": "true",
        # Not /opt/pytorch/bin/python: whatever this machine has there, the image here has no framework Python.
        "SPOTTER_FRAMEWORK_PYTHON": str(tmp_path / "no-framework" / "python"),
    }
    return Host(make_stack(), tmp_path / "spotter", record, python_record, env)


def _publish_spec(stack: Stack, job_id: str) -> str:
    spec = make_spec(seed=job_id)
    run = RunSpec(
        spec=spec, attempt=1, bucket=BUCKET, bus_name=BUS, region="us-east-1", classes=catalog.dataset("shapes").classes
    )
    key = layout.run_spec(spec.job_id)
    stack.s3.put_object(Bucket=BUCKET, Key=key, Body=run.model_dump_json().encode())
    return spec.job_id


def test_a_real_run_arms_the_switch_verifies_the_package_and_starts_the_agent(host: Host) -> None:
    sha = publish_agent(BUCKET, AGENT_KEY, host.stack.s3)
    # No spec at this address: the agent starts, cannot read it and ends at once.
    script = _render(agent_sha256=sha, spec_uri=f"s3://{BUCKET}/jobs/{JOB}/missing.json")

    done = host.run(script)

    assert done.returncode == 0, done.stderr
    assert host.shutdowns[0] == "-h +120" and host.shutdowns[-1] == "-h now"
    log = host.log
    assert f"agent package verified: sha256 {sha}" in log
    assert "starting the agent" in log and "agent exited with status" in log
    assert (host.home / "spotter-agent.pyz").exists()
    # The agent's failure is the agent's to report (without a spec it has no bus): the bootstrap stays quiet.
    assert "Bootstrap failed" not in log
    assert host.stack.bus_events(wait=0) == []
    # No framework Python in this image: the recipes run with python3, and the log says so.
    assert f"framework python: no {host.env['SPOTTER_FRAMEWORK_PYTHON']} in this image, using python3" in log
    [agent_run] = host.agent_runs
    assert agent_run.endswith(f"--python {host.home.parent / 'bin' / 'python3'}")


def test_the_agent_runs_the_recipes_with_the_images_framework_python(host: Host) -> None:
    sha = publish_agent(BUCKET, AGENT_KEY, host.stack.s3)
    framework = host.home.parent / "pytorch" / "bin" / "python"
    framework.parent.mkdir(parents=True)
    framework.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    framework.chmod(0o755)
    host.env["SPOTTER_FRAMEWORK_PYTHON"] = str(framework)

    done = host.run(_render(agent_sha256=sha, spec_uri=f"s3://{BUCKET}/jobs/{JOB}/missing.json"))

    assert done.returncode == 0, done.stderr
    assert f"framework python: {framework}, the image's" in host.log
    [agent_run] = host.agent_runs
    assert agent_run.endswith(f"--python {framework}")


def test_a_tampered_package_is_reported_and_the_box_powers_off(host: Host) -> None:
    publish_agent(BUCKET, AGENT_KEY, host.stack.s3)
    job = _publish_spec(host.stack, "tampered")

    done = host.run(_render(job_id=job, spec_uri=f"s3://{BUCKET}/jobs/{job}/job.json", agent_sha256="f" * 64))

    assert done.returncode != 0
    assert host.shutdowns == ["-h +120", "-h now"]
    log = host.log
    assert "sha256 mismatch" in log and "starting the agent" not in log
    [error] = [e for e in host.stack.bus_events() if e["detail-type"] == "Job Error"]
    assert error["source"] == "spotter.agent"
    detail = error["detail"]
    assert (detail["job_id"], detail["attempt"], detail["phase"], detail["kind"]) == (job, 1, "install", "crash")
    assert "sha256 mismatch" in detail["message"]
    assert any("sha256 mismatch" in line for line in detail["last_lines"])
