"""The Slack face end to end through `python -m infra.local run`: every command, the card and its buttons, the
result with its chart, schedules and promotion, access control, and a rate-limited Slack."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.test_scenarios import SCENARIOS, Run, run


def _cards(r: Run) -> list[dict[str, Any]]:
    """Top-level posts (job cards) in the order they were made."""
    return [a for a in r.slack("chat.postMessage") if not a.get("thread_ts")]


def _landed(r: Run, method: str) -> list[dict[str, Any]]:
    """Calls Slack took (an injected fault's answer carries a status)."""
    return [x["args"] for x in r.lines if x.get("slack") == method and "status" not in x]


def _thread(r: Run, job: str) -> list[str]:
    ts = next(x["args"]["ts"] for x in r.lines if x.get("slack") == "chat.update" and job in x["args"].get("text", ""))
    return [a["text"] for a in r.slack("chat.postMessage") if a.get("thread_ts") == ts]


def _final_card(r: Run, job: str) -> dict[str, Any]:
    return [a for a in _landed(r, "chat.update") if job in a.get("text", "")][-1]


def _buttons(card: dict[str, Any]) -> set[str]:
    ids: set[str] = set()
    for block in card.get("blocks", []):
        for el in block.get("elements", []) if block.get("type") == "actions" else []:
            ids.add(el.get("action_id"))
        acc = block.get("accessory")
        if acc and acc.get("type") == "button":
            ids.add(acc.get("action_id"))
    return ids


def _answers(r: Run) -> list[str]:
    return [a["text"] for a in r.responses() if a.get("text")]


def test_every_command_is_answered_to_the_asker_and_the_card_ends_with_its_buttons() -> None:
    r = run(SCENARIOS / "slack_commands.yaml")
    assert r.code == 0, r.why()
    (job,) = r.final["jobs"]  # the request Slack sent three times made one job
    assert job["status"] == "SUCCEEDED"
    assert len(_cards(r)) == 1
    answers = _answers(r)
    # Every answer to a command that changes nothing goes to the asker only.
    assert all(a.get("response_type") == "ephemeral" for a in r.responses() if a.get("text")), answers
    joined = "\n".join(answers)
    for hint in ("did you mean `/train status`", "did you mean `shapes`", "did you mean `yolov8n`"):
        assert hint in joined
    logs = [a for a in answers if a.startswith(f"Logs of {job['job']}")]
    assert len(logs) == 2  # the command and the card's Logs button
    logs_blocks = json.dumps(next(a for a in r.responses() if a.get("text", "").startswith("Logs of"))["blocks"])
    assert "```" in logs_blocks and "X-Amz-Expires=3600" in logs_blocks
    best, last = [a for a in answers if a.startswith(f"Weights of `{job['job']}`")]
    assert "best.pt" in best and "last.pt" in last and "sha256" in best and "X-Amz-Expires=3600" in best
    assert any(a.startswith("No weights are promoted for `shapes yolov8n`") for a in answers)
    assert any(a.startswith("Spotter commands:") for a in answers)
    # The card, updated in place, ends succeeded with Logs and Download (no Cancel once it has ended).
    card = _final_card(r, job["job"])
    assert "Succeeded" in card["text"]
    assert _buttons(card) >= {"show_logs", "download_weights"} and "cancel_job" not in _buttons(card)
    # The result in the thread: the requester is told, with the metrics and a chart that is a PNG.
    thread = _thread(r, job["job"])
    assert any(t.startswith("<@U0ALICE> Done:") and "mAP50" in t for t in thread), thread
    (upload,) = r.slack("files.upload")
    assert upload["png"] and upload["bytes"] > 1000
    (shared,) = r.slack("files.completeUploadExternal")
    assert shared["channel_id"] == "C0TRAINING" and shared.get("thread_ts")


def test_schedules_are_made_by_admins_fire_as_jobs_and_promote_only_better_weights() -> None:
    r = run(SCENARIOS / "schedules.yaml", "--param", "Admins=U0ALICE", timeout=700)
    assert r.code == 0, r.why()
    answers = _answers(r)
    joined = "\n".join(answers)
    assert "Only Spotter's admins (<@U0ALICE>) may make or delete schedules" in joined
    made = [a for a in answers if a.startswith(":calendar:") and "scheduled daily 02:00 (Europe/Berlin)" in a]
    assert made, answers
    listing = next(a for a in r.responses() if a.get("text", "").endswith("schedules") and "1 schedules" in a["text"])
    assert "next run" in json.dumps(listing["blocks"])
    # The retried request made one schedule: each fire_schedule ran it once.
    fired = r.aws("schedule fired")
    assert len(fired) == 2 and len({f["schedule"] for f in fired}) == 1
    first, second = r.final["jobs"]
    assert (first["status"], second["status"]) == ("SUCCEEDED", "SUCCEEDED")
    assert any("first promoted weights" in t for t in _thread(r, first["job"])), _thread(r, first["job"])
    kept = [t for t in _thread(r, second["job"]) if f"kept the promoted weights of job {first['job']}" in t]
    assert kept, _thread(r, second["job"])
    promoted = [a for a in answers if a.startswith("Promoted weights of `shapes yolov8n`")]
    assert promoted and first["job"] in promoted[-1]
    assert any("may make or delete schedules" in a for a in answers[answers.index(promoted[-1]) :])  # Bob, again
    assert any("is deleted: it will not run again" in a for a in answers)
    assert answers[-1].startswith("No schedules in this channel")


def test_only_the_allowed_channel_and_user_group_start_jobs() -> None:
    r = run(
        SCENARIOS / "access.yaml",
        "--param",
        "AllowedChannels=C0TRAINING",
        "--param",
        "AllowedUserGroups=S0MLTEAM",
        "--usergroup",
        "S0MLTEAM=U0ALICE",
    )
    assert r.code == 0, r.why()
    (job,) = r.final["jobs"]
    assert job["status"] == "SUCCEEDED"
    joined = "\n".join(_answers(r))
    assert "Jobs can be started in <#C0TRAINING> only." in joined
    assert "Only <!subteam^S0MLTEAM> may start jobs here; ask one of them." in joined
    assert len(_cards(r)) == 1


def test_a_minute_of_rate_limited_card_updates_loses_and_doubles_nothing() -> None:
    r = run(SCENARIOS / "slack_rate_limited.yaml")
    assert r.code == 0, r.why()
    (job,) = r.final["jobs"]
    assert job["status"] == "SUCCEEDED"
    refused = [x for x in r.lines if x.get("slack") == "chat.update" and x.get("status") == 429]
    assert refused, "the fault was not in the way"
    assert "Succeeded" in _final_card(r, job["job"])["text"]
    thread = _thread(r, job["job"])
    assert len(thread) == len(set(thread)), thread  # nothing twice
    assert sum(t.startswith("<@U0ALICE> Done:") for t in thread) == 1
    assert len(r.slack("files.completeUploadExternal")) == 1
    assert [t.split()[0] for t in thread if t.endswith("started") or " started on " in t][:3] == [
        "install",
        "data",
        "train",
    ]
