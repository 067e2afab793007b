"""Lambda entry of the launcher: a `Job Queued` (from the bot) or a `Job Relaunch` (from the control plane, for an
interrupted job) becomes the job's next attempt on one instance (see lambdas.launch)."""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.launch import Launcher
from spotter.config import LauncherSettings
from spotter.events import SOURCE_BOT, SOURCE_CONTROL, JobEvent, JobQueued, JobRelaunch, UnknownEvent, from_eventbridge

# What the launcher acts on, and from whom: the bot queues a job, the control plane relaunches an interrupted one.
ACCEPTED: dict[type[JobEvent], str] = {JobQueued: SOURCE_BOT, JobRelaunch: SOURCE_CONTROL}
METRIC_NAMES = {"launched": "Launches", "failed": "LaunchFailures", "skipped": "LaunchesSkipped"}

logger = Logger()
# Flushing needs a namespace, also where the template's POWERTOOLS_* variables are not set (the local stack).
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Spotter"))
# The launch logic logs with the standard library under `lambdas`: give it this JSON handler and keys.
copy_config_to_registered_loggers(source_logger=logger, include={"lambdas"})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    asked = from_eventbridge(event)
    source = event.get("source")
    if source is None or ACCEPTED.get(type(asked)) != source:
        takes = " and ".join(f"{cls.detail_type} from {src}" for cls, src in ACCEPTED.items())
        raise UnknownEvent(f"the launcher takes {takes}, not {event.get('detail-type')!r} from {source!r}")
    logger.append_keys(job_id=asked.job_id)
    # Settings are read per invocation: cheap, and the local stack points one process at fresh stacks.
    launcher = Launcher.from_settings(LauncherSettings.from_env())
    # A relaunch names the attempt that was interrupted: a late one, after a newer attempt started, launches nothing.
    after = asked.attempt if isinstance(asked, JobRelaunch) else None
    outcome = launcher.launch(asked.job_id, after_attempt=after)
    if outcome.market:
        metrics.add_dimension(name="market", value=outcome.market)
    metrics.add_metric(name=METRIC_NAMES[outcome.result], unit=MetricUnit.Count, value=1)
    logger.info(f"launch {outcome.result}", extra={"outcome": asdict(outcome)})
    return asdict(outcome)
