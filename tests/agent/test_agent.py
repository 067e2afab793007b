"""A whole attempt on the framework stand-in, against moto: events on the bus, artifacts and logs in S3, power off."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipapp
from pathlib import Path
from typing import Any

import pytest

from agent import attempt as agent_attempt
from agent import recipes
from agent.build import BuildFailed, BuildOutcome
from agent.globs import newest
from agent.imds import Imds, ImdsError
from agent.job import run_job
from agent.plan import BuildStep, Step
from agent.uploader import Uploader
from spotter import layout
from spotter.events import (
    Artifact,
    FinalMetrics,
    JobBuildReady,
    JobCheckpoint,
    JobError,
    JobEvent,
    JobFinished,
    JobInterrupted,
    JobMetric,
    JobPhase,
    JobProgress,
    from_eventbridge,
)
from spotter.spec import InitialWeights, ResumeFrom
from tests.agent.conftest import INSTANCE_ID

REPO = Path(__file__).resolve().parents[2]
JOB_ID = "shapes-abc234"
# Where this attempt's outputs go: the ARN moto's account gives the instance the metadata service names.
OUTPUTS = layout.Outputs(JOB_ID, layout.instance_arn("aws", "us-east-1", "123456789012", INSTANCE_ID))
LOGS = REPO / "tests" / "fixtures" / "logs"


class RecordingBus:
    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    def put(self, events: Any) -> None:
        self.events.extend(events)


def _end_in_s3(job: Any, attempt: int = 1) -> JobEvent:
    body = job.s3.get_object(Bucket="spotter-test", Key=OUTPUTS.attempt_end(attempt))["Body"].read()
    return from_eventbridge(json.loads(body))


def test_imds_client_speaks_imdsv2(
    imds_endpoint: str, imds_meta: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_endpoint)
    imds = Imds()
    assert imds.endpoint == imds_endpoint
    assert (imds.instance_id(), imds.instance_type(), imds.availability_zone()) == (
        "i-0123456789abcdef0",
        "g4dn.xlarge",
        "us-east-1a",
    )
    assert imds.spot_action() is None
    imds_meta["spot/instance-action"] = json.dumps({"action": "terminate", "time": "2026-11-23T18:00:00Z"})
    assert imds.spot_action() == {"action": "terminate", "time": "2026-11-23T18:00:00Z"}


def test_imds_unreachable_is_an_imds_error(no_imds: Imds) -> None:
    with pytest.raises(ImdsError):
        no_imds.instance_id()


def test_a_full_run_reports_each_phase_and_uploads_verified_artifacts(
    job: Any, bus_tap: Any, standin: Path, poweroff: Any, imds_endpoint: str, tmp_path: Path
) -> None:
    # Only the power switch and IMDS are injected: S3 and the bus are the agent's own clients, over the wire.
    code = run_job(JOB_ID, job.url, workdir=tmp_path / "work", poweroff=poweroff, imds=Imds(imds_endpoint))

    assert code == 0
    assert poweroff.calls == 1
    events = bus_tap.drain()
    assert len({e.seq for e in events}) == len(events)
    assert all(e.job_id == JOB_ID and e.attempt == 1 for e in events)

    milestones = [(e.phase, e.state) for e in events if isinstance(e, JobPhase)]
    assert milestones == [
        (phase, state) for phase in ("install", "data", "train", "upload") for state in ("started", "finished")
    ]
    assert all(
        e.seconds is not None and e.seconds >= 0 for e in events if isinstance(e, JobPhase) and e.state == "finished"
    )
    assert isinstance(events[-1], JobFinished)

    train_started = next(i for i, e in enumerate(events) if isinstance(e, JobPhase) and e.phase == "train")
    train_finished = next(
        i for i, e in enumerate(events) if isinstance(e, JobPhase) and e.phase == "train" and e.state == "finished"
    )
    progress = [e for e in events if isinstance(e, JobProgress)]
    assert progress and all(train_started < events.index(p) < train_finished for p in progress)
    assert all(p.unit == "epoch" and 1 <= p.current <= 3 and p.total == 3 for p in progress)
    assert [p.current for p in progress] == sorted(p.current for p in progress)

    metrics = [e for e in events if isinstance(e, JobMetric)]
    assert [m.current for m in metrics][:3] == [1, 2, 3]
    assert metrics[-1].map50 == pytest.approx(0.995) and metrics[-1].map50_95 == pytest.approx(0.875)

    finished = events[-1]
    assert isinstance(finished, JobFinished)
    assert [a.name for a in finished.artifacts] == ["best", "last", "results"]
    for a in finished.artifacts:
        obj = job.s3.get_object(Bucket="spotter-test", Key=a.key)
        body = obj["Body"].read()
        assert hashlib.sha256(body).hexdigest() == a.sha256 == obj["Metadata"]["sha256"]
        assert len(body) == a.size
    assert finished.artifacts[0].key == f"{OUTPUTS.prefix}artifacts/best.pt"
    assert finished.artifacts[2].key == f"{OUTPUTS.prefix}artifacts/results.csv"
    # Training ends with the validation of best.pt, per class: the uploaded weights' scores.
    assert finished.metrics == FinalMetrics(
        map50=0.995, map50_95=0.875, precision=0.983, recall=0.979, per_class_ap50={"rectangle": 0.994, "circle": 0.995}
    )
    assert _end_in_s3(job) == finished  # what recovery reads if the instance goes before the bus delivers it

    logs = job.s3.list_objects_v2(Bucket="spotter-test", Prefix=f"{OUTPUTS.prefix}logs/attempt-1/")
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in logs["Contents"]) == [
        "agent.log",
        "data.log",
        "install.log",
        "train.log",
    ]
    train_log = job.s3.get_object(Bucket="spotter-test", Key=f"{OUTPUTS.prefix}logs/attempt-1/train.log")["Body"].read()
    assert b"Starting training for 3 epochs..." in train_log and b"\r\x1b[K" in train_log
    agent_log = (tmp_path / "work" / "logs" / "agent.log").read_text()
    assert "instance i-0123456789abcdef0 (g4dn.xlarge) in us-east-1a" in agent_log


def test_a_failing_training_reports_the_oom_and_still_powers_off(
    job: Any,
    bus_tap: Any,
    standin: Path,
    poweroff: Any,
    bare_imds: Imds,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPOTTER_STANDIN_FAIL_AT_EPOCH", "2")
    code = run_job(JOB_ID, job.url, workdir=tmp_path / "work", poweroff=poweroff, imds=bare_imds)

    assert code == 1
    assert poweroff.calls == 1
    events = bus_tap.drain()
    assert not any(isinstance(e, JobFinished) for e in events)
    assert [(e.phase, e.state) for e in events if isinstance(e, JobPhase)][-1] == ("train", "started")
    error = events[-1]
    assert isinstance(error, JobError)
    assert (error.phase, error.kind) == ("train", "oom")
    assert error.message.startswith("train exited with status 1: torch.OutOfMemoryError: CUDA out of memory.")
    assert len(error.message) <= 300
    assert 0 < len(error.last_lines) <= 30 and all(len(line) <= 300 for line in error.last_lines)
    assert any(
        line.startswith("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB")
        for line in error.last_lines
    )
    assert any(isinstance(e, JobProgress) and e.current == 2 for e in events)
    assert _end_in_s3(job) == error

    log = job.s3.get_object(Bucket="spotter-test", Key=f"{OUTPUTS.prefix}logs/attempt-1/train.log")["Body"].read()
    assert b"Traceback (most recent call last):" in log
    # The agent carried on without instance metadata, and said so.
    assert "instance metadata unavailable" in (tmp_path / "work" / "logs" / "agent.log").read_text()


def test_training_past_the_time_limit_is_stopped(
    aws: str,
    job: Any,
    standin: Path,
    poweroff: Any,
    bare_imds: Imds,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_spec: Any,
) -> None:
    run = make_spec(epochs=20, max_hours=0.002)  # 7.2 s: install and data fit, 20 slow epochs do not
    job.s3.put_object(Bucket="spotter-test", Key=f"jobs/{JOB_ID}/job.json", Body=run.model_dump_json().encode())
    monkeypatch.setenv("SPOTTER_STANDIN_EPOCH_SECONDS", "30")
    bus = RecordingBus()
    code = run_job(JOB_ID, job.url, workdir=tmp_path / "work", poweroff=poweroff, bus=bus, imds=bare_imds)

    assert code == 1 and poweroff.calls == 1
    error = bus.events[-1]
    assert isinstance(error, JobError)
    assert (error.phase, error.kind) == ("train", "timeout")
    assert error.message.startswith("train ran past the job's 0.002 h limit and was stopped")


def test_a_missing_best_weight_fails_the_upload(
    job: Any, standin: Path, poweroff: Any, bare_imds: Imds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = recipes.load("ultralytics")
    moved = real.model_copy(
        update={
            "artifacts": {**real.artifacts, "best": recipes.ArtifactFile(path="runs/nowhere/best.pt", required=True)}
        }
    )
    monkeypatch.setattr(recipes, "load", lambda name: moved)
    bus = RecordingBus()
    code = run_job(JOB_ID, job.url, workdir=tmp_path / "work", poweroff=poweroff, bus=bus, imds=bare_imds)

    assert code == 1 and poweroff.calls == 1
    error = bus.events[-1]
    assert isinstance(error, JobError)
    assert (error.phase, error.kind) == ("upload", "exit")
    assert "runs/nowhere/best.pt" in error.message
    assert not any(isinstance(e, JobFinished) for e in bus.events)


def test_an_agent_crash_is_reported_with_its_traceback(
    job: Any, standin: Path, poweroff: Any, bare_imds: Imds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Uploader, "upload_artifact", broken)
    bus = RecordingBus()
    code = run_job(JOB_ID, job.url, workdir=tmp_path / "work", poweroff=poweroff, bus=bus, imds=bare_imds)

    assert code == 1 and poweroff.calls == 1
    error = bus.events[-1]
    assert isinstance(error, JobError)
    assert (error.phase, error.kind) == ("upload", "crash")
    assert error.message == "agent crashed during upload: RuntimeError: disk on fire"
    assert error.last_lines[-1] == "RuntimeError: disk on fire"
    assert any("Traceback" in line for line in error.last_lines)
    # Milestones reach the bus in the order they happened (coalesced progress may trail them).
    milestones = [e.seq for e in bus.events if not isinstance(e, JobProgress)]
    assert milestones == sorted(milestones)


def test_an_instance_that_cannot_say_which_it_is_fails_the_attempt_and_powers_off(
    job: Any, poweroff: Any, no_imds: Imds, tmp_path: Path
) -> None:
    bus = RecordingBus()
    code = run_job(JOB_ID, job.url, workdir=tmp_path / "work", poweroff=poweroff, bus=bus, imds=no_imds)
    assert code == 1 and poweroff.calls == 1
    (error,) = bus.events
    assert isinstance(error, JobError) and error.kind == "launch"
    assert "could not say which EC2 instance it is" in error.message and "IMDSv2" in error.message
    listed = job.s3.list_objects_v2(Bucket="spotter-test", Prefix=layout.logs(JOB_ID))
    assert listed.get("KeyCount", 0) == 0  # nothing written where no instance could have


def test_an_unreadable_spec_still_powers_off(aws: str, poweroff: Any, no_imds: Imds, tmp_path: Path) -> None:
    code = run_job(
        JOB_ID, f"s3://no-such-bucket/jobs/{JOB_ID}/job.json", workdir=tmp_path, poweroff=poweroff, imds=no_imds
    )
    assert code == 1 and poweroff.calls == 1


def _cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, cwd=REPO, **kwargs)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "the following arguments are required"),
        (("run", "--spec", "s3://spotter/jobs/x/job.json"), "--job"),
        (("run", "--job", "Bad Id!", "--spec", "s3://b/jobs/x/job.json"), "is not a job id"),
        (("run", "--job", "shapes-abc234", "--spec", "https://example.com/job.json"), "is not an s3://BUCKET/KEY url"),
        (("train",), "invalid choice"),
    ],
)
def test_cli_usage_errors_are_one_line_and_status_2(args: tuple[str, ...], expected: str, shutdown_shim: Path) -> None:
    out = _cli(*args)
    assert out.returncode == 2
    assert expected in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr
    assert not shutdown_shim.exists()


def test_cli_parse_dispatches_to_the_parsers() -> None:
    log = REPO / "infra" / "local" / "standin" / "ultralytics" / "recorded_run.log"
    out = _cli("parse", "--framework", "ultralytics", "--summary", str(log))
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["framework"] == "ultralytics"
    assert summary["best"]["map50"] == pytest.approx(0.995)


def test_the_zipapp_runs_a_job_and_shuts_the_machine_down(
    job: Any, bus_tap: Any, standin: Path, imds_endpoint: str, tmp_path: Path, shutdown_shim: Path
) -> None:
    """What user data does: `python3 spotter-agent.pyz run …`; `shutdown -h now` is the shim on PATH."""
    src = tmp_path / "src"
    for package in ("agent", "spotter"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    pyz = tmp_path / "spotter-agent.pyz"
    zipapp.create_archive(src, pyz, main="agent.cli:cli")
    home = tmp_path / "home"
    env = {**os.environ, "SPOTTER_HOME": str(home), "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds_endpoint}

    out = subprocess.run(
        [sys.executable, str(pyz), "run", "--job", JOB_ID, "--spec", job.url],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip

    assert out.returncode == 0, out.stderr
    assert shutdown_shim.read_text() == "-h now\n"
    assert isinstance(bus_tap.drain()[-1], JobFinished)
    assert (home / "work" / JOB_ID / "runs" / "train" / "weights" / "best.pt").is_file()
    # The agent, and so the PYTHONPATH of its phases, is the zip, not the checkout.
    assert f"(agent {pyz})" in (home / "work" / JOB_ID / "logs" / "agent.log").read_text()


def test_sigterm_stops_the_phase_reports_it_and_powers_off(
    job: Any,
    bus_tap: Any,
    standin: Path,
    imds_endpoint: str,
    tmp_path: Path,
    shutdown_shim: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPOTTER_STANDIN_EPOCH_SECONDS", "60")
    workdir = tmp_path / "work"
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--job", JOB_ID, "--spec", job.url, "--workdir", str(workdir)],
        cwd=REPO,
        env={**os.environ, "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds_endpoint},
        stderr=subprocess.DEVNULL,
    )
    try:
        train_log = workdir / "logs" / "train.log"
        deadline = time.monotonic() + 60
        while b"Epoch    GPU_mem" not in (train_log.read_bytes() if train_log.exists() else b""):
            assert time.monotonic() < deadline and agent.poll() is None, "training never started"
            time.sleep(0.1)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(60) == 1
    finally:
        agent.kill()

    assert shutdown_shim.read_text() == "-h now\n"
    error = bus_tap.drain()[-1]
    assert isinstance(error, JobError)
    assert (error.phase, error.kind, error.message) == (
        "train",
        "killed",
        "the agent was stopped by SIGTERM during train",
    )


# What Ultralytics prints for the validation of best.pt: the evaluate phase's final word on mAP.
VALIDATION_LINE = "                   all         40        101      0.951      0.949      0.975      0.812"
BUILD_KEY = "ab" * 32


def _recipe_with(**update: Any) -> recipes.Recipe:
    """The ultralytics recipe with some phases replaced (by commands that print what a framework would)."""
    return recipes.load("ultralytics").model_copy(update=update)


def _build(setup: bool = True) -> recipes.BuildTemplate:
    return recipes.BuildTemplate(
        source=recipes.SourceTemplate(repo="https://github.com/example/framework.git", ref="v1.0", dir="framework"),
        commands=(("{python}", "-c", "print('compiling for sm_{cuda_arch}')"),),
        outputs=("lib",),
        setup=(("{python}", "-c", "import os; print('installing in', os.getcwd())"),) if setup else (),
    )


class FakeBuildCache:
    """ensure_build's contract: check out, then restore (cached) or build through `run`."""

    def __init__(self, cached: bool, fails: bool = False) -> None:
        self.cached = cached
        self.fails = fails
        self.calls: list[tuple[str, Path, str, str]] = []

    def __call__(
        self,
        step: BuildStep,
        *,
        s3: Any,
        bucket: str,
        outputs: layout.Outputs,
        attempt: int,
        image_id: str,
        gpu_arch: str,
        run: Any,
    ) -> BuildOutcome:
        self.calls.append((step.recipe, step.source.dir, image_id, gpu_arch))
        step.source.dir.mkdir(parents=True, exist_ok=True)
        if self.cached:
            return BuildOutcome(key=BUILD_KEY, cached=True, artifact=None)
        commands = step.commands
        if self.fails:
            commands = (
                ("python3", "-c", "import sys; print('nvcc fatal   : Unsupported gpu architecture'); sys.exit(2)"),
            )
        if not run(Step("build", commands, cwd=step.source.dir, env=step.env)):
            raise BuildFailed(f"the {step.recipe} build failed (see the build log)")
        uploaded = Artifact(name="build", key=outputs.build(step.recipe, BUILD_KEY), sha256="0" * 64, size=10)
        return BuildOutcome(key=BUILD_KEY, cached=False, artifact=uploaded)


@pytest.mark.parametrize("cached", [False, True])
def test_a_plan_with_a_build_and_an_evaluation_runs_every_phase(
    cached: bool,
    job: Any,
    standin: Path,
    poweroff: Any,
    imds_endpoint: str,
    imds_meta: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    imds_meta["ami-id"] = "ami-0123456789abcdef0"
    cache = FakeBuildCache(cached=cached)
    monkeypatch.setattr(agent_attempt, "ensure_build", cache)
    evaluate = recipes.StepTemplate(commands=(("{python}", "-c", f"print({VALIDATION_LINE!r})"),))
    recipe = _recipe_with(build=_build(), evaluate=evaluate)
    monkeypatch.setattr(recipes, "load", lambda name: recipe)
    workdir = tmp_path / "work"
    bus = RecordingBus()

    code = run_job(JOB_ID, job.url, workdir=workdir, poweroff=poweroff, bus=bus, imds=Imds(imds_endpoint))

    assert code == 0 and poweroff.calls == 1
    # The machine's GPU (g4dn.xlarge: a T4, sm_75) and image key the build.
    assert cache.calls == [("ultralytics", workdir / "framework", "ami-0123456789abcdef0", "sm_75")]
    milestones = [(e.phase, e.state) for e in bus.events if isinstance(e, JobPhase)]
    # A restored build is announced once, as restored; one built here as started, then finished.
    build = [("build", "cached")] if cached else [("build", "started"), ("build", "finished")]
    assert milestones == [
        ("install", "started"),
        ("install", "finished"),
        *build,
        *((phase, state) for phase in ("data", "train", "evaluate", "upload") for state in ("started", "finished")),
    ]
    ready = [e for e in bus.events if isinstance(e, JobBuildReady)]
    assert [(e.recipe, e.key, e.artifact.key) for e in ready] == (
        [] if cached else [("ultralytics", BUILD_KEY, f"{OUTPUTS.prefix}build/ultralytics-{BUILD_KEY}.tar.gz")]
    )
    build_log = (workdir / "logs" / "build.log").read_text()
    assert ("compiling for sm_75" in build_log) is not cached
    # Setup puts the build to use whether it was built here or restored, in the checkout.
    assert f"installing in {workdir / 'framework'}" in build_log
    metrics = [e for e in bus.events if isinstance(e, JobMetric)]
    assert (metrics[-1].map50, metrics[-1].map50_95) == (pytest.approx(0.975), pytest.approx(0.812))
    finished = bus.events[-1]
    assert isinstance(finished, JobFinished)
    # The evaluation's scores, not those training printed before it (it listed no classes).
    assert finished.metrics == FinalMetrics(map50=0.975, map50_95=0.812, precision=0.951, recall=0.949)
    logs = job.s3.list_objects_v2(Bucket="spotter-test", Prefix=f"{OUTPUTS.prefix}logs/attempt-1/")
    assert {o["Key"].rsplit("/", 1)[1] for o in logs["Contents"]} >= {"build.log", "data.log", "evaluate.log"}


def _cat(log: Path) -> recipes.StepTemplate:
    """A step that prints a saved framework log as the framework printed it."""
    return recipes.StepTemplate(
        commands=(("{python}", "-c", "import sys; sys.stdout.write(open(sys.argv[1]).read())", str(log)),)
    )


@pytest.mark.parametrize(
    ("parser", "log", "expected"),
    [
        # `-map` prints each class's AP and the precision/recall at conf 0.25 before the mean, as `detector map` does.
        (
            "darknet",
            "darknet_04.log",
            FinalMetrics(map50=0.899153, precision=0.84, recall=0.84, per_class_ap50={"agua": 0.8452, "lixo": 0.9531}),
        ),
        # The validation of best.pt (val.py's table), one row per class.
        (
            "yolov5",
            "yolov5_06.log",
            FinalMetrics(
                map50=0.189,
                map50_95=0.0887,
                precision=0.211,
                recall=0.257,
                per_class_ap50={"metal": 0.0108, "other": 0.142, "plastic": 0.414},
            ),
        ),
        # detectron2's COCO evaluation: per-category AP is over IoU 0.5:0.95, so no AP50 per class.
        ("detectron2", "detectron2_02.log", FinalMetrics(map50=0.5362, map50_95=0.29556)),
    ],
)
def test_job_finished_carries_the_evaluations_final_scores_per_class(
    parser: str,
    log: str,
    expected: FinalMetrics,
    job: Any,
    standin: Path,
    poweroff: Any,
    bare_imds: Imds,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recipe = _recipe_with(parser=parser, evaluate=_cat(LOGS / log))
    monkeypatch.setattr(recipes, "load", lambda name: recipe)
    bus = RecordingBus()

    assert run_job(JOB_ID, job.url, workdir=tmp_path / "work", poweroff=poweroff, bus=bus, imds=bare_imds) == 0

    finished = bus.events[-1]
    assert isinstance(finished, JobFinished)
    assert finished.metrics == expected


def test_a_failed_build_is_reported_from_its_log_and_nothing_else_runs(
    job: Any, standin: Path, poweroff: Any, imds_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_attempt, "ensure_build", FakeBuildCache(cached=False, fails=True))
    recipe = _recipe_with(build=_build(setup=False))
    monkeypatch.setattr(recipes, "load", lambda name: recipe)
    bus = RecordingBus()

    code = run_job(JOB_ID, job.url, workdir=tmp_path / "work", poweroff=poweroff, bus=bus, imds=Imds(imds_endpoint))

    assert code == 1 and poweroff.calls == 1
    error = bus.events[-1]
    assert isinstance(error, JobError)
    assert (error.phase, error.kind) == ("build", "exit")
    assert error.message == "build exited with status 2: nvcc fatal : Unsupported gpu architecture"
    assert error.last_lines == ["nvcc fatal   : Unsupported gpu architecture"]
    assert not any(isinstance(e, JobPhase) and e.phase == "data" for e in bus.events)
    log = job.s3.get_object(Bucket="spotter-test", Key=f"{OUTPUTS.prefix}logs/attempt-1/build.log")["Body"].read()
    assert b"nvcc fatal" in log


def _echo_train_recipe(**update: Any) -> recipes.Recipe:
    """The ultralytics recipe with a train command that shows what it was given."""
    echo = recipes.Group(when="resume", argv=("--resume", "{checkpoint}"))
    show = "import sys; print('train', *sys.argv[1:])"
    weights = "from pathlib import Path; p = Path('{work}/runs/train/weights'); p.mkdir(parents=True); (p / 'best.pt').write_bytes(b'w')"
    train = recipes.StepTemplate(commands=(("{python}", "-c", show, echo), ("{python}", "-c", weights)))
    return _recipe_with(train=train, **update)


def _data_detail(events: list[JobEvent]) -> str | None:
    [end] = [e for e in events if isinstance(e, JobPhase) and e.phase == "data" and e.state == "finished"]
    return end.detail


def test_a_failed_training_leaves_its_checkpoint_and_the_next_attempt_resumes_from_it_verified(
    job: Any,
    standin: Path,
    poweroff: Any,
    bare_imds: Imds,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_spec: Any,
) -> None:
    monkeypatch.setenv("SPOTTER_STANDIN_FAIL_AT_EPOCH", "3")
    monkeypatch.setenv("SPOTTER_CHECKPOINT_STABLE_SECONDS", "0.05")
    first = RecordingBus()
    assert run_job(JOB_ID, job.url, workdir=tmp_path / "one", poweroff=poweroff, bus=first, imds=bare_imds) == 1

    key = f"{OUTPUTS.prefix}checkpoints/last.pt"
    saved = job.s3.get_object(Bucket="spotter-test", Key=key)
    body = saved["Body"].read()
    assert body == (tmp_path / "one" / "runs" / "train" / "weights" / "last.pt").read_bytes()
    checkpoint = [e for e in first.events if isinstance(e, JobCheckpoint)][-1]
    assert (checkpoint.artifact.key, checkpoint.artifact.sha256) == (key, saved["Metadata"]["sha256"])
    # Epoch 3 died: the checkpoint holds the last epoch completed, 2.
    assert checkpoint.current == 2 and isinstance(first.events[-1], JobError)

    # Checkpoints and logs carry the tag the bucket's lifecycle rules expire them by; weights do not.
    def kind(object_key: str) -> list[dict[str, str]]:
        return job.s3.get_object_tagging(Bucket="spotter-test", Key=object_key)["TagSet"]  # type: ignore[no-any-return]

    assert kind(key) == [{"Key": "spotter:kind", "Value": "checkpoint"}]
    assert kind(f"{OUTPUTS.prefix}logs/attempt-1/train.log") == [{"Key": "spotter:kind", "Value": "log"}]

    # Attempt 2, on a fresh machine, told by the control plane where the checkpoint is.
    echo_recipe = _echo_train_recipe()
    monkeypatch.setattr(recipes, "load", lambda name: echo_recipe)
    resume = ResumeFrom(key=key, sha256=checkpoint.artifact.sha256, size=len(body), current=2, attempt=1)
    second = make_spec().model_copy(update={"attempt": 2, "resume": resume})
    job.s3.put_object(Bucket="spotter-test", Key=f"jobs/{JOB_ID}/job.json", Body=second.model_dump_json().encode())
    workdir = tmp_path / "two"
    bus = RecordingBus()

    assert run_job(JOB_ID, job.url, workdir=workdir, poweroff=poweroff, bus=bus, imds=bare_imds) == 0
    restored = workdir / "checkpoints" / "last.pt"
    assert restored.read_bytes() == body
    assert f"train --resume {restored}" in (workdir / "logs" / "train.log").read_text()
    assert _data_detail(bus.events) == "resumed from epoch 2"


def test_a_checkpoint_that_fails_its_sha256_check_trains_from_scratch(
    job: Any,
    standin: Path,
    poweroff: Any,
    bare_imds: Imds,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_spec: Any,
) -> None:
    key = f"{OUTPUTS.prefix}checkpoints/last.pt"
    job.s3.put_object(Bucket="spotter-test", Key=key, Body=b"not the checkpoint that was recorded")
    echo_recipe = _echo_train_recipe()
    monkeypatch.setattr(recipes, "load", lambda name: echo_recipe)
    resume = ResumeFrom(key=key, sha256="0" * 64, size=12, current=4, attempt=1)
    second = make_spec().model_copy(update={"attempt": 2, "resume": resume})
    job.s3.put_object(Bucket="spotter-test", Key=f"jobs/{JOB_ID}/job.json", Body=second.model_dump_json().encode())
    workdir = tmp_path / "work"
    bus = RecordingBus()

    assert run_job(JOB_ID, job.url, workdir=workdir, poweroff=poweroff, bus=bus, imds=bare_imds) == 0

    assert (workdir / "logs" / "train.log").read_text().strip() == "train"
    assert _data_detail(bus.events) == "checkpoint failed its sha256 check: trained from scratch"
    assert not (workdir / "checkpoints" / "last.pt").exists()
    assert f"the job recorded {'0' * 64}" in (workdir / "logs" / "agent.log").read_text()


def test_a_missing_checkpoint_trains_from_scratch_and_no_resume_looks_for_none(
    job: Any,
    standin: Path,
    poweroff: Any,
    bare_imds: Imds,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_spec: Any,
) -> None:
    echo_recipe = _echo_train_recipe()
    monkeypatch.setattr(recipes, "load", lambda name: echo_recipe)
    key = f"{OUTPUTS.prefix}checkpoints/last.pt"
    resume = ResumeFrom(key=key, sha256="0" * 64, size=12, current=4, attempt=1)
    for n, (spec, detail) in enumerate(
        [
            (
                make_spec().model_copy(update={"attempt": 2, "resume": resume}),
                "checkpoint is missing: trained from scratch",
            ),
            # A later attempt with nothing recorded trains from the start, without looking for a checkpoint.
            (make_spec().model_copy(update={"attempt": 2}), None),
        ]
    ):
        job.s3.put_object(Bucket="spotter-test", Key=f"jobs/{JOB_ID}/job.json", Body=spec.model_dump_json().encode())
        workdir = tmp_path / f"work{n}"
        bus = RecordingBus()
        assert run_job(JOB_ID, job.url, workdir=workdir, poweroff=poweroff, bus=bus, imds=bare_imds) == 0
        assert (workdir / "logs" / "train.log").read_text().strip() == "train"
        assert _data_detail(bus.events) == detail
        assert ("checkpoints/last.pt" in (workdir / "logs" / "agent.log").read_text()) is (detail is not None)


def test_a_run_that_prints_no_scores_finishes_without_metrics(
    job: Any, standin: Path, poweroff: Any, bare_imds: Imds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    echo_recipe = _echo_train_recipe()
    monkeypatch.setattr(recipes, "load", lambda name: echo_recipe)
    bus = RecordingBus()

    assert run_job(JOB_ID, job.url, workdir=tmp_path / "work", poweroff=poweroff, bus=bus, imds=bare_imds) == 0

    finished = bus.events[-1]
    assert isinstance(finished, JobFinished) and finished.metrics is None


PROMOTED_KEY = "models/shapes/yolov8n/shapes-prev01/best.pt"


def _promoted_run(job: Any, make_spec: Any, body: bytes, sha256: str) -> None:
    """A scheduled run's spec (from=promoted) naming `body`'s object, as the launcher writes it."""
    job.s3.put_object(Bucket="spotter-test", Key=PROMOTED_KEY, Body=body)
    weights = InitialWeights(key=PROMOTED_KEY, sha256=sha256, size=len(body), job_id="shapes-prev01", map50=0.9)
    run = make_spec(from_="promoted").model_copy(update={"initial_weights": weights})
    job.s3.put_object(Bucket="spotter-test", Key=f"jobs/{JOB_ID}/job.json", Body=run.model_dump_json().encode())


def test_a_promoted_run_starts_from_the_promoted_weights_verified(
    job: Any,
    standin: Path,
    poweroff: Any,
    bare_imds: Imds,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_spec: Any,
) -> None:
    body = b"the best.pt job shapes-prev01 promoted"
    _promoted_run(job, make_spec, body, hashlib.sha256(body).hexdigest())
    show = "import sys; print('train from', open(sys.argv[1], 'rb').read().decode())"
    echo_recipe = _echo_train_recipe()
    write_best = echo_recipe.train.commands[-1]
    train = recipes.StepTemplate(commands=(("{python}", "-c", show, "{work}/{pretrained}"), write_best))
    monkeypatch.setattr(recipes, "load", lambda name: echo_recipe.model_copy(update={"train": train}))
    workdir = tmp_path / "work"
    bus = RecordingBus()

    assert run_job(JOB_ID, job.url, workdir=workdir, poweroff=poweroff, bus=bus, imds=bare_imds) == 0

    assert isinstance(bus.events[-1], JobFinished)
    assert (workdir / "yolov8n.pt").read_bytes() == body
    assert f"train from {body.decode()}" in (workdir / "logs" / "train.log").read_text()
    assert _data_detail(bus.events) == "starts from the promoted weights of job shapes-prev01"
    assert f"sha256 {hashlib.sha256(body).hexdigest()} verified" in (workdir / "logs" / "agent.log").read_text()


def test_a_promoted_run_with_nothing_promoted_yet_starts_from_the_pretrained_weights(
    job: Any,
    standin: Path,
    poweroff: Any,
    bare_imds: Imds,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_spec: Any,
) -> None:
    pretrained = b"the published yolov8n.pt"
    job.s3.put_object(
        Bucket="spotter-test",
        Key="cache/pretrained/yolov8n.pt",
        Body=pretrained,
        Metadata={"sha256": hashlib.sha256(pretrained).hexdigest()},
    )
    run = make_spec(from_="promoted")  # the launcher found no promoted weights: initial_weights stays None
    job.s3.put_object(Bucket="spotter-test", Key=f"jobs/{JOB_ID}/job.json", Body=run.model_dump_json().encode())
    echo_recipe = _echo_train_recipe()
    monkeypatch.setattr(recipes, "load", lambda name: echo_recipe)
    workdir = tmp_path / "work"
    bus = RecordingBus()

    assert run_job(JOB_ID, job.url, workdir=workdir, poweroff=poweroff, bus=bus, imds=bare_imds) == 0

    assert (workdir / "yolov8n.pt").read_bytes() == pretrained
    assert _data_detail(bus.events) == "nothing promoted yet: starts from the pretrained weights"


def test_promoted_weights_that_fail_their_sha256_check_fail_the_job(
    job: Any,
    standin: Path,
    poweroff: Any,
    bare_imds: Imds,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_spec: Any,
) -> None:
    _promoted_run(job, make_spec, b"replaced after it was promoted", "0" * 64)
    echo_recipe = _echo_train_recipe()
    monkeypatch.setattr(recipes, "load", lambda name: echo_recipe)
    workdir = tmp_path / "work"
    bus = RecordingBus()

    assert run_job(JOB_ID, job.url, workdir=workdir, poweroff=poweroff, bus=bus, imds=bare_imds) == 1

    error = bus.events[-1]
    assert isinstance(error, JobError) and (error.phase, error.kind) == ("data", "exit")
    assert error.message.startswith(
        f"the promoted weights of job shapes-prev01 (s3://spotter-test/{PROMOTED_KEY}) downloaded with sha256 "
    )
    assert f"the run spec names {'0' * 64}" in error.message
    assert not (workdir / "yolov8n.pt").exists()
    assert not any(isinstance(e, JobPhase) and e.phase == "train" for e in bus.events)


def test_an_artifact_path_with_a_star_takes_the_newest_match(tmp_path: Path) -> None:
    for i, name in enumerate(("model_0000999.pth", "model_0001999.pth", "model_final.pth")):
        path = tmp_path / "model" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
    (tmp_path / "model" / "metrics.json").write_text("{}")
    assert newest(tmp_path / "model" / "model_*.pth") == tmp_path / "model" / "model_final.pth"
    assert newest(tmp_path / "runs" / "exp*" / "weights" / "best.pt") is None
    assert newest(tmp_path / "model" / "metrics.json") == tmp_path / "model" / "metrics.json"
    assert newest(tmp_path / "model" / "nothing.json") is None


def test_a_recipe_that_builds_for_a_gpu_says_so_on_a_machine_without_one(
    job: Any, standin: Path, poweroff: Any, bare_imds: Imds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = _recipe_with(build=_build())
    monkeypatch.setattr(recipes, "load", lambda name: recipe)
    bus = RecordingBus()

    assert run_job(JOB_ID, job.url, workdir=tmp_path / "work", poweroff=poweroff, bus=bus, imds=bare_imds) == 1

    error = bus.events[-1]
    assert isinstance(error, JobError) and (error.phase, error.kind) == ("install", "exit")
    assert "needs `cuda_arch`, which only a catalog GPU instance gives" in error.message
    assert not any(isinstance(e, JobPhase) for e in bus.events)


def test_a_spot_notice_stops_training_saves_the_newest_checkpoint_and_reports_the_interruption(
    job: Any,
    standin: Path,
    poweroff: Any,
    imds_endpoint: str,
    imds_meta: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPOTTER_STANDIN_EPOCH_SECONDS", "1.0")
    monkeypatch.setenv("SPOTTER_SPOT_POLL_SECONDS", "0.1")
    monkeypatch.setenv("SPOTTER_CHECKPOINT_POLL_SECONDS", "0.1")
    monkeypatch.setenv("SPOTTER_CHECKPOINT_STABLE_SECONDS", "0.05")
    workdir = tmp_path / "work"
    last = workdir / "runs" / "train" / "weights" / "last.pt"

    def reclaim_after_the_first_epoch() -> None:
        deadline = time.monotonic() + 60
        while not last.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        imds_meta["spot/instance-action"] = json.dumps({"action": "terminate", "time": "2026-12-07T04:00:00Z"})

    threading.Thread(target=reclaim_after_the_first_epoch, daemon=True).start()
    bus = RecordingBus()
    code = run_job(JOB_ID, job.url, workdir=workdir, poweroff=poweroff, bus=bus, imds=Imds(imds_endpoint))

    assert code == 1 and poweroff.calls == 1
    [interrupted] = [e for e in bus.events if isinstance(e, JobInterrupted)]
    assert interrupted.action == "terminate" and interrupted.checkpoint is not None
    assert _end_in_s3(job) == interrupted
    saved = job.s3.get_object(Bucket="spotter-test", Key=interrupted.checkpoint.key)
    body = saved["Body"].read()
    assert hashlib.sha256(body).hexdigest() == interrupted.checkpoint.sha256
    # The checkpoint is the trainer's newest, and says which epoch it holds (at least the first, not all 3).
    assert body == last.read_bytes()
    assert interrupted.current is not None and 1 <= interrupted.current < 3
    assert not any(isinstance(e, JobFinished | JobError) for e in bus.events)
    assert not any(isinstance(e, JobPhase) and e.phase == "upload" for e in bus.events)
