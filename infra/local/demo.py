"""`python -m infra.local demo`: `/train shapes yolov8n` end to end with a real CPU training.

Prints the channel as it changes (card updates, thread replies) and the instance's comings and goings,
then one JSON line: job, status, map50, weights_url, weights_sha256_verified, instance_state, attempts,
seconds. The weights are fetched through the presigned link the channel got, and their sha256 checked.
"""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, TextIO

import requests

from infra.local.slack import Message
from infra.local.stack import DEFAULT_CHANNEL, DEFAULT_USER, LocalStack, real_trainer_available
from spotter.status import JobStatus

DEMO_COMMAND = "shapes yolov8n"
TIMEOUT_SECONDS = 900
_SHOWN = {
    "chat.postMessage": "posted",
    "chat.update": "card updated",
    "chat.postEphemeral": "ephemeral",
    "response": "reply to /train",
    "files.completeUploadExternal": "file shared",
}


class ChannelPrinter:
    """Turns the stack's event stream into a transcript a person can follow."""

    def __init__(self, stack_ref: list[LocalStack], out: TextIO) -> None:
        self._stack = stack_ref
        self._out = out
        self._t0 = time.monotonic()

    def say(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def __call__(self, record: dict[str, Any]) -> None:
        stamp = f"[{time.monotonic() - self._t0:6.1f}s]"
        if "slack" in record and record["slack"] in _SHOWN and self._stack:
            args = record.get("args", {})
            msg = Message(
                channel=str(args.get("channel", "")),
                ts="",
                text=str(args.get("text", "")),
                user="",
                blocks=args.get("blocks") or [],
            )
            where = "thread reply" if args.get("thread_ts") else _SHOWN[record["slack"]]
            if record.get("action"):
                where = f"answer to a click on {record['action']}"
            body = self._stack[0].slack.render(msg)
            self.say(f"{stamp} #{args.get('channel', 'you')} · {where}\n" + textwrap.indent(body, "    │ "))
        elif record.get("aws") in ("instance launched", "instance terminated", "shutdown scheduled"):
            detail = {k: v for k, v in record.items() if k != "aws"}
            self.say(f"{stamp} EC2 · {record['aws']}: " + ", ".join(f"{k}={v}" for k, v in detail.items()))
        elif record.get("aws") in ("lambda error", "handler failed", "event dropped", "host runner error"):
            self.say(f"{stamp} ! {record}")


def _links(blocks: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "button" and node.get("url"):
                found.append(node["url"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(blocks)
    return found


def weights_link(stack: LocalStack, job: str) -> str | None:
    """The download link the channel was given for this job's weights (the card's or a reply's button)."""
    rec = stack.store.get(job)
    if rec.slack is None:
        return None
    msgs = stack.slack.messages(rec.slack.channel)
    for m in reversed(msgs):
        if m.ts == rec.slack.card_ts or m.thread_ts == rec.slack.thread_ts:
            links = _links(m.blocks)
            if links:
                return links[0]
    return None


def demo(out: TextIO, lambda_log: Path) -> int:
    if not real_trainer_available():
        print("infra.local demo needs the demo environment (torch + ultralytics): run `make demo`", file=sys.stderr)
        return 2
    started = time.monotonic()
    ref: list[LocalStack] = []
    printer = ChannelPrinter(ref, out)
    stack = LocalStack(trainer="real", emit=printer, progress_interval=2.0)
    ref.append(stack)
    summary: dict[str, Any] = {
        "job": None,
        "status": None,
        "map50": None,
        "weights_url": None,
        "weights_sha256_verified": False,
        "instance_state": None,
        "attempts": 0,
        "seconds": None,
    }
    try:
        stack.start()
        printer.say(
            f"Local stack up: moto at {stack.moto.endpoint}, Slack stand-in at {stack.slack.url}; "
            f"Lambda logs in {lambda_log}"
        )
        printer.say(f"/train {DEMO_COMMAND}   (typed by <@{DEFAULT_USER}> in #{DEFAULT_CHANNEL})")
        stack.slash(DEMO_COMMAND)
        if not stack.jobs:
            print("no job was created", file=sys.stderr)
            return 1
        job = stack.jobs[-1]
        summary["job"] = job
        try:
            stack.wait(job, JobStatus.SUCCEEDED, TIMEOUT_SECONDS)
        except (TimeoutError, ValueError) as e:
            print(f"! {e}", file=sys.stderr)
        stack.settle()
        rec = stack.store.get(job)
        summary.update(
            status=rec.status.value, map50=rec.metrics.map50 if rec.metrics else None, attempts=len(rec.attempts)
        )
        states = {i["instance_id"]: i["state"] for i in stack.instances()}
        att = rec.current_attempt
        summary["instance_state"] = states.get(att.instance_id or "") if att else None
        url = weights_link(stack, job)
        summary["weights_url"] = url
        best = next((a for a in rec.artifacts if a.name == "best"), None)
        if url and best:
            got = requests.get(url, timeout=60)
            summary["weights_sha256_verified"] = got.ok and hashlib.sha256(got.content).hexdigest() == best.sha256
    finally:
        stack.stop()
        summary["seconds"] = round(time.monotonic() - started, 1)
        printer.say(json.dumps(summary))
    ok = (
        summary["status"] == "SUCCEEDED"
        and summary["weights_sha256_verified"]
        and summary["instance_state"] == "terminated"
    )
    return 0 if ok else 1
