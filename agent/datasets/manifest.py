"""A published dataset version: `datasets/<name>/<version>/manifest.json` beside its `files/…`.

The manifest is the only thing trusted about a version: every file's size and SHA-256, the stored format,
the classes and which paths make up each split. It is written last, so a half-published version has none.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Format = Literal["yolo", "darknet", "coco", "voc"]
SplitName = Literal["train", "val", "test"]

FORMATS: tuple[Format, ...] = ("yolo", "darknet", "coco", "voc")
MANIFEST = "manifest.json"
FILES = "files/"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,40}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$")


def safe_path(path: str) -> str:
    """`path` if it is a plain relative POSIX path (it becomes a local file name on the instance), else ValueError."""
    p = PurePosixPath(path)
    if (
        not path
        or path != p.as_posix()
        or p.is_absolute()
        or any(part in ("", ".", "..") for part in p.parts)
        or "\\" in path
        or any(ord(c) < 32 for c in path)
    ):
        raise ValueError(f"{path!r} is not a relative path without `..`")
    return path


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str  # relative to the version's files/
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("path")
    @classmethod
    def _safe(cls, v: str) -> str:
        return safe_path(v)


class Description(BaseModel):
    """What a dataset tree is: its format, classes and splits (what `describe` finds, what a manifest records)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Format
    classes: tuple[str, ...] = Field(min_length=1)
    # Each split is one path under files/: a folder of images (YOLO, VOC), a list file of images or VOC ids
    # (darknet's train.txt, ImageSets/Main/val.txt) or a COCO annotation file.
    splits: dict[SplitName, str] = Field(min_length=1)

    @field_validator("classes")
    @classmethod
    def _distinct(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v) or any(not c.strip() or "\n" in c for c in v):
            raise ValueError("class names must be distinct, non-empty single lines")
        return v

    @field_validator("splits")
    @classmethod
    def _safe_splits(cls, v: dict[SplitName, str]) -> dict[SplitName, str]:
        for path in v.values():
            safe_path(path)
        return v


class Manifest(Description):
    name: str = Field(pattern=NAME_RE.pattern)
    version: str = Field(pattern=VERSION_RE.pattern)
    files: tuple[FileEntry, ...] = Field(min_length=1)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    source: str  # where it was imported from, e.g. the zip an operator published

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        paths = {f.path for f in self.files}
        if len(paths) != len(self.files):
            raise ValueError("a file is listed twice")
        dirs = {str(parent) for p in paths for parent in PurePosixPath(p).parents}
        for split, path in self.splits.items():
            if path not in paths and path not in dirs:
                raise ValueError(f"split {split} names {path}, which is neither a file nor a folder of the dataset")
        return self

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def description(self) -> Description:
        return Description(format=self.format, classes=self.classes, splits=self.splits)
