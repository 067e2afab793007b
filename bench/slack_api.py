"""Slack Web API calls per job-hour of training, and the messages a job leaves in its thread.

Each job below lives its hours of training as the agent would report them (progress every 15 s with the loss, a
metric per epoch or evaluation, a checkpoint per epoch, the phases, the end) on a virtual clock. Every event goes
through the recorder's `spotter.lifecycle.apply` on the local stack's DynamoDB (moto), and each `Job Changed` it
makes goes to the real notifier, which calls the Slack stand-in over HTTP. The notifier's clock and sleep are the
virtual ones, so its card window (one update per 10 s), the best-mAP margin, interval and cap, and the end's parts
are what a deployed notifier would do with the same events; only the waiting is skipped.

Targets: at most 400 Web API calls per job-hour of training; a long job's thread about 20 messages at most. The
baseline is the events the job made: a notifier calling Slack once per event would make that many calls.

    python -m bench.slack_api
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.results import at_most, publish

CALLS_PER_HOUR_TARGET = 400
THREAD_TARGET = 20
PROGRESS_EVERY_SECONDS = 15.0  # the agent's progress interval (agent/emitter.py)
CHANNEL, USER, TEAM = "C0BENCH", "U0BENCH", "T0SPOTTER"
SEED = 20261207


@dataclass(frozen=True)
class Profile:
    """A job as users run them: its model, how long it trains, how often it evaluates."""

    dataset: str
    model: str
    length: int  # epochs, or iterations for darknet
    step_seconds: float  # seconds per epoch (per 100 iterations for darknet)
    unit: str = "epoch"
    eval_every: int = 1  # epochs (iterations for darknet) between two evaluations

    @property
    def train_seconds(self) -> float:
        per_step = 100 if self.unit == "iteration" else 1
        return self.length / per_step * self.step_seconds


PROFILES = (
    # Short epochs: a metric and a checkpoint every 12 s, more often than the card may change.
    Profile("shapes", "yolov8n", 100, 12.0),
    # A long YOLOv5 run: the one whose thread used to get a reply for every new best.
    Profile("persons", "yolov5s", 300, 20.0),
    # Darknet: iterations, evaluated every 1,000 (mAP printed by -map), progress every 15 s.
    Profile("persons", "yolov4-tiny", 6000, 45.0, unit="iteration", eval_every=1000),
)


class Clock:
    """The notifier's CLOCK and SLEEP: time passes only when the bench (or a wait) moves it."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


def _events(profile: Profile, job_id: str, start: float, rng: random.Random) -> list[tuple[float, Any]]:
    """(virtual time, event) for one attempt that trains `profile` to the end, in the agent's order."""
    from spotter import layout
    from spotter.events import (
        Artifact,
        FinalMetrics,
        JobCheckpoint,
        JobFinished,
        JobLaunched,
        JobMetric,
        JobPhase,
        JobProgress,
    )

    out: list[tuple[float, Any]] = []
    seq = 0

    def at(t: float, cls: type, **fields: Any) -> None:
        nonlocal seq
        seq += 1
        out.append((t, cls(job_id=job_id, attempt=1, seq=seq, at=t, **fields)))

    outputs = layout.Outputs(job_id, layout.instance_arn("aws", "us-east-1", "123456789012", "i-0be0c00000000001"))

    def artifact(name: str, suffix: str) -> Artifact:
        key = outputs.artifact(name, suffix)
        return Artifact(name=name, key=key, sha256=rng.randbytes(32).hex(), size=6_200_000)

    t = start + 40.0
    at(t, JobLaunched, instance_id="i-0be0c00000000001", instance_type="g4dn.xlarge", market="spot",
       availability_zone="us-east-1b", price_usd_hour=0.1841)  # fmt: skip
    for phase, seconds in (("install", 90.0), ("data", 60.0)):
        at(t, JobPhase, phase=phase, state="started")
        t += seconds
        at(t, JobPhase, phase=phase, state="finished", seconds=seconds)
    at(t, JobPhase, phase="train", state="started")
    train_start = t
    per_step = 100 if profile.unit == "iteration" else 1
    ceiling = rng.uniform(0.6, 0.9)
    next_progress = train_start + PROGRESS_EVERY_SECONDS
    for current in range(per_step, profile.length + 1, per_step):
        done_at = train_start + current / per_step * profile.step_seconds
        while next_progress <= done_at:  # the agent sends the newest progress every 15 s
            frac = (next_progress - train_start) / profile.train_seconds
            loss = round(4.0 * (1.0 - 0.8 * frac) * (1 + 0.05 * rng.random()), 4)
            at(next_progress, JobProgress, unit=profile.unit, current=max(1, current - per_step),
               total=profile.length, loss=loss)  # fmt: skip
            next_progress += PROGRESS_EVERY_SECONDS
        if current % profile.eval_every == 0:
            # mAP50 rises fast, then creeps: most new bests late in training are by a hair.
            map50 = min(0.99, ceiling * (1 - 0.985 ** (current / per_step)) + rng.uniform(-0.004, 0.004))
            at(done_at, JobMetric, unit=profile.unit, current=current, map50=round(max(0.0, map50), 4),
               map50_95=round(max(0.0, map50) * 0.62, 4))  # fmt: skip
        if profile.unit == "epoch" or current % 1000 == 0:  # ultralytics saves last.pt each epoch; darknet each 1,000
            at(done_at + 1, JobCheckpoint, artifact=artifact("checkpoint", ".pt"), current=current)
    t = train_start + profile.train_seconds + 1
    at(t, JobPhase, phase="train", state="finished", seconds=round(profile.train_seconds, 1))
    for phase, seconds in (("evaluate", 30.0), ("upload", 10.0)):
        at(t, JobPhase, phase=phase, state="started")
        t += seconds
        at(t, JobPhase, phase=phase, state="finished", seconds=seconds)
    artifacts = [artifact("best", ".pt"), artifact("last", ".pt")]
    final = FinalMetrics(map50=round(ceiling * 0.99, 4), map50_95=round(ceiling * 0.6, 4),
                         per_class_ap50={"person": round(ceiling, 4)})  # fmt: skip
    at(t, JobFinished, artifacts=artifacts, metrics=final, seconds=round(t - start, 1))
    return out


def _run_job(profile: Profile, n: int, notifier: Any, store: Any, slack: Any, clock: Clock) -> dict[str, Any]:
    from bot import views
    from bot.notifier import metrics as notifier_metrics
    from spotter import lifecycle, spec
    from spotter.events import JobPhase
    from spotter.store import SlackRef

    options = [("iterations" if profile.unit == "iteration" else "epochs", str(profile.length))]
    seed = f"{TEAM}bench-slack-{n}"
    job_spec = spec.build_spec(profile.dataset, profile.model, options, requested_by=USER, channel=CHANNEL, seed=seed)
    rec = store.create(job_spec, trigger=seed)
    before = len(slack.calls)
    # The card the Slack function posts when it queues the job: one call, counted with the rest.
    card = notifier.client.chat_postMessage(channel=CHANNEL, **views.job_card(rec, now=clock()))
    store.set_slack(rec.job_id, SlackRef(channel=CHANNEL, card_ts=card["ts"], thread_ts=card["ts"]))
    store.mark_launching(rec.job_id, 1)  # the launcher's step before the instance exists
    events = _events(profile, rec.job_id, clock(), random.Random(f"{SEED}-{n}"))
    started = time.perf_counter()
    for k, (t, ev) in enumerate(events):
        if k % 200 == 0:
            print(f"bench slack_api: {profile.model} event {k}/{len(events)}", file=sys.stderr, flush=True)
        clock.now = max(clock.now, t)
        outcome = lifecycle.apply(store, ev)
        phase = ev.phase if isinstance(ev, JobPhase) else None
        changed = lifecycle.changed_event(outcome, ev.detail_type, phase=phase)
        if changed is not None:
            notifier.handle(changed, deadline=clock() + 25)
            notifier_metrics.clear_metrics()  # what the handler's log_metrics would flush, once per invocation
    calls = slack.calls[before:]
    final = store.get(rec.job_id)
    if final.status.value != "SUCCEEDED" or final.announced_part("card") is None:
        raise SystemExit(f"bench slack_api: {rec.job_id} ended {final.status.value} without its final card")
    thread = slack.thread(CHANNEL, card["ts"])
    hours = profile.train_seconds / 3600
    by_method: dict[str, int] = {}
    for c in calls:
        by_method[c.method] = by_method.get(c.method, 0) + 1
    return {
        "job": f"{profile.dataset} {profile.model} {profile.length} {profile.unit}s",
        "training_hours": round(hours, 2),
        "events": len(events),
        "calls": len(calls),
        "calls_per_job_hour": round(len(calls) / hours, 1),
        "events_per_job_hour": round(len(events) / hours, 1),
        "by_method": dict(sorted(by_method.items())),
        "thread_messages": len(thread),
        "seconds_here": round(time.perf_counter() - started, 1),
    }


def measure(index: int) -> dict[str, Any]:
    """PROFILES[index] on a local stack of its own."""
    from bench.stack import local_stack

    with local_stack() as slack:
        from bot import notifier as notifier_module
        from bot.notifier import Notifier

        clock = Clock(time.time())
        notifier_module.CLOCK, notifier_module.SLEEP = clock, clock.sleep
        notifier = Notifier.from_env()
        return _run_job(PROFILES[index], index, notifier, notifier.store, slack, clock)


def one(index: int) -> int:
    """Run one job and print its figures as one JSON line (the parent gathers them)."""
    out = sys.stdout
    sys.stdout = sys.stderr  # the in-process Lambda code's logs stay off the figures
    try:
        figures = measure(index)
    finally:
        sys.stdout = out
    print(json.dumps(figures))
    return 0


def main() -> int:
    # Each job on its own stack in its own interpreter, side by side: moto's time is most of a job's here.
    runs = [
        subprocess.Popen([sys.executable, "-m", "bench.slack_api", str(i)], stdout=subprocess.PIPE, text=True)
        for i in range(len(PROFILES))
    ]
    jobs: list[dict[str, Any]] = []
    for run in runs:
        out, _ = run.communicate()
        if run.returncode != 0:
            raise SystemExit(f"bench slack_api: a job's run failed ({run.returncode})")
        jobs.append(json.loads(out.strip().splitlines()[-1]))
    results = []
    for j in jobs:
        results.append(
            at_most(
                f"Slack calls per job-hour: {j['job']}",
                j["calls_per_job_hour"],
                "calls/h",
                CALLS_PER_HOUR_TARGET,
                f"{j['events_per_job_hour']:.0f} events/h (one call per event); {j['training_hours']:.2f} h",
            )
        )
        results.append(
            at_most(
                f"thread messages: {j['job']}",
                j["thread_messages"],
                "messages",
                THREAD_TARGET,
                f"{j['events']} events in the job",
            )
        )
    return publish(results)


if __name__ == "__main__":
    sys.exit(one(int(sys.argv[1])) if len(sys.argv) > 1 else main())
