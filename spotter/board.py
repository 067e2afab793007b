"""A channel's board: the rows `/train list` shows, kept beside the jobs in the jobs table.

`/train list` reads one small item, strongly consistent, instead of the by-channel index (eventually consistent,
so a job just started could be missing) and then ten whole job records (each with its loss and mAP histories).
The board item's key is no job id (`JOB_ID_RE`) and it carries none of the indexes' keys, so it is in no index.

Each job of the channel has one attribute on the board, `job:<id>`: the record's version and its row as JSON. A row
is written from the record a guarded update returned, and only over an older version, so deliveries racing each
other cannot put an older row over a newer one. A row is added when the job is created, and the oldest rows are
dropped past `TRIM_AT`; a job whose row was dropped stays off the board.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict

from spotter.status import JobStatus

if TYPE_CHECKING:
    from spotter.store import JobRecord

log = logging.getLogger(__name__)

KEY_PREFIX = "#board/"
ROW_PREFIX = "job:"
KEEP = 20  # the rows a board keeps once trimmed: `/train list` shows ten
TRIM_AT = 40  # ... trimmed when it holds more than this


class JobRow(BaseModel):
    """What a listing shows of a job."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    status: JobStatus
    channel: str
    dataset: str
    model: str
    requested_by: str
    created_at: str
    finished_at: float | None = None
    unit: str
    length: int | None = None  # epochs or iterations asked for
    current: int | None = None  # the last one completed
    total: int | None = None
    best_map50: float | None = None

    @classmethod
    def of(cls, rec: JobRecord) -> JobRow:
        p = rec.progress
        return cls(
            job_id=rec.job_id,
            status=rec.status,
            channel=rec.channel,
            dataset=rec.spec.dataset,
            model=rec.spec.model,
            requested_by=rec.spec.requested_by,
            created_at=rec.created_at,
            finished_at=rec.finished_at,
            unit=p.unit if p else rec.spec.unit,
            length=rec.spec.length,
            current=p.current if p else None,
            total=p.total if p else None,
            best_map50=rec.best.map50 if rec.best else None,
        )


def board_key(channel: str) -> dict[str, Any]:
    return {"job_id": {"S": KEY_PREFIX + channel}}


def _cell(row: JobRow, version: int) -> dict[str, Any]:
    return {"M": {"v": {"N": str(version)}, "row": {"S": row.model_dump_json(exclude_none=True)}}}


def _rows(item: dict[str, Any]) -> list[JobRow]:
    """The rows of a board item, newest first."""
    rows = [
        JobRow.model_validate(json.loads(cell["M"]["row"]["S"]))
        for name, cell in item.items()
        if name.startswith(ROW_PREFIX)
    ]
    return sorted(rows, key=lambda r: r.created_at, reverse=True)


class Board:
    def __init__(self, db: Any, table: str) -> None:
        self.db, self.table = db, table

    def add(self, rec: JobRecord, version: int = 0) -> None:
        """Put a new job on its channel's board (a retried create leaves the row it finds), dropping the oldest rows
        past TRIM_AT."""
        name = {"#r": ROW_PREFIX + rec.job_id}
        try:
            resp = self.db.update_item(
                TableName=self.table,
                Key=board_key(rec.channel),
                UpdateExpression="SET #r = :cell",
                ConditionExpression="attribute_not_exists(#r)",
                ExpressionAttributeNames=name,
                ExpressionAttributeValues={":cell": _cell(JobRow.of(rec), version)},
                ReturnValues="ALL_NEW",
            )
        except self.db.exceptions.ConditionalCheckFailedException:
            return
        rows = _rows(resp["Attributes"])
        if len(rows) > TRIM_AT:
            oldest = {f"#o{i}": ROW_PREFIX + r.job_id for i, r in enumerate(rows[KEEP:])}
            self.db.update_item(
                TableName=self.table,
                Key=board_key(rec.channel),
                UpdateExpression="REMOVE " + ", ".join(oldest),
                ExpressionAttributeNames=oldest,
            )

    def remove(self, channel: str, job_id: str) -> None:
        self.db.update_item(
            TableName=self.table,
            Key=board_key(channel),
            UpdateExpression="REMOVE #r",
            ExpressionAttributeNames={"#r": ROW_PREFIX + job_id},
        )

    def show(self, rec: JobRecord, version: int) -> None:
        """The job's row as `rec` (the record at `version`) has it, unless the board has a newer one or no row for
        it. Raises what DynamoDB raised."""
        with contextlib.suppress(self.db.exceptions.ConditionalCheckFailedException):
            self.db.update_item(
                TableName=self.table,
                Key=board_key(rec.channel),
                UpdateExpression="SET #r = :cell",
                ConditionExpression="attribute_exists(#r) AND #r.v < :v",
                ExpressionAttributeNames={"#r": ROW_PREFIX + rec.job_id},
                ExpressionAttributeValues={":cell": _cell(JobRow.of(rec), version), ":v": {"N": str(version)}},
            )

    def try_show(self, rec: JobRecord, version: int) -> None:
        """`show`, where the job's own update has been made already: a board DynamoDB did not take is caught up by
        the job's next change, and at its end by the notifier."""
        try:
            self.show(rec, version)
        except (ClientError, BotoCoreError) as e:
            log.warning("the board row of %s was not updated: %s", rec.job_id, e)

    def rows(self, channel: str) -> list[JobRow] | None:
        """The board's rows, newest first; None when the channel has no board."""
        resp = self.db.get_item(TableName=self.table, Key=board_key(channel), ConsistentRead=True)
        return _rows(resp["Item"]) if "Item" in resp else None
