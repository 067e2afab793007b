"""What can be trained: datasets × models → recipe, with GPU needs that pick the instance types."""

from __future__ import annotations

from dataclasses import dataclass, field
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


# The GPU instance types Spotter launches. Prices are us-east-1 on-demand list prices (the spot
# ceiling); live spot prices come from EC2 at launch time.
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


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    classes: tuple[str, ...]
    source: Literal["generated", "s3"]
    version: str = "1"


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    recipe: str
    unit: Literal["epoch", "iteration"]
    defaults: dict[str, int | float]
    gpu: GpuNeeds = field(default_factory=GpuNeeds)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            name="shapes",
            description="generated coloured rectangles and circles (200 train / 40 val, 128 px)",
            classes=("rectangle", "circle"),
            source="generated",
        ),
    )
}

MODELS: dict[str, Model] = {
    m.name: m
    for m in (
        Model(
            name="yolov8n",
            description="Ultralytics YOLOv8 nano",
            recipe="ultralytics",
            unit="epoch",
            defaults={"epochs": 20, "img": 128, "batch": 16, "max_hours": 2},
        ),
        Model(
            name="yolov8s",
            description="Ultralytics YOLOv8 small",
            recipe="ultralytics",
            unit="epoch",
            defaults={"epochs": 50, "img": 640, "batch": 16, "max_hours": 6},
        ),
        Model(
            name="yolo11n",
            description="Ultralytics YOLO11 nano",
            recipe="ultralytics",
            unit="epoch",
            defaults={"epochs": 20, "img": 128, "batch": 16, "max_hours": 2},
        ),
    )
}


def _choices(names: object) -> str:
    return ", ".join(f"`{n}`" for n in sorted(names))  # type: ignore[call-overload]


def dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise CatalogError(f"Unknown dataset `{name}`. Datasets: {_choices(DATASETS)}.") from None


def model(name: str) -> Model:
    try:
        return MODELS[name]
    except KeyError:
        raise CatalogError(f"Unknown model `{name}`. Models: {_choices(MODELS)}.") from None
