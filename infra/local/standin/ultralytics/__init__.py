"""A stand-in for Ultralytics 8.4.190, for tests and the local stack on machines without torch.

Put `infra/local/standin` first on PYTHONPATH and `from ultralytics import YOLO` finds this package
(and `importlib.metadata.version("ultralytics")` its dist-info). `YOLO(model).train(**kwargs)` replays a
real CPU run of yolov8n on the shapes dataset (`recorded_run.log`, `recorded_results.csv`) byte for byte
in format: banner, per-epoch header, progress bars redrawn with `\\r` + `ESC[K`, the validation `all`
line, and the final "Validating best.pt" block. The recorded epochs are stretched or squeezed onto the
requested ones, so mAP rises to the recorded final values; weights are deterministic bytes.

Checkpoints carry what the real ones do for resuming: `last.pt` (and `best.pt`) hold the run's arguments,
the epoch they completed and the best fitness so far, as one JSON line after the magic, then deterministic
bytes. `YOLO("…/last.pt").train(resume=True)` goes on from the next epoch as the real trainer does: the
arguments come from the checkpoint (a `data` that no longer exists is replaced by the one passed, and only
imgsz, batch, device and close_mosaic may be overridden), it prints "Resuming training … from epoch N+1 to E
total epochs", appends to results.csv and keeps updating best.pt/last.pt. `YOLO(path).ckpt` is the loaded
checkpoint and `save(path)` writes it back, like the real Model's.

Environment: SPOTTER_STANDIN_EPOCH_SECONDS (default 0.2) is the time one epoch takes;
SPOTTER_STANDIN_WEIGHTS_BYTES (default 300 KiB) the size of every weights file;
SPOTTER_STANDIN_FAIL_AT_EPOCH=N makes epoch N die of a CUDA out-of-memory error (exit status 1). Like a
real 16 GB GPU, a batch too large for its memory (`batch` × `imgsz`², see `gpu_memory_gib`) dies in epoch 1.
"""

from __future__ import annotations

import hashlib
import json
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
MAGIC = b"PK-standin\n"
# What `train(resume=True)` may change of the checkpoint's arguments (the real trainer's list).
RESUME_OVERRIDES = ("imgsz", "batch", "device", "close_mosaic")
# Paths as the recording printed them, replaced by the ones this run uses (text, never opened).
REC_DATA, REC_PROJECT, REC_SAVE_DIR = "/tmp/shapes", "/tmp/runs", "/tmp/runs/train"  # noqa: S108  # nosec B108
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


def weights_size() -> int:
    return int(os.environ.get("SPOTTER_STANDIN_WEIGHTS_BYTES") or WEIGHTS_BYTES)


def weights_bytes(model: str, epoch: int, header: dict[str, Any] | None = None) -> bytes:
    """Deterministic stand-in weights of `weights_size()` bytes: the same model, epoch and header give the same
    bytes. A checkpoint's header (arguments, epoch, best fitness) is one JSON line after the magic."""
    head = MAGIC + (json.dumps(header, sort_keys=True, default=str).encode() + b"\n" if header is not None else b"")
    seed = hashlib.sha256(f"standin:{model}:{epoch}".encode()).digest()
    return head + hashlib.shake_256(seed).digest(max(0, weights_size() - len(head)))


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: a reader never sees half a checkpoint."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The header of a stand-in checkpoint (`train_args`, `epoch`, `best_fitness`), or None if `path` is none."""
    try:
        with path.open("rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return None
            line = f.readline()
    except OSError:
        return None
    try:
        header = json.loads(line)
    except ValueError:
        return None
    return header if isinstance(header, dict) and "train_args" in header else None


class OutOfMemoryError(RuntimeError):
    """Printed as `torch.OutOfMemoryError`, like the real one."""

    __module__ = "torch"


GPU_MEMORY_GIB = 14.56  # what a T4 offers PyTorch


def gpu_memory_gib(batch: int, imgsz: int) -> float:
    """Training memory of yolov8n, roughly: a fixed part and ~0.16 GiB per 640-px image in the batch."""
    return 0.6 + batch * (imgsz / 640) ** 2 * 0.16


class _Run:
    def __init__(self, model: str, kwargs: dict[str, Any], *, resumed_from: Path | None = None, done: int = 0) -> None:
        self.rec = load_recording()
        self.model = model
        self.kw = kwargs
        self.resumed_from = resumed_from
        self.start_epoch = done + 1  # 1-based: the first epoch this run trains
        self.best_fitness = -1.0
        self.epochs = int(kwargs.get("epochs", 100))
        self.imgsz = int(kwargs.get("imgsz", 640))
        self.data = Path(str(kwargs.get("data", "")))
        self.project = Path(str(kwargs.get("project", "runs/detect")))
        self.save_dir = Path(str(kwargs.get("save_dir") or self.project / str(kwargs.get("name", "train"))))
        self.weights_dir = self.save_dir / "weights"
        self.epoch_seconds = float(os.environ.get("SPOTTER_STANDIN_EPOCH_SECONDS", "0.2"))
        fail_at = os.environ.get("SPOTTER_STANDIN_FAIL_AT_EPOCH")
        self.fail_at = int(fail_at) if fail_at else None
        if self.fail_at is None and gpu_memory_gib(int(kwargs.get("batch", 16)), self.imgsz) > GPU_MEMORY_GIB:
            self.fail_at = 1

    @classmethod
    def resume(cls, last: Path, overrides: dict[str, Any]) -> _Run:
        """The run `last` was saved by, from the epoch after the one it completed (as BaseTrainer.check_resume)."""
        ckpt = read_checkpoint(last)
        if ckpt is None:
            raise FileNotFoundError(
                "Resume checkpoint not found. Please pass a valid checkpoint to resume from, i.e. "
                "'yolo train resume model=path/to/last.pt'"
            )
        args = dict(ckpt["train_args"])
        if not Path(str(args.get("data", ""))).exists() and "data" in overrides:
            args["data"] = overrides["data"]
        args.update({k: overrides[k] for k in RESUME_OVERRIDES if k in overrides})
        done = int(ckpt["epoch"])
        epochs = int(args.get("epochs", 100))
        if done >= epochs:
            raise AssertionError(
                f"{last} training to {epochs} epochs is finished, nothing to resume.\n"
                f"Start a new training without resuming, i.e. 'yolo train model={last}'"
            )
        run = cls(str(args.get("model", last)), args, resumed_from=last, done=done)
        run.best_fitness = float(ckpt.get("best_fitness", -1.0))
        return run

    def checkpoint(self, epoch: int) -> bytes:
        train_args = {**self.kw, "save_dir": str(self.save_dir), "model": self.model}
        return weights_bytes(
            self.model, epoch, {"train_args": train_args, "epoch": epoch, "best_fitness": self.best_fitness}
        )

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
            "model": self.model if self.resumed_from is None else str(self.resumed_from),
            "resume": "False" if self.resumed_from is None else str(self.resumed_from),
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
            elif line.startswith("Using ") and " train, " in line and self.resumed_from is not None:
                out.append(
                    f"Resuming training {self.resumed_from} from epoch {self.start_epoch} to {self.epochs} total epochs"
                )
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
        if self.resumed_from is None or not results.exists():
            results.write_text(self.rec.csv_header + "\n")
        for epoch in range(self.start_epoch, self.epochs + 1):
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
            best = fitness >= self.best_fitness
            if best:
                self.best_fitness = fitness
            checkpoint = self.checkpoint(epoch)
            write_atomically(self.weights_dir / "last.pt", checkpoint)
            if best:
                write_atomically(self.weights_dir / "best.pt", checkpoint)
            row = (str(epoch), f"{time.monotonic() - started:.5g}", *rec.csv_row[2:])
            with results.open("a") as f:
                f.write(",".join(row) + "\n")
        print()
        print(self._final(started), flush=True)

    def _final(self, started: float) -> str:
        hours = (time.monotonic() - started) / 3600
        size = f"{weights_size() / 1e6:.1f}MB"
        names = _class_names(self.data)
        out = []
        for line in self.rec.final[:-1]:
            if line.endswith("epochs completed in 0.021 hours."):
                line = f"{self.epochs - self.start_epoch + 1} epochs completed in {hours:.3f} hours."
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
    """`YOLO("yolov8n.yaml").train(data=…, epochs=…, imgsz=…, project=…, name=…)` as the real one is called, and
    `YOLO("…/last.pt").train(resume=True)`."""

    def __init__(self, model: str | Path = "yolov8n.yaml") -> None:
        self.model = str(model)
        # The loaded checkpoint, like the real Model's (`train_args`, `epoch`…); None for a yaml.
        self.ckpt: dict[str, Any] | None = read_checkpoint(Path(self.model)) if self.model.endswith(".pt") else None

    def save(self, filename: str | Path) -> None:
        """Write the loaded checkpoint (with any change made to `ckpt`) to `filename`."""
        if self.ckpt is None:
            raise TypeError(f"model='{self.model}' should be a *.pt PyTorch model to run this method")
        args = self.ckpt["train_args"]
        write_atomically(
            Path(filename), weights_bytes(str(args.get("model", self.model)), int(self.ckpt["epoch"]), self.ckpt)
        )

    def train(self, **kwargs: Any) -> None:
        if kwargs.pop("resume", False):
            _Run.resume(Path(self.model), kwargs).train()
            return
        _Run(self.model, kwargs).train()
