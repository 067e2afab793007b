"""Dataset converters, format detection and image headers, on tiny synthetic datasets written by the tests.

The builders here (one small dataset in every stored format, the same boxes in each) are shared with the
prepare and publish tests.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
import yaml

from agent.datasets.convert import (
    Box,
    Sample,
    coco_document,
    parse_voc,
    read,
    read_coco,
    read_yolo,
    voc_boxes,
    write,
    yolo_text,
)
from agent.datasets.formats import FormatError, Tree, describe, detect_format, parse_data_yaml, voc_names
from agent.datasets.images import ImageError, image_size
from agent.datasets.manifest import FileEntry, Manifest

W, H = 200, 100
CLASSES = ("boat", "dock")
PxBox = tuple[int, float, float, float, float]  # class, x0, y0, x1, y1 in pixels
# The one dataset every builder writes: pixel boxes per split and image; [] is a negative image.
BOXES: dict[str, dict[str, list[PxBox]]] = {
    "train": {"a": [(0, 20, 10, 60, 50), (1, 100, 20, 200, 100)], "b": [(1, 0, 0, 50, 100)], "c": []},
    "val": {"d": [(0, 40, 40, 80, 60)], "e": []},
}
NEGATIVES = {("train", "c"), ("val", "e")}


# -- tiny images, made of bytes -------------------------------------------------------------------------------


def png(width: int = W, height: int = H, fill: int = 0x80) -> bytes:
    raw = b"".join(b"\x00" + bytes([fill]) * (3 * width) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def jpeg(width: int = W, height: int = H, orientation: int | None = None, fill: int = 0) -> bytes:
    """A JPEG's headers (JFIF, optional EXIF orientation, frame header): all a size reader looks at."""
    segments = [b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01" + bytes([fill, 0])]
    if orientation is not None:
        ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
        exif = b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
        segments.append(b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif)
    frame = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + b"".join(segments) + frame + b"\xff\xd9"


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _fill(stem: str) -> int:
    return ord(stem)  # every image differs from the others


def yolo_line(box: PxBox) -> str:
    c, x0, y0, x1, y1 = box
    return f"{c} {(x0 + x1) / 2 / W:.6f} {(y0 + y1) / 2 / H:.6f} {(x1 - x0) / W:.6f} {(y1 - y0) / H:.6f}\n"


# -- one dataset in every stored format ------------------------------------------------------------------------


def write_yolo_tree(root: Path, style: str = "ultralytics") -> Path:
    """Ultralytics (images/<split>, labels/<split>) or a Roboflow export (<split>/images, valid for val).
    One negative has an empty label file, the other none at all."""
    for split, images in BOXES.items():
        folder = {"train": "train", "val": "valid"}[split] if style == "roboflow" else split
        for stem, boxes in images.items():
            image = root / (f"{folder}/images" if style == "roboflow" else f"images/{folder}") / f"{stem}.png"
            label = root / (f"{folder}/labels" if style == "roboflow" else f"labels/{folder}") / f"{stem}.txt"
            _write(image, png(fill=_fill(stem)))
            if stem != "e":
                _write(label, "".join(yolo_line(b) for b in boxes))
    if style == "roboflow":
        _write(
            root / "data.yaml",
            "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 2\nnames: ['boat', 'dock']\n\n"
            "roboflow:\n  workspace: demo\n  url: https://universe.roboflow.com/demo/boats/1\n",
        )
    else:
        _write(
            root / "data.yaml",
            "path: ../datasets/boats  # where Ultralytics keeps it\ntrain: images/train\nval: images/val\n"
            "names:\n  0: boat\n  1: dock\n",
        )
    return root


def write_darknet_tree(root: Path) -> Path:
    """Seed 000's shape: a .data naming lists of the publisher's own paths, labels under the `labels` twin."""
    for split, images in BOXES.items():
        lines = []
        for stem, boxes in images.items():
            _write(root / "images" / f"{stem}.jpg", jpeg(fill=_fill(stem)))
            if stem != "e":
                _write(root / "labels" / f"{stem}.txt", "".join(yolo_line(b) for b in boxes))
            lines.append(f"data/boats/images/{stem}.jpg\n")
        _write(root / f"{split}.txt", "".join(lines))
    _write(root / "boats.names", "boat\ndock\n")
    _write(
        root / "boats.data",
        "classes = 2\ntrain = data/boats/train.txt\nvalid = data/boats/val.txt\n"
        "names = data/boats/boats.names\nbackup = backup/boats/\n",
    )
    return root


COCO_IDS = (3, 7)  # COCO's ids have gaps: classes follow them in order


def write_coco_tree(root: Path) -> Path:
    """annotations/instances_<split>2017.json (plus a captions file to ignore) and <split>2017/ images;
    a crowd region that a detector never sees as a box."""
    for split, images in BOXES.items():
        doc: dict[str, list[dict[str, object]]] = {"images": [], "annotations": [], "categories": []}
        doc["categories"] = [{"id": i, "name": n, "supercategory": "x"} for i, n in zip(COCO_IDS, CLASSES, strict=True)]
        for image_id, (stem, boxes) in enumerate(images.items(), 10):
            _write(root / f"{split}2017" / f"{stem}.png", png(fill=_fill(stem)))
            doc["images"].append({"id": image_id, "file_name": f"{stem}.png", "width": W, "height": H})
            for c, x0, y0, x1, y1 in boxes:
                bbox = [x0, y0, x1 - x0, y1 - y0]
                n = len(doc["annotations"]) + 1
                doc["annotations"].append(
                    {"id": n, "image_id": image_id, "category_id": COCO_IDS[c], "bbox": bbox, "iscrowd": 0}
                )
            if stem == "a":
                doc["annotations"].append(
                    {"id": 99, "image_id": image_id, "category_id": 3, "bbox": [0, 0, 10, 10], "iscrowd": 1}
                )
        _write(root / "annotations" / f"instances_{split}2017.json", json.dumps(doc))
        _write(root / "annotations" / f"captions_{split}2017.json", json.dumps({"annotations": []}))
    return root


def voc_xml(stem: str, boxes: list[PxBox], size: tuple[int, int] | None = (W, H)) -> str:
    objects = "".join(
        f"<object><name>{CLASSES[c]}</name><difficult>0</difficult>"
        f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for c, x0, y0, x1, y1 in boxes
    )
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    return f"<annotation><filename>{stem}.jpg</filename>{size_xml}{objects}</annotation>"


def write_voc_tree(root: Path, style: str = "folders") -> Path:
    """Seed 002's shape (train/ and val/ folders of images with their xml), or VOC's own (Annotations/,
    JPEGImages/, ImageSets/Main/). One negative has an xml without objects, the other no xml."""
    for split, images in BOXES.items():
        for stem, boxes in images.items():
            image_dir, xml_dir = (split, split) if style == "folders" else ("JPEGImages", "Annotations")
            _write(root / image_dir / f"{stem}.jpg", jpeg(fill=_fill(stem)))
            if stem != "e":
                _write(root / xml_dir / f"{stem}.xml", voc_xml(stem, boxes))
        if style != "folders":
            ids = [s for s in images if s != "e"]  # a VOC list names annotated images
            _write(root / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{s}\n" for s in ids))
    return root


BUILDERS = {
    "yolo": write_yolo_tree,
    "roboflow": lambda root: write_yolo_tree(root, "roboflow"),
    "darknet": write_darknet_tree,
    "coco": write_coco_tree,
    "voc": write_voc_tree,
    "voc-imagesets": lambda root: write_voc_tree(root, "imagesets"),
}
STORED = {
    "yolo": "yolo",
    "roboflow": "yolo",
    "darknet": "darknet",
    "coco": "coco",
    "voc": "voc",
    "voc-imagesets": "voc",
}


def expected(source: str) -> dict[str, dict[str, list[PxBox]]]:
    """What a layout must hold: every image with its boxes (the VOC id list leaves its unlisted negative out)."""
    want = {split: {stem: sorted(boxes) for stem, boxes in images.items()} for split, images in BOXES.items()}
    if source == "voc-imagesets":
        del want["val"]["e"]
    return want


# -- reading a prepared layout back as pixel boxes -------------------------------------------------------------


def _from_yolo(label: Path) -> list[PxBox]:
    boxes = []
    for line in label.read_text().splitlines():
        c, cx, cy, w, h = line.split()
        x0, y0 = (float(cx) - float(w) / 2) * W, (float(cy) - float(h) / 2) * H
        boxes.append((int(c), round(x0, 2), round(y0, 2), round(x0 + float(w) * W, 2), round(y0 + float(h) * H, 2)))
    return sorted(boxes)


def layout_boxes(out: Path, layout: str) -> dict[str, dict[str, list[PxBox]]]:
    """The boxes of a prepared layout, checking on the way what its trainer relies on."""
    found: dict[str, dict[str, list[PxBox]]] = {}
    if layout == "yolo":
        conf = yaml.safe_load((out / "data.yaml").read_text())
        assert conf["names"] == list(CLASSES) and conf["nc"] == len(CLASSES)
        for split in ("train", "val"):
            images = Path(conf[split])
            assert images.is_absolute() and images == out.resolve() / "images" / split
            found[split] = {}
            for image in sorted(images.iterdir()):
                label = out / "labels" / split / f"{image.stem}.txt"
                assert label.is_file(), f"{label}: every image has a label file, negatives an empty one"
                found[split][image.stem] = _from_yolo(label)
    elif layout == "darknet":
        assert (out / "obj.names").read_text() == "boat\ndock\n"
        for split, listing in (("train", "train.txt"), ("val", "valid.txt")):
            found[split] = {}
            for line in (out / listing).read_text().splitlines():
                image = Path(line)
                assert image.is_absolute() and image.is_file() and "images" not in image.parts
                found[split][image.stem] = _from_yolo(image.with_suffix(".txt"))
    else:
        for split in ("train", "val"):
            doc = json.loads((out / "coco" / "annotations" / f"instances_{split}2017.json").read_text())
            index = {c["id"]: i for i, c in enumerate(sorted(doc["categories"], key=lambda c: c["id"]))}
            assert [c["name"] for c in sorted(doc["categories"], key=lambda c: c["id"])] == list(CLASSES)
            by_id: dict[int, list[PxBox]] = {img["id"]: [] for img in doc["images"]}
            for ann in doc["annotations"]:
                if not ann["iscrowd"]:
                    x, y, w, h = ann["bbox"]
                    by_id[ann["image_id"]].append((index[ann["category_id"]], x, y, round(x + w, 2), round(y + h, 2)))
            found[split] = {}
            for img in doc["images"]:
                assert (img["width"], img["height"]) == (W, H)
                assert (out / "coco" / f"{split}2017" / img["file_name"]).is_file()
                found[split][Path(img["file_name"]).stem] = sorted(by_id[img["id"]])
    return found


# -- converters -------------------------------------------------------------------------------------------------


def test_voc_to_yolo_clips_keeps_difficult_and_leaves_other_classes_out() -> None:
    xml = (
        "<annotation><size><width>200</width><height>100</height></size>"
        "<object><name>boat</name><difficult>1</difficult>"
        "<bndbox><xmin>20</xmin><ymin>10</ymin><xmax>60</xmax><ymax>50</ymax></bndbox></object>"
        "<object><name>dock</name><bndbox><xmin>-10</xmin><ymin>20.0</ymin><xmax>210</xmax><ymax>100</ymax></bndbox>"
        "</object><object><name>person</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        "<object><name>boat</name>"
        "<bndbox><xmin>250</xmin><ymin>1</ymin><xmax>300</xmax><ymax>5</ymax></bndbox></object></annotation>"
    )
    voc = parse_voc(xml, "a.xml")
    assert voc.size == (W, H)
    boxes, dropped = voc_boxes(voc, (W, H), CLASSES)
    assert yolo_text(boxes) == "0 0.200000 0.300000 0.200000 0.400000\n1 0.500000 0.600000 1.000000 0.800000\n"
    assert dropped == {"`person`": 1, "empty boxes": 1}  # the last boat lies outside the image


def test_voc_without_a_size_or_a_box() -> None:
    voc = parse_voc(voc_xml("a", BOXES["train"]["a"], size=None), "a.xml")
    assert voc.size is None and voc.filename == "a.jpg"
    assert yolo_text(voc_boxes(voc, (W, H), CLASSES)[0]) == "".join(yolo_line(b) for b in BOXES["train"]["a"])
    with pytest.raises(FormatError, match=r"a\.xml: an object without a numeric bndbox"):
        parse_voc("<annotation><object><name>boat</name></object></annotation>", "a.xml")
    with pytest.raises(FormatError, match=r"b\.xml is not valid XML"):
        parse_voc("<annotation>", "b.xml")


@pytest.mark.parametrize(
    "xml",
    [
        # an entity that expands a billion times
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY l0 "ha"><!ENTITY l1 "&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;">'
        '<!ENTITY l2 "&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;">]><annotation><filename>&l2;</filename></annotation>',
        # an entity that reads a file on the instance
        '<!doctype annotation [<!entity x SYSTEM "file:///etc/passwd">]><annotation><filename>&x;</filename>'
        "</annotation>",
    ],
)
def test_voc_with_a_dtd_is_refused_before_it_is_parsed(xml: str, tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=r"a\.xml declares a DTD or entities"):
        parse_voc(xml, "a.xml")
    (tmp_path / "a.xml").write_text(xml)
    with pytest.raises(FormatError, match=r"a\.xml declares a DTD"):
        voc_names(Tree(tmp_path, ["a.xml"]), ["a.xml"])


def test_yolo_to_coco_numbers() -> None:
    sample = Sample(image="a.png", name="a.png", boxes=(Box(0, 0.2, 0.3, 0.2, 0.4), Box(1, 0.75, 0.6, 0.5, 0.8)))
    doc = coco_document([sample, Sample(image="c.png", name="c.png", boxes=())], CLASSES, lambda s: (W, H))
    assert doc["categories"] == [
        {"id": 1, "name": "boat", "supercategory": "none"},
        {"id": 2, "name": "dock", "supercategory": "none"},
    ]
    assert doc["images"] == [
        {"id": 1, "file_name": "a.png", "width": 200, "height": 100},
        {"id": 2, "file_name": "c.png", "width": 200, "height": 100},
    ]
    assert [(a["category_id"], a["bbox"], a["area"], a["iscrowd"]) for a in doc["annotations"]] == [
        (1, [20.0, 10.0, 40.0, 40.0], 1600.0, 0),
        (2, [100.0, 20.0, 100.0, 80.0], 8000.0, 0),
    ]


def test_yolo_coco_yolo_round_trip_is_exact(tmp_path: Path) -> None:
    source = Tree.walk(write_yolo_tree(tmp_path / "yolo"))
    desc = describe(source)
    write("coco", tmp_path / "coco", source, read(source, desc, CLASSES), CLASSES)
    coco = Tree.walk(tmp_path / "coco")
    back = read_coco(coco, "coco/annotations/instances_train2017.json", CLASSES)
    assert back.coco is not None  # its categories are the classes: a COCO layout would keep the file whole
    for sample in back.samples:
        stem = Path(sample.name).stem
        original = (tmp_path / "yolo" / "labels" / "train" / f"{stem}.txt").read_text()
        assert yolo_text(sample.boxes) == original, stem


def test_coco_to_yolo_maps_sparse_category_ids_and_drops_crowds(tmp_path: Path) -> None:
    tree = Tree.walk(write_coco_tree(tmp_path))
    split = read_coco(tree, "annotations/instances_train2017.json", CLASSES)
    texts = {Path(s.name).stem: yolo_text(s.boxes) for s in split.samples}
    assert texts == {stem: "".join(yolo_line(b) for b in boxes) for stem, boxes in BOXES["train"].items()}
    assert split.dropped == {"crowd regions": 1}
    assert "left out: 1 crowd regions" in split.summary("train", 2)
    only_docks = read_coco(tree, "annotations/instances_train2017.json", ("dock",))
    assert only_docks.coco is None and only_docks.dropped["`boat`"] == 1


def test_yolo_and_darknet_share_label_files(tmp_path: Path) -> None:
    source = Tree.walk(write_yolo_tree(tmp_path / "yolo"))
    desc = describe(source)
    write("darknet", tmp_path / "darknet", source, read(source, desc, CLASSES), CLASSES)
    label = tmp_path / "darknet" / "train" / "a.txt"
    assert label.read_text() == (tmp_path / "yolo" / "labels" / "train" / "a.txt").read_text()
    assert label.stat().st_ino == (tmp_path / "yolo" / "labels" / "train" / "a.txt").stat().st_ino  # a hard link
    back = Tree.walk(tmp_path / "darknet")
    again = read_yolo(back, "train.txt", CLASSES)
    assert {Path(s.name).stem: yolo_text(s.boxes) for s in again.samples} == {
        stem: "".join(yolo_line(b) for b in boxes) for stem, boxes in BOXES["train"].items()
    }


@pytest.mark.parametrize("source", sorted(BUILDERS))
@pytest.mark.parametrize("layout", ["yolo", "darknet", "coco"])
def test_every_format_converts_to_every_layout(tmp_path: Path, source: str, layout: str) -> None:
    tree = Tree.walk(BUILDERS[source](tmp_path / "src"))
    desc = describe(tree, classes=CLASSES)
    assert desc.format == STORED[source] and desc.classes == CLASSES
    write(layout, tmp_path / "out", tree, read(tree, desc, CLASSES), CLASSES)  # type: ignore[arg-type]
    assert layout_boxes(tmp_path / "out", layout) == expected(source)


def test_bad_yolo_labels_name_the_file_and_line(tmp_path: Path) -> None:
    write_yolo_tree(tmp_path)
    (tmp_path / "labels" / "train" / "b.txt").write_text("1 0.1 0.1 0.1 0.1\n0 0.5 0.5\n")
    tree = Tree.walk(tmp_path)
    with pytest.raises(FormatError, match=r"labels/train/b\.txt:2: expected `class cx cy w h`"):
        read(tree, describe(tree), CLASSES)
    (tmp_path / "labels" / "train" / "b.txt").write_text("2 0.5 0.5 0.1 0.1\n")
    with pytest.raises(FormatError, match=r"b\.txt:1: class 2 is not one of the 2 classes"):
        read(tree, describe(tree), CLASSES)


# -- detection, configs, headers --------------------------------------------------------------------------------


@pytest.mark.parametrize("source", sorted(BUILDERS))
def test_formats_splits_and_classes_are_detected(tmp_path: Path, source: str) -> None:
    tree = Tree.walk(BUILDERS[source](tmp_path))
    assert detect_format(tree) == STORED[source]
    desc = describe(tree)
    assert desc.classes == CLASSES and set(desc.splits) == {"train", "val"}
    splits = {
        "yolo": {"train": "images/train", "val": "images/val"},
        "roboflow": {"train": "train/images", "val": "valid/images"},  # test: named, not shipped
        "darknet": {"train": "train.txt", "val": "val.txt"},
        "coco": {"train": "annotations/instances_train2017.json", "val": "annotations/instances_val2017.json"},
        "voc": {"train": "train", "val": "val"},
        "voc-imagesets": {"train": "ImageSets/Main/train.txt", "val": "ImageSets/Main/val.txt"},
    }
    assert desc.splits == splits[source]


def test_unknown_layouts_and_wrong_classes_are_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(FormatError, match="cannot tell the dataset's layout: expected YOLO"):
        describe(Tree.walk(tmp_path))
    tree = Tree.walk(write_darknet_tree(tmp_path / "darknet"))
    with pytest.raises(FormatError, match=r"the classes given \(dock, boat\) are not the dataset's \(boat, dock\)"):
        describe(tree, classes=("dock", "boat"))


def test_list_entries_are_found_by_their_trailing_parts() -> None:
    tree = Tree(Path("/nowhere"), ["images/a.jpg", "val/images/a.jpg", "train/images/b.jpg", "x.txt"])
    assert tree.find("/content/data/train/images/b.jpg") == "train/images/b.jpg"
    assert tree.find("../val/images/a.jpg") == "val/images/a.jpg"
    assert tree.find("b.jpg") == "train/images/b.jpg"
    assert tree.find("a.jpg") is None  # two candidates, neither closer: not guessed
    assert tree.find("images", "val") == "val/images"


def test_data_yaml_forms() -> None:
    roboflow = parse_data_yaml(
        "train: ../train/images\nval: ../valid/images # the valid split\nnc: 3\n"
        "names: ['boat', \"jet, ski\", 'it''s']\nroboflow:\n  workspace: w\n  url: https://x/y\n"
    )
    assert roboflow["names"] == ["boat", "jet, ski", "it's"] and roboflow["nc"] == 3
    assert roboflow["roboflow"] == {"workspace": "w", "url": "https://x/y"}
    assert parse_data_yaml("names:\n  0: person\n  1: 'bike'\n")["names"] == {0: "person", 1: "bike"}
    assert parse_data_yaml("names:\n- a\n- b\n")["names"] == ["a", "b"]
    assert parse_data_yaml("names: {0: a, 1: b}\n")["names"] == {0: "a", 1: "b"}


def test_image_sizes_from_headers(tmp_path: Path) -> None:
    cases = {
        "a.png": (png(7, 5), (7, 5)),
        "b.jpg": (jpeg(640, 480), (640, 480)),
        "c.jpg": (jpeg(640, 480, orientation=6), (480, 640)),  # rotated 90° by EXIF, as trainers load it
        "d.jpg": (jpeg(640, 480, orientation=3), (640, 480)),  # upside down: same size
        "e.bmp": (b"BM" + bytes(16) + struct.pack("<ii", 33, -22) + bytes(30), (33, 22)),
    }
    for name, (data, size) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert image_size(tmp_path / name) == size, name
    (tmp_path / "f.gif").write_bytes(b"GIF89a" + bytes(20))
    with pytest.raises(ImageError, match="not a PNG, JPEG or BMP"):
        image_size(tmp_path / "f.gif")
    (tmp_path / "g.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    with pytest.raises(ImageError):
        image_size(tmp_path / "g.jpg")


# -- the manifest -----------------------------------------------------------------------------------------------


def _manifest(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "name": "boats",
        "version": "1",
        "format": "yolo",
        "classes": ["boat"],
        "splits": {"train": "images/train", "val": "images/val"},
        "files": [
            {"path": "images/train/a.png", "size": 1, "sha256": "0" * 64},
            {"path": "images/val/b.png", "size": 1, "sha256": "1" * 64},
        ],
        "source": "test",
    }
    doc.update(changes)
    return doc


def test_manifest_paths_must_stay_inside_the_dataset() -> None:
    assert Manifest.model_validate(_manifest()).size == 2
    for bad in ("../etc/passwd", "/etc/passwd", "a//b.png", "a/./b.png", "a\\b.png"):
        with pytest.raises(ValueError, match="relative path"):
            FileEntry(path=bad, size=1, sha256="0" * 64)
    with pytest.raises(ValueError, match="neither a file nor a folder"):
        Manifest.model_validate(_manifest(splits={"train": "images/train", "val": "images/test"}))
    with pytest.raises(ValueError, match="distinct"):
        Manifest.model_validate(_manifest(classes=["boat", "boat"]))


def test_a_coco_file_name_cannot_place_files_outside_the_layout(tmp_path: Path) -> None:
    write_coco_tree(tmp_path / "src")
    doc_path = tmp_path / "src" / "annotations" / "instances_val2017.json"
    doc = json.loads(doc_path.read_text())
    doc["images"][0]["file_name"] = "../../../val2017/d.png"
    doc_path.write_text(json.dumps(doc))
    tree = Tree.walk(tmp_path / "src")
    split = read_coco(tree, "annotations/instances_val2017.json", CLASSES)
    assert split.coco is None  # rewritten, not kept whole
    assert [s.name for s in split.samples] == ["val2017/d.png", "e.png"]
    write("coco", tmp_path / "out", tree, {"val": split}, CLASSES)
    assert (tmp_path / "out" / "coco" / "val2017" / "val2017" / "d.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]
