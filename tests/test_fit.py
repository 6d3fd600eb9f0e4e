"""Tests for collage_ext.pixels.fit: exact plan tables, invariants, and agreement with PIL.ImageOps."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image, ImageOps

from collage_ext.core.errors import CollageConfigError, CollageInputError, LayoutError
from collage_ext.core.types import Box, Rect, Size
from collage_ext.pixels.fit import CellFit, cell_fit, fit_image, upscale_factor
from collage_ext.pixels.render import render_frame
from collage_ext.pixels.resample import REDUCING_GAP
from tests.common import BLUE, FILL, GREEN, RED, make_image, solid_color_at

LANCZOS = Image.Resampling.LANCZOS


def gradient(size: tuple[int, int]) -> Image.Image:
    """A deterministic, non-uniform RGB test pattern (no RNG), so resampling differences show."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([(x * 7 + y * 3) % 256, (x * x + y * 5) % 256, (x * y + 11) % 256], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8))


# --- exact plan tables --------------------------------------------------------------------------

CONTAIN_CASES = [
    ((200, 100), (100, 100), Rect(0, 25, 100, 50)),
    ((100, 200), (100, 100), Rect(25, 0, 50, 100)),
    ((100, 100), (100, 100), Rect(0, 0, 100, 100)),
    ((10, 10), (20, 10), Rect(5, 0, 10, 10)),
    ((3, 2), (4, 4), Rect(0, 0, 4, 3)),
    ((8, 5), (4, 4), Rect(0, 0, 4, 3)),
    ((12, 8), (5, 7), Rect(0, 2, 5, 3)),
    ((1, 1), (7, 5), Rect(1, 0, 5, 5)),
    ((1, 50), (10, 10), Rect(4, 0, 1, 10)),
    ((50, 1), (10, 10), Rect(0, 4, 10, 1)),
    ((1, 50), (1, 1), Rect(0, 0, 1, 1)),
    ((1000, 1), (3, 3), Rect(0, 1, 3, 1)),
]
CONTAIN_IDS = [
    "wide-into-square",
    "tall-into-square",
    "identity",
    "upscale-square-into-wide",
    "3x2-round-up",
    "8x5-half-rounds-up",
    "12x8-into-odd-cell",
    "1x1-into-7x5",
    "1x50-never-0px",
    "50x1-never-0px",
    "1x50-into-1x1",
    "1000x1-into-3x3",
]


@pytest.mark.parametrize(("src", "cell", "expected"), CONTAIN_CASES, ids=CONTAIN_IDS)
def test_plan_contain_table(src: tuple[int, int], cell: tuple[int, int], expected: Rect) -> None:
    """Contain keeps the whole image, centres it, and never produces a 0-px side."""
    plan = cell_fit(Size(*src), Size(*cell), "contain")
    assert plan == CellFit(Box(0, 0, *src), expected)


COVER_CASES = [
    ((200, 100), (100, 100), Box(50, 0, 150, 100)),
    ((100, 200), (100, 100), Box(0, 50, 100, 150)),
    ((100, 100), (50, 50), Box(0, 0, 100, 100)),
    ((1, 50), (10, 10), Box(0, 24, 1, 25)),
    ((50, 1), (10, 10), Box(24, 0, 25, 1)),
    ((5, 3), (4, 4), Box(1, 0, 4, 3)),
    ((7, 4), (3, 2), Box(0, 0, 6, 4)),
    ((1, 1), (7, 5), Box(0, 0, 1, 1)),
    ((10, 10), (20, 10), Box(0, 2, 10, 7)),
]
COVER_IDS = [
    "wide-trim-sides",
    "tall-trim-top-bottom",
    "same-aspect",
    "1x50-center-row",
    "50x1-center-column",
    "5x3-odd-trim",
    "7x4-into-3x2",
    "1x1-into-7x5",
    "square-into-wide",
]


@pytest.mark.parametrize(("src", "cell", "expected_box"), COVER_CASES, ids=COVER_IDS)
def test_plan_cover_table(src: tuple[int, int], cell: tuple[int, int], expected_box: Box) -> None:
    """Cover fills the whole cell from a centred, whole-pixel source box."""
    plan = cell_fit(Size(*src), Size(*cell), "cover")
    assert plan == CellFit(expected_box, Rect(0, 0, *cell))


CROP_CASES = [
    ("contain", (640, 480), Box(0, 0, 320, 480), (100, 100), Box(0, 0, 320, 480), Rect(16, 0, 67, 100)),
    ("contain", (640, 480), Box(10, 20, 110, 70), (40, 40), Box(10, 20, 110, 70), Rect(0, 10, 40, 20)),
    ("cover", (640, 480), Box(100, 0, 300, 100), (50, 50), Box(150, 0, 250, 100), Rect(0, 0, 50, 50)),
    ("cover", (640, 480), Box(0, 100, 100, 400), (50, 50), Box(0, 200, 100, 300), Rect(0, 0, 50, 50)),
    ("stretch", (640, 480), Box(10, 20, 110, 70), (30, 40), Box(10, 20, 110, 70), Rect(0, 0, 30, 40)),
    ("contain", (640, 480), Box(0.0, 0.0, 640.0, 480.0), (64, 64), Box(0, 0, 640, 480), Rect(0, 8, 64, 48)),
    ("cover", (9, 9), Box(4, 4, 5, 5), (3, 6), Box(4, 4, 5, 5), Rect(0, 0, 3, 6)),
]
CROP_IDS = [
    "contain-left-half",
    "contain-inner-box",
    "cover-wide-crop",
    "cover-tall-crop",
    "stretch-crop",
    "whole-number-floats",
    "cover-1px-crop",
]


@pytest.mark.parametrize(("mode", "src", "crop", "cell", "expected_box", "expected_dst"), CROP_CASES, ids=CROP_IDS)
def test_plan_with_crop_table(
    mode: str, src: tuple[int, int], crop: Box, cell: tuple[int, int], expected_box: Box, expected_dst: Rect
) -> None:
    """The crop box replaces the image bounds as the source region."""
    plan = cell_fit(Size(*src), Size(*cell), mode, crop)  # type: ignore[arg-type]
    assert plan == CellFit(expected_box, expected_dst)
    assert all(type(v) is int for v in plan.src_box)


def test_plan_stretch_uses_whole_source() -> None:
    """Stretch maps the whole source onto the whole cell."""
    assert cell_fit(Size(7, 3), Size(4, 9), "stretch") == CellFit(Box(0, 0, 7, 3), Rect(0, 0, 4, 9))


UPSCALE_CASES = [
    ((200, 100), (100, 100), "contain", None, 0.5),
    ((200, 100), (100, 100), "cover", None, 1.0),
    ((200, 100), (100, 100), "stretch", None, 1.0),
    ((50, 100), (200, 100), "contain", None, 1.0),
    ((50, 100), (200, 100), "cover", None, 4.0),
    ((640, 480), (320, 320), "contain", Box(0, 0, 160, 160), 2.0),
    ((640, 480), (320, 640), "cover", Box(0, 0, 160, 160), 4.0),
]


@pytest.mark.parametrize(
    ("src", "cell", "mode", "crop", "expected"),
    UPSCALE_CASES,
    ids=["contain-min", "cover-max", "stretch-max", "contain-tall", "cover-tall", "crop-contain", "crop-cover"],
)
def test_upscale_factor_table(
    src: tuple[int, int], cell: tuple[int, int], mode: str, crop: Box | None, expected: float
) -> None:
    """Contain reports the smaller axis ratio, cover (and stretch) the larger one."""
    assert upscale_factor(Size(*src), Size(*cell), mode, crop) == expected  # type: ignore[arg-type]


# --- invariants ---------------------------------------------------------------------------------

SIZES = [1, 2, 3, 5, 8, 13, 50, 97]
GRID = list(itertools.product(SIZES, SIZES, [1, 2, 7, 16, 33], [1, 3, 10, 16, 40]))


@pytest.mark.parametrize("mode", ["contain", "cover", "stretch"])
def test_plan_invariants(mode: str) -> None:
    """For every size pair: dst inside the cell, sides >= 1, src box inside the source."""
    for sw, sh, cw, ch in GRID:
        src, cell = Size(sw, sh), Size(cw, ch)
        plan = cell_fit(src, cell, mode)  # type: ignore[arg-type]
        dst, box = plan.dst, plan.src_box
        where = f"{mode} {src} -> {cell}: {plan}"
        assert dst.width >= 1 and dst.height >= 1, where
        assert dst.x >= 0 and dst.y >= 0 and dst.right <= cw and dst.bottom <= ch, where
        assert 0 <= box.left < box.right <= sw and 0 <= box.top < box.bottom <= sh, where
        if mode == "contain":
            assert dst.width == cw or dst.height == ch, where  # touches two opposite sides
            assert abs(dst.x * 2 + dst.width - cw) <= 1 and abs(dst.y * 2 + dst.height - ch) <= 1, where
        else:
            assert dst == Rect(0, 0, cw, ch), where


def test_contain_aspect_error_is_below_half_a_pixel() -> None:
    """Contain keeps the aspect ratio up to rounding (unless clamped to 1 px)."""
    for sw, sh, cw, ch in GRID:
        dst = cell_fit(Size(sw, sh), Size(cw, ch), "contain").dst
        exact_h = Fraction(sh * dst.width, sw)
        exact_w = Fraction(sw * dst.height, sh)
        assert min(abs(dst.height - exact_h), abs(dst.width - exact_w)) <= Fraction(1, 2) or 1 in dst.size


def test_cover_box_aspect_is_closest_whole_pixel() -> None:
    """The cover box's aspect matches the cell's within half a source pixel."""
    for sw, sh, cw, ch in GRID:
        box = cell_fit(Size(sw, sh), Size(cw, ch), "cover").src_box
        width, height = box.right - box.left, box.bottom - box.top
        if width == sw and height < sh:
            assert abs(height - Fraction(sw * ch, cw)) <= Fraction(1, 2) or height == 1
        if height == sh and width < sw:
            assert abs(width - Fraction(sh * cw, ch)) <= Fraction(1, 2) or width == 1


# --- errors -------------------------------------------------------------------------------------


def test_unknown_mode_raises() -> None:
    """An unknown fit mode names the option, the valid values and the bad value."""
    with pytest.raises(CollageConfigError, match=r"fit_mode must be one of 'contain', 'cover', 'stretch', got 'fill'"):
        cell_fit(Size(4, 4), Size(2, 2), "fill")  # type: ignore[arg-type]
    with pytest.raises(CollageConfigError, match="got 'fill'"):
        upscale_factor(Size(4, 4), Size(2, 2), "fill")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("src", "cell", "crop", "error", "pattern"),
    [
        ((0, 5), (4, 4), None, CollageInputError, r"source image must be at least 1x1 px, got 0x5"),
        ((5, 5), (0, 4), None, LayoutError, r"cell must be at least 1x1 px, got 0x4"),
        ((5, 5), (4, 4), Box(0, 0, 6, 5), CollageInputError, r"lie inside the 5x5 image, got \(0, 0, 6, 5\)"),
        ((5, 5), (4, 4), Box(-1, 0, 3, 5), CollageInputError, r"keep 0 <= left < right <= 5"),
        ((5, 5), (4, 4), Box(2, 0, 2, 5), CollageInputError, r"non-empty"),
        ((5, 5), (4, 4), Box(0.5, 0, 3, 5), CollageInputError, r"whole pixels, got \(0\.5, 0, 3, 5\)"),
    ],
    ids=["empty-source", "empty-cell", "crop-right-outside", "crop-negative", "crop-empty", "crop-fractional"],
)
def test_plan_errors(
    src: tuple[int, int], cell: tuple[int, int], crop: Box | None, error: type[Exception], pattern: str
) -> None:
    """Bad sizes and crop boxes raise typed errors that say what was wrong."""
    with pytest.raises(error, match=pattern):
        cell_fit(Size(*src), Size(*cell), "contain", crop)


def test_fit_image_rejects_palette_images() -> None:
    """Palette images would be resized with NEAREST by Pillow, so they are refused."""
    with pytest.raises(CollageInputError, match=r"got mode 'P'; convert it with images.to_rgb"):
        fit_image(make_image((4, 4), 0, mode="P"), Size(2, 2), "contain")


# --- fit_image pixels ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["contain", "cover", "stretch"])
@pytest.mark.parametrize(
    ("src", "cell"), [((40, 20), (10, 10)), ((1, 50), (10, 10)), ((50, 1), (7, 3)), ((3, 3), (9, 5))]
)
def test_fit_image_solid_matches_plan(mode: str, src: tuple[int, int], cell: tuple[int, int]) -> None:
    """The output has the planned size, the input's mode and (for a solid input) its exact colour."""
    image = make_image(src, RED)
    fitted, rect = fit_image(image, Size(*cell), mode)  # type: ignore[arg-type]
    assert rect == cell_fit(Size(*src), Size(*cell), mode).dst  # type: ignore[arg-type]
    assert fitted.size == (rect.width, rect.height)
    assert fitted.mode == "RGB"
    assert solid_color_at(np.asarray(fitted), Rect(0, 0, rect.width, rect.height)) == RED


@pytest.mark.parametrize("mode", ["contain", "cover", "stretch"])
def test_fit_image_uses_only_the_crop(mode: str) -> None:
    """Pixels outside the crop box never reach the output, not even through the filter's support."""
    image = make_image((30, 12), RED)
    image.paste(GREEN, (10, 0, 20, 12))
    fitted, rect = fit_image(image, Size(5, 7), mode, Box(10, 0, 20, 12))  # type: ignore[arg-type]
    assert solid_color_at(np.asarray(fitted), Rect(0, 0, rect.width, rect.height)) == GREEN


@pytest.mark.usefixtures("pillow_resampler")  # byte-equal to ImageOps: Pillow's resampler
def test_fit_image_cover_keeps_the_centre() -> None:
    """Cover on a red|blue|red strip keeps the blue centre.

    Its edge columns are filtered with their red neighbours, exactly as ImageOps.fit does (the
    trim is not a user crop).
    """
    image = make_image((30, 10), RED)
    image.paste(BLUE, (10, 0, 20, 10))
    fitted, _ = fit_image(image, Size(4, 4), "cover")
    assert solid_color_at(np.asarray(fitted), Rect(1, 0, 2, 4)) == BLUE
    assert fitted.tobytes() == ImageOps.fit(image, (4, 4), method=LANCZOS).tobytes()


def test_fit_image_is_deterministic_and_returns_a_new_image() -> None:
    """Same input, same bytes; identity fits still return a copy."""
    image = gradient((37, 23))
    first, _ = fit_image(image, Size(16, 16), "contain")
    second, _ = fit_image(image, Size(16, 16), "contain")
    assert first.tobytes() == second.tobytes()
    same, rect = fit_image(image, Size(37, 23), "contain")
    assert rect == Rect(0, 0, 37, 23) and same is not image and same.tobytes() == image.tobytes()


def test_fit_image_large_downscale_close_to_full_lanczos() -> None:
    """The reducing_gap shortcut (used at >= 2x REDUCING_GAP shrink) stays close to a full LANCZOS pass."""
    y, x = np.mgrid[0:480, 0:640]
    smooth = np.stack([x * 255 // 639, y * 255 // 479, (x + y) * 255 // 1118], axis=-1).astype(np.uint8)
    image = Image.fromarray(smooth)
    fitted, rect = fit_image(image, Size(40, 40), "contain")
    assert 640 / rect.width >= 2 * REDUCING_GAP
    reference = image.resize(fitted.size, LANCZOS)
    diff = np.abs(np.asarray(fitted, dtype=int) - np.asarray(reference, dtype=int))
    assert diff.max() <= 2


# --- agreement with PIL.ImageOps ----------------------------------------------------------------


def _is_tie(numerator: int, denominator: int) -> bool:
    return Fraction(numerator, denominator) % 1 == Fraction(1, 2)


def _pillow_contain_size(src: tuple[int, int], cell: tuple[int, int]) -> tuple[int, int] | None:
    """ImageOps.contain's size, or None where it collapses a side to 0 px.

    Pillow 13 returns the 0-px image, Pillow 12 raises "height and width must be > 0".
    """
    try:
        size = ImageOps.contain(make_image(src, RED), cell).size
    except ValueError:
        return None
    return None if 0 in size else size


def test_contain_size_matches_imageops_contain() -> None:
    """Sizes equal ImageOps.contain except where Pillow rounds a tie to even or returns 0 px."""
    compared = 0
    for sw, sh, cw, ch in GRID:
        reference = _pillow_contain_size((sw, sh), (cw, ch))
        ours = cell_fit(Size(sw, sh), Size(cw, ch), "contain").dst
        tie = _is_tie(sh * cw, sw) or _is_tie(sw * ch, sh)
        if reference is None or tie:
            assert ours.width >= 1
            assert ours.height >= 1
            continue
        assert (ours.width, ours.height) == reference, f"{sw}x{sh} -> {cw}x{ch}"
        compared += 1
    assert compared > len(GRID) // 2


def test_contain_differs_from_pillow_on_purpose() -> None:
    """Pillow gives a 0-px side for 1x50 in 10x10 and rounds 2.5 to 2; we give 1 px and round up."""
    assert _pillow_contain_size((1, 50), (10, 10)) is None
    assert cell_fit(Size(1, 50), Size(10, 10), "contain").dst.width == 1
    assert ImageOps.contain(make_image((8, 5), RED), (4, 4)).size == (4, 2)
    assert cell_fit(Size(8, 5), Size(4, 4), "contain").dst.size == Size(4, 3)


@pytest.mark.usefixtures("pillow_resampler")  # byte-equal to ImageOps: Pillow's resampler
@pytest.mark.parametrize(
    ("src", "cell"), [((64, 48), (32, 32)), ((48, 64), (20, 30)), ((30, 30), (12, 12)), ((50, 20), (25, 10))]
)
def test_contain_pixels_match_imageops_contain(src: tuple[int, int], cell: tuple[int, int]) -> None:
    """Same size, same LANCZOS call: the pixels are identical to ImageOps.contain."""
    image = gradient(src)
    fitted, _ = fit_image(image, Size(*cell), "contain")
    reference = ImageOps.contain(image, cell, method=LANCZOS)
    assert fitted.size == reference.size
    assert fitted.tobytes() == reference.tobytes()


@pytest.mark.usefixtures("pillow_resampler")  # byte-equal to ImageOps: Pillow's resampler
@pytest.mark.parametrize(("src", "cell"), [((64, 48), (32, 32)), ((48, 64), (21, 30)), ((20, 10), (10, 9))])
def test_contain_then_render_matches_imageops_pad(src: tuple[int, int], cell: tuple[int, int]) -> None:
    """Contain + render on a fill background equals ImageOps.pad when the gap is even."""
    image = gradient(src)
    fitted, rect = fit_image(image, Size(*cell), "contain")
    assert (cell[0] - rect.width) % 2 == 0 and (cell[1] - rect.height) % 2 == 0
    ours = render_frame(Size(*cell), [(rect, fitted)], FILL).image
    reference = np.asarray(ImageOps.pad(image, cell, method=LANCZOS, color=FILL))
    np.testing.assert_array_equal(ours, reference)


@pytest.mark.usefixtures("pillow_resampler")  # byte-equal to ImageOps: Pillow's resampler
@pytest.mark.parametrize(
    ("src", "cell"), [((40, 20), (10, 10)), ((30, 60), (15, 15)), ((64, 48), (32, 16)), ((48, 48), (12, 12))]
)
def test_cover_pixels_match_imageops_fit(src: tuple[int, int], cell: tuple[int, int]) -> None:
    """Where ImageOps.fit's float crop box is whole pixels, the pixels are identical."""
    image = gradient(src)
    fitted, rect = fit_image(image, Size(*cell), "cover")
    reference = ImageOps.fit(image, cell, method=LANCZOS)
    assert rect == Rect(0, 0, *cell)
    assert fitted.tobytes() == reference.tobytes()


@pytest.mark.skipif(not hasattr(ImageOps, "cover"), reason="ImageOps.cover needs Pillow >= 10.1")
@pytest.mark.parametrize(("src", "cell"), [((40, 20), (10, 10)), ((30, 60), (15, 15)), ((7, 3), (5, 5))])
def test_cover_factor_matches_imageops_cover(src: tuple[int, int], cell: tuple[int, int]) -> None:
    """ImageOps.cover scales by the same factor that upscale_factor reports for cover."""
    covered = ImageOps.cover(make_image(src, RED), cell)
    factor = upscale_factor(Size(*src), Size(*cell), "cover")
    assert covered.size == (round(src[0] * factor), round(src[1] * factor))
