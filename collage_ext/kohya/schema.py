"""The dataset-TOML schema sd-scripts enforces at start-up, checked without sd-scripts, torch or voluptuous.

sd-scripts validates ``--dataset_config`` with ``ConfigSanitizer`` (a voluptuous schema in
``library/config_util.py``) before it builds a dataset: an unknown key at any level, a value of the
wrong type or a missing ``image_dir`` stops the run with ``MultipleInvalid: extra keys not allowed @
data[...]``. The torch-free commands (check, preview, export, studio) must refuse the same files, or
``check`` says "Ready to train" on a config the trainer rejects. This module repeats that schema: the
keys allowed per level, their types (voluptuous checks ``isinstance``: ``0`` is not a float,
``true`` is an int), the DreamBooth / fine-tuning / ControlNet dispatch per dataset, and the two
releases it differs in (v0.9.1 lacks ``custom_attributes``, ``resize_interpolation``,
``validation_seed`` and ``validation_split``). A test runs sd-scripts' own sanitizer on a corpus of
good and bad TOMLs against main and v0.9.1 and asserts both accept and refuse the same files
(tests/sdscripts/test_schema_agrees.py).

The trainers build ``ConfigSanitizer(True, True, args.masked_loss, True)`` (DreamBooth, fine-tuning,
ControlNet = ``masked_loss``, dropout), and the adapter does the same; ``collage_*`` keys are ours and
are removed before the schema is applied (``config.split_dataset_config``).

Messages are one line naming the file, the key, its TOML location and the fix: "did you mean
``num_repeats``?", "``batch_size`` is a dataset setting: move it to [[datasets]]", "this looks like a
training TOML: pass it as --config".
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Flavour = Literal["main", "v0.9.1"]
FLAVOURS: tuple[Flavour, ...] = ("main", "v0.9.1")


# -- value types, as voluptuous checks them ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind:
    """A value rule of the schema: its check and how to say what it wants."""

    check: Callable[[Any], bool]
    wants: str
    example: str


def _is(*types: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, types)


def _pair(klass: type) -> Callable[[Any], bool]:
    # voluptuous ExactSequence([klass, klass]): a list or tuple of exactly two klass values
    return lambda value: (
        isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, klass) for v in value)
    )


BOOL = Kind(_is(bool), "true or false", "true")
INT = Kind(_is(int), "a whole number", "1")
FLOAT = Kind(_is(float), "a number with a decimal point (sd-scripts' schema rejects a whole number here)", "0.1")
NUMBER = Kind(_is(float, int), "a number", "0.1")
STR = Kind(_is(str), "a quoted string", '".txt"')
TABLE = Kind(_is(dict), "a table", "{ key = 1 }")
FLOAT_PAIR = Kind(_pair(float), "two numbers with decimal points", "[0.4, 0.8]")
RESOLUTION = Kind(lambda v: isinstance(v, int) or _pair(int)(v), "a whole number or two of them", "1024 or [832, 1216]")

# -- the key sets (ConfigSanitizer's class attributes, main; v0.9.1 differs as noted) --------------

SUBSET_ASCENDABLE: dict[str, Kind] = {
    "color_aug": BOOL,
    "face_crop_aug_range": FLOAT_PAIR,
    "flip_aug": BOOL,
    "num_repeats": INT,
    "random_crop": BOOL,
    "shuffle_caption": BOOL,
    "keep_tokens": INT,
    "keep_tokens_separator": STR,
    "secondary_separator": STR,
    "caption_separator": STR,
    "enable_wildcard": BOOL,
    "token_warmup_min": INT,
    "token_warmup_step": NUMBER,
    "caption_prefix": STR,
    "caption_suffix": STR,
    "custom_attributes": TABLE,
    "resize_interpolation": STR,
}
DROPOUT_ASCENDABLE: dict[str, Kind] = {
    "caption_dropout_every_n_epochs": INT,
    "caption_dropout_rate": NUMBER,
    "caption_tag_dropout_rate": NUMBER,
}
DB_SUBSET_ASCENDABLE: dict[str, Kind] = {"caption_extension": STR, "class_tokens": STR, "cache_info": BOOL}
DB_SUBSET_DISTINCT: dict[str, Kind] = {"image_dir": STR, "is_reg": BOOL, "alpha_mask": BOOL}
FT_SUBSET_DISTINCT: dict[str, Kind] = {"metadata_file": STR, "image_dir": STR, "alpha_mask": BOOL}
CN_SUBSET_ASCENDABLE: dict[str, Kind] = {"caption_extension": STR, "cache_info": BOOL}
CN_SUBSET_DISTINCT: dict[str, Kind] = {"image_dir": STR, "conditioning_data_dir": STR}
DATASET_ASCENDABLE: dict[str, Kind] = {
    "batch_size": INT,
    "bucket_no_upscale": BOOL,
    "bucket_reso_steps": INT,
    "enable_bucket": BOOL,
    "max_bucket_reso": INT,
    "min_bucket_reso": INT,
    "validation_seed": INT,
    "validation_split": FLOAT,
    "resolution": RESOLUTION,
    "network_multiplier": FLOAT,
    "resize_interpolation": STR,
}
#: Keys sd-scripts v0.9.1's schema does not have (added after it).
NEWER_THAN_V091: frozenset[str] = frozenset(
    {"custom_attributes", "resize_interpolation", "validation_seed", "validation_split"}
)
#: Required keys per subset kind.
REQUIRED: dict[str, tuple[str, ...]] = {
    "db": ("image_dir",),
    "ft": ("metadata_file",),
    "cn": ("image_dir", "conditioning_data_dir"),
}


@dataclass(frozen=True)
class Schema:
    """The allowed keys per level for one sd-scripts release and one set of support flags."""

    flavour: Flavour
    controlnet: bool
    general: dict[str, Kind]
    datasets: dict[str, dict[str, Kind]]  # kind -> dataset-level keys (without "subsets")
    subsets: dict[str, dict[str, Kind]]  # kind -> subset keys

    def dataset_kind(self, subsets: list[Any]) -> str | None:
        """``validate_flex_dataset``: cn when every subset has conditioning_data_dir, ft / db, else mixed (None)."""
        if self.controlnet and all(_has(s, "conditioning_data_dir") for s in subsets):
            return "cn"
        if all(_has(s, "metadata_file") for s in subsets):
            return "ft"
        if all(not _has(s, "metadata_file") for s in subsets):
            return "db"
        return None


def _has(subset: Any, key: str) -> bool:
    try:
        return key in subset
    except TypeError:
        return False


def _merge(*parts: Mapping[str, Kind], flavour: Flavour) -> dict[str, Kind]:
    out: dict[str, Kind] = {}
    for part in parts:
        out.update(part)
    if flavour == "v0.9.1":
        out = {k: v for k, v in out.items() if k not in NEWER_THAN_V091}
    return out


def schema_for(flavour: Flavour = "main", *, controlnet: bool = False) -> Schema:
    """``ConfigSanitizer(True, True, controlnet, True)`` of the given release, as key sets.

    Examples:
        >>> "validation_split" in schema_for("main").general, "validation_split" in schema_for("v0.9.1").general
        (True, False)
    """
    m = {"flavour": flavour}
    db_sub = _merge(SUBSET_ASCENDABLE, DB_SUBSET_DISTINCT, DB_SUBSET_ASCENDABLE, DROPOUT_ASCENDABLE, **m)
    ft_sub = _merge(SUBSET_ASCENDABLE, FT_SUBSET_DISTINCT, DROPOUT_ASCENDABLE, **m)
    cn_sub = _merge(SUBSET_ASCENDABLE, CN_SUBSET_DISTINCT, CN_SUBSET_ASCENDABLE, DROPOUT_ASCENDABLE, **m)
    datasets = {
        "db": _merge(DATASET_ASCENDABLE, SUBSET_ASCENDABLE, DB_SUBSET_ASCENDABLE, DROPOUT_ASCENDABLE, **m),
        "ft": _merge(DATASET_ASCENDABLE, SUBSET_ASCENDABLE, DROPOUT_ASCENDABLE, **m),
        "cn": _merge(DATASET_ASCENDABLE, SUBSET_ASCENDABLE, CN_SUBSET_ASCENDABLE, DROPOUT_ASCENDABLE, **m),
    }
    general = _merge(
        DATASET_ASCENDABLE,
        SUBSET_ASCENDABLE,
        DB_SUBSET_ASCENDABLE,
        CN_SUBSET_ASCENDABLE if controlnet else {},
        DROPOUT_ASCENDABLE,
        **m,
    )
    return Schema(flavour, controlnet, general, datasets, {"db": db_sub, "ft": ft_sub, "cn": cn_sub})


# -- validation -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing sd-scripts' schema refuses.

    Attributes:
        where: the voluptuous-style location, e.g. ``data['datasets'][0]['subsets'][0]['num_repeat']``.
        key: the key concerned (``None`` for a whole section).
        message: what is wrong and the fix, without the file name.
    """

    where: str
    key: str | None
    message: str


#: Options of sd-scripts' training scripts that are common in a training TOML and never dataset keys.
TRAINING_KEYS: frozenset[str] = frozenset(
    {
        "pretrained_model_name_or_path",
        "output_dir",
        "output_name",
        "network_module",
        "network_dim",
        "network_alpha",
        "network_args",
        "learning_rate",
        "unet_lr",
        "text_encoder_lr",
        "optimizer_type",
        "optimizer_args",
        "lr_scheduler",
        "lr_warmup_steps",
        "max_train_steps",
        "max_train_epochs",
        "mixed_precision",
        "save_precision",
        "save_every_n_epochs",
        "save_every_n_steps",
        "save_model_as",
        "train_data_dir",
        "reg_data_dir",
        "dataset_config",
        "dataset_class",
        "logging_dir",
        "log_with",
        "sample_prompts",
        "sample_every_n_steps",
        "sample_every_n_epochs",
        "sample_sampler",
        "xformers",
        "sdpa",
        "mem_eff_attn",
        "gradient_checkpointing",
        "gradient_accumulation_steps",
        "cache_latents",
        "cache_latents_to_disk",
        "cache_text_encoder_outputs",
        "cache_text_encoder_outputs_to_disk",
        "seed",
        "train_batch_size",
        "max_data_loader_n_workers",
        "persistent_data_loader_workers",
        "noise_offset",
        "min_snr_gamma",
        "clip_skip",
        "max_token_length",
        "v2",
        "v_parameterization",
        "vae",
        "full_bf16",
        "full_fp16",
        "fp8_base",
        "network_train_unet_only",
        "network_weights",
        "save_state",
        "resume",
        "ae",
        "clip_l",
        "t5xxl",
        "model_type",
        "guidance_scale",
        "timestep_sampling",
        "discrete_flow_shift",
        "model_prediction_type",
        "apply_t5_attn_mask",
        "masked_loss",
        "prior_loss_weight",
        "huber_c",
        "loss_type",
        "no_half_vae",
        "lowram",
        "highvram",
        "config_file",
        "dataset_repeats",
        "in_json",
        "training_comment",
        "max_grad_norm",
        "multires_noise_iterations",
        "multires_noise_discount",
        "ip_noise_gamma",
        "scale_weight_norms",
    }
)


def validate(data: Any, schema: Schema) -> list[Problem]:
    """Every place ``data`` (collage keys already removed) breaks ``schema``; empty when sd-scripts accepts it."""
    problems: list[Problem] = []
    if not isinstance(data, Mapping):
        return [Problem("data", None, "the file must hold [general] and [[datasets]] tables")]
    for key, value in data.items():
        where = f"data[{key!r}]"
        if key == "general":
            if not isinstance(value, Mapping):
                problems.append(Problem(where, key, "[general] must be a table: write it as [general]"))
            else:
                _check_table(value, schema.general, where, "[general]", schema, problems)
        elif key == "datasets":
            if not isinstance(value, list):
                problems.append(
                    Problem(
                        where,
                        key,
                        "datasets must be a list of tables: write [[datasets]] (two brackets), not [datasets]",
                    )
                )
                continue
            for d, dataset in enumerate(value):
                _check_dataset(dataset, f"data['datasets'][{d}]", schema, problems)
        else:
            problems.append(_unknown(key, "data", "the top level", set(), schema))
    return problems


def _check_dataset(dataset: Any, where: str, schema: Schema, problems: list[Problem]) -> None:
    if not isinstance(dataset, Mapping):
        problems.append(Problem(where, None, "each [[datasets]] entry must be a table"))
        return
    raw = dataset.get("subsets", [])
    subsets = raw if isinstance(raw, list) else list(raw) if isinstance(raw, (Mapping, str)) else []
    kind = schema.dataset_kind(subsets)
    if kind is None:
        problems.append(
            Problem(
                where,
                "metadata_file",
                "DreamBooth subsets (image_dir) and fine-tuning subsets (metadata_file) cannot be "
                "mixed in one dataset: split them into two [[datasets]]",
            )
        )
        return
    allowed = schema.datasets[kind]
    _check_table({k: v for k, v in dataset.items() if k != "subsets"}, allowed, where, "[[datasets]]", schema, problems)
    if "subsets" not in dataset:
        return
    if not isinstance(raw, list):
        problems.append(
            Problem(
                f"{where}['subsets']",
                "subsets",
                "subsets must be a list of tables: write [[datasets.subsets]] (two brackets)",
            )
        )
        return
    for s, subset in enumerate(raw):
        s_where = f"{where}['subsets'][{s}]"
        if not isinstance(subset, Mapping):
            problems.append(Problem(s_where, None, "each [[datasets.subsets]] entry must be a table"))
            continue
        for required in REQUIRED[kind]:
            if required not in subset:
                problems.append(
                    Problem(
                        f"{s_where}['{required}']",
                        required,
                        f"required key {required} is missing in [[datasets.subsets]] (sd-scripts: "
                        f'required key not provided): add {required} = "path/to/folder"',
                    )
                )
        _check_table(subset, schema.subsets[kind], s_where, "[[datasets.subsets]]", schema, problems)


def _check_table(
    table: Mapping[str, Any],
    allowed: Mapping[str, Kind],
    where: str,
    section: str,
    schema: Schema,
    problems: list[Problem],
) -> None:
    for key, value in table.items():
        kind = allowed.get(key)
        if kind is None:
            problems.append(_unknown(key, where, section, set(allowed), schema))
        elif not kind.check(value):
            problems.append(
                Problem(
                    f"{where}[{key!r}]", key, f"{key} must be {kind.wants}, got {value!r}; e.g. {key} = {kind.example}"
                )
            )


def _unknown(key: str, where: str, section: str, allowed: set[str], schema: Schema) -> Problem:
    loc = f"{where}[{key!r}]"
    base = f"{key} is not allowed in {section} (sd-scripts stops: extra keys not allowed)"
    if schema.flavour == "v0.9.1" and key in NEWER_THAN_V091:
        return Problem(
            loc,
            key,
            f"{base}: sd-scripts v0.9.1 does not know {key} (added in later releases); "
            "update sd-scripts or remove the key",
        )
    if key == "subset" and section == "[[datasets]]":
        return Problem(loc, key, f"{base}: did you mean subsets? write [[datasets.subsets]]")
    if key in ("dataset", "general_args") and section == "the top level":
        return Problem(loc, key, f"{base}: did you mean [[datasets]] or [general]?")
    levels = {
        "[general]": schema.general,
        "[[datasets]]": schema.datasets["db"],
        "[[datasets.subsets]]": schema.subsets["db"],
    }
    homes = [name for name, keys in levels.items() if key in keys and name != section]
    if homes:
        return Problem(loc, key, f"{base}: {key} belongs in {' or '.join(homes)}; move it there")
    if key in TRAINING_KEYS:
        return Problem(
            loc,
            key,
            f"{base}: {key} is a training option: put it in the training TOML (--config / "
            "--config_file), not the dataset TOML",
        )
    every = set(allowed) | set().union(*levels.values()) | {"general", "datasets", "subsets"}
    close = difflib.get_close_matches(key, sorted(every), n=1, cutoff=0.75)
    if close:
        return Problem(loc, key, f"{base}: did you mean {close[0]}?")
    return Problem(
        loc,
        key,
        f"{base}: remove it, or check the spelling against sd-scripts' dataset config docs (docs/config_README-en.md)",
    )


# -- what the file is -------------------------------------------------------------------------------


def training_keys_in(data: Mapping[str, Any]) -> list[str]:
    """Training options found at the top level or one section down (a training TOML's shape)."""
    found: list[str] = []
    for key, value in data.items():
        if key in TRAINING_KEYS:
            found.append(key)
        elif isinstance(value, Mapping) and key != "general":
            found.extend(k for k in value if k in TRAINING_KEYS)
    return found


def looks_like_dataset_toml(data: Mapping[str, Any]) -> bool:
    """A dataset TOML's shape: a list of ``[[datasets]]`` tables, and no training options."""
    datasets = data.get("datasets")
    return isinstance(datasets, list) and all(isinstance(d, Mapping) for d in datasets) and bool(datasets)


# -- which sd-scripts ---------------------------------------------------------------------------------


def library_candidates(sd_scripts_dir: str | os.PathLike[str] | None = None) -> list[tuple[Path, str]]:
    """sd-scripts ``library`` folders to read, most specific first, each with a phrase saying why.

    ``sd_scripts_dir``, ``$SD_SCRIPTS_DIR``, then the ``library`` package this Python would import
    (``seams.config_util_files``); found without importing it (no torch).
    """
    from collage_ext.sdscripts.seams import config_util_files  # torch-free: nothing of sd-scripts

    return [(path.parent, why) for path, why in config_util_files(sd_scripts_dir)]


def detect_flavour(sd_scripts_dir: str | os.PathLike[str] | None = None) -> tuple[Flavour, str]:
    """The schema release to apply: from the sd-scripts checkout found, else main's.

    Looks at ``library_candidates`` in order, reading each ``config_util.py`` as text (nothing is
    imported, so no torch). Returns the release and a sentence saying why.
    """
    from collage_ext.sdscripts.seams import dataset_schema_release  # torch-free: nothing of sd-scripts

    for folder, why in library_candidates(sd_scripts_dir):
        release = dataset_schema_release(folder / "config_util.py")
        if release is None:
            continue
        flavour: Flavour = "main" if release == "main" else "v0.9.1"
        return flavour, f"{why} ({'newer than v0.9.1' if flavour == 'main' else 'v0.9.1 or older'})"
    return "main", "no sd-scripts found here; main's schema"
