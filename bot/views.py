"""Block Kit for everything the bot says: the job card, thread replies and command answers. Pure: data in, message out.

Every message carries a plain `text` fallback (notifications, screen readers). Text that comes from a job
(failure messages, log lines) is escaped, so a log line can never mention @channel or forge a link.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any, TypedDict, get_args

from bot.commands import USAGE, TrainCommand, example
from bot.rules import CancelRefused, CapReached
from spotter import catalog, cost
from spotter.cost import JobCost
from spotter.events import Artifact
from spotter.spec import TrainParams
from spotter.status import JobStatus
from spotter.store import JobRecord

Block = dict[str, Any]

SECTION_LIMIT = 3000  # Slack's limit for a section's text
LOG_CHARS = 2400  # room left for the failure headline in the same section
MESSAGE_CHARS = 2000  # a control plane message (the launcher's list of types × zones) shown whole up to this
BAR_WIDTH = 20
DOWNLOAD_ACTION = "download_weights"
CANCEL_ACTION = "cancel_job"
TOP_JOBS = 5  # the jobs `/train cost` names for a channel
ACTIVE_SHOWN = 5  # the active jobs a cap refusal names

STATUS: dict[JobStatus, tuple[str, str]] = {
    JobStatus.QUEUED: (":hourglass_flowing_sand:", "Queued"),
    JobStatus.LAUNCHING: (":rocket:", "Launching"),
    JobStatus.RUNNING: (":gear:", "Running"),
    JobStatus.UPLOADING: (":outbox_tray:", "Uploading"),
    JobStatus.SUCCEEDED: (":white_check_mark:", "Succeeded"),
    JobStatus.FAILED: (":x:", "Failed"),
    JobStatus.CANCELLED: (":no_entry_sign:", "Cancelled"),
    JobStatus.INTERRUPTED: (":warning:", "Interrupted — relaunching"),
}

PHASE_EMOJI = {
    "install": ":package:",
    "build": ":hammer_and_wrench:",
    "data": ":card_file_box:",
    "train": ":weight_lifter:",
    "evaluate": ":dart:",
    "upload": ":outbox_tray:",
}

# What each failure kind means, said first in the failure reply (the record's message follows with the details).
FAILURE_HEADLINES = {
    "oom": "Out of GPU memory",
    "nan_loss": "The loss became NaN",
    "killed": "The training process was killed",
    "crash": "The training process crashed",
    "exit": "A step exited with an error",
    "launch": "The instance could not be launched",
    "timeout": "Past the job's max_hours",
    "capacity": "No GPU capacity",
    "quota": "Over the account's EC2 quota",
    "budget": "Over a Spotter cap",
    "vanished": "The instance vanished with no checkpoint to resume from",
    "heartbeat": "The agent went silent",
    "attempts": "Too many attempts",
}
# What a person can change for the next try, where the failure's own message does not say it.
FAILURE_HINTS = {
    "oom": "Try a smaller `batch=` or `img=`, or a GPU with more memory (`instance=`).",
    "nan_loss": "Try a smaller `batch=`, or start `from=pretrained`.",
}
SPOT_MODES = {"auto": "spot, else on-demand", "true": "spot only", "false": "on-demand"}
# How an attempt ended (Attempt.ended_reason), in words.
ENDED = {
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "interrupted": "spot interruption",
    "vanished": "instance vanished",
}


class Message(TypedDict):
    text: str
    blocks: list[Block]


# -- small formatters --------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Slack's three control characters; what is left shows as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_BARE_AMP = re.compile(r"&(?!(?:amp|lt|gt);)")


def safe(text: str) -> str:
    """Escape text that may already be escaped (a control plane message quoting EC2): `&lt;` stays `&lt;`."""
    return _BARE_AMP.sub("&amp;", text).replace("<", "&lt;").replace(">", "&gt;")


def safe_note(note: str) -> str:
    """A control plane note is mrkdwn (it may mention a person), but never a broadcast (@channel, @here)."""
    return note.replace("<!", "&lt;!")


def mention(user: str) -> str:
    return f"<@{user}>"


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


def _plain(text: str) -> Block:
    return {"type": "plain_text", "text": text}


def _section(text: str) -> Block:
    return {"type": "section", "text": _mrkdwn(text[:SECTION_LIMIT])}


def _fields(*pairs: tuple[str, str]) -> Block:
    return {"type": "section", "fields": [_mrkdwn(f"*{k}*\n{v}") for k, v in pairs]}


def _context(*parts: str) -> Block:
    return {"type": "context", "elements": [_mrkdwn(p) for p in parts if p]}


def _download(url: str, label: str = "Download weights") -> Block:
    return {"type": "button", "action_id": DOWNLOAD_ACTION, "text": _plain(label), "url": url, "style": "primary"}


def _download_button(url: str, label: str = "Download weights") -> Block:
    return {"type": "actions", "elements": [_download(url, label)]}


def cancel_button(rec: JobRecord) -> Block:
    """The card's Cancel button: Slack asks the person to confirm before the click reaches Spotter."""
    return {
        "type": "button",
        "action_id": CANCEL_ACTION,
        "text": _plain("Cancel"),
        "value": rec.job_id,
        "style": "danger",
        "confirm": {
            "title": _plain("Cancel this job?"),
            "text": _mrkdwn(
                f"`{rec.job_id}` ({escape(title(rec))}) stops: the weights written so far are uploaded, "
                "then the instance is terminated."
            ),
            "confirm": _plain("Cancel the job"),
            "deny": _plain("Keep it going"),
            "style": "danger",
        },
    }


def _message(text: str, blocks: list[Block]) -> Message:
    return {"text": text, "blocks": blocks}


def _dollars(amount: float) -> str:
    """Cents for real money, a tenth of a cent for the minutes a small job costs."""
    return f"${amount:,.2f}" if amount >= 0.1 else f"${amount:.3f}"


def _percent(fraction: float | None) -> str:
    return f" ({round(100 * fraction)}%)" if fraction else ""


# -- facts about a job -------------------------------------------------------------------------------


def title(rec: JobRecord) -> str:
    return f"{rec.spec.dataset} · {rec.spec.model}"


def elapsed(rec: JobRecord, now: float) -> float:
    """Seconds since the request (until the end, for a finished job)."""
    start = datetime.fromisoformat(rec.created_at).timestamp()
    return (rec.finished_at or now) - start


def status_label(rec: JobRecord, now: float) -> str:
    """The status as the card says it: an interrupted job says whether its next attempt waits for a backoff."""
    label = STATUS[rec.status][1]
    if rec.status is JobStatus.INTERRUPTED and rec.relaunch_at is not None and rec.relaunch_at > now:
        return f"Interrupted — next attempt in {duration(rec.relaunch_at - now)}"
    return label


def priced(jc: JobCost) -> bool:
    """Some instance time with a known price went into the job (a job that never got an instance cost nothing)."""
    return any(a.hours > 0 and a.price_usd_hour is not None for a in jc.attempts)


def cost_line(rec: JobRecord, now: float) -> str:
    """`$0.42 so far` while the job runs; at its end the total and the saving against on-demand; "" if unpriced."""
    jc = cost.job_cost(rec, now)
    if not priced(jc):
        return ""
    if not rec.status.is_terminal():
        return f"{_dollars(jc.usd)} so far"
    saving = f", {_dollars(jc.saving_usd)} less than on-demand{_percent(jc.saving_fraction)}" if jc.saving_usd else ""
    return f"cost {_dollars(jc.usd)}{saving}"


def progress_line(rec: JobRecord) -> str:
    """`epoch 7/20 · 35%`, or "" before the first progress report."""
    p = rec.progress
    if p is None:
        return ""
    total = p.total or rec.spec.length or None
    count = f"{p.unit} {p.current}/{total}" if total else f"{p.unit} {p.current}"
    return f"{count} · {round(100 * min(1.0, p.current / total))}%" if total else count


def _reached(rec: JobRecord) -> str:
    """`epoch 7/20`: how far the job got, or ""."""
    p = rec.progress
    if p is None:
        return ""
    total = p.total or rec.spec.length or None
    return f"{p.unit} {p.current}/{total}" if total else f"{p.unit} {p.current}"


def _instance_line(rec: JobRecord) -> str:
    a = rec.current_attempt
    if a is None or a.instance_type is None:
        return f"attempt {rec.attempt}" if rec.attempt > 1 else ""
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


_MENTION = re.compile(r"<@([A-Z0-9]+)>")


def cancelled_by(rec: JobRecord) -> str | None:
    """Who cancelled the job (the request on the record, or the mention the cancel wrote into its failure)."""
    if rec.cancel is not None:
        return rec.cancel.by
    found = _MENTION.search(rec.failure.message) if rec.failure else None
    return found.group(1) if found else None


def failure_headline(phase: str, kind: str) -> str:
    if phase == "watchdog" and kind == "launch":
        return "Stopped by the watchdog: stuck launching"
    headline = FAILURE_HEADLINES.get(kind, kind)
    return f"Stopped by the watchdog: {headline[0].lower()}{headline[1:]}" if phase == "watchdog" else headline


def _interruption(rec: JobRecord) -> str:
    """What an interrupted job resumes from."""
    att = rec.current_attempt
    why = ENDED.get(att.ended_reason or "", "interrupted") if att else "interrupted"
    at = f" at {rec.spec.unit} {att.progress_at_end}" if att and att.progress_at_end is not None else ""
    cp = rec.checkpoint
    if cp is None:
        resume = "No checkpoint was saved: the next attempt starts from scratch."
    elif cp.current is not None:
        resume = f"The next attempt resumes after {rec.spec.unit} {cp.current} from the last checkpoint."
    else:
        resume = "The next attempt resumes from the last checkpoint."
    return f":warning: Attempt {rec.attempt} ended ({why}{at}). {resume}"


def _ending(rec: JobRecord) -> str:
    """The card's line about how a failed or cancelled job ended."""
    f = rec.failure
    if rec.status is JobStatus.CANCELLED:
        by = cancelled_by(rec)
        return (
            ":no_entry_sign: Cancelled"
            + (f" by {mention(by)}" if by else "")
            + (f" at {_reached(rec)}" if _reached(rec) else "")
        )
    assert f is not None
    return f":x: {failure_headline(f.phase, f.kind)} (in *{escape(f.phase)}*): {safe(f.message)[:500]}"


# -- the job card ------------------------------------------------------------------------------------


def job_card(rec: JobRecord, *, now: float, weights_url: str | None = None) -> Message:
    """The card posted when the job is queued and updated in place as it runs."""
    emoji, _ = STATUS[rec.status]
    label = status_label(rec, now)
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": title(rec)[:150], "emoji": True}},
        _fields(("Status", f"{emoji} {label}"), ("Phase", rec.phase or "–")),
    ]
    p = rec.progress
    if p is not None:
        detail = [progress_line(rec)]
        if p.loss is not None:
            detail.append(f"loss {p.loss:.4g}")
        if p.eta_seconds is not None and not rec.status.is_terminal() and rec.status is not JobStatus.INTERRUPTED:
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
    if rec.status is JobStatus.INTERRUPTED:
        blocks.append(_section(_interruption(rec)))
    if rec.status is JobStatus.CANCELLED or (rec.failure is not None and rec.status is JobStatus.FAILED):
        blocks.append(_section(_ending(rec)))
    buttons: list[Block] = []
    if weights_url and rec.status is JobStatus.SUCCEEDED:
        buttons.append(_download(weights_url))
    elif weights_url and rec.status is JobStatus.CANCELLED:
        buttons.append(_download(weights_url, "Download weights so far"))
    elif not rec.status.is_terminal():
        buttons.append(cancel_button(rec))
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    blocks.append(
        _context(
            _instance_line(rec),
            cost_line(rec, now),
            f"elapsed {duration(elapsed(rec, now))}",
            f"requested by {mention(rec.spec.requested_by)}",
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


def note_reply(rec: JobRecord, note: str, *, notify_requester: bool) -> Message:
    """Something the control plane did to the job (a relaunch, the watchdog's action), said in its thread."""
    who = f"{mention(rec.spec.requested_by)} " if notify_requester else ""
    text = f"{who}{safe_note(note)}"
    return _message(text[:SECTION_LIMIT], [_section(f":information_source: {text}")])


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


def _so_far(rec: JobRecord) -> str:
    """How far a job got before it ended: `Reached epoch 7/20, best mAP50 0.610.`, or ""."""
    parts = [f"reached {_reached(rec)}"] if _reached(rec) else []
    if rec.best and rec.best.map50 is not None:
        parts.append(f"best mAP50 {_score(rec.best.map50)}")
    return (", ".join(parts) + ".").capitalize() if parts else ""


def failure_reply(rec: JobRecord, *, now: float, note: str | None = None) -> Message:
    """A failed job's end: who asked, what kind of failure, the control plane's or the log's own words."""
    who = mention(rec.spec.requested_by)
    f = rec.failure
    if f is None:
        return _message(f"{who} {title(rec)} failed.", [_section(f":x: {who} *{escape(title(rec))}* failed.")])
    headline = failure_headline(f.phase, f.kind)
    message = safe(f.message)[:MESSAGE_CHARS]
    head = f":x: {who} *Failed* in `{escape(f.phase)}` ({escape(f.kind)}): *{headline}*\n{message}"
    blocks = [_section(head)]
    if f.last_lines:
        blocks.append(_section("Last lines of the log:\n" + _code_block(f.last_lines)))
    after = [FAILURE_HINTS.get(f.kind, ""), _so_far(rec), cost_line(rec, now).capitalize()]
    if note:
        after.append(safe_note(note))
    if any(after):
        blocks.append(_context(*after))
    text = f"{who} Failed in {escape(f.phase)} ({escape(f.kind)}): {headline}. {safe(f.message)[:500]}"
    return _message(text, blocks)


def cancelled_reply(
    rec: JobRecord, *, now: float, weights: tuple[Artifact, str] | None, note: str | None = None
) -> Message:
    """A cancelled job's end: by whom (the requester is told when it was someone else), and the weights so far."""
    by = cancelled_by(rec)
    requester = rec.spec.requested_by
    who = f"{mention(requester)}, " if by != requester else ""
    by_whom = f" by {mention(by)}" if by else ""
    at = f" at {_reached(rec)}" if _reached(rec) else ""
    head = f"{who}`{rec.job_id}` ({escape(title(rec))}) was cancelled{by_whom}{at}."
    if weights is not None:
        art, _ = weights
        kept = f"Weights written so far: `{escape(art.name)}`, {art.size / 1e6:.1f} MB, sha256 `{art.sha256[:12]}…`."
    else:
        kept = "No weights had been written yet."
    blocks = [_section(f":no_entry_sign: {head} {kept}")]
    if weights is not None:
        blocks.append(_download_button(weights[1], "Download weights so far"))
    after = [_so_far(rec), cost_line(rec, now).capitalize(), safe_note(note) if note else ""]
    if any(after):
        blocks.append(_context(*after))
    link = f" {weights[1]}" if weights else ""
    return _message(f"{head} {kept}{link}", blocks)


def result_reply(rec: JobRecord, *, now: float, weights_url: str | None) -> Message:
    latest, best = rec.metrics, rec.best
    parts = [f"mAP50 {_score(latest.map50 if latest else None)} final, {_score(best.map50 if best else None)} best"]
    if best and best.map50_95 is not None:
        parts.append(f"mAP50-95 {_score(best.map50_95)} at the best mAP50")
    parts.append(f"took {duration(elapsed(rec, now))}")
    if rec.attempt > 1:
        parts.append(f"{rec.attempt} attempts")
    jc = cost.job_cost(rec, now)
    if priced(jc):
        saving = (
            f" ({_dollars(jc.saving_usd)} less than on-demand{_percent(jc.saving_fraction)})" if jc.saving_usd else ""
        )
        parts.append(f"about {_dollars(jc.usd)} of instance time{saving}")
    summary = " · ".join(parts)
    who = mention(rec.spec.requested_by)
    blocks = [_section(f":white_check_mark: {who} *Done*: {summary}")]
    if weights_url:
        blocks.append(_download_button(weights_url))
    link = f" Weights: {weights_url}" if weights_url else ""
    return _message(f"{who} Done: {summary}.{link}", blocks)


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
    details += [f"{p.gpus} GPUs" if p.gpus > 1 else "", SPOT_MODES[p.spot], f"up to {p.max_hours:g} h"]
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


# -- cancel ------------------------------------------------------------------------------------------


def cancelling_message(rec: JobRecord) -> Message:
    """The answer to the person who cancelled: what happens now (the control plane does it, not the bot)."""
    att = rec.current_attempt
    on_a_box = att is not None and att.instance_id is not None and rec.status is not JobStatus.INTERRUPTED
    if on_a_box:
        text = (
            f"Cancelling `{rec.job_id}`: the agent uploads the weights written so far, then the instance is terminated."
        )
    else:
        text = f"Cancelling `{rec.job_id}`: no instance is running it, so it ends now."
    return _message(text, [_section(f":no_entry_sign: {text}")])


def cancel_refused_message(rec: JobRecord, refused: CancelRefused, admins: Collection[str], now: float) -> Message:
    if refused.reason == "ended":
        text = f"Job `{rec.job_id}` already ended ({STATUS[rec.status][1]}). `/train status {rec.job_id}` shows it."
        if rec.status in (JobStatus.SUCCEEDED, JobStatus.CANCELLED) and rec.artifacts:
            text += f" `/train weights {rec.job_id}` gives its weights."
    elif refused.reason == "not_allowed":
        who = mention(rec.spec.requested_by)
        admin_list = ", ".join(mention(a) for a in sorted(admins))
        may = f"{who}, who started it, or an admin ({admin_list})" if admins else f"{who}, who started it,"
        text = f"Only {may} can cancel `{rec.job_id}`."
    else:
        assert rec.cancel is not None
        ago = duration(now - rec.cancel.at)
        text = (
            f"`{rec.job_id}` is already being cancelled ({mention(rec.cancel.by)} asked {ago} ago): the agent "
            "uploads the weights written so far, then the instance is terminated."
        )
    return error_message(text)


# -- caps --------------------------------------------------------------------------------------------


def cap_message(job_id: str, cap: CapReached, active_here: list[str]) -> Message:
    """A new job over a cap: which cap, the numbers, what would work. `active_here`: this channel's active jobs."""
    if cap.cap == "instances":
        shown = ", ".join(f"`{j}`" for j in active_here[:ACTIVE_SHOWN])
        here = f" (in this channel: {shown})" if shown else ""
        text = (
            f"`{job_id}` was not started: {cap.current:.0f} jobs are active{here} and the cap is "
            f"{cap.limit:.0f} at a time (template parameter `{cap.parameter}`). Wait for one to end, or cancel one "
            f"with `/train cancel <job>`, then run the command again; or raise `{cap.parameter}`."
        )
    else:
        text = (
            f"`{job_id}` was not started: {_dollars(cap.current)} was spent today (since 00:00 UTC) and the daily "
            f"cap is {_dollars(cap.limit)} (template parameter `{cap.parameter}`). Run the command again after "
            f"midnight UTC, or raise `{cap.parameter}`."
        )
    text += " Nothing was queued."
    return _message(text, [_section(f":no_entry: {text}")])


# -- cost --------------------------------------------------------------------------------------------


def _gpus(instance_type: str | None) -> int:
    gpu = catalog.GPU_TYPES.get(instance_type or "")
    return gpu.gpus if gpu else 1


def gpu_hours(jc: JobCost) -> float:
    return sum(a.hours * _gpus(a.instance_type) for a in jc.attempts)


def _attempt_line(rec: JobRecord, a: cost.AttemptCost) -> str:
    att = next((x for x in rec.attempts if x.number == a.number), None)
    if a.instance_type is None or att is None or att.instance_id is None:
        why = ENDED.get(att.ended_reason or "", "") if att else ""
        return f"*{a.number}.* no instance" + (f" ({why})" if why else "")
    where = " ".join(p for p in (a.market or "", f"in {a.availability_zone}" if a.availability_zone else "") if p)
    price = f"${a.price_usd_hour:.3f}/h" if a.price_usd_hour is not None else "price unknown"
    if a.running:
        end = "running"
    else:
        end = ENDED.get(att.ended_reason or "", att.ended_reason or "ended")
        if att.progress_at_end is not None:
            end += f" at {rec.spec.unit} {att.progress_at_end}"
    return (
        f"*{a.number}.* `{a.instance_type}` {where} · {price} · {duration(a.hours * 3600)} · {_dollars(a.usd)} · {end}"
    )


def _saving(jc_usd: float, on_demand_usd: float) -> str:
    if on_demand_usd <= 0:
        return "no on-demand price to compare with"
    saved = max(0.0, on_demand_usd - jc_usd)
    return f"on-demand {_dollars(on_demand_usd)}, saved {_dollars(saved)}{_percent(saved / on_demand_usd)}"


PRICES_NOTE = (
    f"Spot prices are EC2's at launch; on-demand prices are the catalog's list prices as of {catalog.PRICES_AS_OF}."
)


def job_cost_message(rec: JobRecord, now: float) -> Message:
    """`/train cost <job>`: each attempt, the total, and what the same hours would have cost on demand."""
    jc = cost.job_cost(rec, now)
    lines = [_attempt_line(rec, a) for a in jc.attempts] or ["No attempt yet: nothing spent."]
    so_far = " so far" if any(a.running for a in jc.attempts) else ""
    total = (
        f"*Total{so_far}*: {_dollars(jc.usd)} for {duration(jc.hours * 3600)} of instance time; "
        f"{_saving(jc.usd, jc.on_demand_usd)}."
    )
    head = f"*Cost of `{rec.job_id}`* ({escape(title(rec))}, {STATUS[rec.status][1].lower()})"
    blocks = [_section(head + "\n" + "\n".join(lines)), _section(total), _context(PRICES_NOTE)]
    text = f"Cost of {rec.job_id}: {_dollars(jc.usd)}{so_far}; {_saving(jc.usd, jc.on_demand_usd)}."
    return _message(text, blocks)


def channel_cost_message(records: list[JobRecord], now: float, days: int) -> Message:
    """`/train cost`: this channel's jobs of the last `days` days, the total, the saving, and the costliest jobs."""
    if not records:
        text = f"No jobs in this channel in the last {days} days: nothing spent."
        return _message(text, [_section(text)])
    costs = [(rec, cost.job_cost(rec, now)) for rec in records]
    usd = sum(jc.usd for _, jc in costs)
    on_demand = sum(jc.on_demand_usd for _, jc in costs)
    hours = sum(gpu_hours(jc) for _, jc in costs)
    summary = (
        f"{len(records)} job{'s' if len(records) != 1 else ''}, {_dollars(usd)} for {hours:.1f} GPU hours; "
        f"{_saving(usd, on_demand)}."
    )
    top = sorted((c for c in costs if c[1].usd > 0), key=lambda c: c[1].usd, reverse=True)[:TOP_JOBS]
    lines = [
        f"`{rec.job_id}` {escape(title(rec))} · {STATUS[rec.status][1].lower()} · {_dollars(jc.usd)} · "
        f"{len(rec.attempts)} attempt{'s' if len(rec.attempts) != 1 else ''}"
        for rec, jc in top
    ]
    blocks = [_section(f"*This channel, last {days} days*: {summary}")]
    if lines:
        blocks.append(_section("*Costliest jobs*\n" + "\n".join(lines)))
    blocks.append(_context(PRICES_NOTE))
    return _message(f"This channel, last {days} days: {summary}", blocks)
