"""Lambda entry of the launcher: a `Job Queued` event from the bus becomes one instance (see lambdas.launch)."""

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
from spotter.events import JobQueued, UnknownEvent, from_eventbridge

METRIC_NAMES = {"launched": "Launches", "failed": "LaunchFailures", "skipped": "LaunchesSkipped"}

logger = Logger()
# Flushing needs a namespace, also where the template's POWERTOOLS_* variables are not set (the local stack).
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Spotter"))
# The launch logic logs with the standard library under `lambdas`: give it this JSON handler and keys.
copy_config_to_registered_loggers(source_logger=logger, include={"lambdas"})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    queued = from_eventbridge(event)
    if not isinstance(queued, JobQueued):
        raise UnknownEvent(f"the launcher takes Job Queued, not {event.get('detail-type')!r}")
    logger.append_keys(job_id=queued.job_id)
    # Settings are read per invocation: cheap, and the local stack points one process at fresh stacks.
    outcome = Launcher.from_settings(LauncherSettings.from_env()).launch(queued.job_id)
    if outcome.market:
        metrics.add_dimension(name="market", value=outcome.market)
    metrics.add_metric(name=METRIC_NAMES[outcome.result], unit=MetricUnit.Count, value=1)
    logger.info(f"launch {outcome.result}", extra={"outcome": asdict(outcome)})
    return asdict(outcome)
