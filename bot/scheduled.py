"""A schedule's run: EventBridge Scheduler invokes this with the schedule's `ScheduledRun`, filled in for this run.

It starts the job exactly as `/train` does (bot.starter: the same spec validation, caps, card and `Job Queued`),
with `from=promoted` unless the schedule says otherwise, so the run starts from the weights the schedule promoted
last. The run's due time names the job: Scheduler's retries of one run start it once. A run that cannot start
says why in the schedule's channel and is not retried (a retry would be refused the same way).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from bot import answers, views
from bot.schedules import EXECUTION_ID, SCHEDULED_TIME, ScheduledRun
from bot.settings import AppSettings
from bot.slack import load_credentials, web_client
from bot.starter import Starter, StartFailed
from spotter import catalog, spec
from spotter.catalog import CatalogError
from spotter.spec import SpecError

logger = Logger()


def run_spec_options(run: ScheduledRun) -> list[tuple[str, str]]:
    """The schedule's options, starting from the promoted weights (where the model can start from weights) unless
    it names another start."""
    options = list(run.options)
    if not any(key == "from" for key, _ in options):
        options.append(("from", catalog.default_start(catalog.model(run.model))))
    return options


def start(run: ScheduledRun, settings: AppSettings, starter: Starter, client: Any) -> dict[str, Any]:
    if run.scheduled_time == SCHEDULED_TIME or run.execution_id == EXECUTION_ID:
        # Scheduler always fills these in: this input did not come from a schedule's run.
        raise ValueError("a scheduled run needs its scheduled time and execution id")
    try:
        job_spec = spec.build_spec(
            run.dataset,
            run.model,
            run_spec_options(run),
            requested_by=run.requested_by,
            channel=run.channel,
            seed=run.seed,
            schedule_id=run.schedule_id,
        )
    except (SpecError, CatalogError) as e:
        logger.warning("the schedule's spec no longer validates", schedule_id=run.schedule_id, error=str(e))
        client.chat_postMessage(channel=run.channel, **answers.scheduled_run_refused(run, views.error_message(str(e))))
        return {"started": False, "why": "spec"}
    try:
        started = starter.start(job_spec, run.seed, client)
    except StartFailed as e:
        return {"started": False, "job": e.job_id, "why": "announce"}
    if started.refusal is not None:
        client.chat_postMessage(channel=run.channel, **answers.scheduled_run_refused(run, started.refusal))
        return {"started": False, "why": "cap"}
    rec = started.record
    assert rec is not None, "a start without a refusal has a record"
    logger.info("scheduled run started", job_id=rec.job_id, schedule_id=run.schedule_id, existing=started.existing)
    return {"started": not started.existing, "job": rec.job_id}


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        run = ScheduledRun.model_validate(event)
    except ValidationError as e:
        # A retry would fail the same way: drop it, loudly.
        logger.error("not a scheduled run", error=str(e))
        return {"started": False, "why": "input"}
    logger.append_keys(schedule_id=run.schedule_id, scheduled_time=run.scheduled_time)
    settings = AppSettings.from_env()
    creds = load_credentials(settings)
    client = web_client(creds.bot_token.get_secret_value(), settings)
    return start(run, settings, Starter(settings), client)
