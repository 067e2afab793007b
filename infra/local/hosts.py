"""EC2 hosts on this machine: every instance launched in moto runs its real user data as a local process.

Each host gets its own IMDSv2 stand-in, a `shutdown`/`poweroff` on its PATH that powers the instance
off (shutdown behaviour terminate → terminated in moto), a root folder standing in for its disk, and the
"GPU image": the Python environment given to the runner. Instances terminated in moto lose their process.

What EC2 itself does around an instance happens here too: every instance of ours that goes shutting-down or
terminated puts an "EC2 Instance State-change Notification" on the default bus; a spot interruption announces
itself in the host's IMDS and with an "EC2 Spot Instance Interruption Warning", then terminates the instance
when the notice is up (two minutes in AWS, `spot_notice_seconds` here).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from infra.local.imds import Imds

POLL_SECONDS = 0.5
KILL_GRACE_SECONDS = 5
JOB_TAG = "spotter:job"
SPOT_NOTICE_SECONDS = 120.0  # what AWS gives between the interruption warning and the termination
EC2_SOURCE = "aws.ec2"
STATE_CHANGE = "EC2 Instance State-change Notification"
SPOT_WARNING = "EC2 Spot Instance Interruption Warning"
GONE = ("shutting-down", "terminated")

Emit = Callable[[dict[str, Any]], None]

_SHIM = """#!/bin/sh
# {name} on a local Spotter instance: asks the host runner to power this instance off.
exec python3 -c 'import json, sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=json.dumps(sys.argv[2:]).encode(), method="POST"), timeout=10)' \\
  '{url}' {fixed} "$@"
"""

# The local image stands in for a GPU AMI whose system packages are already there: the recipes' apt-get
# commands are shown in the log and succeed without touching the machine running the stack.
_APT_SHIM = """#!/bin/sh
echo "$(basename "$0") $*: provided by the local image"
"""

# The CUDA toolkit the local image declares, for recipes that compile CUDA code (agent.image asks nvcc its release
# before the install phase). It compiles nothing: the stand-in frameworks never call it (the darknet stand-in builds
# a CPU binary with gcc), and a build that did call it fails there, in the build log.
NVCC_SHIM = """#!/bin/sh
if [ "$1" = "--version" ]; then
  echo "nvcc: NVIDIA (R) Cuda compiler driver (the Spotter local image's stand-in)"
  echo "Cuda compilation tools, release {release}, V{release}.0"
  exit 0
fi
echo "nvcc $*: the local image's stand-in nvcc compiles nothing" >&2
exit 1
"""
# The release the local image's nvcc reports.
STANDIN_CUDA_RELEASE = "12.8"

# Fixed identity and dates for mirror commits: the same source tree always gives the same commit (and build key).
_MIRROR_GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Spotter local stack",
    "GIT_AUTHOR_EMAIL": "local@spotter.invalid",
    "GIT_AUTHOR_DATE": "2020-04-23T00:00:00Z",
    "GIT_COMMITTER_NAME": "Spotter local stack",
    "GIT_COMMITTER_EMAIL": "local@spotter.invalid",
    "GIT_COMMITTER_DATE": "2020-04-23T00:00:00Z",
}


def make_git_mirror(source: Path, bare: Path, *, tag: str) -> Path:
    """A bare repository holding `source` (minus what its .gitignore leaves out) as one commit tagged `tag`."""

    def git(*args: str) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **_MIRROR_GIT_ENV}
        subprocess.run(["git", *args], env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)

    bare.parent.mkdir(parents=True, exist_ok=True)
    git("init", "--quiet", "--bare", str(bare))
    tree = ("--git-dir", str(bare), "--work-tree", str(source))
    git(*tree, "add", "--all")
    git(*tree, "commit", "--quiet", "--message", f"{source.name}: local stand-in")
    git("--git-dir", str(bare), "tag", tag)
    return bare


def git_mirror_environ(mirrors: dict[str, Path]) -> dict[str, str]:
    """Environment that makes git fetch each URL (with or without `.git`) from its local bare repository.

    git's own `url.<base>.insteadOf`, given as GIT_CONFIG_* variables: the product's git commands stay as they are.
    """
    pairs = [
        (f"url.{bare.as_uri()}.insteadOf", url + suffix)
        for url, bare in mirrors.items()
        for suffix in ("", ".git")  # git takes the longest match, so `….git` never becomes `….git.git`
    ]
    env = {"GIT_CONFIG_COUNT": str(len(pairs))}
    for i, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


@dataclass
class Image:
    """What the instance's image provides: a Python with frameworks (the folder of its `python3`, which runs the
    agent and the recipes), the CUDA toolkit release its stand-in nvcc reports (None: no toolkit), and environment
    defaults. It has no torch: the recipes that need the image's torch are refused by the agent's image check."""

    python_bin: Path
    environ: dict[str, str] = field(default_factory=dict)
    cuda_release: str | None = STANDIN_CUDA_RELEASE

    @property
    def framework_python(self) -> Path:
        return self.python_bin / "python3"


@dataclass
class Host:
    instance_id: str
    job: str
    root: Path
    imds: Imds
    process: subprocess.Popen[bytes] | None = None
    deadman: threading.Timer | None = None
    reclaim: threading.Timer | None = None
    terminated: bool = False
    market: str = "on-demand"
    power_log: list[list[str]] = field(default_factory=list)


def parse_shutdown(args: list[str]) -> float | None:
    """Seconds until power-off for shutdown(8) arguments; None for `-c` (cancel)."""
    if "-c" in args:
        return None
    for a in args:
        if a == "now":
            return 0.0
        if a.startswith("+") and a[1:].isdigit():
            return 60.0 * int(a[1:])
    return 60.0  # shutdown's default is one minute


class HostRunner:
    def __init__(
        self,
        *,
        root: Path,
        image: Image,
        aws_environ: dict[str, str],
        emit: Emit,
        spot_notice_seconds: float = SPOT_NOTICE_SECONDS,
    ) -> None:
        self.root = root
        self.image = image
        self.aws_environ = aws_environ
        self._emit = emit
        self.spot_notice_seconds = spot_notice_seconds
        self._ec2: Any = boto3.client("ec2")
        self._events: Any = boto3.client("events")
        self.hosts: dict[str, Host] = {}
        self._states: dict[str, str] = {}  # the last state each instance was seen in
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="host-runner")

    def start(self) -> HostRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Power off every host (a stopped stack leaves no instance running) and stop watching."""
        self._stop.set()
        self._thread.join(POLL_SECONDS * 4)
        for host in list(self.hosts.values()):
            self._terminate(host, "local stack stopped")

    def host_for_job(self, job: str) -> Host | None:
        with self._lock:
            found = [h for h in self.hosts.values() if h.job == job]
        return found[-1] if found else None

    # -- watching moto -----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as e:
                if not self._stop.is_set():
                    self._emit({"aws": "host runner error", "error": f"{type(e).__name__}: {e}"})
            self._stop.wait(POLL_SECONDS)

    def _tick(self) -> None:
        pages = self._ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag-key", "Values": [JOB_TAG]}]
        )
        for page in pages:
            for res in page["Reservations"]:
                for inst in res["Instances"]:
                    iid, state = inst["InstanceId"], inst["State"]["Name"]
                    self._state_seen(iid, state)
                    host = self.hosts.get(iid)
                    if host is None and state in ("pending", "running"):
                        self._boot(inst)
                    elif host is not None and not host.terminated and state in ("shutting-down", "terminated"):
                        self._kill(host)
                        host.terminated = True
                        self._emit(
                            {
                                "aws": "instance terminated",
                                "instance_id": iid,
                                "job": host.job,
                                "reason": "terminated in EC2",
                            }
                        )

    def _state_seen(self, instance_id: str, state: str) -> None:
        """Put EC2's state-change notifications for an instance that went shutting-down or terminated."""
        before = self._states.get(instance_id)
        if before == state:
            return
        self._states[instance_id] = state
        if state not in GONE:
            return
        passed = ["shutting-down", "terminated"] if state == "terminated" and before != "shutting-down" else [state]
        for s in passed:
            self.put_ec2_event(STATE_CHANGE, {"instance-id": instance_id, "state": s}, instance_id)

    def put_ec2_event(self, detail_type: str, detail: dict[str, str], instance_id: str) -> None:
        """An event as EC2 puts it on the account's default bus."""
        arn = f"arn:aws:ec2:{self._ec2.meta.region_name}:123456789012:instance/{instance_id}"
        entry = {
            "Source": EC2_SOURCE,
            "DetailType": detail_type,
            "Detail": json.dumps(detail),
            "Resources": [arn],
            "Time": datetime.now(UTC),
        }
        resp = self._events.put_events(Entries=[entry])
        ok = not resp.get("FailedEntryCount")
        self._emit({"aws": "ec2 event", "detail-type": detail_type, **detail, "put": ok})

    # -- faults ------------------------------------------------------------------------------------------------

    def interrupt(self, host: Host, notice_seconds: float | None = None) -> None:
        """EC2 reclaims a spot instance: the notice in IMDS and on the bus, the termination when it is up."""
        seconds = self.spot_notice_seconds if notice_seconds is None else notice_seconds
        host.imds.announce_interruption(seconds=seconds)
        self._emit(
            {
                "aws": "spot interruption announced",
                "instance_id": host.instance_id,
                "job": host.job,
                "terminates_in_seconds": seconds,
            }
        )
        self.put_ec2_event(
            SPOT_WARNING, {"instance-id": host.instance_id, "instance-action": "terminate"}, host.instance_id
        )
        host.reclaim = threading.Timer(seconds, self._terminate, args=(host, "spot interruption"))
        host.reclaim.daemon = True
        host.reclaim.start()

    def kill_agent(self, host: Host) -> None:
        """The agent and its trainer die (SIGKILL, no cleanup); the instance stays up, billing on."""
        p = host.process
        if p is not None and p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        self._emit({"aws": "agent killed", "instance_id": host.instance_id, "job": host.job})

    def vanish(self, host: Host) -> None:
        """The instance disappears without warning: its processes die with it, with no chance to say anything."""
        self._terminate(host, "instance vanished", graceful=False)

    def _boot(self, inst: dict[str, Any]) -> None:
        iid = inst["InstanceId"]
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        job = tags.get(JOB_TAG, "")
        raw = self._ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"].get("Value", "")
        user_data = base64.b64decode(raw).decode() if raw else ""
        root = self.root / iid
        (root / "bin").mkdir(parents=True, exist_ok=True)
        (root / "home").mkdir(exist_ok=True)
        az = inst["Placement"]["AvailabilityZone"]
        imds = Imds(
            instance_id=iid,
            instance_type=inst["InstanceType"],
            availability_zone=az,
            user_data=user_data,
            tags=tags,
            on_power=functools.partial(self._power, iid),
        ).start()
        market = inst.get("InstanceLifecycle", "on-demand")
        host = Host(instance_id=iid, job=job, root=root, imds=imds, market=market)
        with self._lock:
            self.hosts[iid] = host
        self._emit(
            {
                "aws": "instance launched",
                "instance_id": iid,
                "job": job,
                "instance_type": inst["InstanceType"],
                "market": market,
                "availability_zone": az,
            }
        )
        if not user_data:
            return  # an instance without user data just idles, as it would in EC2
        for name, fixed in (("shutdown", ""), ("poweroff", "now"), ("halt", "now")):
            shim = root / "bin" / name
            shim.write_text(_SHIM.format(name=name, url=f"{imds.url}/_local/power", fixed=fixed))
            shim.chmod(0o755)
        for name in ("apt-get", "apt"):
            shim = root / "bin" / name
            shim.write_text(_APT_SHIM)
            shim.chmod(0o755)
        if self.image.cuda_release is not None:
            shim = root / "bin" / "nvcc"
            shim.write_text(NVCC_SHIM.format(release=self.image.cuda_release))
            shim.chmod(0o755)
        script = root / "user-data"
        script.write_text(user_data)
        env = {
            "PATH": os.pathsep.join(
                [str(root / "bin"), str(self.image.python_bin), "/usr/local/bin", "/usr/bin", "/bin"]
            ),
            "HOME": str(root / "home"),
            "LANG": "C.UTF-8",
            "SPOTTER_HOME": str(root / "opt" / "spotter"),
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
            # The bootstrap's framework Python, in place of a DLAMI's /opt/pytorch/bin/python.
            "SPOTTER_FRAMEWORK_PYTHON": str(self.image.framework_python),
            **self.aws_environ,
            **self.image.environ,
        }
        console = (root / "console.log").open("ab")
        host.process = subprocess.Popen(
            ["/bin/bash", str(script)],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        console.close()

    # -- power -------------------------------------------------------------------------------------

    def _power(self, instance_id: str, args: list[str]) -> None:
        host = self.hosts.get(instance_id)
        if host is None or host.terminated:
            return
        host.power_log.append(args)
        delay = parse_shutdown(args)
        if host.deadman:
            host.deadman.cancel()
            host.deadman = None
        if delay is None:
            self._emit({"aws": "shutdown cancelled", "instance_id": instance_id, "job": host.job})
            return
        if delay == 0:
            # Let the shim's request finish before the process group goes.
            threading.Thread(target=self._terminate, args=(host, "shutdown -h now"), daemon=True).start()
            return
        self._emit({"aws": "shutdown scheduled", "instance_id": instance_id, "job": host.job, "in_seconds": delay})
        host.deadman = threading.Timer(delay, self._terminate, args=(host, f"shutdown {' '.join(args)}"))
        host.deadman.daemon = True
        host.deadman.start()

    def _kill(self, host: Host, *, graceful: bool = True) -> None:
        """The instance's processes go: SIGTERM then SIGKILL as a shutdown does, or at once as a power loss."""
        p = host.process
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                p.wait(KILL_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(KILL_GRACE_SECONDS)
        except ProcessLookupError:
            pass

    def _terminate(self, host: Host, reason: str, *, graceful: bool = True) -> None:
        with self._lock:
            if host.terminated:
                return
            host.terminated = True
        for timer in (host.deadman, host.reclaim):
            if timer:
                timer.cancel()
        time.sleep(0.2)
        self._kill(host, graceful=graceful)
        try:
            self._ec2.terminate_instances(InstanceIds=[host.instance_id])
        except Exception as e:
            self._emit({"aws": "host runner error", "instance_id": host.instance_id, "error": str(e)})
        host.imds.stop()
        self._emit({"aws": "instance terminated", "instance_id": host.instance_id, "job": host.job, "reason": reason})

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
