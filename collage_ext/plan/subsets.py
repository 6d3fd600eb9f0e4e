"""One subset's collage plan, built the same way by the sd-scripts adapter and by the CLI.

``collage-ext preview`` promises the frames that training sees, byte for byte. That holds only if
both sides turn a subset into a ``Pool`` identically: the same sources in the same order, the same
stable keys, repeats, frame size, pool key and seed. This module is that single definition; the
adapter (``sdscripts/dataset.py``) and the CLI (``kohya/datasets.py``, ``preview.py``, ``export.py``)
both call ``plan_subset``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageInputError
from collage_ext.core.rng import sample_key
from collage_ext.core.types import Size
from collage_ext.geometry.buckets import Buckets
from collage_ext.kohya.specs import SubsetImage, subset_root  # noqa: F401  (re-exported for the adapter)
from collage_ext.plan.collage import Source, load_source
from collage_ext.plan.pool import Pool

#: Wraps an iterable in a progress bar (``tqdm``) or returns it unchanged.
Progress = Callable[[Iterable[int]], Iterable[int]]


@dataclass(frozen=True)
class SubsetPlan:
    """A subset's pool and the order its images were put in.

    Attributes:
        pool: the planner input (sources sorted by path, with their repeats).
        order: ``order[k]`` is the index (into the images given to ``plan_subset``) of
            ``pool.sources[k]``.
    """

    pool: Pool
    order: tuple[int, ...]


def pool_key(dataset_index: int, subset_index: int, root: str) -> str:
    """The key that seeds a subset's plan: dataset and subset position plus the folder name.

    ``subset_index`` counts the subsets sd-scripts kept (skipped subsets take no index).

    Examples:
        >>> pool_key(0, 1, "/data/train/10_cat/")
        '0/1:10_cat'
    """
    return f"{dataset_index}/{subset_index}:{os.path.basename(str(root).rstrip('/'))}"


def plan_subset(images: Sequence[SubsetImage], *, root: str, config: CollageConfig, resolution: Size,
                buckets: Buckets | None = None, dataset_index: int, subset_index: int, seed: int, progress: Progress | None = None,
                on_error: Callable[[int, CollageInputError], None] | None = None) -> SubsetPlan:
    """Build a subset's ``Pool``: sources sorted by path, keyed relative to ``root``.

    Args:
        images: the subset's registered images, in any order.
        root: ``subset_root(image_dir, metadata_file)``.
        config: the subset's resolved collage settings.
        resolution: the dataset resolution; the frame size unless ``collage_frame_size`` is set.
        buckets: the dataset's bucket settings; with bucketing on and no ``collage_frame_size``,
            frames are content-shaped (each group gets the bucket that fits its arrangement).
        dataset_index: position of the dataset among the training datasets.
        subset_index: position of the subset among the subsets sd-scripts kept in that dataset.
        seed: the collage seed of the run.
        progress: optional wrapper that shows a progress bar while image headers are read.
        on_error: ``collage_on_error = "skip"``: called with the image's index and the error for an
            image whose header or crop box cannot be read; the image is left out of the pool (and
            of ``order``). Without it such an image raises.

    Raises:
        CollageInputError: an image header cannot be read, or its crop box is invalid (without ``on_error``).
    """
    order = sorted(range(len(images)), key=lambda i: images[i].path)
    indices: Iterable[int] = progress(order) if progress is not None else order
    kept: list[int] = []
    sources: list[Source] = []
    for i in indices:
        try:
            sources.append(load_source(images[i].path, sample_key(images[i].path, root), caption=images[i].caption,
                                       crop_extension=config.crop_extension))
        except CollageInputError as exc:
            if on_error is None:
                raise
            on_error(i, exc)
            continue
        kept.append(i)
    pool = Pool(key=pool_key(dataset_index, subset_index, root), sources=sources, config=config,
                frame=config.frame_size or resolution, seed=seed, repeats=[images[i].num_repeats for i in kept],
                buckets=buckets)
    return SubsetPlan(pool, tuple(kept))
