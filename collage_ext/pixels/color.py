"""Embedded ICC profiles -> sRGB, so phone photos (Display P3, Adobe RGB) keep their colours in a frame.

sd-scripts' ``load_image`` ignores ICC profiles: the numbers of a Display P3 photo are read as if
they were sRGB, so saturated colours come out dull and skin tones shift. collage_ext converts the
cells it composes with littlecms (Pillow's ``ImageCms``) unless ``collage_color_profile = "ignore"``
asks for sd-scripts' behaviour. Images that sd-scripts loads itself (single samples) keep its
behaviour either way (docs/reliability.md).

Cost: nothing for files without a profile or with an sRGB one (a profile is recognised once per
distinct profile and remembered); otherwise one littlecms transform of the fitted cell, which is
already at cell size (about 7 ms for a 512x748 cell on one core). Transforms are built once per
profile and process.
"""

from __future__ import annotations

import hashlib
import io
import logging
from functools import lru_cache
from typing import Any, Literal

from PIL import Image, ImageCms

logger = logging.getLogger(__name__)

ColorPolicy = Literal["srgb", "ignore"]

_SRGB = ImageCms.createProfile("sRGB")


def to_srgb(image: Image.Image, icc: bytes | None, *, name: str = "image") -> Image.Image:
    """Convert an RGB image from its embedded ICC profile to sRGB; unchanged when there is nothing to do.

    Args:
        image: a decoded ``RGB`` image (any other mode is returned unchanged).
        icc: the file's ``icc_profile`` bytes (``Image.info``), or ``None``.
        name: the file, for the log line when a profile cannot be used.

    Returns:
        ``image`` itself (no profile, an sRGB profile, a non-RGB profile or image, an unreadable
        profile: logged once at WARNING) or a new converted image.
    """
    if not icc or image.mode != "RGB":
        return image
    transform = _transform_for(hashlib.sha256(icc).digest(), icc)
    if transform is None:
        return image
    return _apply(image, transform)


def _apply(image: Image.Image, transform: Any) -> Image.Image:
    """``ImageCms.applyTransform`` into a new image (typed: it returns None only with ``inPlace=True``)."""
    result = ImageCms.applyTransform(image, transform)
    if result is None:
        msg = "internal: ImageCms.applyTransform returned no image"
        raise RuntimeError(msg)
    return result


@lru_cache(maxsize=32)
def _transform_for(digest: bytes, icc: bytes) -> Any:
    """The profile -> sRGB transform, or ``None`` when the profile is sRGB already or unusable (cached per profile)."""
    del digest  # part of the cache key only
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if profile.profile.xcolor_space.strip() != "RGB":
            return None  # gray or CMYK profiles: Pillow's own conversion stays (documented)
        description = (profile.profile.profile_description or "").strip()
        if "srgb" in description.lower().replace(" ", ""):
            return None
        transform = ImageCms.buildTransform(
            profile, _SRGB, "RGB", "RGB", renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC
        )
    except (OSError, ValueError, ImageCms.PyCMSError) as exc:
        logger.warning(f"collage_ext: ignoring an ICC profile that cannot be used ({exc}); pixels taken as sRGB")
        return None
    probe = Image.frombytes("RGB", (len(_PROBE), 1), bytes(v for rgb in _PROBE for v in rgb))
    converted = _apply(probe, transform)
    if all(abs(a - b) <= 1 for a, b in zip(converted.tobytes(), probe.tobytes())):
        return None  # an sRGB profile under another name: nothing to convert
    logger.debug(f"collage_ext: converting ICC profile {description!r} to sRGB")
    return transform


#: Colours that any non-sRGB profile moves by more than one level.
_PROBE = ((128, 128, 128), (200, 40, 40), (40, 200, 40), (40, 40, 200), (230, 230, 230))
