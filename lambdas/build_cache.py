"""Lambda entry of the build cache: a `Job Build Ready` event from the bus promotes that build (see lambdas.promote)."""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.promote import Promoter
from spotter.config import Settings
from spotter.events import JobBuildReady, UnknownEvent, from_eventbridge

METRIC_NAMES = {
    "promoted": "BuildsPromoted",
    "replaced": "BuildsReplaced",
    "exists": "BuildsAlreadyCached",
    "refused": "BuildsRefused",
}

logger = Logger()
# Flushing needs a namespace, also where the template's POWERTOOLS_* variables are not set (the local stack).
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Spotter"))
copy_config_to_registered_loggers(source_logger=logger, include={"lambdas"})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ready = from_eventbridge(event)
    if not isinstance(ready, JobBuildReady):
        raise UnknownEvent(f"the build cache takes Job Build Ready, not {event.get('detail-type')!r}")
    logger.append_keys(job_id=ready.job_id, recipe=ready.recipe, build_key=ready.key)
    # Settings are read per invocation: cheap, and the local stack points one process at fresh stacks.
    outcome = Promoter.from_settings(Settings.from_env()).promote(ready)
    metrics.add_metric(name=METRIC_NAMES[outcome.result], unit=MetricUnit.Count, value=1)
    # A refusal is final (a retry would refuse again) but worth a look: a job offered a build it should not have.
    log = logger.warning if outcome.result == "refused" else logger.info
    log(f"build {outcome.result}", extra={"outcome": asdict(outcome)})
    return asdict(outcome)
