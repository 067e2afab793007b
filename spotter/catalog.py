"""What can be trained: datasets × models → recipe, with GPU needs that pick the instance types."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal


class CatalogError(ValueError):
    """A name the catalog does not know; the message lists what would work."""


# Catalog entries are constants written here, not input: plain frozen dataclasses (no validation to pay for at
# every cold start of the Slack function).
@dataclass(frozen=True)
class GpuType:
    instance_type: str
    gpu: str
    gpus: int
    gpu_memory_gib: int
    arch: str  # CUDA compute capability, e.g. "sm_75"; decides how frameworks are built
    on_demand_usd_hour: float


# The GPU instance types Spotter launches. Prices are us-east-1 on-demand list prices as of PRICES_AS_OF (the
# spot ceiling, and what a job's saving is measured against); live spot prices come from EC2 at launch time.
PRICES_AS_OF = "2026-11-01"
GPU_TYPES: dict[str, GpuType] = {
    t.instance_type: t
    for t in (
        GpuType(
            instance_type="g4dn.xlarge", gpu="T4", gpus=1, gpu_memory_gib=16, arch="sm_75", on_demand_usd_hour=0.526
        ),
        GpuType(
            instance_type="g4dn.2xlarge", gpu="T4", gpus=1, gpu_memory_gib=16, arch="sm_75", on_demand_usd_hour=0.752
        ),
        GpuType(
            instance_type="g5.xlarge", gpu="A10G", gpus=1, gpu_memory_gib=24, arch="sm_86", on_demand_usd_hour=1.006
        ),
        GpuType(
            instance_type="g5.2xlarge", gpu="A10G", gpus=1, gpu_memory_gib=24, arch="sm_86", on_demand_usd_hour=1.212
        ),
        GpuType(instance_type="g6.xlarge", gpu="L4", gpus=1, gpu_memory_gib=24, arch="sm_89", on_demand_usd_hour=0.805),
        GpuType(
            instance_type="g6.2xlarge", gpu="L4", gpus=1, gpu_memory_gib=24, arch="sm_89", on_demand_usd_hour=0.978
        ),
        GpuType(
            instance_type="p3.2xlarge", gpu="V100", gpus=1, gpu_memory_gib=16, arch="sm_70", on_demand_usd_hour=3.06
        ),
        GpuType(
            instance_type="g4dn.12xlarge", gpu="T4", gpus=4, gpu_memory_gib=16, arch="sm_75", on_demand_usd_hour=3.912
        ),
        GpuType(
            instance_type="g5.12xlarge", gpu="A10G", gpus=4, gpu_memory_gib=24, arch="sm_86", on_demand_usd_hour=5.672
        ),
        GpuType(
            instance_type="g6.12xlarge", gpu="L4", gpus=4, gpu_memory_gib=24, arch="sm_89", on_demand_usd_hour=4.602
        ),
    )
}


@dataclass(frozen=True)
class GpuNeeds:
    min_gpu_memory_gib: int = 16
    count: int = 1

    def instance_types(self, gpus: int | None = None) -> list[str]:
        """The catalog's instance types that meet these needs, cheapest first."""
        want = gpus or self.count
        fits = [t for t in GPU_TYPES.values() if t.gpu_memory_gib >= self.min_gpu_memory_gib and t.gpus >= want]
        # Prefer the smallest machine with enough GPUs, then the cheapest.
        fits.sort(key=lambda t: (t.gpus, t.on_demand_usd_hour))
        smallest = fits[0].gpus if fits else want
        return [t.instance_type for t in fits if t.gpus == smallest]


DatasetFormat = Literal["yolo", "darknet", "coco", "voc"]


@dataclass(frozen=True)
class Dataset:
    """A catalog dataset, or a person's own `s3://bucket/prefix/` (its URI is its name)."""

    name: str
    description: str
    classes: tuple[str, ...]  # empty for an s3:// prefix: its manifest or data.yaml names them on the instance
    source: Literal["generated", "s3"]  # made on the instance, or downloaded from S3
    format: DatasetFormat | None = None  # how it is stored; None for an s3:// prefix, detected when prepared
    version: str = "1"  # a catalog dataset lives under datasets/<name>/<version>/ in the project bucket
    size: str = ""  # for `/train datasets`: images per split


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    recipe: str
    unit: Literal["epoch", "iteration"]
    defaults: dict[str, int | float]
    gpu: GpuNeeds = field(default_factory=GpuNeeds)
    # What the recipe's templates need to know of this model: base cfg, config file, pretrained file name…
    recipe_vars: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def _vars(**values: str) -> Mapping[str, str]:
    return MappingProxyType(values)


COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip

# The first one is the example in help and error messages: it needs no download.
DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            name="shapes",
            description="generated coloured rectangles and circles on plain backgrounds, 128 px",
            classes=("rectangle", "circle"),
            source="generated",
            format="yolo",
            size="200 train / 40 val images",
        ),
        Dataset(
            name="persons",
            description="WiderPerson: people in crowded street scenes",
            classes=("pedestrians", "riders", "partially-visible persons", "ignore regions", "crowd"),
            source="s3",
            format="darknet",
            size="8000 train / 1000 val images",
        ),
        Dataset(
            name="aerial-maritime",
            description="Roboflow's Aerial Maritime drone photos of marinas, exported for YOLO",
            classes=("boat", "car", "dock", "jetski", "lift"),
            source="s3",
            format="yolo",
            size="74 images, 1151 boxes",
        ),
        Dataset(
            name="coco2017",
            description="COCO 2017 object detection",
            classes=COCO_CLASSES,
            source="s3",
            format="coco",
            size="118287 train / 5000 val images",
        ),
    )
}

# The first one is the example in help and error messages: the CPU demo trains it.
MODELS: dict[str, Model] = {
    m.name: m
    for m in (
        Model(
            name="yolov8n",
            description="Ultralytics YOLOv8 nano",
            recipe="ultralytics",
            unit="epoch",
            defaults={"epochs": 20, "img": 128, "batch": 16, "max_hours": 2},
            recipe_vars=_vars(pretrained="yolov8n.pt"),
        ),
        Model(
            name="yolov8s",
            description="Ultralytics YOLOv8 small",
            recipe="ultralytics",
            unit="epoch",
            defaults={"epochs": 50, "img": 640, "batch": 16, "max_hours": 6},
            recipe_vars=_vars(pretrained="yolov8s.pt"),
        ),
        Model(
            name="yolov8m",
            description="Ultralytics YOLOv8 medium",
            recipe="ultralytics",
            unit="epoch",
            defaults={"epochs": 50, "img": 640, "batch": 16, "max_hours": 8},
            recipe_vars=_vars(pretrained="yolov8m.pt"),
        ),
        Model(
            name="yolo11n",
            description="Ultralytics YOLO11 nano",
            recipe="ultralytics",
            unit="epoch",
            defaults={"epochs": 20, "img": 128, "batch": 16, "max_hours": 2},
            recipe_vars=_vars(pretrained="yolo11n.pt"),
        ),
        Model(
            name="yolo11s",
            description="Ultralytics YOLO11 small",
            recipe="ultralytics",
            unit="epoch",
            defaults={"epochs": 50, "img": 640, "batch": 16, "max_hours": 6},
            recipe_vars=_vars(pretrained="yolo11s.pt"),
        ),
        # darknet sets max_batches from the dataset when no iterations are given (2000 per class, at least 6000
        # and at least the training images): no default here. mini_batch is what one GPU holds of a batch.
        Model(
            name="yolov4",
            description="darknet YOLOv4 (AlexeyAB) from the yolov4.conv.137 backbone",
            recipe="darknet",
            unit="iteration",
            defaults={"batch": 64, "img": 416, "max_hours": 12},
            recipe_vars=_vars(base_cfg="cfg/yolov4-custom.cfg", pretrained="yolov4.conv.137", mini_batch="4"),
        ),
        Model(
            name="yolov4-tiny",
            description="darknet YOLOv4-tiny (AlexeyAB) from the yolov4-tiny.conv.29 backbone",
            recipe="darknet",
            unit="iteration",
            defaults={"batch": 64, "img": 416, "max_hours": 6},
            recipe_vars=_vars(base_cfg="cfg/yolov4-tiny-custom.cfg", pretrained="yolov4-tiny.conv.29", mini_batch="64"),
        ),
        Model(
            name="yolov4-csp",
            description="Scaled-YOLOv4 CSP (yolov4-large branch, mish-cuda), from scratch",
            recipe="scaled-yolov4",
            unit="epoch",
            defaults={"epochs": 50, "img": 416, "batch": 16, "max_hours": 12},
            recipe_vars=_vars(config_file="./models/yolov4-csp.yaml"),
        ),
        *(
            Model(
                name=f"yolov5{size}",
                description=f"YOLOv5 {label} (ultralytics/yolov5 v7.0)",
                recipe="yolov5",
                unit="epoch",
                defaults={"epochs": 100, "img": 640, "batch": 16, "max_hours": 8},
                gpu=GpuNeeds(min_gpu_memory_gib=memory),
                recipe_vars=_vars(pretrained=f"yolov5{size}.pt"),
            )
            for size, label, memory in (
                ("n", "nano", 16),
                ("s", "small", 16),
                ("m", "medium", 16),
                ("l", "large", 24),
                ("x", "extra large", 24),
            )
        ),
        Model(
            name="faster-rcnn-r50-fpn",
            description="Detectron2 Faster R-CNN R50-FPN 3x (boxes), from the ImageNet R-50 backbone",
            recipe="detectron2",
            unit="iteration",
            defaults={"iterations": 4000, "max_hours": 8},
            recipe_vars=_vars(config_file="configs/COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml", pretrained="R-50.pkl"),
        ),
        Model(
            name="mask-rcnn-r50-fpn",
            description="Detectron2 Mask R-CNN R50-FPN 1x (needs masks, e.g. coco2017), from the ImageNet R-50 backbone",
            recipe="detectron2",
            unit="iteration",
            defaults={"iterations": 4000, "max_hours": 8},
            recipe_vars=_vars(
                config_file="configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml", pretrained="R-50.pkl"
            ),
        ),
    )
}


def _choices(names: object) -> str:
    return ", ".join(f"`{n}`" for n in sorted(names))  # type: ignore[call-overload]


S3_SCHEME = "s3://"
S3_EXAMPLE = "s3://my-bucket/datasets/boats/"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Prefix parts of letters, digits and `. _ - =`: nothing a shell, a URL or Slack would read as markup.
_PREFIX_RE = re.compile(r"^(?:[A-Za-z0-9._=-]+/)*$")
S3_URI_MAX = 512


def is_s3_uri(name: str) -> bool:
    return name[: len(S3_SCHEME)].lower() == S3_SCHEME


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket/prefix/`, or CatalogError saying what is wrong with it."""
    if not is_s3_uri(uri):
        raise CatalogError(f"`{uri}` is not an S3 prefix: give it as `{S3_EXAMPLE}`.")
    bucket, slash, prefix = uri[len(S3_SCHEME) :].partition("/")
    if (
        not _BUCKET_RE.match(bucket)
        or ".." in bucket
        or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", bucket)
        or bucket.startswith(("xn--", "sthree-"))
        or bucket.endswith(("-s3alias", "--ol-s3"))
    ):
        raise CatalogError(
            f"`{bucket[:64]}` is not an S3 bucket name: 3 to 63 lower-case letters, digits, dots and hyphens, "
            f"starting and ending with a letter or digit, e.g. `{S3_EXAMPLE}`."
        )
    if not slash or len(uri) > S3_URI_MAX or not _PREFIX_RE.match(prefix):
        raise CatalogError(
            f"The prefix of `{uri[:S3_URI_MAX]}` must be folder names of letters, digits and `. _ - =`, each "
            f"followed by `/` (it ends with `/`), e.g. `{S3_EXAMPLE}`."
        )
    if any(part in (".", "..") for part in prefix.split("/")):
        raise CatalogError(f"`{uri}` has a `.` or `..` folder: name the prefix itself, e.g. `{S3_EXAMPLE}`.")
    return bucket, prefix


def s3_dataset(uri: str) -> Dataset:
    """A person's own dataset at `s3://bucket/prefix/`: validated here, described by its files on the instance."""
    bucket, prefix = parse_s3_uri(uri)
    name = f"{S3_SCHEME}{bucket}/{prefix}"
    return Dataset(name=name, description=f"your dataset at {name}", classes=(), source="s3", format=None, version="")


def dataset(name: str) -> Dataset:
    """A catalog dataset by name, or an `s3://bucket/prefix/` of one's own."""
    if is_s3_uri(name):
        return s3_dataset(name)
    try:
        return DATASETS[name]
    except KeyError:
        raise CatalogError(
            f"Unknown dataset `{name}`. Datasets: {_choices(DATASETS)}, or your own `s3://bucket/prefix/`."
        ) from None


def model(name: str) -> Model:
    try:
        return MODELS[name]
    except KeyError:
        raise CatalogError(f"Unknown model `{name}`. Models: {_choices(MODELS)}.") from None


def default_start(model: Model) -> str:
    """Where a scheduled run of `model` starts: the promoted weights where it can start from weights at all."""
    return "promoted" if model.recipe_vars.get("pretrained") else "scratch"
