"""Read a kohya dataset (dataset TOML, ``--train_data_dir`` folders, or the training TOML's) like sd-scripts.

This is the torch-free mirror: the CLI (preview, export, check) and the studio must run where
sd-scripts and torch are not installed, so they cannot call sd-scripts' own reader
(``library.config_util`` imports torch). Training never uses it; ``CollageDataset`` reads through
sd-scripts itself. That the two agree is tested against the real trees
(tests/sdscripts/test_reader_agrees.py, run against sd-scripts main and v0.9.1).

It decides *which images a subset holds, with which caption and how many repeats*, nothing about
collage frames: no mode and no seed (the plan layer's ``plan.project.load_project`` adds those).
The rules live in one module each:

* ``args``: the training arguments (``--config_file`` TOML and the command line over sd-scripts'
  argparse defaults), the last level of the cascade;
* ``blueprint``: the cascade subset -> dataset -> ``[general]`` -> arguments -> defaults (note that
  ``caption_extension`` defaults to ``.caption``) and ``resolution``;
* ``dreambooth``: folders, captions, skipped subsets, reg balancing, validation split, ``cache_info``;
* ``finetuning``: ``metadata_file`` keys, captions and tags, per sd-scripts release;
* ``files``: image extensions, folder listing, config-file loading, ``--train_data_dir`` sub-folders.

Relative paths are resolved like sd-scripts does (from the current folder); a path that only exists
next to the dataset TOML is used from there, with a note.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collage_ext.core.config import DatasetTree, split_dataset_config, strip_collage_keys
from collage_ext.core.errors import CollageConfigError
from collage_ext.kohya.args import (
    ARG_DEFAULTS,
    ARG_TO_CONFIG,
    DATASET_CLASS,
    arg_config,
    build_run,
    dataset_class_finding,
    dataset_source,
    parse_trainer_args,
)
from collage_ext.kohya.blueprint import DATASET_DEFAULTS, SUBSET_DEFAULTS, blueprint, parse_resolution
from collage_ext.kohya.dreambooth import read_dreambooth
from collage_ext.kohya.files import (
    IMAGE_INFO_CACHE_FILE,
    SD_IMAGE_EXTENSIONS,
    glob_images,
    glob_named,
    image_extensions,
    load_user_config,
    subsets_from_folders,
)
from collage_ext.kohya.finetuning import (
    MetadataRelease,
    detect_metadata_release,
    metadata_caption,
    metadata_key_path,
    read_finetuning,
)
from collage_ext.kohya.runargs import RunArgs
from collage_ext.kohya.schema import detect_flavour, looks_like_dataset_toml, schema_for, training_keys_in, validate
from collage_ext.kohya.specs import DatasetSpec, Finding, Level, Notes, SubsetImage, SubsetSpec, subset_root

logger = logging.getLogger(__name__)

__all__ = [
    "ARG_DEFAULTS",
    "ARG_TO_CONFIG",
    "DATASET_CLASS",
    "DATASET_DEFAULTS",
    "IMAGE_INFO_CACHE_FILE",
    "SD_IMAGE_EXTENSIONS",
    "SUBSET_DEFAULTS",
    "DatasetSource",
    "DatasetSpec",
    "Finding",
    "Level",
    "MetadataRelease",
    "Notes",
    "SubsetImage",
    "SubsetSpec",
    "arg_config",
    "build_run",
    "dataset_class_finding",
    "detect_metadata_release",
    "glob_images",
    "glob_named",
    "image_extensions",
    "load_user_config",
    "metadata_caption",
    "metadata_key_path",
    "open_dataset",
    "parse_resolution",
    "parse_trainer_args",
    "read_datasets",
    "subset_root",
    "subsets_from_folders",
    "validate_like_sd_scripts",
]


@dataclass
class DatasetSource:
    """A dataset found and validated, its images not read yet.

    Attributes:
        run: the training arguments (``--config`` TOML plus trainer arguments after ``--``).
        source: a sentence naming where the dataset came from.
        config_path: the dataset TOML, when there is one.
        tree: the option-table view of the dataset config (``kohya`` has the collage keys stripped).
        where: where collage defaults and the training arguments came from, for messages.
        findings: notes from validating the dataset config.
    """

    run: RunArgs
    source: str
    config_path: Path | None
    tree: DatasetTree
    where: str
    findings: list[Finding] = field(default_factory=list)


def open_dataset(
    dataset: str | os.PathLike[str] | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    trainer_args: Sequence[str] = (),
    seed: int | None = None,
) -> DatasetSource:
    """Find the dataset (a dataset TOML, a ``--train_data_dir`` folder, or the training TOML's) and validate it.

    Args:
        dataset: a dataset TOML/JSON, or a folder of ``N_name`` sub-folders; ``None`` uses the training
            arguments' ``dataset_config`` / ``train_data_dir`` (with ``in_json``: fine-tuning).
        config_file: the training ``--config_file`` TOML.
        trainer_args: further sd-scripts options (``--seed 42 --cache_latents`` ...).
        seed: ``--seed`` of the CLI; overrides the training arguments.

    Raises:
        CollageConfigError: the config cannot be read or is invalid.
    """
    run = build_run(config_file, trainer_args, seed)
    where = f"--config_file {config_file}" if config_file else "the training arguments"
    config_path: Path | None = None
    if dataset is None and isinstance(run.values.get("datasets"), list):
        _refuse_swapped(run, config_file, None, {})
    source = dataset_source(run, dataset)  # the same choice the trainer makes
    if source is None:
        msg = (
            "no dataset given; pass a dataset TOML (or a folder of N_name sub-folders), or --config with a "
            "training TOML that sets dataset_config or train_data_dir"
        )
        raise CollageConfigError(msg)
    if source.kind == "dataset_config":
        config_path = Path(str(source.path))
        user_config: dict[str, Any] = load_user_config(config_path)
    elif source.kind == "in_json":
        user_config = {"datasets": [{"subsets": [{"image_dir": source.path, "metadata_file": source.metadata_file}]}]}
    else:
        user_config = {"datasets": [{"subsets": subsets_from_folders(source.path, source.reg_data_dir)}]}
    _refuse_swapped(run, config_file, config_path, user_config)
    notes = validate_like_sd_scripts(user_config, config_path, run) if config_path is not None else []
    tree = split_dataset_config(user_config, defaults=run.collage_defaults, defaults_where=where)
    return DatasetSource(run, source.label, config_path, tree, where, list(notes))


def read_datasets(found: DatasetSource, notes: Notes) -> list[DatasetSpec]:
    """Each dataset's subsets with the images sd-scripts registers, in training order.

    Raises:
        CollageConfigError: a dataset's resolution is missing or invalid.
        CollageInputError: with ``notes.strict``, a file that sd-scripts would stop on.
    """
    toml_dir = found.config_path.parent if found.config_path else None
    release: MetadataRelease | None = None
    out = []
    for spec in blueprint(found.tree, found.run, toml_dir, notes, folder=found.config_path is None):
        if spec.kind == "dreambooth":
            read_dreambooth(spec, notes)
        else:
            if release is None:  # only fine-tuning datasets depend on the release; found once per read
                release, why = detect_metadata_release()
                logger.debug(f"metadata_file keys are read like sd-scripts {release} ({why})")
            read_finetuning(spec, notes, release)
        out.append(spec)
    return out


def _refuse_swapped(
    run: RunArgs, config_file: str | os.PathLike[str] | None, config_path: Path | None, user_config: Mapping[str, Any]
) -> None:
    """A training TOML where the dataset TOML belongs, or a dataset TOML given as --config: one line with the fix."""
    given_dataset_as_config = isinstance(run.values.get("datasets"), list)
    training = training_keys_in(user_config) if config_path is not None else []
    looks_training = bool(training) and not looks_like_dataset_toml(user_config)
    if given_dataset_as_config and looks_training:
        msg = (
            f"the two files look swapped: {config_path} is a training TOML (it sets {', '.join(training[:3])}) and "
            f"--config {config_file} is a dataset TOML (it has [[datasets]]); swap them: "
            f"collage-ext ... {config_file} --config {config_path}"
        )
        raise CollageConfigError(msg)
    if looks_training:
        named = user_config.get("dataset_config")
        fix = (
            f"pass it as --config {config_path} (its dataset_config {named} is then read from it)"
            if named
            else f"pass it as --config {config_path}, and the dataset TOML (with [[datasets]]) as the first argument"
        )
        msg = f"{config_path} looks like a training TOML (it sets {', '.join(training[:3])}), not a dataset TOML: {fix}"
        raise CollageConfigError(msg)
    if given_dataset_as_config:
        msg = (
            f"--config {config_file} looks like a dataset TOML (it has [[datasets]]), not a training TOML: pass it "
            f"as the dataset argument (collage-ext ... {config_file}), and the training TOML as --config"
        )
        raise CollageConfigError(msg)


def validate_like_sd_scripts(user_config: Mapping[str, Any], path: Path, run: RunArgs) -> list[Finding]:
    """Refuse what sd-scripts' ``ConfigSanitizer`` refuses (see ``schema``), with file, key and fix in one line.

    When no sd-scripts is found here, main's schema decides and keys that v0.9.1 would refuse become warnings.

    Raises:
        CollageConfigError: the first problem, and how many more there are.
    """
    flavour, why = detect_flavour()
    controlnet = bool(run.get("masked_loss"))
    kohya = strip_collage_keys(user_config)
    problems = validate(kohya, schema_for(flavour, controlnet=controlnet))
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem{'s' * (len(problems) > 2)})" if len(problems) > 1 else ""
        msg = f"dataset config {path}: {first.message} @ {first.where}{more}"
        raise CollageConfigError(msg)
    notes = []
    if why.startswith("no sd-scripts"):
        for problem in validate(kohya, schema_for("v0.9.1", controlnet=controlnet)):
            notes.append(
                Finding(
                    "warning",
                    "newer_sd_scripts_key",
                    f"dataset config {path}: {problem.key} needs sd-scripts newer than v0.9.1 (v0.9.1 "
                    f"stops on it: extra keys not allowed) @ {problem.where}; fine on current sd-scripts",
                    str(path),
                )
            )
    return notes
