"""Block Kit answers to `/train logs`, `schedule`, `schedules`, `unschedule` and the promoted `weights`.

Pure: data in, message out. The job card and its thread are bot.views'; these answer one person, ephemerally
(a scheduled run's own word in the channel is the exception: nobody is waiting for an answer then).
"""

from __future__ import annotations

from datetime import datetime

from bot.logs import LogView
from bot.replies import code_block
from bot.schedules import Schedule, ScheduledRun
from bot.views import Block, Message, compose, context, duration, human_size, mention, section
from spotter.events import Artifact
from spotter.models import Promoted
from spotter.store import JobRecord

LOG_CHARS = 2800  # the tail's code block within one section


# -- logs ----------------------------------------------------------------------------------------------------


def logs_message(rec: JobRecord, view: LogView, expires_in: int) -> Message:
    latest = view.latest
    what = f"`{latest.phase}.log` of attempt {latest.attempt}"
    head = f"*Logs of `{rec.job_id}`*: the last {len(view.tail)} lines of {what} ({human_size(latest.size)})."
    blocks: list[Block] = [section(head)]
    blocks.append(section(code_block(view.tail, LOG_CHARS) if view.tail else "_The log is empty so far._"))
    links = [f"<{view.url}|{latest.phase}.log (attempt {latest.attempt}), whole>"]
    links += [f"<{url}|{f.phase}.log (attempt {f.attempt})>" for f, url in reversed(view.others)]
    blocks.append(section("Download: " + " · ".join(links)))
    blocks.append(context(f"Links work for {duration(expires_in)}. `/train logs {rec.job_id}` makes new ones."))
    return compose(f"Logs of {rec.job_id}: last {len(view.tail)} lines of {latest.phase}.log", blocks)


def no_logs_message(rec: JobRecord) -> Message:
    text = (
        f"Job `{rec.job_id}` has no logs yet (it is {rec.status.value.lower()}): the agent uploads them once its "
        f"instance runs. `/train status {rec.job_id}` shows where it is."
    )
    return compose(text, [section(f":page_facing_up: {text}")])


# -- schedules -----------------------------------------------------------------------------------------------


def _when(run: ScheduledRun) -> str:
    return f"{run.label} ({run.timezone})"


def _next(next_run: datetime | None) -> str:
    if next_run is None:
        return "no next run"
    return f"next run {next_run.strftime('%a %Y-%m-%d %H:%M')} {next_run.tzname() or ''}".rstrip()


def _options(run: ScheduledRun) -> str:
    return " ".join(f"{k}={v}" for k, v in run.options)


def schedule_created_message(schedule: Schedule, *, existed: bool = False) -> Message:
    run = schedule.run
    line = f"/train {run.dataset} {run.model} {_options(run)}".rstrip()
    verb = "is already scheduled" if existed else "is scheduled"
    text = (
        f":calendar: `{line}` {verb} {_when(run)}: {_next(schedule.next_run)}. Schedule `{run.schedule_id}`. "
        "Each run starts from the weights the schedule promoted last (pretrained the first time) and promotes its "
        f"own only when its mAP50 is better. `/train unschedule {run.schedule_id}` removes it."
    )
    return compose(text, [section(text)])


def schedules_list(schedules: list[Schedule]) -> Message:
    if not schedules:
        text = "No schedules in this channel. `/train schedule <dataset> <model> daily 02:00` makes one."
        return compose(text, [section(text)])
    lines = []
    for s in schedules:
        run = s.run
        state = "" if s.state == "ENABLED" else f" · {s.state.lower()}"
        opts = f" {_options(run)}" if run.options else ""
        lines.append(
            f"• `{run.schedule_id}` `{run.dataset} {run.model}{opts}` {_when(run)} · {_next(s.next_run)}"
            f" · by {mention(run.requested_by)}{state}"
        )
    head = f"*Schedules in this channel* ({len(schedules)})"
    return compose(f"{len(schedules)} schedules", [section(head + "\n" + "\n".join(lines))])


def unscheduled_message(schedule: Schedule) -> Message:
    run = schedule.run
    text = f"Schedule `{run.schedule_id}` ({run.dataset} {run.model}, {_when(run)}) is deleted: it will not run again."
    return compose(text, [section(f":wastebasket: {text}")])


def no_schedule_message(schedule_id: str) -> Message:
    text = f"There is no schedule `{schedule_id}` in this channel. `/train schedules` lists this channel's schedules."
    return compose(text, [section(f":warning: {text}")])


def scheduled_run_refused(run: ScheduledRun, why: Message) -> Message:
    """Said in the schedule's channel when a run could not start (a cap, a spec the catalog no longer allows)."""
    text = (
        f"{mention(run.requested_by)} The {_when(run)} run of schedule `{run.schedule_id}` did not start: {why['text']}"
    )
    return compose(text, [section(f":calendar: {text}")])


# -- promoted weights ------------------------------------------------------------------------------------------


def promoted_weights_message(
    dataset: str, model: str, promoted: Promoted, links: list[tuple[Artifact, str]], expires_in: int
) -> Message:
    score = "–" if promoted.map50 is None else f"{promoted.map50:.3f}"
    head = f"*Promoted weights of `{dataset} {model}`*: from job `{promoted.job_id}`, mAP50 {score}."
    rows = [
        f"• <{url}|{a.key.rsplit('/', 1)[-1]}> ({a.name}, {human_size(a.size)}) sha256 `{a.sha256}`" for a, url in links
    ]
    blocks = [section(head), section("\n".join(rows)), context(f"Links work for {duration(expires_in)}.")]
    return compose(head.replace("*", ""), blocks)


def no_promoted_message(dataset: str, model: str) -> Message:
    text = (
        f"No weights are promoted for `{dataset} {model}` yet: a scheduled run promotes its weights when it finishes "
        f"(`/train schedule {dataset} {model} daily 02:00`). `/train weights <job>` gives a job's own weights."
    )
    return compose(text, [section(f":warning: {text}")])
