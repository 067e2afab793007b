"""The Slack function's ack: latency of a warm signed `/train` (p50/p99 over 200 requests) and its cold start (fresh
interpreter: imports + first request) against a bare bolt app with the same imports.

Targets: warm p99 under 10 ms; cold start at most 1.3x the bare app's. The ack is measured through the real Lambda
handler on the local stack's AWS (moto) and Slack stand-in; lazy listeners' self-invocations are accepted and
dropped, as they are not part of the ack. The warm figures' baseline is the bare bolt app's own warm ack in the same
process (the same signed request, no listener work), so a slow machine shows as a slow baseline.

    python -m bench.ack
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.results import Result, at_most, publish

WARM_REQUESTS = 200
COLD_RUNS = 15
WARM_P99_TARGET_MS = 10.0
COLD_RATIO_TARGET = 1.3


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _measure(slack: Any) -> dict[str, list[float]]:
    """Warm ack latencies of ours and of a bare bolt app, then cold starts of ours, of the bare app, and of the bare
    app with the secret in the environment (ms)."""
    from bench.cold import _Discard, bare_handler
    from bench.stack import SIGNING_SECRET
    from infra.local.invoke import LambdaContext
    from infra.local.slash import new_trigger_id, signed_event, slash_body

    creds = {"bot_token": slack.bot_token, "signing_secret": SIGNING_SECRET}

    def event() -> dict[str, Any]:
        body = slash_body(
            command="/train",
            text="shapes yolov8n epochs=5",
            user="U0BENCH",
            channel="C0BENCH",
            team="T0SPOTTER",
            response_url=slack.new_response_url("/train", "C0BENCH", "U0BENCH"),
            trigger_id=new_trigger_id(),
        )
        return signed_event(creds["signing_secret"], body)

    # -- warm ack latency, in this process, ours and the bare app's interleaved ---------------------------------
    import bot.app

    bot.app.set_lambda_client(_Discard())
    ctx: Any = LambdaContext(function_name="spotter-slack")
    bare = bare_handler(creds)
    assert bot.app.handler(event(), ctx)["statusCode"] == 200  # the cold ones, not counted
    assert bare(event(), ctx)["statusCode"] == 200
    slack_calls = len(slack.calls)
    warm: list[float] = []
    warm_bare: list[float] = []
    for _ in range(WARM_REQUESTS):
        for handler, into in ((bot.app.handler, warm), (bare, warm_bare)):
            ev = event()
            t = time.perf_counter()
            resp = handler(ev, ctx)
            into.append((time.perf_counter() - t) * 1000)
            assert resp["statusCode"] == 200, resp
    assert len(slack.calls) == slack_calls, "the ack path called Slack"

    # -- cold start, fresh interpreters -------------------------------------------------------------------------
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}

    def cold(kind: str, **extra: str) -> float:
        run_env = {**env, "BENCH_EVENT": json.dumps(event()), **extra}
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "bench.cold", kind], env=run_env, capture_output=True, text=True)
        elapsed = (time.perf_counter() - t) * 1000
        if out.returncode != 0:
            raise SystemExit(f"cold start of {kind} failed: {out.stderr[-800:]}")
        return elapsed

    cold("spotter"), cold("bare")  # warm the page cache and .pyc files for both
    ours, bare_cold, bare_env = [], [], []
    for _ in range(COLD_RUNS):  # interleaved, so machine noise falls on both alike
        ours.append(cold("spotter"))
        bare_cold.append(cold("bare"))
        bare_env.append(cold("bare", BENCH_SECRET_FROM="env", BENCH_SECRET_JSON=json.dumps(creds)))
    return {"warm": warm, "warm_bare": warm_bare, "cold": ours, "cold_bare": bare_cold, "cold_bare_env": bare_env}


def results(m: dict[str, list[float]]) -> list[Result]:
    p50, p99 = _percentile(m["warm"], 0.50), _percentile(m["warm"], 0.99)
    bare50, bare99 = _percentile(m["warm_bare"], 0.50), _percentile(m["warm_bare"], 0.99)
    cold, cold_bare = statistics.median(m["cold"]), statistics.median(m["cold_bare"])
    cold_env = statistics.median(m["cold_bare_env"])
    return [
        at_most("ack /train warm p50", p50, "ms", WARM_P99_TARGET_MS, f"bare bolt p50 {bare50:.2f} ms"),
        at_most("ack /train warm p99", p99, "ms", WARM_P99_TARGET_MS, f"bare bolt p99 {bare99:.2f} ms"),
        at_most(
            "Slack function cold start / bare bolt",
            cold / cold_bare,
            "x",
            COLD_RATIO_TARGET,
            f"bare bolt {cold_bare:.0f} ms, ours {cold:.0f} ms (bare, secret in env: {cold_env:.0f} ms)",
        ),
    ]


def main() -> int:
    from bench.stack import local_stack

    out = sys.stdout
    sys.stdout = sys.stderr  # the in-process Lambda code's logs stay off the figures
    try:
        with local_stack() as slack:
            measured = _measure(slack)
    finally:
        sys.stdout = out
    return publish(results(measured))


if __name__ == "__main__":
    sys.exit(main())
