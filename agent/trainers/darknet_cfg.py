"""Write darknet's three training files for one job: cfg/<name>.cfg from the model's base cfg, data/<name>.data
and data/<name>.names, in the darknet checkout, as seed 000 lays them out.

Run by the darknet recipe's data phase once the dataset is in darknet layout (train.txt, valid.txt, obj.names):
    python -m agent.trainers.darknet_cfg --base darknet/cfg/yolov4-custom.cfg --data-dir DATA --darknet darknet
        --name yolov4-persons --batch 64 --mini-batch 4 --img 416 [--max-batches 8000]
The cfg follows AlexeyAB's "how to train (to detect your custom objects)": classes in each [yolo], filters =
(classes + 5) × masks in the [convolutional] before it, max_batches, steps at 80% and 90% of it, batch and
subdivisions, width and height; every other line of the base cfg is kept as it is.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# AlexeyAB's rule when the job does not set iterations: 2000 per class, and no fewer than 6000 nor than the
# number of training images.
MIN_MAX_BATCHES = 6000
MAX_BATCHES_PER_CLASS = 2000
STEPS = (0.8, 0.9)
TRAIN_LIST, VALID_LIST, NAMES = "train.txt", "valid.txt", "obj.names"
# The [yolo] layers of yolov4 and yolov4-tiny each predict three anchors; a layer's own `mask=` says otherwise.
DEFAULT_MASKS = 3

_HEADER = re.compile(r"^\s*\[([^\]]+)\]")


class CfgError(ValueError):
    """A base cfg or dataset the files cannot be made from; the message says what is missing."""


@dataclass(frozen=True)
class Settings:
    classes: int
    max_batches: int
    batch: int
    subdivisions: int
    width: int
    height: int

    @property
    def steps(self) -> tuple[int, ...]:
        return tuple(int(self.max_batches * f) for f in STEPS)


def max_batches(classes: int, train_images: int, iterations: int | None) -> int:
    """The job's iterations when it sets them, else AlexeyAB's rule."""
    if iterations is not None:
        return iterations
    return max(MIN_MAX_BATCHES, MAX_BATCHES_PER_CLASS * classes, train_images)


def subdivisions(batch: int, mini_batch: int) -> int:
    """The smallest divisor of `batch` that leaves at most `mini_batch` images per pass on the GPU."""
    want = max(1, math.ceil(batch / max(1, mini_batch)))
    return next(d for d in range(want, batch + 1) if batch % d == 0)


def _key(name: str) -> re.Pattern[str]:
    # A commented line (`#batch=1` in the base cfgs) never matches: the key must open the line.
    return re.compile(rf"^\s*{re.escape(name)}\s*=")


class _Section:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        m = _HEADER.match(lines[0]) if lines else None
        self.name = m.group(1).strip().lower() if m else ""

    def get(self, key: str) -> str | None:
        pattern = _key(key)
        return next((line.split("=", 1)[1].strip() for line in self.lines if pattern.match(line)), None)

    def set(self, key: str, value: object) -> None:
        pattern = _key(key)
        for i, line in enumerate(self.lines):
            if pattern.match(line):
                self.lines[i] = f"{key}={value}"
                return
        self.lines.insert(1, f"{key}={value}")


def _sections(text: str) -> list[_Section]:
    chunks: list[list[str]] = [[]]
    for line in text.splitlines():
        if _HEADER.match(line):
            chunks.append([])
        chunks[-1].append(line)
    return [_Section(chunk) for chunk in chunks]


def render_cfg(base: str, s: Settings) -> str:
    """The base cfg with this job's classes, filters, schedule, batch and input size."""
    sections = _sections(base)
    net = next((sec for sec in sections if sec.name in ("net", "network")), None)
    if net is None:
        raise CfgError("the base cfg has no [net] section")
    for key, value in (
        ("batch", s.batch),
        ("subdivisions", s.subdivisions),
        ("width", s.width),
        ("height", s.height),
        ("max_batches", s.max_batches),
        ("steps", ",".join(str(step) for step in s.steps)),
    ):
        net.set(key, value)
    yolos = [i for i, sec in enumerate(sections) if sec.name == "yolo"]
    if not yolos:
        raise CfgError("the base cfg has no [yolo] layer")
    for i in yolos:
        mask = sections[i].get("mask")
        masks = len([m for m in mask.split(",") if m.strip()]) if mask else DEFAULT_MASKS
        sections[i].set("classes", s.classes)
        conv = next((sections[j] for j in range(i - 1, -1, -1) if sections[j].name == "convolutional"), None)
        if conv is None:
            raise CfgError("a [yolo] layer of the base cfg has no [convolutional] before it")
        conv.set("filters", (s.classes + 5) * masks)
    return "\n".join(line for sec in sections for line in sec.lines) + "\n"


def data_file(classes: int, train: Path, valid: Path, names: Path, backup: Path) -> str:
    return f"classes = {classes}\ntrain = {train}\nvalid = {valid}\nnames = {names}\nbackup = {backup}/\n"


def _lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as e:
        raise CfgError(f"cannot read {path}: {e.strerror}") from None


def write(
    *,
    base: Path,
    data_dir: Path,
    darknet: Path,
    name: str,
    batch: int,
    mini_batch: int,
    img: int,
    iterations: int | None,
) -> Settings:
    """Write cfg/<name>.cfg, data/<name>.data and data/<name>.names under `darknet`, and its backup/ folder."""
    data_dir, darknet = data_dir.resolve(), darknet.resolve()
    names = _lines(data_dir / NAMES)
    if not names:
        raise CfgError(f"{data_dir / NAMES} names no classes")
    train_images = len(_lines(data_dir / TRAIN_LIST))
    settings = Settings(
        classes=len(names),
        max_batches=max_batches(len(names), train_images, iterations),
        batch=batch,
        subdivisions=subdivisions(batch, mini_batch),
        width=img,
        height=img,
    )
    try:
        cfg = render_cfg(base.read_text(), settings)
    except OSError as e:
        raise CfgError(f"cannot read the base cfg {base}: {e.strerror}") from None
    (darknet / "cfg").mkdir(parents=True, exist_ok=True)
    (darknet / "data").mkdir(parents=True, exist_ok=True)
    # The Makefile creates backup/ when it builds; a build restored from the cache brings only the binary.
    (darknet / "backup").mkdir(parents=True, exist_ok=True)
    (darknet / "cfg" / f"{name}.cfg").write_text(cfg)
    names_path = darknet / "data" / f"{name}.names"
    names_path.write_text("".join(f"{n}\n" for n in names))
    (darknet / "data" / f"{name}.data").write_text(
        data_file(len(names), data_dir / TRAIN_LIST, data_dir / VALID_LIST, names_path, darknet / "backup")
    )
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent.trainers.darknet_cfg", description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, required=True, help="the model's base cfg in the darknet checkout")
    p.add_argument("--data-dir", type=Path, required=True, help="the dataset in darknet layout")
    p.add_argument("--darknet", type=Path, required=True, help="the darknet checkout")
    p.add_argument("--name", required=True, help="the stem of the files written (and of the weights darknet saves)")
    p.add_argument("--batch", type=int, required=True, help="images per iteration")
    p.add_argument("--mini-batch", type=int, required=True, help="images the GPU holds at once")
    p.add_argument("--img", type=int, required=True, help="network width and height")
    p.add_argument("--max-batches", type=int, help="iterations (default: AlexeyAB's rule from the dataset)")
    a = p.parse_args(argv)
    try:
        s = write(
            base=a.base,
            data_dir=a.data_dir,
            darknet=a.darknet,
            name=a.name,
            batch=a.batch,
            mini_batch=a.mini_batch,
            img=a.img,
            iterations=a.max_batches,
        )
    except CfgError as e:
        print(f"darknet_cfg: {e}", file=sys.stderr)
        return 1
    print(
        f"cfg/{a.name}.cfg from {a.base.name}: {s.classes} classes, max_batches={s.max_batches}, steps={','.join(map(str, s.steps))}, batch={s.batch} "
        f"subdivisions={s.subdivisions}, {s.width}x{s.height}; data/{a.name}.data, data/{a.name}.names",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
