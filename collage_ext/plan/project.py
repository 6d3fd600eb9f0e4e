"""A training run's data as the CLI and the studio see it: the kohya mirror's reading plus mode and seed.

``kohya.datasets`` reads what sd-scripts would (which images, captions, repeats); the run-level
collage decisions (dynamic or static, the seed, the static cache folder) are made here with the
same functions the adapter calls (``plan.run.resolve_run``), in the order the
CLI has always checked them: a bad mode stops before any folder is listed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from collage_ext.core.config import DatasetTree
from collage_ext.kohya.args import dataset_class_finding, parse_trainer_args
from collage_ext.kohya.caption_files import check_crop_extensions
from collage_ext.kohya.datasets import open_dataset, read_datasets
from collage_ext.kohya.dreambooth import read_caption as read_dreambooth_caption
from collage_ext.kohya.runargs import RunArgs
from collage_ext.kohya.specs import DatasetSpec, Finding, Notes, SubsetSpec
from collage_ext.plan.run import resolve_run


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


def load_project(dataset: str | os.PathLike[str] | None = None, *, config_file: str | os.PathLike[str] | None = None,
                 trainer_args: Sequence[str] = (), seed: int | None = None, strict: bool = True) -> Project:
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
        seed_why = ("from --seed after --" if after_dash or config_file is None
                    else f"from seed = {seed_value} in the training TOML {config_file}")
    # -- the images, read like sd-scripts ----------------------------------------------------------------
    notes = Notes(strict, list(found.findings))
    project = Project(run, found.source, found.config_path, tree, [], seed_value, seed_why, mode, mode_why,
                      notes.findings)
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
