"""Block Kit builders: what the card and the replies show, within Slack's limits, with a text fallback."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bot import replies, views
from bot.commands import USAGE, parse
from spotter import catalog
from spotter.board import JobRow
from spotter.events import Artifact
from spotter.spec import PARAM_KEYS, build_spec
from spotter.status import JobStatus
from spotter.store import Attempt, Failure, JobRecord, Metrics, Progress

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC).timestamp()
URL = "http://127.0.0.1:5000/spotter-artifacts/jobs/shapes-abc234/artifacts/best.pt?X-Amz-Signature=abc"
BEST = Artifact(name="best", key="jobs/shapes-abc234/artifacts/best.pt", sha256="ab" * 32, size=6_234_112)


def record(status: JobStatus = JobStatus.QUEUED, **fields: Any) -> JobRecord:
    spec = build_spec("shapes", "yolov8n", [], requested_by="U0ALICE", channel="C0TRAINING", seed="views")
    created = datetime.fromtimestamp(T0, UTC).isoformat()
    return JobRecord(
        job_id=spec.job_id,
        status=status,
        spec=spec,
        channel=spec.channel,
        created_at=created,
        updated_at=created,
        **fields,
    )


def running(**fields: Any) -> JobRecord:
    return record(
        JobStatus.RUNNING,
        attempt=1,
        attempts=[
            Attempt(
                number=1,
                instance_id="i-1",
                instance_type="g4dn.xlarge",
                availability_zone="us-east-1a",
                market="spot",
                price_usd_hour=0.1578,
                started_at=T0 + 60,
            )
        ],
        phase="train",
        progress=Progress(unit="epoch", current=7, total=20, loss=1.23456, eta_seconds=300, seq=7),
        metrics=Metrics(current=7, map50=0.7, map50_95=0.4),
        best=Metrics(current=6, map50=0.75, map50_95=0.45),
        **fields,
    )


def shown(message: views.Message) -> str:
    """All the words a message shows (blocks flattened), to look for facts in."""
    return json.dumps(message["blocks"], ensure_ascii=False)


def check_limits(message: views.Message) -> None:
    assert message["text"].strip()
    for block in message["blocks"]:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
        for element in block.get("elements", []):
            if element.get("type") == "button":
                assert len(element.get("url", "")) <= 3000


def test_queued_card() -> None:
    rec = record()
    card = views.job_card(rec, now=T0 + 5)
    check_limits(card)
    assert card["blocks"][0]["text"]["text"] == "shapes · yolov8n"
    assert "Queued" in shown(card) and ":hourglass_flowing_sand:" in shown(card)
    assert "<@U0ALICE>" in shown(card) and rec.job_id in shown(card)
    assert "Queued" in card["text"] and rec.job_id in card["text"]


def test_running_card_shows_progress_metrics_and_instance() -> None:
    card = views.job_card(running(), now=T0 + 660)
    check_limits(card)
    text = shown(card)
    for fact in (
        "Running",
        ":gear:",
        "train",
        "epoch 7/20",
        "35%",
        "loss 1.235",
        "ETA 5 min",
        "0.700 (best 0.750)",
        "0.400 (best 0.450)",
        "g4dn.xlarge · spot · us-east-1a · $0.158/h",
        "elapsed 11 min",
    ):
        assert fact in text, fact
    assert "███████░░░░░░░░░░░░░" in text
    assert "epoch 7/20" in card["text"]
    assert "Download" not in text


def test_a_best_epoch_is_shown_only_where_it_scored_higher() -> None:
    # The best epoch is chosen by mAP50; a later epoch may have the higher mAP50-95.
    rec = running().model_copy(
        update={
            "metrics": Metrics(current=20, map50=0.994, map50_95=0.883),
            "best": Metrics(current=12, map50=0.995, map50_95=0.84),
        }
    )
    text = shown(views.job_card(rec, now=T0 + 660))
    assert "0.994 (best 0.995)" in text
    assert "0.883" in text and "best 0.840" not in text


def test_succeeded_card_has_the_download_button() -> None:
    rec = running(artifacts=[]).model_copy(update={"status": JobStatus.SUCCEEDED, "finished_at": T0 + 1200})
    card = views.job_card(rec, now=T0 + 5000, weights_url=URL)
    check_limits(card)
    buttons = [e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == [
        {
            "type": "button",
            "action_id": "download_weights",
            "text": {"type": "plain_text", "text": "Download weights"},
            "url": URL,
            "style": "primary",
        },
        {
            "type": "button",
            "action_id": views.LOGS_ACTION,
            "text": {"type": "plain_text", "text": "Logs"},
            "value": rec.job_id,
        },
    ]
    assert "elapsed 20 min" in shown(card)  # until the end, not until now
    assert "ETA" not in shown(card)


def test_failed_card_says_where_and_why_escaped() -> None:
    failure = Failure(phase="train", kind="oom", message="CUDA out of memory <!channel> & more")
    card = views.job_card(running(failure=failure).model_copy(update={"status": JobStatus.FAILED}), now=T0 + 900)
    text = shown(card)
    assert "Out of GPU memory (in *train*): CUDA out of memory &lt;!channel&gt; &amp; more" in text
    assert "<!channel>" not in text


def test_failure_reply_has_the_last_lines_that_fit_in_a_code_block() -> None:
    lines = [f"line {i} <@U999> ```" for i in range(500)]
    failure = Failure(phase="train", kind="crash", message="exit 1", last_lines=lines)
    reply = replies.failure_reply(running(failure=failure), now=T0 + 900)
    check_limits(reply)
    log = reply["blocks"][1]["text"]["text"]
    assert log.count("```") == 2 and log.rstrip().endswith("```")
    assert "line 499 &lt;@U999&gt; '''" in log and "line 0 " not in log
    assert "`train`" in reply["blocks"][0]["text"]["text"] and "crash" in reply["text"]
    assert "<@U0ALICE>" in reply["text"], "the requester is told"


def test_result_reply_has_maps_duration_cost_and_link() -> None:
    rec = running().model_copy(update={"status": JobStatus.SUCCEEDED, "finished_at": T0 + 3660})
    rec.attempts[0].ended_at = T0 + 3660
    reply = replies.result_reply(rec, now=T0 + 4000, links=[(BEST, URL)], expires_in=3600)
    check_limits(reply)
    text = shown(reply)
    assert "mAP50 0.700 final, 0.750 best" in text and "mAP50-95 0.450 at the best mAP50" in text
    assert "took 1 h 01 min" in text
    assert "about $0.16 of instance time" in text  # 3600 s at $0.1578/h
    assert "($0.37 less than on-demand (70%))" in text  # against g4dn.xlarge's $0.526/h list price
    assert reply["text"].startswith("<@U0ALICE> Done:")
    assert URL in reply["text"] and URL in text


def test_result_reply_without_price_says_no_cost() -> None:
    rec = record(JobStatus.SUCCEEDED, finished_at=T0 + 60, attempts=[Attempt(number=1, started_at=T0)])
    assert "$" not in shown(replies.result_reply(rec, now=T0 + 60, links=[]))


def test_phase_and_best_replies() -> None:
    install = replies.phase_reply(running(), "install", cached=False)
    assert "*install* started on g4dn.xlarge · spot" in shown(install)
    assert "restored from cache" in replies.phase_reply(running(), "data", cached=True)["text"]
    best = replies.best_reply(running())
    assert "New best mAP50 *0.750*" in shown(best) and "at epoch 6/20" in best["text"]


def test_help_lists_commands_datasets_models_and_option_ranges() -> None:
    message = views.help_message()
    check_limits(message)
    text = shown(message)
    for usage, _ in USAGE.values():
        assert usage in text
    for name in [*catalog.DATASETS, *catalog.MODELS, *PARAM_KEYS]:
        assert f"`{name}" in text, name
    for rng in ("1–10000", "100–2000000", "32–4096", "1–8", "over 0, up to 72", "`scratch` or `pretrained`"):
        assert rng in text, rng


def test_not_available_and_errors() -> None:
    message = views.not_available("logs")
    assert "`/train logs` is not available yet" in message["text"]
    assert "/train status [job]" in message["text"]
    assert views.error_message("Unknown dataset `x`.")["blocks"][0]["text"]["text"] == ":warning: Unknown dataset `x`."


def test_queued_message_names_the_job_and_its_settings() -> None:
    cmd = parse("shapes yolov8n epochs=5 spot=false")
    message = views.queued_message(cmd, "shapes-abc234")  # type: ignore[arg-type]
    assert message["text"].startswith("Queued `shapes-abc234`: shapes · yolov8n (5 epochs, img 128, batch 16,")
    assert "on-demand" in message["text"]


def test_job_list_and_empty_list() -> None:
    listing = views.job_list([JobRow.of(running()), JobRow.of(record())], now=T0 + 60)
    assert listing["text"] == f"Recent jobs in this channel: {running().job_id} (running), {record().job_id} (queued)"
    assert "epoch 7/20 · 35%" in shown(listing) and "best mAP50 0.750" in shown(listing)
    assert "No jobs in this channel yet" in views.job_list([], now=T0)["text"]


def test_weights_message_lists_each_file_with_size_sha256_and_expiry() -> None:
    cfg = Artifact(name="cfg", key="jobs/x/artifacts/yolov4-persons.cfg", sha256="cd" * 32, size=12_288)
    names = Artifact(name="names", key="jobs/x/artifacts/obj.names", sha256="ef" * 32, size=812)
    links = [(BEST, URL), (cfg, URL + "&cfg"), (names, URL + "&names")]
    message = views.weights_message(running(), links, expires_in=3600, now=T0)
    check_limits(message)
    assert "6.2 MB" in message["text"] and "sha256 `abababababab…`" in message["text"]
    assert "With cfg, names." in message["text"] and "works for 1 h" in message["text"] and URL in message["text"]
    rows = [b for b in message["blocks"] if "accessory" in b]
    assert [r["accessory"]["url"] for r in rows] == [URL, URL + "&cfg", URL + "&names"]
    assert [r["accessory"].get("style") for r in rows] == ["primary", None, None]
    assert {r["accessory"]["action_id"] for r in rows} == {views.DOWNLOAD_ACTION}, "one action id, one per block"
    assert rows[0]["text"]["text"] == "`best.pt` · best weights · 6.2 MB\nsha256 `" + "ab" * 32 + "`"
    assert "`yolov4-persons.cfg` · network cfg · 12.3 kB" in rows[1]["text"]["text"]
    assert "`obj.names` · class names · 812 B" in rows[2]["text"]["text"]
    assert f"<!date^{int(T0) + 3600}^" in shown(message) and "2025-01-01 13:00 UTC" in shown(message)
    with pytest.raises(ValueError):
        views.weights_message(running(), [], expires_in=3600, now=T0)


@pytest.mark.parametrize(
    ("size", "says"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (6_234_112, "6.2 MB"), (245_000_000, "245 MB"), (1.3e9, "1.3 GB")],
)
def test_sizes_read_in_decimal_units(size: float, says: str) -> None:
    assert views.human_size(int(size)) == says


def test_a_card_shows_logs_once_an_instance_ran_the_job() -> None:
    def ids(rec: JobRecord, url: str | None = None) -> list[str]:
        card = views.job_card(rec, now=T0 + 60, weights_url=url)
        return [e["action_id"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]]

    assert ids(record()) == ["cancel_job"]  # queued: nothing ran, nothing to read
    launching = record(JobStatus.LAUNCHING, attempt=1, attempts=[Attempt(number=1, started_at=T0)])
    assert ids(launching) == ["cancel_job"]
    assert ids(running()) == ["show_logs", "cancel_job"]
    failed = running().model_copy(update={"status": JobStatus.FAILED})
    assert ids(failed) == ["show_logs"]
    done = running().model_copy(update={"status": JobStatus.SUCCEEDED})
    assert ids(done) == ["show_logs"], "no weights yet: no download"
    assert ids(done, URL) == ["download_weights", "show_logs"]
    logs = next(e for b in views.job_card(running(), now=T0)["blocks"] if b["type"] == "actions" for e in b["elements"])
    assert logs == {
        "type": "button",
        "action_id": "show_logs",
        "text": {"type": "plain_text", "text": "Logs"},
        "value": running().job_id,
    }


def test_the_card_shows_trends_the_best_epoch_and_mAP50_95_only_where_given() -> None:
    history = [Metrics(current=i, map50=v) for i, v in enumerate([0.1, 0.3, 0.5, 0.75, 0.7], start=2)]
    losses = [(i, 3.0 / i) for i in range(1, 8)]
    rec = running(metric_history=history, loss_history=losses)
    text = shown(views.job_card(rec, now=T0 + 660))
    assert "best at epoch 6" in text and "g4dn.xlarge · spot · us-east-1a · $0.158/h · attempt 1" in text
    assert "loss 1.235 `█" in text and "▁`" in text, "the loss trend falls"
    darknet = rec.model_copy(update={"metrics": Metrics(current=7, map50=0.7), "best": Metrics(current=6, map50=0.75)})
    assert "mAP50-95" not in shown(views.job_card(darknet, now=T0 + 660))
    card = views.job_card(rec, now=T0 + 660)
    assert (
        card["text"]
        == f"shapes · yolov8n: Running (train), epoch 7/20 · 35%, loss 1.235, best mAP50 0.750. Job {rec.job_id}."
    )


def test_sparklines() -> None:
    assert views.sparkline([1.0, 2.0]) == "", "too few points for a shape"
    assert views.sparkline([0.0, 0.5, 1.0]) == "▁▅█"
    assert views.sparkline([2.0, 2.0, 2.0]) == "▁▁▁"
    assert len(views.sparkline([float(i) for i in range(1000)])) == views.SPARK_WIDTH


@pytest.mark.parametrize("status", list(JobStatus))
def test_every_status_renders(status: JobStatus) -> None:
    check_limits(views.job_card(running().model_copy(update={"status": status}), now=T0 + 100))
