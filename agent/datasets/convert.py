"""Converters between YOLO txt, darknet, COCO json and Pascal VOC xml, through one in-memory form.

A reader turns one split of a stored dataset into samples (an image and its boxes, YOLO-style fractions); a
writer lays samples out the way a trainer reads them. Images are hard-linked, not copied, when the disk
allows. Images without boxes are negatives: every layout keeps them, with an empty label file.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from agent.datasets.formats import FormatError, Tree, coco_categories, parse_xml, split_word
from agent.datasets.images import ImageError, image_size, is_image
from agent.datasets.manifest import Description, SplitName, safe_path
from agent.plan import Layout

# Where each layout puts a split's image list (darknet) or annotation file (COCO, detectron2's builtin names).
DARKNET_LISTS: dict[SplitName, str] = {"train": "train.txt", "val": "valid.txt", "test": "test.txt"}
DARKNET_NAMES = "obj.names"
COCO_DIR = "coco"


@dataclass(frozen=True, slots=True)
class Box:
    """One object: class index, centre and size as fractions of the image (YOLO's numbers)."""

    cls: int
    cx: float
    cy: float
    w: float
    h: float


@dataclass(frozen=True)
class Sample:
    image: str  # path in the source tree
    name: str  # path inside its split, kept in every layout
    boxes: tuple[Box, ...]
    size: tuple[int, int] | None = None  # (width, height) when the source gives it
    label: str | None = None  # the source's YOLO txt: linked as is into YOLO and darknet layouts


@dataclass
class Split:
    samples: list[Sample]
    coco: str | None = None  # the source's COCO file, kept whole in a COCO layout (masks, ids and all)
    dropped: Counter[str] = field(default_factory=Counter)  # boxes left out, by reason

    def summary(self, name: str, classes: int) -> str:
        boxes = sum(len(s.boxes) for s in self.samples)
        empty = sum(not s.boxes for s in self.samples)
        line = f"{name}: {len(self.samples)} images, {boxes} boxes, {empty} empty labels, {classes} classes"
        if self.dropped:
            line += " (left out: " + ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items())) + ")"
        return line


# -- YOLO txt -------------------------------------------------------------------------------------------------


def parse_yolo(text: str, classes: int, where: str) -> tuple[Box, ...]:
    boxes = []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 5:
                raise ValueError
            cls, (cx, cy, w, h) = int(fields[0]), map(float, fields[1:])
        except ValueError:
            raise FormatError(f"{where}:{n}: expected `class cx cy w h`, got {line.strip()!r}") from None
        if not 0 <= cls < classes:
            raise FormatError(f"{where}:{n}: class {cls} is not one of the {classes} classes")
        boxes.append(Box(cls, cx, cy, w, h))
    return tuple(boxes)


def yolo_text(boxes: tuple[Box, ...]) -> str:
    return "".join(f"{b.cls} {b.cx:.6f} {b.cy:.6f} {b.w:.6f} {b.h:.6f}\n" for b in boxes)


def _names_in_split(images: list[str]) -> list[str]:
    """Each image's path below the folder all of them share: unique, and short."""
    parents = [posixpath.dirname(i) for i in images]
    common = posixpath.commonpath(parents) if parents and all(parents) else ""
    return [i[len(common) + 1 :] if common else i for i in images]


def _list_images(tree: Tree, ref: str) -> list[str]:
    """The images a split names: those below a folder, or the lines of a list file."""
    if ref not in tree.fileset:
        return [f for f in tree.under(ref) if is_image(f)]
    images = []
    for n, line in enumerate(tree.read_text(ref).splitlines(), 1):
        if not line.strip():
            continue
        found = tree.find(line, posixpath.dirname(ref))
        if found is None or found not in tree.fileset:
            raise FormatError(f"{ref}:{n}: {line.strip()} is not in the dataset")
        images.append(found)
    return images


def _yolo_label(tree: Tree, image: str) -> str | None:
    """Darknet keeps the txt beside the image; Ultralytics under the `labels` twin of its `images` folder."""
    stem = posixpath.splitext(image)[0]
    if f"{stem}.txt" in tree.fileset:
        return f"{stem}.txt"
    parts = stem.split("/")
    for folder in ("images", "JPEGImages"):
        if folder in parts[:-1]:
            i = len(parts) - 1 - parts[::-1].index(folder, 1)
            twin = "/".join([*parts[:i], "labels", *parts[i + 1 :]]) + ".txt"
            if twin in tree.fileset:
                return twin
    return None


def read_yolo(tree: Tree, ref: str, classes: tuple[str, ...]) -> Split:
    """A YOLO or darknet split: a folder of images or a list file, each image with its txt (none: a negative)."""
    images = _list_images(tree, ref)
    samples = []
    for image, name in zip(images, _names_in_split(images), strict=True):
        label = _yolo_label(tree, image)
        boxes = parse_yolo(tree.read_text(label), len(classes), label) if label else ()
        samples.append(Sample(image=image, name=name, boxes=boxes, label=label))
    return Split(samples)


# -- Pascal VOC xml -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VocObject:
    name: str
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in pixels


@dataclass(frozen=True)
class VocFile:
    filename: str
    size: tuple[int, int] | None
    objects: tuple[VocObject, ...]


def parse_voc(text: str | bytes, where: str) -> VocFile:
    root = parse_xml(text, where)
    try:
        width = int(float(root.findtext("size/width") or 0))
        height = int(float(root.findtext("size/height") or 0))
        objects = []
        for o in root.iter("object"):
            x0, y0, x1, y1 = (float(o.findtext(f"bndbox/{k}") or "") for k in ("xmin", "ymin", "xmax", "ymax"))
            objects.append(VocObject(name=(o.findtext("name") or "").strip(), box=(x0, y0, x1, y1)))
    except ValueError as e:
        raise FormatError(f"{where}: an object without a numeric bndbox ({e})") from None
    # Some tools write a 0x0 size: the image's own header says then.
    size = (width, height) if width > 0 and height > 0 else None
    return VocFile(filename=(root.findtext("filename") or "").strip(), size=size, objects=tuple(objects))


def voc_boxes(voc: VocFile, size: tuple[int, int], classes: tuple[str, ...]) -> tuple[tuple[Box, ...], Counter[str]]:
    """VOC pixel boxes as YOLO boxes: clipped to the image; `difficult` ones kept as normal boxes; objects of
    other classes left out (and counted), as in a person detector trained from a many-class set."""
    width, height = size
    index = {name: i for i, name in enumerate(classes)}
    boxes, dropped = [], Counter[str]()
    for obj in voc.objects:
        if obj.name not in index:
            dropped[f"`{obj.name}`"] += 1
            continue
        x0, y0, x1, y1 = obj.box
        x0, x1 = max(0.0, min(width, x0)), max(0.0, min(width, x1))
        y0, y1 = max(0.0, min(height, y0)), max(0.0, min(height, y1))
        if not (x1 > x0 and y1 > y0):
            dropped["empty boxes"] += 1
            continue
        boxes.append(
            Box(index[obj.name], (x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)
        )
    return tuple(boxes), dropped


def read_voc(tree: Tree, ref: str, classes: tuple[str, ...]) -> Split:
    """A VOC split: an ImageSets/Main list of ids, or a folder of images and their xml (none: a negative)."""
    pairs: list[tuple[str, str | None]] = []  # (image, xml)
    if ref in tree.fileset:
        voc_root = posixpath.dirname(posixpath.dirname(posixpath.dirname(ref)))
        for n, line in enumerate(tree.read_text(ref).splitlines(), 1):
            if not line.strip():
                continue
            xml = posixpath.join(voc_root, "Annotations", line.split()[0] + ".xml")
            if xml not in tree.fileset:
                raise FormatError(f"{ref}:{n}: {xml} is not in the dataset")
            pairs.append((_voc_image(tree, xml, posixpath.join(voc_root, "JPEGImages")), xml))
    else:
        files = tree.under(ref)
        xml_by_stem = {posixpath.splitext(posixpath.basename(f))[0]: f for f in files if f.lower().endswith(".xml")}
        with_xml: set[str] = set()
        for image in (f for f in files if is_image(f)):
            paired = xml_by_stem.get(posixpath.splitext(posixpath.basename(image))[0])
            pairs.append((image, paired))
            with_xml.add(paired or "")
        pairs += [(_voc_image(tree, xml, ref), xml) for xml in xml_by_stem.values() if xml not in with_xml]
    split = Split([])
    for (image, annotation), name in zip(pairs, _names_in_split([image for image, _ in pairs]), strict=True):
        if annotation is None:
            split.samples.append(Sample(image=image, name=name, boxes=()))
            continue
        voc = parse_voc(tree.path(annotation).read_bytes(), annotation)
        size = voc.size or _size(tree, image)
        boxes, dropped = voc_boxes(voc, size, classes)
        split.dropped.update(dropped)
        split.samples.append(Sample(image=image, name=name, boxes=boxes, size=size))
    return split


def _voc_image(tree: Tree, xml: str, near: str) -> str:
    voc = parse_voc(tree.path(xml).read_bytes(), xml)
    stem = posixpath.splitext(posixpath.basename(xml))[0]
    candidates = [voc.filename] if voc.filename else []
    candidates += [f"{stem}{suffix}" for suffix in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp")]
    for candidate in candidates:
        found = tree.find(candidate, near)
        if found is not None and found in tree.fileset and is_image(found):
            return found
    raise FormatError(f"{xml}: its image ({voc.filename or stem}) is not in the dataset")


def _size(tree: Tree, image: str) -> tuple[int, int]:
    try:
        return image_size(tree.path(image))
    except (ImageError, OSError) as e:
        raise FormatError(str(e)) from None


# -- COCO json ------------------------------------------------------------------------------------------------


def _coco_image_root(tree: Tree, ref: str) -> str:
    """Where a COCO file's images are: beside it (Roboflow), or in the folder its split is named after
    (annotations/instances_train2017.json → train2017/)."""
    stem = posixpath.basename(ref).removesuffix(".json")
    for token in stem.replace("-", "_").split("_"):
        if split_word(token):
            named = sorted((d for d in tree.dirs if posixpath.basename(d) == token), key=lambda d: d.count("/"))
            if named:
                return named[0]
    return posixpath.dirname(ref)


def read_coco(tree: Tree, ref: str, classes: tuple[str, ...]) -> Split:
    """A COCO split. Categories map to classes by name; crowd regions and other categories are left out."""
    doc = json.loads(tree.read_text(ref))
    categories = coco_categories(doc, ref)
    index = {name: i for i, name in enumerate(classes)}
    to_class = {cid: index[name] for cid, name in categories if name in index}
    names = dict(categories)
    image_root = _coco_image_root(tree, ref)
    keep_whole = tuple(n for _, n in categories) == classes
    split = Split([])
    by_image: dict[int, list[Box]] = {}
    images: dict[int, tuple[str, str, tuple[int, int]]] = {}
    try:
        for img in doc.get("images", ()):
            file_name = str(img["file_name"])
            found = tree.find(file_name, image_root)
            if found is None or found not in tree.fileset:
                raise FormatError(f"{ref}: image {file_name} is not in the dataset")
            try:
                name = safe_path(file_name)
            except ValueError:  # an absolute or `..` file_name must not place files outside the layout
                name, keep_whole = found, False
            size = (int(img["width"]), int(img["height"]))
            if min(size) <= 0:
                raise FormatError(f"{ref}: image {file_name} is {size[0]}x{size[1]}")
            images[int(img["id"])] = (found, name, size)
            by_image[int(img["id"])] = []
        for ann in doc.get("annotations", ()):
            image_id, cid = int(ann["image_id"]), int(ann["category_id"])
            if image_id not in images:
                raise FormatError(f"{ref}: annotation {ann.get('id')} is of image {image_id}, which is not listed")
            if ann.get("iscrowd"):
                split.dropped["crowd regions"] += 1
                continue
            if cid not in to_class:
                split.dropped[f"`{names.get(cid, cid)}`"] += 1
                continue
            width, height = images[image_id][2]
            x, y, w, h = (float(v) for v in ann["bbox"])
            x0, y0 = max(0.0, x), max(0.0, y)
            x1, y1 = min(float(width), x + w), min(float(height), y + h)
            if not (x1 > x0 and y1 > y0):
                split.dropped["empty boxes"] += 1
                continue
            by_image[image_id].append(
                Box(to_class[cid], (x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)
            )
    except FormatError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise FormatError(f"{ref} is not a COCO detection file ({type(e).__name__}: {e})") from None
    for image_id, (path, name, size) in images.items():
        split.samples.append(Sample(image=path, name=name, boxes=tuple(by_image[image_id]), size=size))
    split.coco = ref if keep_whole else None
    return split


def coco_document(
    samples: list[Sample], classes: tuple[str, ...], sizes: Callable[[Sample], tuple[int, int]]
) -> dict[str, Any]:
    """A COCO detection file: categories 1…N in class order, boxes [x, y, w, h] in pixels."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, sample in enumerate(samples, 1):
        width, height = sample.size or sizes(sample)
        images.append({"id": image_id, "file_name": sample.name, "width": width, "height": height})
        for b in sample.boxes:
            x0, y0 = max(0.0, (b.cx - b.w / 2) * width), max(0.0, (b.cy - b.h / 2) * height)
            x1, y1 = min(float(width), (b.cx + b.w / 2) * width), min(float(height), (b.cy + b.h / 2) * height)
            w, h = round(x1 - x0, 2), round(y1 - y0, 2)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": b.cls + 1,
                    "bbox": [round(x0, 2), round(y0, 2), w, h],
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                    "segmentation": [],
                }
            )
    categories = [{"id": i, "name": name, "supercategory": "none"} for i, name in enumerate(classes, 1)]
    return {"images": images, "annotations": annotations, "categories": categories}


# -- writers --------------------------------------------------------------------------------------------------


def _place(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(src, dst)


def _write_label(tree: Tree, sample: Sample, dst: Path) -> None:
    if sample.label is not None:
        _place(tree.path(sample.label), dst)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            dst.unlink()  # never write through a hard link into the source
        dst.write_text(yolo_text(sample.boxes))


def _label_name(split: SplitName, sample: Sample, seen: set[str]) -> str:
    name = str(PurePosixPath(sample.name).with_suffix(".txt"))
    if name in seen:
        raise FormatError(f"two {split} images share the label {name} (same name, different extensions)")
    seen.add(name)
    return name


def write_yolo(out: Path, tree: Tree, splits: dict[SplitName, Split], classes: tuple[str, ...]) -> None:
    """images/<split>/…, labels/<split>/… and a data.yaml with absolute paths (read by every YOLO trainer)."""
    for split, data in splits.items():
        seen: set[str] = set()
        for sample in data.samples:
            _place(tree.path(sample.image), out / "images" / split / sample.name)
            _write_label(tree, sample, out / "labels" / split / _label_name(split, sample, seen))
    root = out.resolve()
    lines = [f"path: {json.dumps(str(root))}"]
    lines += [f"{split}: {json.dumps(str(root / 'images' / split))}" for split in splits]
    lines += [f"nc: {len(classes)}", f"names: [{', '.join(json.dumps(c) for c in classes)}]"]
    (out / "data.yaml").write_text("\n".join(lines) + "\n")


def write_darknet(out: Path, tree: Tree, splits: dict[SplitName, Split], classes: tuple[str, ...]) -> None:
    """<split>/ with each image's txt beside it, train.txt/valid.txt of absolute image paths, obj.names.

    Folder names avoid `images` and `JPEGImages`: darknet rewrites those to find labels elsewhere.
    """
    root = out.resolve()
    for split, data in splits.items():
        seen: set[str] = set()
        paths = []
        for sample in data.samples:
            image = root / split / sample.name
            _place(tree.path(sample.image), image)
            _write_label(tree, sample, root / split / _label_name(split, sample, seen))
            paths.append(f"{image}\n")
        (out / DARKNET_LISTS[split]).write_text("".join(paths))
    (out / DARKNET_NAMES).write_text("".join(f"{c}\n" for c in classes))


def write_coco(out: Path, tree: Tree, splits: dict[SplitName, Split], classes: tuple[str, ...]) -> None:
    """coco/annotations/instances_<split>2017.json and coco/<split>2017/: detectron2's builtin layout, so
    DETECTRON2_DATASETS=<out> finds it. A COCO source's own file is kept whole."""
    base = out / COCO_DIR
    for split, data in splits.items():
        for sample in data.samples:
            _place(tree.path(sample.image), base / f"{split}2017" / sample.name)
        target = base / "annotations" / f"instances_{split}2017.json"
        if data.coco is not None:
            _place(tree.path(data.coco), target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        doc = coco_document(data.samples, classes, lambda s: _size(tree, s.image))
        target.write_text(json.dumps(doc, separators=(",", ":")))


READERS: dict[str, Callable[[Tree, str, tuple[str, ...]], Split]] = {
    "yolo": read_yolo,
    "darknet": read_yolo,
    "coco": read_coco,
    "voc": read_voc,
}
WRITERS: dict[Layout, Callable[[Path, Tree, dict[SplitName, Split], tuple[str, ...]], None]] = {
    "yolo": write_yolo,
    "darknet": write_darknet,
    "coco": write_coco,
}


def read(tree: Tree, desc: Description, classes: tuple[str, ...]) -> dict[SplitName, Split]:
    splits = {split: READERS[desc.format](tree, ref, classes) for split, ref in desc.splits.items()}
    for split, data in splits.items():
        if not data.samples:
            raise FormatError(f"the {split} split ({desc.splits[split]}) has no images")
    return splits


def write(layout: Layout, out: Path, tree: Tree, splits: dict[SplitName, Split], classes: tuple[str, ...]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    WRITERS[layout](out, tree, splits, classes)
