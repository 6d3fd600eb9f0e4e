"""The settings cascade of ``config_util.BlueprintGenerator``: subset -> dataset -> ``[general]`` -> arguments.

Turns the (collage-stripped) dataset config into ``DatasetSpec`` / ``SubsetSpec`` with sd-scripts'
parameters resolved, before any folder is listed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from collage_ext.core.config import DatasetTree
from collage_ext.core.errors import CollageConfigError
from collage_ext.core.types import Size
from collage_ext.kohya.args import arg_config
from collage_ext.kohya.runargs import RunArgs
from collage_ext.kohya.specs import DatasetSpec, Notes, SubsetSpec

#: Subset parameter defaults (``DreamBoothSubsetParams`` / ``FineTuningSubsetParams``).
SUBSET_DEFAULTS: dict[str, Any] = {
    "image_dir": None,
    "num_repeats": 1,
    "shuffle_caption": False,
    "caption_separator": ",",
    "keep_tokens": 0,
    "keep_tokens_separator": "",
    "secondary_separator": None,
    "enable_wildcard": False,
    "color_aug": False,
    "flip_aug": False,
    "random_crop": False,
    "caption_prefix": None,
    "caption_suffix": None,
    "caption_dropout_rate": 0.0,
    "is_reg": False,
    "class_tokens": None,
    "caption_extension": ".caption",
    "cache_info": False,
    "metadata_file": None,
    "alpha_mask": False,
}
#: Dataset parameter defaults (``DreamBoothDatasetParams`` / ``FineTuningDatasetParams``).
DATASET_DEFAULTS: dict[str, Any] = {
    "resolution": None,
    "batch_size": 1,
    "enable_bucket": False,
    "min_bucket_reso": 256,
    "max_bucket_reso": 1024,
    "bucket_reso_steps": 64,
    "bucket_no_upscale": False,
    "validation_seed": None,
    "validation_split": 0.0,
}


def blueprint(
    tree: DatasetTree, run: RunArgs, toml_dir: Path | None, notes: Notes, *, folder: bool = False
) -> Iterator[DatasetSpec]:
    """Each ``[[datasets]]`` entry with its parameters and subsets resolved, no images listed yet.

    A generator, so that a caller reading each dataset's images before the next one is resolved
    meets problems (and records findings) in the order sd-scripts would.

    Args:
        tree: the dataset config split into sd-scripts' part (``kohya``) and the collage settings.
        run: the training arguments (the cascade's last level).
        toml_dir: the dataset TOML's folder, for paths that only exist next to it.
        notes: where findings go.
        folder: the dataset came from a ``--train_data_dir`` (no TOML to name in messages).

    Raises:
        CollageConfigError: a dataset's resolution is missing or invalid.
    """
    data = tree.kohya
    general = dict(data.get("general", {}) or {})
    args = arg_config(run)
    for d, dataset in enumerate(data.get("datasets", []) or []):
        subsets_raw = list(dataset.get("subsets", []) or [])
        kind: Literal["dreambooth", "finetuning"] = (
            "dreambooth" if all("metadata_file" not in s for s in subsets_raw) else "finetuning"
        )
        params = {k: search(k, [dataset, general, args], v) for k, v in DATASET_DEFAULTS.items()}
        where = f"data['datasets'][{d}]"
        resolution = parse_resolution(params["resolution"], where, folder=folder)
        subsets = []
        for s, raw in enumerate(subsets_raw):
            sp = {k: search(k, [raw, dataset, general, args], v) for k, v in SUBSET_DEFAULTS.items()}
            for key in ("image_dir", "metadata_file"):
                if sp.get(key):
                    sp[key] = locate(str(sp[key]), toml_dir, notes)
            subsets.append(SubsetSpec(s, f"{where}['subsets'][{s}]", sp, tree.subsets[d][s]))
        yield DatasetSpec(d, where, kind, params, resolution, subsets)


def search(key: str, levels: Sequence[Mapping[str, Any]], default: Any) -> Any:
    """``BlueprintGenerator.search_value``: the first level with a non-None value wins."""
    for level in levels:
        value = level.get(key)
        if value is not None:
            return value
    return default


def locate(path: str, toml_dir: Path | None, notes: Notes) -> str:
    """sd-scripts resolves relative paths from the current folder; fall back to the TOML's folder."""
    if os.path.isabs(path) or os.path.exists(path) or toml_dir is None:
        return path
    beside = os.path.join(str(toml_dir), path)
    if os.path.exists(beside):
        notes.note(
            "info",
            "path_beside_toml",
            f"{path!r} is not found from the current folder; using {beside} (next to the dataset TOML). "
            "sd-scripts resolves it from the folder you start training in.",
        )
        return beside
    return path


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
        msg = (
            "resolution is not set; sd-scripts needs it: pass --config with the training TOML that sets it, or "
            "add it after --, e.g. -- --resolution 1024,1024"
        )
        raise CollageConfigError(msg)
    if value is None:
        msg = (
            f"resolution is not set @ {where}; sd-scripts needs it: add e.g. resolution = 1024 to the dataset "
            "TOML, or pass --config with the training TOML that sets it"
        )
        raise CollageConfigError(msg)
    if len(parts) != 2 or not all(isinstance(p, int) and p > 0 for p in parts):
        msg = f"resolution must be a size like 1024 or [832, 1216], got {value!r} @ {where}"
        raise CollageConfigError(msg)
    return Size(parts[0], parts[1])
