"""`/train list` with 10,000 jobs in the table: warm latency of what the lazy listener does after the ack.

The local stack's AWS (moto in server mode, provisioned from template.yaml) and Slack stand-in. The jobs table
is filled with 10,000 jobs spread over five channels, most of them in the channel listed:

- a few dozen model jobs live their lives through the product's own writes: the bot's `JobsStore.create` and
  `set_slack`, the launcher's `mark_launching` (and `mark_failed` when EC2 has no capacity), the recorder's
  `spotter.lifecycle.apply` for each agent event (launch, phases, progress with its loss every 15 s of training,
  a metric per epoch or evaluation, checkpoints, the end: finished, error, cancel, interruption and resume), and
  the notifier's announcement claims;
- each of the 10,000 jobs is one of those items as DynamoDB holds it, given its own id, channel, requester and
  creation time (the model's times stretched from how long it took here to how long its training would take),
  and written with BatchWriteItem. The newest jobs of each channel are the ones still going;
- each channel's board (the rows `/train list` shows) is kept as `JobsStore.create` keeps it, every job added in
  the order the jobs were created.

Then, warm and in this process, each of 200 requests runs `bot.app.Jobs.look_up` for `/train list` as bolt's lazy
listener does: the channel's board read from the table, `bot.views.job_list`, and the answer posted to a fresh
response_url of the Slack stand-in. Target: p99 under 50 ms.

    python -m bench.listing
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import parse_qsl

from bench.results import at_most, publish

JOBS = 10_000
REQUESTS = 200
WARMUP_REQUESTS = 5
P99_TARGET_MS = 50.0
CHANNEL = "C0BENCH"  # the channel listed
OTHER_CHANNELS = ("C0VISION", "C0DRONES", "C0ROBOTS", "C0INTERNS")
LISTED_SHARE = 0.6  # of the jobs, in the channel listed; the rest spread evenly over the others
ACTIVE_PER_CHANNEL = 4  # each channel's newest jobs are still going
USERS = ("U0ALICE", "U0BOB", "U0CAROL", "U0DAVE", "U0ERIN", "U0FRANK")
TEAM = "T0SPOTTER"
HISTORY_DAYS = 365  # the jobs' creation times spread over the last year
PROGRESS_EVERY_SECONDS = 15.0  # the agent's progress interval on a real instance (agent/emitter.py)
BATCH = 25  # BatchWriteItem's most items per request
ITERATION_MODELS = ("yolov4-tiny", "faster-rcnn-r50-fpn")
# Each history of a copy holds at most this many points: 10,000 items with the store's full bounds (2,000 losses,
# 500 metrics) would not fit moto's memory here. The answer reads none of them; DynamoDB reads them all.
HISTORY_CAP = 60
LIVED_STEPS = 20  # training steps per model job applied through the product's writes (the histories are stretched)
SEED = 20240617


@dataclass(frozen=True)
class Life:
    """One model job: what it trains, for how long, and how it ends (`reached`: the fraction trained)."""

    dataset: str
    model: str
    length: int  # epochs or iterations asked for
    fate: str  # queued, launching, running, succeeded, resumed, failed, no_capacity, cancelled, interrupted
    reached: float = 1.0
    step_seconds: float = 30.0  # training seconds per epoch (per 100 iterations for iteration models)
    weight: float = 1.0  # how common such a job is among finished ones


# Finished jobs, weighted as a team's history might be; then the ones still going.
FINISHED = (
    Life("shapes", "yolov8n", 50, "succeeded", step_seconds=12, weight=6),
    Life("shapes", "yolov8s", 100, "succeeded", step_seconds=20, weight=4),
    Life("persons", "yolov8s", 150, "succeeded", step_seconds=45, weight=4),
    Life("persons", "yolo11n", 80, "succeeded", step_seconds=40, weight=3),
    Life("aerial-maritime", "yolov8m", 300, "succeeded", step_seconds=35, weight=2),
    Life("coco2017", "yolov8s", 30, "succeeded", step_seconds=600, weight=1),
    Life("persons", "yolov5s", 120, "succeeded", step_seconds=40, weight=2),
    Life("shapes", "yolov4-tiny", 6000, "succeeded", step_seconds=25, weight=1),
    Life("persons", "faster-rcnn-r50-fpn", 9000, "succeeded", step_seconds=40, weight=1),
    Life("persons", "yolov8s", 200, "resumed", reached=0.55, step_seconds=45, weight=2),
    Life("aerial-maritime", "yolov8m", 300, "failed", reached=0.3, step_seconds=35, weight=1),
    Life("coco2017", "yolov8m", 50, "failed", reached=0.02, step_seconds=900, weight=1),
    Life("persons", "yolov8s", 100, "no_capacity", reached=0.0, weight=1),
    Life("shapes", "yolov8n", 100, "cancelled", reached=0.4, step_seconds=12, weight=2),
    Life("persons", "yolo11s", 150, "cancelled", reached=0.7, step_seconds=45, weight=1),
)
# Newest first: a channel's newest job is the one queued a moment ago.
ACTIVE = (
    Life("shapes", "yolov8s", 100, "queued", reached=0.0),
    Life("coco2017", "yolov8s", 30, "launching", reached=0.0),
    Life("shapes", "yolov8n", 100, "running", reached=0.1, step_seconds=12),
    Life("persons", "yolov8s", 200, "running", reached=0.45, step_seconds=45),
    Life("persons", "yolo11n", 80, "interrupted", reached=0.6, step_seconds=40),
    Life("aerial-maritime", "yolov8m", 300, "running", reached=0.8, step_seconds=35),
)
FLOAT_TIMES = frozenset(
    {"started_at", "ended_at", "at", "heartbeat_at", "finished_at", "card_updated_at", "relaunch_at"}
)
ISO_TIMES = frozenset({"created_at", "updated_at"})
SLACK_TS = frozenset({"card_ts", "thread_ts"})


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- the model jobs: lived through the product's writes ------------------------------------------------------------


class _Agent:
    """The events one attempt's agent would put on the bus, each applied as the recorder applies it."""

    def __init__(self, store: Any, job_id: str, attempt: int, rng: random.Random, instance_id: str) -> None:
        from spotter import layout

        self.store, self.job_id, self.attempt, self.rng = store, job_id, attempt, rng
        self.outputs = layout.Outputs(job_id, layout.instance_arn("aws", "us-east-1", "123456789012", instance_id))
        self.seq = 0

    def send(self, cls: type, **fields: Any) -> Any:
        from spotter import lifecycle

        self.seq += 1
        outcome = lifecycle.apply(self.store, cls(job_id=self.job_id, attempt=self.attempt, seq=self.seq, **fields))
        if outcome.new_best and outcome.record is not None and outcome.record.best is not None:
            from bot.notifier import BEST_ANNOUNCE_STEP

            best = outcome.record.best.map50
            if best is not None:
                self.store.claim_best_announcement(self.job_id, best, BEST_ANNOUNCE_STEP)
        return outcome


def _artifact(key: str, rng: random.Random, size: int) -> Any:
    from spotter.events import Artifact

    return Artifact(name=key.rsplit("/", 1)[-1].split(".")[0], key=key, sha256=rng.randbytes(32).hex(), size=size)


def _steps(start: int, stop: int, per_step: int) -> list[int]:
    """The steps lived through the product's writes: every one, or LIVED_STEPS of them evenly spread (the last kept)."""
    every = list(range(start, stop + 1, per_step))
    if len(every) <= LIVED_STEPS:
        return every
    picked = {every[round(i * (len(every) - 1) / (LIVED_STEPS - 1))] for i in range(LIVED_STEPS)}
    return sorted(picked)


def _train(agent: _Agent, life: Life, unit: str, start: int, stop: int, rng: random.Random) -> None:
    """Epochs (or iterations, evaluated every 1,000) `start`..`stop`: progress with the loss, metrics, checkpoints."""
    from spotter.events import JobCheckpoint, JobMetric, JobProgress

    per_step = 100 if unit == "iteration" else 1  # iterations advance in hundreds
    ceiling = rng.uniform(0.55, 0.92)
    steps = _steps(start, stop, per_step)
    for n, current in enumerate(steps):
        frac = current / life.length
        loss = 4.0 * (1.0 - 0.8 * frac) * (1 + 0.05 * rng.random())
        eta = (life.length - current) / per_step * life.step_seconds
        agent.send(JobProgress, unit=unit, current=current, total=life.length, loss=round(loss, 4), eta_seconds=eta)
        map50 = max(0.0, min(0.99, ceiling * (1 - 0.97 ** (current / per_step)) + rng.uniform(-0.01, 0.01)))
        agent.send(
            JobMetric,
            unit=unit,
            current=current,
            map50=round(map50, 4),
            map50_95=round(map50 * 0.62, 4),
            precision=round(min(1.0, map50 + 0.05), 4),
            recall=round(map50 * 0.9, 4),
        )
        if n % 5 == 4 or current == stop:
            key = agent.outputs.checkpoint(".pt")
            agent.send(JobCheckpoint, artifact=_artifact(key, rng, 6_200_000), current=current)


def _densified(points: list[Any], target: int) -> list[Any]:
    """`points` (oldest first) stretched to `target` of them, each lived point repeated in turn: the history a job
    that reported at the agent's real pace would carry, from the points lived here."""
    if not points or len(points) >= target:
        return points
    return [points[i * len(points) // target] for i in range(target)]


def _real_history_lengths(life: Life, unit: str) -> tuple[int, int]:
    """How many loss points and metric points a job of `life` gathers (each bounded as the store bounds it)."""
    from spotter.store import LOSS_HISTORY_MAX, METRIC_HISTORY_MAX

    per_step = 100 if unit == "iteration" else 1
    eval_every = 1000 if unit == "iteration" else 1
    trained = life.length * life.reached
    progress = trained / per_step * max(1.0, life.step_seconds / PROGRESS_EVERY_SECONDS)
    losses = min(LOSS_HISTORY_MAX, HISTORY_CAP, round(progress))
    return losses, min(METRIC_HISTORY_MAX, HISTORY_CAP, max(1, round(trained / eval_every)))


def _live(store: Any, life: Life, n: int, rng: random.Random) -> tuple[str, float]:
    """Run one model job through the product's writes; returns its id and the seconds its life would take."""
    from spotter import spec
    from spotter.events import (
        FinalMetrics,
        JobCancelled,
        JobCancelRequested,
        JobError,
        JobFinished,
        JobInterrupted,
        JobLaunched,
        JobPhase,
    )
    from spotter.store import Failure, SlackRef

    options = [("iterations" if life.model in ITERATION_MODELS else "epochs", str(life.length))]
    seed = f"{TEAM}bench-model-{n}"
    job_spec = spec.build_spec(life.dataset, life.model, options, requested_by=USERS[0], channel=CHANNEL, seed=seed)
    job_id, unit = job_spec.job_id, job_spec.unit
    store.create(job_spec, trigger=seed)
    card_ts = f"{time.time():.6f}"
    store.set_slack(job_id, SlackRef(channel=CHANNEL, card_ts=card_ts, thread_ts=card_ts))
    seconds = 20.0
    if life.fate == "queued":
        return job_id, seconds
    store.mark_launching(job_id, 1)
    seconds += 40
    if life.fate == "no_capacity":
        failure = Failure(phase="launch", kind="capacity", message="No spot or on-demand capacity for g5.xlarge.")
        store.mark_failed(job_id, failure, attempt=1)
        store.claim_announcement(job_id, store.get(job_id).status)
        return job_id, seconds
    instance = f"i-{rng.randbytes(8).hex()[:17]}"

    def launched(attempt: int, resumed_from: int | None = None) -> _Agent:
        agent = _Agent(store, job_id, attempt, rng, instance)
        agent.send(
            JobLaunched,
            instance_id=instance,
            instance_type="g5.xlarge" if life.model.endswith("m") else "g4dn.xlarge",
            availability_zone="us-east-1b",
            market="spot",
            price_usd_hour=0.1841,
            resumed_from=resumed_from,
        )
        return agent

    agent = launched(1)
    if life.fate == "launching":
        return job_id, seconds
    for phase in ("install", "data", "train"):
        agent.send(JobPhase, phase=phase, state="started")
        seconds += 60
    per_step = 100 if unit == "iteration" else 1
    reached = max(per_step, round(life.length * life.reached / per_step) * per_step)
    if life.fate == "failed" and life.reached < 0.05:  # out of memory in the first epoch
        agent.send(
            JobError,
            phase="train",
            kind="oom",
            message="CUDA out of memory. Tried to allocate 20.00 MiB.",
            last_lines=["torch.OutOfMemoryError: CUDA out of memory."],
        )
        return job_id, seconds
    first_stop = reached if life.fate != "succeeded" else life.length
    _train(agent, life, unit, per_step, first_stop, rng)
    seconds += first_stop / per_step * life.step_seconds
    if life.fate == "running":
        return job_id, seconds
    if life.fate in ("interrupted", "resumed"):
        key = agent.outputs.checkpoint(".pt")
        agent.send(JobInterrupted, notice_at=time.time(), checkpoint=_artifact(key, rng, 6_200_000), current=reached)
        if life.fate == "interrupted":
            store.set_relaunch_at(job_id, 1, time.time() + 60)
            return job_id, seconds
        store.mark_launching(job_id, 2)
        agent = launched(2, resumed_from=reached)
        for phase in ("install", "data", "train"):
            agent.send(JobPhase, phase=phase, state="started")
        _train(agent, life, unit, reached + per_step, life.length, rng)
        seconds += 180 + (life.length - reached) / per_step * life.step_seconds
    if life.fate == "failed":
        agent.send(
            JobError,
            phase="train",
            kind="nan_loss",
            message="The loss became NaN.",
            last_lines=["loss: nan"],
        )
    elif life.fate == "cancelled":
        by = USERS[0]
        agent.send(JobCancelRequested, by=by)
        last = _artifact(agent.outputs.artifact("last", ".pt"), rng, 6_200_000)
        agent.send(JobCancelled, artifacts=[last])
    else:
        agent.send(JobPhase, phase="evaluate", state="started")
        agent.send(JobPhase, phase="upload", state="started")
        artifacts = [
            _artifact(agent.outputs.artifact("best", ".pt"), rng, 6_200_000),
            _artifact(agent.outputs.artifact("last", ".pt"), rng, 6_200_000),
            _artifact(agent.outputs.artifact("results", ".csv"), rng, 18_000),
        ]
        best = store.get(job_id).best
        m50 = best.map50 if best and best.map50 is not None else None
        final = FinalMetrics(
            map50=m50,
            map50_95=best.map50_95 if best else None,
            precision=best.precision if best else None,
            recall=best.recall if best else None,
            per_class_ap50={"circle": m50 or 0.0, "square": m50 or 0.0} if life.dataset == "shapes" else {},
        )
        agent.send(JobFinished, artifacts=artifacts, metrics=final, seconds=seconds)
        seconds += 120
    store.claim_announcement(job_id, store.get(job_id).status)
    return job_id, seconds


# -- the 10,000: copies of the model items ---------------------------------------------------------------------


def _iso_like(original: str, when: datetime) -> str:
    """`when` written the way `original` is (fraction digits, `Z` or `+00:00`)."""
    fraction = original.split(".", 1)[1] if "." in original else ""
    digits = len(fraction.rstrip("Z").split("+", 1)[0])
    text = when.isoformat(timespec={0: "seconds", 3: "milliseconds"}.get(digits, "microseconds"))
    return text.replace("+00:00", "Z") if original.endswith("Z") else text


def _retimed(value: Any, shift: Callable[[float], float], key: str = "") -> Any:
    """The item with every time in it moved by `shift` (epoch seconds, ISO times and Slack message ts)."""
    if isinstance(value, dict):
        return {k: _retimed(v, shift, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_retimed(v, shift) for v in value]
    if key in FLOAT_TIMES and isinstance(value, (int, float)):
        return shift(float(value))
    if key in SLACK_TS and isinstance(value, str):
        return f"{shift(float(value)):.6f}"
    if key in ISO_TIMES and isinstance(value, str):
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return _iso_like(value, datetime.fromtimestamp(shift(when.timestamp()), UTC))
    return value


@dataclass(frozen=True)
class Model:
    job_id: str
    trigger: str
    item: dict[str, Any]  # the item as DynamoDB holds it, as plain values
    created: float
    span: float  # seconds from its creation to its last write, here
    seconds: float  # seconds the same life takes on a real instance
    sets: frozenset[str] = frozenset()  # the attributes DynamoDB holds as string sets (the per-attempt claims)


def _copy(model: Model, job_id: str, trigger: str, channel: str, user: str, created: float) -> dict[str, Any]:
    """`model`'s item for another job, in the item format `JobsStore` writes (serialised as it serialises)."""
    from spotter.store import _ser, _to_dynamo

    stretch = model.seconds / model.span if model.span > 0 else 1.0
    text = json.dumps(model.item, default=sorted).replace(model.job_id, job_id).replace(model.trigger, trigger)
    plain = _retimed(json.loads(text), lambda t: created + (t - model.created) * stretch)
    plain["channel"] = plain["spec"]["channel"] = channel
    plain["spec"]["requested_by"] = user
    if "slack" in plain:
        plain["slack"]["channel"] = channel
    if "cancel" in plain:
        plain["cancel"]["by"] = user
    return {k: _ser.serialize(set(v)) if k in model.sets else _to_dynamo(v) for k, v in plain.items()}


def _models(store: Any, rng: random.Random) -> tuple[list[Model], list[Model]]:
    """The finished and the active model jobs, each lived once through the product's writes."""
    from spotter.store import _de, _plain, _to_dynamo

    def model(life: Life, n: int) -> Model:
        started = time.time()
        job_id, seconds = _live(store, life, n, rng)
        raw = store.db.get_item(TableName=store.table, Key={"job_id": {"S": job_id}}, ConsistentRead=True)["Item"]
        values = {k: _de.deserialize(v) for k, v in raw.items()}
        plain = _plain(values)
        # Numbers compare as DynamoDB compares them (moto keeps `2.0` as sent, DynamoDB answers `2`).
        sets = frozenset(k for k, v in values.items() if isinstance(v, set))
        back = {k: v if k in sets else _de.deserialize(cast(Any, _to_dynamo(v))) for k, v in plain.items()}
        if back != values:
            differ = sorted(k for k in values.keys() | back.keys() if back.get(k) != values.get(k))
            raise SystemExit(f"bench listing: the item of {job_id} does not serialise back to itself: {differ}")
        store.db.delete_item(TableName=store.table, Key={"job_id": {"S": job_id}})
        unit = "iteration" if life.model in ITERATION_MODELS else "epoch"
        losses, evaluations = _real_history_lengths(life, unit)
        plain["loss_history"] = _densified(plain.get("loss_history", []), losses)
        plain["metric_history"] = _densified(plain.get("metric_history", []), evaluations)
        return Model(job_id, plain["trigger"], plain, started, time.time() - started, seconds, sets)

    finished = []
    for n, life in enumerate(FINISHED):
        t = time.perf_counter()
        finished.append(model(life, n))
        print(
            f"bench listing: model {life.model} {life.fate} in {time.perf_counter() - t:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    active = [model(life, len(FINISHED) + n) for n, life in enumerate(ACTIVE)]
    return finished, active


def _jobs(finished: list[Model], active: list[Model], rng: random.Random, now: float) -> Iterator[dict[str, Any]]:
    """JOBS items: LISTED_SHARE of them in CHANNEL, the newest of each channel still going."""
    from spotter import spec

    weights = [life.weight for life in FINISHED]
    listed = round(JOBS * LISTED_SHARE)
    channels = [CHANNEL] * listed + [OTHER_CHANNELS[i % len(OTHER_CHANNELS)] for i in range(JOBS - listed)]
    rng.shuffle(channels)
    # Creation times over HISTORY_DAYS, newest first, the newest of all a few minutes ago.
    created = sorted((now - 300 - rng.random() * HISTORY_DAYS * 86400 for _ in range(JOBS)), reverse=True)
    newest_seen: dict[str, int] = {}
    offsets = {c: i for i, c in enumerate((CHANNEL, *OTHER_CHANNELS))}
    for n, (channel, when) in enumerate(zip(channels, created, strict=True)):
        rank = newest_seen[channel] = newest_seen.get(channel, -1) + 1
        if rank < ACTIVE_PER_CHANNEL:
            # The channel listed gets the newest kinds (queued, launching, running…); the others, later ones.
            model = active[(rank + offsets[channel]) % len(active)]
            # An active job was created as long ago as its life so far has taken.
            when = min(when, now - model.seconds - 30)
        else:
            model = rng.choices(finished, weights)[0]
        trigger = f"{TEAM}{int(when)}.{n}.{rng.randbytes(8).hex()}"
        job_id = spec.new_job_id(model.item["spec"]["dataset"], seed=trigger)
        yield _copy(model, job_id, trigger, channel, rng.choice(USERS), when)


def fill(store: Any, rng: random.Random) -> dict[str, Any]:
    """Write JOBS jobs into the table; returns what was written."""
    finished, active = _models(store, rng)
    now = time.time()
    items = list(_jobs(finished, active, rng, now))
    ids = {i["job_id"]["S"] for i in items}
    if len(ids) != len(items):
        raise SystemExit("bench listing: two jobs got the same id")
    for start in range(0, len(items), BATCH):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + BATCH]]
        while requests:
            resp = store.db.batch_write_item(RequestItems={store.table: requests})
            requests = resp.get("UnprocessedItems", {}).get(store.table, [])
    _boards(store, items)
    sizes = [len(json.dumps(i)) for i in items]
    return {"model_jobs": len(finished) + len(active), "item_bytes_mean": round(sum(sizes) / len(sizes))}


def _boards(store: Any, items: list[dict[str, Any]]) -> None:
    """Each channel's board as the product keeps it: every job added (and the board trimmed) in the order the jobs
    were created, its row as its record is now. The model jobs' rows go first: those jobs are gone."""
    from spotter.board import board_key
    from spotter.store import _from_item

    for channel in (CHANNEL, *OTHER_CHANNELS):
        store.db.delete_item(TableName=store.table, Key=board_key(channel))
    for item in sorted(items, key=lambda i: i["created_at"]["S"]):
        rec = _from_item(item)
        store.board.add(rec, rec.version)


def _count(store: Any, **query: Any) -> int:
    total, kwargs = 0, {"TableName": store.table, "Select": "COUNT", **query}
    op = store.db.query if "KeyConditionExpression" in query else store.db.scan
    while True:
        resp = op(**kwargs)
        total += int(resp["Count"])
        if "LastEvaluatedKey" not in resp:
            return total
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


# -- the benchmark -------------------------------------------------------------------------------------------------


def measure() -> dict[str, Any]:
    from bench.stack import local_stack
    from infra.local.slash import new_trigger_id, slash_body

    with local_stack() as slack:
        from slack_bolt import Respond

        from bot.app import LIST_LIMIT, Jobs
        from bot.settings import AppSettings

        jobs = Jobs(AppSettings.from_env())
        fill_started = time.perf_counter()
        written = fill(jobs.store, random.Random(SEED))
        fill_seconds = time.perf_counter() - fill_started
        print(f"bench listing: {JOBS:,} jobs written in {fill_seconds:.0f} s", file=sys.stderr, flush=True)
        in_table = _count(
            jobs.store, FilterExpression="attribute_exists(#s)", ExpressionAttributeNames={"#s": "status"}
        )
        in_channel = _count(
            jobs.store,
            IndexName="by-channel",
            KeyConditionExpression="channel = :c",
            ExpressionAttributeValues={":c": {"S": CHANNEL}},
        )

        def body() -> dict[str, str]:
            user = USERS[1]
            form = slash_body(
                command="/train",
                text="list",
                user=user,
                channel=CHANNEL,
                team=TEAM,
                response_url=slack.new_response_url("/train", CHANNEL, user),
                trigger_id=new_trigger_id(),
            )
            return dict(parse_qsl(form))

        bodies = [body() for _ in range(WARMUP_REQUESTS + REQUESTS)]
        timings: list[float] = []
        in_dynamodb: list[float] = []  # of each request, the time inside DynamoDB's calls (moto's, here)
        calling: list[float] = []
        operations: set[str] = set()
        events = jobs.store.db.meta.events
        events.register("before-call.dynamodb", lambda **_: calling.append(time.perf_counter()))
        events.register("after-call.dynamodb", lambda **_: calling.append(time.perf_counter() - calling.pop()))
        events.register("after-call.dynamodb", lambda model, **_: operations.add(model.name))
        for n, b in enumerate(bodies):
            respond = Respond(response_url=b["response_url"])
            calling.clear()
            t = time.perf_counter()
            jobs.look_up(b, respond)
            elapsed = (time.perf_counter() - t) * 1000
            if n >= WARMUP_REQUESTS:
                timings.append(elapsed)
                in_dynamodb.append(sum(calling) * 1000)
        answers = slack.calls_to("response")
        if len(answers) != len(bodies) or any(c.status != 200 for c in answers):
            raise SystemExit(f"bench listing: {len(answers)} answers reached the response_urls, not {len(bodies)}")
        last = json.dumps(answers[-1].args)
        lines = json.loads(last)["blocks"][0]["text"]["text"].count("\n")
        if "Recent jobs in this channel" not in last or lines != LIST_LIMIT:
            raise SystemExit(f"bench listing: the answer does not list {LIST_LIMIT} jobs: {last[:500]}")
        return {
            "p50_ms": round(_percentile(timings, 0.50), 2),
            "p99_ms": round(_percentile(timings, 0.99), 2),
            "dynamodb_p50_ms": round(_percentile(in_dynamodb, 0.50), 2),
            "outside_dynamodb_p99_ms": round(
                _percentile([t - q for t, q in zip(timings, in_dynamodb, strict=True)], 0.99), 2
            ),
            "dynamodb_calls": sorted(operations),
            "max_ms": round(max(timings), 2),
            "requests": len(timings),
            "jobs_in_table": in_table,
            "jobs_in_channel": in_channel,
            "jobs_listed": lines,
            "fill_seconds": round(fill_seconds, 1),
            **written,
        }


def main() -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # the in-process Lambda code's logs stay off the figures
    try:
        figures = measure()
    finally:
        sys.stdout = out
    return publish(
        [
            at_most(
                f"/train list p99 ({figures['jobs_in_table']:,} jobs, {figures['jobs_in_channel']:,} in the channel)",
                figures["p99_ms"],
                "ms",
                P99_TARGET_MS,
                f"its DynamoDB calls alone p50 {figures['dynamodb_p50_ms']:.2f} ms; the rest p99 "
                f"{figures['outside_dynamodb_p99_ms']:.2f} ms",
            ),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
