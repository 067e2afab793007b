"""The log parsers: event streams, errors, auto-detection, line splitting, the parse CLI.

The summaries of the real logs, field by field, are in test_parsers_real_logs.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.parsers import FRAMEWORKS, get_parser
from agent.parsers.base import ErrorSeen, Metric, Parsed, Parser, Progress
from agent.parsers.bench import throughput
from agent.parsers.cli import main
from agent.parsers.lines import MAX_LINE, LineSplitter

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def feed(parser: Parser, text: str) -> list[Parsed]:
    return [item for line in text.splitlines() for item in parser.feed(line)]


def progress(items: list[Parsed]) -> list[Progress]:
    return [i for i in items if isinstance(i, Progress)]


def metrics(items: list[Parsed]) -> list[Metric]:
    return [i for i in items if isinstance(i, Metric)]


def errors(items: list[Parsed]) -> list[tuple[str, str]]:
    return [(i.error, i.line) for i in items if isinstance(i, ErrorSeen)]


# --- event streams -----------------------------------------------------------------------------------


def test_darknet_events_from_the_real_log() -> None:
    items = feed(get_parser("darknet"), (LOGS / "darknet_03.log").read_text())
    assert [(p.current, p.total, p.loss) for p in progress(items)] == [(71931, None, 2.76765), (88855, None, 2.912859)]
    assert [m.map50 for m in metrics(items)] == [0.5975, 0.5707]


DARKNET_AB = """\
 max_batches = 6000
 1000: 2.345000, 2.567000 avg loss, 0.001000 rate, 3.200000 seconds, 64000 images, 12.300000 hours left
class_id = 0, name = person, ap = 78.90%   \t (TP = 1234, FP = 567)
class_id = 1, name = traffic light, \t ap = 45.10 %
 for conf_thresh = 0.25, precision = 0.72, recall = 0.61, F1-score = 0.66
 mean average precision (mAP@0.50) = 0.620000, or 62.00 %
 Last accuracy mAP@0.50 = 62.00 %, best = 62.00 %
 1001: 2.300000, 2.560000 avg loss, 0.001000 rate, 3.100000 seconds, 64064 images, 12.200000 hours left
 Last accuracy mAP@0.50 = 62.00 %, best = 62.00 %
"""


def test_darknet_alexeyab_iterations_evaluation_and_per_class_ap() -> None:
    parser = get_parser("darknet")
    items = feed(parser, DARKNET_AB)
    first, second = progress(items)
    assert (first.current, first.total, first.loss, first.eta_seconds) == (
        1000,
        6000,
        2.567,
        pytest.approx(12.3 * 3600),
    )
    assert second.current == 1001
    # The mean AP line carries what the evaluation printed before it; the repeated "Last accuracy" adds nothing.
    (metric,) = metrics(items)
    assert (metric.current, metric.map50, metric.precision, metric.recall) == (1000, 0.62, 0.72, 0.61)
    assert metric.per_class_ap50 == {"person": 0.789, "traffic light": 0.451}
    assert parser.summary()["best"] == {"map50": 0.62, "map50_95": None}


def test_darknet_pjreddie_format_and_eta_from_max_batches() -> None:
    items = feed(
        get_parser("darknet"), "max_batches = 500\n 100: 9.5, 10.25 avg, 0.001 rate, 2.0 seconds, 6400 images\n"
    )
    (p,) = progress(items)
    assert (p.current, p.total, p.loss, p.eta_seconds) == (100, 500, 10.25, 800.0)


def test_darknet_prefixed_lines_first_iteration_and_2018_map_line() -> None:
    log = """\
0|yolo     | 10313: 0.576849, 0.677636 avg, 0.002000 rate, 3.992994 seconds, 1320064 images
 402: 27.874079, 27.874079 avg loss, 0.000068 rate, 9.233807 seconds, 25728 images, -1.000000 hours left
 mean average precision (mAP) = 0.532781, or 53.28 %
 mean average precision (mAP@0.25) = 0.000000, or 0.00 %
"""
    items = feed(get_parser("darknet"), log)
    # A process manager's prefix does not hide the iteration; "-1 hours left" is no pace yet, not an ETA.
    assert [(p.current, p.loss, p.eta_seconds) for p in progress(items)] == [
        (10313, 0.677636, None),
        (402, 27.874079, None),
    ]
    # Builds from 2018 print "(mAP)"; mAP at IoU 0.25 is not mAP@0.5.
    assert [m.map50 for m in metrics(items)] == [0.532781]


YOLOV5_HEADERS = [
    # v6: box obj cls, "labels"
    (
        "     Epoch   gpu_mem       box       obj       cls    labels  img_size",
        "     29/99     3.65G   0.04316   0.05112   0.01637        45       640",
    ),
    # v7: "_loss" names, "Instances"
    (
        "      Epoch    GPU_mem   box_loss   obj_loss   cls_loss  Instances       Size",
        "      29/99      3.65G    0.04316    0.05112    0.01637         45        640",
    ),
    # v4/v5: a total column, which is the loss when present
    (
        "     Epoch   gpu_mem       box       obj       cls     total    labels  img_size",
        "     29/99     3.65G   0.04316   0.05112   0.01637    0.1107        45       640",
    ),
    # v1–v3 (and Scaled-YOLOv4): GIoU, total, targets
    (
        "     Epoch   gpu_mem      GIoU       obj       cls     total   targets  img_size",
        "     29/99     3.65G   0.04316   0.05112   0.01637    0.1107        45       640",
    ),
]


@pytest.mark.parametrize(("header", "row"), YOLOV5_HEADERS)
def test_yolov5_epochs_are_one_based_and_loss_is_box_obj_cls(header: str, row: str) -> None:
    line = row + ": 100%|██████████| 8/8 [00:05<00:00,  1.58it/s]"
    (p,) = progress(feed(get_parser("yolov5"), f"{header}\n{line}\n"))
    assert (p.unit, p.current, p.total) == ("epoch", 30, 100)
    assert p.loss == pytest.approx(0.1107 if "total" in header else 0.11065)
    # 5 s an epoch, 70 epochs to go.
    assert p.eta_seconds == 350.0


@pytest.mark.parametrize(
    ("bar", "epochs_left", "eta"),
    [
        ("100%|██████████| 99/99 [01:53<00:00,  1.14s/it]", 47, 113.0 * 47),
        ("38% ━━━━╸─────── 5/13 3.4it/s 1.5s<2.4s", 15, 2.4 + 3.9 * 15),
        ("100% ━━━━━━━━━━━━ 12/12 1.2s/it 14.8s", 23, 14.8 * 23),
        ("100%|██████████| 13/13 [2:47:57<00:00, 775.18s/it] ", 2, 10077.0 * 2),
        ("79% 34/43 [00:40<00:09,  1.05s/it]libpng warning: iCCP: known incorrect sRGB profile", 1, 9 + 49.0),
        ("100%|██████████| 619/619 03:37", 0, 0.0),
        # No pace yet, a bar cut by the terminal, a finished count that is not the total: no ETA.
        ("  0% ──────────── 0/13  0.7s", 5, None),
        ("  0%|          | 0/43 [00:00<?, ?it/s]", 3, None),
        ("100%|█| 211/211 [00:48<00:", 3, None),
        ("50% ━━━━━━────── 6/12 1.1it/s 5.6s", 3, None),
    ],
)
def test_yolo_eta_from_each_bar_shape(bar: str, epochs_left: int, eta: float | None) -> None:
    header = "      Epoch    GPU_mem   box_loss   cls_loss   dfl_loss  Instances       Size"
    row = f"{'7/' + str(7 + epochs_left):>11}      2.71G      1.204      1.611      1.241         51        640: {bar}"
    (p,) = progress(feed(get_parser("ultralytics"), f"{header}\n{row}\n"))
    assert p.eta_seconds == (pytest.approx(eta) if eta is not None else None)


def test_yolo_epochs_completed_leaves_nothing_to_wait_for() -> None:
    log = """\
     Epoch   gpu_mem       box       obj       cls    labels  img_size
  359/3999     14.2G   0.02659   0.05814  0.001891       421       640: 100% 3/3 [00:01<00:00,  1.53it/s]
Stopping training early as no improvement observed in last 100 epochs. Best results observed at epoch 259, best model saved as best.pt.
360 epochs completed in 0.338 hours.
"""
    parser = get_parser("yolov5")
    first, last = progress(feed(parser, log))
    assert (first.current, first.total, first.eta_seconds) == (360, 4000, 3640.0)
    # Early stopping ends the run short of its total: what is left to wait for is the final validation.
    assert (last.current, last.total, last.loss, last.eta_seconds) == (360, 4000, pytest.approx(0.086621), 0.0)
    # With nothing before it, the line says nothing.
    assert feed(get_parser("ultralytics"), "455 epochs completed in 2.401 hours.") == []


def test_yolov5_row_without_its_header_still_counts() -> None:
    row = "     29/99     3.65G   0.04316   0.05112   0.01637    0.1107        45       640:  38%|███▊      | 3/8 [00:02<00:03,  1.5it/s]"
    (p,) = progress(get_parser("yolov5").feed(row))
    # A fourth loss column that is the sum of the first three is the total, not a fourth loss.
    assert (p.current, p.loss, p.eta_seconds) == (30, 0.1107, 3 + 5 * 70)


def test_yolov5_validation_and_final_per_class_rows() -> None:
    log = """\
     Epoch   gpu_mem       box       obj       cls    labels  img_size
     99/99     3.65G   0.04316   0.05112   0.01637        45       640: 100%|██████████| 8/8 [00:05<00:00,  1.58it/s]
               Class     Images     Labels          P          R     mAP@.5 mAP@.5:.95: 100%|██████████| 2/2 [00:01<00:00,  1.9it/s]
                 all        128        929      0.716      0.637      0.702      0.463
              person        128        254      0.823      0.681      0.783      0.502
       traffic light        128         14      0.567      0.214      0.352      0.137
              banana        128          1          1          0      0.995      0.398
Speed: 0.2ms pre-process, 5.1ms inference, 1.2ms NMS per image at shape (32, 3, 640, 640)
"""
    parser = get_parser("yolov5")
    items = feed(parser, log)
    all_row, with_classes = metrics(items)
    assert (all_row.current, all_row.precision, all_row.recall, all_row.map50, all_row.map50_95) == (
        100,
        0.716,
        0.637,
        0.702,
        0.463,
    )
    assert all_row.per_class_ap50 == {}
    assert with_classes.map50 == 0.702
    assert with_classes.per_class_ap50 == {"person": 0.783, "traffic light": 0.352, "banana": 0.995}
    assert errors(items) == []
    assert parser.summary()["metrics"]["per_class_ap50"] == with_classes.per_class_ap50


def test_yolov5_results_csv_rows() -> None:
    log = """\
               epoch,      train/box_loss,      train/obj_loss,      train/cls_loss,   metrics/precision,      metrics/recall,     metrics/mAP_0.5,metrics/mAP_0.5:0.95,        val/box_loss,        val/obj_loss,        val/cls_loss,               x/lr0,               x/lr1,               x/lr2
                   0,            0.11359,           0.070027,           0.040522,             0.00041,             0.02439,          0.00023451,          5.3021e-05,            0.093553,            0.04553,            0.03741,            0.070297,           0.0033187,           0.0033187
                   1,            0.09211,           0.061200,           0.030011,              0.2105,              0.3312,              0.1877,             0.07712,            0.081220,            0.04101,            0.03012,            0.040297,           0.0066187,           0.0066187
"""
    parser = get_parser("auto")
    items = feed(parser, log)
    assert parser.framework == "yolov5"
    assert [(p.current, p.loss) for p in progress(items)] == [(1, 0.224139), (2, pytest.approx(0.183321))]
    last = metrics(items)[-1]
    assert (last.current, last.precision, last.recall, last.map50, last.map50_95) == (
        2,
        0.2105,
        0.3312,
        0.1877,
        0.07712,
    )


def test_scaled_yolov4_console_uses_the_total_column() -> None:
    # Scaled-YOLOv4 kept the GIoU header of the YOLOv5 it forked (YOLOv5 v3 renamed GIoU to box).
    log = """\
     Epoch   gpu_mem      GIoU       obj       cls     total   targets  img_size
    49/299     13.4G   0.04012   0.06113   0.01288    0.1141        70       640: 100%|██████████| 1000/1000 [10:00<00:00,  1.67it/s]
               Class     Images    Targets          P          R     mAP@.5 mAP@.5:.95: 100%|██████████| 157/157 [01:00<00:00,  2.6it/s]
                 all      5e+03  3.63e+04      0.409      0.754      0.672      0.484
"""
    parser = get_parser("auto")
    items = feed(parser, log)
    assert parser.framework == "scaled-yolov4"
    (p,) = progress(items)
    assert (p.current, p.total, p.loss, p.eta_seconds) == (50, 300, 0.1141, 600.0 * 250)
    (m,) = metrics(items)
    assert (m.current, m.map50, m.map50_95) == (50, 0.672, 0.484)


def test_ultralytics_old_tqdm_bar_and_segmentation_columns() -> None:
    log = """\
      Epoch    GPU_mem   box_loss   seg_loss   cls_loss   dfl_loss  Instances       Size
        1/3      2.71G      1.204     0.5012      1.611      1.241         51        640: 100%|██████████| 8/8 [00:03<00:00,  2.39it/s]
                 Class     Images  Instances      Box(P          R      mAP50  mAP50-95)     Mask(P          R      mAP50  mAP50-95): 100%|██████████| 4/4 [00:01<00:00,  3.1it/s]
                   all        128        929      0.766      0.652      0.728      0.538      0.742      0.626      0.688      0.446
"""
    items = feed(get_parser("ultralytics"), log)
    (p,) = progress(items)
    assert (p.current, p.total, p.loss, p.eta_seconds) == (1, 3, pytest.approx(4.5572), 6.0)
    (m,) = metrics(items)
    # Box metrics come first; the mask ones are not the detector's mAP.
    assert (m.precision, m.recall, m.map50, m.map50_95) == (0.766, 0.652, 0.728, 0.538)


def test_ultralytics_real_run_events() -> None:
    splitter = LineSplitter()
    lines = splitter.feed((LOGS / "ultralytics_shapes_cpu.log").read_bytes()) + splitter.flush()
    parser = get_parser("ultralytics")
    items = [item for line in lines for item in parser.feed(line)]
    steps = progress(items)
    assert {p.total for p in steps} == {20}
    assert [p.current for p in steps] == sorted(p.current for p in steps)
    assert steps[0].current == 1 and steps[-1].current == 20
    # The first redraw of an epoch has no pace yet; a later one does.
    assert steps[0].eta_seconds is None and steps[1].eta_seconds is not None
    assert steps[1].loss == pytest.approx(6.705 + 4.434 + 4.373)
    found = metrics(items)
    # One validation per epoch, then the best.pt validation without and with its per-class rows.
    assert [m.current for m in found] == [*range(1, 21), 20, 20]
    assert found[17].map50_95 == 0.875 and found[18].map50_95 == 0.867
    assert found[-1].per_class_ap50 == {"rectangle": 0.994, "circle": 0.995}
    assert errors(items) == []


D2_EVAL = """\
[10/27 18:20:01 d2.engine.defaults]: Running with full config:
SOLVER:
  BASE_LR: 0.00025
  MAX_ITER: 300
[10/27 18:20:30 d2.utils.events]:  eta: 1 day, 2:03:04  iter: 19  total_loss: 1.986  loss_cls: 0.595  time: 1.1678  lr: 1.6e-05  max_mem: 2725M
[10/27 18:22:30 d2.evaluation.coco_evaluation]: Evaluation results for bbox:
|   AP   |  AP50  |  AP75  |  APs  |  APm   |  APl   |
|:------:|:------:|:------:|:-----:|:------:|:------:|
| 66.145 | 84.717 | 78.212 | 0.000 | 52.672 | 80.585 |
[10/27 18:22:30 d2.evaluation.coco_evaluation]: Per-category bbox AP:
| category   | AP     |
|:-----------|:-------|
| balloon    | 66.145 |
[10/27 18:22:31 d2.evaluation.coco_evaluation]: Evaluation results for segm:
|   AP   |  AP50  |  AP75  |  APs  |  APm   |  APl   |
|:------:|:------:|:------:|:-----:|:------:|:------:|
| 76.535 | 83.808 | 83.808 | 0.000 | 56.958 | 93.681 |
[10/27 18:22:31 d2.engine.defaults]: Evaluation results for balloon_val in csv format:
[10/27 18:22:31 d2.evaluation.testing]: copypaste: Task: bbox
[10/27 18:22:31 d2.evaluation.testing]: copypaste: AP,AP50,AP75,APs,APm,APl
[10/27 18:22:31 d2.evaluation.testing]: copypaste: 66.1451,84.7174,78.2120,0.0000,52.6719,80.5852
[10/27 18:22:31 d2.evaluation.testing]: copypaste: Task: segm
[10/27 18:22:31 d2.evaluation.testing]: copypaste: AP,AP50,AP75,APs,APm,APl
[10/27 18:22:31 d2.evaluation.testing]: copypaste: 76.5349,83.8080,83.8080,0.0000,56.9583,93.6810
"""


def test_detectron2_iterations_config_total_eta_and_bbox_ap() -> None:
    items = feed(get_parser("auto"), D2_EVAL)
    (p,) = progress(items)
    assert (p.unit, p.current, p.total, p.loss) == ("iteration", 20, 300, 1.986)
    assert p.eta_seconds == 86400 + 2 * 3600 + 3 * 60 + 4
    # The bbox table, once: the segm table is not the detector's AP and the copypaste lines repeat the table.
    (m,) = metrics(items)
    assert (m.current, m.map50, m.map50_95, m.precision, m.recall) == (20, 0.84717, 0.66145, None, None)


def test_detectron2_copypaste_alone_and_max_iter_from_opts() -> None:
    log = """\
Command line arguments: Namespace(config_file='mask_rcnn_R_50_FPN_3x.yaml', opts=['SOLVER.MAX_ITER', '1500'])
[10/27 18:20:30 d2.utils.events]:  eta: 0:00:54  iter: 1499  total_loss: 0.21
[10/27 18:22:31 d2.evaluation.testing]: copypaste: Task: bbox
[10/27 18:22:31 d2.evaluation.testing]: copypaste: AP,AP50,AP75,APs,APm,APl
[10/27 18:22:31 d2.evaluation.testing]: copypaste: 41.2000,62.5000,45.0000,nan,44.1000,55.3000
"""
    items = feed(get_parser("detectron2"), log)
    assert [(p.current, p.total, p.eta_seconds) for p in progress(items)] == [(1500, 1500, 54.0)]
    assert [(m.map50, m.map50_95) for m in metrics(items)] == [(0.625, 0.412)]


def test_detectron2_metrics_json_lines() -> None:
    log = """\
{"data_time": 0.0026, "eta_seconds": 61.9, "fast_rcnn/cls_accuracy": 0.96, "iteration": 19, "lr": 1.6e-05, "total_loss": 1.2}
{"bbox/AP": 36.9122, "bbox/AP50": 57.9364, "bbox/AP75": 39.8436, "iteration": 299}
"""
    parser = get_parser("auto")
    items = feed(parser, log)
    assert parser.framework == "detectron2"
    assert [(p.current, p.loss, p.eta_seconds) for p in progress(items)] == [(20, 1.2, 61.9)]
    assert [(m.current, m.map50, m.map50_95) for m in metrics(items)] == [(300, 0.579364, 0.369122)]


def test_detectron2_metrics_json_evaluation_after_training_keeps_its_step() -> None:
    log = """\
{"data_time": 0.0055, "eta_seconds": 0.0, "iteration": 299, "lr": 0.00025, "total_loss": 0.4286037251627022}
{"bbox/AP": 75.7732398239824, "bbox/AP-fig": 64.29, "bbox/AP50": 100.0, "bbox/APs": NaN, "iteration": 300}
"""
    items = feed(get_parser("detectron2"), log)
    assert [(p.current, p.loss) for p in progress(items)] == [(300, 0.4286037251627022)]
    # Written after the loop with the step count (300), not a 0-based index: the evaluation of step 300.
    assert [(m.current, m.map50, m.map50_95) for m in metrics(items)] == [(300, 1.0, 0.7577324)]


def test_detectron2_iteration_line_in_another_order() -> None:
    line = "[05/02 18:02:19 d2.utils.events]:  iter: 1499  loss_cls: 0.2948  total_loss: 1.403  eta: 0:00:00"
    (p,) = progress(get_parser("detectron2").feed(line))
    assert (p.current, p.loss, p.eta_seconds) == (1500, 1.403, 0.0)


# --- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.78 GiB total capacity)",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.",
        "RuntimeError: CUDA error: out of memory",
        " CUDA Error: out of memory",
        "CUDA status Error: file: ./src/dark_cuda.c : () : line: 373 : build time: Jan 21 2020 - 17:40:41 cudaErrorMemoryAllocation",
    ],
)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_cuda_out_of_memory_in_every_framework(framework: str, line: str) -> None:
    parser = get_parser(framework)
    assert errors(parser.feed(line)) == [("oom", line.strip())]
    # Every rank printing the same message is still one OOM.
    assert errors(parser.feed(line)) == []
    assert parser.summary()["errors"] == [{"kind": "oom", "line": line.strip()}]


@pytest.mark.parametrize(
    "line",
    [
        "Killed",
        "  Killed  ",
        "./train.sh: line 12:  4242 Killed                  ./darknet detector train data/obj.data cfg/yolov4.cfg",
        "[12345.678] Out of memory: Killed process 4242 (python3) total-vm:48000000kB",
        "RuntimeError: DataLoader worker (pid 4321) is killed by signal: Killed.",
    ],
)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_killed_in_every_framework(framework: str, line: str) -> None:
    assert errors(get_parser(framework).feed(line)) == [("killed", line.strip())]


TRACEBACK = """\
Traceback (most recent call last):
  File "train.py", line 633, in <module>
    main(opt)
  File "train.py", line 528, in main
    train(opt.hyp, opt, device, callbacks)
RuntimeError: CUDA out of memory. Tried to allocate 2.00 MiB
"""


@pytest.mark.parametrize("framework", [*FRAMEWORKS, "auto"])
def test_traceback_is_one_crash_named_by_its_exception(framework: str) -> None:
    items = feed(get_parser(framework), TRACEBACK)
    # The OOM says why; the crash says it ended the process.
    assert sorted(errors(items)) == [
        ("crash", "RuntimeError: CUDA out of memory. Tried to allocate 2.00 MiB"),
        ("oom", "RuntimeError: CUDA out of memory. Tried to allocate 2.00 MiB"),
    ]


def test_chained_tracebacks_are_one_crash_and_separate_ones_are_two() -> None:
    chained = """\
Traceback (most recent call last):
  File "a.py", line 1, in <module>
KeyError: 'labels'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "a.py", line 3, in <module>
AssertionError: Label class 3 exceeds nc=2
"""
    parser = get_parser("yolov5")
    assert errors(feed(parser, chained)) == [("crash", "KeyError: 'labels'")]
    assert errors(feed(parser, "epoch done\n" + TRACEBACK)) == [
        ("crash", "RuntimeError: CUDA out of memory. Tried to allocate 2.00 MiB"),
        ("oom", "RuntimeError: CUDA out of memory. Tried to allocate 2.00 MiB"),
    ]


def test_traceback_of_a_torch_rank_and_one_cut_short() -> None:
    ranked = """\
[rank0]: Traceback (most recent call last):
[rank0]:   File "/opt/detectron2/tools/train_net.py", line 10, in <module>
[rank0]:     launch(main)
[rank0]: FloatingPointError: Loss became infinite or NaN at iteration=42!
"""
    items = feed(get_parser("detectron2"), ranked)
    assert errors(items) == [
        ("nan_loss", "[rank0]: FloatingPointError: Loss became infinite or NaN at iteration=42!"),
        ("crash", "[rank0]: FloatingPointError: Loss became infinite or NaN at iteration=42!"),
    ]
    # A log that stops inside a traceback still reports the crash, by its header.
    parser = get_parser("darknet")
    feed(parser, 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n')
    assert parser.summary()["errors"] == [{"kind": "crash", "line": "Traceback (most recent call last):"}]


def test_native_crash_and_the_abort_after_it_are_one_crash() -> None:
    log = """\
 CUDA Error Prev: an illegal memory access was encountered
CUDA Error Prev: an illegal memory access was encountered: Success
darknet: ./src/utils.c:325: error: Assertion `0' failed.
Aborted (core dumped)
"""
    parser = get_parser("darknet")
    assert errors(feed(parser, log)) == [("crash", "darknet: ./src/utils.c:325: error: Assertion `0' failed.")]
    # Once training goes on, a new failure is a new crash.
    feed(parser, " 7018: 5.516436, 4.986133 avg loss, 0.002000 rate, 3.660777 seconds, 898304 images\n")
    assert errors(parser.feed("Segmentation fault (core dumped)")) == [("crash", "Segmentation fault (core dumped)")]


def test_an_error_repeated_with_more_text_or_reraised_is_reported_once() -> None:
    parser = get_parser("detectron2")
    log = """\
 CUDA Error: out of memory
CUDA Error: out of memory: No such file or directory
"""
    assert errors(feed(parser, log)) == [("oom", "CUDA Error: out of memory")]
    # detectron2 logs the exception, then it reaches the top of the script and Python prints it again.
    first = feed(parser, "ERROR [02/10 22:55:41 d2.engine.train_loop]: Exception during training:\n" + TRACEBACK)
    again = feed(parser, "[02/10 22:55:41 d2.engine.hooks]: Total training time: 0:01:02\n" + TRACEBACK)
    assert errors(first) == [
        ("crash", "RuntimeError: CUDA out of memory. Tried to allocate 2.00 MiB"),
        ("oom", "RuntimeError: CUDA out of memory. Tried to allocate 2.00 MiB"),
    ]
    assert errors(again) == []


def test_darknet_nan_avg_loss_is_reported_once_per_stretch() -> None:
    log = """\
 1200: 3.100000, 3.200000 avg loss, 0.001000 rate, 3.2 seconds, 76800 images, 11.0 hours left
 1201: -nan, -nan avg loss, 0.001000 rate, 3.2 seconds, 76864 images, 11.0 hours left
 1202: -nan, -nan avg loss, 0.001000 rate, 3.2 seconds, 76928 images, 11.0 hours left
 1203: 2.900000, nan avg loss, 0.001000 rate, 3.2 seconds, 76992 images, 11.0 hours left
"""
    items = feed(get_parser("darknet"), log)
    assert [p.loss for p in progress(items)] == [3.2, None, None, None]
    assert errors(items) == [
        ("nan_loss", "1201: -nan, -nan avg loss, 0.001000 rate, 3.2 seconds, 76864 images, 11.0 hours left")
    ]


def test_yolov5_nan_loss_and_what_must_not_count_as_one() -> None:
    header = "     Epoch   gpu_mem       box       obj       cls    labels  img_size"
    fine = "     11/99     3.65G   0.04316   0.05112   0.01637        45       640: 100%|██████████| 8/8 [00:05<00:00,  1.58it/s]"
    nan = "     12/99     3.65G       nan       nan       nan        45       640:  12%|█▎        | 1/8 [00:01<00:07,  1.0it/s]"
    innocent = """\
Scanning '/data/nan/labels/train.cache' images and labels... 128 found, 0 missing
Transferred 342/349 items from /models/nano-nanodet.pt
                 all        128        929      0.716      0.637      0.702      0.463
              banana        128          9      0.667      0.444      0.552      0.312
            nan_cake        128          3          1          0      0.995      0.398
"""
    parser = get_parser("yolov5")
    assert errors(feed(parser, f"{header}\n{fine}\n{innocent}")) == []
    items = feed(parser, nan)
    assert errors(items) == [("nan_loss", nan.strip())]
    assert progress(items)[0].loss is None
    assert errors(feed(parser, "WARNING: non-finite loss, ending training  tensor([nan, nan, nan])")) == []
    assert parser.summary()["progress"]["loss"] is None


@pytest.mark.parametrize(
    "line",
    [
        "Killed 3 stale workers before start",
        "ProcessKilledError handler installed",
        "memory: 15.1G free, pinned memory on",
        "Traceback printing is off",
        "Loss became finite again",
    ],
)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_lines_that_only_look_like_errors(framework: str, line: str) -> None:
    assert errors(get_parser(framework).feed(line)) == []


# Every failure the error watch knows, alone and at the end of a progress row (where a bar left without a
# newline puts it): the one-character tests that spare most lines the full check must let each through.
FAILURES = [
    ("CUDA out of memory. Tried to allocate 2.00 MiB", "oom"),
    ("CUDA Error: out of memory", "oom"),
    ("cudaErrorMemoryAllocation", "oom"),
    ("CUDNN_STATUS_ALLOC_FAILED", "oom"),
    ("CUBLAS_STATUS_ALLOC_FAILED", "oom"),
    ("Killed", "killed"),
    ("train.sh: line 1:  4242 Killed  python train.py", "killed"),
    ("Out of memory: Killed process 4242 (python)", "killed"),
    ("Memory cgroup out of memory: oom-kill:constraint=CONSTRAINT_MEMCG", "killed"),
    ("DataLoader worker (pid 4242) is killed by signal: Killed.", "killed"),
    ("darknet: ./src/utils.c:331: error: Assertion `0' failed.", "crash"),
    ("Segmentation fault", "crash"),
    ("Aborted (core dumped)", "crash"),
]
ROWS = {
    "yolov5": (
        "     Epoch   gpu_mem       box       obj       cls    labels  img_size",
        "     11/99     3.65G   0.04316   0.05112   0.01637        45       640: 100%|██████████| 8/8 [00:05<00:00,  1.58it/s]",
    ),
    "ultralytics": (
        "      Epoch    GPU_mem   box_loss   cls_loss   dfl_loss  Instances       Size",
        "       2/20         0G      5.368       3.23      3.625         78        128: 76% ━━━━━━━━━─── 10/13 3.8it/s 2.9s<0.8s",
    ),
}


@pytest.mark.parametrize(("line", "kind"), FAILURES)
@pytest.mark.parametrize("framework", [*FRAMEWORKS, "auto"])
def test_every_failure_is_seen_alone_and_after_a_progress_row(framework: str, line: str, kind: str) -> None:
    assert kind in [error for error, _ in errors(get_parser(framework).feed(line))]
    if line == "Killed":
        return  # the shell's bare "Killed" counts only as a line of its own
    header, row = ROWS.get(framework, ROWS["yolov5"])
    parser = get_parser(framework)
    parser.feed(header)
    assert kind in [error for error, _ in errors(parser.feed(row + line))]


@pytest.mark.parametrize("framework", [*FRAMEWORKS, "auto"])
def test_a_traceback_after_a_progress_row_is_seen(framework: str) -> None:
    header, row = ROWS.get(framework, ROWS["yolov5"])
    parser = get_parser(framework)
    feed(parser, f'{header}\n{row}Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad\n')
    assert ("crash", "ValueError: bad") in [(e["kind"], e["line"]) for e in parser.summary()["errors"]]


def test_round_to_is_round() -> None:
    import math
    import random
    import struct

    from agent.parsers.common import round_to

    def same(a: float, b: float) -> bool:
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))

    rnd = random.Random(0)
    values = [0.0, -0.0, 5e-324, -4e-9, 5e-9, -5e-9, 1e-9, math.inf, -math.inf, math.nan, 2.0**49, 2.0**53, 1e300]
    values += [0.0 + 5.368 + 3.23 + 3.625, 0.8 + 3.7 * 18, 0.001953125, 2.675]
    for _ in range(20000):
        values.append(rnd.uniform(-1e4, 1e4) * 10.0 ** rnd.randint(-10, 6))  # anything
        values.append(sum(float(f"{rnd.uniform(0, 9):.4f}") for _ in range(3)))  # the loss columns summed
        values.append((rnd.randint(-(10**9), 10**9) + 0.5) / 10.0 ** rnd.choice((1, 8)))  # next to a tie
        values.append(struct.unpack("d", struct.pack("Q", rnd.getrandbits(64)))[0])  # any bit pattern
    for x in values:
        for ndigits in (1, 8):
            assert same(round_to(x, ndigits, 10.0**ndigits), round(x, ndigits)), (x, ndigits)


@pytest.mark.parametrize(
    "line",
    [
        "[09/02 02:37:24 d2.utils.events]:  eta: 0:05:22  iter: 19  total_loss: 1.986  loss_cls: 0.595",
        "[09/02 02:37:24 d2.utils.events]:  iter: 19  total_loss: 1.986  eta: 0:05:22",
        "eta: 1 day, 2:03:04  iter: 7  total_loss: 0.5",
        "beta: 0.9 eta: N/A  iter: 0  total_loss: nan",
        "eta: 0:05:22 eta: 0:05:21  iter: 19  total_loss: 1.0",
        "eta: bad  iter: 1  iter: 2  total_loss: 3.0",
        "eta: 0:00:01  iter: x  iter: 3  total_loss: 4.0",
        "iter: 5 of 9; eta: 0:00:09  iter: 5  total_loss: 0.25",
    ],
)
def test_detectron2_iteration_search_starts_late_but_finds_the_same(line: str) -> None:
    from agent.parsers.detectron2 import _ITER_LINE, _iter_line_start

    late, early = _ITER_LINE.search(line, _iter_line_start(line)), _ITER_LINE.search(line)
    assert (late and (late.span(), late.groups())) == (early and (early.span(), early.groups()))


# --- auto-detection ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "framework"),
    [
        (" 2000: 1.234, 1.456 avg loss, 0.001 rate, 2.1 seconds, 128000 images, 3.2 hours left", "darknet"),
        ("[09/02 02:37:00 d2.engine.train_loop]: Starting training from iteration 0", "detectron2"),
        ("Ultralytics 8.4.190 🚀 Python-3.11.7 torch-2.14.1+cu130 CPU (AMD EPYC)", "ultralytics"),
        ("Ultralytics YOLOv8.0.20 🚀 Python-3.10.9 torch-1.13.1 CUDA:0 (Tesla T4, 15102MiB)", "ultralytics"),
        ("      Epoch    GPU_mem   box_loss   cls_loss   dfl_loss  Instances       Size", "ultralytics"),
        ("YOLOv5 🚀 v7.0-72-g064365d Python-3.10.6 torch-1.13.1+cu116 CUDA:0 (Tesla T4, 15102MiB)", "yolov5"),
        ("      Epoch    GPU_mem   box_loss   obj_loss   cls_loss  Instances       Size", "yolov5"),
        (
            "   288/299     11.9G   0.03276   0.06324   0.01066    0.1067        70       640    0.3726    0.6887    0.5851    0.3786   0.03741    0.0587   0.01362",
            "scaled-yolov4",
        ),
        ("Namespace(batch_size=16, cfg='models/yolov4-p5.yaml', data='data/coco.yaml', epochs=300)", "scaled-yolov4"),
        # Scaled-YOLOv4 kept YOLOv5's June 2020 header (GIoU); YOLOv5 v3 renamed GIoU to box.
        ("     Epoch   gpu_mem      GIoU       obj       cls     total   targets  img_size", "scaled-yolov4"),
        ("     Epoch   gpu_mem       box       obj       cls     total   targets  img_size", "yolov5"),
        ("Namespace(adam=False, batch_size=16, cfg='', weights='weights/yolov5l.pt', workers=24)", "yolov5"),
        ("YOLOv5s summary: 157 layers, 7225885 parameters, 0 gradients, 16.4 GFLOPs", "yolov5"),
        (
            "     Class     Images  Instances          P          R      mAP50   mAP50-95: 100%|█| 619/619 03:37",
            "yolov5",
        ),
        ("     Class     Images     Labels          P          R     mAP@.5 mAP@.5:.95: 100% 1/1", "yolov5"),
        ("     Class     Images  Instances      Box(P          R      mAP50  mAP50-95): 100% 5/5", "ultralytics"),
        ("CUDA status Error: file: ./src/darknet.c : () : line: 470 : build time: Oct  3 2020 - 11:21:14", "darknet"),
        ("darknet: ./src/utils.c:326: error: Assertion `0' failed.", "darknet"),
    ],
)
def test_auto_detects_from_the_telling_line(line: str, framework: str) -> None:
    parser = get_parser("auto")
    parser.feed("Loading data...")
    parser.feed(line)
    assert parser.framework == framework
    assert parser.summary()["framework"] == framework


def test_auto_replays_what_came_before_the_decision_and_reports_errors_at_once() -> None:
    parser = get_parser("auto")
    assert parser.feed(" max_batches = 6000") == []
    assert errors(parser.feed("Killed")) == [("killed", "Killed")]
    items = parser.feed(" 10: 5.0, 5.5 avg loss, 0.0001 rate, 1.0 seconds, 640 images, 1.7 hours left")
    assert [(p.current, p.total) for p in progress(items)] == [(10, 6000)]
    assert parser.summary()["errors"] == [{"kind": "killed", "line": "Killed"}]


def test_auto_takes_no_side_on_a_header_both_yolov5_and_scaled_yolov4_print() -> None:
    parser = get_parser("auto")
    parser.feed("               Class     Images    Targets          P          R     mAP@.5 mAP@.5:.95: 100% 71/71")
    assert parser.framework == "auto"


def test_auto_without_a_telling_line() -> None:
    parser = get_parser("auto")
    parser.feed("hello")
    result = parser.summary()
    assert result["framework"] is None
    assert result["progress"] == {"unit": None, "current": None, "total": None, "loss": None, "eta_seconds": None}


def test_registry() -> None:
    assert FRAMEWORKS == ("darknet", "yolov5", "scaled-yolov4", "detectron2", "ultralytics")
    assert [get_parser(name).framework for name in FRAMEWORKS] == list(FRAMEWORKS)
    with pytest.raises(ValueError, match="darknet, yolov5, scaled-yolov4, detectron2, ultralytics, auto"):
        get_parser("mmdetection")


# --- line splitting -------------------------------------------------------------------------------------


def test_splitter_carriage_returns_and_escapes() -> None:
    s = LineSplitter()
    raw = (
        b"\x1b[34m\x1b[1mtrain: \x1b[0mScanning...\n"
        b"\r\x1b[K       1/20   0G   6.782: 0% 0/13\r\x1b[K       1/20   0G   6.705: 7% 1/13\n"
        b"\x1b]0;title\x07done\x1b[2A\x1b[?25h\n"
    )
    assert s.feed(raw) == [
        "train: Scanning...",
        "       1/20   0G   6.782: 0% 0/13",
        "       1/20   0G   6.705: 7% 1/13",
        "done",
    ]
    assert s.flush() == []


def test_splitter_keeps_empty_lines_and_handles_crlf_across_reads() -> None:
    s = LineSplitter()
    assert s.feed(b"a\r\n\r\nb\n\nc\r") == ["a", "", "b", ""]
    assert s.feed(b"\nd") == ["c"]
    assert s.flush() == ["d"]
    assert s.flush() == []


def test_splitter_utf8_split_across_reads_and_invalid_bytes() -> None:
    s = LineSplitter()
    bar = "100% ━━━ 12/12 🚀\n".encode()
    out = [line for i in range(len(bar)) for line in s.feed(bar[i : i + 1])]
    assert out == ["100% ━━━ 12/12 🚀"]
    assert s.feed(b"bad \xff byte\n") == ["bad \ufffd byte"]


def test_splitter_caps_a_line_that_never_ends() -> None:
    s = LineSplitter()
    assert s.feed(b"x" * MAX_LINE) == []
    (line,) = s.feed(b"y")
    assert len(line) == MAX_LINE + 1
    assert s.flush() == []


def test_splitter_on_the_real_piped_log() -> None:
    s = LineSplitter()
    data = (LOGS / "ultralytics_shapes_cpu.log").read_bytes()
    lines = [line for i in range(0, len(data), 4096) for line in s.feed(data[i : i + 4096])] + s.flush()
    assert not any("\x1b" in line or "\r" in line for line in lines)
    assert "Ultralytics 8.4.190 🚀 Python-3.11.7 torch-2.14.1+cu130 CPU (AMD EPYC)" in lines
    assert "                   all         40        103      0.983      0.979      0.995      0.875" in lines


# --- the CLI -----------------------------------------------------------------------------------------------


def test_cli_prints_one_json_event_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--framework", "yolov5", str(LOGS / "yolov5_04.log")]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["kind"] for e in events] == ["progress", "metric", "progress", "metric"]
    assert events[2] == {
        "unit": "epoch",
        "current": 300,
        "total": 300,
        "loss": 0.010892,
        "eta_seconds": 0.0,
        "kind": "progress",
    }
    assert events[3]["map50"] == 0.988 and events[3]["per_class_ap50"] == {}


def test_cli_error_event_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"step 1\r\nKilled\r\n")
    assert main(["--framework", "auto", str(log)]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [
        {"error": "killed", "line": "Killed", "kind": "error"}
    ]


def test_cli_missing_file_is_one_line_on_stderr_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--framework", "darknet", "--summary", str(LOGS / "no-such-file.log")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "no-such-file.log" in err and "Traceback" not in err


def test_cli_rejects_an_unknown_framework(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--framework", "mmdetection", str(LOGS / "darknet_03.log")]) == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_bench_measures_each_framework(framework: str) -> None:
    assert throughput(framework, lines=2000) > 0


def test_make_bench_reports_every_framework() -> None:
    from bench.parsers import run

    figures = run(lines=2000)
    assert [r.name.split()[1] for r in figures] == list(FRAMEWORKS)
    assert all(r.value > 0 and r.unit == "lines/s" and r.baseline for r in figures)
