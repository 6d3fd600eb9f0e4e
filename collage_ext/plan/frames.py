"""A frame as a file: PNG encoding, cache files checked by content, cache folders, and the alpha a frame carries.

Preview, export, the studio and static mode's cache (``sdscripts/staticframes.py``) all write frames
through here, so a frame is the same bytes wherever it is written. No sd-scripts import.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageCacheError
from collage_ext.core.filemodes import write_bytes_atomic
from collage_ext.pixels.render import RenderResult

logger = logging.getLogger(__name__)


#: zlib level of every frame PNG (preview, export, the static cache). Measured on 1024 px photo frames
#: (benchmarks/README.md, "PNG level"): level 1 writes in about half the time of Pillow's default 6
#: for files about 15 % larger; levels 2-3 save almost nothing over 1, 7-9 nothing over 6.
PNG_LEVEL = 1


def encode_png(image: Image.Image, pnginfo: PngInfo | None = None) -> bytes:
    """The frame as PNG bytes at ``PNG_LEVEL`` (lossless: the pixels are exactly the frame's)."""
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=PNG_LEVEL, pnginfo=pnginfo)
    return out.getvalue()


def write_png_atomic(image: Image.Image, path: Path, pnginfo: PngInfo | None = None) -> None:
    """Write a PNG so that a reader never sees a partial file (temp file in the same folder, then rename).

    Two runs rendering the same frame write the same bytes under the same content-hashed name;
    each writes its own temporary file, and ``os.replace`` is atomic, so a reader sees either no
    file or a complete one. A failed write (disk full, folder gone read-only) removes its
    temporary file and raises ``CollageCacheError``: nothing partial is left under a final name.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, encode_png(image, pnginfo))
    except OSError as exc:
        raise CollageCacheError(_cache_message(path.parent, f"cannot write {path.name}", exc)) from exc


#: PNG text chunk holding the sha256 of a cached file's pixels: a file is reused only when they match.
CHECKSUM_KEY = "collage_ext_sha256"


def pixel_digest(pixels: np.ndarray) -> str:
    """sha256 of an image array's shape and bytes."""
    array = np.ascontiguousarray(pixels)
    return hashlib.sha256(repr(array.shape).encode("ascii") + array.tobytes()).hexdigest()


def write_checked_png(pixels: np.ndarray, path: Path) -> None:
    """Write a cache PNG atomically, with the checksum of its pixels in a text chunk (``cached_png_problem``)."""
    info = PngInfo()
    info.add_text(CHECKSUM_KEY, pixel_digest(pixels))
    write_png_atomic(Image.fromarray(pixels), path, info)


def cached_png_problem(path: str | Path, pixels: np.ndarray | None = None) -> str | None:
    """None when a cache PNG holds the pixels it was written with, else what is wrong with it.

    A cached file's name is a hash of what it should show, not of what it holds: a file truncated,
    corrupted or overwritten (even by a valid PNG of the same size) keeps its name, so its pixels
    are checked against the checksum written with them. ``pixels`` are the file's pixels when the
    caller decoded them already (sd-scripts' loader); an array of another channel count is decoded here.
    """
    try:
        with Image.open(path) as image:
            expected = image.info.get(CHECKSUM_KEY)
            if pixels is None or np.ndim(pixels) != 3 or np.shape(pixels)[2] != len(image.getbands()):
                image.load()
                pixels = np.asarray(image)
    except FileNotFoundError:
        return "is missing"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return f"cannot be read ({type(exc).__name__}: {exc})"
    if expected is None:
        return "carries no collage_ext checksum (written by another program or an older collage_ext)"
    if pixel_digest(pixels) != expected:
        return "does not hold the pixels it was written with (overwritten or corrupt)"
    return None


def ensure_cached_png(path: str | Path, make: Callable[[], np.ndarray]) -> bool:
    """Check a cache PNG by content and write it (again) from ``make()`` unless intact; True when written."""
    problem = cached_png_problem(path)
    if problem is None:
        return False
    if problem != "is missing":
        logger.warning(f"collage_ext: cached file {path} {problem}; rendering it again")
    write_checked_png(make(), Path(path))
    return True


def ensure_writable(folder: Path) -> None:
    """Fail at start-up, before any model loads, when the static cache folder cannot be written.

    Static frames and sd-scripts' latent / text-encoder ``.npz`` caches are written there; finding
    out at the first write would cost a model load (or happen hours later, at the first new frame).

    Raises:
        CollageCacheError: naming the folder, the cause and the fix.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CollageCacheError(_cache_message(folder, "cannot be written", exc)) from exc


def unwritable_reason(folder: Path) -> str | None:
    """Why ``ensure_writable`` would fail on ``folder``, or None; creates nothing (``collage-ext check``)."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        if probe == folder and folder.is_dir():
            with tempfile.TemporaryFile(dir=folder):
                pass
            return None
        if not probe.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(probe))
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(probe))
        if not os.access(probe, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(probe))
    except OSError as exc:
        return _cache_message(folder, "cannot be written", exc)
    return None


def _cache_message(folder: Path, what: str, exc: OSError) -> str:
    cause = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space on that disk, or set collage_cache_dir to a folder on a disk with room"
    else:
        fix = "make the folder writable, or set collage_cache_dir to a writable folder"
    return (
        f"collage cache folder {folder} {what}: {cause}; static frames and sd-scripts' caches are written "
        f"there: {fix} (no partial file is left under a frame's name)"
    )


def uses_alpha(alpha_mask: bool, config: CollageConfig) -> bool:
    """Whether sd-scripts' ``alpha_mask`` is on for a subset, so every image's own alpha is its loss weight.

    The user's ``alpha_mask``, or ``collage_loss_mask`` (which turns it on so the padding weight reaches
    the loss). sd-scripts then reads every single image's alpha channel as its mask; a collage cell
    carries its source's alpha the same way, so an image is weighted alike alone and in a frame.
    """
    return bool(alpha_mask) or config.loss_mask


def with_alpha(rendered: RenderResult, config: CollageConfig) -> np.ndarray:
    """RGBA for sd-scripts' alpha-mask loss: each source's own alpha inside its cell (255 where it has none),
    ``pad_weight`` on padding when the loss mask is on (else 255)."""
    if rendered.alpha is not None:
        alpha = rendered.alpha.copy()
    else:
        alpha = np.full(rendered.image.shape[:2], 255, np.uint8)
    if config.loss_mask and rendered.mask is not None:
        alpha[rendered.mask] = round(config.pad_weight * 255)
    return np.concatenate([rendered.image, alpha[:, :, None]], axis=2)


def frame_pixels(rendered: RenderResult, config: CollageConfig) -> np.ndarray:
    """A frame as it is written (static cache, export): RGBA when it has loss weights to carry, else RGB."""
    if (config.loss_mask and rendered.mask is not None) or rendered.alpha is not None:
        return with_alpha(rendered, config)
    return rendered.image
