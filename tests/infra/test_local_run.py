"""The local stack's new steps and options through `python -m infra.local run`, each run in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "tests" / "e2e" / "scenarios"


def run(scenario: Path, *options: str) -> tuple[int, list[dict[str, Any]], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "infra.local", "run", "--trainer", "standin", *options, str(scenario)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines() if line.strip()], proc.stderr


def test_retries_and_a_missing_schedule_in_the_event_stream() -> None:
    code, lines, stderr = run(
        SCENARIOS / "local-steps.yaml",
        "--usergroup",
        "S0MLTEAM=U0ALICE,U0BOB",
        "--param",
        "AllowedChannels=C0TRAINING",
        "--env",
        "SPOTTER_ADMINS=U0ALICE",
    )

    assert code == 1, stderr[-2000:]
    responses = [line for line in lines if line.get("slack") == "response"]
    assert [(r["command"], r.get("retry")) for r in responses] == [("/train", None), ("/train", 1), ("/train", 2)]
    assert responses[0]["args"] == responses[1]["args"] == responses[2]["args"]
    assert not [line for line in lines if line.get("aws") == "schedule fired"]
    failed = lines[-2]
    assert failed == {
        "scenario": "fire_schedule failed",
        "step": 3,
        "error": "no schedule named 'no-such-schedule' in schedule group spotter (schedules: none)",
    }
    assert lines[-1] == {"final": {"jobs": [], "instances": []}}
    assert "No application metrics to publish" not in stderr


def test_a_double_click_on_cancel_reaches_the_slack_function_twice() -> None:
    code, lines, stderr = run(SCENARIOS / "local-click.yaml")

    tail = "\n".join(json.dumps(line)[:300] for line in lines[-10:])
    assert code == 0, f"{tail}\n{stderr[-2000:]}"
    (job,) = lines[-1]["final"]["jobs"]
    assert job["status"] == "CANCELLED"
    slash = [line for line in lines if line.get("slack") == "response" and "command" in line]
    assert [r.get("retry") for r in slash] == [None, 1]
    clicks = [line for line in lines if line.get("slack") == "response" and line.get("action") == "cancel_job"]
    acks = [c for c in clicks if c.get("job") == job["job"]]
    assert len(acks) == 2, "each click is answered by the function URL"
    assert [c for c in clicks if "job" not in c], "the clicker is answered through the click's response_url"
    requested = [
        line
        for line in lines
        if line.get("aws") == "event delivered" and line.get("detail-type") == "Job Cancel Requested"
    ]
    assert requested and all(r["job"] == job["job"] for r in requested)


SETTINGS_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import boto3
    from slack_sdk import WebClient
    from infra.local.stack import LocalStack

    events = []
    stack = LocalStack(
        trainer="standin",
        emit=events.append,
        parameters={"AllowedChannels": "C0TRAINING,C0ML", "DownloadLinkSeconds": "900"},
        control_environ={"SPOTTER_ALLOWED_USERS": "U0ALICE"},
        usergroups={"S0MLTEAM": ["U0ALICE", "U0BOB"]},
    )
    stack.start()
    try:
        slack_fn = stack.resources.functions["SlackFunction"]
        run_fn = stack.resources.functions["ScheduledRunFunction"]
        scheduler = boto3.client("scheduler")
        for name, arn in (("nightly", run_fn.arn), ("stray", run_fn.arn + "-gone")):
            scheduler.create_schedule(
                Name=name,
                GroupName=stack.resources.schedule_groups[0],
                ScheduleExpression="cron(0 2 * * ? *)",
                FlexibleTimeWindow={"Mode": "OFF"},
                Target={"Arn": arn, "RoleArn": slack_fn.environment["SPOTTER_SCHEDULER_ROLE_ARN"], "Input": "{}"},
            )
        stack.fire_schedule("all")
        members = WebClient(token=stack.slack.bot_token, base_url=stack.slack.api_url).usergroups_users_list(
            usergroup="S0MLTEAM"
        )
        out = {
            "environ": {k: os.environ.get(k) for k in (
                "SPOTTER_ALLOWED_CHANNELS", "SPOTTER_ALLOWED_USERS", "SPOTTER_PRESIGN_SECONDS",
                "SPOTTER_SCHEDULE_GROUP", "SPOTTER_SCHEDULE_TARGET_ARN",
            )},
            "run_arn": run_fn.arn,
            "members": members["users"],
            "fired": [e for e in events if e.get("aws") == "schedule fired"],
        }
    finally:
        stack.stop()
    sys.__stdout__.write(json.dumps(out, default=str) + "\\n")
    """
)


def test_params_env_and_usergroups_reach_the_in_process_lambdas_and_schedules_fire_there() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SETTINGS_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    assert out["environ"] == {
        "SPOTTER_ALLOWED_CHANNELS": "C0TRAINING,C0ML",  # a template parameter override
        "SPOTTER_ALLOWED_USERS": "U0ALICE",  # an --env setting, over the parameter's default
        "SPOTTER_PRESIGN_SECONDS": "900",
        "SPOTTER_SCHEDULE_GROUP": "spotter",
        "SPOTTER_SCHEDULE_TARGET_ARN": out["run_arn"],
    }
    assert out["members"] == ["U0ALICE", "U0BOB"]
    fired = {e["schedule"]: e for e in out["fired"]}
    assert set(fired) == {"nightly", "stray"}
    assert fired["nightly"]["function"] == "spotter-scheduled-run"
    assert fired["nightly"]["scheduled_time"].endswith("Z")
    assert fired["stray"]["function"] is None
    assert "is no function of this stack" in fired["stray"]["error"]
