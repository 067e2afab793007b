"""`python -m agent parse --summary` on every real log in tests/fixtures/logs, field by field, named and auto-detected.

The expected values were read off the logs (see SOURCES.md for where each comes from): the last progress line,
the last validation, the best mAP of the run, the failures it shows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.parsers.cli import main

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"

Row = tuple[Any, ...]


def expect(
    framework: str,
    progress: Row,
    metrics: Row = (None, None, None, None),
    best: Row = (None, None),
    per_class: dict[str, float] | None = None,
    errors: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    """The summary object: progress (unit, current, total, loss, eta), metrics (mAP50, mAP50-95, P, R), best."""
    unit, current, total, loss, eta = progress
    map50, map50_95, precision, recall = metrics
    return {
        "framework": framework,
        "progress": {"unit": unit, "current": current, "total": total, "loss": loss, "eta_seconds": eta},
        "metrics": {
            "map50": map50,
            "map50_95": map50_95,
            "precision": precision,
            "recall": recall,
            "per_class_ap50": per_class or {},
        },
        "best": {"map50": best[0], "map50_95": best[1]},
        "errors": [{"kind": kind, "line": line} for kind, line in errors],
    }


NO_PROGRESS_ITER = ("iteration", None, None, None, None)
NO_PROGRESS_EPOCH = ("epoch", None, None, None, None)

EXPECTED: dict[str, dict[str, Any]] = {
    # --- darknet -----------------------------------------------------------------------------------------------
    # AlexeyAB 2019: " 88855: 4.105720, 2.912859 avg loss, …" without "hours left", no max_batches printed;
    # "Last accuracy mAP@0.5 = 57.07 %, best = 57.65 %" (the later run's best stands: its _best.weights).
    "darknet_03.log": expect(
        "darknet", ("iteration", 88855, None, 2.912859, None), (0.5707, None, None, None), best=(0.5765, None)
    ),
    # Colab, roboflow fork: " 4000: … 1.641478 avg loss, … 0.155122 hours left", then the final evaluation
    # "mean average precision (mAP@0.50) = 0.899153" with per-class AP and "precision = 0.84, recall = 0.84";
    # darknet's own best stays "best = 90.37 %".
    "darknet_04.log": expect(
        "darknet",
        ("iteration", 4000, None, 1.641478, 0.155122 * 3600),
        (0.899153, None, 0.84, 0.84),
        best=(0.9037, None),
        per_class={"agua": 0.8452, "lixo": 0.9531},
    ),
    # pjreddie build under pm2, every line prefixed "0|yolo     | ": "10313: 0.576849, 0.677636 avg, …";
    # the Region lines' -nan is not a NaN loss.
    "darknet_05.log": expect("darknet", ("iteration", 10313, None, 0.677636, None)),
    # 2018 AlexeyAB build: " 2267: nan, nan avg, …": the loss is unknown and reported as a NaN loss.
    "darknet_06.log": expect(
        "darknet",
        ("iteration", 2267, None, None, None),
        errors=(("nan_loss", "2267: nan, nan avg, 0.001000 rate, 3.430528 seconds, 145088 images"),),
    ),
    # Multi-GPU AlexeyAB 2020: "40292: … 1.314193 avg loss, … 204.057233 hours left", then the mAP calculation
    # dies on "CUDA Error Prev: an illegal memory access" and darknet's assertion; the abort is the same crash.
    "darknet_07.log": expect(
        "darknet",
        ("iteration", 40292, None, 1.314193, 204.057233 * 3600),
        errors=(("crash", "darknet: ./src/utils.c:325: error: Assertion `0' failed."),),
    ),
    # 2018, resumed from backup/yolov3.backup, "avg loss" without "hours left"; an assertion from one thread,
    # and the last iteration printed after it: " 7018: 5.516436, 4.986133 avg loss, …".
    "darknet_08.log": expect(
        "darknet",
        ("iteration", 7018, None, 4.986133, None),
        errors=(("crash", "darknet: ./src/cuda.c:36: check_error: Assertion `0' failed."),),
    ),
    # OOM at start-up: " CUDA Error: out of memory", the same with strerror appended (one OOM), the assertion.
    "darknet_09.log": expect(
        "darknet",
        NO_PROGRESS_ITER,
        errors=(
            ("oom", "CUDA Error: out of memory"),
            ("crash", "darknet: ./src/utils.c:326: error: Assertion `0' failed."),
        ),
    ),
    # Two-GPU run resumed from yolov4_last.weights: " 402: … -1.000000 hours left" (no pace yet), then
    # " 404: 27.877659, 27.874437 avg loss, … 1282.733183 hours left".
    "darknet_10.log": expect("darknet", ("iteration", 404, None, 27.874437, 1282.733183 * 3600)),
    # 2020 build with 4389 hours left and "Last accuracy mAP@0.5 = 0.00 %, best = 0.00 %".
    "darknet_11.log": expect(
        "darknet", ("iteration", 2622, None, 2917.290771, 4389.243433 * 3600), (0.0, None, None, None), best=(0.0, None)
    ),
    # --- YOLOv5 --------------------------------------------------------------------------------------------------
    # v6.x console: "299/299 … 0.008668  0.002224  0 …" is epoch 300 of 300, box+obj+cls; the bar is finished.
    "yolov5_04.log": expect(
        "yolov5", ("epoch", 300, 300, 0.010892, 0.0), (0.988, 0.794, 0.987, 0.961), best=(0.988, 0.794)
    ),
    # v5.0 results.txt, rows 175/199 to 199/199: the total column 0.05531 is the loss; mAP@.5 peaks at 189/199
    # (0.8736), mAP@.5:.95 at 191/199 (0.5269).
    "yolov5_05.log": expect(
        "yolov5", ("epoch", 200, 200, 0.05531, None), (0.8348, 0.4883, 0.7692, 0.9444), best=(0.8736, 0.5269)
    ),
    # v6.2 on Colab, early stopping at 359/3999: the last row's box+obj+cls 0.02659+0.05814+0.001891;
    # "360 epochs completed" leaves nothing to wait for; the best.pt validation with its three classes.
    "yolov5_06.log": expect(
        "yolov5",
        ("epoch", 360, 4000, 0.086621, 0.0),
        (0.189, 0.0887, 0.211, 0.257),
        best=(0.189, 0.0887),
        per_class={"metal": 0.0108, "other": 0.142, "plastic": 0.414},
    ),
    # v3.1 (Nov 2020) in a narrow terminal: "box obj cls total targets" header, the bar cut at "[00:48<00:"
    # (no ETA), the validation header typed over ("Targetsbox is").
    "yolov5_07.log": expect(
        "yolov5", ("epoch", 6, 250, 0.08943, None), (0.203, 0.0525, 0.23, 0.328), best=(0.203, 0.0525)
    ),
    # Losses NaN on GPU: "1/99 … nan nan nan … 7/7 [00:15<00:00, …]" and an all-zero validation.
    "yolov5_08.log": expect(
        "yolov5",
        ("epoch", 2, 100, None, 15.0 * 98),
        (0.0, 0.0, 0.0, 0.0),
        best=(0.0, 0.0),
        errors=(
            (
                "nan_loss",
                "1/99     2.64G         nan       nan       nan         4       416: 100%|██████████| 7/7 "
                "[00:15<00:00,  2.27s/it]",
            ),
        ),
    ),
    # 4-GPU DDP run of yolov3.yaml in the YOLOv5 repo (2023), epochs elided by its author: only the best.pt
    # validation, 20 VOC classes.
    "yolov5_09.log": expect(
        "yolov5",
        NO_PROGRESS_EPOCH,
        (0.819, 0.569, 0.794, 0.763),
        best=(0.819, 0.569),
        per_class={
            "aeroplane": 0.897,
            "bicycle": 0.908,
            "bird": 0.777,
            "boat": 0.7,
            "bottle": 0.744,
            "bus": 0.904,
            "car": 0.93,
            "cat": 0.866,
            "chair": 0.675,
            "cow": 0.859,
            "diningtable": 0.731,
            "dog": 0.847,
            "horse": 0.909,
            "motorbike": 0.883,
            "person": 0.885,
            "pottedplant": 0.557,
            "sheep": 0.837,
            "sofa": 0.776,
            "train": 0.875,
            "tvmonitor": 0.825,
        },
    ),
    # results.csv (v6+), epochs 0 to 20: the last row's train/box+obj+cls losses, no total epochs in the file;
    # mAP_0.5 and mAP_0.5:0.95 peak at epoch 18.
    "yolov5_10.log": expect(
        "yolov5",
        ("epoch", 21, None, 0.050132 + 0.063445 + 0.010177, None),
        (0.4939, 0.22768, 0.73449, 0.46653),
        best=(0.55489, 0.28678),
    ),
    # v7.0-207, 4×RTX 3090 DDP: "99/99 … 0.04154 0.06544 0.01943 …" and the best.pt validation 0.553/0.365;
    # epoch 99's own validation (0.557) is the best mAP50.
    "yolov5_11.log": expect(
        "yolov5", ("epoch", 100, 100, 0.12641, 0.0), (0.553, 0.365, 0.672, 0.501), best=(0.557, 0.365)
    ),
    # --- Scaled-YOLOv4 ---------------------------------------------------------------------------------------------
    # results.txt rows 288/299 to 293/299: "293/299 … 0.1072 (total) … 0.3718 0.6887 0.5862 0.3786 …";
    # mAP@.5 peaks in the last row, mAP@.5:.95 in 291/299.
    "scaledyolov4_02.log": expect(
        "scaled-yolov4", ("epoch", 294, 300, 0.1072, None), (0.5862, 0.3786, 0.3718, 0.6887), best=(0.5862, 0.3788)
    ),
    # yolov4-csp on Colab, epochs 290–299 with libpng warnings glued to the bars: "299/299 … 0.03029 …
    # 43/43 [00:50<00:00, …]"; mAP@.5 peaks at 295/299 (0.754), mAP@.5:.95 at 291/299 (0.481).
    "scaledyolov4_03.log": expect(
        "scaled-yolov4", ("epoch", 300, 300, 0.03029, 0.0), (0.73, 0.469, 0.727, 0.711), best=(0.754, 0.481)
    ),
    # The same run's start: Namespace(cfg='models/yolov4-csp_416.cfg'), epochs 0–2; "2/299 … 0.2093 …
    # 43/43 [00:55<00:00, …]" leaves 297 epochs of 55 s.
    "scaledyolov4_04.log": expect(
        "scaled-yolov4",
        ("epoch", 3, 300, 0.2093, 55.0 * 297),
        (0.000273, 4.44e-05, 0.0, 0.0),
        best=(0.000273, 4.44e-05),
    ),
    # yolov4-csp single class, results.txt 0/99 to 8/99 with nan validation losses; mAP peaks at 4/99.
    "scaledyolov4_05.log": expect(
        "scaled-yolov4", ("epoch", 9, 100, 0.4026, None), (0.0, 0.0, 0.0, 0.0), best=(0.001297, 0.0001768)
    ),
    # A resumed yolov4-p5 run that got no further than its arguments (resume='get_last').
    "scaledyolov4_06.log": expect("scaled-yolov4", NO_PROGRESS_EPOCH),
    # yolov4-p5 on a Colab P100 before its first epoch.
    "scaledyolov4_07.log": expect("scaled-yolov4", NO_PROGRESS_EPOCH),
    # --- detectron2 ------------------------------------------------------------------------------------------------
    # v0.2–0.4 console: "eta: 0:00:00  iter: 299  total_loss: 0.3553"; no MAX_ITER in the log, no evaluation.
    "detectron2_01.log": expect("detectron2", ("iteration", 300, None, 0.3553, 0.0)),
    # v0.6 RetinaNet on BDD, the evaluation after training: the bbox table (AP 29.556, AP50 53.620); the
    # copypaste lines repeat it with 4 decimals.
    "detectron2_02.log": expect("detectron2", NO_PROGRESS_ITER, (0.5362, 0.29556, None, None), best=(0.5362, 0.29556)),
    # metrics.json of a 2025 run (two lines for iteration 19: the run was restarted into the same file),
    # the last at iteration 299 with eta_seconds 0.0; no evaluation.
    "detectron2_03.log": expect("detectron2", ("iteration", 300, None, 0.3522665523341857, 0.0)),
    # metrics.json (2021) with evaluations at 99 and 199 and after training ("iteration": 300): bbox/AP50 100.0,
    # bbox/AP 75.7732…; NaN APs are JSON NaN.
    "detectron2_04.log": expect(
        "detectron2",
        ("iteration", 300, None, 0.4286037251627022, 0.0),
        (1.0, 0.7577324, None, None),
        best=(1.0, 0.7577324),
    ),
    # d2go on detectron2 ≥ 0.5: "eta: 0:02:11  iter: 99  total_loss: 1.301".
    "detectron2_05.log": expect("detectron2", ("iteration", 100, None, 1.301, 131.0)),
    # 2020 multi-GPU Cascade R-CNN: "eta: N/A  iter: 120  total_loss: 2.308".
    "detectron2_06.log": expect("detectron2", ("iteration", 121, None, 2.308, None)),
    # The file log (log.txt) format: "[04/14 09:06:23] d2.utils.events INFO:  eta: 0:10:36  iter: 219  total_loss: 8.772".
    "detectron2_07.log": expect("detectron2", ("iteration", 220, None, 8.772, 636.0)),
    # "FloatingPointError: Loss became infinite or NaN at iteration=2137!" ends the traceback.
    "detectron2_08.log": expect(
        "detectron2",
        NO_PROGRESS_ITER,
        errors=(
            ("nan_loss", "FloatingPointError: Loss became infinite or NaN at iteration=2137!"),
            ("crash", "FloatingPointError: Loss became infinite or NaN at iteration=2137!"),
        ),
    ),
    # CUDA OOM in losses.backward(), pasted with markdown bold: the traceback's exception is both.
    "detectron2_09.log": expect(
        "detectron2",
        NO_PROGRESS_ITER,
        errors=(
            (
                "crash",
                "**RuntimeError: CUDA out of memory.** Tried to allocate 1.71 GiB (GPU 0; 31.72 GiB total capacity; "
                "23.58 GiB already allocated; 1.58 GiB free; 29.08 GiB reserved in total by PyTorch)",
            ),
            (
                "oom",
                "**RuntimeError: CUDA out of memory.** Tried to allocate 1.71 GiB (GPU 0; 31.72 GiB total capacity; "
                "23.58 GiB already allocated; 1.58 GiB free; 29.08 GiB reserved in total by PyTorch)",
            ),
        ),
    ),
    # v0.1 (2019): "eta: 5:43:31  iter: 499  total_loss: 1.733".
    "detectron2_10.log": expect("detectron2", ("iteration", 500, None, 1.733, 5 * 3600 + 43 * 60 + 31.0)),
    # --- Ultralytics --------------------------------------------------------------------------------------------------
    # 8.3 "━━━" bar, CPU: "7/30 … 1.041 1.302 0.003855 … 12/12 1.2s/it 14.8s": 23 epochs to go at 14.8 s each.
    "ultralytics_07.log": expect(
        "ultralytics", ("epoch", 7, 30, 2.346855, 340.4), (0.895, 0.622, 0.81, 0.821), best=(0.895, 0.65)
    ),
    # 8.0.x multi-GPU, tqdm: "153/200 … 0.4639 0.2342 0.8053 … 99/99 [01:53<00:00, …]".
    "ultralytics_08.log": expect(
        "ultralytics", ("epoch", 153, 200, 1.5034, 113.0 * 47), (0.941, 0.821, 0.937, 0.904), best=(0.941, 0.821)
    ),
    # 8.1 (HUB): "72/1000 … 1.096 0.4883 1.098 … 16/16 [00:06<00:00, …]".
    "ultralytics_09.log": expect(
        "ultralytics", ("epoch", 72, 1000, 2.6823, 6.0 * 928), (0.995, 0.734, 0.994, 0.995), best=(0.995, 0.734)
    ),
    # A negative box loss: "22/55 … -0.2286 4.971 2.967 … [09:06<00:00, …]"; the validation before epoch 21 counts
    # for nothing but the best.
    "ultralytics_10.log": expect(
        "ultralytics", ("epoch", 22, 55, 7.7094, 546.0 * 33), (0.934, 0.563, 0.934, 0.876), best=(0.938, 0.563)
    ),
    # 8.3 "━━━" bars and an untrained model: "14/300 … 3.509 5.679 4.18 … 8/8 4.6it/s 1.7s", all metrics 0.
    "ultralytics_11.log": expect(
        "ultralytics", ("epoch", 14, 300, 13.368, 486.2), (0.0, 0.0, 0.0, 0.0), best=(0.0, 0.0)
    ),
    # 8.3.179 on Colab (notebook output indented by 4), EarlyStopping at 455/500: "455 epochs completed";
    # the best.pt validation of 26 letters.
    "ultralytics_12.log": expect(
        "ultralytics",
        ("epoch", 455, 500, 1.347, 0.0),
        (0.987, 0.939, 0.948, 0.897),
        best=(0.987, 0.939),
        per_class={
            "A": 0.995,
            "B": 0.973,
            "C": 0.913,
            "D": 0.995,
            "E": 0.995,
            "F": 0.971,
            "G": 0.995,
            "H": 0.995,
            "I": 0.995,
            "J": 0.995,
            "K": 0.972,
            "L": 0.995,
            "M": 0.995,
            "N": 0.995,
            "O": 0.995,
            "P": 0.995,
            "Q": 0.995,
            "R": 0.995,
            "S": 0.995,
            "T": 0.972,
            "U": 0.995,
            "V": 0.995,
            "W": 0.995,
            "X": 0.995,
            "Y": 0.949,
            "Z": 0.995,
        },
    ),
    # YOLOv8.0.223 on an Apple M2 CPU that slept (bars like "[2:47:57<00:00, 775.18s/it] "): "37/300 … 1.597 1.253
    # 1.507 … [01:00<00:00, …]"; mAP50 peaks at 29/300 (0.831), mAP50-95 at 35/300 (0.384).
    "ultralytics_13.log": expect(
        "ultralytics", ("epoch", 37, 300, 4.357, 60.0 * 263), (0.813, 0.352, 0.883, 0.73), best=(0.831, 0.384)
    ),
    # Segmentation in a narrow terminal (bars cut at "[04:54<00:00,  4."): four losses, box metrics first.
    "ultralytics_14.log": expect(
        "ultralytics", ("epoch", 111, 500, 2.767, 294.0 * 389), (0.984, 0.883, 0.962, 0.963), best=(0.984, 0.883)
    ),
    # Our own piped run: "20/20 … 0.8503 0.7146 1.187 … 13/13 4.2it/s 3.1s", then the "Validating best.pt" block.
    "ultralytics_shapes_cpu.log": expect(
        "ultralytics",
        ("epoch", 20, 20, 2.7519, 0.0),
        (0.995, 0.875, 0.983, 0.979),
        best=(0.995, 0.875),
        per_class={"rectangle": 0.994, "circle": 0.995},
    ),
}

# A headerless results.txt is the same file whether YOLOv5 ≤ v5 or Scaled-YOLOv4 wrote it; auto-detection
# reads it as Scaled-YOLOv4's (the values are the same either way).
AUTO_FRAMEWORK = {"yolov5_05.log": "scaled-yolov4"}


def summary(capsys: pytest.CaptureFixture[str], framework: str, log: str) -> dict[str, Any]:
    assert main(["--framework", framework, "--summary", str(LOGS / log)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    result: dict[str, Any] = json.loads(lines[0])
    return result


@pytest.mark.parametrize("log", sorted(EXPECTED))
@pytest.mark.parametrize("how", ["named", "auto"])
def test_summary_of_each_real_log(log: str, how: str, capsys: pytest.CaptureFixture[str]) -> None:
    want = EXPECTED[log]
    got = summary(capsys, want["framework"] if how == "named" else "auto", log)
    assert list(got) == ["framework", "progress", "metrics", "best", "errors"]
    assert got["framework"] == (AUTO_FRAMEWORK.get(log, want["framework"]) if how == "auto" else want["framework"])
    for section in ("progress", "metrics", "best"):
        assert list(got[section]) == list(want[section]), section
        for key, value in want[section].items():
            assert got[section][key] == (pytest.approx(value) if isinstance(value, float) else value), (section, key)
    assert got["errors"] == want["errors"]


def test_every_fixture_is_covered() -> None:
    assert sorted(p.name for p in LOGS.glob("*.log")) == sorted(EXPECTED)


def test_every_fixture_has_a_source() -> None:
    sources = (LOGS / "SOURCES.md").read_text()
    assert [log for log in sorted(EXPECTED) if f"| {log} |" not in sources] == []
