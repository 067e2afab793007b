"""Run detectron2's tools/train_net.py on the job's dataset, registered under names of its own.

    python -m agent.trainers.detectron2_train --data DIR [--resume-from CHECKPOINT] [--checkpoint-weights]
        PATH/tools/train_net.py ARGS…

ARGS are train_net's own command line (--num-gpus, --config-file, --eval-only, KEY VALUE overrides). DIR holds
the dataset in detectron2's COCO layout (coco/annotations/instances_{train,val}2017.json beside coco/{train,val}2017/,
as the data phase writes it). Its splits are registered as spotter_train and spotter_val in every worker process,
and the overrides gain DATASETS.TRAIN/TEST and the number of classes from the annotations: the builtin
coco_2017_* names would give any other dataset COCO's 80 classes. --resume-from points OUTPUT_DIR's
last_checkpoint at a checkpoint restored from S3 and passes --resume: training goes on from its iteration.
--checkpoint-weights says MODEL.WEIGHTS is a detectron2 checkpoint whatever its file is called (promoted weights,
put where the pretrained .pkl goes): detectron2 reads a .pkl as a pickle, so it gets the file under a .pth name.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

TRAIN_SET, VAL_SET = "spotter_train", "spotter_val"
COCO_DIR = "coco"


@dataclass(frozen=True)
class Split:
    name: str
    json_file: str
    image_root: str


class DatasetLayoutError(ValueError):
    """The data folder is not in detectron2's COCO layout."""


def splits(data: Path) -> tuple[Split, Split]:
    """The train and val splits of `data`, as detectron2 registers them."""
    base = data.resolve() / COCO_DIR
    found = []
    for name, split in ((TRAIN_SET, "train"), (VAL_SET, "val")):
        json_file = base / "annotations" / f"instances_{split}2017.json"
        image_root = base / f"{split}2017"
        if not json_file.is_file() or not image_root.is_dir():
            raise DatasetLayoutError(f"{data} has no {split} split: expected {json_file} and {image_root}/")
        found.append(Split(name, str(json_file), str(image_root)))
    return found[0], found[1]


def class_count(json_file: str) -> int:
    with open(json_file, encoding="utf-8") as f:
        categories = json.load(f).get("categories") or []
    if not categories:
        raise DatasetLayoutError(f"{json_file} has no categories")
    return len(categories)


def overrides(train: Split, val: Split, classes: int) -> list[str]:
    """train_net overrides (KEY VALUE pairs) that train and test on the registered splits."""
    return [
        "DATASETS.TRAIN",
        f"('{train.name}',)",
        "DATASETS.TEST",
        f"('{val.name}',)",
        "MODEL.ROI_HEADS.NUM_CLASSES",
        str(classes),
    ]


def override(opts: Sequence[str], key: str, needed_by: str) -> str:
    """The value an override list gives `key` (the last one wins, as in detectron2's own merge)."""
    found = [opts[i + 1] for i in range(0, len(opts) - 1, 2) if opts[i] == key]
    if not found:
        raise DatasetLayoutError(f"{needed_by} needs {key} among train_net's overrides")
    return found[-1]


def output_dir(opts: Sequence[str]) -> Path:
    return Path(override(opts, "OUTPUT_DIR", "--resume-from"))


def weights_as_checkpoint(opts: Sequence[str]) -> list[str]:
    """Overrides that give detectron2 the MODEL.WEIGHTS file under a name it loads with torch.load: a link named
    `<file>.pth` beside it (none needed for a .pth). detectron2 picks the loader by the file's name."""
    weights = Path(override(opts, "MODEL.WEIGHTS", "--checkpoint-weights"))
    if weights.suffix == ".pth":
        return []
    if not weights.is_file():
        raise DatasetLayoutError(f"the MODEL.WEIGHTS file {weights} is not there")
    link = weights.with_name(weights.name + ".pth")
    link.unlink(missing_ok=True)
    link.symlink_to(weights.resolve())
    return ["MODEL.WEIGHTS", str(link)]


def point_at(checkpoint: Path, out: Path) -> None:
    """Make `checkpoint` the one train_net --resume loads: detectron2 reads its name from OUTPUT_DIR/last_checkpoint
    and joins it to OUTPUT_DIR, which leaves an absolute path as it is."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "last_checkpoint").write_text(str(checkpoint.resolve()))


def _load(script: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_net", script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {script}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def worker(script: str, sets: tuple[Split, ...], args: argparse.Namespace) -> Any:
    """One process of the run: detectron2 starts each GPU's worker afresh, with empty dataset catalogs."""
    from detectron2.data.datasets import register_coco_instances

    for s in sets:
        register_coco_instances(s.name, {}, s.json_file, s.image_root)
    return _load(script).main(args)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent.trainers.detectron2_train", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="the dataset in detectron2's COCO layout")
    p.add_argument("--resume-from", type=Path, help="a checkpoint to go on from (a resumed attempt's)")
    p.add_argument(
        "--checkpoint-weights", action="store_true", help="MODEL.WEIGHTS is a detectron2 checkpoint, whatever its name"
    )
    p.add_argument("script", help="tools/train_net.py of the detectron2 checkout")
    p.add_argument("args", nargs=argparse.REMAINDER, help="train_net's own arguments")
    a = p.parse_args(argv)
    from detectron2.engine import default_argument_parser, launch

    args = default_argument_parser().parse_args(a.args)
    try:
        train, val = splits(a.data)
        args.opts = [*args.opts, *overrides(train, val, class_count(train.json_file))]
        if a.checkpoint_weights:
            args.opts += weights_as_checkpoint(args.opts)
        if a.resume_from is not None:
            point_at(a.resume_from, output_dir(args.opts))
            args.resume = True
    except (DatasetLayoutError, OSError, json.JSONDecodeError) as e:
        print(f"detectron2_train: {e}", file=sys.stderr)
        return 1
    print(f"registered {train.name} ({train.json_file}) and {val.name} ({val.json_file}); overrides {args.opts}")
    launch(
        worker,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(a.script, (train, val), args),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
