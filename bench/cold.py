"""One cold start in a fresh interpreter: imports, building the app, one signed `/train` through the handler.

`python -m bench.cold spotter|bare` with the local AWS and the signed event in the environment (the parent,
bench/ack.py, sets them). Prints the handler's HTTP status; the parent times the whole process.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


class _Discard:
    """Lazy listeners are not part of the ack: their self-invocation is accepted and dropped."""

    def invoke(self, **_: object) -> dict[str, int]:
        return {"StatusCode": 202}


def spotter() -> int:
    import bot.app
    from infra.local.invoke import LambdaContext

    bot.app.set_lambda_client(_Discard())
    event = json.loads(os.environ["BENCH_EVENT"])
    context: Any = LambdaContext(function_name="spotter-slack")
    return int(bot.app.handler(event, context)["statusCode"])


def bare_handler(creds: dict[str, str] | None = None) -> Any:
    """A bolt app with the same imports and the same secret source, answering /train with a bare ack: its Lambda
    handler (`event, context` → response)."""
    import aws_lambda_powertools  # noqa: F401
    import boto3  # noqa: F401
    import pydantic  # noqa: F401
    from aws_lambda_powertools.utilities import parameters
    from slack_bolt import App
    from slack_bolt.adapter.aws_lambda import SlackRequestHandler
    from slack_bolt.adapter.aws_lambda.lazy_listener_runner import LambdaLazyListenerRunner
    from slack_bolt.authorization import AuthorizeResult

    if creds is None:
        creds = parameters.get_secret(os.environ["SPOTTER_SLACK_SECRET"], transform="json")
    app = App(
        process_before_response=True,
        signing_secret=creds["signing_secret"],
        authorize=lambda enterprise_id, team_id: AuthorizeResult(
            enterprise_id=enterprise_id, team_id=team_id, bot_token=creds["bot_token"]
        ),
    )

    def ack(ack: Any) -> None:
        ack("ok")

    def lazy(body: Any) -> None:
        pass

    app.command("/train")(ack=ack, lazy=[lazy])
    handler = SlackRequestHandler(app)
    app.listener_runner.lazy_listener_runner = LambdaLazyListenerRunner(app.logger, _Discard())
    return handler.handle


def bare() -> int:
    from infra.local.invoke import LambdaContext

    creds = json.loads(os.environ["BENCH_SECRET_JSON"]) if os.environ.get("BENCH_SECRET_FROM") == "env" else None
    event = json.loads(os.environ["BENCH_EVENT"])
    return int(bare_handler(creds)(event, LambdaContext(function_name="bare"))["statusCode"])


if __name__ == "__main__":
    status = {"spotter": spotter, "bare": bare}[sys.argv[1]]()
    sys.stdout.write(f"{status}\n")
    sys.stdout.flush()
    os._exit(0 if status == 200 else 1)
