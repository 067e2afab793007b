"""The local stack a benchmark runs on, in its own process: moto in server mode provisioned from template.yaml, and
the Slack stand-in, with this process's environment pointing the product's code at both."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIGNING_SECRET = "bench-signing-secret"  # pragma: allowlist secret


@contextmanager
def local_stack() -> Iterator[Any]:
    """Yields the Slack stand-in; both servers stop on the way out."""
    from infra.local.aws import MotoServer, provision
    from infra.local.faults import Faults
    from infra.local.slack import SlackStandIn
    from spotter.aws import reset_clients

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = MotoServer(Faults(lambda _record: None)).start()
    os.environ.update(moto.environ())
    reset_clients()
    slack = SlackStandIn().start()
    try:
        resources = provision({"bot_token": slack.bot_token, "signing_secret": SIGNING_SECRET})
        os.environ.update(resources.environment())
        os.environ["SPOTTER_SLACK_API_URL"] = slack.api_url
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        yield slack
    finally:
        slack.stop()
        moto.stop()
