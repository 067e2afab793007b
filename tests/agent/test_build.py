"""The build cache on the instance: checkout through git, key, build and upload under the job, promotion by the
control plane, restore on the next job; and the darknet stand-in built from its local mirror, trained and parsed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from agent.build import BuildFailed, BuildOutcome, cache_key, ensure_build, pack
from agent.parsers import get_parser
from agent.parsers.base import Metric, Progress
from agent.plan import BuildStep, Source, Step
from infra.local.hosts import git_mirror_environ, make_git_mirror
from lambdas.promote import Promoter
from spotter.events import JobBuildReady
from spotter.store import JobsStore
from tests.spotter.helpers import make_spec, outputs_of, record_instances, table_definition

BUCKET = "spotter-test"
TABLE = "jobs"
UPSTREAM_URL = "https://git.example.com/tools/upstream"
DARKNET_URL = "https://github.com/AlexeyAB/darknet"
DARKNET_TREE = Path(__file__).resolve().parents[2] / "infra" / "local" / "standin" / "darknet"
IMAGE = "ami-0123456789abcdef0"
ARCH = "sm_75"
MAKEFILE = """\
all:
\tmkdir -p out/lib
\tprintf 'tool %s for %s\\n' "$$(cat VERSION)" "$$TARGET_ARCH" > out/tool
\tprintf 'lib\\n' > out/lib/libtool.so
"""


class Runner:
    """What the recipes' phase adapter does with a Step: each command in turn, stopping at the first that fails."""

    def __init__(self, log: Path, fail_when: str | None = None) -> None:
        self.log = log
        self.steps: list[Step] = []
        self.fail_when = fail_when

    def __call__(self, step: Step) -> bool:
        self.steps.append(step)
        with self.log.open("ab") as out:
            for argv in step.commands:
                if self.fail_when is not None and self.fail_when in argv:
                    return False
                done = subprocess.run(
                    argv, cwd=step.cwd, env={**os.environ, **step.env}, stdout=out, stderr=subprocess.STDOUT
                )
                if done.returncode != 0:
                    return False
        return True

    @property
    def built(self) -> bool:
        """Whether the build commands themselves ran (not just git)."""
        return any(argv[0] != "git" for step in self.steps for argv in step.commands)


@pytest.fixture
def upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A framework's repository, tagged v1, that git fetches from a local mirror whenever UPSTREAM_URL is named."""
    tree = tmp_path / "upstream-tree"
    tree.mkdir()
    (tree / "Makefile").write_text(MAKEFILE)
    (tree / "VERSION").write_text("1.0\n")
    bare = make_git_mirror(tree, tmp_path / "mirrors" / "upstream.git", tag="v1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name, value in git_mirror_environ({UPSTREAM_URL: bare, DARKNET_URL: _darknet_mirror(tmp_path)}).items():
        monkeypatch.setenv(name, value)
    return bare


def _darknet_mirror(tmp_path: Path) -> Path:
    return make_git_mirror(DARKNET_TREE, tmp_path / "mirrors" / "darknet.git", tag="yolov4")


@pytest.fixture
def s3(aws: str) -> Iterator[Any]:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield client


def _step(work: Path, ref: str = "v1", **changes: Any) -> BuildStep:
    step = BuildStep(
        recipe="ultralytics",
        source=Source(repo=UPSTREAM_URL, ref=ref, dir=work / "upstream"),
        commands=(("make",),),
        outputs=("out/tool", "out/lib"),
        env={"TARGET_ARCH": ARCH},
    )
    return replace(step, **changes)


def _ensure(step: BuildStep, s3: Any, runner: Runner, job_id: str) -> BuildOutcome:
    return ensure_build(
        step, s3=s3, bucket=BUCKET, outputs=outputs_of(job_id), attempt=1, image_id=IMAGE, gpu_arch=ARCH, run=runner
    )


def _promoter(s3: Any, *job_ids: str) -> Promoter:
    """The build cache function's logic over a jobs table that holds these jobs (recipe ultralytics)."""
    boto3.client("dynamodb", region_name="us-east-1").create_table(**table_definition(TABLE))
    store = JobsStore(TABLE)
    for job_id in job_ids:
        store.create(make_spec(seed=job_id).model_copy(update={"job_id": job_id}), trigger=job_id)
        record_instances(store, job_id)
    return Promoter(store, s3, BUCKET)


def _ready(outcome: BuildOutcome, job_id: str) -> JobBuildReady:
    assert outcome.artifact is not None
    return JobBuildReady(job_id=job_id, recipe="ultralytics", key=outcome.key, artifact=outcome.artifact)


# --- the cache round trip -------------------------------------------------------------------------------


def test_a_build_runs_once_is_promoted_and_is_restored_by_the_next_job(
    tmp_path: Path, upstream: Path, s3: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="agent.build")
    first = Runner(tmp_path / "build-1.log")
    step = _step(tmp_path / "job-1")
    outcome = _ensure(step, s3, first, "job-aaa111")

    assert first.built and not outcome.cached
    assert (step.source.dir / "out" / "tool").read_text() == f"tool 1.0 for {ARCH}\n"
    # Under the job's own prefix, with the sha256 of the bytes there.
    assert outcome.artifact is not None
    assert outcome.artifact.key == f"{outputs_of('job-aaa111').prefix}build/ultralytics-{outcome.key}.tar.gz"
    head = s3.head_object(Bucket=BUCKET, Key=outcome.artifact.key)
    body = s3.get_object(Bucket=BUCKET, Key=outcome.artifact.key)["Body"].read()
    assert head["Metadata"]["sha256"] == outcome.artifact.sha256 == hashlib.sha256(body).hexdigest()
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="cache/").get("Contents")
    assert f"build stored for the cache as {outcome.key}" in caplog.text
    # git's output went through the runner, into the build log.
    assert "[new tag]         v1" in (tmp_path / "build-1.log").read_text()

    promoted = _promoter(s3, "job-aaa111").promote(_ready(outcome, "job-aaa111"))
    assert promoted.result == "promoted"
    assert promoted.cache_key == f"cache/build/ultralytics/{outcome.key}/build.tar.gz"

    second = Runner(tmp_path / "build-2.log")
    step2 = _step(tmp_path / "job-2")
    again = _ensure(step2, s3, second, "job-bbb222")

    assert again == BuildOutcome(key=outcome.key, cached=True, artifact=None)
    assert not second.built
    assert (step2.source.dir / "out" / "tool").read_text() == f"tool 1.0 for {ARCH}\n"
    assert (step2.source.dir / "out" / "lib" / "libtool.so").is_file()
    assert f"build restored from cache {outcome.key} (built by job job-aaa111)" in caplog.text


def test_a_corrupt_cache_entry_is_ignored_and_the_build_runs(
    tmp_path: Path, upstream: Path, s3: Any, caplog: pytest.LogCaptureFixture
) -> None:
    step = _step(tmp_path / "job-1")
    first = _ensure(step, s3, Runner(tmp_path / "1.log"), "job-aaa111")
    cache = JobBuildReady.cache_object_key("ultralytics", first.key)
    s3.put_object(Bucket=BUCKET, Key=cache, Body=b"not the build", Metadata={"sha256": "0" * 64})

    runner = Runner(tmp_path / "2.log")
    outcome = _ensure(_step(tmp_path / "job-2"), s3, runner, "job-bbb222")

    assert runner.built and not outcome.cached and outcome.artifact is not None
    assert "ignoring the cached build" in caplog.text


def test_an_existing_checkout_at_the_pinned_commit_is_used_as_it_is(tmp_path: Path, upstream: Path, s3: Any) -> None:
    step = _step(tmp_path / "job-1")
    _ensure(step, s3, Runner(tmp_path / "1.log"), "job-aaa111")
    runner = Runner(tmp_path / "2.log")
    outcome = _ensure(step, s3, runner, "job-aaa111")

    assert [argv[:1] for s in runner.steps for argv in s.commands] == [("make",)]
    assert not outcome.cached


def test_a_pinned_commit_is_checked_out_and_a_server_refusing_shallow_fetches_gets_a_full_one(
    tmp_path: Path, upstream: Path, s3: Any
) -> None:
    commit = subprocess.run(
        ["git", "--git-dir", str(upstream), "rev-parse", "v1^{commit}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    runner = Runner(tmp_path / "1.log", fail_when="--depth")
    step = _step(tmp_path / "job-1", ref=commit)
    outcome = _ensure(step, s3, runner, "job-aaa111")

    assert outcome.key == cache_key(step, commit=commit, image_id=IMAGE, gpu_arch=ARCH)
    fetches = [argv for s in runner.steps for argv in s.commands if "fetch" in argv]
    assert len(fetches) == 2 and "--depth" in fetches[0] and "--depth" not in fetches[1]
    assert (step.source.dir / "out" / "tool").is_file()


def test_an_unknown_ref_fails_the_build(tmp_path: Path, upstream: Path, s3: Any) -> None:
    with pytest.raises(BuildFailed, match=r"cannot check out .* at no-such-tag"):
        _ensure(_step(tmp_path / "job-1", ref="no-such-tag"), s3, Runner(tmp_path / "1.log"), "job-aaa111")


def test_a_failing_build_or_a_missing_output_fails(tmp_path: Path, upstream: Path, s3: Any) -> None:
    with pytest.raises(BuildFailed, match="build failed"):
        _ensure(_step(tmp_path / "a", commands=(("make", "nothing"),)), s3, Runner(tmp_path / "a.log"), "job-a")
    with pytest.raises(BuildFailed, match="without out/missing"):
        _ensure(_step(tmp_path / "b", outputs=("out/missing",)), s3, Runner(tmp_path / "b.log"), "job-b")
    with pytest.raises(BuildFailed, match="inside the checkout"):
        _ensure(_step(tmp_path / "c", outputs=("../elsewhere",)), s3, Runner(tmp_path / "c.log"), "job-c")
    assert not s3.list_objects_v2(Bucket=BUCKET).get("Contents")


def test_a_failed_upload_costs_only_the_cache(tmp_path: Path, upstream: Path, s3: Any) -> None:
    step = _step(tmp_path / "job-1")
    outcome = ensure_build(
        step,
        s3=s3,
        bucket="no-such-bucket",
        outputs=outputs_of("job-aaa111"),
        attempt=1,
        image_id=IMAGE,
        gpu_arch=ARCH,
        run=Runner(tmp_path / "1.log"),
    )
    assert not outcome.cached and outcome.artifact is None
    assert (step.source.dir / "out" / "tool").is_file()


# --- the key and the archive --------------------------------------------------------------------------------


def test_the_key_names_everything_that_shapes_the_build_and_not_where_it_happens(tmp_path: Path) -> None:
    step = _step(tmp_path / "job-1")
    base = cache_key(step, commit="a" * 40, image_id=IMAGE, gpu_arch=ARCH)
    assert len(base) == 64 and int(base, 16) >= 0
    variants = [
        cache_key(step, commit="b" * 40, image_id=IMAGE, gpu_arch=ARCH),
        cache_key(step, commit="a" * 40, image_id="ami-0fedcba9876543210", gpu_arch=ARCH),
        cache_key(step, commit="a" * 40, image_id=IMAGE, gpu_arch="sm_86"),
        cache_key(replace(step, commands=(("make", "-j4"),)), commit="a" * 40, image_id=IMAGE, gpu_arch=ARCH),
        cache_key(replace(step, outputs=("out/tool",)), commit="a" * 40, image_id=IMAGE, gpu_arch=ARCH),
        cache_key(replace(step, env={"TARGET_ARCH": "sm_86"}), commit="a" * 40, image_id=IMAGE, gpu_arch=ARCH),
        cache_key(replace(step, recipe="darknet"), commit="a" * 40, image_id=IMAGE, gpu_arch=ARCH),
    ]
    assert len({base, *variants}) == len(variants) + 1
    # Another job's checkout folder, named in a command, is the same build.
    other = _step(tmp_path / "job-2")
    in_dir = (("make", f"PREFIX={step.source.dir}/out"),)
    assert cache_key(replace(step, commands=in_dir), commit="a" * 40, image_id=IMAGE, gpu_arch=ARCH) == cache_key(
        replace(other, commands=(("make", f"PREFIX={other.source.dir}/out"),)),
        commit="a" * 40,
        image_id=IMAGE,
        gpu_arch=ARCH,
    )


def test_the_archive_lists_outputs_in_sorted_order_without_owners(tmp_path: Path) -> None:
    root = tmp_path / "src"
    for name in ("b/z", "b/a", "a", "c/d/e"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    pack(root, ("c", "b", "a"), tmp_path / "x.tar.gz")
    with tarfile.open(tmp_path / "x.tar.gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["a", "b", "b/a", "b/z", "c", "c/d", "c/d/e"]
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}


# --- the darknet stand-in, from its mirror through the build cache to a parsed training log -----------------


def _shapes_data(work: Path, images: int = 40) -> Path:
    data = work / "data"
    data.mkdir(parents=True)
    (data / "train.txt").write_text("".join(f"{data}/img{i}.jpg\n" for i in range(images)))
    (data / "valid.txt").write_text("".join(f"{data}/img{i}.jpg\n" for i in range(images // 4)))
    (data / "obj.names").write_text("rectangle\ncircle\n")
    (work / "backup").mkdir()
    (data / "obj.data").write_text(
        f"classes = 2\ntrain = {data}/train.txt\nvalid = {data}/valid.txt\nnames = {data}/obj.names\n"
        f"backup = {work}/backup/\n"
    )
    cfg = work / "yolo-shapes.cfg"
    cfg.write_text(
        "[net]\nbatch=64\nsubdivisions=16\nwidth=128\nheight=128\nchannels=3\nmomentum=0.9\ndecay=0.0005\n"
        "learning_rate=0.00261\nburn_in=100\nmax_batches = 300\npolicy=steps\nsteps=240,270\nscales=.1,.1\n\n"
        "[convolutional]\nfilters=32\nsize=3\nstride=2\n\n[convolutional]\nfilters=21\nsize=1\nstride=1\n\n"
        "[yolo]\nmask = 3,4,5\nclasses=2\nnum=6\n\n[route]\nlayers=-3\n\n"
        "[convolutional]\nfilters=21\nsize=1\nstride=1\n\n[yolo]\nmask = 0,1,2\nclasses=2\nnum=6\n"
    )
    return cfg


def _darknet(binary: Path, *args: str | Path) -> str:
    done = subprocess.run(
        [str(binary), "detector", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SPOTTER_STANDIN_ITERATION_SECONDS": "0"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout + done.stderr


def test_the_darknet_stand_in_builds_from_its_mirror_trains_and_parses_to_rising_map(
    tmp_path: Path, upstream: Path, s3: Any
) -> None:
    step = BuildStep(
        recipe="darknet",
        source=Source(repo=DARKNET_URL, ref="yolov4", dir=tmp_path / "work" / "darknet"),
        commands=(
            (
                "make",
                "-j4",
                "GPU=1",
                "CUDNN=1",
                "CUDNN_HALF=1",
                "OPENCV=1",
                f"ARCH=-gencode arch=compute_75,code=[{ARCH},compute_75]",
            ),
        ),
        outputs=("darknet",),
    )
    runner = Runner(tmp_path / "build.log")
    outcome = _ensure(step, s3, runner, "job-aaa111")
    assert not outcome.cached
    assert "GPU=1 CUDNN=1 CUDNN_HALF=1 OPENCV=1" in (tmp_path / "build.log").read_text()

    binary = step.source.dir / "darknet"
    cfg = _shapes_data(tmp_path / "work")
    data = tmp_path / "work" / "data" / "obj.data"
    log = _darknet(binary, "train", data, cfg, "-dont_show", "-map", "-gpus", "0,1", "-mjpeg_port", "8090")

    parser = get_parser("darknet")
    items = [item for line in log.splitlines() for item in parser.feed(line)]
    progress = [i for i in items if isinstance(i, Progress)]
    maps = [i.map50 or 0.0 for i in items if isinstance(i, Metric)]
    assert [p.current for p in progress] == list(range(1, 301))
    assert progress[-1].loss is not None and progress[0].loss is not None and progress[-1].loss < progress[0].loss / 5
    assert len(maps) == 3 and maps == sorted(maps) and maps[0] > 0.5 and maps[-1] >= 0.85
    summary = parser.summary()
    assert set(summary["metrics"]["per_class_ap50"]) == {"rectangle", "circle"}
    assert summary["best"]["map50"] == maps[-1]
    backup = tmp_path / "work" / "backup"
    assert {p.name for p in backup.iterdir()} == {
        "yolo-shapes_best.weights",
        "yolo-shapes_last.weights",
        "yolo-shapes_final.weights",
    }

    # darknet's own evaluation of the best weights, and a run resumed from _last that has nothing left to do.
    evaluated = _darknet(binary, "map", data, cfg, backup / "yolo-shapes_best.weights")
    assert "mean average precision (mAP@0.50) = " in evaluated
    resumed = _darknet(binary, "train", data, cfg, backup / "yolo-shapes_last.weights", "-dont_show")
    assert " avg loss" not in resumed and "Saving weights to" in resumed


def test_the_darknet_stand_in_resumes_from_last_weights_and_clear_starts_over(
    tmp_path: Path, upstream: Path, s3: Any
) -> None:
    step = BuildStep(
        recipe="darknet",
        source=Source(repo=DARKNET_URL, ref="yolov4", dir=tmp_path / "work" / "darknet"),
        commands=(("make",),),
        outputs=("darknet",),
    )
    _ensure(step, s3, Runner(tmp_path / "build.log"), "job-aaa111")
    binary = step.source.dir / "darknet"
    cfg = _shapes_data(tmp_path / "work")
    cfg.write_text(cfg.read_text().replace("max_batches = 300", "max_batches = 1200"))
    data = tmp_path / "work" / "data" / "obj.data"
    backup = tmp_path / "work" / "backup"
    _darknet(binary, "train", data, cfg, "-dont_show")
    assert (backup / "yolo-shapes_1000.weights").is_file()

    cfg.write_text(cfg.read_text().replace("max_batches = 1200", "max_batches = 1250"))
    resumed = _darknet(binary, "train", data, cfg, backup / "yolo-shapes_last.weights", "-dont_show")
    parser = get_parser("darknet")
    items = [item for line in resumed.splitlines() for item in parser.feed(line)]
    iterations = [item.current for item in items if isinstance(item, Progress)]
    assert iterations == list(range(1201, 1251))

    cleared = _darknet(binary, "train", data, cfg, backup / "yolo-shapes_last.weights", "-dont_show", "-clear")
    assert " 1: " in cleared and " 1250: " in cleared


def test_the_darknet_stand_in_refuses_a_cfg_whose_filters_do_not_fit_its_classes(
    tmp_path: Path, upstream: Path, s3: Any
) -> None:
    step = BuildStep(
        recipe="darknet",
        source=Source(repo=DARKNET_URL, ref="yolov4", dir=tmp_path / "work" / "darknet"),
        commands=(("make",),),
        outputs=("darknet",),
    )
    _ensure(step, s3, Runner(tmp_path / "build.log"), "job-aaa111")
    cfg = _shapes_data(tmp_path / "work")
    cfg.write_text(cfg.read_text().replace("filters=21", "filters=255"))
    done = subprocess.run(
        [str(step.source.dir / "darknet"), "detector", "train", str(tmp_path / "work" / "data" / "obj.data"), str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "filters= in the [convolutional]-layer doesn't correspond to classes=" in done.stdout
