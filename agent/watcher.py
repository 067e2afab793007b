"""The spot watcher: polls IMDSv2 for a spot interruption notice or a rebalance recommendation, and the job's
control object in S3 for a cancel, each from a daemon thread of its own (a hung S3 never delays the notice).

What to do is decided by `decide` over plain data; what doing it means (stop the trainer, save, report, power off)
is the caller's, through `Actions`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent import tuning
from agent.imds import Imds, ImdsError
from spotter import layout

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0
# A notice gives two minutes: a metadata request that hangs must not eat them.
IMDS_TIMEOUT_SECONDS = 1.0


class Control(BaseModel):
    """`jobs/<job>/control.json`: what the control plane asks of the running agent."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    action: Literal["cancel"]
    by: str = Field("", max_length=64)


@dataclass(frozen=True)
class Seen:
    """One round of polling: what IMDS and the control object said (None: nothing, or could not tell)."""

    spot_action: dict[str, Any] | None = None
    rebalance: dict[str, Any] | None = None
    control: Control | None = None


Action = Literal["interrupt", "cancel", "rebalance"]


def decide(seen: Seen, *, rebalanced: bool) -> Action | None:
    """An interruption notice comes first (two minutes to save), then a cancel, then a rebalance (once)."""
    if seen.spot_action is not None:
        return "interrupt"
    if seen.control is not None and seen.control.action == "cancel":
        return "cancel"
    if seen.rebalance is not None and not rebalanced:
        return "rebalance"
    return None


class Actions(Protocol):
    def interrupt(self, action: str, notice_at: float) -> None: ...

    def cancel(self, by: str) -> None: ...

    def rebalance(self) -> None: ...


def read_control(s3: Any, bucket: str, job_id: str) -> Control | None:
    """The job's control object; None when there is none (404). Other errors raise."""
    try:
        body = s3.get_object(Bucket=bucket, Key=layout.control(job_id))["Body"].read()
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    try:
        return Control.model_validate(json.loads(body))
    except (ValueError, ValidationError) as e:
        log.warning("ignoring an unreadable %s: %s", layout.control(job_id), e)
        return None


class SpotWatcher:
    def __init__(
        self,
        actions: Actions,
        *,
        imds: Imds | None,
        s3: Any,
        bucket: str,
        job_id: str,
        poll: float | None = None,
    ) -> None:
        self.actions = actions
        self.imds = imds
        self.s3 = s3
        self.bucket = bucket
        self.job_id = job_id
        self.poll = tuning.seconds("SPOTTER_SPOT_POLL_SECONDS", POLL_SECONDS) if poll is None else poll
        self.rebalanced = False
        self._lock = threading.Lock()
        self._acted: Action | None = None
        self._stop = threading.Event()
        self._imds_down = False
        self._control_down = False
        self._threads = [
            threading.Thread(target=self._loop, args=(self.poll_imds,), name="spotter-spot-watch", daemon=True),
            threading.Thread(target=self._loop, args=(self.poll_control,), name="spotter-control-watch", daemon=True),
        ]

    def start(self) -> SpotWatcher:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, poll_once: Any) -> None:
        while not self._stop.is_set():
            try:
                poll_once()
            except Exception:
                log.exception("the spot watcher's poll failed")
            self._stop.wait(self.poll)

    # -- one round each ---------------------------------------------------------------------------------------

    def poll_imds(self) -> Seen:
        if self.imds is None:
            return Seen()
        try:
            seen = Seen(spot_action=self.imds.spot_action(), rebalance=self.imds.rebalance())
        except ImdsError as e:
            if not self._imds_down:
                log.warning("instance metadata unreachable, watching on: %s", e)
            self._imds_down = True
            return Seen()
        if self._imds_down:
            log.info("instance metadata reachable again")
            self._imds_down = False
        self.act(seen)
        return seen

    def poll_control(self) -> Seen:
        try:
            seen = Seen(control=read_control(self.s3, self.bucket, self.job_id))
        except (ClientError, BotoCoreError) as e:
            if not self._control_down:
                log.warning("cannot read %s, watching on: %s", layout.control(self.job_id), e)
            self._control_down = True
            return Seen()
        self._control_down = False
        self.act(seen)
        return seen

    def act(self, seen: Seen) -> Action | None:
        """Do what `seen` calls for, once: an interruption or a cancel ends the attempt, a rebalance syncs."""
        with self._lock:
            if self._acted in ("interrupt", "cancel"):
                return None
            action = decide(seen, rebalanced=self.rebalanced)
            if action is None:
                return None
            if action == "rebalance":
                self.rebalanced = True
            else:
                self._acted = action
        if action == "interrupt":
            assert seen.spot_action is not None
            what = str(seen.spot_action.get("action", "terminate"))
            log.warning("spot interruption notice: %s at %s", what, seen.spot_action.get("time"))
            self.stop()
            self.actions.interrupt(what, time.time())
        elif action == "cancel":
            assert seen.control is not None
            log.warning("the job was cancelled by %s", seen.control.by or "the control plane")
            self.stop()
            self.actions.cancel(seen.control.by)
        else:
            log.info("rebalance recommendation (%s): syncing the checkpoint now", seen.rebalance)
            self.actions.rebalance()
        return action
