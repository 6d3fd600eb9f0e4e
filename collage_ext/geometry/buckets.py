"""sd-scripts' aspect-ratio buckets, as plain arithmetic (no sd-scripts import).

sd-scripts gives every sample a bucket resolution (``BucketManager.select_bucket`` in
``library/train_util.py``; the bucket set from ``model_util.make_bucket_resolutions``). The CLI
counts batches with it, and content-shaped collage frames take their size from the same set: a
frame whose size *is* a bucket resolution is used by sd-scripts as it is (scale 1.0, no crop).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from collage_ext.core.types import Size


@dataclass
class Buckets:
    """A dataset's bucket settings and the resolutions sd-scripts would use.

    Attributes:
        resolution: the dataset ``resolution`` (its area is the bucket area).
        enable: ``enable_bucket``.
        min_reso, max_reso, steps: ``min_bucket_reso``, ``max_bucket_reso``, ``bucket_reso_steps``.
        no_upscale: ``bucket_no_upscale`` (per-image buckets, no predefined set).
        resos: the predefined bucket set (only ``resolution`` when bucketing is off).
    """

    resolution: Size
    enable: bool
    min_reso: int = 256
    max_reso: int = 1024
    steps: int = 64
    no_upscale: bool = False
    resos: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def from_params(cls, resolution: Size, params: Mapping[str, Any]) -> Buckets:
        """Settings from a dataset's parameters, min/max adjusted to whole steps as sd-scripts does."""
        steps = int(params.get("bucket_reso_steps") or 64)
        lo, hi = int(params.get("min_bucket_reso") or 256), int(params.get("max_bucket_reso") or 1024)
        lo -= lo % steps
        hi += (steps - hi % steps) % steps
        buckets = cls(
            resolution, bool(params.get("enable_bucket")), lo, hi, steps, bool(params.get("bucket_no_upscale"))
        )
        if buckets.enable and not buckets.no_upscale:
            buckets.resos = make_bucket_resolutions(resolution, lo, hi, steps)
        else:
            buckets.resos = [(resolution.width, resolution.height)]
        return buckets

    @classmethod
    def for_dataset(cls, dataset: Any) -> Buckets:
        """Settings of a ``datasets.DatasetSpec`` (anything with ``resolution`` and ``params``)."""
        return cls.from_params(dataset.resolution, dataset.params)

    @property
    def area(self) -> int:
        """The bucket area: the resolution's pixel count."""
        return self.resolution.width * self.resolution.height

    def select(self, size: Size) -> tuple[tuple[int, int], float]:
        """``(bucket resolution, magnification)`` of an image, as ``BucketManager.select_bucket``."""
        w, h = size
        aspect = w / h
        if self.enable and self.no_upscale:
            area = self.area
            if w * h > area:
                rw = math.sqrt(area * aspect)
                rh = area / rw
                bw = round_steps(rw, self.steps)
                ar_w = bw / round_steps(bw / aspect, self.steps)
                bh = round_steps(rh, self.steps)
                ar_h = round_steps(bh * aspect, self.steps) / bh
                resized = (
                    (bw, int(bw / aspect + 0.5))
                    if abs(ar_w - aspect) < abs(ar_h - aspect)
                    else (int(bh * aspect + 0.5), bh)
                )
            else:
                resized = (w, h)
            return (resized[0] - resized[0] % self.steps, resized[1] - resized[1] % self.steps), resized[0] / w
        reso = (w, h)
        if reso not in self.resos:
            errors = [abs(rw / rh - aspect) for rw, rh in self.resos]
            reso = self.resos[errors.index(min(errors))]
        scale = reso[1] / h if aspect > reso[0] / reso[1] else reso[0] / w
        return reso, scale


def round_steps(value: float, steps: int) -> int:
    """Round half up, then down to a multiple of ``steps`` (``BucketManager.round_to_steps``)."""
    x = int(value + 0.5)
    return x - x % steps


def make_bucket_resolutions(max_reso: Size, min_size: int, max_size: int, divisible: int) -> list[tuple[int, int]]:
    """The predefined bucket set: about ``max_reso``'s area, sides in ``[min_size, max_size]``, multiples of
    ``divisible``.

    Examples:
        >>> make_bucket_resolutions(Size(1024, 1024), 256, 2048, 64)[:3]
        [(256, 2048), (320, 2048), (384, 2048)]
    """
    area = max_reso.width * max_reso.height
    resos = {(int(math.sqrt(area) // divisible) * divisible,) * 2}
    width = min_size
    while width <= max_size:
        height = min(max_size, int((area // width) // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += divisible
    return sorted(resos)
