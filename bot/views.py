"""Block Kit for everything the bot says: the job card, thread replies and command answers. Pure: data in, message out.

Every message carries a plain `text` fallback (notifications, screen readers). Text that comes from a job
(failure messages, log lines) is escaped, so a log line can never mention @channel or forge a link.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypedDict, get_args

from bot.commands import USAGE, TrainCommand, example
from spotter import catalog
from spotter.events import Artifact
from spotter.spec import TrainParams
from spotter.status import JobStatus
from spotter.store import JobRecord

Block = dict[str, Any]

SECTION_LIMIT = 3000  # Slack's limit for a section's text
LOG_CHARS = 2400  # room left for the failure headline in the same section
BAR_WIDTH = 20
DOWNLOAD_ACTION = "download_weights"

STATUS: dict[JobStatus, tuple[str, str]] = {
    JobStatus.QUEUED: (":hourglass_flowing_sand:", "Queued"),
    JobStatus.LAUNCHING: (":rocket:", "Launching"),
    JobStatus.RUNNING: (":gear:", "Running"),
    JobStatus.UPLOADING: (":outbox_tray:", "Uploading"),
    JobStatus.SUCCEEDED: (":white_check_mark:", "Succeeded"),
    JobStatus.FAILED: (":x:", "Failed"),
    JobStatus.CANCELLED: (":no_entry_sign:", "Cancelled"),
    JobStatus.INTERRUPTED: (":warning:", "Interrupted (spot reclaimed), resuming"),
}

PHASE_EMOJI = {
    "install": ":package:",
    "build": ":hammer_and_wrench:",
    "data": ":card_file_box:",
    "train": ":weight_lifter:",
    "evaluate": ":dart:",
    "upload": ":outbox_tray:",
}


class Message(TypedDict):
    text: str
    blocks: list[Block]


# -- small formatters --------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Slack's three control characters; what is left shows as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def duration(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s / 86400:.3g} days"


def _number(value: object) -> str:
    """1, 2000000, 0.5, true: as a person would type them."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"{value:.0f}" if float(value).is_integer() else f"{value:g}"
    return str(value)


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _bar(fraction: float) -> str:
    filled = round(fraction * BAR_WIDTH)
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def _mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> Block:
    return {"type": "section", "text": _mrkdwn(text[:SECTION_LIMIT])}


def _fields(*pairs: tuple[str, str]) -> Block:
    return {"type": "section", "fields": [_mrkdwn(f"*{k}*\n{v}") for k, v in pairs]}


def _context(*parts: str) -> Block:
    return {"type": "context", "elements": [_mrkdwn(p) for p in parts if p]}


def _download_button(url: str) -> Block:
    return {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": DOWNLOAD_ACTION,
                "text": {"type": "plain_text", "text": "Download weights"},
                "url": url,
                "style": "primary",
            }
        ],
    }


def _message(text: str, blocks: list[Block]) -> Message:
    return {"text": text, "blocks": blocks}


# -- facts about a job -------------------------------------------------------------------------------


def title(rec: JobRecord) -> str:
    return f"{rec.spec.dataset} · {rec.spec.model}"


def elapsed(rec: JobRecord, now: float) -> float:
    """Seconds since the request (until the end, for a finished job)."""
    start = datetime.fromisoformat(rec.created_at).timestamp()
    return (rec.finished_at or now) - start


def _dollars(amount: float) -> str:
    """Cents for real money, a tenth of a cent for the minutes a small job costs."""
    return f"${amount:.2f}" if amount >= 0.1 else f"${amount:.3f}"


def cost_estimate(rec: JobRecord, now: float) -> float | None:
    """Dollars for the instance time of the attempts whose hourly price is known; None if none is."""
    priced = [a for a in rec.attempts if a.price_usd_hour is not None and a.started_at is not None]
    if not priced:
        return None
    return sum(
        ((a.ended_at or rec.finished_at or now) - (a.started_at or 0)) / 3600 * (a.price_usd_hour or 0) for a in priced
    )


def progress_line(rec: JobRecord) -> str:
    """`epoch 7/20 · 35%`, or "" before the first progress report."""
    p = rec.progress
    if p is None:
        return ""
    total = p.total or rec.spec.length or None
    count = f"{p.unit} {p.current}/{total}" if total else f"{p.unit} {p.current}"
    return f"{count} · {round(100 * min(1.0, p.current / total))}%" if total else count


def _instance_line(rec: JobRecord) -> str:
    a = rec.current_attempt
    if a is None or a.instance_type is None:
        return ""
    parts = [a.instance_type, a.market or "", a.availability_zone or ""]
    if a.price_usd_hour is not None:
        parts.append(f"${a.price_usd_hour:.3f}/h")
    if rec.attempt > 1:
        parts.append(f"attempt {rec.attempt}")
    return " · ".join(p for p in parts if p)


def _metric_pair(latest: float | None, best: float | None) -> str:
    """The latest score, and the best epoch's when that one is higher (the best epoch is chosen by mAP50)."""
    if best is None or (latest is not None and best <= latest):
        return _score(latest)
    return f"{_score(latest)} (best {_score(best)})"


# -- the job card ------------------------------------------------------------------------------------


def job_card(rec: JobRecord, *, now: float, weights_url: str | None = None) -> Message:
    """The card posted when the job is queued and updated in place as it runs."""
    emoji, label = STATUS[rec.status]
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": title(rec)[:150], "emoji": True}},
        _fields(("Status", f"{emoji} {label}"), ("Phase", rec.phase or "–")),
    ]
    p = rec.progress
    if p is not None:
        detail = [progress_line(rec)]
        if p.loss is not None:
            detail.append(f"loss {p.loss:.4g}")
        if p.eta_seconds is not None and not rec.status.is_terminal():
            detail.append(f"ETA {duration(p.eta_seconds)}")
        bar = f"`{_bar(p.fraction or 0.0)}`\n" if p.fraction is not None else ""
        blocks.append(_section(bar + " · ".join(detail)))
    latest, best = rec.metrics, rec.best
    if latest or best:
        blocks.append(
            _fields(
                ("mAP50", _metric_pair(latest.map50 if latest else None, best.map50 if best else None)),
                ("mAP50-95", _metric_pair(latest.map50_95 if latest else None, best.map50_95 if best else None)),
            )
        )
    if rec.failure is not None and rec.status is not JobStatus.SUCCEEDED:
        f = rec.failure
        blocks.append(_section(f":x: Failed in *{escape(f.phase)}* ({escape(f.kind)}): {escape(f.message)[:500]}"))
    if rec.status is JobStatus.SUCCEEDED and weights_url:
        blocks.append(_download_button(weights_url))
    blocks.append(
        _context(
            _instance_line(rec),
            f"elapsed {duration(elapsed(rec, now))}",
            f"requested by <@{rec.spec.requested_by}>",
            f"job `{rec.job_id}`",
        )
    )
    text = f"{title(rec)}: {label}"
    if rec.phase and not rec.status.is_terminal():
        text += f" ({rec.phase})"
    if progress_line(rec):
        text += f", {progress_line(rec)}"
    return _message(f"{text}. Job {rec.job_id}.", blocks)


# -- thread replies ----------------------------------------------------------------------------------


def phase_reply(rec: JobRecord, phase: str, *, cached: bool) -> Message:
    what = "restored from cache" if cached else "started"
    where = f" on {_instance_line(rec)}" if phase == "install" and _instance_line(rec) else ""
    text = f"{PHASE_EMOJI.get(phase, ':arrow_forward:')} *{phase}* {what}{where}"
    return _message(f"{phase} {what}{where}", [_section(text)])


def best_reply(rec: JobRecord) -> Message:
    b = rec.best
    assert b is not None and b.map50 is not None, "a new best always has mAP50"
    at = ""
    if b.current is not None:
        total = rec.spec.length or (rec.progress.total if rec.progress else None)
        at = f" at {rec.spec.unit} {b.current}" + (f"/{total}" if total else "")
    extra = f" (mAP50-95 {_score(b.map50_95)})" if b.map50_95 is not None else ""
    return _message(
        f"New best mAP50 {_score(b.map50)}{extra}{at}",
        [_section(f":chart_with_upwards_trend: New best mAP50 *{_score(b.map50)}*{extra}{at}")],
    )


def _code_block(lines: list[str]) -> str:
    """The last lines that fit, escaped, with no fence of their own to break ours."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        line = escape(line.replace("```", "'''"))
        if size + len(line) + 1 > LOG_CHARS:
            break
        kept.insert(0, line)
        size += len(line) + 1
    return "```\n" + "\n".join(kept) + "\n```" if kept else ""


def failure_reply(rec: JobRecord) -> Message:
    f = rec.failure
    if f is None:
        return _message(f"{title(rec)} failed.", [_section(f":x: *{escape(title(rec))}* failed.")])
    head = f":x: *Failed* in `{escape(f.phase)}` ({escape(f.kind)}): {escape(f.message)[:500]}"
    blocks = [_section(head)]
    if f.last_lines:
        blocks.append(_section("Last lines of the log:\n" + _code_block(f.last_lines)))
    return _message(f"Failed in {f.phase} ({f.kind}): {f.message[:500]}", blocks)


def result_reply(rec: JobRecord, *, now: float, weights_url: str | None) -> Message:
    latest, best = rec.metrics, rec.best
    parts = [f"mAP50 {_score(latest.map50 if latest else None)} final, {_score(best.map50 if best else None)} best"]
    if best and best.map50_95 is not None:
        parts.append(f"mAP50-95 {_score(best.map50_95)} at the best mAP50")
    parts.append(f"took {duration(elapsed(rec, now))}")
    cost = cost_estimate(rec, now)
    if cost is not None:
        parts.append(f"about {_dollars(cost)} of instance time")
    summary = " · ".join(parts)
    blocks = [_section(f":white_check_mark: *Done*: {summary}")]
    if weights_url:
        blocks.append(_download_button(weights_url))
    link = f" Weights: {weights_url}" if weights_url else ""
    return _message(f"Done: {summary}.{link}", blocks)


# -- command answers ---------------------------------------------------------------------------------


def error_message(text: str) -> Message:
    return _message(text, [_section(f":warning: {text}")])


def not_available(name: str) -> Message:
    usable = ", ".join(f"`{usage}`" for usage, _ in USAGE.values())
    return error_message(f"`/train {name}` is not available yet. Available: {usable}.")


def queued_message(cmd: TrainCommand, job_id: str) -> Message:
    p = cmd.params
    length = f"{p.epochs} epochs" if p.epochs else f"{p.iterations} iterations" if p.iterations else ""
    details = [length, f"img {p.img}" if p.img else "", f"batch {p.batch}" if p.batch else ""]
    details += [f"{p.gpus} GPUs" if p.gpus > 1 else "", "spot" if p.spot else "on-demand", f"up to {p.max_hours:g} h"]
    what = f"{cmd.dataset} · {cmd.model} ({', '.join(d for d in details if d)})"
    text = f"Queued `{job_id}`: {what}. Its card will appear in this channel."
    return _message(text, [_section(f":inbox_tray: {text}")])


def _option_lines() -> list[str]:
    lines = []
    for name, field in TrainParams.model_fields.items():
        key = field.alias or name
        bounds = {k: getattr(m, k) for m in field.metadata for k in ("ge", "gt", "le") if hasattr(m, k)}
        if key == "instance":
            allowed = ", ".join(catalog.GPU_TYPES)
        elif field.annotation is bool:
            allowed = "`true` or `false`"
        elif get_args(field.annotation) and all(isinstance(a, str) for a in get_args(field.annotation)):
            allowed = " or ".join(f"`{a}`" for a in get_args(field.annotation))
        elif "ge" in bounds:
            allowed = f"{_number(bounds['ge'])}–{_number(bounds['le'])}"
        else:
            allowed = f"over {_number(bounds['gt'])}, up to {_number(bounds['le'])}"
        default = "the model's" if field.default is None else _number(field.default)
        lines.append(f"`{key}` {field.description}: {allowed} (default {default})")
    return lines


def _model_lines(models: Iterable[catalog.Model]) -> list[str]:
    return [
        f"`{m.name}` {m.description}; trains in {m.unit}s; defaults "
        + " ".join(f"`{k}={_number(v)}`" for k, v in m.defaults.items())
        for m in models
    ]


def _models_by_framework() -> dict[str, list[catalog.Model]]:
    """The catalog's models under the recipe (framework) that trains them, in catalog order."""
    groups: dict[str, list[catalog.Model]] = {}
    for m in catalog.MODELS.values():
        groups.setdefault(m.recipe, []).append(m)
    return groups


def _model_sections() -> list[Block]:
    return [_section(f"*{recipe}*\n" + "\n".join(_model_lines(ms))) for recipe, ms in _models_by_framework().items()]


CLASSES_SHOWN = 8  # longer class lists (COCO's 80) show their first and last names


def _classes(classes: tuple[str, ...]) -> str:
    shown = classes if len(classes) <= CLASSES_SHOWN else (*classes[: CLASSES_SHOWN - 2], "…", classes[-1])
    return f"{len(classes)} classes: {', '.join(shown)}"


def _dataset_lines() -> list[str]:
    return [
        f"`{d.name}` {d.description}; stored as {d.format}; {d.size}; {_classes(d.classes)}"
        for d in catalog.DATASETS.values()
    ]


OWN_DATASET = (
    f"*Your own*: `/train s3://bucket/prefix/ <model>`, e.g. `{catalog.S3_EXAMPLE}`. The prefix holds a version "
    "published with `python -m infra.datasets publish` (a `manifest.json` and `files/`), or a dataset as "
    "exported: YOLO (`data.yaml` with its `names`, `images/` and `labels/` per split), darknet (`obj.names`, "
    "`train.txt`, `valid.txt`, each image's `.txt` beside it), COCO (`annotations/instances_train….json`, "
    "`…val….json` and the image folders) or Pascal VOC (`train/` and `val/` folders of images and `.xml`, or "
    "`Annotations/`, `JPEGImages/` and `ImageSets/Main/`). It needs a train split and a val (or test) one; the "
    "classes come from the dataset; every model can train on every layout; Spotter's instances must be allowed "
    "to read the bucket."
)


def help_message() -> Message:
    commands = [f"`{usage}` {what}" for usage, what in USAGE.values()]
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Spotter: train detectors on spot GPUs"}},
        _section("*Commands*\n" + "\n".join(commands)),
        _section("*Datasets*\n" + "\n".join(_dataset_lines())),
        _section(OWN_DATASET),
        _section("*Models*, by framework"),
        *_model_sections(),
        _section("*Options* (`key=value` after the model)\n" + "\n".join(_option_lines())),
        _context(f"Example: `{example()}`"),
    ]
    return _message(f"Spotter commands: {', '.join(u for u, _ in USAGE.values())}. Example: {example()}", blocks)


def datasets_message() -> Message:
    blocks = [_section("*Datasets*\n" + "\n".join(_dataset_lines())), _section(OWN_DATASET)]
    return _message(f"Datasets: {', '.join(catalog.DATASETS)}, or your own s3://bucket/prefix/", blocks)


def models_message() -> Message:
    groups = _models_by_framework()
    text = "; ".join(f"{recipe}: {', '.join(m.name for m in ms)}" for recipe, ms in groups.items())
    return _message(f"Models by framework: {text}", [_section("*Models*, by framework"), *_model_sections()])


def job_line(rec: JobRecord, now: float) -> str:
    emoji, label = STATUS[rec.status]
    parts = [f"{emoji} `{rec.job_id}` *{title(rec)}* {label}"]
    if progress_line(rec) and not rec.status.is_terminal():
        parts.append(progress_line(rec))
    if rec.best and rec.best.map50 is not None:
        parts.append(f"best mAP50 {_score(rec.best.map50)}")
    parts += [f"<@{rec.spec.requested_by}>", duration(elapsed(rec, now))]
    return " · ".join(parts)


def job_list(records: list[JobRecord], now: float) -> Message:
    if not records:
        text = f"No jobs in this channel yet. Start one: `{example()}`."
        return _message(text, [_section(text)])
    lines = [job_line(r, now) for r in records]
    summary = ", ".join(f"{r.job_id} ({STATUS[r.status][1].lower()})" for r in records)
    return _message(
        f"Recent jobs in this channel: {summary}",
        [_section("*Recent jobs in this channel*\n" + "\n".join(lines))],
    )


def weights_message(rec: JobRecord, artifact: Artifact, url: str, expires_in: int) -> Message:
    best = f", best mAP50 {_score(rec.best.map50)}" if rec.best and rec.best.map50 is not None else ""
    size = f"{artifact.size / 1e6:.1f} MB"
    text = (
        f"Weights of `{rec.job_id}` ({title(rec)}{best}): {artifact.name}, {size}, "
        f"sha256 `{artifact.sha256[:12]}…`. The link works for {duration(expires_in)}."
    )
    return _message(f"{text} {url}", [_section(f":package: {text}"), _download_button(url)])
