"""A stand-in for Ultralytics 8.4.190, for tests and the local stack on machines without torch.

Put `infra/local/standin` first on PYTHONPATH and `from ultralytics import YOLO` finds this package
(and `importlib.metadata.version("ultralytics")` its dist-info). `YOLO(model).train(**kwargs)` replays a
real CPU run of yolov8n on the shapes dataset (`recorded_run.log`, `recorded_results.csv`) byte for byte
in format: banner, per-epoch header, progress bars redrawn with `\\r` + `ESC[K`, the validation `all`
line, and the final "Validating best.pt" block. The recorded epochs are stretched or squeezed onto the
requested ones, so mAP rises to the recorded final values; weights are deterministic bytes.

Environment: SPOTTER_STANDIN_EPOCH_SECONDS (default 0.2) is the time one epoch takes;
SPOTTER_STANDIN_FAIL_AT_EPOCH=N makes epoch N die of a CUDA out-of-memory error (exit status 1). Like a
real 16 GB GPU, a batch too large for its memory (`batch` × `imgsz`², see `gpu_memory_gib`) dies in epoch 1.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__version__ = "8.4.190"

EPOCH_HEADER = "      Epoch    GPU_mem   box_loss   cls_loss   dfl_loss  Instances       Size"
# The epoch and size columns of a training-bar frame: "%11s" each, after the ESC[K that opens a redraw.
COLUMN = 11
CLEAR = "\x1b[K"
WEIGHTS_BYTES = 300 * 1024
# Paths as the recording printed them, replaced by the ones this run uses (text, never opened).
REC_DATA, REC_PROJECT, REC_SAVE_DIR = "/tmp/shapes", "/tmp/runs", "/tmp/runs/train"  # noqa: S108
_TRAINER_ARG = re.compile(r"(?<=[ m])(\w+)=([^,]*)")


@dataclass(frozen=True)
class Epoch:
    train_frames: tuple[str, ...]
    val_frames: tuple[str, ...]
    all_line: str
    csv_row: tuple[str, ...]

    @property
    def metrics(self) -> tuple[float, float, float, float]:
        """P, R, mAP50, mAP50-95 from the `all` line."""
        p, r, m50, m = (float(v) for v in self.all_line.split()[3:7])
        return p, r, m50, m


@dataclass(frozen=True)
class Recording:
    header: tuple[str, ...]
    epochs: tuple[Epoch, ...]
    closing_mosaic: str
    final: tuple[str, ...]
    csv_header: str


def _frames(line: str) -> tuple[str, ...]:
    return tuple(f for f in line.split("\r") if f)


def load_recording() -> Recording:
    here = resources.files(__name__)
    # Bytes, not text: text mode would turn the progress bars' carriage returns into newlines.
    lines = here.joinpath("recorded_run.log").read_bytes().decode("utf-8").split("\n")
    csv_lines = here.joinpath("recorded_results.csv").read_text(encoding="utf-8").strip().split("\n")
    rows = [tuple(line.split(",")) for line in csv_lines[1:]]
    starts = [i for i, line in enumerate(lines) if line == EPOCH_HEADER]
    epochs = tuple(
        Epoch(_frames(lines[i + 1]), _frames(lines[i + 2]), lines[i + 3], rows[n]) for n, i in enumerate(starts)
    )
    final_at = next(i for i, line in enumerate(lines) if line.endswith("epochs completed in 0.021 hours."))
    return Recording(
        header=tuple(lines[: starts[0] - 1]),
        epochs=epochs,
        closing_mosaic="Closing dataloader mosaic",
        final=tuple(lines[final_at:]),
        csv_header=csv_lines[0],
    )


def _class_names(data_yaml: Path) -> list[str]:
    """The `names:` block of a YOLO data.yaml (`  0: name` lines), without a yaml library."""
    try:
        text = data_yaml.read_text()
    except OSError:
        return []
    block = text.split("names:", 1)[1] if "names:" in text else ""
    return [m.group(1).strip() for m in re.finditer(r"^\s+\d+:\s*(\S.*)$", block, re.MULTILINE)]


def weights_bytes(model: str, epoch: int) -> bytes:
    """Deterministic stand-in weights: the same model and epoch always give the same bytes."""
    seed = hashlib.sha256(f"standin:{model}:{epoch}".encode()).digest()
    blocks = (hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(WEIGHTS_BYTES // 32))
    return b"PK-standin\n" + b"".join(blocks)


class OutOfMemoryError(RuntimeError):
    """Printed as `torch.OutOfMemoryError`, like the real one."""

    __module__ = "torch"


GPU_MEMORY_GIB = 14.56  # what a T4 offers PyTorch


def gpu_memory_gib(batch: int, imgsz: int) -> float:
    """Training memory of yolov8n, roughly: a fixed part and ~0.16 GiB per 640-px image in the batch."""
    return 0.6 + batch * (imgsz / 640) ** 2 * 0.16


class _Run:
    def __init__(self, model: str, kwargs: dict[str, Any]) -> None:
        self.rec = load_recording()
        self.model = model
        self.kw = kwargs
        self.epochs = int(kwargs.get("epochs", 100))
        self.imgsz = int(kwargs.get("imgsz", 640))
        self.data = Path(str(kwargs.get("data", "")))
        self.project = Path(str(kwargs.get("project", "runs/detect")))
        self.save_dir = self.project / str(kwargs.get("name", "train"))
        self.weights_dir = self.save_dir / "weights"
        self.epoch_seconds = float(os.environ.get("SPOTTER_STANDIN_EPOCH_SECONDS", "0.2"))
        fail_at = os.environ.get("SPOTTER_STANDIN_FAIL_AT_EPOCH")
        self.fail_at = int(fail_at) if fail_at else None
        if self.fail_at is None and gpu_memory_gib(int(kwargs.get("batch", 16)), self.imgsz) > GPU_MEMORY_GIB:
            self.fail_at = 1

    def _paths(self, text: str) -> str:
        return (
            text.replace(REC_SAVE_DIR, str(self.save_dir))
            .replace(REC_PROJECT, str(self.project))
            .replace(REC_DATA, str(self.data.parent))
        )

    def _header(self) -> list[str]:
        names = _class_names(self.data)
        values = {
            "data": str(self.data),
            "epochs": str(self.epochs),
            "imgsz": str(self.imgsz),
            "model": self.model,
            "project": str(self.project),
            "save_dir": str(self.save_dir),
            **{
                k: str(v)
                for k, v in self.kw.items()
                if k in ("batch", "device", "name", "workers", "plots", "amp", "pretrained")
            },
        }
        out = []
        for line in self.rec.header:
            if "engine/trainer: " in line:
                line = _TRAINER_ARG.sub(lambda m: f"{m.group(1)}={values.get(m.group(1), m.group(2))}", line)
            elif line.startswith("Overriding model.yaml nc=") and names:
                line = f"Overriding model.yaml nc=80 with nc={len(names)}"
            elif line.startswith("Using ") and "imgsz=" in line:
                line = re.sub(r"imgsz=\d+", f"imgsz={self.imgsz}", line)
            elif line.startswith("Starting training for "):
                line = f"Starting training for {self.epochs} epochs..."
            out.append(self._paths(line))
        return out

    def _recorded(self, epoch: int) -> Epoch:
        """The recorded epoch that plays epoch `epoch`: first maps to first, last to last."""
        n = len(self.rec.epochs)
        if self.epochs == 1:
            return self.rec.epochs[-1]
        return self.rec.epochs[round((epoch - 1) * (n - 1) / (self.epochs - 1))]

    def _frame(self, frame: str, epoch: int) -> str:
        body = frame.removeprefix(CLEAR)
        epoch_col = f"{epoch}/{self.epochs}".rjust(COLUMN)
        size_col = str(self.imgsz).rjust(COLUMN)
        return CLEAR + epoch_col + body[COLUMN : 6 * COLUMN] + size_col + body[7 * COLUMN :]

    def _play(self, frames: tuple[str, ...], seconds: float) -> None:
        for frame in frames:
            sys.stdout.write("\r" + frame)
            sys.stdout.flush()
            time.sleep(seconds)
        sys.stdout.write("\n")

    def _fail(self, rec: Epoch, epoch: int, per_frame: float) -> None:
        self._play(tuple(self._frame(f, epoch) for f in rec.train_frames[:4]), per_frame)
        self._backward()

    def _backward(self) -> None:
        # Raised for real, so Python prints a genuine traceback and exits with status 1.
        raise OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 14.56 GiB of which "
            "3.81 MiB is free. Including non-PyTorch memory, this process has 14.55 GiB memory in use. Of the "
            "allocated memory 14.12 GiB is allocated by PyTorch, and 297.84 MiB is reserved by PyTorch but "
            "unallocated. If reserved but unallocated memory is large try setting "
            "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for "
            "Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
        )

    def train(self) -> None:
        started = time.monotonic()
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        print("\n".join(self._header()), flush=True)
        results = self.save_dir / "results.csv"
        results.write_text(self.rec.csv_header + "\n")
        best_fitness = -1.0
        for epoch in range(1, self.epochs + 1):
            rec = self._recorded(epoch)
            per_frame = self.epoch_seconds / (len(rec.train_frames) + len(rec.val_frames))
            if epoch > 1 and epoch == self.epochs - 10 + 1:
                print(self.rec.closing_mosaic)
            print()
            print(EPOCH_HEADER, flush=True)
            if epoch == self.fail_at:
                self._fail(rec, epoch, per_frame)
            self._play(tuple(self._frame(f, epoch) for f in rec.train_frames), per_frame)
            self._play(rec.val_frames, per_frame)
            print(rec.all_line, flush=True)
            _, _, map50, map50_95 = rec.metrics
            fitness = 0.1 * map50 + 0.9 * map50_95
            (self.weights_dir / "last.pt").write_bytes(weights_bytes(self.model, epoch))
            if fitness >= best_fitness:
                best_fitness = fitness
                (self.weights_dir / "best.pt").write_bytes(weights_bytes(self.model, epoch))
            row = (str(epoch), f"{time.monotonic() - started:.5g}", *rec.csv_row[2:])
            with results.open("a") as f:
                f.write(",".join(row) + "\n")
        print()
        print(self._final(started), flush=True)

    def _final(self, started: float) -> str:
        hours = (time.monotonic() - started) / 3600
        size = f"{(WEIGHTS_BYTES + 11) / 1e6:.1f}MB"
        names = _class_names(self.data)
        out = []
        for line in self.rec.final[:-1]:
            if line.endswith("epochs completed in 0.021 hours."):
                line = f"{self.epochs} epochs completed in {hours:.3f} hours."
            elif line.startswith("Optimizer stripped from "):
                line = re.sub(r", [\d.]+MB$", f", {size}", line)
            out.append(self._paths(line))
        if len(names) == 2:
            # The recorded per-class lines ("%22s" name first) are relabelled with this dataset's two classes.
            first = next(j for j, ln in enumerate(out) if ln.lstrip().startswith("all ")) + 1
            for i, name in enumerate(names):
                out[first + i] = name.rjust(22) + out[first + i][22:]
        return "\n".join(out)


class YOLO:
    """`YOLO("yolov8n.yaml").train(data=…, epochs=…, imgsz=…, project=…, name=…)` as the real one is called."""

    def __init__(self, model: str | Path = "yolov8n.yaml") -> None:
        self.model = str(model)

    def train(self, **kwargs: Any) -> None:
        _Run(self.model, kwargs).train()
