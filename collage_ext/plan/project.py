"""A training run's data as the CLI and the studio see it, and its subsets planned by the producer.

``kohya.datasets`` reads what sd-scripts would (which images, captions, repeats); the run-level
collage decisions (dynamic or static, the seed, the static cache folder) are made here with the
same functions the adapter calls (``plan.run.resolve_run``), in the order the
CLI has always checked them: a bad mode stops before any folder is listed.

``check``, ``preview``, ``export``, the demo and the studio then plan the run here (``plan_project``);
the adapter plans the same subsets from sd-scripts' own objects (``sdscripts/mapper.py``). Both hand
``plan_subset`` a ``SubsetInput``, so both get the same pools, collages and frames.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collage_ext.core.config import DatasetTree
from collage_ext.core.errors import CollageInputError
from collage_ext.core.progress import progress
from collage_ext.geometry.buckets import Buckets
from collage_ext.kohya.args import dataset_class_finding, parse_trainer_args
from collage_ext.kohya.caption_files import check_crop_extensions
from collage_ext.kohya.datasets import open_dataset, read_datasets
from collage_ext.kohya.dreambooth import read_caption as read_dreambooth_caption
from collage_ext.kohya.runargs import RunArgs
from collage_ext.kohya.specs import DatasetSpec, Finding, Notes, SubsetImage, SubsetSpec
from collage_ext.plan.run import resolve_run
from collage_ext.plan.subsets import PlannedSubset, SubsetInput, plan_subset

logger = logging.getLogger(__name__)


@dataclass
class Project:
    """Everything the CLI knows about a training run's data, read without sd-scripts.

    Attributes:
        run: the training arguments (``--config`` TOML plus trainer arguments after ``--``).
        source: a sentence naming where the dataset came from.
        config_path: the dataset TOML, when there is one.
        tree: the option-table view of the dataset config (``kohya`` has the collage keys stripped).
        datasets: the resolved datasets.
        seed, seed_why: the collage seed and where it came from.
        mode, mode_why: dynamic / static / off, and why.
        findings: problems met while reading (missing folders, empty caption files...).
    """

    run: RunArgs
    source: str
    config_path: Path | None
    tree: DatasetTree
    datasets: list[DatasetSpec]
    seed: int
    seed_why: str
    mode: str
    mode_why: str
    findings: list[Finding] = field(default_factory=list)

    def subsets(self) -> list[tuple[DatasetSpec, SubsetSpec]]:
        """Every kept subset with its dataset, in training order."""
        return [(d, s) for d in self.datasets for s in d.kept]


def load_project(
    dataset: str | os.PathLike[str] | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    trainer_args: Sequence[str] = (),
    seed: int | None = None,
    strict: bool = True,
) -> Project:
    """Read the dataset (``kohya.datasets``), then resolve the run's mode and seed; plan no frames yet.

    Args:
        dataset: a dataset TOML/JSON, or a folder of ``N_name`` sub-folders; ``None`` uses the training
            arguments' ``dataset_config`` / ``train_data_dir``.
        config_file: the training ``--config_file`` TOML.
        trainer_args: further sd-scripts options (``--seed 42 --cache_latents`` ...).
        seed: ``--seed`` of the CLI; overrides the training arguments.
        strict: raise on the first problem that would stop training (else record it in ``findings``).

    Raises:
        CollageConfigError: the config cannot be read or is invalid.
        CollageInputError: with ``strict``, a caption file that sd-scripts would stop on.
    """
    found = open_dataset(dataset, config_file=config_file, trainer_args=trainer_args, seed=seed)
    run, tree = found.run, found.tree
    configs = [c for row in tree.subsets for c in row]
    # -- run resolution (plan.run): mode, the static cache folder, seed --------------------------------
    settings = resolve_run(configs, run, tree.kohya)
    check_crop_extensions(tree.kohya, tree.subsets, run)
    seed_value, seed_why, mode, mode_why = settings.seed, settings.seed_why, settings.mode, settings.mode_why
    if seed_why == "from --seed" and seed is None:  # say where the user set it
        after_dash = "seed" in parse_trainer_args(trainer_args)
        seed_why = (
            "from --seed after --"
            if after_dash or config_file is None
            else f"from seed = {seed_value} in the training TOML {config_file}"
        )
    # -- the images, read like sd-scripts ----------------------------------------------------------------
    notes = Notes(strict, list(found.findings))
    project = Project(
        run, found.source, found.config_path, tree, [], seed_value, seed_why, mode, mode_why, notes.findings
    )
    project.datasets = read_datasets(found, notes)
    if config_file is not None or trainer_args:
        project.findings.extend(dataset_class_finding(run, found.where))
    return project


def read_caption(subset: SubsetSpec, path: str) -> tuple[str, list[Finding]]:
    """One image's caption read again exactly as ``load_project`` read it, and the findings that read made.

    For the studio after a caption edit: it reads one caption file instead of the whole dataset. The
    findings are returned, not added to the project (the caller decides; a read with findings is a reason
    to read the whole project again, since its earlier findings may be stale).
    """
    notes = Notes(False, [])
    caption = read_dreambooth_caption(path, subset, notes)
    return caption, notes.findings


def subset_input(
    project: Project, dataset: DatasetSpec, subset: SubsetSpec, images: Sequence[SubsetImage] | None = None
) -> SubsetInput:
    """The ``SubsetInput`` of a kept subset (``images``: a subset of its images, else all)."""
    assert subset.kept_index is not None  # project.subsets() lists kept subsets only
    return SubsetInput(
        subset.images if images is None else images,
        subset.root,
        subset.config,
        dataset.resolution,
        Buckets.for_dataset(dataset),
        project.datasets.index(dataset),
        subset.kept_index,
        subset.namespace(),
        image_dir=subset.image_dir,
        name=subset.name,
        dataset=dataset,
        subset=subset,
    )


def plan_project(project: Project, encoder: Any, *, exclude: frozenset[str] = frozenset()) -> list[PlannedSubset]:
    """Plan every collage subset of the project (header reads only).

    Args:
        project: the project read by ``plan.project.load_project``.
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
        planned.append(
            plan_subset(
                subset_input(project, dataset, subset, images),
                seed=project.seed,
                budget=encoder.budget,
                counter=encoder.counter,
                progress=reading,
                on_error=skipped if skipping else None,
            )
        )
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
