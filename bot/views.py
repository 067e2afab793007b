"""Block Kit for the job card and the command answers, and the small builders bot.replies shares. Pure: data in,
message out.

Every message carries a plain `text` fallback (notifications, screen readers). Text that comes from a job
(failure messages, log lines) is escaped, so a log line can never mention @channel or forge a link.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, TypedDict, get_args

from bot.commands import USAGE, TrainCommand, example
from bot.rules import CancelRefused, CapReached
from spotter import catalog, cost
from spotter.board import JobRow
from spotter.cost import JobCost
from spotter.events import Artifact
from spotter.spec import TrainParams
from spotter.status import JobStatus
from spotter.store import JobRecord

Block = dict[str, Any]

SECTION_LIMIT = 3000  # Slack's limit for a section's text
FIELD_LIMIT = 2000  # and for one of a section's fields
BAR_WIDTH = 20
SPARK_WIDTH = 16  # the card's loss and mAP50 trends, in characters
SPARK_MIN_POINTS = 3
SPARKS = "▁▂▃▄▅▆▇█"
DOWNLOAD_ACTION = "download_weights"
CANCEL_ACTION = "cancel_job"
LOGS_ACTION = "show_logs"  # the card's Logs button; its value is the job id
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
    "image": "The GPU image lacks what the recipe needs",
    "launch": "The instance could not be launched",
    "timeout": "Past the job's max_hours",
    "capacity": "No GPU capacity",
    "quota": "Over the account's EC2 quota",
    "budget": "Over a Spotter cap",
    "vanished": "The instance vanished with no checkpoint to resume from",
    "heartbeat": "The agent went silent",
    "attempts": "Too many attempts",
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
# What each downloadable artifact is, beside its file name.
ARTIFACT_ROLES = {
    "best": "best weights",
    "final": "final weights",
    "last": "last weights",
    "cfg": "network cfg",
    "data": "darknet .data",
    "names": "class names",
    "config": "model config",
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


def human_size(n: int) -> str:
    """Bytes in decimal units: `812 B`, `6.2 MB`, `245 MB`, `1.3 GB`."""
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 999.5 or unit == "TB":
            break
    return f"{value:.1f} {unit}" if value < 99.95 else f"{value:.0f} {unit}"


def slack_date(at: float) -> str:
    """A time Slack shows in each reader's own time zone (UTC in notifications and old clients)."""
    fallback = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at)}^{{date_short_pretty}} {{time}}|{fallback}>"


def _number(value: object) -> str:
    """1, 2000000, 0.5, true: as a person would type them."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"{value:.0f}" if float(value).is_integer() else f"{value:g}"
    return str(value)


def score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _bar(fraction: float) -> str:
    filled = round(fraction * BAR_WIDTH)
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """The values' shape in block characters, at most `width` (each the mean of its share of the values)."""
    if len(values) < SPARK_MIN_POINTS:
        return ""
    n = min(width, len(values))
    bins = [values[i * len(values) // n : (i + 1) * len(values) // n] for i in range(n)]
    means = [sum(b) / len(b) for b in bins]
    low, high = min(means), max(means)
    if high - low <= 1e-12:
        return SPARKS[0] * n
    return "".join(SPARKS[round((m - low) / (high - low) * (len(SPARKS) - 1))] for m in means)


def mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": text}


def plain(text: str) -> Block:
    return {"type": "plain_text", "text": text}


def section(text: str) -> Block:
    return {"type": "section", "text": mrkdwn(text[:SECTION_LIMIT])}


def fields(*pairs: tuple[str, str], text: str | None = None) -> Block:
    """A section of labelled values side by side (up to ten), under an optional line of text."""
    block: Block = {"type": "section", "fields": [mrkdwn(f"*{k}*\n{v}"[:FIELD_LIMIT]) for k, v in pairs[:10]]}
    if text:
        block["text"] = mrkdwn(text[:SECTION_LIMIT])
    return block


def context(*parts: str) -> Block:
    return {"type": "context", "elements": [mrkdwn(p) for p in parts if p]}


def actions(*elements: Block) -> Block:
    return {"type": "actions", "elements": list(elements)}


def download_button(url: str, label: str = "Download weights", *, primary: bool = True) -> Block:
    button: Block = {"type": "button", "action_id": DOWNLOAD_ACTION, "text": plain(label), "url": url}
    if primary:
        button["style"] = "primary"
    return button


def file_rows(links: Sequence[tuple[Artifact, str]], first_label: str = "Download") -> list[Block]:
    """One row per file: its name, what it is, size and sha256, with its own download button (the first one
    primary). Each row is its own block, so every button keeps the one DOWNLOAD_ACTION id."""
    rows: list[Block] = []
    for i, (art, url) in enumerate(links):
        name = PurePosixPath(art.key).name
        role = ARTIFACT_ROLES.get(art.name, art.name)
        label = first_label if i == 0 else "Download"
        rows.append(
            {
                "type": "section",
                "text": mrkdwn(f"`{escape(name)}` · {escape(role)} · {human_size(art.size)}\nsha256 `{art.sha256}`"),
                "accessory": download_button(url, label, primary=i == 0),
            }
        )
    return rows


def cancel_button(rec: JobRecord) -> Block:
    """The card's Cancel button: Slack asks the person to confirm before the click reaches Spotter."""
    return {
        "type": "button",
        "action_id": CANCEL_ACTION,
        "text": plain("Cancel"),
        "value": rec.job_id,
        "style": "danger",
        "confirm": {
            "title": plain("Cancel this job?"),
            "text": mrkdwn(
                f"`{rec.job_id}` ({escape(title(rec))}) stops: the weights written so far are uploaded, "
                "then the instance is terminated."
            ),
            "confirm": plain("Cancel the job"),
            "deny": plain("Keep it going"),
            "style": "danger",
        },
    }


def logs_button(rec: JobRecord) -> Block:
    """The card's Logs button: the app answers the person who clicked with the newest log's tail and links."""
    return {"type": "button", "action_id": LOGS_ACTION, "text": plain("Logs"), "value": rec.job_id}


def compose(text: str, blocks: list[Block]) -> Message:
    """A message: its blocks and the plain text fallback that notifications and screen readers show."""
    return {"text": text, "blocks": blocks}


def dollars(amount: float) -> str:
    """Cents for real money, a tenth of a cent for the minutes a small job costs."""
    return f"${amount:,.2f}" if amount >= 0.1 else f"${amount:.3f}"


def percent(fraction: float | None) -> str:
    return f" ({round(100 * fraction)}%)" if fraction else ""


# -- facts about a job -------------------------------------------------------------------------------


def title(rec: JobRecord) -> str:
    return f"{rec.spec.dataset} · {rec.spec.model}"


def elapsed(rec: JobRecord | JobRow, now: float) -> float:
    """Seconds since the request (until the end, for a finished job)."""
    start = datetime.fromisoformat(rec.created_at).timestamp()
    return (rec.finished_at or now) - start


def status_label(rec: JobRecord, now: float) -> str:
    """The status as the card says it: an interrupted job says whether its next attempt waits for a backoff."""
    label = STATUS[rec.status][1]
    if rec.status is JobStatus.INTERRUPTED and rec.relaunch_at is not None and rec.relaunch_at > now:
        return f"Interrupted — next attempt in {duration(rec.relaunch_at - now)}"
    return label


def started(rec: JobRecord) -> bool:
    """An instance has run the job (so it may have logs)."""
    return any(a.instance_id is not None for a in rec.attempts)


def priced(jc: JobCost) -> bool:
    """Some instance time with a known price went into the job (a job that never got an instance cost nothing)."""
    return any(a.hours > 0 and a.price_usd_hour is not None for a in jc.attempts)


def cost_line(rec: JobRecord, now: float) -> str:
    """`$0.42 so far` while the job runs; at its end the total and the saving against on-demand; "" if unpriced."""
    jc = cost.job_cost(rec, now)
    if not priced(jc):
        return ""
    if not rec.status.is_terminal():
        return f"{dollars(jc.usd)} so far"
    saving = f", {dollars(jc.saving_usd)} less than on-demand{percent(jc.saving_fraction)}" if jc.saving_usd else ""
    return f"cost {dollars(jc.usd)}{saving}"


def reached(rec: JobRecord) -> str:
    """`epoch 7/20`: how far the job got, or ""."""
    p = rec.progress
    return _reached(p.unit, p.current, p.total or rec.spec.length) if p else ""


def progress_line(rec: JobRecord) -> str:
    """`epoch 7/20 · 35%`, or "" before the first progress report."""
    p = rec.progress
    return _progress(p.unit, p.current, p.total or rec.spec.length) if p else ""


def _reached(unit: str, current: int, total: int | None) -> str:
    return f"{unit} {current}/{total}" if total else f"{unit} {current}"


def _progress(unit: str, current: int, total: int | None) -> str:
    done = _reached(unit, current, total)
    return f"{done} · {round(100 * min(1.0, current / total))}%" if total else done


def instance_line(rec: JobRecord, *, first_attempt: bool = False) -> str:
    """`g4dn.xlarge · spot · us-east-1a · $0.158/h · attempt 2`; the attempt of a first one only if asked."""
    a = rec.current_attempt
    if a is None or a.instance_type is None:
        return f"attempt {rec.attempt}" if rec.attempt > 1 else ""
    parts = [a.instance_type, a.market or "", a.availability_zone or ""]
    if a.price_usd_hour is not None:
        parts.append(f"${a.price_usd_hour:.3f}/h")
    if rec.attempt > 1 or first_attempt:
        parts.append(f"attempt {rec.attempt}")
    return " · ".join(p for p in parts if p)


def _metric_pair(latest: float | None, best: float | None) -> str:
    """The latest score, and the best epoch's when that one is higher (the best epoch is chosen by mAP50)."""
    if best is None or (latest is not None and best <= latest):
        return score(latest)
    return f"{score(latest)} (best {score(best)})"


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
            + (f" at {reached(rec)}" if reached(rec) else "")
        )
    assert f is not None
    return f":x: {failure_headline(f.phase, f.kind)} (in *{escape(f.phase)}*): {safe(f.message)[:500]}"


# -- the job card ------------------------------------------------------------------------------------


def _progress_section(rec: JobRecord) -> Block | None:
    """The bar, `epoch 7/20 · 35%`, the loss with its trend, and the ETA while the job is running."""
    p = rec.progress
    if p is None:
        return None
    detail = [progress_line(rec)]
    if p.loss is not None:
        trend = sparkline([loss for _, loss in rec.loss_history])
        detail.append(f"loss {p.loss:.4g}" + (f" `{trend}`" if trend else ""))
    if p.eta_seconds is not None and not rec.status.is_terminal() and rec.status is not JobStatus.INTERRUPTED:
        detail.append(f"ETA {duration(p.eta_seconds)}")
    bar = f"`{_bar(p.fraction or 0.0)}`\n" if p.fraction is not None else ""
    return section(bar + " · ".join(detail))


def _scores_section(rec: JobRecord) -> Block | None:
    """mAP50 latest and best (with the best's epoch and the trend), and mAP50-95 where the framework gives it."""
    latest, best = rec.metrics, rec.best
    if latest is None and best is None:
        return None
    map50 = _metric_pair(latest.map50 if latest else None, best.map50 if best else None)
    if best is not None and best.map50 is not None and best.current is not None:
        map50 += f"\nbest at {rec.spec.unit} {best.current}"
    trend = sparkline([m.map50 for m in rec.metric_history if m.map50 is not None])
    if trend:
        map50 += f" `{trend}`"
    pairs = [("mAP50", map50)]
    latest95, best95 = (latest.map50_95 if latest else None), (best.map50_95 if best else None)
    if latest95 is not None or best95 is not None:
        pairs.append(("mAP50-95", _metric_pair(latest95, best95)))
    return fields(*pairs)


def card_buttons(rec: JobRecord, weights_url: str | None) -> list[Block]:
    """Download (once there are weights), Logs (once an instance ran the job), Cancel (until it ends)."""
    buttons: list[Block] = []
    if weights_url and rec.status is JobStatus.SUCCEEDED:
        buttons.append(download_button(weights_url))
    elif weights_url and rec.status is JobStatus.CANCELLED:
        buttons.append(download_button(weights_url, "Download weights so far"))
    if started(rec):
        buttons.append(logs_button(rec))
    if not rec.status.is_terminal():
        buttons.append(cancel_button(rec))
    return buttons


def _card_text(rec: JobRecord, label: str) -> str:
    """The card's fallback: `persons · yolov4: Running (train), iteration 700/6000 · 12%, loss 1.84, mAP50 0.41.`"""
    text = f"{title(rec)}: {label}"
    if rec.phase and not rec.status.is_terminal():
        text += f" ({rec.phase})"
    if progress_line(rec):
        text += f", {progress_line(rec)}"
    if rec.progress and rec.progress.loss is not None and not rec.status.is_terminal():
        text += f", loss {rec.progress.loss:.4g}"
    best = rec.best.map50 if rec.best else None
    if best is not None:
        text += f", best mAP50 {score(best)}"
    return f"{text}. Job {rec.job_id}."


def job_card(rec: JobRecord, *, now: float, weights_url: str | None = None) -> Message:
    """The card posted when the job is queued and updated in place as it runs."""
    emoji, _ = STATUS[rec.status]
    label = status_label(rec, now)
    phase = f"{PHASE_EMOJI.get(rec.phase, '')} {rec.phase}".strip() if rec.phase else "–"
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": title(rec)[:150], "emoji": True}},
        fields(("Status", f"{emoji} {label}"), ("Phase", phase)),
    ]
    for block in (_progress_section(rec), _scores_section(rec)):
        if block is not None:
            blocks.append(block)
    if rec.status is JobStatus.INTERRUPTED:
        blocks.append(section(_interruption(rec)))
    if rec.status is JobStatus.CANCELLED or (rec.failure is not None and rec.status is JobStatus.FAILED):
        blocks.append(section(_ending(rec)))
    buttons = card_buttons(rec, weights_url)
    if buttons:
        blocks.append(actions(*buttons))
    blocks.append(
        context(
            instance_line(rec, first_attempt=True),
            cost_line(rec, now),
            f"elapsed {duration(elapsed(rec, now))}",
            f"requested by {mention(rec.spec.requested_by)}",
            f"job `{rec.job_id}`",
        )
    )
    return compose(_card_text(rec, label), blocks)


# -- command answers ---------------------------------------------------------------------------------


def error_message(text: str) -> Message:
    return compose(text, [section(f":warning: {text}")])


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
    return compose(text, [section(f":inbox_tray: {text}")])


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
    return [section(f"*{recipe}*\n" + "\n".join(_model_lines(ms))) for recipe, ms in _models_by_framework().items()]


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
        section("*Commands*\n" + "\n".join(commands)),
        section("*Datasets*\n" + "\n".join(_dataset_lines())),
        section(OWN_DATASET),
        section("*Models*, by framework"),
        *_model_sections(),
        section("*Options* (`key=value` after the model)\n" + "\n".join(_option_lines())),
        context(f"Example: `{example()}`"),
    ]
    return compose(f"Spotter commands: {', '.join(u for u, _ in USAGE.values())}. Example: {example()}", blocks)


def datasets_message() -> Message:
    blocks = [section("*Datasets*\n" + "\n".join(_dataset_lines())), section(OWN_DATASET)]
    return compose(f"Datasets: {', '.join(catalog.DATASETS)}, or your own s3://bucket/prefix/", blocks)


def models_message() -> Message:
    groups = _models_by_framework()
    text = "; ".join(f"{recipe}: {', '.join(m.name for m in ms)}" for recipe, ms in groups.items())
    return compose(f"Models by framework: {text}", [section("*Models*, by framework"), *_model_sections()])


def job_line(row: JobRow, now: float) -> str:
    emoji, label = STATUS[row.status]
    parts = [f"{emoji} `{row.job_id}` *{row.dataset} · {row.model}* {label}"]
    if row.current is not None and not row.status.is_terminal():
        parts.append(_progress(row.unit, row.current, row.total or row.length))
    if row.best_map50 is not None:
        parts.append(f"best mAP50 {score(row.best_map50)}")
    parts += [f"<@{row.requested_by}>", duration(elapsed(row, now))]
    return " · ".join(parts)


def job_list(rows: list[JobRow], now: float) -> Message:
    """The channel's recent jobs, as its board shows them."""
    if not rows:
        text = f"No jobs in this channel yet. Start one: `{example()}`."
        return compose(text, [section(text)])
    lines = [job_line(r, now) for r in rows]
    summary = ", ".join(f"{r.job_id} ({STATUS[r.status][1].lower()})" for r in rows)
    return compose(
        f"Recent jobs in this channel: {summary}",
        [section("*Recent jobs in this channel*\n" + "\n".join(lines))],
    )


def weights_message(rec: JobRecord, links: Sequence[tuple[Artifact, str]], *, expires_in: int, now: float) -> Message:
    """The job's downloads, weights first: each file's name, what it is, size and sha256, its button, and when the
    links stop working (`/train weights` makes new ones)."""
    if not links:
        raise ValueError("weights_message needs at least one link")
    weights, url = links[0]
    best = f", best mAP50 {score(rec.best.map50)}" if rec.best and rec.best.map50 is not None else ""
    head = f"Weights of `{rec.job_id}` ({escape(title(rec))}{best})"
    until = f"The links work for {duration(expires_in)}, until {slack_date(now + expires_in)}."
    with_them = f" With {', '.join(a.name for a, _ in links[1:])}." if len(links) > 1 else ""
    text = (
        f"Weights of `{rec.job_id}` ({title(rec)}{best}): {weights.name}, {human_size(weights.size)}, "
        f"sha256 `{weights.sha256[:12]}…`.{with_them} The link works for {duration(expires_in)}. {url}"
    )
    blocks = [section(f":package: *{head}*"), *file_rows(links), context(until)]
    return compose(text, blocks)


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
    return compose(text, [section(f":no_entry_sign: {text}")])


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
            f"`{job_id}` was not started: {dollars(cap.current)} was spent today (since 00:00 UTC) and the daily "
            f"cap is {dollars(cap.limit)} (template parameter `{cap.parameter}`). Run the command again after "
            f"midnight UTC, or raise `{cap.parameter}`."
        )
    text += " Nothing was queued."
    return compose(text, [section(f":no_entry: {text}")])


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
        f"*{a.number}.* `{a.instance_type}` {where} · {price} · {duration(a.hours * 3600)} · {dollars(a.usd)} · {end}"
    )


def _saving(jc_usd: float, on_demand_usd: float) -> str:
    if on_demand_usd <= 0:
        return "no on-demand price to compare with"
    saved = max(0.0, on_demand_usd - jc_usd)
    return f"on-demand {dollars(on_demand_usd)}, saved {dollars(saved)}{percent(saved / on_demand_usd)}"


PRICES_NOTE = (
    f"Spot prices are EC2's at launch; on-demand prices are the catalog's list prices as of {catalog.PRICES_AS_OF}."
)


def job_cost_message(rec: JobRecord, now: float) -> Message:
    """`/train cost <job>`: each attempt, the total, and what the same hours would have cost on demand."""
    jc = cost.job_cost(rec, now)
    lines = [_attempt_line(rec, a) for a in jc.attempts] or ["No attempt yet: nothing spent."]
    so_far = " so far" if any(a.running for a in jc.attempts) else ""
    total = (
        f"*Total{so_far}*: {dollars(jc.usd)} for {duration(jc.hours * 3600)} of instance time; "
        f"{_saving(jc.usd, jc.on_demand_usd)}."
    )
    head = f"*Cost of `{rec.job_id}`* ({escape(title(rec))}, {STATUS[rec.status][1].lower()})"
    blocks = [section(head + "\n" + "\n".join(lines)), section(total), context(PRICES_NOTE)]
    text = f"Cost of {rec.job_id}: {dollars(jc.usd)}{so_far}; {_saving(jc.usd, jc.on_demand_usd)}."
    return compose(text, blocks)


def channel_cost_message(records: list[JobRecord], now: float, days: int) -> Message:
    """`/train cost`: this channel's jobs of the last `days` days, the total, the saving, and the costliest jobs."""
    if not records:
        text = f"No jobs in this channel in the last {days} days: nothing spent."
        return compose(text, [section(text)])
    costs = [(rec, cost.job_cost(rec, now)) for rec in records]
    usd = sum(jc.usd for _, jc in costs)
    on_demand = sum(jc.on_demand_usd for _, jc in costs)
    hours = sum(gpu_hours(jc) for _, jc in costs)
    summary = (
        f"{len(records)} job{'s' if len(records) != 1 else ''}, {dollars(usd)} for {hours:.1f} GPU hours; "
        f"{_saving(usd, on_demand)}."
    )
    top = sorted((c for c in costs if c[1].usd > 0), key=lambda c: c[1].usd, reverse=True)[:TOP_JOBS]
    lines = [
        f"`{rec.job_id}` {escape(title(rec))} · {STATUS[rec.status][1].lower()} · {dollars(jc.usd)} · "
        f"{len(rec.attempts)} attempt{'s' if len(rec.attempts) != 1 else ''}"
        for rec, jc in top
    ]
    blocks = [section(f"*This channel, last {days} days*: {summary}")]
    if lines:
        blocks.append(section("*Costliest jobs*\n" + "\n".join(lines)))
    blocks.append(context(PRICES_NOTE))
    return compose(f"This channel, last {days} days: {summary}", blocks)
