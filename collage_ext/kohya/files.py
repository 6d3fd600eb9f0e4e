"""sd-scripts' file rules: which files are images, how folders are listed, how config files are loaded.

Each function restates one sd-scripts function (named in its docstring) over plain files, so the
torch-free CLI lists the same images in the same order as training.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

import toml

from collage_ext.core.errors import CollageConfigError

logger = logging.getLogger(__name__)

#: sd-scripts' ``IMAGE_EXTENSIONS`` (case-sensitive globs, so both spellings).
SD_IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".bmp",
    ".PNG",
    ".JPG",
    ".JPEG",
    ".WEBP",
    ".BMP",
)

#: ``BaseDataset.IMAGE_INFO_CACHE_FILE``: what sd-scripts writes into an image folder with ``cache_info``.
IMAGE_INFO_CACHE_FILE = "metadata_cache.json"


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
    found = {
        os.path.join(directory, n) for n in names if not n.startswith(".") and os.path.normcase(n).endswith(extensions)
    }
    return sorted(found)


def glob_named(directory: str, base: str) -> list[str]:
    """``train_util.glob_images(directory, base)``: ``<directory>/<base><ext>`` that exist, sorted.

    sd-scripts escapes the whole pattern, so each extension is a literal path (``glob`` returns it when
    ``os.path.lexists``); with both ``x.jpg`` and ``x.png`` the first in sorted order wins.
    """
    return sorted({p for ext in image_extensions() if os.path.lexists(p := os.path.join(directory, base + ext))})


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
                out.append(
                    {
                        "image_dir": str(sub),
                        "num_repeats": repeats,
                        "is_reg": is_reg,
                        "class_tokens": "_".join(sub.name.split("_")[1:]),
                    }
                )
        return out

    return generate(train_data_dir, False) + generate(reg_data_dir, True)
