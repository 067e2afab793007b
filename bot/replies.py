"""The replies in a job's thread: the control plane's notes, phases, new bests, and the job's end (the result with
its scores and downloads, a failure with its log, a cancel). Pure: data in, message out.

The requester is mentioned where the news is theirs to act on: the job's end (except a cancel they made
themselves) and an interruption's relaunch note.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.views import (
    PHASE_EMOJI,
    SECTION_LIMIT,
    Block,
    Message,
    actions,
    cancelled_by,
    compose,
    context,
    cost_line,
    dollars,
    download_button,
    duration,
    elapsed,
    escape,
    failure_headline,
    fields,
    file_rows,
    human_size,
    instance_line,
    mention,
    percent,
    priced,
    reached,
    safe,
    safe_note,
    score,
    section,
    title,
)
from spotter import cost, layout
from spotter.events import Artifact, FinalMetrics
from spotter.store import JobRecord, Metrics

LOG_CHARS = 2400  # room left for the failure headline in the same section
MESSAGE_CHARS = 2000  # a control plane message (the launcher's list of types × zones) shown whole up to this
# More classes than twice this show the best and the worst this many, and how many lie between.
PER_CLASS_SHOWN = 5
CLASS_NAME_CHARS = 24
AP_BAR_WIDTH = 10
# What a person can change for the next try, where the failure's own message does not say it.
FAILURE_HINTS = {
    "oom": "Try a smaller `batch=` or `img=`, or a GPU with more memory (`instance=`).",
    "nan_loss": "Try a smaller `batch=`, or start `from=pretrained`.",
}


def note_reply(rec: JobRecord, note: str, *, notify_requester: bool) -> Message:
    """Something the control plane did to the job (a relaunch, the watchdog's action), said in its thread."""
    who = f"{mention(rec.spec.requested_by)} " if notify_requester else ""
    text = f"{who}{safe_note(note)}"
    return compose(text[:SECTION_LIMIT], [section(f":information_source: {text}")])


def phase_reply(rec: JobRecord, phase: str, *, cached: bool) -> Message:
    what = "restored from cache" if cached else "started"
    where = f" on {instance_line(rec)}" if phase == "install" and instance_line(rec) else ""
    text = f"{PHASE_EMOJI.get(phase, ':arrow_forward:')} *{phase}* {what}{where}"
    return compose(f"{phase} {what}{where}", [section(text)])


def best_reply(rec: JobRecord) -> Message:
    b = rec.best
    assert b is not None and b.map50 is not None, "a new best always has mAP50"
    at = ""
    if b.current is not None:
        total = rec.spec.length or (rec.progress.total if rec.progress else None)
        at = f" at {rec.spec.unit} {b.current}" + (f"/{total}" if total else "")
    extra = f" (mAP50-95 {score(b.map50_95)})" if b.map50_95 is not None else ""
    return compose(
        f"New best mAP50 {score(b.map50)}{extra}{at}",
        [section(f":chart_with_upwards_trend: New best mAP50 *{score(b.map50)}*{extra}{at}")],
    )


def code_block(lines: list[str], limit: int = LOG_CHARS) -> str:
    """The last lines that fit `limit` characters, escaped, with no fence of their own to break ours."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        line = escape(line.replace("```", "'''"))
        if size + len(line) + 1 > limit:
            break
        kept.insert(0, line)
        size += len(line) + 1
    return "```\n" + "\n".join(kept) + "\n```" if kept else ""


def _so_far(rec: JobRecord) -> str:
    """How far a job got before it ended: `Reached epoch 7/20, best mAP50 0.610.`, or ""."""
    parts = [f"reached {reached(rec)}"] if reached(rec) else []
    if rec.best and rec.best.map50 is not None:
        parts.append(f"best mAP50 {score(rec.best.map50)}")
    return (", ".join(parts) + ".").capitalize() if parts else ""


def failure_reply(rec: JobRecord, *, now: float, note: str | None = None) -> Message:
    """A failed job's end: who asked, what kind of failure, the control plane's or the log's own words."""
    who = mention(rec.spec.requested_by)
    f = rec.failure
    if f is None:
        return compose(f"{who} {title(rec)} failed.", [section(f":x: {who} *{escape(title(rec))}* failed.")])
    headline = failure_headline(f.phase, f.kind)
    message = safe(f.message)[:MESSAGE_CHARS]
    head = f":x: {who} *Failed* in `{escape(f.phase)}` ({escape(f.kind)}): *{headline}*\n{message}"
    blocks = [section(head)]
    if f.last_lines:
        blocks.append(section("Last lines of the log:\n" + code_block(f.last_lines)))
    after = [FAILURE_HINTS.get(f.kind, ""), _so_far(rec), cost_line(rec, now).capitalize()]
    if note:
        after.append(safe_note(note))
    if any(after):
        blocks.append(context(*after))
    text = f"{who} Failed in {escape(f.phase)} ({escape(f.kind)}): {headline}. {safe(f.message)[:500]}"
    return compose(text, blocks)


def cancelled_reply(
    rec: JobRecord, *, now: float, weights: tuple[Artifact, str] | None, note: str | None = None
) -> Message:
    """A cancelled job's end: by whom (the requester is told when it was someone else), and the weights so far."""
    by = cancelled_by(rec)
    requester = rec.spec.requested_by
    who = f"{mention(requester)}, " if by != requester else ""
    by_whom = f" by {mention(by)}" if by else ""
    at = f" at {reached(rec)}" if reached(rec) else ""
    head = f"{who}`{rec.job_id}` ({escape(title(rec))}) was cancelled{by_whom}{at}."
    if weights is not None:
        art, _ = weights
        kept = f"Weights written so far: `{escape(art.name)}`, {human_size(art.size)}, sha256 `{art.sha256[:12]}…`."
    else:
        kept = "No weights had been written yet."
    blocks = [section(f":no_entry_sign: {head} {kept}")]
    if weights is not None:
        blocks.append(actions(download_button(weights[1], "Download weights so far")))
    after = [_so_far(rec), cost_line(rec, now).capitalize(), safe_note(note) if note else ""]
    if any(after):
        blocks.append(context(*after))
    link = f" {weights[1]}" if weights else ""
    return compose(f"{head} {kept}{link}", blocks)


# -- the result -------------------------------------------------------------------------------------


def _summary(rec: JobRecord, now: float) -> str:
    """`mAP50 0.731, mAP50-95 0.512 · took 1 h 01 min · about $0.16 of instance time (…)`."""
    final, latest, best = rec.final_metrics, rec.metrics, rec.best
    if final is not None and final.map50 is not None:
        parts = [
            f"mAP50 {score(final.map50)}"
            + (f", mAP50-95 {score(final.map50_95)}" if final.map50_95 is not None else "")
        ]
    else:
        parts = [f"mAP50 {score(latest.map50 if latest else None)} final, {score(best.map50 if best else None)} best"]
        if best and best.map50_95 is not None:
            parts.append(f"mAP50-95 {score(best.map50_95)} at the best mAP50")
    parts.append(f"took {duration(elapsed(rec, now))}")
    if rec.attempt > 1:
        parts.append(f"{rec.attempt} attempts")
    jc = cost.job_cost(rec, now)
    if priced(jc):
        saving = (
            f" ({dollars(jc.saving_usd)} less than on-demand{percent(jc.saving_fraction)})" if jc.saving_usd else ""
        )
        parts.append(f"about {dollars(jc.usd)} of instance time{saving}")
    return " · ".join(parts)


def _scores_table(rec: JobRecord) -> Block | None:
    """mAP50, mAP50-95, precision and recall of the final evaluation, else of the best epoch; None without any."""
    final = rec.final_metrics
    scores: FinalMetrics | Metrics | None = final
    heading = "*Final evaluation* of the trained weights"
    if final is None or all(v is None for v in (final.map50, final.map50_95, final.precision, final.recall)):
        scores = rec.best or rec.metrics
        if scores is None:
            return None
        at = f" ({rec.spec.unit} {scores.current})" if scores.current is not None else ""
        heading = f"*Best evaluation*{at}" if scores is rec.best else f"*Last evaluation*{at}"
    assert scores is not None
    pairs = [
        ("mAP50", score(scores.map50)),
        ("mAP50-95", score(scores.map50_95)),
        ("Precision", score(scores.precision)),
        ("Recall", score(scores.recall)),
    ]
    if final is not None and rec.best is not None and rec.best.map50 is not None and rec.best.current is not None:
        pairs.append(("Best during training", f"mAP50 {score(rec.best.map50)} at {rec.spec.unit} {rec.best.current}"))
    return fields(*pairs, text=heading)


def _class_name(name: str) -> str:
    name = name.replace("`", "'").replace("\n", " ")
    return name if len(name) <= CLASS_NAME_CHARS else name[: CLASS_NAME_CHARS - 1] + "…"


def per_class_block(per_class: dict[str, float]) -> Block | None:
    """Each class's AP50 in a code block, best first; many classes show the best and the worst few."""
    if not per_class:
        return None
    ranked = sorted(per_class.items(), key=lambda kv: (-kv[1], kv[0]))
    n = len(ranked)
    if n > 2 * PER_CLASS_SHOWN:
        shown: list[tuple[str, float] | None] = [*ranked[:PER_CLASS_SHOWN], None, *ranked[-PER_CLASS_SHOWN:]]
        heading = f"*Per-class AP50*: {n} classes, the best and the worst {PER_CLASS_SHOWN}"
    else:
        shown = list(ranked)
        heading = f"*Per-class AP50* ({n} class{'es' if n != 1 else ''})"
    width = max(len(_class_name(name)) for name, _ in ranked)
    lines = []
    for row in shown:
        if row is None:
            lines.append(f"{'…':<{width}}  {n - 2 * PER_CLASS_SHOWN} more")
            continue
        name, ap = row
        bar = "█" * round(max(0.0, min(1.0, ap)) * AP_BAR_WIDTH)
        lines.append(f"{_class_name(name):<{width}}  {ap:.3f}  {bar}")
    table = escape("\n".join(lines))
    return section(f"{heading}\n```\n{table}\n```")


def _signed(delta: float) -> str:
    return "±0.000" if round(delta, 3) == 0 else f"{delta:+.3f}"


def promotion_line(rec: JobRecord) -> str | None:
    """A scheduled run against the promoted weights: `mAP50 0.712 → 0.731, +0.019 · promoted to models/…/`, or
    `… · kept the promoted weights of job <id>`; None for a run no schedule started."""
    p = rec.promotion
    if rec.spec.schedule_id is None or p is None:
        return None
    where = layout.model(rec.spec.dataset, rec.spec.model)
    new = score(p.map50)
    if p.previous_map50 is not None and p.map50 is not None:
        # The change as the two shown scores differ, so the numbers on the line add up.
        change = f"mAP50 {score(p.previous_map50)} → {new}, {_signed(round(p.map50, 3) - round(p.previous_map50, 3))}"
    elif p.previous_job is not None:
        change = f"mAP50 – → {new}"
    else:
        change = f"mAP50 {new}"
    if p.promoted:
        first = "first promoted weights, " if p.previous_job is None else ""
        return f":trophy: {change} · {first}promoted to {where}"
    why = f" ({escape(p.reason)})" if p.reason else ""
    if p.previous_job is not None:
        return f":package: {change} · kept the promoted weights of job {p.previous_job}{why}"
    return f":package: {change} · not promoted{why}"


def result_reply(
    rec: JobRecord, *, now: float, links: Sequence[tuple[Artifact, str]], expires_in: int | None = None
) -> Message:
    """A finished job: who asked, the scores (per class where the framework printed them), duration and cost,
    the promotion of a scheduled run, and the downloads (weights first)."""
    who = mention(rec.spec.requested_by)
    summary = _summary(rec, now)
    blocks: list[Block] = [section(f":white_check_mark: {who} *Done*: *{escape(title(rec))}* · {summary}")]
    for block in (_scores_table(rec), per_class_block(rec.final_metrics.per_class_ap50 if rec.final_metrics else {})):
        if block is not None:
            blocks.append(block)
    promoted = promotion_line(rec)
    if promoted:
        blocks.append(section(promoted))
    blocks += file_rows(links, first_label="Download weights")
    if links and expires_in is not None:
        blocks.append(context(f"Links work for {duration(expires_in)}: `/train weights {rec.job_id}` makes new ones."))
    text = f"{who} Done: {summary}."
    if promoted:
        text += " " + promoted.split(" ", 1)[1] + "."
    if links:
        weights, url = links[0]
        text += f" Weights ({human_size(weights.size)}): {url}"
    return compose(text, blocks)
