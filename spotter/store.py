"""The jobs store: one DynamoDB table (declared in template.yaml), one guarded update per transition.

Every status change is a conditional update naming the statuses it may leave; if the item is in none
of them, `TransitionError` says where it was. Progress, metrics and the card's throttle are conditional
updates too, so concurrent and out-of-order bus deliveries cannot move a job backwards.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from pydantic import BaseModel, ConfigDict, Field

from spotter import board
from spotter.aws import client
from spotter.board import Board, JobRow
from spotter.events import Artifact, FinalMetrics, JobLaunched, JobMetric, JobProgress
from spotter.spec import JobSpec
from spotter.status import ALLOWED_SOURCES, JobStatus

CHANNEL_INDEX = "by-channel"
STATUS_INDEX = "by-status"
# The attributes a job's row on its channel's board is drawn from (spotter.board.JobRow.of).
BOARD_ATTRIBUTES = frozenset({"status", "progress", "best", "finished_at"})
METRIC_HISTORY_MAX = 500
# The loss curve kept for the result chart: one point per progress event, as many as a chart can show.
LOSS_HISTORY_MAX = 2000
# The parts of telling the channel a job ended, each claimed on its own so a retried delivery redoes only what
# Slack did not take: the thread reply (result, failure, cancel), the result chart, the final card.
AnnouncementPart = Literal["reply", "chart", "card"]
ANNOUNCEMENT_ATTRIBUTES: dict[str, str] = {
    "reply": "announced_reply",
    "chart": "announced_chart",
    "card": "announced_card",
}
# DynamoDB deletes a job's record `record_days` after it ended (its TTL attribute, in epoch seconds; the settings'
# job_record_days, the template's JobRecordDays).
EXPIRES_ATTRIBUTE = "expires_at"
DEFAULT_RECORD_DAYS = 400
# A part held longer than this was held by a delivery that died (the notifier's timeout is 30 s): it is taken over.
ANNOUNCEMENT_LEASE_SECONDS = 60.0

_ser = TypeSerializer()
_de = TypeDeserializer()


class StoreError(RuntimeError):
    pass


class JobNotFound(StoreError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id}")
        self.job_id = job_id


class DuplicateJob(StoreError):
    """The same request was recorded before (a replayed or retried Slack request)."""

    def __init__(self, existing: JobRecord) -> None:
        super().__init__(f"job {existing.job_id} exists")
        self.existing = existing


class TransitionError(StoreError):
    def __init__(self, job_id: str, current: JobStatus | None, target: JobStatus, why: str = "") -> None:
        where = current.value if current else "missing"
        super().__init__(f"job {job_id}: cannot go {where} → {target.value}{why}")
        self.job_id, self.current, self.target = job_id, current, target


class _Record(BaseModel):
    # Schemas build on first use: the Slack function's ack path never reads the store.
    model_config = ConfigDict(defer_build=True)


class Attempt(_Record):
    number: int
    instance_id: str | None = None
    instance_type: str | None = None
    availability_zone: str | None = None
    market: str | None = None
    price_usd_hour: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    # How the attempt ended, once it has: succeeded, failed, cancelled, interrupted (the agent saw the notice),
    # vanished (the instance went without a word).
    ended_reason: str | None = None
    resumed_from: int | None = None  # the epoch or iteration of the checkpoint this attempt started from
    progress_at_end: int | None = None  # the epoch or iteration the attempt had reached when it ended


class Progress(_Record):
    unit: str
    current: int
    total: int | None = None
    loss: float | None = None
    eta_seconds: float | None = None
    seq: int = 0
    at: float = 0.0

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.current / self.total) if self.total else None


class Metrics(_Record):
    current: int | None = None
    map50: float | None = None
    map50_95: float | None = None
    precision: float | None = None
    recall: float | None = None


class Failure(_Record):
    phase: str
    kind: str
    message: str
    last_lines: list[str] = Field(default_factory=list)


class Checkpoint(_Record):
    """The latest checkpoint in S3 (what the next attempt resumes from) and the progress it holds."""

    key: str
    sha256: str
    size: int
    current: int | None = None
    attempt: int = 1
    at: float = 0.0


class CancelRequest(_Record):
    by: str
    at: float


class Promotion(_Record):
    """A scheduled run against the weights promoted before it: promoted only when its mAP50 is better."""

    map50: float | None = None
    previous_map50: float | None = None
    previous_job: str | None = None
    promoted: bool = False
    reason: str = ""  # why not, when it was not (no mAP50, not better, …)

    @property
    def delta(self) -> float | None:
        if self.map50 is None or self.previous_map50 is None:
            return None
        return self.map50 - self.previous_map50


class Announcement(_Record):
    """One part of a job's end being shown in Slack: since when a delivery holds it, and whether Slack has it."""

    status: JobStatus
    claimed_at: float
    done: bool = False
    by: str | None = None  # the claiming request's own mark, which tells a retry of it from another delivery


class SlackRef(_Record):
    channel: str
    card_ts: str
    thread_ts: str


class JobRecord(_Record):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    job_id: str
    status: JobStatus
    spec: JobSpec
    channel: str
    created_at: str
    updated_at: str
    trigger: str = ""
    attempt: int = 0
    attempts: list[Attempt] = Field(default_factory=list)
    phase: str | None = None
    progress: Progress | None = None
    metrics: Metrics | None = None
    best: Metrics | None = None
    metric_history: list[Metrics] = Field(default_factory=list)
    loss_history: list[tuple[int, float]] = Field(default_factory=list)  # (epoch or iteration, loss) of each attempt
    final_metrics: FinalMetrics | None = None
    promotion: Promotion | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    failure: Failure | None = None
    slack: SlackRef | None = None
    card_updated_at: float = 0.0
    announced_reply: Announcement | None = None
    announced_chart: Announcement | None = None
    announced_card: Announcement | None = None
    heartbeat_at: float | None = None
    finished_at: float | None = None
    checkpoint: Checkpoint | None = None
    cancel: CancelRequest | None = None
    relaunch_at: float | None = None  # an INTERRUPTED job's next attempt is due then (backoff)
    notes: list[str] = Field(default_factory=list)  # what the control plane did to the job, newest last
    version: int = 0  # counts the record's updates: its board row is written only over an older one

    @property
    def current_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def instance_of(self, attempt: int) -> str | None:
        """The instance attempt `attempt` ran on (None: not launched, or no such attempt)."""
        return next((a.instance_id for a in self.attempts if a.number == attempt), None)

    def announced_part(self, part: AnnouncementPart) -> bool:
        """Slack has this part of the job's end in its current status."""
        claim: Announcement | None = getattr(self, ANNOUNCEMENT_ATTRIBUTES[part])
        return claim is not None and claim.done and claim.status is self.status

    @property
    def announced(self) -> JobStatus | None:
        """The ended status whose reply is in the thread, or None."""
        return self.status if self.announced_part("reply") else None

    @property
    def resumable_checkpoint(self) -> Checkpoint | None:
        """The checkpoint a next attempt can go on from: one that holds less than the whole training (the
        frameworks refuse to resume a finished run: such an attempt trains again from the start)."""
        cp = self.checkpoint
        if cp is None or (cp.current is not None and cp.current >= self.spec.length):
            return None
        return cp


def _reached(rec: JobRecord) -> int | None:
    return rec.progress.current if rec.progress else None


def _end_attempt(e: _Expr, attempt: int, at: float, reason: str, reached: int | None = None) -> None:
    """Close attempt number `attempt` in the same update: when, why and how far it got."""
    base = f"{e.n('attempts')}[{attempt - 1}]"
    e.sets.append(f"{base}.{e.n('ended_at')} = {e.v(at)}")
    e.sets.append(f"{base}.{e.n('ended_reason')} = {e.v(reason)}")
    e.sets.append(f"{base}.{e.n('progress_at_end')} = {e.v(reached)}")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _to_dynamo(value: Any) -> dict[str, Any]:
    plain = json.loads(json.dumps(value, default=str), parse_float=Decimal)
    serialized: dict[str, Any] = _ser.serialize(plain)  # type: ignore[assignment]
    return serialized


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _from_item(item: dict[str, Any]) -> JobRecord:
    return JobRecord.model_validate(_plain({k: _de.deserialize(v) for k, v in item.items()}))


class _Expr:
    """Builds one UpdateItem's expressions with placeholder names and values."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.sets: list[str] = []
        self.assigned: set[str] = set()  # the top-level attributes `set` assigns

    def n(self, attr: str) -> str:
        for k, v in self.names.items():
            if v == attr:
                return k
        key = f"#n{len(self.names)}"
        self.names[key] = attr
        return key

    def v(self, value: Any) -> str:
        key = f":v{len(self.values)}"
        self.values[key] = _to_dynamo(value)
        return key

    def set(self, attr: str, value: Any, index: int | None = None) -> _Expr:
        path = self.n(attr) + (f"[{index}]" if index is not None else "")
        self.assigned.add(attr)
        self.sets.append(f"{path} = {self.v(value)}")
        return self

    def newer(self, attempt: int, seq_attr: str, seq: int) -> str:
        """Condition: the event is of this attempt and newer than the last recorded under `seq_attr`."""
        self.set(seq_attr, seq)
        return (
            f"{self.n('attempt')} = {self.v(attempt)} AND (attribute_not_exists({self.n(seq_attr)}) "
            f"OR {self.n(seq_attr)} < {self.v(seq)})"
        )

    def v_set(self, *items: str) -> str:
        """A string set value (DynamoDB's ADD merges it into the attribute's set)."""
        key = f":v{len(self.values)}"
        self.values[key] = {"SS": list(items)}
        return key

    def args(self, condition: str) -> dict[str, Any]:
        version = self.n("version")
        bump = f"{version} = if_not_exists({version}, {self.v(0)}) + {self.v(1)}"
        return {
            "UpdateExpression": "SET " + ", ".join([*self.sets, bump]),
            "ConditionExpression": f"attribute_exists(job_id) AND ({condition})",
            "ExpressionAttributeNames": self.names,
            "ExpressionAttributeValues": self.values,
        }


class JobsStore:
    def __init__(self, table_name: str, dynamodb_client: Any = None, *, record_days: int = DEFAULT_RECORD_DAYS) -> None:
        self.table = table_name
        self._client = dynamodb_client
        self.record_days = record_days

    @property
    def db(self) -> Any:
        if self._client is None:
            self._client = client("dynamodb")
        return self._client

    @property
    def board(self) -> Board:
        return Board(self.db, self.table)

    # -- create and read ------------------------------------------------------------------------

    def create(self, spec: JobSpec, *, trigger: str) -> JobRecord:
        """Record a new QUEUED job; the same trigger twice raises DuplicateJob with the first record."""
        now = _now_iso()
        record = JobRecord(
            job_id=spec.job_id,
            status=JobStatus.QUEUED,
            spec=spec,
            channel=spec.channel,
            created_at=now,
            updated_at=now,
            trigger=trigger,
        )
        item = {k: _to_dynamo(v) for k, v in record.model_dump(mode="json", exclude_none=True).items()}
        # On the channel's board first: a job that exists is always listed (a retried create finds its row there).
        self.board.add(record)
        try:
            self.db.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(job_id)")
        except self.db.exceptions.ConditionalCheckFailedException:
            existing = self.get(spec.job_id)
            if existing.trigger == trigger:
                raise DuplicateJob(existing) from None
            raise StoreError(f"job id {spec.job_id} is taken by another request") from None
        except Exception:
            with contextlib.suppress(Exception):
                self.board.remove(spec.channel, spec.job_id)  # the job was not written: no row for it either
            raise
        return record

    def get(self, job_id: str) -> JobRecord:
        if job_id.startswith(board.KEY_PREFIX):
            raise JobNotFound(job_id)  # a channel's board, not a job
        resp = self.db.get_item(TableName=self.table, Key={"job_id": {"S": job_id}}, ConsistentRead=True)
        if "Item" not in resp:
            raise JobNotFound(job_id)
        return _from_item(resp["Item"])

    def find(self, job_id: str) -> JobRecord | None:
        try:
            return self.get(job_id)
        except JobNotFound:
            return None

    def list_channel(self, channel: str, limit: int = 10) -> list[JobRow]:
        """The channel's most recent jobs, newest first, as its board shows them."""
        rows = self.board.rows(channel)
        if rows is None or len(rows) < limit:
            # A channel with fewer jobs, or whose older jobs were recorded before channels had boards.
            return [JobRow.of(rec) for rec in self.channel_jobs(channel, limit)]
        return rows[:limit]

    def channel_jobs(self, channel: str, limit: int = 10) -> list[JobRecord]:
        """The channel's most recent job records, newest first (from the by-channel index)."""
        resp = self.db.query(
            TableName=self.table,
            IndexName=CHANNEL_INDEX,
            KeyConditionExpression="channel = :c",
            ExpressionAttributeValues={":c": {"S": channel}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [_from_item(i) for i in resp.get("Items", [])]

    def list_status(self, status: JobStatus, since: str | None = None) -> list[JobRecord]:
        """Every job in `status` (created at or after `since`, an ISO time), oldest first."""
        names = {"#s": "status"}
        values: dict[str, Any] = {":s": {"S": status.value}}
        key = "#s = :s"
        if since is not None:
            names["#c"] = "created_at"
            values[":c"] = {"S": since}
            key += " AND #c >= :c"
        out: list[JobRecord] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": key,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        while True:
            resp = self.db.query(**kwargs)
            out.extend(_from_item(i) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return out
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def list_active(self) -> list[JobRecord]:
        """Every job not yet decided (the watchdog's and the caps' view), oldest first."""
        jobs = [rec for s in JobStatus if not s.is_terminal() for rec in self.list_status(s)]
        return sorted(jobs, key=lambda r: r.created_at)

    def list_since(self, since: str, channel: str | None = None) -> list[JobRecord]:
        """Jobs created at or after `since` (an ISO time), of one channel or of all, newest first."""
        if channel is None:
            jobs = [rec for s in JobStatus for rec in self.list_status(s, since)]
        else:
            jobs = []
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": CHANNEL_INDEX,
                "KeyConditionExpression": "channel = :c AND created_at >= :t",
                "ExpressionAttributeValues": {":c": {"S": channel}, ":t": {"S": since}},
                "ScanIndexForward": False,
            }
            while True:
                resp = self.db.query(**kwargs)
                jobs.extend(_from_item(i) for i in resp.get("Items", []))
                if "LastEvaluatedKey" not in resp:
                    break
                kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        return sorted(jobs, key=lambda r: r.created_at, reverse=True)

    # -- the update primitive ---------------------------------------------------------------------

    def _apply(self, job_id: str, e: _Expr, condition: str) -> JobRecord | None:
        """One conditional UpdateItem; None when the condition did not hold."""
        try:
            resp = self.db.update_item(
                TableName=self.table, Key={"job_id": {"S": job_id}}, ReturnValues="ALL_NEW", **e.args(condition)
            )
        except self.db.exceptions.ConditionalCheckFailedException:
            return None
        rec = _from_item(resp["Attributes"])
        if e.assigned & BOARD_ATTRIBUTES:
            self.board.try_show(rec, rec.version)
        return rec

    def _transition(
        self,
        job_id: str,
        target: JobStatus,
        e: _Expr | None = None,
        *,
        attempt: int | None = None,
        attempt_before: int | None = None,
    ) -> JobRecord:
        """Move to `target` from one of its allowed sources (and, if given, only in that attempt)."""
        e = e or _Expr()
        e.set("status", target.value).set("updated_at", _now_iso())
        if target.is_terminal():
            e.set(EXPIRES_ATTRIBUTE, int(time.time()) + self.record_days * 86400)
        sources = sorted(ALLOWED_SOURCES[target])
        cond = f"{e.n('status')} IN ({', '.join(e.v(s.value) for s in sources)})"
        if attempt is not None:
            cond += f" AND {e.n('attempt')} = {e.v(attempt)}"
        if attempt_before is not None:
            cond += f" AND {e.n('attempt')} = {e.v(attempt_before)}"
        rec = self._apply(job_id, e, cond)
        if rec is None:
            current = self.find(job_id)
            why = ""
            wanted = attempt if attempt is not None else attempt_before
            if current is not None and wanted is not None and current.attempt != wanted:
                why = f" (job is on attempt {current.attempt})"
            raise TransitionError(job_id, current.status if current else None, target, why)
        return rec

    # -- transitions: one guarded update each ----------------------------------------------------

    def mark_launching(self, job_id: str, attempt: int) -> JobRecord:
        """QUEUED|INTERRUPTED → LAUNCHING, opening attempt number `attempt` (the next one)."""
        e = _Expr().set("attempt", attempt).set("phase", "launch")
        for seq_attr in ("phase_seq", "progress_seq", "metric_seq"):  # a new attempt's agent counts from 0 again
            e.set(seq_attr, -1)
        e.sets.append(
            f"{e.n('attempts')} = list_append({e.n('attempts')}, {e.v([Attempt(number=attempt, started_at=time.time()).model_dump()])})"
        )
        return self._transition(job_id, JobStatus.LAUNCHING, e, attempt_before=attempt - 1)

    def mark_running(self, job_id: str, attempt: int) -> JobRecord:
        """LAUNCHING → RUNNING: the agent started its first phase."""
        return self._transition(job_id, JobStatus.RUNNING, attempt=attempt)

    def mark_uploading(self, job_id: str, attempt: int) -> JobRecord:
        """RUNNING → UPLOADING: training ended, the agent is copying results to S3."""
        return self._transition(job_id, JobStatus.UPLOADING, _Expr().set("phase", "upload"), attempt=attempt)

    def mark_succeeded(
        self,
        job_id: str,
        attempt: int,
        artifacts: list[Artifact],
        metrics: FinalMetrics | None = None,
        promotion: Promotion | None = None,
    ) -> JobRecord:
        """UPLOADING → SUCCEEDED with the uploaded artifacts, the final scores and, for a scheduled run, its promotion."""
        now = time.time()
        e = _Expr().set("artifacts", [a.model_dump() for a in artifacts]).set("finished_at", now)
        if metrics is not None:
            e.set("final_metrics", metrics.model_dump())
        if promotion is not None:
            e.set("promotion", promotion.model_dump())
        e.set("phase", None)
        _end_attempt(e, attempt, now, "succeeded")
        return self._transition(job_id, JobStatus.SUCCEEDED, e, attempt=attempt)

    def mark_failed(self, job_id: str, failure: Failure, attempt: int | None = None) -> JobRecord:
        """Any active status → FAILED, saying which phase failed and how."""
        now = time.time()
        e = _Expr().set("failure", failure.model_dump()).set("finished_at", now).set("phase", None)
        rec = self.get(job_id)
        if rec.attempts and rec.attempts[-1].ended_at is None:
            _end_attempt(e, len(rec.attempts), now, "failed", _reached(rec))
        return self._transition(job_id, JobStatus.FAILED, e, attempt=attempt)

    def mark_cancelled(
        self, job_id: str, by: str, *, artifacts: list[Artifact] | None = None, attempt: int | None = None
    ) -> JobRecord:
        """Any active status → CANCELLED by a person, keeping the weights the agent uploaded on its way out."""
        now = time.time()
        e = _Expr().set(
            "failure", Failure(phase="cancel", kind="cancelled", message=f"cancelled by <@{by}>").model_dump()
        )
        e.set("finished_at", now).set("phase", None)
        if artifacts:
            e.set("artifacts", [a.model_dump() for a in artifacts])
        rec = self.get(job_id)
        if rec.attempts and rec.attempts[-1].ended_at is None:
            _end_attempt(e, len(rec.attempts), now, "cancelled", _reached(rec))
        return self._transition(job_id, JobStatus.CANCELLED, e, attempt=attempt)

    def mark_interrupted(
        self, job_id: str, attempt: int, *, reason: str = "interrupted", relaunch_at: float | None = None
    ) -> JobRecord:
        """LAUNCHING|RUNNING|UPLOADING → INTERRUPTED: the spot instance was reclaimed (or vanished)."""
        e = _Expr().set("relaunch_at", relaunch_at).set("phase", None)
        rec = self.get(job_id)
        _end_attempt(e, attempt, time.time(), reason, _reached(rec) if rec.attempt == attempt else None)
        return self._transition(job_id, JobStatus.INTERRUPTED, e, attempt=attempt)

    def set_relaunch_at(self, job_id: str, attempt: int, at: float | None) -> JobRecord | None:
        """When the INTERRUPTED job's next attempt is due (the watchdog launches it then)."""
        e = _Expr().set("relaunch_at", at)
        cond = f"{e.n('attempt')} = {e.v(attempt)} AND {e.n('status')} = {e.v(JobStatus.INTERRUPTED.value)}"
        return self._apply(job_id, e, cond)

    def request_cancel(self, job_id: str, by: str) -> JobRecord | None:
        """Note that `by` asked to cancel an active job (the first request stands); None if the job has ended."""
        e = _Expr().set("cancel", CancelRequest(by=by, at=time.time()).model_dump())
        active = sorted(s.value for s in JobStatus if not s.is_terminal())
        cond = f"attribute_not_exists({e.n('cancel')}) AND {e.n('status')} IN ({', '.join(e.v(s) for s in active)})"
        if self._apply(job_id, e, cond) is None:
            current = self.find(job_id)
            return None if current is None or current.status.is_terminal() else current
        return self.get(job_id)

    def record_checkpoint(self, job_id: str, attempt: int, checkpoint: Checkpoint) -> JobRecord | None:
        """The latest checkpoint in S3 for the current attempt; an older report (a late delivery) changes nothing."""
        e = _Expr().set("checkpoint", checkpoint.model_dump())
        cp = e.n("checkpoint")
        cond = (
            f"{e.n('attempt')} = {e.v(attempt)} AND (attribute_not_exists({cp}) "
            f"OR {cp}.{e.n('at')} < {e.v(checkpoint.at)})"
        )
        return self._apply(job_id, e, cond)

    def add_note(self, job_id: str, note: str) -> JobRecord | None:
        """Remember what the control plane did to the job (the watchdog's actions, a relaunch…)."""
        e = _Expr()
        notes = e.n("notes")
        e.sets.append(f"{notes} = list_append(if_not_exists({notes}, {e.v([])}), {e.v([note[:500]])})")
        return self._apply(job_id, e, "attribute_exists(job_id)")

    # -- facts about the running attempt ----------------------------------------------------------

    def record_launch(self, event: JobLaunched) -> JobRecord:
        """Fill in the current attempt's instance, as EC2 answered the launcher."""
        att = Attempt(
            number=event.attempt,
            instance_id=event.instance_id,
            instance_type=event.instance_type,
            availability_zone=event.availability_zone,
            market=event.market,
            price_usd_hour=event.price_usd_hour,
            started_at=event.at,
            resumed_from=event.resumed_from,
        )
        e = _Expr().set("attempts", att.model_dump(), index=event.attempt - 1)
        rec = self._apply(event.job_id, e, f"{e.n('attempt')} = {e.v(event.attempt)}")
        if rec is None:
            raise TransitionError(event.job_id, None, JobStatus.LAUNCHING, f" (no attempt {event.attempt})")
        return rec

    def record_phase(self, job_id: str, attempt: int, phase: str, seq: int) -> JobRecord | None:
        """The phase the agent is in; a late or repeated phase event (lower seq) changes nothing."""
        e = _Expr().set("phase", phase).set("heartbeat_at", time.time())
        return self._apply(job_id, e, e.newer(attempt, "phase_seq", seq))

    def first_sight_of_phase(self, job_id: str, attempt: int, phase: str) -> bool:
        """True once per attempt and phase: whoever delivers its start first, even after a later phase's."""
        return self._once(job_id, attempt, "phases_seen", phase)

    def claim_phase_reply(self, job_id: str, attempt: int, phase: str) -> bool:
        """True once per attempt and phase: the thread hears of a phase's start once, however often it is told."""
        return self._once(job_id, attempt, "phases_told", phase)

    def claim_instance_notice(self, job_id: str, attempt: int, notice: str) -> bool:
        """True once per attempt and kind of EC2 notice (a rebalance recommendation): the thread hears it once."""
        return self._once(job_id, attempt, "instance_notices", notice)

    def _once(self, job_id: str, attempt: int, attribute: str, what: str) -> bool:
        """Adds `attempt:what` to the set `attribute` of the current attempt; False if it was there (or the job has
        moved on to another attempt)."""
        e = _Expr()
        seen = e.n(attribute)
        mark = f"{attempt}:{what}"
        args = {
            "UpdateExpression": f"ADD {seen} {e.v_set(mark)}",
            "ConditionExpression": (
                f"attribute_exists(job_id) AND {e.n('attempt')} = {e.v(attempt)} "
                f"AND (attribute_not_exists({seen}) OR NOT contains({seen}, {e.v(mark)}))"
            ),
            "ExpressionAttributeNames": e.names,
            "ExpressionAttributeValues": e.values,
        }
        try:
            self.db.update_item(TableName=self.table, Key={"job_id": {"S": job_id}}, **args)
        except self.db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def record_heartbeat(self, job_id: str, attempt: int) -> JobRecord | None:
        """The current attempt's agent is alive."""
        e = _Expr().set("heartbeat_at", time.time())
        return self._apply(job_id, e, f"{e.n('attempt')} = {e.v(attempt)}")

    def record_progress(self, event: JobProgress) -> JobRecord | None:
        """Newer progress of the current attempt replaces older; stale or foreign progress is dropped."""
        p = Progress(
            unit=event.unit,
            current=event.current,
            total=event.total,
            loss=event.loss,
            eta_seconds=event.eta_seconds,
            seq=event.seq,
            at=event.at,
        )
        e = _Expr().set("progress", p.model_dump()).set("heartbeat_at", time.time())
        if event.loss is not None:
            hist = e.n("loss_history")
            point = [event.current, event.loss]
            e.sets.append(f"{hist} = list_append(if_not_exists({hist}, {e.v([])}), {e.v([point])})")
        cond = e.newer(event.attempt, "progress_seq", event.seq)
        if event.loss is not None:
            cond += f" AND (attribute_not_exists({e.n('loss_history')}) OR size({e.n('loss_history')}) < {e.v(LOSS_HISTORY_MAX)})"
            rec = self._apply(event.job_id, e, cond)
            if rec is not None:
                return rec
            # The curve is full (or the event is stale): keep the progress, not the point.
            e = _Expr().set("progress", p.model_dump()).set("heartbeat_at", time.time())
            return self._apply(event.job_id, e, e.newer(event.attempt, "progress_seq", event.seq))
        return self._apply(event.job_id, e, cond)

    def record_metric(self, event: JobMetric) -> tuple[JobRecord | None, bool]:
        """Append a metric to the history; returns the record and whether it is a new best mAP50."""
        m = Metrics(
            current=event.current,
            map50=event.map50,
            map50_95=event.map50_95,
            precision=event.precision,
            recall=event.recall,
        )
        e = _Expr().set("metrics", m.model_dump())
        hist = e.n("metric_history")
        e.sets.append(f"{hist} = list_append(if_not_exists({hist}, {e.v([])}), {e.v([m.model_dump()])})")
        rec = self._apply(event.job_id, e, e.newer(event.attempt, "metric_seq", event.seq))
        if rec is None or event.map50 is None:
            return rec, False
        b = _Expr().set("best", m.model_dump())
        best = self._apply(
            event.job_id,
            b,
            f"attribute_not_exists({b.n('best')}.map50) OR {b.n('best')}.map50 < {b.v(event.map50)}",
        )
        return (best or rec), best is not None

    def claim_best_announcement(
        self,
        job_id: str,
        map50: float,
        step: float,
        *,
        interval: float = 0.0,
        limit: int | None = None,
        now: float | None = None,
    ) -> bool:
        """Take the right to announce `map50` as the new best: only once it beats the last one announced by `step`,
        `interval` seconds or more after it, and while fewer than `limit` were announced (None: no limit)."""
        now = time.time() if now is None else now
        e = _Expr().set("announced_best", map50).set("announced_best_at", now)
        best, at, count = e.n("announced_best"), e.n("announced_best_at"), e.n("announced_best_count")
        e.sets.append(f"{count} = if_not_exists({count}, {e.v(0)}) + {e.v(1)}")
        later = f"{best} <= {e.v(map50 - step)} AND (attribute_not_exists({at}) OR {at} <= {e.v(now - interval)})"
        if limit is not None:
            later += f" AND (attribute_not_exists({count}) OR {count} < {e.v(limit)})"
        cond = f"(attribute_not_exists({best}) AND {e.v(map50)} >= {e.v(step)}) OR ({later})"
        return self._apply(job_id, e, cond) is not None

    def set_slack(self, job_id: str, ref: SlackRef) -> JobRecord | None:
        e = _Expr().set("slack", ref.model_dump()).set("card_updated_at", time.time())
        return self._apply(job_id, e, "attribute_exists(job_id)")

    def claim_announcement(
        self,
        job_id: str,
        status: JobStatus,
        part: AnnouncementPart = "reply",
        *,
        lease: float = ANNOUNCEMENT_LEASE_SECONDS,
        now: float | None = None,
    ) -> float | None:
        """Take the right to show `part` of the job's end in `status` (once, whoever delivers the event): refused
        while Slack has it or another delivery holds it, unless that hold is older than `lease` seconds. Returns
        the claim's time, which `announcement_shown` and `release_announcement` name; None when refused."""
        now = time.time() if now is None else now
        attr = ANNOUNCEMENT_ATTRIBUTES[part]
        by = uuid.uuid4().hex
        e = _Expr().set(attr, Announcement(status=status, claimed_at=now, by=by).model_dump())
        claim, state = e.n(attr), e.n("status")
        cond = (
            f"{state} = {e.v(status.value)} AND (attribute_not_exists({claim}) "
            f"OR {claim}.{state} <> {e.v(status.value)} "
            f"OR ({claim}.{e.n('done')} = {e.v(False)} AND {claim}.{e.n('claimed_at')} <= {e.v(now - lease)}))"
        )
        if self._apply(job_id, e, cond) is not None:
            return now
        # A request retried after its answer was lost (the first try landed) is refused by its own claim.
        current = self.find(job_id)
        held: Announcement | None = getattr(current, attr) if current else None
        mine = held is not None and held.by == by and not held.done
        return now if mine else None

    def announcement_shown(self, job_id: str, part: AnnouncementPart, claimed_at: float) -> bool:
        """Slack has the part claimed at `claimed_at`: no delivery shows it again. False if the claim was taken
        over meanwhile (held past its lease)."""
        e = _Expr()
        claim = e.n(ANNOUNCEMENT_ATTRIBUTES[part])
        e.sets.append(f"{claim}.{e.n('done')} = {e.v(True)}")
        return self._apply(job_id, e, f"{claim}.{e.n('claimed_at')} = {e.v(claimed_at)}") is not None

    def release_announcement(self, job_id: str, part: AnnouncementPart, claimed_at: float) -> None:
        """Give the part claimed at `claimed_at` back (Slack did not take it): the next delivery shows it."""
        attr = ANNOUNCEMENT_ATTRIBUTES[part]
        # A claim taken over by another delivery (held past its lease) is not ours to give back.
        with contextlib.suppress(self.db.exceptions.ConditionalCheckFailedException):
            self.db.update_item(
                TableName=self.table,
                Key={"job_id": {"S": job_id}},
                UpdateExpression="REMOVE #claim",
                ConditionExpression="#claim.#at = :at",
                ExpressionAttributeNames={"#claim": attr, "#at": "claimed_at"},
                ExpressionAttributeValues={":at": _to_dynamo(claimed_at)},
            )

    def claim_card_slot(self, job_id: str, interval: float, now: float | None = None) -> bool:
        """Take the right to update the job card now, at most once per `interval` seconds per job."""
        now = time.time() if now is None else now
        e = _Expr().set("card_updated_at", now)
        cond = f"attribute_not_exists({e.n('card_updated_at')}) OR {e.n('card_updated_at')} <= {e.v(now - interval)}"
        return self._apply(job_id, e, cond) is not None

    def card_drawn(self, job_id: str, at: float) -> None:
        """The card update that took the window ended at `at`: the next window opens `interval` after it."""
        e = _Expr().set("card_updated_at", at)
        self._apply(job_id, e, f"{e.n('card_updated_at')} < {e.v(at)}")
