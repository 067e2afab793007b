"""Block Kit builders: what the card and the replies show, within Slack's limits, with a text fallback."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bot import views
from bot.commands import USAGE, parse
from spotter import catalog
from spotter.events import Artifact
from spotter.spec import PARAM_KEYS, build_spec
from spotter.status import JobStatus
from spotter.store import Attempt, Failure, JobRecord, Metrics, Progress

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC).timestamp()
URL = "http://127.0.0.1:5000/spotter-artifacts/jobs/shapes-abc234/artifacts/best.pt?X-Amz-Signature=abc"


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
        }
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
    reply = views.failure_reply(running(failure=failure), now=T0 + 900)
    check_limits(reply)
    log = reply["blocks"][1]["text"]["text"]
    assert log.count("```") == 2 and log.rstrip().endswith("```")
    assert "line 499 &lt;@U999&gt; '''" in log and "line 0 " not in log
    assert "`train`" in reply["blocks"][0]["text"]["text"] and "crash" in reply["text"]
    assert "<@U0ALICE>" in reply["text"], "the requester is told"


def test_result_reply_has_maps_duration_cost_and_link() -> None:
    rec = running().model_copy(update={"status": JobStatus.SUCCEEDED, "finished_at": T0 + 3660})
    rec.attempts[0].ended_at = T0 + 3660
    reply = views.result_reply(rec, now=T0 + 4000, weights_url=URL)
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
    assert "$" not in shown(views.result_reply(rec, now=T0 + 60, weights_url=None))


def test_phase_and_best_replies() -> None:
    install = views.phase_reply(running(), "install", cached=False)
    assert "*install* started on g4dn.xlarge · spot" in shown(install)
    assert "restored from cache" in views.phase_reply(running(), "data", cached=True)["text"]
    best = views.best_reply(running())
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
    listing = views.job_list([running(), record()], now=T0 + 60)
    assert listing["text"] == f"Recent jobs in this channel: {running().job_id} (running), {record().job_id} (queued)"
    assert "epoch 7/20 · 35%" in shown(listing) and "best mAP50 0.750" in shown(listing)
    assert "No jobs in this channel yet" in views.job_list([], now=T0)["text"]


def test_weights_message() -> None:
    art = Artifact(name="best", key="jobs/x/artifacts/best.pt", sha256="ab" * 32, size=6_234_112)
    message = views.weights_message(running(), art, URL, expires_in=3 * 24 * 3600)
    assert "6.2 MB" in message["text"] and "sha256 `abababababab…`" in message["text"]
    assert "3 days" in message["text"] and URL in shown(message)


@pytest.mark.parametrize("status", list(JobStatus))
def test_every_status_renders(status: JobStatus) -> None:
    check_limits(views.job_card(running().model_copy(update={"status": status}), now=T0 + 100))
