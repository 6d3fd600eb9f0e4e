"""The training arguments as sd-scripts reads them: ``--config_file`` TOML, then the command line.

The CLI is given the same training TOML and trainer options as the training run (after ``--``);
this module reads them the way sd-scripts' argparse set-up does and turns them into the lowest
level of the dataset-config cascade (``ConfigSanitizer.sanitize_argparse_namespace``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from collage_ext.kohya.runargs import RunArgs, read_config_file, scan_options
from collage_ext.kohya.specs import Finding

logger = logging.getLogger(__name__)

#: sd-scripts' argparse defaults for the dataset options read here (``add_dataset_arguments``).
ARG_DEFAULTS: dict[str, Any] = {
    "caption_extension": ".caption", "caption_separator": ",", "keep_tokens": 0, "keep_tokens_separator": "",
    "secondary_separator": None, "enable_wildcard": False, "shuffle_caption": False, "flip_aug": False,
    "color_aug": False, "random_crop": False, "caption_dropout_rate": 0.0, "resolution": None,
    "enable_bucket": False, "min_bucket_reso": 256, "max_bucket_reso": 1024, "bucket_reso_steps": 64,
    "bucket_no_upscale": False, "train_batch_size": 1, "dataset_repeats": 1,
}
#: argparse names that mean another dataset-config key (``ConfigSanitizer.ARGPARSE_OPTNAME_TO_CONFIG_OPTNAME``).
ARG_TO_CONFIG = {"train_batch_size": "batch_size", "dataset_repeats": "num_repeats"}

#: The value of sd-scripts' ``--dataset_class`` that turns collage training on.
DATASET_CLASS = "collage_ext.CollageDataset"
#: Warnings already logged by this process: the studio reads the project again after every edit.
_said: set[str] = set()


def build_run(config_file: str | os.PathLike[str] | None = None, trainer_args: Sequence[str] = (),
              seed: int | None = None) -> RunArgs:
    """The training arguments: the ``--config_file`` TOML, then trainer arguments, then ``--seed``.

    Trainer arguments are read generically (``--key value``, ``--key=value``, bare ``--flag``), so
    the same line as the training shell script can be pasted after ``--``.

    Raises:
        CollageConfigError: the training TOML cannot be read.
    """
    values: dict[str, Any] = {}
    found = []
    if config_file is not None:
        values.update(read_config_file(str(config_file)))
        values["config_file"] = str(config_file)
        found.append(f"--config {config_file}")
    given = parse_trainer_args(trainer_args)
    if given.get("config_file") and config_file is None:
        values.update(read_config_file(str(given["config_file"])))
    values.update(given)
    if given:
        found.append("trainer arguments")
    if seed is not None:
        values["seed"] = seed
    if values.get("caption_extention") is not None:  # sd-scripts' old spelling wins (prepare_dataset_args)
        values["caption_extension"] = values["caption_extention"]
    explicit = {k for k, v in values.items() if v is not None}
    return RunArgs(None, values, explicit, " and ".join(found) or "defaults")


def parse_trainer_args(argv: Sequence[str]) -> dict[str, Any]:
    """Read the sd-scripts options a user passed after ``--`` (every token must be an option).

    Examples:
        >>> parse_trainer_args(["--seed", "42", "--cache_latents", "--resolution=1024,1024"])
        {'seed': 42, 'cache_latents': True, 'resolution': '1024,1024'}
    """
    return scan_options(argv, strict=True)


def arg_config(run: RunArgs) -> dict[str, Any]:
    """The training arguments as the last level of the dataset-config cascade, under config-file names."""
    values = dict(ARG_DEFAULTS)
    values.update({k: v for k, v in run.values.items() if v is not None})
    return {ARG_TO_CONFIG.get(k, k): v for k, v in values.items()}


def dataset_class_finding(run: RunArgs, where: str) -> list[Finding]:
    """A warning when the training arguments given would train plain sd-scripts datasets, not these frames."""
    value = run.get("dataset_class")
    if value == DATASET_CLASS:
        return []
    got = f"dataset_class is {value!r}" if value else "no dataset_class"
    message = (f"{where} has {got}: sd-scripts would train plain single images, not the collage frames shown here; "
               f"add dataset_class = \"{DATASET_CLASS}\" to the training TOML, or (kohya_ss GUI, whose saved TOML "
               f"never has it) type --dataset_class {DATASET_CLASS} into Parameters > Advanced > Additional "
               f"parameters and add it here after --: -- --dataset_class {DATASET_CLASS}")
    if message not in _said:  # once per process; the finding stays in every report
        _said.add(message)
        logger.warning(message)
    return [Finding("warning", "no_dataset_class", message)]
