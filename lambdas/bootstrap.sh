#!/bin/bash
# Spotter training instance bootstrap (EC2 user data, rendered per attempt by lambdas/userdata.py).
# Arms a dead-man switch, installs the agent's few dependencies if missing, fetches the agent package
# from S3, checks its sha256 and runs it. Holds no credential: AWS access comes from the instance role.
set -Eeuo pipefail

# The dead-man switch comes before anything that can hang or fail: whatever happens below, the box
# powers off (and, by its launch template, terminates) after the job's max_hours.
shutdown -h +{{MAX_MINUTES}}

JOB_ID={{JOB_ID}}
SPEC_URI={{SPEC_URI}}
AGENT_URI={{AGENT_URI}}
AGENT_SHA256={{AGENT_SHA256}}
export AWS_REGION={{REGION}}
export AWS_DEFAULT_REGION="$AWS_REGION"
export SPOTTER_HOME="${SPOTTER_HOME:-/opt/spotter}"
export PYTHONUNBUFFERED=1
# Newer images mark the system Python as externally managed; this box exists only for the job.
export PIP_BREAK_SYSTEM_PACKAGES=1

mkdir -p "$SPOTTER_HOME"
cd "$SPOTTER_HOME"
LOG="$SPOTTER_HOME/bootstrap.log"
exec >>"$LOG" 2>&1

log() { printf '%s bootstrap: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

# Tells the control plane why this box gives up (the instance cannot write the jobs table: the bus is
# its only voice), using the bus and attempt named in the job's spec. Best effort: the shutdown that
# follows is what matters.
report_error() {
  python3 - "$1" "$JOB_ID" "$SPEC_URI" "$LOG" <<'PY' || log "could not report the error on the bus"
import json, sys, time
import boto3

message, job_id, spec_uri, log_path = sys.argv[1:5]
bucket, _, key = spec_uri.removeprefix("s3://").partition("/")
spec = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
with open(log_path, errors="replace") as f:
    tail = [line.rstrip("\n")[:300] for line in f.readlines()[-30:]]
detail = {
    "job_id": job_id, "attempt": spec["attempt"], "seq": 0, "at": time.time(),
    "phase": "install", "kind": "crash", "message": message[:2000], "last_lines": tail,
}
resp = boto3.client("events").put_events(Entries=[{
    "EventBusName": spec["bus_name"], "Source": "spotter.agent", "DetailType": "Job Error",
    "Detail": json.dumps(detail), "Resources": [f"spotter:job/{job_id}"],
}])
if resp.get("FailedEntryCount"):
    sys.exit(f"the bus rejected the error event: {resp['Entries']}")
PY
}

on_error() {
  local status=$? line=$1 command=$2 last
  trap - ERR
  set +e
  last=$(tail -n 1 "$LOG")
  log "failed (exit $status) at line $line: ${command%%$'\n'*}"
  report_error "Bootstrap failed before the agent started: ${last} (exit $status at line $line)"
  log "powering off"
  shutdown -h now
  exit "$status"
}
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

log "job $JOB_ID, dead-man switch armed for {{MAX_MINUTES}} minutes"

python3 -c 'import sys; sys.exit(None if sys.version_info >= (3, 11) else f"python3 is {sys.version.split()[0]}; the agent needs 3.11 or newer")'
if ! python3 -c 'import boto3, pydantic, requests' 2>/dev/null; then
  log "installing the agent's dependencies"
  python3 -m pip --version >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q python3-pip; }
  python3 -m pip install --quiet --disable-pip-version-check 'boto3>=1.35,<2' 'pydantic>=2.9,<3' 'requests>=2.31,<3'
fi

# The recipes run with the image's framework Python: the Deep Learning AMI's PyTorch environment when the image
# has one (its torch is what the builds compile against), else python3. The agent itself stays on python3, with
# its own few dependencies. SPOTTER_FRAMEWORK_PYTHON names another (the local stack's image does).
FRAMEWORK_PYTHON="${SPOTTER_FRAMEWORK_PYTHON:-/opt/pytorch/bin/python}"
if [ -x "$FRAMEWORK_PYTHON" ]; then
  log "framework python: $FRAMEWORK_PYTHON, the image's"
else
  log "framework python: no $FRAMEWORK_PYTHON in this image, using python3"
  FRAMEWORK_PYTHON=$(command -v python3)
fi

AGENT="$SPOTTER_HOME/spotter-agent.pyz"
log "fetching $AGENT_URI"
python3 - "$AGENT_URI" "$AGENT" "$AGENT_SHA256" <<'PY'
import hashlib, sys
import boto3

uri, path, expected = sys.argv[1:4]
bucket, _, key = uri.removeprefix("s3://").partition("/")
boto3.client("s3").download_file(bucket, key, path)
with open(path, "rb") as f:
    actual = hashlib.file_digest(f, "sha256").hexdigest()
if actual != expected:
    sys.exit(f"agent package sha256 mismatch: expected {expected}, got {actual}")
print(f"agent package verified: sha256 {actual}")
PY

# From here on the agent reports its own errors and powers the box off when it is done.
trap - ERR
log "starting the agent"
status=0
python3 "$AGENT" run --job "$JOB_ID" --spec "$SPEC_URI" --python "$FRAMEWORK_PYTHON" || status=$?
log "agent exited with status $status; powering off"
shutdown -h now
