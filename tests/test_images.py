"""Tests for collage_ext.pixels.images: every mode to correct RGB, EXIF orientation, and file errors."""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile, features

from collage_ext.core.errors import CollageConfigError, CollageInputError
from collage_ext.core.types import Size
from collage_ext.pixels.images import DEFAULT_FILL, check_fill, open_image, read_image_size, to_rgb
from tests.common import (
    BLUE,
    FILL,
    GREEN,
    RED,
    WHITE,
    assert_close,
    make_image,
    make_quadrants,
    pixel,
    png_header_only,
    save,
)

# --- to_rgb: in-memory conversions ------------------------------------------------------------

MODE_CASES = [
    ("RGB", (10, 20, 30), (10, 20, 30)),
    ("L", 100, (100, 100, 100)),
    ("1", 1, (255, 255, 255)),
    ("RGBA", (255, 0, 0, 255), RED),
    ("RGBA", (255, 0, 0, 0), FILL),
    ("RGBa", (0, 0, 0, 0), FILL),
    ("LA", (200, 255), (200, 200, 200)),
    ("LA", (200, 0), FILL),
    ("La", (0, 0), FILL),
    ("PA", (0, 0), FILL),
    ("CMYK", (0, 0, 0, 0), WHITE),
    ("CMYK", (0, 255, 255, 0), RED),
    ("CMYK", (0, 0, 0, 255), (0, 0, 0)),
    ("YCbCr", (255, 128, 128), WHITE),
    ("HSV", (0, 255, 255), RED),
    ("I;16", 65535, WHITE),
    ("I;16", 25700, (100, 100, 100)),
    ("I;16B", 1000, (4, 4, 4)),
    ("I;16L", 32896, (128, 128, 128)),
    ("I", 65535, WHITE),
    ("I", 70000, WHITE),
    ("I", -5, (0, 0, 0)),
    ("F", 0.5, (128, 128, 128)),
    ("F", 200.0, (200, 200, 200)),
    ("F", 300.0, WHITE),
    ("F", float("nan"), (0, 0, 0)),
]
MODE_IDS = [
    "rgb",
    "l",
    "bilevel",
    "rgba-opaque",
    "rgba-transparent",
    "premultiplied-rgba",
    "la-opaque",
    "la-transparent",
    "premultiplied-la",
    "pa-transparent",
    "cmyk-white",
    "cmyk-red",
    "cmyk-black",
    "ycbcr-white",
    "hsv-red",
    "i16-max",
    "i16-scaled-not-clipped",
    "i16b-scaled",
    "i16l-half",
    "i-16bit-range",
    "i-clipped-high",
    "i-clipped-low",
    "float-normalised",
    "float-0-255",
    "float-clipped",
    "float-nan",
]


@pytest.mark.parametrize(("mode", "color", "expected"), MODE_CASES, ids=MODE_IDS)
def test_to_rgb_modes(mode: str, color: object, expected: tuple[int, int, int]) -> None:
    """Every Pillow mode becomes RGB with the right colour; transparency shows the fill."""
    result = to_rgb(make_image((3, 2), color, mode), fill=FILL)
    assert result.mode == "RGB" and result.size == (3, 2)
    assert pixel(result, 2, 1) == expected


def test_to_rgb_lab() -> None:
    """LAB goes through Pillow's ImageCms path (L=100, a=b=0 is white)."""
    result = to_rgb(make_image((2, 2), (255, 128, 128), "LAB"))
    assert_close(pixel(result, 0, 0), WHITE, tolerance=2)


def test_to_rgb_16bit_keeps_gradation() -> None:
    """16-bit samples are scaled (Pillow's convert would clip everything above 255 to white)."""
    samples = np.array([[0, 257, 1000, 32896, 65535]], dtype=np.uint16)
    image = Image.fromarray(samples)
    assert image.mode == "I;16"
    assert [pixel(to_rgb(image), x, 0)[0] for x in range(5)] == [0, 1, 4, 128, 255]
    assert pixel(image.convert("RGB"), 2, 0)[0] == 255  # the clipping we avoid


def test_to_rgb_semi_transparent_blends_with_fill() -> None:
    """Half-transparent red over #181818 blends, it is not composited onto black."""
    result = to_rgb(make_image((1, 1), (255, 0, 0, 128), "RGBA"), fill=FILL)
    expected = tuple(round((c * 128 + f * 127) / 255) for c, f in zip(RED, FILL, strict=True))
    assert_close(pixel(result, 0, 0), expected, tolerance=1)


def test_to_rgb_uses_the_given_fill() -> None:
    """Transparent pixels take whatever fill is passed."""
    assert pixel(to_rgb(make_image((1, 1), (9, 9, 9, 0), "RGBA"), fill=(1, 2, 3)), 0, 0) == (1, 2, 3)


def test_to_rgb_palette_with_transparency_bytes_and_rgba_palette() -> None:
    """Palette transparency (tRNS bytes, RGBA palettes) is honoured without Pillow warnings."""
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = bytes([0, 255])
    assert [pixel(to_rgb(image), x, 0) for x in range(2)] == [FILL, BLUE]
    rgba_palette = Image.new("P", (1, 1))
    rgba_palette.putpalette([0, 255, 0, 0], rawmode="RGBA")
    assert rgba_palette.palette is not None and rgba_palette.palette.mode == "RGBA"
    assert pixel(to_rgb(rgba_palette), 0, 0) == FILL


def test_to_rgb_16bit_color_key_transparency() -> None:
    """A 16-bit tRNS colour key becomes transparency (it only matches at full depth)."""
    image = Image.fromarray(np.array([[1000, 1001]], dtype=np.uint16))
    image.info["transparency"] = 1000
    assert [pixel(to_rgb(image), x, 0) for x in range(2)] == [FILL, (4, 4, 4)]


def test_to_rgb_returns_rgb_input_itself() -> None:
    """RGB input is returned as is (no copy needed for the common case)."""
    image = make_image((2, 2), RED)
    assert to_rgb(image) is image


def test_to_rgb_zero_pixels_raises() -> None:
    """A 0-px image cannot be placed anywhere."""
    with pytest.raises(CollageInputError, match=r"image has no pixels \(0x5\)"):
        to_rgb(Image.new("RGB", (0, 5)))


@pytest.mark.parametrize("fill", [(0, 0), (0, 0, -1), "#181818", (True, 0, 0)], ids=["two", "negative", "str", "bool"])
def test_bad_fill_raises(fill: object) -> None:
    """The fill colour is validated with the option name and the value."""
    with pytest.raises(
        CollageConfigError, match=re.escape(f"fill must be three integers in [0, 255] (R, G, B), got {fill!r}")
    ):
        to_rgb(make_image((1, 1), RED), fill=fill)  # type: ignore[arg-type]


def test_check_fill_accepts_lists_and_numpy_ints() -> None:
    """Fill colours from TOML (lists) and numpy are normalised to plain int tuples."""
    assert check_fill([1, 2, 3]) == (1, 2, 3)
    assert check_fill(tuple(np.array([4, 5, 6], dtype=np.uint8))) == (4, 5, 6)
    assert DEFAULT_FILL == (24, 24, 24)


# --- open_image: real files -------------------------------------------------------------------


def test_open_png_rgb_roundtrip(tmp_path: Path) -> None:
    """A plain RGB PNG comes back pixel-identical."""
    source = make_quadrants((8, 6))
    result = open_image(save(source, tmp_path / "a.png"))
    assert result.mode == "RGB" and result.tobytes() == source.tobytes()


def test_open_palette_png_with_transparency(tmp_path: Path) -> None:
    """A palette PNG with a transparent index shows the fill there, not black."""
    image = Image.new("P", (4, 1))
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((2, 0), 1)
    path = save(image, tmp_path / "palette.png", transparency=0)
    result = open_image(path)
    assert [pixel(result, x, 0) for x in range(4)] == [FILL, FILL, RED, FILL]


@pytest.mark.parametrize(
    ("mode", "transparent", "opaque", "expected"),
    [("LA", (0, 0), (200, 255), (200, 200, 200)), ("RGBA", (0, 255, 0, 0), (0, 255, 0, 255), GREEN)],
    ids=["la", "rgba"],
)
def test_open_alpha_png_composites_onto_fill(
    tmp_path: Path, mode: str, transparent: tuple[int, ...], opaque: tuple[int, ...], expected: tuple[int, int, int]
) -> None:
    """LA and RGBA PNGs: transparent pixels become the fill colour."""
    image = make_image((2, 1), transparent, mode)
    image.putpixel((1, 0), opaque)
    result = open_image(save(image, tmp_path / f"{mode}.png"), fill=(1, 2, 3))
    assert [pixel(result, 0, 0), pixel(result, 1, 0)] == [(1, 2, 3), expected]


def test_open_rgb_png_with_color_key(tmp_path: Path) -> None:
    """An RGB PNG with a tRNS colour key makes that colour transparent."""
    image = make_image((2, 1), RED)
    image.putpixel((1, 0), BLUE)
    result = open_image(save(image, tmp_path / "key.png", transparency=RED))
    assert [pixel(result, 0, 0), pixel(result, 1, 0)] == [FILL, BLUE]


def test_open_cmyk_jpeg(tmp_path: Path) -> None:
    """CMYK JPEGs (Pillow writes and reads Adobe's inverted convention) become the right RGB."""
    image = Image.new("CMYK", (32, 16), (0, 255, 255, 0))
    image.paste((255, 0, 0, 0), (16, 0, 32, 16))
    path = save(image, tmp_path / "cmyk.jpg", quality=95)
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    result = open_image(path)
    assert_close(pixel(result, 4, 8), RED, tolerance=6)
    assert_close(pixel(result, 28, 8), (0, 255, 255), tolerance=6)


def test_open_16bit_png_scales_not_clips(tmp_path: Path) -> None:
    """A 16-bit grayscale PNG keeps its tones."""
    samples = np.array([[0, 1000, 25700, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(samples), tmp_path / "deep.png")
    result = open_image(path)
    assert [pixel(result, x, 0) for x in range(4)] == [(0, 0, 0), (4, 4, 4), (100, 100, 100), WHITE]


def test_open_16bit_png_with_transparency(tmp_path: Path) -> None:
    """A 16-bit PNG colour key is applied at full depth."""
    samples = np.array([[1000, 65535]], dtype=np.uint16)
    try:
        path = save(Image.fromarray(samples), tmp_path / "deep_key.png", transparency=1000)
    except OSError:
        pytest.skip("this Pillow cannot write a 16-bit PNG colour key")
    assert [pixel(open_image(path), x, 0) for x in range(2)] == [FILL, WHITE]


# A 48x32 upright image with coloured quadrants; each orientation stores its inverse transform.
INVERSE_TRANSPOSE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
QUADRANT_CENTRES = {RED: (12, 8), GREEN: (36, 8), BLUE: (12, 24), WHITE: (36, 24)}


def _save_oriented(tmp_path: Path, orientation: int, suffix: str = ".jpg") -> Path:
    displayed = make_quadrants((48, 32))
    method = INVERSE_TRANSPOSE[orientation]
    stored = displayed if method is None else displayed.transpose(method)
    exif = Image.Exif()
    exif[0x0112] = orientation
    params: dict[str, Any] = {"quality": 95, "subsampling": 0} if suffix == ".jpg" else {}
    return save(stored, tmp_path / f"orient_{orientation}{suffix}", exif=exif, **params)


@pytest.mark.parametrize("orientation", range(1, 9), ids=[f"orientation-{o}" for o in range(1, 9)])
def test_open_applies_exif_orientation(tmp_path: Path, orientation: int) -> None:
    """All 8 EXIF orientations: the red corner lands top-left and the size is upright."""
    path = _save_oriented(tmp_path, orientation)
    result = open_image(path)
    assert result.size == (48, 32)
    for color, (x, y) in QUADRANT_CENTRES.items():
        assert_close(pixel(result, x, y), color, tolerance=8)
    assert read_image_size(path) == Size(48, 32)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8], ids=["o1", "o3", "o6", "o8"])
def test_read_image_size_png_exif_header_only(tmp_path: Path, orientation: int) -> None:
    """PNG orientation is read from the header without decoding pixels."""
    path = _save_oriented(tmp_path, orientation, ".png")
    assert read_image_size(path) == Size(48, 32)
    assert open_image(path).size == (48, 32)


def test_read_image_size_decodes_no_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """read_image_size never calls load(), for JPEG and PNG alike."""
    paths = [_save_oriented(tmp_path, 6), _save_oriented(tmp_path, 8, ".png")]

    def refuse(self: ImageFile.ImageFile) -> None:
        msg = "pixels were decoded"
        raise AssertionError(msg)

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    assert [read_image_size(p) for p in paths] == [Size(48, 32), Size(48, 32)]


def test_invalid_or_unreadable_orientation_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bogus orientation value (9) or a broken EXIF block does not reject a good image."""
    exif = Image.Exif()
    exif[0x0112] = 9
    path = save(make_quadrants((6, 4)), tmp_path / "bogus.png", exif=exif)
    assert open_image(path).size == (6, 4) and read_image_size(path) == Size(6, 4)

    def broken(self: Image.Image) -> Image.Exif:
        msg = "corrupt EXIF"
        raise SyntaxError(msg)

    monkeypatch.setattr(Image.Image, "getexif", broken)
    assert open_image(path).size == (6, 4)


def test_open_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    """Animated GIFs give their first frame."""
    frames = [make_image((4, 4), RED), make_image((4, 4), GREEN)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as raw:
        assert raw.n_frames == 2
    assert pixel(open_image(path), 1, 1) == RED


def test_open_gif_transparency_uses_fill(tmp_path: Path) -> None:
    """A transparent GIF background becomes the fill colour."""
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((1, 0), 1)
    path = save(image, tmp_path / "t.gif", transparency=0)
    assert [pixel(open_image(path), x, 0) for x in range(2)] == [FILL, BLUE]


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_open_animated_webp_uses_first_frame(tmp_path: Path) -> None:
    """Animated WebP gives its first frame."""
    frames = [make_image((8, 8), RED), make_image((8, 8), BLUE)]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, lossless=True)
    assert pixel(open_image(path), 3, 3) == RED


def test_open_closes_the_file(tmp_path: Path) -> None:
    """The returned image is detached: the file can be deleted and the pixels still read."""
    path = save(make_image((4, 4), RED), tmp_path / "a.ppm")  # raw formats may be memory-mapped
    result = open_image(path)
    if Path("/proc/self/fd").is_dir():  # Linux: no descriptor or mapping of the file is left
        targets = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
        assert str(path.resolve()) not in targets
        assert str(path.resolve()) not in Path("/proc/self/maps").read_text(encoding="utf-8")
    path.unlink()
    assert pixel(result, 3, 3) == RED


def test_pillow_warnings_do_not_leak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A Pillow warning while reading is logged at DEBUG, not raised (the suite runs with -W error)."""
    path = save(make_image((2, 2), RED), tmp_path / "warn.png")
    original = Image.Image.getexif

    def warning_getexif(self: Image.Image) -> Image.Exif:
        warnings.warn("Corrupt EXIF data", UserWarning, stacklevel=2)
        return original(self)

    monkeypatch.setattr(Image.Image, "getexif", warning_getexif)
    with caplog.at_level(logging.DEBUG, logger="collage_ext.pixels.images"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pixel(open_image(path), 0, 0) == RED
    assert "Corrupt EXIF data" in caplog.text and str(path) in caplog.text


# --- errors -------------------------------------------------------------------------------------


def _error_pattern(path: Path, cause: str) -> str:
    return re.escape(f"image {path} ") + cause


def test_missing_file(tmp_path: Path) -> None:
    """A missing file names the path."""
    path = tmp_path / "nope.png"
    for read in (open_image, read_image_size):
        with pytest.raises(CollageInputError, match=_error_pattern(path, "does not exist")) as info:
            read(path)
        assert isinstance(info.value.__cause__, FileNotFoundError)


def test_directory(tmp_path: Path) -> None:
    """A folder with an image extension is rejected clearly."""
    path = tmp_path / "folder.png"
    path.mkdir()
    with pytest.raises(CollageInputError, match=_error_pattern(path, "is not a regular file")):
        open_image(path)


def test_zero_byte_file(tmp_path: Path) -> None:
    """An empty file is named as such."""
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    for read in (open_image, read_image_size):
        with pytest.raises(CollageInputError, match=_error_pattern(path, r"is empty \(0 bytes\)")):
            read(path)


def test_text_file_named_png(tmp_path: Path) -> None:
    """A text file with an image extension is 'not a readable image', with its first bytes."""
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n", encoding="utf-8")
    for read in (open_image, read_image_size):
        with pytest.raises(
            CollageInputError,
            match=_error_pattern(path, r"is not a readable image: .*\.png file \(it starts with b'this is not '\)"),
        ) as info:
            read(path)
        assert isinstance(info.value.__cause__, OSError)


@pytest.mark.parametrize(("suffix", "keep"), [(".jpg", 0.5), (".png", 0.6)], ids=["jpeg", "png"])
def test_truncated_file(tmp_path: Path, suffix: str, keep: float) -> None:
    """Truncation fails in open_image (pixels are decoded there), naming the file."""
    y, x = np.mgrid[0:64, 0:64]
    noise = Image.fromarray(np.stack([x * 4, y * 4, (x * y) % 256], axis=-1).astype(np.uint8))
    full = save(noise, tmp_path / f"full{suffix}").read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(full[: int(len(full) * keep)])
    with pytest.raises(CollageInputError, match=_error_pattern(path, r"is truncated or corrupt \(OSError: ")):
        open_image(path)
    assert read_image_size(path) == Size(64, 64)  # header-only: truncation is not seen here


def test_corrupt_header(tmp_path: Path) -> None:
    """A PNG signature followed by garbage is rejected with the file name."""
    path = tmp_path / "garbage.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(CollageInputError, match=re.escape(f"image {path} ")):
        open_image(path)


def test_zero_pixel_header(tmp_path: Path) -> None:
    """A file declaring 0x5 pixels is rejected (Pillow refuses to identify it)."""
    path = tmp_path / "zero.png"
    path.write_bytes(png_header_only(0, 5))
    for read in (open_image, read_image_size):
        with pytest.raises(CollageInputError, match=re.escape(f"image {path} ")):
            read(path)


def test_decompression_bomb_header(tmp_path: Path) -> None:
    """A header declaring 10^10 pixels fails before any allocation, and the limit is not changed."""
    limit = Image.MAX_IMAGE_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(100_000, 100_000))
    for read in (open_image, read_image_size):
        with pytest.raises(
            CollageInputError, match=_error_pattern(path, r"is too large for Pillow's decompression-bomb limit")
        ) as info:
            read(path)
        assert isinstance(info.value.__cause__, Image.DecompressionBombError)
    assert limit == Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize(
    ("side", "cause"),
    [(12, Image.DecompressionBombWarning), (20, Image.DecompressionBombError)],
    ids=["warning-range", "error-range"],
)
def test_decompression_bomb_small_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: int, cause: type[BaseException]
) -> None:
    """Between 1x and 2x the limit Pillow only warns; that is an error here too."""
    path = save(make_image((side, side), RED), tmp_path / f"big_{side}.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for read in (open_image, read_image_size):
        with pytest.raises(
            CollageInputError, match=_error_pattern(path, r"is too large .*MAX_IMAGE_PIXELS = 100")
        ) as info:
            read(path)
        assert isinstance(info.value.__cause__, cause)


def test_errors_are_value_errors(tmp_path: Path) -> None:
    """CollageInputError is a ValueError, so existing `except ValueError` handlers keep working."""
    with pytest.raises(ValueError, match="does not exist"):
        open_image(tmp_path / "missing.webp")


def test_read_image_size_reads_a_header_once_per_file_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The header memo (the studio re-plans after each edit) follows every write of the file."""
    import os

    from collage_ext.pixels import images

    path = tmp_path / "a.png"
    Image.new("RGB", (30, 20)).save(path)
    opened = []
    real_open = images.Image.open
    monkeypatch.setattr(images.Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    assert images.read_image_size(path) == (30, 20) and images.read_image_size(path) == (30, 20)
    assert len(opened) == 1
    Image.new("RGB", (20, 40)).save(path)
    os.utime(path, ns=(1, 1))  # even with an old mtime: size, inode or ctime differ
    assert images.read_image_size(path) == (20, 40) and len(opened) == 2
