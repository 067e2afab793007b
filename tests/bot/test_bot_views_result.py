"""The result reply of a finished job: its scores, per-class AP, promotion of a scheduled run, and downloads."""

from __future__ import annotations

from typing import Any

import pytest

from bot import replies
from spotter.events import Artifact, FinalMetrics
from spotter.status import JobStatus
from spotter.store import JobRecord, Metrics, Promotion
from tests.bot.test_bot_views import BEST, T0, URL, check_limits, running, shown

CFG = Artifact(name="cfg", key="jobs/x/artifacts/yolov4-persons.cfg", sha256="cd" * 32, size=12_288)


def succeeded(**fields: Any) -> JobRecord:
    rec = running().model_copy(update={"status": JobStatus.SUCCEEDED, "finished_at": T0 + 3660, **fields})
    rec.attempts[0].ended_at = T0 + 3660
    return rec


def scheduled(promotion: Promotion) -> JobRecord:
    rec = succeeded(promotion=promotion)
    return rec.model_copy(update={"spec": rec.spec.model_copy(update={"schedule_id": "nightly-shapes"})})


FINAL = FinalMetrics(map50=0.731, map50_95=0.512, precision=0.802, recall=0.744)


def test_the_result_shows_the_final_evaluation_as_a_table_with_the_best_epoch() -> None:
    reply = replies.result_reply(succeeded(final_metrics=FINAL), now=T0 + 4000, links=[(BEST, URL)], expires_in=3600)
    check_limits(reply)
    assert reply["text"].startswith("<@U0ALICE> Done: mAP50 0.731, mAP50-95 0.512 · took 1 h 01 min")
    [table] = [b for b in reply["blocks"] if "fields" in b]
    assert table["text"]["text"] == "*Final evaluation* of the trained weights"
    assert [f["text"] for f in table["fields"]] == [
        "*mAP50*\n0.731",
        "*mAP50-95*\n0.512",
        "*Precision*\n0.802",
        "*Recall*\n0.744",
        "*Best during training*\nmAP50 0.750 at epoch 6",
    ]


def test_without_final_scores_the_table_is_the_best_epochs() -> None:
    best = Metrics(current=6, map50=0.75, map50_95=0.45, precision=0.8, recall=0.7)
    reply = replies.result_reply(succeeded(best=best), now=T0 + 4000, links=[])
    [table] = [b for b in reply["blocks"] if "fields" in b]
    assert table["text"]["text"] == "*Best evaluation* (epoch 6)"
    assert "*Precision*\n0.800" in [f["text"] for f in table["fields"]]
    assert "mAP50 0.700 final, 0.750 best" in reply["text"], "the summary keeps the training's own words"


def test_a_few_classes_are_all_listed_best_first() -> None:
    final = FINAL.model_copy(update={"per_class_ap50": {"square": 0.61, "circle": 0.93, "tri<angle>": 0.2}})
    reply = replies.result_reply(succeeded(final_metrics=final), now=T0, links=[])
    block = next(b["text"]["text"] for b in reply["blocks"] if "Per-class" in b.get("text", {}).get("text", ""))
    assert block.startswith("*Per-class AP50* (3 classes)\n```\n") and block.endswith("\n```")
    rows = block.split("\n")[2:-1]
    assert [r.split()[0] for r in rows] == ["circle", "square", "tri&lt;angle&gt;"]
    assert rows[0].endswith("0.930  █████████")


def test_many_classes_show_the_best_and_worst_few_and_a_count() -> None:
    per_class = {f"class{i:02d}": i / 100 for i in range(80)}
    reply = replies.result_reply(
        succeeded(final_metrics=FINAL.model_copy(update={"per_class_ap50": per_class})), now=T0, links=[]
    )
    check_limits(reply)
    block = next(b["text"]["text"] for b in reply["blocks"] if "Per-class" in b.get("text", {}).get("text", ""))
    assert "80 classes, the best and the worst 5" in block
    rows = block.split("\n")[2:-1]
    assert [r.split()[0] for r in rows] == [
        *(f"class{i}" for i in (79, 78, 77, 76, 75)),
        "…",
        *(f"class0{i}" for i in (4, 3, 2, 1, 0)),
    ]
    assert "70 more" in rows[5]


def test_the_downloads_come_weights_first_with_companions_and_the_links_lifetime() -> None:
    reply = replies.result_reply(succeeded(), now=T0, links=[(BEST, URL), (CFG, URL + "&cfg")], expires_in=3600)
    rows = [b for b in reply["blocks"] if "accessory" in b]
    assert [(r["accessory"]["text"]["text"], r["accessory"]["url"]) for r in rows] == [
        ("Download weights", URL),
        ("Download", URL + "&cfg"),
    ]
    assert "Links work for 1 h 00 min: `/train weights" in shown(reply)
    assert reply["text"].endswith(f"Weights (6.2 MB): {URL}")


@pytest.mark.parametrize(
    ("promotion", "line"),
    [
        (
            Promotion(map50=0.7306, previous_map50=0.7124, previous_job="shapes-old123", promoted=True),
            "mAP50 0.712 → 0.731, +0.019 · promoted to models/shapes/yolov8n/",
        ),
        (
            Promotion(map50=0.701, previous_map50=0.712, previous_job="shapes-old123", reason="not better"),
            "mAP50 0.712 → 0.701, -0.011 · kept the promoted weights of job shapes-old123 (not better)",
        ),
        (
            Promotion(map50=0.731, promoted=True),
            "mAP50 0.731 · first promoted weights, promoted to models/shapes/yolov8n/",
        ),
        (Promotion(reason="no mAP50"), "mAP50 – · not promoted (no mAP50)"),
    ],
)
def test_a_scheduled_run_says_what_it_did_to_the_promoted_weights(promotion: Promotion, line: str) -> None:
    reply = replies.result_reply(scheduled(promotion), now=T0, links=[])
    assert line in shown(reply) and line in reply["text"]


def test_a_run_no_schedule_started_says_nothing_of_promotion() -> None:
    rec = succeeded(promotion=Promotion(map50=0.7, promoted=True))
    assert replies.promotion_line(rec) is None
    assert "promoted" not in shown(replies.result_reply(rec, now=T0, links=[]))
