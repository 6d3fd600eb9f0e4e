"""Images that train alone but have a crop box: the pixels sd-scripts must see. No sd-scripts import.

sd-scripts loads a single sample itself and knows nothing of ``.crop`` files, so the region the
user cut away (a watermark, a second person) would be trained whenever the image is not in a
collage: a single-image subset, a leftover, ``collage_rate < 1``. Here the crop box is applied the
way a collage cell applies it (upright, colour profile as ``collage_color_profile``), at the box's
full resolution; sd-scripts then buckets and resizes the cropped pixels as usual. In static mode
the cropped image is written into the cache folder, because sd-scripts' latent caching reads files.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageInputError
from collage_ext.core.version import __version__
from collage_ext.pixels.crops import check_crop_unchanged
from collage_ext.pixels.images import load_fitted_with_alpha
from collage_ext.plan.collage import Source


def cropped_pixels(source: Source, config: CollageConfig, alpha: bool = False) -> np.ndarray:
    """The crop box of ``source`` at full resolution, upright RGB (H x W x 3), or RGBA with ``alpha``.

    With ``alpha`` (sd-scripts' ``alpha_mask``) the source's own alpha is cut with the pixels (255 where
    it has none), so the cropped single is weighted as sd-scripts weighs the image alone.

    Raises:
        CollageInputError: the file cannot be read, changed size since planning, or its ``.crop``
            file changed since planning; names the file and the fix.
    """
    if source.crop is None:
        msg = f"internal: {source.path} has no crop box"
        raise ValueError(msg)
    try:
        check_crop_unchanged(source.path, source.size, source.crop, config.crop_extension)
        image, _, mask = load_fitted_with_alpha(
            source.path,
            source.effective_size,
            "contain",
            source.crop,
            fill=config.fill,
            draft_gaps={},
            expected=source.size,
            convert_icc=config.color_profile == "srgb",
        )
    except CollageInputError as exc:
        exc.source_path = source.path  # type: ignore[attr-defined]  # for the error policy
        raise
    pixels = np.asarray(image)
    if not alpha:
        return pixels
    weights = np.asarray(mask) if mask is not None else np.full(pixels.shape[:2], 255, np.uint8)
    return np.concatenate([pixels, weights[:, :, None]], axis=2)


def cropped_single_path(source: Source, config: CollageConfig, cache_dir: Path, alpha: bool = False) -> Path:
    """The cache file of a cropped single: named by a hash of the file, its box and the settings that shape it.

    Raises:
        CollageInputError: the source vanished since planning.
    """
    try:
        stat = os.stat(source.path)
    except OSError as exc:
        msg = (
            f"image {source.path} cannot be read any more ({exc.strerror or exc}); it was there when the "
            "dataset was read: put it back or restart training"
        )
        raise CollageInputError(msg) from exc
    payload = {
        "v": __version__,
        "key": source.key,
        "file": [stat.st_size, stat.st_mtime_ns],
        "crop": list(source.crop or ()),
        "fill": list(config.fill),
        "profile": config.color_profile,
        "alpha": alpha,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:24]
    return cache_dir / f"single_{digest}.png"
