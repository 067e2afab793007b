"""Train an Ultralytics YOLO model (YOLOv8/YOLO11) with the framework's own API.

Run by the `ultralytics` recipe's train phase. Offline-safe: with YOLO_OFFLINE=1 nothing is fetched
(models are built from their yaml, plots are off, a local font stands in for Arial).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any


def _prepare_offline(config_dir: Path) -> None:
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    font = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics" / "Arial.ttf"
    if os.environ.get("YOLO_OFFLINE") and not font.exists():
        try:
            import matplotlib
        except ImportError:
            # The real framework depends on matplotlib; without it there is nothing that would fetch a font.
            return
        font.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", font)


def _device(gpus: int) -> str:
    """The GPUs to train on ("0,1"), or "cpu" when there are none — or no torch, as under the framework stand-in."""
    try:
        import torch
    except ImportError:
        return "cpu"
    if torch.cuda.is_available():
        return ",".join(str(i) for i in range(min(gpus, torch.cuda.device_count())))
    return "cpu"


def relocate(model: Any, checkpoint: str, *, save_dir: Path, data: str) -> None:
    """Point a checkpoint's saved run at this machine's folders before resuming from it.

    `train(resume=True)` takes the run's arguments, its save_dir included, from the checkpoint; an attempt on
    another machine (or under another work directory) must write where this one's artifacts are looked for.
    Nothing is rewritten when the paths already match.
    """
    args = (getattr(model, "ckpt", None) or {}).get("train_args")
    if not isinstance(args, dict):
        return
    wanted = {"save_dir": str(save_dir), "project": str(save_dir.parent), "name": save_dir.name, "data": data}
    if all(str(args.get(k)) == v for k, v in wanted.items()):
        return
    args.update(wanted)
    model.save(checkpoint)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True, help="yolov8n.yaml (scratch) or yolov8n.pt (pretrained)")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--imgsz", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--project", required=True)
    p.add_argument("--name", default="train")
    p.add_argument("--resume", default="", help="last.pt to resume from")
    a = p.parse_args(argv)

    _prepare_offline(Path(a.project) / ".ultralytics")
    from ultralytics import YOLO

    device = _device(a.gpus)
    if a.resume:
        relocate(YOLO(a.resume), a.resume, save_dir=Path(a.project) / a.name, data=a.data)
        YOLO(a.resume).train(resume=True, data=a.data, device=device)
        return 0
    YOLO(a.model).train(
        data=a.data,
        epochs=a.epochs,
        imgsz=a.imgsz,
        batch=a.batch,
        device=device,
        project=a.project,
        name=a.name,
        exist_ok=True,
        workers=0 if device == "cpu" else 8,
        plots=False,
        amp=device != "cpu",
        pretrained=a.model.endswith(".pt"),
        verbose=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
