"""Every sd-scripts name the adapter relies on, in one module, checked once at start-up.

sd-scripts has no stable plugin API: ``collage_ext.CollageDataset`` subclasses its dataset classes,
overrides a few of their hooks, reads some of their attributes and drives ``library.config_util``.
This module is the only one that imports or names those internals (``tests/test_seams_only.py``
scans every other module for ``INTERNAL_NAMES`` / ``INTERNAL_ATTRIBUTES``); the rest of the adapter
talks to sd-scripts through the functions and the ``DatasetHooks`` mixin below. When an sd-scripts
release renames or moves one of those names, training stops at once, before any model loads, with a
message that says which name is missing in which sd-scripts and which versions are known to work
(not with an ``AttributeError`` deep inside a run, or hours later).

sd-scripts v0.11 moved the dataset classes out of ``library/train_util.py`` (``library.dataset``,
``library.dreambooth_dataset``, ``library.finetuning_dataset``) and kept re-exports in
``train_util``. A seam lists the places it may live, newest first; the first that has it wins, so
the adapter uses the new modules where they exist and the old ones elsewhere. Each seam also names
its place in v0.11 as read from the stored sources (the split-layout commit ``10267f9``; no v0.11
tree is reachable from CI, so these places are read, not tested).

``sd-scripts`` imports this module (through ``collage_ext.CollageDataset``) inside
``load_arbitrary_dataset``, which every trainer calls before it loads a model
(``train_network.py``: dataset ~line 559, ``load_target_model`` ~line 602 on main). Importing it
needs neither sd-scripts nor torch (the CLI reads ``dataset_schema_release``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, SimpleNamespace
from typing import Any

from collage_ext.core.errors import CollageConfigError

#: sd-scripts versions the adapter is tested against (CI runs main and v0.9.1).
KNOWN_TO_WORK = ("v0.9.1", "v0.10.0", "v0.10.1", "main 48d368fa")


@dataclass(frozen=True)
class Seam:
    """One name the adapter uses: where to find it (newest layout first), what for, and where v0.11 has it."""

    name: str
    modules: tuple[str, ...]
    why: str
    attributes: tuple[str, ...] = ()  # methods the adapter overrides or calls on it
    v011: str = ""  # its place in sd-scripts v0.11 (file + symbol), read from the stored sources

    @property
    def label(self) -> str:
        """Where it was looked for, for messages: ``library.train_util.ImageInfo`` or ``X (or Y)``."""
        places = [f"{m}.{self.name}" for m in reversed(self.modules)]
        return places[0] + (f" (or {', '.join(places[1:])})" if len(places) > 1 else "")


#: Hooks of sd-scripts' ``BaseDataset`` the adapter overrides or calls (``DatasetHooks``). v0.11:
#: all on ``BaseDataset`` in library/dataset.py (``register_image``, ``set_current_epoch``,
#: ``set_seed``, ``process_caption``, ``make_buckets``, ``is_latent_cacheable``,
#: ``new_cache_text_encoder_outputs``, ``load_image_with_face_info``, ``__getitem__``).
_DATASET_HOOKS = (
    "load_image_with_face_info",
    "process_caption",
    "is_latent_cacheable",
    "make_buckets",
    "register_image",
    "set_current_epoch",
    "set_seed",
    "__getitem__",
)

SEAMS: tuple[Seam, ...] = (
    Seam(
        "DatasetGroup",
        ("library.dataset", "library.train_util"),
        "CollageDataset is a DatasetGroup",
        v011="library/dataset.py: class DatasetGroup (re-exported by library/train_util.py)",
    ),
    Seam(
        "DreamBoothDataset",
        ("library.dreambooth_dataset", "library.train_util"),
        "collage frames are added to sd-scripts' DreamBooth dataset",
        _DATASET_HOOKS,
        v011="library/dreambooth_dataset.py: class DreamBoothDataset(BaseDataset); its constructor gained "
        "train_inpainting before debug_dataset (the adapter binds arguments by name)",
    ),
    Seam(
        "FineTuningDataset",
        ("library.finetuning_dataset", "library.train_util"),
        "collage frames are added to sd-scripts' fine-tuning dataset",
        _DATASET_HOOKS,
        v011="library/finetuning_dataset.py: class FineTuningDataset(BaseDataset)",
    ),
    Seam(
        "ImageInfo",
        ("library.dataset", "library.train_util"),
        "one entry per collage frame",
        v011="library/dataset.py: class ImageInfo (a 6th parameter caption_dropout_rate=0.0; the adapter passes 5)",
    ),
    Seam(
        "collator_class",
        ("library.dataset", "library.train_util"),
        "hands the trainer's epoch counter to the frames",
        ("__init__",),
        v011="library/dataset.py: class collator_class (not in train_util's re-export list as read)",
    ),
    Seam(
        "load_arbitrary_dataset",
        ("library.dataset", "library.train_util"),
        "builds --dataset_class and holds the trainer's args (trainer_namespace)",
        v011="library/dataset.py: def load_arbitrary_dataset(args, tokenizer=None) (re-exported by train_util)",
    ),
    Seam(
        "ConfigSanitizer",
        ("library.config_util",),
        "validates the dataset config like sd-scripts",
        v011="library/config_util.py: class ConfigSanitizer (the stored config_util predates the split: unverified)",
    ),
    Seam(
        "BlueprintGenerator",
        ("library.config_util",),
        "builds the datasets like sd-scripts",
        ("generate",),
        v011="library/config_util.py: class BlueprintGenerator.generate (unverified, as above)",
    ),
    Seam(
        "generate_dataset_group_by_blueprint",
        ("library.config_util",),
        "builds the datasets like sd-scripts",
        v011="library/config_util.py: def generate_dataset_group_by_blueprint (unverified, as above)",
    ),
    Seam(
        "load_user_config",
        ("library.config_util",),
        "reads --dataset_config like sd-scripts",
        v011="library/config_util.py: def load_user_config (unverified, as above)",
    ),
    Seam(
        "generate_dreambooth_subsets_config_by_subdirs",
        ("library.config_util",),
        "reads --train_data_dir like sd-scripts",
        v011="library/config_util.py: def generate_dreambooth_subsets_config_by_subdirs (unverified, as above)",
    ),
    # generate_dataset_group_by_blueprint builds datasets by these module-level names; the adapter
    # swaps them for its subclasses while it runs (building_with).
    Seam(
        "DreamBoothDataset",
        ("library.config_util",),
        "the name config_util builds DreamBooth datasets by",
        v011="library/config_util.py: module-level DreamBoothDataset (imported there; unverified, as above)",
    ),
    Seam(
        "FineTuningDataset",
        ("library.config_util",),
        "the name config_util builds fine-tuning datasets by",
        v011="library/config_util.py: module-level FineTuningDataset (imported there; unverified, as above)",
    ),
)

#: Places without a ``Seam`` row (looked up when used, absent on v0.9.1 by design), with their v0.11 place.
OTHER_PLACES: dict[str, str] = {
    "strategy_base.TokenizeStrategy / TextEncodingStrategy / TextEncoderOutputsCachingStrategy.get_strategy": (
        "library/strategy_base.py (imported unchanged by library/dataset.py)"
    ),
    "BaseDataset.new_cache_text_encoder_outputs (main only; overridden by DatasetHooks)": (
        "library/dataset.py: BaseDataset.new_cache_text_encoder_outputs and DatasetGroup's"
    ),
    (
        "BaseDataset attributes read: image_data, image_to_subset, current_epoch, bucket_info, buckets_indices, "
        "bucket_manager.buckets, num_train_images, num_reg_images, enable_bucket, min/max_bucket_reso, "
        "bucket_reso_steps, bucket_no_upscale, resize_interpolation, width, height, subsets"
    ): (
        "library/dataset.py: BaseDataset.__init__ / make_buckets (DreamBooth/FineTuning constructors set the "
        "bucket ones)"
    ),
    "ImageInfo attributes: absolute_path, image_size, caption, num_repeats, resize_interpolation": (
        "library/dataset.py: ImageInfo.__init__"
    ),
    "example keys of __getitem__: text_encoder_outputs_list, captions": "library/dataset.py: BaseDataset.__getitem__",
    "debug_dataset (patches/0002)": "library/dataset.py: def debug_dataset (patches/0002-...-v0.11.patch)",
}

#: Names only this module may use anywhere in code (identifiers, imports and string constants).
INTERNAL_NAMES: frozenset[str] = frozenset(
    {
        "library",
        "config_util",
        "strategy_base",
        "train_util",
        "dreambooth_dataset",
        "finetuning_dataset",
        "DatasetGroup",
        "DreamBoothDataset",
        "FineTuningDataset",
        "ImageInfo",
        "collator_class",
        "BaseDataset",
        "ConfigSanitizer",
        "BlueprintGenerator",
        "generate_dataset_group_by_blueprint",
        "generate_dreambooth_subsets_config_by_subdirs",
        "load_arbitrary_dataset",
        "TokenizeStrategy",
        "TextEncodingStrategy",
        "TextEncoderOutputsCachingStrategy",
        "get_strategy",
        "cache_batch_outputs",
        "get_outputs_npz_path",
        "load_outputs_npz",
        "load_image_with_face_info",
        "process_caption",
        "is_latent_cacheable",
        "make_buckets",
        "register_image",
        "set_current_epoch",
        "new_cache_text_encoder_outputs",
        "new_cache_latents",
        "text_encoder_outputs_list",
    }
)

#: sd-scripts object attributes only this module may read or write (``x.<name>``). Not listed as
#: strings: ``bucket_info`` is also a key of the LoRA metadata sd-scripts writes (``lora.py`` reads
#: files), and ``resize_interpolation`` a dataset-config key (``schema.py``).
INTERNAL_ATTRIBUTES: frozenset[str] = frozenset(
    {
        "image_data",
        "image_to_subset",
        "current_epoch",
        "bucket_info",
        "buckets_indices",
        "bucket_manager",
        "num_train_images",
        "num_reg_images",
        "absolute_path",
        "resize_interpolation",
        "min_bucket_reso",
        "max_bucket_reso",
        "bucket_reso_steps",
        "text_encoder_outputs",
        "text_encoder_outputs_npz",
    }
)


@dataclass(frozen=True)
class StrategySeam:
    """An sd-scripts tokenize strategy class: the family it tokenizes for, and where its tokenizer is.

    The family is a name in ``collage_ext.kohya.families.FAMILIES`` (for a strategy several families
    share, the group: ``FluxTokenizeStrategy`` serves Flux dev, schnell and Chroma).
    """

    cls: str
    family: str
    tokenizer: str = ""  # attribute holding the tokenizer that reads the whole caption ("" for refused ones)
    length: str = ""  # attribute holding the T5 length it pads/truncates to ("" for CLIP: --max_token_length)


#: The tokenize strategies of sd-scripts main (``library.strategy_*``), set by each training script
#: before it builds the dataset; v0.9.1 has none (the adapter goes by the script's name there).
TOKENIZE_STRATEGIES: tuple[StrategySeam, ...] = (
    StrategySeam("SdTokenizeStrategy", "sd", "tokenizer"),
    StrategySeam("SdxlTokenizeStrategy", "sdxl", "tokenizer1"),
    StrategySeam("Sd3TokenizeStrategy", "sd3", "t5xxl", "t5xxl_max_length"),
    StrategySeam("FluxTokenizeStrategy", "flux", "t5xxl", "t5xxl_max_length"),
    StrategySeam("LuminaTokenizeStrategy", "lumina"),
    StrategySeam("AnimaTokenizeStrategy", "anima"),
    StrategySeam("HunyuanImageTokenizeStrategy", "hunyuan_image"),
)


def tokenize_strategy() -> Any:
    """The tokenize strategy the training script has set (``strategy_base.TokenizeStrategy``), else None.

    None on v0.9.1 (no strategies) and in scripts that set theirs only after building the dataset.
    """
    strategy_base = _module("library.strategy_base")
    return None if strategy_base is None else strategy_base.TokenizeStrategy.get_strategy()


def strategy_seam(strategy: Any) -> StrategySeam | None:
    """The seam of ``strategy``'s class (or of the sd-scripts class it derives from), else None."""
    names = [c.__name__ for c in type(strategy).__mro__] if strategy is not None else []
    return next((seam for name in names for seam in TOKENIZE_STRATEGIES if seam.cls == name), None)


def strategy_tokens(strategy: Any) -> tuple[Any, int | None]:
    """``(tokenizer, T5 length)`` of a known tokenize strategy; ``(None, None)`` where it has none."""
    seam = strategy_seam(strategy)
    if seam is None:
        return None, None
    tokenizer = getattr(strategy, seam.tokenizer, None) if seam.tokenizer else None
    length = getattr(strategy, seam.length, None) if seam.length else None
    return tokenizer, length if isinstance(length, int) and not isinstance(length, bool) else None


def _module(name: str) -> Any:
    """The module, or None when this sd-scripts has no such module."""
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(name)


def find(seam: Seam) -> Any:
    """The object behind ``seam`` (first module that has it), or None."""
    for module_name in seam.modules:
        module = _module(module_name)
        if module is not None and hasattr(module, seam.name):
            return getattr(module, seam.name)
    return None


def sd_scripts_root() -> Path | None:
    """The sd-scripts checkout that ``library`` is imported from."""
    library = sys.modules.get("library") or _module("library")
    locations = list(getattr(library, "__path__", []))
    return Path(locations[0]).resolve().parent if locations else None


def sd_scripts_version(root: Path | None = None) -> str:
    """A readable sd-scripts version: the newest "Version X.Y.Z" of its README's change history.

    sd-scripts has no ``__version__``; its README lists releases newest first.
    """
    root = root if root is not None else sd_scripts_root()
    if root is None:
        return "sd-scripts (location unknown)"
    try:
        text = (root / "README.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"sd-scripts at {root} (version unknown: no README.md)"
    match = re.search(r"Version\s+(\d+\.\d+\.\d+)", text)
    return f"sd-scripts {match.group(1)} at {root}" if match else f"sd-scripts at {root} (version unknown)"


def missing() -> list[str]:
    """``module.name`` (or ``module.name.method``) of every seam this sd-scripts lacks."""
    gaps = []
    for seam in SEAMS:
        obj = find(seam)
        if obj is None:
            gaps.append(f"{seam.label}: {seam.why}")
            continue
        gaps += [f"{seam.label} has no {attr!r}: {seam.why}" for attr in seam.attributes if not hasattr(obj, attr)]
    return gaps


@dataclass(frozen=True)
class Classes:
    """The sd-scripts classes the adapter subclasses or builds, under the adapter's own names."""

    group: Any  # DatasetGroup
    dreambooth: Any  # DreamBoothDataset
    finetuning: Any  # FineTuningDataset
    image_info: Any  # ImageInfo


def require() -> Classes:
    """Check every seam; returns the dataset-side classes.

    Raises:
        CollageConfigError: a seam is missing; the message names the sd-scripts version, each missing
            seam and the versions known to work.
    """
    gaps = missing()
    if gaps:
        msg = (
            f"collage_ext cannot run with {sd_scripts_version()}: it lacks "
            + "; ".join(gaps)
            + f". collage_ext is known to work with sd-scripts {', '.join(KNOWN_TO_WORK)}; install one of "
            "those, or a collage_ext release that supports this sd-scripts. Nothing was trained."
        )
        raise CollageConfigError(msg)
    found = {seam.name: find(seam) for seam in SEAMS if seam.modules[-1] != "library.config_util"}
    return Classes(found["DatasetGroup"], found["DreamBoothDataset"], found["FineTuningDataset"], found["ImageInfo"])


# -- the trainer's arguments ---------------------------------------------------------------------


def trainer_namespace(max_depth: int = 12) -> tuple[argparse.Namespace, str] | None:
    """The trainer's ``args``, read from the ``load_arbitrary_dataset`` call that builds the dataset class.

    The one place that recovers them, and why it reads a caller's frame: sd-scripts constructs
    ``--dataset_class`` as ``Class(tokenizer, max_token_length, resolution, debug_dataset)`` and
    hands ``args`` over nowhere else (no module-level copy, no hook; checked in main, v0.9.1 and
    v0.11's ``library/dataset.py``). ``load_arbitrary_dataset(args, ...)`` holds them as its
    parameter, so the frame of *that function* (and no other local named ``args``) is read, a few
    frames up (CPython; ``None`` elsewhere or when the dataset class is built some other way).

    Returns:
        ``(namespace, where)`` or ``None``.
    """
    frame: FrameType | None = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        if frame.f_code.co_name == "load_arbitrary_dataset":
            candidate = frame.f_locals.get("args")
            if isinstance(candidate, argparse.Namespace) and hasattr(candidate, "dataset_class"):
                where = f"{Path(frame.f_code.co_filename).name}:load_arbitrary_dataset"
                return candidate, where
            return None
        frame = frame.f_back
    return None


# -- strategies (main; v0.9.1 has none) ------------------------------------------------------------


def strategy_era(classes: Classes) -> bool:
    """True for sd-scripts with the strategy API (main): its datasets cache text-encoder outputs themselves."""
    return hasattr(classes.group, "new_cache_text_encoder_outputs")


def datasets_take_tokenizer(classes: Classes) -> bool:
    """True when the dataset constructors take the tokenizers (v0.9.1); main's take none."""
    return "tokenizer" in inspect.signature(classes.dreambooth.__init__).parameters


def constructor_arguments(classes: Classes, cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """sd-scripts' dataset constructor arguments by name, whether passed by keyword or by position.

    Their positional order changes between releases (v0.11 inserted ``train_inpainting``), so the
    adapter never relies on a position.
    """
    base = next(c for c in cls.__mro__ if c in (classes.dreambooth, classes.finetuning))
    try:
        return dict(inspect.signature(base.__init__).bind(None, *args, **kwargs).arguments)  # type: ignore[misc]
    except TypeError:  # let sd-scripts' own constructor report the bad call
        return dict(kwargs)


def encode_text(models: list[Any], caption: str, cache_stub: Path) -> list[Any]:
    """The cached-output form of ``caption``, made by sd-scripts' own tokenize/encode/caching strategies.

    ``cache_stub`` names the image the outputs would belong to (with ``cache_to_disk`` the strategy
    writes its npz next to it).
    """
    module = importlib.import_module("library.strategy_base")
    tokenize = module.TokenizeStrategy.get_strategy()
    encode = module.TextEncodingStrategy.get_strategy()
    caching = module.TextEncoderOutputsCachingStrategy.get_strategy()
    if tokenize is None or encode is None or caching is None:
        msg = "internal: sd-scripts' text-encoder strategies are not set while caching text-encoder outputs"
        raise RuntimeError(msg)
    stub = SimpleNamespace(
        caption=caption,
        text_encoder_outputs=None,
        text_encoder_outputs_npz=caching.get_outputs_npz_path(str(cache_stub)),
    )
    caching.cache_batch_outputs(tokenize, models, encode, [stub])
    outputs = stub.text_encoder_outputs
    if outputs is None:  # cache_to_disk: the strategy wrote the npz instead
        outputs = caching.load_outputs_npz(stub.text_encoder_outputs_npz)
    return list(outputs)


# -- config_util ---------------------------------------------------------------------------------------


def load_user_config(path: str) -> dict[str, Any]:
    """``--dataset_config`` read by sd-scripts itself."""
    return dict(importlib.import_module("library.config_util").load_user_config(path))


def subsets_by_subdirs(train_data_dir: str | None, reg_data_dir: str | None) -> list[dict[str, Any]]:
    """``--train_data_dir`` / ``--reg_data_dir`` as subsets, by sd-scripts itself."""
    config_util = importlib.import_module("library.config_util")
    return list(config_util.generate_dreambooth_subsets_config_by_subdirs(train_data_dir, reg_data_dir))


def build_datasets(
    kohya_config: dict[str, Any],
    args: argparse.Namespace,
    tokenizer: Any,
    dreambooth: type,
    finetuning: type,
    take_tokenizer: bool,
    before: Callable[[], Any] = lambda: None,
    after: Callable[[], Any] = lambda: None,
) -> tuple[list[Any], Any]:
    """The datasets of ``kohya_config`` built by sd-scripts' ``config_util``, as the adapter's subclasses.

    ``generate_dataset_group_by_blueprint`` names ``DreamBoothDataset`` / ``FineTuningDataset``
    directly; swapping the names in ``config_util`` for the duration reuses its logging, validation
    split, bucketing and seeding instead of copying them (and their differences between v0.9.1 and
    main). ``before`` / ``after`` run inside the swap (the adapter's build context).

    Returns:
        (training datasets, sd-scripts' validation group or None).
    """
    config_util = importlib.import_module("library.config_util")
    sanitizer = config_util.ConfigSanitizer(True, True, getattr(args, "masked_loss", False), True)
    extra = {"tokenizer": tokenizer} if take_tokenizer else {}
    blueprint = config_util.BlueprintGenerator(sanitizer).generate(kohya_config, args, **extra)
    with _building_with(config_util, dreambooth, finetuning):
        before()
        try:
            result = config_util.generate_dataset_group_by_blueprint(blueprint.dataset_group)
        finally:
            after()
    group, validation = result if isinstance(result, tuple) else (result, None)
    return list(group.datasets), validation


@contextmanager
def _building_with(config_util: Any, dreambooth: type, finetuning: type) -> Iterator[None]:
    saved = (config_util.DreamBoothDataset, config_util.FineTuningDataset)
    config_util.DreamBoothDataset, config_util.FineTuningDataset = dreambooth, finetuning
    try:
        yield
    finally:
        config_util.DreamBoothDataset, config_util.FineTuningDataset = saved


def on_collator(callback: Callable[[Any], None]) -> None:
    """Call ``callback(epoch_value)`` whenever the trainer builds sd-scripts' ``collator_class``.

    The trainer creates the collator (holding the ``multiprocessing.Value`` epoch) after the dataset;
    wrapping its constructor hands that value over before DataLoader workers start. Once per process.
    """
    cls = find(next(s for s in SEAMS if s.name == "collator_class"))
    if cls is None or getattr(cls, "_collage_ext_patched", False):
        return
    original = cls.__init__

    def __init__(self: Any, epoch: Any, step: Any, dataset: Any) -> None:
        original(self, epoch, step, dataset)
        callback(epoch)

    cls.__init__ = __init__
    cls._collage_ext_patched = True


# -- what the adapter reads and writes on sd-scripts' objects -----------------------------------------


def new_image_info(classes: Classes, dataset: Any, path: str, caption: str, subset: Any, size: tuple[int, int]) -> Any:
    """An ``ImageInfo`` for a file the adapter adds (a frame or slot), sized as the frame."""
    info = classes.image_info(path, 1, caption, getattr(subset, "is_reg", False), path)  # FineTuningSubset has none
    info.image_size = size
    if hasattr(dataset, "resize_interpolation"):
        info.resize_interpolation = subset.resize_interpolation or dataset.resize_interpolation
    return info


def path_of(info: Any) -> str:
    """The file sd-scripts loads for an ``ImageInfo``."""
    return str(info.absolute_path)


def set_path(info: Any, path: str) -> None:
    """Point an ``ImageInfo`` at another file (a cropped single in the cache folder)."""
    info.absolute_path = path


def size_of(info: Any) -> tuple[int, int] | None:
    """An ``ImageInfo``'s size (width, height) as sd-scripts bucketed it, or None before bucketing."""
    return (int(info.image_size[0]), int(info.image_size[1])) if info.image_size else None


def set_size(info: Any, size: tuple[int, int]) -> None:
    """The size sd-scripts buckets an ``ImageInfo`` by."""
    info.image_size = size


def bucket_params(dataset: Any) -> dict[str, Any]:
    """A dataset's bucket settings as sd-scripts resolved them (after its step adjustments)."""
    return {
        "enable_bucket": dataset.enable_bucket,
        "min_bucket_reso": dataset.min_bucket_reso,
        "max_bucket_reso": dataset.max_bucket_reso,
        "bucket_reso_steps": dataset.bucket_reso_steps,
        "bucket_no_upscale": dataset.bucket_no_upscale,
    }


def sample_count(dataset: Any) -> int:
    """Training plus regularisation images (with repeats) sd-scripts counted for a dataset."""
    return int(getattr(dataset, "num_train_images", 0) + getattr(dataset, "num_reg_images", 0))


def batch_keys(dataset: Any, index: int) -> list[str]:
    """The image keys sd-scripts put into batch ``index`` (mirrors ``BaseDataset.__getitem__``)."""
    entry = dataset.buckets_indices[index]
    bucket = dataset.bucket_manager.buckets[entry.bucket_index]
    start = entry.batch_index * entry.bucket_batch_size
    return list(bucket[start : start + entry.bucket_batch_size])


def subset_of(dataset: Any, key: str) -> Any:
    """The sd-scripts subset an image key belongs to."""
    return dataset.image_to_subset[key]


def epoch_of(dataset: Any) -> int:
    """The epoch sd-scripts' dataset is on."""
    return int(dataset.current_epoch)


def cached_text_outputs(example: dict[str, Any]) -> Any:
    """The batch's cached text-encoder outputs in a ``__getitem__`` example (None when not cached)."""
    return example.get("text_encoder_outputs_list")


class DatasetHooks:
    """sd-scripts' dataset hooks under the adapter's own names, so only this module names them.

    A dataset class lists it before sd-scripts' class: ``class X(Adapter, DatasetHooks, DreamBoothDataset)``.
    The adapter implements ``_load_image``, ``_caption``, ``_cacheable``, ``_bucket_metadata``,
    ``_after_text_encoder_cache`` and ``_before_item`` / ``_after_item``, and calls sd-scripts'
    own behaviour through the ``_sd_*`` methods.
    """

    # what the adapter reads of sd-scripts' BaseDataset as it is (generic words, not checked by the scan)
    subsets: list[Any]
    width: int
    height: int
    enable_bucket: bool

    # sd-scripts calls these ------------------------------------------------------------------------
    def load_image_with_face_info(self, subset: Any, image_path: str, alpha_mask: bool = False) -> Any:
        """sd-scripts' image loading: the adapter's ``_load_image``."""
        return self._load_image(subset, image_path, alpha_mask)  # type: ignore[attr-defined]

    def process_caption(self, subset: Any, caption: str) -> Any:
        """sd-scripts' caption processing, after the adapter's ``_caption``."""
        return super().process_caption(subset, self._caption(subset, caption))  # type: ignore[misc,attr-defined]

    def is_latent_cacheable(self) -> bool:
        """sd-scripts' check, and the adapter's ``_cacheable``."""
        return bool(self._cacheable() and super().is_latent_cacheable())  # type: ignore[misc,attr-defined]

    def make_buckets(self) -> None:
        """sd-scripts' bucketing, plus ``_bucket_metadata`` in ``bucket_info`` (it lands in LoRA metadata)."""
        super().make_buckets()  # type: ignore[misc]
        extra = self._bucket_metadata()  # type: ignore[attr-defined]
        if extra:
            current = getattr(self, "bucket_info", None)
            info = current if isinstance(current, dict) else {}
            info["collage_ext"] = extra
            self.bucket_info = info

    def new_cache_text_encoder_outputs(self, models: list[Any], accelerator: Any) -> None:
        """sd-scripts' caching (main), then the adapter's ``_after_text_encoder_cache``."""
        super().new_cache_text_encoder_outputs(models, accelerator)  # type: ignore[misc]
        self._after_text_encoder_cache(models)  # type: ignore[attr-defined]

    def __getitem__(self, index: int) -> Any:
        self._before_item()  # type: ignore[attr-defined]
        return self._after_item(super().__getitem__(index), index)  # type: ignore[misc,attr-defined]

    # the adapter calls these -------------------------------------------------------------------------
    def _sd_load_image(self, subset: Any, image_path: str, alpha_mask: bool) -> Any:
        """sd-scripts' own loading: ``(HxWxC array, face_cx, face_cy, face_w, face_h)``."""
        return super().load_image_with_face_info(subset, image_path, alpha_mask)  # type: ignore[misc]

    @property
    def _images(self) -> dict[str, Any]:
        """sd-scripts' ``image key -> ImageInfo`` of this dataset."""
        return self.image_data  # type: ignore[attr-defined,no-any-return]

    def _subset_keys(self, subset: Any) -> list[str]:
        """The image keys sd-scripts registered for ``subset``, in its order."""
        return [k for k, s in self.image_to_subset.items() if s is subset and k in self.image_data]  # type: ignore[attr-defined]

    def _register(self, info: Any, subset: Any) -> None:
        self.register_image(info, subset)  # type: ignore[attr-defined]

    @property
    def _epoch(self) -> int:
        return int(self.current_epoch)  # type: ignore[attr-defined]

    def _set_epoch(self, epoch: int) -> None:
        self.set_current_epoch(epoch)  # type: ignore[attr-defined]


def config_util_files(sd_scripts_dir: str | os.PathLike[str] | None = None) -> list[tuple[Path, str]]:
    """Where an sd-scripts ``library/config_util.py`` may be, each with a sentence saying why, in order.

    ``sd_scripts_dir``, ``$SD_SCRIPTS_DIR``, then the ``library`` package this Python would import
    (sd-scripts installs itself with ``pip install -e .``); nothing is imported (no torch).
    """
    candidates: list[tuple[Path, str]] = []
    if sd_scripts_dir:
        candidates.append((Path(sd_scripts_dir) / "library" / "config_util.py", "the given sd-scripts"))
    env = os.environ.get("SD_SCRIPTS_DIR")
    if env:
        candidates.append((Path(env) / "library" / "config_util.py", f"SD_SCRIPTS_DIR={env}"))
    try:
        spec = importlib.util.find_spec("library")
        if spec is not None and spec.submodule_search_locations:
            for root in spec.submodule_search_locations:
                candidates.append((Path(root) / "config_util.py", f"sd-scripts' library in {root}"))
    except (ImportError, ValueError):
        pass
    return candidates


def dataset_schema_release(config_util: Path) -> str | None:
    """Which ``ConfigSanitizer`` schema a ``library/config_util.py`` holds, read as text (nothing is imported).

    ``"main"`` when its dataset keys include ``validation_split`` (added after v0.9.1), ``"v0.9.1"``
    otherwise; ``None`` when the file cannot be read or has no ``ConfigSanitizer``. Used by the
    torch-free CLI (``collage_ext.kohya.schema``) to refuse what the installed sd-scripts refuses.
    """
    try:
        text = config_util.read_text(encoding="utf-8")
    except OSError:
        return None
    if "class ConfigSanitizer" not in text:
        return None
    return "main" if '"validation_split"' in text else "v0.9.1"


#: Where sd-scripts defines ``FineTuningDataset``, newest layout first (v0.11 moved it out of train_util).
FINETUNING_DATASET_FILES = ("finetuning_dataset.py", "train_util.py")


def metadata_key_release(library: Path) -> str | None:
    """How a ``library`` folder's ``FineTuningDataset`` turns ``metadata_file`` keys into images, read as text.

    ``"v0.9.1"``: a key is used as it is when that path exists, else found by ``glob_images(image_dir, key)``
    (the stems that sd-scripts' ``merge_captions_to_metadata.py`` writes); ``.jsonl`` is not special and a
    missing caption is the tags. ``"main"`` (v0.10): ``image_dir`` and the key joined as written;
    ``.jsonl`` holds one entry a line. ``"v0.11"``: joined, then a key without an extension, or naming no
    file, is globbed in its folder. ``None`` when no such class is found (nothing is imported).
    """
    for name in FINETUNING_DATASET_FILES:
        try:
            text = (library / name).read_text(encoding="utf-8")
        except OSError:
            continue
        start = text.find("class FineTuningDataset")
        if start < 0:
            continue
        end = text.find("\nclass ", start + 1)
        body = text[start : end if end > 0 else len(text)]
        if "glob_images(os.path.dirname(abs_path)" in body:
            return "v0.11"
        if "glob_images(subset.image_dir, image_key)" in body:
            return "v0.9.1"
        if "os.path.join(subset.image_dir, image_key)" in body:
            return "main"
    return None
