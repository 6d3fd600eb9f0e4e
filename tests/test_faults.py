"""Run-time fault checks without sd-scripts: changed sources, changed crop boxes, cache writes, aspect fits.

tests/sdscripts/test_runtime_faults.py drives the same cases through the real loader.
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from collage_ext.core.errors import CollageCacheError, CollageInputError
from collage_ext.core.types import Box, Size
from collage_ext.pixels.crops import check_crop_unchanged
from collage_ext.pixels.images import load_fitted, read_image_size
from collage_ext.plan.frames import ensure_writable, write_png_atomic
from collage_ext.plan.policy import check_single, fit_to_aspect


def test_load_fitted_refuses_a_resized_file(tmp_path: Path) -> None:
    """The size planned at start-up is compared with the file's header at load time (JPEG and PNG)."""
    for ext in ("jpg", "png"):
        path = tmp_path / f"a.{ext}"
        Image.new("RGB", (300, 200), (10, 200, 30)).save(path)
        planned = read_image_size(path)
        load_fitted(path, Size(150, 100), expected=planned)  # unchanged: fine
        Image.new("RGB", (200, 300), (10, 200, 30)).save(path)
        with pytest.raises(
            CollageInputError,
            match=rf"a\.{ext} changed while training: it is 200x300 now, its "
            r"frames were planned for 300x200",
        ):
            load_fitted(path, Size(150, 100), expected=planned)
        load_fitted(path, Size(150, 100))  # without a plan to compare with, nothing is checked


def test_exif_rotation_counts_as_a_change(tmp_path: Path) -> None:
    """Same pixels, new orientation tag: the upright size changed, so the planned cell no longer fits."""
    path = tmp_path / "a.jpg"
    Image.new("RGB", (300, 200)).save(path)
    planned = read_image_size(path)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (300, 200)).save(path, exif=exif)
    with pytest.raises(CollageInputError, match="it is 200x300 now"):
        load_fitted(path, Size(100, 100), expected=planned)


def test_crop_change_detection(tmp_path: Path) -> None:
    """Edited, added and removed boxes are changes; the same box spelled differently is not."""
    image = tmp_path / "a.png"
    sidecar = tmp_path / "a.crop"
    size = Size(200, 100)
    box = Box(0, 0, 100, 50)
    sidecar.write_text("0, 0, 100, 50")
    check_crop_unchanged(image, size, box)
    sidecar.write_text("# same\n0% 0% 50% 50%")
    check_crop_unchanged(image, size, box)
    sidecar.write_text("0, 0, 120, 50")
    with pytest.raises(
        CollageInputError,
        match=r"a\.crop changed while training: the frames were planned with box "
        r"0, 0, 100, 50, now it gives box 0, 0, 120, 50",
    ):
        check_crop_unchanged(image, size, box)
    sidecar.unlink()
    with pytest.raises(CollageInputError, match="now it gives no crop box"):
        check_crop_unchanged(image, size, box)
    check_crop_unchanged(image, size, None)
    sidecar.write_text("0, 0, 999, 50")  # now invalid: named, with the box the run planned with
    with pytest.raises(CollageInputError, match=r"a\.crop lies outside .*it changed while training"):
        check_crop_unchanged(image, size, None)


@given(
    width=st.integers(1, 400), height=st.integers(1, 400), target_w=st.integers(1, 400), target_h=st.integers(1, 400)
)
def test_fit_to_aspect_crops_to_the_target_aspect(width: int, height: int, target_w: int, target_h: int) -> None:
    """Only a centred crop, whole rows or columns kept, aspect within one pixel of the target."""
    pixels = np.arange(width * height, dtype=np.int64).reshape(height, width)
    out = fit_to_aspect(pixels, (target_w, target_h))
    h, w = out.shape
    assert (w == width) or (h == height)
    assert abs(w * target_h - h * target_w) <= max(target_w, target_h)  # rounding: less than one pixel
    top = int(out[0, 0]) // width
    left = int(out[0, 0]) % width
    assert abs(top - (height - h - top)) <= 1 and abs(left - (width - w - left)) <= 1
    assert np.array_equal(out, pixels[top : top + h, left : left + w])


def test_check_single() -> None:
    """A load error or a new shape is named; the planned shape passes."""
    pixels = np.zeros((192, 128, 3), np.uint8)
    check_single("a.png", pixels, (128, 192))
    with pytest.raises(
        CollageInputError, match="a.png changed while training: it is 128x192 now, sd-scripts bucketed it as 192x128"
    ):
        check_single("a.png", pixels, (192, 128))
    with pytest.raises(CollageInputError, match=r"a.png cannot be loaded \(FileNotFoundError: gone\)"):
        check_single("a.png", None, None, FileNotFoundError("gone"))


def test_disk_full_leaves_nothing_under_the_final_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while encoding: CollageCacheError naming the folder, no final file, no temporary file."""

    def full(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        fp.write(b"\x89PNG partial")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(
        CollageCacheError,
        match=rf"collage cache folder {tmp_path} cannot write collage_a\.png: No "
        r"space left on device; .*free space on that disk",
    ):
        write_png_atomic(Image.new("RGB", (4, 4)), tmp_path / "collage_a.png")
    assert list(tmp_path.iterdir()) == []


def test_ensure_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing folder is created; one that cannot be written is named with the fix."""
    ensure_writable(tmp_path / "new" / "cache")
    assert (tmp_path / "new" / "cache").is_dir() and not list((tmp_path / "new" / "cache").iterdir())

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("tempfile.TemporaryFile", refuse)
    with pytest.raises(
        CollageCacheError,
        match=r"cannot be written: Permission denied; .*make the folder writable, "
        r"or set collage_cache_dir",
    ):
        ensure_writable(tmp_path)
