"""The whole of Spotter on one machine: moto, the Slack stand-in, the Lambdas in-process, the bus
dispatcher, Scheduler's delivery and the EC2 host runner, wired exactly as template.yaml wires them in AWS.

What a person does in Slack arrives as Slack sends it: signed slash commands (and Slack's retries of them),
and button clicks on the job card as block_actions interaction payloads.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import secrets
import struct
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import boto3

from infra.local import schedules
from infra.local.aws import ROOT, MotoServer, Resources, provision, rate_seconds
from infra.local.dispatcher import Dispatcher
from infra.local.faults import Faults
from infra.local.hosts import JOB_TAG, HostRunner, Image, git_mirror_environ, make_git_mirror
from infra.local.interactivity import BUTTONS, ButtonNotFound, block_actions_payload, find_button, interaction_body
from infra.local.invoke import Handler, LambdaContext, LocalLambdaClient
from infra.local.slack import Message, SlackStandIn
from infra.local.slash import Signature, new_trigger_id, retry_headers, signed_event, slash_body
from spotter.aws import reset_clients
from spotter.status import JobStatus
from spotter.store import JobNotFound, JobRecord, JobsStore

Emit = Callable[[dict[str, Any]], None]
Trainer = Literal["real", "standin"]
STANDIN_PATH = ROOT / "infra" / "local" / "standin"
# The darknet the instances clone is the stand-in source tree, served from a local mirror under this URL.
DARKNET_URL = "https://github.com/AlexeyAB/darknet"
# Starting weights recipes fetch from cache/pretrained/, published as small stand-ins at stack start. Not the
# Ultralytics ones: the demo's real framework would try to load them.
STANDIN_PRETRAINED = ("yolov4.conv.137", "yolov4-tiny.conv.29", "yolov5n.pt", "yolov5s.pt", "R-50.pkl")
STANDIN_PRETRAINED_BYTES = 4096
# The local stack runs the control plane's clock this much faster than AWS: a 5-minute watchdog passes every 5 s,
# a 2-minute spot notice lasts 2 s unless a run says otherwise.
TIME_SCALE = 60.0
# The control plane's waits, scaled down for a machine where an instance boots in a second (values in seconds);
# the template's parameters set the AWS ones.
CONTROL_ENVIRON = {
    "SPOTTER_HEARTBEAT_STALE_SECONDS": "15",
    "SPOTTER_LAUNCHING_TIMEOUT_SECONDS": "90",
    "SPOTTER_CANCEL_GRACE_SECONDS": "20",
    "SPOTTER_RELAUNCH_BACKOFF_SECONDS": "2",
    "SPOTTER_RELAUNCH_BACKOFF_MAX_SECONDS": "10",
    "SPOTTER_VANISH_SETTLE_SECONDS": "4",
    "SPOTTER_BEST_ANNOUNCE_INTERVAL_SECONDS": "5",
}
# The agent's polls on the local instances, as fast as the scaled control plane needs them.
AGENT_ENVIRON = {
    "SPOTTER_SPOT_POLL_SECONDS": "0.5",
    "SPOTTER_HEARTBEAT_SECONDS": "3",
    "SPOTTER_CHECKPOINT_POLL_SECONDS": "0.2",
    "SPOTTER_CHECKPOINT_STABLE_SECONDS": "0.1",
}
SPOT_NOTICE_SECONDS = 10.0
TEAM = "T0SPOTTER"
DEFAULT_USER = "U0ALICE"
DEFAULT_CHANNEL = "C0TRAINING"


class StepFailed(RuntimeError):
    """What a person did could not be done (no such schedule, no such button on the card): the scenario stops."""


def quiet_library_warnings() -> None:
    """Warnings the in-process Lambdas' libraries raise where AWS would only log them, and that say nothing here.

    Powertools warns on every invocation of a handler that published no metrics (most of the notifier's).
    """
    warnings.filterwarnings("ignore", message=r"No application metrics to publish", category=UserWarning)


def real_trainer_available() -> bool:
    """Whether this Python has the demo's framework (the 'GPU image' for real training)."""
    import importlib.util

    return importlib.util.find_spec("ultralytics") is not None and importlib.util.find_spec("torch") is not None


def standin_weights(name: str) -> bytes:
    """Fixed bytes for a pretrained file: darknet's weights header (version 0.2.5, nothing seen), then a pattern."""
    header = struct.pack("<3iQ", 0, 2, 5, 0)
    pattern = b"".join(hashlib.sha256(f"{name}:{i}".encode()).digest() for i in range(STANDIN_PRETRAINED_BYTES // 32))
    return header + pattern


def _import(path: str) -> Handler:
    module, _, attr = path.rpartition(".")
    handler: Handler = getattr(importlib.import_module(module), attr)
    return handler


class LocalStack:
    def __init__(
        self,
        *,
        trainer: Trainer,
        emit: Emit,
        progress_interval: float = 1.0,
        standin_epoch_seconds: float = 0.3,
        image_environ: dict[str, str] | None = None,
        control_environ: dict[str, str] | None = None,
        spot_notice_seconds: float = SPOT_NOTICE_SECONDS,
        parameters: Mapping[str, str] | None = None,
        usergroups: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """`parameters` override template.yaml's parameter defaults (AllowedChannels=C1…); `usergroups` are the
        workspace's user groups (S… id → member user ids) the Slack stand-in answers usergroups.users.list from."""
        self.trainer = trainer
        self._emit_fn = emit
        self._emit_lock = threading.Lock()
        self._root = Path(tempfile.mkdtemp(prefix="spotter-local-"))
        self._image_environ = {
            "SPOTTER_PROGRESS_INTERVAL": str(progress_interval),
            **AGENT_ENVIRON,
            **(image_environ or {}),
        }
        self._control_environ = {**CONTROL_ENVIRON, **(control_environ or {})}
        self.spot_notice_seconds = spot_notice_seconds
        self._parameters = dict(parameters or {})
        self._usergroups = {g: list(users) for g, users in (usergroups or {}).items()}
        self.faults = Faults(self.emit)
        self._schedules: list[threading.Thread] = []
        self._stopping = threading.Event()
        if trainer == "standin":
            self._image_environ.setdefault("SPOTTER_STANDIN_EPOCH_SECONDS", str(standin_epoch_seconds))
            self._image_environ["PYTHONPATH"] = str(STANDIN_PATH)
        else:
            self._image_environ["YOLO_OFFLINE"] = "1"  # the local "GPU image" has no internet
        self._last_slash: dict[str, Any] | None = None
        self.jobs: list[str] = []
        self.schedules: list[str] = []  # schedules the scenario's slash commands created, oldest first
        self._started = False
        self._muted = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def emit(self, record: dict[str, Any]) -> None:
        with self._emit_lock:
            if not self._muted:
                self._emit_fn(record)

    def start(self) -> LocalStack:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        quiet_library_warnings()
        self.moto = MotoServer(self.faults).start()
        os.environ.update(self.moto.environ())
        reset_clients()
        # Credentials new for every stack, like a real workspace's: a test can look for them in everything it left.
        self.slack = SlackStandIn(
            on_call=self.emit, usergroups=self._usergroups, bot_token=f"xoxb-{secrets.token_hex(12)}"
        ).start()
        self.signing_secret = secrets.token_hex(16)
        self.resources: Resources = provision(
            {"bot_token": self.slack.bot_token, "signing_secret": self.signing_secret}, parameters=self._parameters
        )
        os.environ.update(self.resources.environment())
        os.environ.update(self._control_environ)
        os.environ["SPOTTER_SLACK_API_URL"] = self.slack.api_url
        self._publish_agent()
        if self.trainer == "standin":
            self._publish_standin_pretrained()
        self._publish_pretrained()
        self.store = JobsStore(self.resources.table)

        slack_fn = self.resources.function_by_handler("bot.app.handler")
        self.invoker = LocalLambdaClient(handlers={}, on_error=self._lambda_error)
        import bot.app

        bot.app.set_lambda_client(self.invoker)
        self.invoker.handlers[slack_fn.name] = bot.app.handler
        self._slack_fn = slack_fn.name

        self.dispatcher = Dispatcher(self.emit)
        for fn in self.resources.functions.values():
            for queue in fn.queues:
                self.dispatcher.route(fn.name, queue, _import(fn.handler))

        self._image_environ.update(self._darknet_mirror())
        image = Image(python_bin=Path(sys.executable).parent, environ=self._image_environ)
        self.hosts = HostRunner(
            root=self._root / "instances",
            image=image,
            aws_environ=self.moto.environ(),
            emit=self.emit,
            spot_notice_seconds=self.spot_notice_seconds,
        )
        self.hosts.start()
        for fn in self.resources.functions.values():
            for expression in fn.schedules:
                self._schedule(fn.name, _import(fn.handler), rate_seconds(expression) / TIME_SCALE)
        self._started = True
        return self

    def _publish_agent(self) -> None:
        from infra.package import publish_agent

        key = self.resources.function_by_handler("lambdas.launcher.handler").environment["SPOTTER_AGENT_KEY"]
        publish_agent(self.resources.bucket, key, boto3.client("s3"))

    def _publish_standin_pretrained(self) -> None:
        """The starting weights an operator would publish (`python -m agent.inputs publish`), as the Ultralytics
        stand-in reads them, so `from=pretrained` (and a first `from=promoted`) runs here too."""
        from spotter import catalog, layout

        # The stand-in by its path, under its own name: the real ultralytics may be importable in this process.
        found = importlib.util.spec_from_file_location("standin_ultralytics", STANDIN_PATH / "ultralytics/__init__.py")
        assert found is not None and found.loader is not None, "the Ultralytics stand-in is part of infra/local"
        standin = sys.modules.get(found.name) or importlib.util.module_from_spec(found)
        if found.name not in sys.modules:
            sys.modules[found.name] = standin  # its dataclasses look their module up while it loads
            found.loader.exec_module(standin)
        weights_bytes = standin.weights_bytes
        s3 = boto3.client("s3")
        for model in catalog.MODELS.values():
            name = model.recipe_vars.get("pretrained")
            if model.recipe == "ultralytics" and name:
                body = weights_bytes(model.name, 0)
                s3.put_object(
                    Bucket=self.resources.bucket,
                    Key=layout.pretrained(name),
                    Body=body,
                    Metadata={"sha256": hashlib.sha256(body).hexdigest()},
                )

    def _darknet_mirror(self) -> dict[str, str]:
        """A mirror of the darknet stand-in tagged with the ref the darknet recipe pins, and the environment that
        makes git on the instances use it (a mirror can hold tags, not someone else's commit ids)."""
        from agent import recipes

        build = recipes.load("darknet").build
        if build is None:
            raise RuntimeError("the darknet recipe has no build step: nothing to mirror")
        bare = make_git_mirror(STANDIN_PATH / "darknet", self._root / "git" / "darknet.git", tag=build.source.ref)
        return git_mirror_environ({DARKNET_URL: bare})

    def _publish_pretrained(self) -> None:
        from agent.inputs import publish_pretrained

        folder = self._root / "pretrained"
        folder.mkdir(parents=True, exist_ok=True)
        for name in STANDIN_PRETRAINED:
            path = folder / name
            path.write_bytes(standin_weights(name))
            publish_pretrained(path, s3=boto3.client("s3"), bucket=self.resources.bucket)

    def _schedule(self, name: str, handler: Handler, period: float) -> None:
        """EventBridge Scheduler at the scaled rate: the handler runs once per period, never twice at once."""

        def fire() -> None:
            while not self._stopping.wait(period):
                try:
                    result = handler(
                        {"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}},
                        LambdaContext(function_name=name),
                    )
                except Exception as e:
                    self._lambda_error(name, e)
                    continue
                if isinstance(result, dict) and any((result.get("actions") or {}).values()):
                    self.emit({"aws": "schedule fired", "function": name, "result": result})

        t = threading.Thread(target=fire, name=f"schedule-{name}", daemon=True)
        self._schedules.append(t)
        t.start()

    def _lambda_error(self, name: str, e: BaseException) -> None:
        self.emit({"aws": "lambda error", "function": name, "error": f"{type(e).__name__}: {e}"})

    def mute(self) -> None:
        """Report nothing more: what is still delivered after the final line (a redelivery) stays off stdout."""
        with self._emit_lock:
            self._muted = True

    def stop(self) -> None:
        """Power off every instance and stop; nothing is reported any more (the final line was the last)."""
        if not self._started:
            return
        self.mute()
        self._stopping.set()
        for t in self._schedules:
            t.join(30)
        self.hosts.stop()
        self.dispatcher.stop()
        self.invoker.join(10)
        self.slack.stop()
        self.moto.stop()
        self.hosts.cleanup()
        self._started = False

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a person does ------------------------------------------------------------------------

    def slash(
        self,
        text: str,
        *,
        user: str = DEFAULT_USER,
        channel: str = DEFAULT_CHANNEL,
        signature: Signature | Literal["replay"] = "valid",
        command: str = "/train",
        retry: int = 0,
    ) -> dict[str, Any]:
        """Post a slash command to the Slack function as Slack would; returns the HTTP response (of the first post).

        `retry` sends the same command again that many times right after the first answer, as Slack does when an
        ack is late: the same body (same trigger_id), a fresh timestamp and signature, and the headers
        X-Slack-Retry-Num (1, 2, …) and X-Slack-Retry-Reason: http_timeout.
        """
        if retry < 0:
            raise ValueError("retry is a number of re-sends, 0 or more")
        if retry and signature != "valid":
            raise ValueError("only a request Slack sent is retried by Slack: retry needs signature valid")
        if signature == "replay":
            if self._last_slash is None:
                raise ValueError("`replay` needs an earlier slash step to re-send")
            event = self._last_slash
        else:
            trigger = new_trigger_id()
            body = slash_body(
                command=command,
                text=text,
                user=user,
                channel=channel,
                team=TEAM,
                response_url=self.slack.new_response_url(command, channel, user),
                trigger_id=trigger,
            )
            event = signed_event(self.signing_secret, body, signature)
            self._last_slash = event
        before = {r.job_id for r in self.store.list_channel(channel, limit=100)}
        schedules_before = set(self._schedule_names())
        resp = self._post_to_slack_function(event)
        self._emit_response({"command": command}, resp)
        for attempt in range(1, retry + 1):
            again = signed_event(self.signing_secret, event["body"], "valid", headers=retry_headers(attempt))
            self._emit_response({"command": command, "retry": attempt}, self._post_to_slack_function(again))
        self.invoker.join(30)  # the lazy listeners' work (the job, the card, the bus event)
        for rec in sorted(self.store.list_channel(channel, limit=100), key=lambda r: r.created_at):
            if rec.job_id not in before and rec.job_id not in self.jobs:
                self.jobs.append(rec.job_id)
        self.schedules.extend(sorted(set(self._schedule_names()) - schedules_before - set(self.schedules)))
        return dict(resp)

    def _schedule_names(self) -> list[str]:
        """The schedules in the stack's schedule groups (what `{schedule}` in a scenario can stand for)."""
        scheduler = boto3.client("scheduler")
        return [
            str(item["Name"])
            for group in self.resources.schedule_groups
            for page in scheduler.get_paginator("list_schedules").paginate(GroupName=group)
            for item in page.get("Schedules", [])
        ]

    def click(
        self,
        button: str,
        *,
        job: str,
        user: str = DEFAULT_USER,
        channel: str | None = None,
        double: bool = False,
    ) -> list[dict[str, Any]]:
        """Click a button (`cancel`, `logs`, `download`) on the job's card as `user` would in Slack: a signed
        block_actions payload posted to the Slack function (a button's confirm dialog counts as confirmed).

        `channel` is where the card is looked for (the job's channel by default). `double` clicks twice in quick
        succession: two interactions (each with its own trigger_id and response_url), the second sent as soon as
        the first is acknowledged. Returns the HTTP responses; raises StepFailed when the job has no card there
        or the card has no such button.
        """
        action_id = BUTTONS.get(button)
        if action_id is None:
            raise ValueError(f"unknown button {button!r} (buttons: {', '.join(BUTTONS)})")
        try:
            rec = self.store.get(job)
        except JobNotFound:
            raise StepFailed(f"there is no job {job} to click on") from None
        where = channel or rec.channel
        card = self._card(rec, where)
        try:
            target = find_button(card.blocks, action_id, f"the card of job {job} (ts {card.ts} in {where})")
        except ButtonNotFound as e:
            raise StepFailed(str(e)) from None
        responses = []
        for _ in range(2 if double else 1):
            payload = block_actions_payload(
                team=TEAM,
                user=user,
                channel=where,
                message=self.slack.wire(card),
                button=target,
                response_url=self.slack.new_action_response_url(action_id, where, user, card.ts),
                trigger_id=new_trigger_id(),
            )
            event = signed_event(self.signing_secret, interaction_body(payload))
            resp = self._post_to_slack_function(event)
            self._emit_response({"action": action_id, "job": job}, resp)
            responses.append(dict(resp))
        self.invoker.join(30)  # the lazy listeners' work (the cancel request, the answer to the clicker)
        return responses

    def _card(self, rec: JobRecord, channel: str) -> Message:
        """The job's card as `channel` shows it: the message the record names, else the newest top-level
        message there that mentions the job."""
        if rec.slack is not None and rec.slack.channel == channel:
            card = self.slack.message(channel, rec.slack.card_ts)
            if card is not None:
                return card
        for message in reversed(self.slack.messages(channel)):
            if message.thread_ts is None and rec.job_id in json.dumps([message.text, message.blocks]):
                return message
        raise StepFailed(f"job {rec.job_id} has no card in channel {channel}")

    def _post_to_slack_function(self, event: dict[str, Any]) -> dict[str, Any]:
        """What the Slack function's URL answers to this request (the handler runs in-process)."""
        handler = _import("bot.app.handler")
        resp: dict[str, Any] = handler(json.loads(json.dumps(event)), LambdaContext(function_name=self._slack_fn))
        return resp

    def _emit_response(self, about: dict[str, Any], resp: dict[str, Any]) -> None:
        """`{"slack": "response", **about, "args"}`: what the person who typed or clicked saw at once."""
        status = int(resp.get("statusCode", 0))
        body_text = resp.get("body") or ""
        try:
            args: dict[str, Any] = json.loads(body_text) if body_text else {}
        except ValueError:
            args = {"text": body_text}
        if status != 200:
            args = {"status": status, **args}
        self.emit({"slack": "response", **about, "args": args})

    def fire_schedule(self, which: str = schedules.ALL) -> list[schedules.Firing]:
        """Deliver the stack's Scheduler schedules now (`all` enabled ones, or the one named), as Scheduler
        would when they are due; jobs they start count as this scenario's. Raises StepFailed for a name that
        is no schedule."""
        since = datetime.now(UTC).isoformat(timespec="milliseconds")

        def target(arn: str) -> tuple[str, Callable[[], Handler]] | None:
            fn = self.resources.function_by_arn(arn)
            if fn is None:
                return None
            return fn.name, lambda: _import(fn.handler)

        try:
            fired = schedules.fire(boto3.client("scheduler"), self.resources.schedule_groups, which, target, self.emit)
        except schedules.ScheduleNotFound as e:
            raise StepFailed(str(e)) from None
        for firing in fired:
            if firing.error is not None and firing.function is not None:
                self.emit({"aws": "lambda error", "function": firing.function, "error": firing.error})
        self.invoker.join(30)
        for rec in sorted(self.store.list_since(since), key=lambda r: r.created_at):
            if rec.job_id not in self.jobs:
                self.jobs.append(rec.job_id)
        return fired

    def wait(self, job: str, status: JobStatus, timeout: float, at_progress: float | None = None) -> JobRecord:
        """Wait for the job to reach `status` (and, if given, `at_progress` of its training); raises TimeoutError
        (or ValueError if it ends elsewhere)."""
        deadline = time.monotonic() + timeout
        while True:
            rec = self.store.get(job)
            fraction = rec.progress.fraction if rec.progress else None
            if rec.status is status and (at_progress is None or (fraction is not None and fraction >= at_progress)):
                return rec
            if rec.status.is_terminal():
                raise ValueError(f"job {job} ended {rec.status.value}, not {status.value}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job} is {rec.status.value} after {timeout:g}s, not {status.value}")
            time.sleep(0.25)

    def settle(self, timeout: float = 30.0) -> None:
        """Let instances of finished jobs power off and the bus drain, so the final state is final.

        A job still running keeps the bus busy: then only the finished jobs' instances are waited for.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [i for i in self.instances() if i["state"] not in ("terminated", "shutting-down")]
            busy = [i for i in live if self.store.get(i["job"]).status.is_terminal()]
            running = any(not self.store.get(job).status.is_terminal() for job in self.jobs)
            if not busy and (running or self.dispatcher.idle()):
                return
            time.sleep(0.25)

    # -- what there is -------------------------------------------------------------------------------

    def instances(self) -> list[dict[str, str]]:
        out = []
        pages = (
            boto3.client("ec2")
            .get_paginator("describe_instances")
            .paginate(Filters=[{"Name": "tag-key", "Values": [JOB_TAG]}])
        )
        for page in pages:
            for res in page["Reservations"]:
                for inst in res["Instances"]:
                    tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                    out.append(
                        {
                            "instance_id": inst["InstanceId"],
                            "job": tags.get(JOB_TAG, ""),
                            "state": inst["State"]["Name"],
                        }
                    )
        return out

    def final(self) -> dict[str, Any]:
        states = {i["instance_id"]: i["state"] for i in self.instances()}
        jobs = []
        for job in self.jobs:
            rec = self.store.get(job)
            jobs.append(
                {
                    "job": job,
                    "status": rec.status.value,
                    "attempts": [
                        {
                            "instance_id": a.instance_id,
                            "instance_type": a.instance_type,
                            "market": a.market,
                            "state": states.get(a.instance_id or ""),
                            "ended_reason": a.ended_reason,
                            "resumed_from": a.resumed_from,
                        }
                        for a in rec.attempts
                    ],
                    "failure": rec.failure.message if rec.failure else None,
                    "map50": rec.metrics.map50 if rec.metrics else None,
                    "best_map50": rec.best.map50 if rec.best else None,
                    "artifacts": [a.model_dump() for a in rec.artifacts],
                }
            )
        return {"jobs": jobs, "instances": self.instances()}
