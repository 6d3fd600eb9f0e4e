"""Every sd-scripts name the adapter relies on, in one list, checked once at start-up.

sd-scripts has no stable plugin API: ``collage_ext.CollageDataset`` subclasses its dataset classes,
overrides a few of their hooks and drives ``library.config_util``. When an sd-scripts release
renames or moves one of those names, training should stop at once, before any model loads, with
a message that says which name is missing in which sd-scripts and which versions are known to work
(not with an ``AttributeError`` deep inside a run, or hours later).

sd-scripts v0.11 moved the dataset classes out of ``library/train_util.py`` (``library.dataset``,
``library.dreambooth_dataset``, ``library.finetuning_dataset``) and kept re-exports in
``train_util``. A seam lists the places it may live, newest first; the first that has it wins, so
the adapter uses the new modules where they exist and the old ones elsewhere.

``sd-scripts`` imports this module (through ``collage_ext.CollageDataset``) inside
``train_util.load_arbitrary_dataset``, which every trainer calls before it loads a model
(``train_network.py``: dataset ~line 559, ``load_target_model`` ~line 602 on main).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collage_ext.core.errors import CollageConfigError

#: sd-scripts versions the adapter is tested against (CI runs main and v0.9.1).
KNOWN_TO_WORK = ("v0.9.1", "v0.10.0", "v0.10.1", "main 48d368fa")


@dataclass(frozen=True)
class Seam:
    """One name the adapter uses: where to find it (newest layout first) and what it is used for."""

    name: str
    modules: tuple[str, ...]
    why: str
    attributes: tuple[str, ...] = ()  # methods the adapter overrides or calls on it

    @property
    def label(self) -> str:
        """Where it was looked for, for messages: ``library.train_util.ImageInfo`` or ``X (or Y)``."""
        places = [f"{m}.{self.name}" for m in reversed(self.modules)]
        return places[0] + (f" (or {', '.join(places[1:])})" if len(places) > 1 else "")


_DATASET_HOOKS = ("load_image_with_face_info", "process_caption", "is_latent_cacheable", "make_buckets",
                  "register_image", "set_current_epoch", "set_seed", "__getitem__")

SEAMS: tuple[Seam, ...] = (
    Seam("DatasetGroup", ("library.dataset", "library.train_util"), "CollageDataset is a DatasetGroup"),
    Seam("DreamBoothDataset", ("library.dreambooth_dataset", "library.train_util"),
         "collage frames are added to sd-scripts' DreamBooth dataset", _DATASET_HOOKS),
    Seam("FineTuningDataset", ("library.finetuning_dataset", "library.train_util"),
         "collage frames are added to sd-scripts' fine-tuning dataset", _DATASET_HOOKS),
    Seam("ImageInfo", ("library.dataset", "library.train_util"), "one entry per collage frame"),
    Seam("collator_class", ("library.train_util",), "hands the trainer's epoch counter to the frames",
         ("__init__",)),
    Seam("ConfigSanitizer", ("library.config_util",), "validates the dataset config like sd-scripts"),
    Seam("BlueprintGenerator", ("library.config_util",), "builds the datasets like sd-scripts", ("generate",)),
    Seam("generate_dataset_group_by_blueprint", ("library.config_util",), "builds the datasets like sd-scripts"),
    Seam("load_user_config", ("library.config_util",), "reads --dataset_config like sd-scripts"),
    Seam("generate_dreambooth_subsets_config_by_subdirs", ("library.config_util",),
         "reads --train_data_dir like sd-scripts"),
    # generate_dataset_group_by_blueprint builds datasets by these module-level names; the adapter
    # swaps them for its subclasses while it runs (dataset._collage_classes).
    Seam("DreamBoothDataset", ("library.config_util",), "the name config_util builds DreamBooth datasets by"),
    Seam("FineTuningDataset", ("library.config_util",), "the name config_util builds fine-tuning datasets by"),
)


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


def require() -> dict[str, Any]:
    """Check every seam; returns ``name -> object`` of the dataset-side seams.

    Raises:
        CollageConfigError: a seam is missing; the message names the sd-scripts version, each missing
            seam and the versions known to work.
    """
    gaps = missing()
    if gaps:
        msg = (f"collage_ext cannot run with {sd_scripts_version()}: it lacks "
               + "; ".join(gaps)
               + f". collage_ext is known to work with sd-scripts {', '.join(KNOWN_TO_WORK)}; install one of "
                 "those, or a collage_ext release that supports this sd-scripts. Nothing was trained.")
        raise CollageConfigError(msg)
    return {seam.name: find(seam) for seam in SEAMS if seam.modules[-1] != "library.config_util"}


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
