"""The CLI's side of the producer: a ``Project`` (the ``kohya`` reader's view of a run) into planned subsets.

``check``, ``preview``, ``export``, the demo and the studio plan a run here; the adapter plans the
same subsets from sd-scripts' own objects (``sdscripts/dataset.py``). Both hand ``plan_subset`` a
``SubsetInput``, so both get the same pools, collages and frames.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from collage_ext.core.errors import CollageInputError
from collage_ext.core.progress import progress
from collage_ext.geometry.buckets import Buckets
from collage_ext.kohya.datasets import DatasetSpec, Project, SubsetSpec
from collage_ext.plan.subsets import PlannedSubset, SubsetImage, SubsetInput, plan_subset

logger = logging.getLogger(__name__)


def subset_input(project: Project, dataset: DatasetSpec, subset: SubsetSpec,
                 images: Sequence[SubsetImage] | None = None) -> SubsetInput:
    """The ``SubsetInput`` of a kept subset (``images``: a subset of its images, else all)."""
    assert subset.kept_index is not None  # project.subsets() lists kept subsets only
    return SubsetInput(subset.images if images is None else images, subset.root, subset.config, dataset.resolution,
                       Buckets.for_dataset(dataset), project.datasets.index(dataset), subset.kept_index,
                       subset.namespace(), image_dir=subset.image_dir, name=subset.name, dataset=dataset,
                       subset=subset)


def plan_project(project: Project, encoder: Any, *,
                 exclude: frozenset[str] = frozenset()) -> list[PlannedSubset]:
    """Plan every collage subset of the project (header reads only).

    Args:
        project: the project read by ``kohya.datasets.load_project``.
        encoder: the run's text encoder (``budget`` and ``counter`` for phrase repetition).
        exclude: image paths to leave out (``check`` / ``export`` drop unreadable files; training would stop).

    Raises:
        CollageConfigError: a collage caption setting that clashes with the subset's sd-scripts options.
        CollageInputError: an image header or crop box cannot be read.
    """
    planned = []
    for dataset, subset in project.subsets():
        if not subset.config.enabled or not subset.images:
            continue
        images = subset.images
        if exclude:
            images = [im for im in images if im.path not in exclude]

        def skipped(index: int, exc: CollageInputError, images: Sequence[SubsetImage] = images) -> None:
            logger.warning(f"collage_ext: skipping {images[index].path}: {exc} (collage_on_error = 'skip')")

        def reading(order: Iterable[int], name: str = subset.name) -> Iterable[int]:
            return progress(list(order), f"reading {name}", "image")

        skipping = subset.config.on_error == "skip"  # like the adapter: unreadable files leave the pool
        planned.append(plan_subset(subset_input(project, dataset, subset, images), seed=project.seed,
                                   budget=encoder.budget, counter=encoder.counter, progress=reading,
                                   on_error=skipped if skipping else None))
    return planned


def read_failures(paths: Iterable[str]) -> dict[str, CollageInputError]:
    """Header-check images; returns the ones that fail, with the error (for ``export``'s warn policy)."""
    from collage_ext.pixels.images import read_image_size

    failed: dict[str, CollageInputError] = {}
    for path in paths:
        try:
            read_image_size(path)
        except CollageInputError as exc:
            failed[path] = exc
    return failed
