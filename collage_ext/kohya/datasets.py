"""Read a kohya dataset TOML (and training TOML) the way sd-scripts does, without importing sd-scripts.

This is the torch-free fallback: the CLI (preview, export, check) must run where sd-scripts and torch
are not installed, so it cannot call sd-scripts' own reader (``library.config_util`` imports torch).
Training never uses this module; ``CollageDataset`` reads through sd-scripts itself. That the two
agree is tested against the real trees (tests/sdscripts/test_reader_agrees.py, which CI runs against
sd-scripts main and v0.9.1), so a change on either side shows there.

The CLI must show the frames that ``collage_ext.CollageDataset`` feeds a real run, so this module
repeats the few sd-scripts rules that decide *which images a subset holds, with which caption and
how many repeats* (``library/config_util.py`` and ``DreamBoothDataset`` / ``FineTuningDataset`` in
``library/train_util.py``, checked against sd-scripts main and v0.9.1):

* settings cascade subset -> dataset -> ``[general]`` -> training arguments (``--config_file`` and
  the command line, over sd-scripts' argparse defaults) -> parameter defaults; note that
  ``caption_extension`` defaults to ``.caption`` there;
* a DreamBooth subset lists ``image_dir/*<ext>`` (not recursive) for sd-scripts' extensions and
  reads the first line of ``<image><caption_extension>`` (every non-empty line with
  ``enable_wildcard``), falling back to ``class_tokens``;
* subsets with ``num_repeats < 1``, a repeated ``image_dir`` or no images are skipped and take no
  index; regularisation repeats are balanced against the training images;
* ``--train_data_dir`` folders become subsets from their ``N_name`` sub-folders, in directory order.

Everything collage-specific (the option table, seed and mode) comes from the same functions the
adapter calls: ``config.split_dataset_config``, ``run.resolve_seed`` / ``resolve_mode``.
Relative paths are resolved like sd-scripts does (from the current folder); a path that only exists
next to the dataset TOML is used from there, with a note.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import toml

from collage_ext.core.config import CollageConfig, DatasetTree, split_dataset_config, strip_collage_keys
from collage_ext.core.errors import CollageConfigError, CollageInputError
from collage_ext.core.exported import export_root
from collage_ext.plan.subsets import SubsetImage, subset_root
from collage_ext.kohya.runargs import RunArgs, read_config_file, scan_options
from collage_ext.kohya.caption_files import check_crop_extensions, first_line_empty_message
from collage_ext.plan.run import refuse_cache_in_image_folders, resolve_mode, resolve_seed
from collage_ext.kohya.schema import detect_flavour, looks_like_dataset_toml, schema_for, training_keys_in, validate
from collage_ext.core.types import Size

logger = logging.getLogger(__name__)

Level = Literal["error", "warning", "info"]

#: sd-scripts' ``IMAGE_EXTENSIONS`` (case-sensitive globs, so both spellings).
SD_IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".PNG", ".JPG", ".JPEG", ".WEBP",
                                        ".BMP")

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

#: Subset parameter defaults (``DreamBoothSubsetParams`` / ``FineTuningSubsetParams``).
SUBSET_DEFAULTS: dict[str, Any] = {
    "image_dir": None, "num_repeats": 1, "shuffle_caption": False, "caption_separator": ",", "keep_tokens": 0,
    "keep_tokens_separator": "", "secondary_separator": None, "enable_wildcard": False, "color_aug": False,
    "flip_aug": False, "random_crop": False, "caption_prefix": None, "caption_suffix": None,
    "caption_dropout_rate": 0.0, "is_reg": False, "class_tokens": None, "caption_extension": ".caption",
    "cache_info": False, "metadata_file": None, "alpha_mask": False,
}
#: Dataset parameter defaults (``DreamBoothDatasetParams`` / ``FineTuningDatasetParams``).
DATASET_DEFAULTS: dict[str, Any] = {
    "resolution": None, "batch_size": 1, "enable_bucket": False, "min_bucket_reso": 256, "max_bucket_reso": 1024,
    "bucket_reso_steps": 64, "bucket_no_upscale": False, "validation_seed": None, "validation_split": 0.0,
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem or note about the dataset, for logs and the ``check`` report.

    Attributes:
        level: ``error`` (training would fail or lose the file), ``warning`` (trains badly), ``info``.
        code: a stable machine name, e.g. ``unreadable_image``.
        message: one sentence naming the file, the problem and the fix.
        file: the file concerned, when there is one.
    """

    level: Level
    code: str
    message: str
    file: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {"level": self.level, "code": self.code, "message": self.message, "file": self.file}


@dataclass
class SubsetSpec:
    """One ``[[datasets.subsets]]`` entry, resolved like sd-scripts resolves it.

    Attributes:
        index: position in the TOML's ``subsets`` list.
        where: TOML location for messages.
        params: sd-scripts' subset parameters after the cascade.
        config: the resolved collage settings.
        images: the images sd-scripts registers, with caption and repeats.
        kept_index: position among the subsets sd-scripts keeps (``None`` when it skips this one).
        skipped: why sd-scripts skips it.
    """

    index: int
    where: str
    params: dict[str, Any]
    config: CollageConfig
    images: list[SubsetImage] = field(default_factory=list)
    kept_index: int | None = None
    skipped: str | None = None

    @property
    def image_dir(self) -> str | None:
        """The image folder as it is used (possibly resolved next to the dataset TOML)."""
        value = self.params.get("image_dir")
        return str(value) if value else None

    @property
    def root(self) -> str:
        """The folder sample keys are relative to."""
        return subset_root(self.image_dir, self.params.get("metadata_file"))

    @property
    def is_reg(self) -> bool:
        """True for regularisation subsets."""
        return bool(self.params.get("is_reg"))

    @property
    def name(self) -> str:
        """A short name: the folder name without a ``N_`` repeat prefix."""
        base = os.path.basename(str(self.root).rstrip("/")) or "subset"
        head, sep, tail = base.partition("_")
        return tail if sep and head.isdigit() and tail else base

    def namespace(self) -> SimpleNamespace:
        """The parameters as attributes, like an sd-scripts subset object (for ``grammar_of``)."""
        return SimpleNamespace(**self.params)


@dataclass
class DatasetSpec:
    """One ``[[datasets]]`` entry: its resolution, batching and subsets."""

    index: int
    where: str
    kind: Literal["dreambooth", "finetuning"]
    params: dict[str, Any]
    resolution: Size
    subsets: list[SubsetSpec]

    @property
    def kept(self) -> list[SubsetSpec]:
        """The subsets sd-scripts keeps, in order."""
        return [s for s in self.subsets if s.kept_index is not None]


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
    if values.get("caption_extention") and not values.get("caption_extension"):
        values["caption_extension"] = values["caption_extention"]  # sd-scripts' backward-compatible spelling
    explicit = {k for k, v in values.items() if v is not None}
    return RunArgs(None, values, explicit, " and ".join(found) or "defaults")


def parse_trainer_args(argv: Sequence[str]) -> dict[str, Any]:
    """Read the sd-scripts options a user passed after ``--`` (every token must be an option).

    Examples:
        >>> parse_trainer_args(["--seed", "42", "--cache_latents", "--resolution=1024,1024"])
        {'seed': 42, 'cache_latents': True, 'resolution': '1024,1024'}
    """
    return scan_options(argv, strict=True)


def load_user_config(path: Path) -> dict[str, Any]:
    """Read a dataset config file as sd-scripts' ``config_util.load_user_config`` does (TOML or JSON)."""
    if not path.is_file():
        msg = f"dataset config {path} does not exist; check the path"
        raise CollageConfigError(msg)
    try:
        if path.name.lower().endswith(".json"):
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        elif path.name.lower().endswith(".toml"):
            data = toml.load(path)
        else:
            msg = f"dataset config {path} must be a .toml or .json file (sd-scripts reads only those)"
            raise CollageConfigError(msg)
    except (OSError, ValueError, toml.TomlDecodeError) as exc:
        if isinstance(exc, CollageConfigError):
            raise
        msg = f"dataset config {path} cannot be read: {exc}; check the TOML syntax"
        raise CollageConfigError(msg) from exc
    if not isinstance(data, dict):
        msg = f"dataset config {path} must hold a table with [[datasets]], got {type(data).__name__}"
        raise CollageConfigError(msg)
    return data


def subsets_from_folders(train_data_dir: str | None, reg_data_dir: str | None) -> list[dict[str, Any]]:
    """``--train_data_dir`` / ``--reg_data_dir`` as subsets, like ``generate_dreambooth_subsets_config_by_subdirs``.

    Sub-folders ``N_name`` become subsets with ``num_repeats = N`` and ``class_tokens = name``,
    in directory order (as sd-scripts iterates them, which also decides the subset index).
    """

    def generate(base: str | None, is_reg: bool) -> list[dict[str, Any]]:
        if base is None or not Path(base).is_dir():
            return []
        out = []
        for sub in Path(base).iterdir():
            if not sub.is_dir():
                continue
            head = sub.name.partition("_")[0]
            try:
                repeats = int(head)
            except ValueError:
                logger.warning(f"ignoring folder without a repeat count (N_name): {sub}")
                continue
            if repeats >= 1:
                out.append({"image_dir": str(sub), "num_repeats": repeats, "is_reg": is_reg,
                            "class_tokens": "_".join(sub.name.split("_")[1:])})
        return out

    return generate(train_data_dir, False) + generate(reg_data_dir, True)


def load_project(dataset: str | os.PathLike[str] | None = None, *, config_file: str | os.PathLike[str] | None = None,
                 trainer_args: Sequence[str] = (), seed: int | None = None, strict: bool = True) -> Project:
    """Read the dataset (a dataset TOML, a ``--train_data_dir`` folder, or the training TOML's) and plan nothing yet.

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
    run = build_run(config_file, trainer_args, seed)
    where = f"--config_file {config_file}" if config_file else "the training arguments"
    config_path: Path | None = None
    if dataset is None and isinstance(run.values.get("datasets"), list):
        _refuse_swapped(run, config_file, None, {})
    if dataset is not None and Path(dataset).is_dir():
        user_config: dict[str, Any] = {"datasets": [{"subsets": subsets_from_folders(str(dataset),
                                                                                     run.get("reg_data_dir"))}]}
        source = f"--train_data_dir {dataset}"
    elif dataset is not None:
        config_path = Path(dataset)
        user_config = load_user_config(config_path)
        source = f"dataset config {dataset}"
    elif run.get("dataset_config"):
        config_path = Path(str(run.get("dataset_config")))
        user_config = load_user_config(config_path)
        source = f"dataset config {config_path} (dataset_config of the training arguments)"
    elif run.get("train_data_dir") and run.get("in_json"):
        user_config = {"datasets": [{"subsets": [{"image_dir": run.get("train_data_dir"),
                                                  "metadata_file": run.get("in_json")}]}]}
        source = f"--in_json {run.get('in_json')}"
    elif run.get("train_data_dir"):
        user_config = {"datasets": [{"subsets": subsets_from_folders(run.get("train_data_dir"),
                                                                     run.get("reg_data_dir"))}]}
        source = f"--train_data_dir {run.get('train_data_dir')}"
    else:
        msg = ("no dataset given; pass a dataset TOML (or a folder of N_name sub-folders), or --config with a "
               "training TOML that sets dataset_config or train_data_dir")
        raise CollageConfigError(msg)
    _refuse_swapped(run, config_file, config_path, user_config)
    schema_notes = validate_like_sd_scripts(user_config, config_path, run) if config_path is not None else []
    tree = split_dataset_config(user_config, defaults=run.collage_defaults, defaults_where=where)
    configs = [c for row in tree.subsets for c in row]
    mode, mode_why = resolve_mode(configs, run)
    if mode == "static":
        refuse_cache_in_image_folders(configs, run, tree.kohya)
    check_crop_extensions(tree.kohya, tree.subsets, run)
    seed_value, seed_why = resolve_seed(run, tree.kohya)
    if seed_why == "from --seed" and seed is None:  # say where the user set it
        after_dash = "seed" in parse_trainer_args(trainer_args)
        seed_why = ("from --seed after --" if after_dash or config_file is None
                    else f"from seed = {seed_value} in the training TOML {config_file}")
    project = Project(run, source, config_path, tree, [], seed_value, seed_why, mode, mode_why, list(schema_notes))
    reader = _Reader(project, config_path.parent if config_path else None, strict)
    project.datasets = reader.datasets(tree)
    if config_file is not None or trainer_args:
        project.findings.extend(_dataset_class_finding(run, where))
    return project


#: The value of sd-scripts' ``--dataset_class`` that turns collage training on.
DATASET_CLASS = "collage_ext.CollageDataset"
#: Warnings already logged by this process: the studio reads the project again after every edit.
_said: set[str] = set()


def _dataset_class_finding(run: RunArgs, where: str) -> list[Finding]:
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


def _refuse_swapped(run: RunArgs, config_file: str | os.PathLike[str] | None, config_path: Path | None,
                    user_config: Mapping[str, Any]) -> None:
    """A training TOML where the dataset TOML belongs, or a dataset TOML given as --config: one line with the fix."""
    given_dataset_as_config = isinstance(run.values.get("datasets"), list)
    training = training_keys_in(user_config) if config_path is not None else []
    looks_training = bool(training) and not looks_like_dataset_toml(user_config)
    if given_dataset_as_config and looks_training:
        msg = (f"the two files look swapped: {config_path} is a training TOML (it sets {', '.join(training[:3])}) and "
               f"--config {config_file} is a dataset TOML (it has [[datasets]]); swap them: "
               f"collage-ext ... {config_file} --config {config_path}")
        raise CollageConfigError(msg)
    if looks_training:
        named = user_config.get("dataset_config")
        fix = (f"pass it as --config {config_path} (its dataset_config {named} is then read from it)" if named
               else f"pass it as --config {config_path}, and the dataset TOML (with [[datasets]]) as the first "
                    "argument")
        msg = (f"{config_path} looks like a training TOML (it sets {', '.join(training[:3])}), not a dataset TOML: "
               f"{fix}")
        raise CollageConfigError(msg)
    if given_dataset_as_config:
        msg = (f"--config {config_file} looks like a dataset TOML (it has [[datasets]]), not a training TOML: pass it "
               f"as the dataset argument (collage-ext ... {config_file}), and the training TOML as --config")
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
            notes.append(Finding("warning", "newer_sd_scripts_key",
                                 f"dataset config {path}: {problem.key} needs sd-scripts newer than v0.9.1 (v0.9.1 "
                                 f"stops on it: extra keys not allowed) @ {problem.where}; fine on current sd-scripts",
                                 str(path)))
    return notes


class _Reader:
    """Lists images and reads captions per subset, like sd-scripts' dataset constructors."""

    def __init__(self, project: Project, toml_dir: Path | None, strict: bool) -> None:
        self.project, self.toml_dir, self.strict = project, toml_dir, strict
        self.arg_config = _arg_config(project.run)

    def note(self, level: Level, code: str, message: str, file: str | None = None) -> None:
        if self.strict and level == "error":
            raise CollageInputError(message)
        self.project.findings.append(Finding(level, code, message, file))
        getattr(logger, level)(message)  # logged at the level the report gives it

    def datasets(self, tree: DatasetTree) -> list[DatasetSpec]:
        data = tree.kohya
        general = dict(data.get("general", {}) or {})
        out = []
        for d, dataset in enumerate(data.get("datasets", []) or []):
            subsets_raw = list(dataset.get("subsets", []) or [])
            kind: Literal["dreambooth", "finetuning"] = (
                "dreambooth" if all("metadata_file" not in s for s in subsets_raw) else "finetuning")
            params = {k: _search(k, [dataset, general, self.arg_config], v) for k, v in DATASET_DEFAULTS.items()}
            where = f"data['datasets'][{d}]"
            resolution = parse_resolution(params["resolution"], where, folder=self.project.config_path is None)
            subsets = []
            for s, raw in enumerate(subsets_raw):
                sp = {k: _search(k, [raw, dataset, general, self.arg_config], v) for k, v in SUBSET_DEFAULTS.items()}
                for key in ("image_dir", "metadata_file"):
                    if sp.get(key):
                        sp[key] = self.locate(str(sp[key]))
                subsets.append(SubsetSpec(s, f"{where}['subsets'][{s}]", sp, tree.subsets[d][s]))
            spec = DatasetSpec(d, where, kind, params, resolution, subsets)
            if kind == "dreambooth":
                self.dreambooth(spec)
            else:
                self.finetuning(spec)
            out.append(spec)
        return out

    def locate(self, path: str) -> str:
        """sd-scripts resolves relative paths from the current folder; fall back to the TOML's folder."""
        if os.path.isabs(path) or os.path.exists(path) or self.toml_dir is None:
            return path
        beside = os.path.join(str(self.toml_dir), path)
        if os.path.exists(beside):
            self.note("info", "path_beside_toml",
                      f"{path!r} is not found from the current folder; using {beside} (next to the dataset TOML). "
                      "sd-scripts resolves it from the folder you start training in.")
            return beside
        return path

    # -- DreamBooth ------------------------------------------------------------------------------
    def dreambooth(self, spec: DatasetSpec) -> None:
        kept: list[SubsetSpec] = []
        train_count = 0
        reg: list[tuple[_Entry, SubsetSpec]] = []
        entries: dict[int, list[_Entry]] = {}
        for subset in spec.subsets:
            repeats = int(subset.params["num_repeats"])
            image_dir = subset.image_dir
            if repeats < 1:
                subset.skipped = f"num_repeats is {repeats} (< 1)"
                continue
            if any(k.params.get("image_dir") == subset.params.get("image_dir") for k in kept):
                subset.skipped = "the same image_dir is already used by an earlier subset of this dataset"
                continue
            if not image_dir or not os.path.isdir(image_dir):
                self.note("error", "missing_image_dir",
                          f"image_dir {image_dir!r} is not a folder @ {subset.where}; sd-scripts skips this subset, "
                          "so its images are never trained: fix the path", image_dir)
                subset.skipped = "image_dir is not a folder"
                continue
            root = export_root(image_dir)
            if root is not None and subset.config.rate == 0:
                self.note("info", "export_folder", f"{image_dir} is part of a collage-ext export ({root}): its frames "
                          "are collages already, so they train as single images (collage_rate = 0)")
            paths = glob_images(image_dir)
            paths = self.validation_split(spec, subset, paths)
            if not paths:
                self.note("warning", "empty_subset", f"image_dir {image_dir} has no images @ {subset.where}; "
                          f"sd-scripts skips it (extensions: {', '.join(SD_IMAGE_EXTENSIONS)})", image_dir)
                subset.skipped = "no images"
                continue
            items = [_Entry(p, self.caption(p, subset), repeats) for p in paths]
            if subset.is_reg:
                reg.extend((item, subset) for item in items)
            else:
                train_count += repeats * len(items)
                entries[id(subset)] = items
            subset.kept_index = len(kept)
            kept.append(subset)
        # Regularisation repeats: sd-scripts registers reg images until they match the training images,
        # then adds one repeat at a time (DreamBoothDataset.__init__).
        registered: dict[int, list[_Entry]] = {}
        n, first = 0, True
        if reg:
            while n < train_count:
                for item, subset in reg:
                    if first:
                        registered.setdefault(id(subset), []).append(item)
                        n += item.repeats
                    else:
                        item.repeats += 1
                        n += 1
                    if n >= train_count:
                        break
                first = False
        for subset in kept:
            items = registered.get(id(subset), []) if subset.is_reg else entries.get(id(subset), [])
            subset.images = [SubsetImage(e.path, e.caption, e.repeats) for e in items]
            if subset.is_reg and not items:
                self.note("info", "reg_unused", f"regularisation subset {subset.image_dir} is not used: there are no "
                          "training images to balance it against")

    def validation_split(self, spec: DatasetSpec, subset: SubsetSpec, paths: list[str]) -> list[str]:
        split = float(spec.params.get("validation_split") or 0.0)
        if split <= 0.0 or subset.is_reg:
            return paths
        seed = spec.params.get("validation_seed")
        if seed is None:
            self.note("warning", "validation_split_unseeded",
                      f"validation_split = {split} without validation_seed @ {spec.where}: sd-scripts picks the "
                      "validation images at random, so this shows every image; set validation_seed to make it "
                      "reproducible")
            return paths
        shuffled = list(paths)
        random.Random(int(seed)).shuffle(shuffled)  # == random.seed(seed); random.shuffle(...) in split_train_val
        return shuffled[: math.ceil(len(shuffled) * (1 - split))]

    def caption(self, path: str, subset: SubsetSpec) -> str:
        """``read_caption`` of sd-scripts, then the ``class_tokens`` fallback."""
        ext = str(subset.params["caption_extension"])
        base = os.path.splitext(path)[0]
        tokens = base.split("_")
        face = "_".join(tokens[:-4]) if len(tokens) >= 5 else base
        for candidate in (base + ext, face + ext):
            if os.path.isfile(candidate):
                try:
                    with open(candidate, encoding="utf-8") as handle:
                        lines = handle.readlines()
                except UnicodeDecodeError:
                    self.note("error", "caption_not_utf8", f"caption file {candidate} is not UTF-8; sd-scripts stops "
                              "on it: re-save it as UTF-8", candidate)
                    return ""
                except OSError as exc:
                    self.note("error", "caption_unreadable", f"caption file {candidate} cannot be read ({exc})",
                              candidate)
                    return ""
                if not "".join(lines).strip():  # training refuses whitespace-only files too (caption_files)
                    self.note("error", "caption_empty", f"caption file {candidate} is empty"
                              + (" (only white space)" if lines else "") + "; sd-scripts stops on empty caption "
                              "files: write a caption or delete the file", candidate)
                    return ""
                if subset.params.get("enable_wildcard"):
                    return "\n".join(line.strip() for line in lines if line.strip())
                if not lines[0].lstrip("\ufeff").strip():
                    self.note("warning", "caption_first_line_empty", first_line_empty_message(candidate), candidate)
                return lines[0].strip()
        others = [e for e in (".txt", ".caption") if e != ext and os.path.isfile(base + e)]
        hint = (f"; {os.path.basename(base + others[0])} exists: set caption_extension = \"{others[0]}\" (sd-scripts' "
                "default is \".caption\")" if others else "")
        if subset.params.get("class_tokens") is not None:
            if hint:
                self.note("warning", "caption_missing", f"{path} has no {ext} caption file, so it trains with its "
                          f"class_tokens {subset.params['class_tokens']!r}{hint}", path)
            return str(subset.params["class_tokens"])
        self.note("warning", "caption_missing", f"{path} has no caption file ({ext}) and its subset has no "
                  f"class_tokens: it trains with an empty caption{hint}", path)
        return ""

    # -- fine-tuning (metadata_file) -------------------------------------------------------------
    def finetuning(self, spec: DatasetSpec) -> None:
        kept: list[SubsetSpec] = []
        for subset in spec.subsets:
            repeats = int(subset.params["num_repeats"])
            meta_file = subset.params.get("metadata_file")
            if repeats < 1:
                subset.skipped = f"num_repeats is {repeats} (< 1)"
                continue
            if any(k.params.get("metadata_file") == meta_file for k in kept):
                subset.skipped = "the same metadata_file is already used by an earlier subset of this dataset"
                continue
            metadata = self.read_metadata(str(meta_file), subset)
            if not metadata:
                subset.skipped = "no metadata entries"
                continue
            sep = str(subset.params["caption_separator"])
            images = []
            for key, md in metadata.items():
                image_dir = subset.image_dir
                path = key if os.path.isabs(key) or not image_dir else os.path.join(image_dir, key)
                caption = md.get("caption") or ""
                tags = md.get("tags")
                if subset.params.get("enable_wildcard"):
                    if tags is not None:
                        tags = tags.replace("\n", sep)
                        caption = "\n".join(f"{line}{sep}{tags}" for line in caption.split("\n") if line.strip())
                elif tags:
                    caption = (caption + sep if caption else "") + tags
                images.append(SubsetImage(path, caption, repeats))
            subset.images = images
            subset.kept_index = len(kept)
            kept.append(subset)

    def read_metadata(self, path: str, subset: SubsetSpec) -> dict[str, dict[str, Any]]:
        try:
            if path.endswith(".jsonl"):
                out: dict[str, dict[str, Any]] = {}
                with open(path, encoding="utf-8") as handle:
                    for line in handle:
                        if line.strip():
                            item = json.loads(line)
                            out[item["image_path"]] = {"caption": item.get("caption", ""), "tags": item.get("tags")}
                return out
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError, KeyError) as exc:
            self.note("error", "metadata_unreadable", f"metadata_file {path} cannot be read ({exc}) @ {subset.where}",
                      path)
            return {}
        return data if isinstance(data, dict) else {}


@dataclass
class _Entry:
    path: str
    caption: str
    repeats: int


def _arg_config(run: RunArgs) -> dict[str, Any]:
    values = dict(ARG_DEFAULTS)
    values.update({k: v for k, v in run.values.items() if v is not None})
    return {ARG_TO_CONFIG.get(k, k): v for k, v in values.items()}


def _search(key: str, levels: Sequence[Mapping[str, Any]], default: Any) -> Any:
    # BlueprintGenerator.search_value: the first level with a non-None value wins.
    for level in levels:
        value = level.get(key)
        if value is not None:
            return value
    return default


def parse_resolution(value: Any, where: str, *, folder: bool = False) -> Size:
    """sd-scripts' ``resolution``: an int, ``[W, H]`` or ``"W,H"`` / ``"W"``.

    Examples:
        >>> parse_resolution(1024, "x"), parse_resolution("832,1216", "x"), parse_resolution([512, 768], "x")
        (Size(width=1024, height=1024), Size(width=832, height=1216), Size(width=512, height=768))
    """
    parts: list[Any]
    if isinstance(value, bool):
        parts = []
    elif isinstance(value, int):
        parts = [value, value]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    elif isinstance(value, str):
        try:
            parts = [int(p) for p in value.split(",")]
        except ValueError:
            parts = []
        parts = parts * 2 if len(parts) == 1 else parts
    else:
        parts = []
    if value is None and folder:  # a --train_data_dir user has no dataset TOML to edit
        msg = ("resolution is not set; sd-scripts needs it: pass --config with the training TOML that sets it, or "
               "add it after --, e.g. -- --resolution 1024,1024")
        raise CollageConfigError(msg)
    if value is None:
        msg = (f"resolution is not set @ {where}; sd-scripts needs it: add e.g. resolution = 1024 to the dataset "
               "TOML, or pass --config with the training TOML that sets it")
        raise CollageConfigError(msg)
    if len(parts) != 2 or not all(isinstance(p, int) and p > 0 for p in parts):
        msg = f"resolution must be a size like 1024 or [832, 1216], got {value!r} @ {where}"
        raise CollageConfigError(msg)
    return Size(parts[0], parts[1])


def image_extensions() -> tuple[str, ...]:
    """sd-scripts' extensions, plus AVIF / JPEG XL when their Pillow plugins are installed (as sd-scripts does)."""
    extra: tuple[str, ...] = ()
    if importlib.util.find_spec("pillow_avif") is not None:
        extra += (".avif", ".AVIF")
    if importlib.util.find_spec("jxlpy") is not None:
        extra += (".jxl", ".JXL")
    return SD_IMAGE_EXTENSIONS + extra


def glob_images(directory: str) -> list[str]:
    """``train_util.glob_images(directory, "*")``: non-recursive, de-duplicated, sorted.

    sd-scripts globs ``*<ext>`` once per extension (20 listings of the folder); one listing filtered
    the way ``glob`` matches (names ending in an extension, case as the file system compares names,
    hidden names skipped) gives the same list, which matters where the studio re-reads the folder
    after every edit.
    """
    try:
        names = os.listdir(directory)
    except OSError:  # glob: a missing or unreadable folder matches nothing
        return []
    extensions = tuple(os.path.normcase(e) for e in image_extensions())
    found = {os.path.join(directory, n) for n in names
             if not n.startswith(".") and os.path.normcase(n).endswith(extensions)}
    return sorted(found)
