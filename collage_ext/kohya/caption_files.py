"""Start-up checks on the dataset files that sd-scripts would otherwise fail on obscurely."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageConfigError
from collage_ext.kohya.runargs import RunArgs

logger = logging.getLogger(__name__)

#: Image extensions sd-scripts or Pillow read as images (lower case): never a crop sidecar's.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".avif", ".jxl", ".gif", ".tif", ".tiff")


def caption_extension(
    kohya_config: dict[str, Any], dataset: dict[str, Any], subset: dict[str, Any], run: RunArgs
) -> str:
    """A subset's ``caption_extension`` as sd-scripts cascades it (its default is ``.caption``)."""
    general = kohya_config.get("general", {}) or {}
    return str(
        subset.get("caption_extension")
        or dataset.get("caption_extension")
        or general.get("caption_extension")
        or run.get("caption_extension")
        or ".caption"
    )


def first_line_empty_message(path: str | Path) -> str:
    """The warning for a caption file whose first line is empty (training log and ``check`` alike)."""
    return (
        f"caption file {path}: the first line is empty, and sd-scripts reads only the first line (without "
        "enable_wildcard), so the image trains with an empty caption; move the caption to the first line"
    )


def check_crop_extensions(
    kohya_config: dict[str, Any], configs: Sequence[Sequence[CollageConfig]], run: RunArgs
) -> None:
    """Refuse a ``collage_crop_extension`` that names caption or image files: they would be parsed as crop boxes.

    Raises:
        CollageConfigError: naming the extension, what it collides with, and the fix.
    """
    for d, dataset in enumerate(kohya_config.get("datasets", []) or []):
        for s, subset in enumerate(dataset.get("subsets", []) or []):
            if d >= len(configs) or s >= len(configs[d]) or not configs[d][s].enabled:
                continue
            crop = configs[d][s].crop_extension
            caption = caption_extension(kohya_config, dataset, subset, run)
            clash = (
                "the caption extension (caption_extension)"
                if crop.lower() == caption.lower()
                else "an image extension"
                if crop.lower() in IMAGE_SUFFIXES
                else None
            )
            if clash is not None:
                msg = (
                    f"collage_crop_extension = {crop!r} is {clash} of subset {subset.get('image_dir') or s} "
                    f"@ data['datasets'][{d}]['subsets'][{s}]: those files would be read as crop boxes; use a "
                    'sidecar extension of its own, e.g. collage_crop_extension = ".crop"'
                )
                raise CollageConfigError(msg)
