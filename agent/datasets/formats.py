"""What a dataset tree is: its format (YOLO, darknet, COCO, Pascal VOC), its splits and its classes.

Works on a local folder and the list of its files; the operator's publish tool and the instance (for an
`s3://` prefix that has no manifest) describe datasets the same way.
"""

from __future__ import annotations

import json
import posixpath
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from agent.datasets.manifest import Description, Format, SplitName

_SPLIT_WORD = re.compile(r"^(train|training|val|valid|validation|test|testing)(?:\d{4})?$")
_SPLIT_TOKEN = re.compile(r"(?:^|[_.-])(train|training|val|valid|validation|test|testing)(?:\d{4})?(?=[_.-]|$)")
_VOC_LIST = re.compile(r"(?:^|/)ImageSets/Main/(train|val|test)\.txt$")
# COCO files that hold no boxes for a detector: captions, keypoints, stuff, panoptic, unlabelled image lists.
_NOT_DETECTION = ("captions_", "person_keypoints_", "stuff_", "panoptic_", "image_info_")
LAYOUTS_HELP = (
    "YOLO (data.yaml with images/ and labels/), darknet (obj.data or *.names with train.txt), "
    "COCO (annotations/*.json) or Pascal VOC (*.xml)"
)


class FormatError(ValueError):
    """A dataset tree that cannot be read as asked; the message says what was expected."""


SPLIT_NAMES: tuple[SplitName, ...] = ("train", "val", "test")


def split_word(word: str) -> SplitName | None:
    """train/val/test for the names datasets give their splits (training, valid, val2017…)."""
    m = _SPLIT_WORD.match(word.lower())
    if not m:
        return None
    head = m.group(1)
    return "train" if head.startswith("train") else "test" if head.startswith("test") else "val"


def _depth_first(paths: Iterable[str]) -> list[str]:
    return sorted(paths, key=lambda p: (p.count("/"), p))


class Tree:
    """A dataset folder and its files, with the lookups list files and configs need."""

    def __init__(self, root: Path, files: Iterable[str]) -> None:
        self.root = root
        self.files = sorted(set(files))
        self.fileset = set(self.files)
        self.dirs = {str(p) for f in self.files for p in Path(f).parents if str(p) != "."}
        self._by_name: dict[str, list[str]] = {}
        for path in [*self.files, *self.dirs]:
            self._by_name.setdefault(posixpath.basename(path), []).append(path)

    @classmethod
    def walk(cls, root: Path) -> Tree:
        return cls(root, (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()))

    def path(self, rel: str) -> Path:
        return self.root / rel

    def read_text(self, rel: str) -> str:
        return self.path(rel).read_text(encoding="utf-8-sig", errors="replace")

    def under(self, folder: str) -> list[str]:
        """The files below `folder` ("" for all)."""
        start = folder.rstrip("/") + "/" if folder else ""
        return [f for f in self.files if f.startswith(start)]

    def named(self, basename: str) -> list[str]:
        return _depth_first(p for p in self._by_name.get(basename, ()) if p in self.fileset)

    def find(self, ref: str, base: str = "") -> str | None:
        """The file or folder a path in a list or config means: relative to `base`, to the root, or else the
        one whose trailing parts match most (lists often name images by the publisher's own absolute paths)."""
        ref = ref.strip().replace("\\", "/")
        parts = [p for p in ref.split("/") if p not in ("", ".", "..")]
        if not parts:
            return None
        for candidate in (posixpath.normpath(posixpath.join(base, ref)), "/".join(parts)):
            if candidate in self.fileset or candidate in self.dirs:
                return candidate
        best: str | None = None
        best_n, tie = 0, False
        for candidate in self._by_name.get(parts[-1], ()):
            have = candidate.split("/")
            n = 0
            while n < min(len(have), len(parts)) and have[-1 - n] == parts[-1 - n]:
                n += 1
            if n > best_n:
                best, best_n, tie = candidate, n, False
            elif n == best_n:
                tie = True
        return None if tie else best


# -- data.yaml (Ultralytics, YOLOv5, Roboflow exports) without PyYAML -------------------------------------------


def _strip_comment(line: str) -> str:
    quote = ""
    for i, c in enumerate(line):
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _split_flow(text: str) -> list[str]:
    items, current, quote = [], "", ""
    for c in text:
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == ",":
            items.append(current)
            current = ""
            continue
        current += c
    items.append(current)
    return [i.strip() for i in items if i.strip()]


def _scalar(text: str) -> str | int:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return str(json.loads(text))
        except ValueError:  # a YAML escape JSON does not share: the text between the quotes will do
            return text[1:-1]
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def _value(text: str) -> object:
    if text.startswith("[") and text.endswith("]"):
        return [_scalar(i) for i in _split_flow(text[1:-1])]
    if text.startswith("{") and text.endswith("}"):
        pairs = (item.partition(":") for item in _split_flow(text[1:-1]))
        return {_scalar(k): _scalar(v) for k, _, v in pairs}
    return _scalar(text)


def parse_data_yaml(text: str) -> dict[str, object]:
    """The top-level keys of a data.yaml: scalars, flow lists and maps, and one level of block list or map."""
    out: dict[str, object] = {}
    block: str | None = None
    for raw in text.splitlines():
        line = _strip_comment(raw).rstrip()
        if not line.strip():
            continue
        if not raw[0].isspace() and not line.startswith("-"):
            key, sep, value = line.partition(":")
            if not sep:
                raise FormatError(f"data.yaml line {raw!r} is not `key: value`")
            key, value = key.strip(), value.strip()
            out[key] = _value(value) if value else None
            block = None if value else key  # a block list or map follows
        elif block is not None:
            item = line.strip()
            current = out[block]
            if item.startswith("-"):
                seq: list[object] = current if isinstance(current, list) else []
                seq.append(_scalar(item[1:]))
                out[block] = seq
            elif ":" in item:
                key, _, value = item.partition(":")
                mapping: dict[object, object] = current if isinstance(current, dict) else {}
                mapping[_scalar(key)] = _scalar(value) if value.strip() else ""
                out[block] = mapping
    return out


def yaml_names(conf: dict[str, object], where: str) -> tuple[str, ...]:
    """`names` as a list or an index map, checked against `nc` when both are given."""
    names = conf.get("names")
    if isinstance(names, list):
        result = tuple(str(n) for n in names)
    elif isinstance(names, dict):
        if set(names) != set(range(len(names))):
            raise FormatError(f"{where}: `names` must be numbered 0…{len(names) - 1}")
        result = tuple(str(names[i]) for i in range(len(names)))
    else:
        raise FormatError(f"{where} has no `names` list")
    nc = conf.get("nc")
    if nc is not None and nc != len(result):
        raise FormatError(f"{where}: nc is {nc} but {len(result)} names are given")
    return result


# -- detection -----------------------------------------------------------------------------------------------


def _coco_files(tree: Tree) -> list[str]:
    found = []
    for f in tree.files:
        name = posixpath.basename(f)
        if not name.endswith(".json") or name.startswith(_NOT_DETECTION):
            continue
        if name == "_annotations.coco.json" or "annotations" in f.split("/")[:-1]:
            found.append(f)
    return found


def detect_format(tree: Tree) -> Format:
    names = {posixpath.basename(f) for f in tree.files}
    if "data.yaml" in names:
        return "yolo"
    if any(n.endswith(".data") for n in names) or (any(n.endswith(".names") for n in names) and "train.txt" in names):
        return "darknet"
    if _coco_files(tree):
        return "coco"
    if any(n.lower().endswith(".xml") for n in names):
        return "voc"
    if any(f.endswith(".txt") and "labels" in f.split("/") for f in tree.files):
        return "yolo"
    raise FormatError(f"cannot tell the dataset's layout: expected {LAYOUTS_HELP}")


# -- splits ---------------------------------------------------------------------------------------------------


def _data_yaml(tree: Tree) -> str | None:
    found = tree.named("data.yaml")
    return found[0] if found else None


def _yolo_splits(tree: Tree) -> dict[SplitName, str]:
    splits: dict[SplitName, str] = {}
    yaml = _data_yaml(tree)
    if yaml is not None:
        conf = parse_data_yaml(tree.read_text(yaml))
        base = posixpath.dirname(yaml)
        if isinstance(conf.get("path"), str):
            base = posixpath.normpath(posixpath.join(base, str(conf["path"])))
        for key in SPLIT_NAMES:
            value = conf.get(key)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                raise FormatError(f"{yaml}: `{key}` must be one folder or list file")
            found = tree.find(value, base)
            if found is None and key != "test":  # exports often name a test split they do not ship
                raise FormatError(f"{yaml} names {key}: {value}, which is not in the dataset")
            if found is not None:
                splits[key] = found
    if not splits:
        for d in _depth_first(tree.dirs):
            parts = d.split("/")
            if len(parts) < 2 or "images" not in parts[-2:]:
                continue
            split = split_word(parts[-1] if parts[-2] == "images" else parts[-2])
            if split:
                splits.setdefault(split, d)
    return splits


def _darknet_data(tree: Tree) -> tuple[str, dict[str, str]] | None:
    data = _depth_first(f for f in tree.files if f.endswith(".data"))
    if not data:
        return None
    pairs = (line.partition("=") for line in tree.read_text(data[0]).splitlines() if "=" in line)
    return data[0], {k.strip(): v.strip() for k, _, v in pairs}


def _darknet_splits(tree: Tree) -> dict[SplitName, str]:
    splits: dict[SplitName, str] = {}
    data = _darknet_data(tree)
    if data is not None:
        where, conf = data
        for key, value in conf.items():
            split = split_word(key)
            if split and value:
                found = tree.find(value, posixpath.dirname(where))
                if found is None:
                    raise FormatError(f"{where} names {key} = {value}, which is not in the dataset")
                splits[split] = found
    if not splits:
        for name in ("train.txt", "valid.txt", "val.txt", "test.txt"):
            split = split_word(name.removesuffix(".txt"))
            named = tree.named(name)
            if split and named:
                splits.setdefault(split, named[0])
    return splits


def _coco_splits(tree: Tree) -> dict[SplitName, str]:
    by_split: dict[SplitName, list[str]] = {}
    for f in _coco_files(tree):
        stem = posixpath.basename(f).removesuffix(".json")
        m = _SPLIT_TOKEN.search(stem)
        split = split_word(m.group(1)) if m else split_word(posixpath.basename(posixpath.dirname(f)))
        if split:
            by_split.setdefault(split, []).append(f)
    splits: dict[SplitName, str] = {}
    for split, files in by_split.items():
        # COCO's annotation zip also holds captions and keypoints per split: the instances file is the one.
        instances = [f for f in files if posixpath.basename(f).startswith("instances_")] or files
        if len(instances) > 1:
            raise FormatError(f"more than one annotation file for {split}: {', '.join(instances)}")
        splits[split] = instances[0]
    return splits


def _voc_splits(tree: Tree) -> dict[SplitName, str]:
    splits: dict[SplitName, str] = {}
    for f in _depth_first(tree.files):
        m = _VOC_LIST.search(f)
        split = split_word(m.group(1)) if m else None
        if split:
            splits.setdefault(split, f)
    if splits:
        return splits
    with_xml = {str(p) for f in tree.files if f.lower().endswith(".xml") for p in Path(f).parents}
    for d in _depth_first(tree.dirs & with_xml):
        split = split_word(posixpath.basename(d))
        if split:
            splits.setdefault(split, d)
    return splits


SPLITS = {"yolo": _yolo_splits, "darknet": _darknet_splits, "coco": _coco_splits, "voc": _voc_splits}


# -- classes --------------------------------------------------------------------------------------------------


def _names_file(tree: Tree, path: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in tree.read_text(path).splitlines() if line.strip())


def _names_files(tree: Tree) -> list[str]:
    return _depth_first(f for f in tree.files if f.endswith(".names") or posixpath.basename(f) == "classes.txt")


def coco_categories(doc: dict[str, object], where: str) -> list[tuple[int, str]]:
    """(id, name) of a COCO file's categories, by id."""
    cats = doc.get("categories")
    if not isinstance(cats, list) or not cats:
        raise FormatError(f"{where} has no categories")
    try:
        return sorted((int(c["id"]), str(c["name"])) for c in cats)
    except (KeyError, TypeError, ValueError):
        raise FormatError(f"{where}: every category needs an id and a name") from None


_DTD = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


def parse_xml(data: str | bytes, where: str) -> ET.Element:
    """An annotation file's root element. A VOC annotation has no DTD: one that declares a document type or an
    entity is refused before parsing, so no entity can expand (however old the instance's expat) or reach a file."""
    raw = data.encode() if isinstance(data, str) else data
    if _DTD.search(raw):
        raise FormatError(f"{where} declares a DTD or entities; annotation XML may not")
    try:
        # With no DTD, no entity can expand: bandit's B314 (use defusedxml) is met by the refusal above.
        return ET.fromstring(raw)  # nosec B314
    except ET.ParseError as e:
        raise FormatError(f"{where} is not valid XML: {e}") from None


def voc_names(tree: Tree, paths: Iterable[str]) -> list[str]:
    names: set[str] = set()
    for path in paths:
        root = parse_xml(tree.path(path).read_bytes(), path)
        names.update((o.findtext("name") or "").strip() for o in root.iter("object"))
    names.discard("")
    return sorted(names)


def own_classes(tree: Tree, fmt: Format, splits: dict[SplitName, str]) -> tuple[str, ...]:
    """The classes a dataset names itself; () when it names none (YOLO labels without a names list)."""
    if fmt == "yolo":
        yaml = _data_yaml(tree)
        if yaml is not None and "names" in (conf := parse_data_yaml(tree.read_text(yaml))):
            return yaml_names(conf, yaml)
        files = _names_files(tree)
        return _names_file(tree, files[0]) if files else ()
    if fmt == "darknet":
        data = _darknet_data(tree)
        if data is not None and data[1].get("names"):
            found = tree.find(data[1]["names"], posixpath.dirname(data[0]))
            if found is None:
                raise FormatError(f"{data[0]} names names = {data[1]['names']}, which is not in the dataset")
            return _names_file(tree, found)
        files = _names_files(tree)
        return _names_file(tree, files[0]) if files else ()
    if fmt == "coco":
        first = splits.get("train") or next(iter(splits.values()))
        return tuple(name for _, name in coco_categories(json.loads(tree.read_text(first)), first))
    return tuple(voc_names(tree, (f for f in tree.files if f.lower().endswith(".xml"))))


def describe(tree: Tree, fmt: Format | None = None, classes: tuple[str, ...] = ()) -> Description:
    """The format (detected unless given), splits and classes of a dataset tree.

    Classes given for a YOLO or darknet set must be its own (labels are indices into them); for COCO and VOC,
    whose boxes carry names, they choose which objects to keep and in what order.
    """
    fmt = fmt or detect_format(tree)
    splits = SPLITS[fmt](tree)
    if not splits:
        raise FormatError(f"no train/val/test split found in this {fmt} dataset; expected {LAYOUTS_HELP}")
    own = own_classes(tree, fmt, splits)
    if classes and own and classes != own and fmt in ("yolo", "darknet"):
        raise FormatError(f"the classes given ({', '.join(classes)}) are not the dataset's ({', '.join(own)})")
    chosen = classes or own
    if not chosen:
        raise FormatError(f"this {fmt} dataset does not name its classes (no data.yaml names or .names file)")
    return Description(format=fmt, classes=chosen, splits=splits)
