"""The fast source path ``images.load_fitted``: same cells as ``fit_image(open_image(...))``, decoded smaller.

Quality contract (see ``fit.DRAFT_GAPS``): formats that cannot reduce while decoding give the
reference bytes exactly; reduced JPEG decodes stay within ``PHOTO_PSNR`` dB of the full-size
decode on photo-like content, and show no more aliasing than the reference on a zone plate and
on fine stripes. No timing is asserted here (see benchmarks/).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from collage_ext.core.errors import CollageConfigError, CollageInputError, LayoutError
from collage_ext.core.types import Box, Rect, Size
from collage_ext.pixels.fit import (
    DRAFT_GAPS,
    ScaledCellFit,
    apply_fit,
    cell_fit,
    choose_draft_scale,
    fit_image,
    scaled_cell_fit,
)
from collage_ext.pixels.images import _REVERSED_AXES, _TRANSPOSE_FOR_ORIENTATION, load_fitted, open_image
from tests.common import FILL, GREEN, RED, make_image, save
from tests.imaging import float_lanczos, photo, psnr, stop_band_residue, zone_plate

#: Reduced JPEG decodes vs the full-size decode on photo-like content (measured 50-56 dB).
PHOTO_PSNR = 45.0
#: Zone plate: the reduced decode's aliasing residue (RMS gray levels in the stop band) may exceed
#: a float LANCZOS reference's by at most this much (measured: +0.0 to +1.27, the most at 1/4).
ALIAS_MARGIN = 1.5
#: Zone plate PSNR against a float LANCZOS reference, pass band included (measured 42.2-46.7 dB).
ZONE_PSNR = 41.5

MODES = ("contain", "cover", "stretch")


def save_jpeg(image: Image.Image, path: Path, *, orientation: int = 1, **params: Any) -> Path:
    """Save as JPEG (quality 92 unless given), with an EXIF orientation tag when not 1."""
    params.setdefault("quality", 92)
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        params["exif"] = exif
    return save(image, path, **params)


def reference(path: Path, cell: Size, mode: str, crop: Box | None = None) -> tuple[Image.Image, Rect]:
    """The slow path the fast one must match: full decode, then one LANCZOS pass."""
    return fit_image(open_image(path), cell, mode, crop)  # type: ignore[arg-type]


@pytest.fixture
def drafts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Record the scale of every JPEG draft() call (Pillow's own method still runs)."""
    calls: list[int] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None) -> Any:
        before = self.size
        result = original(self, mode, size)
        if result is not None:
            calls.append(round(before[0] / result[1][2]))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    yield calls


# --- geometry: choose_draft_scale / scaled_cell_fit ---------------------------------------------

GRID = list(itertools.product([7, 100, 333, 1001, 4000], [9, 240, 999, 3000], [1, 40, 100, 513], [1, 64, 333]))


@pytest.mark.parametrize("mode", MODES)
def test_draft_scale_never_leaves_fewer_pixels_than_needed(mode: str) -> None:
    """Whatever the sizes, the reduced region keeps >= gap x the output pixels on both axes."""
    for sw, sh, cw, ch in GRID:
        src, cell = Size(sw, sh), Size(cw, ch)
        for flipped in itertools.product([False, True], repeat=2):
            scale = choose_draft_scale(src, cell, mode, flipped=flipped)  # type: ignore[arg-type]
            plan = scaled_cell_fit(src, cell, mode, scale=scale, flipped=flipped)  # type: ignore[arg-type]
            where = f"{mode} {src} -> {cell} flipped={flipped}: {plan}"
            assert plan.dst == cell_fit(src, cell, mode).dst, where  # type: ignore[arg-type]
            if scale > 1:
                assert plan.box.width >= DRAFT_GAPS[scale] * plan.dst.width, where
                assert plan.box.height >= DRAFT_GAPS[scale] * plan.dst.height, where
            cut = plan.cut
            assert 0 <= cut.left < cut.right <= -(-sw // scale) and 0 <= cut.top < cut.bottom <= -(-sh // scale)
            assert (
                0 <= plan.box.left < plan.box.right <= cut.width and 0 <= plan.box.top < plan.box.bottom <= cut.height
            )


@pytest.mark.parametrize("mode", MODES)
def test_scale_one_is_cell_fit(mode: str) -> None:
    """At full size the scaled plan is cell_fit itself (box relative to the crop)."""
    for sw, sh, cw, ch in GRID:
        src, cell = Size(sw, sh), Size(cw, ch)
        crop = Box(sw // 5, sh // 7, sw - sw // 9, sh) if sw >= 9 and sh >= 9 else None
        plan = cell_fit(src, cell, mode, crop)  # type: ignore[arg-type]
        scaled = scaled_cell_fit(src, cell, mode, crop)  # type: ignore[arg-type]
        region = crop or Box(0, 0, sw, sh)
        assert scaled.cut == region
        assert scaled.box == Box(
            plan.src_box.left - region.left,
            plan.src_box.top - region.top,
            plan.src_box.right - region.left,
            plan.src_box.bottom - region.top,
        )


SCALED_CASES = [
    # src, cell, mode, crop, scale, flipped, expected plan
    (
        (3000, 4000),
        (512, 1024),
        "contain",
        None,
        2,
        (False, False),
        ScaledCellFit(2, Box(0, 0, 1500, 2000), Box(0, 0, 1500, 2000), Rect(0, 170, 512, 683)),
    ),
    (
        (3001, 4000),
        (100, 100),
        "contain",
        None,
        8,
        (False, False),
        ScaledCellFit(8, Box(0, 0, 376, 500), Box(0, 0, 375.125, 500), Rect(12, 0, 75, 100)),
    ),
    (
        (3001, 4000),
        (100, 100),
        "contain",
        None,
        8,
        (True, False),
        ScaledCellFit(8, Box(0, 0, 376, 500), Box(0.875, 0, 376, 500), Rect(12, 0, 75, 100)),
    ),
    (
        (4000, 3000),
        (64, 64),
        "cover",
        None,
        4,
        (False, False),
        ScaledCellFit(4, Box(0, 0, 1000, 750), Box(125, 0, 875, 750), Rect(0, 0, 64, 64)),
    ),
    (
        (1000, 1000),
        (50, 50),
        "contain",
        Box(3, 10, 997, 1000),
        4,
        (False, False),
        ScaledCellFit(4, Box(1, 3, 249, 250), Box(0, 0, 248, 247), Rect(0, 0, 50, 50)),
    ),
    (
        (1000, 1000),
        (50, 50),
        "contain",
        Box(3, 10, 997, 1000),
        4,
        (True, True),
        ScaledCellFit(4, Box(1, 3, 249, 250), Box(0, 0, 248, 247), Rect(0, 0, 50, 50)),
    ),
]


@pytest.mark.parametrize(
    ("src", "cell", "mode", "crop", "scale", "flipped", "expected"),
    SCALED_CASES,
    ids=[
        "half",
        "eighth-partial-pixel",
        "eighth-flipped-offset",
        "quarter-cover",
        "crop-rounds-inward",
        "crop-inward-flipped",
    ],
)
def test_plan_scaled_fit_table(
    src: tuple[int, int],
    cell: tuple[int, int],
    mode: str,
    crop: Box | None,
    scale: int,
    flipped: tuple[bool, bool],
    expected: ScaledCellFit,
) -> None:
    """Exact reduced plans: partial last pixels, flipped offsets, crops cut inward."""
    plan = scaled_cell_fit(Size(*src), Size(*cell), mode, crop, scale=scale, flipped=flipped)  # type: ignore[arg-type]
    assert plan == expected


def test_plan_scaled_fit_errors() -> None:
    """A crop thinner than one reduced pixel, or a bad scale, is refused with the reason."""
    with pytest.raises(LayoutError, match=r"smaller than one decoded pixel at scale 1/8"):
        scaled_cell_fit(Size(100, 100), Size(4, 4), "contain", Box(3, 3, 9, 50), scale=8)
    with pytest.raises(ValueError, match=r"scale must be a positive integer, got 0"):
        scaled_cell_fit(Size(100, 100), Size(4, 4), "contain", scale=0)
    with pytest.raises(CollageConfigError, match="got 'fill'"):
        choose_draft_scale(Size(100, 100), Size(4, 4), "fill")  # type: ignore[arg-type]


def test_choose_draft_scale_table() -> None:
    """The largest reduction that keeps the gap; cover and crops measure the region really used."""
    assert choose_draft_scale(Size(3000, 4000), Size(512, 1024), "contain") == 2
    assert choose_draft_scale(Size(3000, 4000), Size(512, 512), "contain") == 2
    assert choose_draft_scale(Size(3000, 4000), Size(320, 320), "contain") == 4
    assert choose_draft_scale(Size(3000, 4000), Size(128, 128), "contain") == 8
    assert choose_draft_scale(Size(3000, 4000), Size(512, 1024), "cover") == 1  # 2000x4000 -> 512x1024
    assert choose_draft_scale(Size(4000, 3000), Size(96, 96), "cover") == 8  # 375 px left for 96
    assert choose_draft_scale(Size(4000, 3000), Size(128, 128), "cover") == 4  # 375 for 128: 2.9x < 3
    assert choose_draft_scale(Size(4000, 3000), Size(96, 96), "cover", Box(0, 0, 1000, 1000)) == 2
    assert choose_draft_scale(Size(64, 64), Size(8, 8), "contain") == 2  # 32 px left for 8: below 3x at 1/4


# --- the orientation table ----------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_reversed_axes_match_pillow_transposes(orientation: int) -> None:
    """Every stored pixel maps to the reduced pixel that holds it after the EXIF transpose."""
    stored_w, stored_h, scale = 21, 13, 4
    method = _TRANSPOSE_FOR_ORIENTATION.get(orientation)
    swap = orientation >= 5
    upright_w, upright_h = (stored_h, stored_w) if swap else (stored_w, stored_h)
    flip_x, flip_y = _REVERSED_AXES[orientation]
    for xs, ys in itertools.product(range(stored_w), range(stored_h)):
        full = np.zeros((stored_h, stored_w), np.uint8)
        full[ys, xs] = 255
        reduced = np.zeros((-(-stored_h // scale), -(-stored_w // scale)), np.uint8)
        reduced[ys // scale, xs // scale] = 255  # where libjpeg's reduced decode puts that pixel
        up_full = Image.fromarray(full) if method is None else Image.fromarray(full).transpose(method)
        up_reduced = Image.fromarray(reduced) if method is None else Image.fromarray(reduced).transpose(method)
        (yo,), (xo,) = np.nonzero(np.asarray(up_full))
        (yd,), (xd,) = np.nonzero(np.asarray(up_reduced))
        off_x = (-(-upright_w // scale) - upright_w / scale) if flip_x else 0.0
        off_y = (-(-upright_h // scale) - upright_h / scale) if flip_y else 0.0
        assert xd <= (xo + 0.5) / scale + off_x < xd + 1
        assert yd <= (yo + 0.5) / scale + off_y < yd + 1


# --- exactness where nothing is reduced ---------------------------------------------------------


def _png_variants(tmp_path: Path) -> list[Path]:
    base = photo((90, 70), seed=3)
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        save(base, tmp_path / "rgb.png"),
        save(base.convert("L"), tmp_path / "gray.png"),
        save(rgba, tmp_path / "rgba.png"),
        save(base.quantize(64), tmp_path / "palette.png"),
        save(base, tmp_path / "rotated.png", exif=exif),
        save(base, tmp_path / "lossless.webp", lossless=True),
        save(base.convert("L"), tmp_path / "gray.jpg", quality=90),  # cell too big to reduce
        save(base, tmp_path / "rgb.jpg", quality=90),
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cell", [(40, 40), (25, 60), (90, 70), (200, 120)], ids=["small", "tall", "same", "larger"])
def test_unreduced_sources_match_reference_bytes(tmp_path: Path, mode: str, cell: tuple[int, int]) -> None:
    """PNG/WebP (any mode, EXIF rotated) and JPEGs too small to reduce: the exact reference bytes."""
    for path in _png_variants(tmp_path):
        for crop in (None, Box(5, 3, 61, 50)):
            expected, rect = reference(path, Size(*cell), mode, crop)
            fitted, fast_rect = load_fitted(path, Size(*cell), mode, crop)  # type: ignore[arg-type]
            assert fast_rect == rect and fitted.mode == "RGB", path.name
            assert fitted.tobytes() == expected.tobytes(), f"{path.name} {cell} {mode} {crop}"


def test_identity_fit_is_detached_from_the_file(tmp_path: Path) -> None:
    """A cell of the image's own size returns a copy that outlives the closed file."""
    path = save(photo((40, 30)), tmp_path / "same.bmp")  # BMP pixels are memory-mapped
    fitted, rect = load_fitted(path, Size(40, 30))
    assert rect == Rect(0, 0, 40, 30)
    assert fitted.tobytes() == open_image(path).tobytes()


# --- reduced JPEG decodes -----------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9), ids=[f"orientation-{o}" for o in range(1, 9)])
def test_reduced_decode_close_to_reference_every_orientation(
    tmp_path: Path, orientation: int, drafts: list[int]
) -> None:
    """Odd sizes (partial last reduced pixel) under every EXIF transpose stay within PHOTO_PSNR."""
    path = save_jpeg(photo((1203, 901), seed=orientation), tmp_path / "photo.jpg", orientation=orientation)
    cases = [
        (Size(120, 150), "contain", None),
        (Size(128, 96), "cover", None),
        (Size(96, 96), "contain", Box(101, 37, 803, 590)),
        (Size(64, 200), "stretch", None),
    ]
    for cell, mode, crop in cases:
        drafts.clear()
        expected, rect = reference(path, cell, mode, crop)
        fitted, fast_rect = load_fitted(path, cell, mode, crop)  # type: ignore[arg-type]
        assert fast_rect == rect
        assert drafts and drafts[-1] > 1, f"{cell} {mode}: no reduced decode"
        assert psnr(fitted, expected) >= PHOTO_PSNR, f"{cell} {mode} {crop} at 1/{drafts[-1]}"
        if mode == "contain" and crop is None:  # the measure: a float LANCZOS resize of the full decode
            assert psnr(fitted, float_reference(path, cell)) >= PHOTO_PSNR


def float_reference(path: Path, cell: Size) -> Image.Image:
    """What every path approximates: full decode, LANCZOS per channel in 32-bit float (contain)."""
    image = open_image(path)
    dst = cell_fit(Size(*image.size), cell, "contain").dst
    return float_lanczos(image, (dst.width, dst.height))


def pillow_only(monkeypatch: pytest.MonkeyPatch, path: Path, cell: Size) -> Image.Image:
    """The same reduced path with Pillow's resampler (collage_ext before libvips), for no-regression checks."""
    from collage_ext.pixels import resample

    with monkeypatch.context() as patch:
        patch.setattr(resample, "_pyvips", lambda: None)
        return load_fitted(path, cell, "contain")[0]


@pytest.mark.parametrize(
    ("cell", "scale"), [((355, 355), 2), ((133, 133), 4), ((66, 66), 8)], ids=["half", "quarter", "eighth"]
)
def test_zone_plate_no_aliasing(
    tmp_path: Path, cell: tuple[int, int], scale: int, drafts: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the smallest gap each reduction allows, the zone plate aliases little more than an ideal resize.

    Measured residue (gray levels RMS) reduced / float reference: 1.16 / 1.15, 1.99 / 0.72, 1.63 / 1.34;
    the same with Pillow's resampler: 1.16, 2.01, 1.60. The DCT reduction's leak is what remains.
    """
    n = 1600
    path = save_jpeg(zone_plate(n), tmp_path / "zone.jpg", quality=95, subsampling=0)
    ideal = float_reference(path, Size(*cell))
    fitted, _ = load_fitted(path, Size(*cell), "contain")
    assert drafts == [scale]
    assert stop_band_residue(fitted, n) <= stop_band_residue(ideal, n) + ALIAS_MARGIN
    assert stop_band_residue(fitted, n) <= stop_band_residue(pillow_only(monkeypatch, path, Size(*cell)), n) + 0.1
    assert psnr(fitted, ideal) >= ZONE_PSNR


def test_zone_plate_aliases_without_the_gap(tmp_path: Path, drafts: list[int]) -> None:
    """The gap matters: drafting straight down to the cell size (gap 1) leaves visible false rings."""
    n = 1600
    path = save_jpeg(zone_plate(n), tmp_path / "zone.jpg", quality=95, subsampling=0)
    with Image.open(path) as raw:
        raw.draft(None, (n // 4, n // 4))
        reduced = raw.convert("RGB")
    plan = scaled_cell_fit(Size(n, n), Size(400, 400), "contain", scale=4)
    naive = apply_fit(reduced, plan)
    expected, _ = reference(path, Size(400, 400), "contain")
    assert stop_band_residue(naive, n) > stop_band_residue(expected, n) + 4 * ALIAS_MARGIN
    fast_but_aliased, _ = load_fitted(path, Size(400, 400), draft_gaps={4: 1.0})  # the speed knob does the same
    assert drafts[-1] == 4 and fast_but_aliased.tobytes() == naive.tobytes()
    calls = len(drafts)
    load_fitted(path, Size(100, 100), draft_gaps={})
    assert len(drafts) == calls  # an empty table never reduces


@pytest.mark.parametrize("period", [2, 3, 5])
@pytest.mark.parametrize("angle", [0, 90, 30])
def test_fine_stripes_average_out(tmp_path: Path, period: int, angle: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stripes finer than the cell can show come out nearly flat, no less flat than before libvips.

    At 1/4 scale libjpeg leaks a +-3 level ripple on full-contrast period-5 stripes (std 2.7-2.9 where
    a float LANCZOS resize of the full decode gives 0.05); Pillow's resampler shows the same.
    """
    y, x = np.mgrid[0:960, 0:1280].astype(np.float64)
    t = math.radians(angle)
    phase = (x * math.cos(t) + y * math.sin(t)) * 2 * math.pi / period
    stripes = Image.fromarray(np.where(np.cos(phase) >= 0, 255, 0).astype(np.uint8), "L")
    path = save_jpeg(stripes, tmp_path / "stripes.jpg", quality=95)
    fitted, _ = load_fitted(path, Size(100, 75), "contain")
    before = pillow_only(monkeypatch, path, Size(100, 75))
    inner = (slice(4, -4), slice(4, -4))  # edges differ: LANCZOS clamps at the image border
    ripple = np.asarray(fitted, float)[inner].std()
    assert ripple <= np.asarray(before, float)[inner].std() + 0.5
    assert ripple <= 3.5
    assert psnr(fitted, before) >= PHOTO_PSNR


def test_reduced_crop_is_a_hard_edge(tmp_path: Path, drafts: list[int]) -> None:
    """A crop edge off the reduced grid rounds inward: no green from outside the crop leaks in."""
    image = make_image((1600, 1200), GREEN)
    image.paste(RED, (203, 101, 1397, 1099))
    path = save_jpeg(image, tmp_path / "framed.jpg", quality=100, subsampling=0)
    for mode in MODES:
        fitted, _ = load_fitted(path, Size(100, 80), mode, Box(203, 101, 1397, 1099))  # type: ignore[arg-type]
        pixels = np.asarray(fitted, dtype=int)
        assert drafts[-1] > 1
        assert pixels[..., 1].max() <= 6 and pixels[..., 0].min() >= 248, mode  # red only


def test_jpeg_variants(tmp_path: Path, drafts: list[int]) -> None:
    """CMYK converts after the reduced decode, gray is resampled first, progressive and 4:4:4 reduce too."""
    base = photo((1200, 900), seed=5)
    paths = [
        save_jpeg(base.convert("CMYK"), tmp_path / "cmyk.jpg"),
        save_jpeg(base.convert("L"), tmp_path / "g.jpg"),
        save_jpeg(base, tmp_path / "progressive.jpg", progressive=True),
        save_jpeg(base, tmp_path / "444.jpg", subsampling=0),
    ]
    for path in paths:
        expected, _ = reference(path, Size(100, 100), "contain")
        fitted, _ = load_fitted(path, Size(100, 100), "contain")
        assert fitted.mode == "RGB" and drafts[-1] == 4
        assert psnr(fitted, expected) >= PHOTO_PSNR, path.name


# --- errors: as open_image ----------------------------------------------------------------------


def test_errors_name_the_file(tmp_path: Path) -> None:
    """Missing, empty, truncated files and bad options fail like open_image + fit_image."""
    with pytest.raises(CollageInputError, match=r"image .*missing.jpg does not exist"):
        load_fitted(tmp_path / "missing.jpg", Size(10, 10))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(CollageInputError, match=r"is empty \(0 bytes\)"):
        load_fitted(empty, Size(10, 10))
    whole = save_jpeg(photo((800, 600)), tmp_path / "whole.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CollageInputError, match=r"truncated.jpg is truncated or corrupt"):
        load_fitted(truncated, Size(50, 50))
    good = save(photo((40, 40)), tmp_path / "good.png")
    with pytest.raises(CollageConfigError, match="got 'fill'"):
        load_fitted(good, Size(10, 10), "fill")  # type: ignore[arg-type]
    with pytest.raises(CollageInputError, match="crop box must be non-empty and lie inside"):
        load_fitted(good, Size(10, 10), "contain", Box(0, 0, 41, 40))
    with pytest.raises(CollageConfigError, match="fill must be three integers"):
        load_fitted(good, Size(10, 10), fill=(1, 2))  # type: ignore[arg-type]


def test_transparency_uses_the_fill(tmp_path: Path) -> None:
    """Transparent pixels become the fill colour, as in open_image."""
    path = save(make_image((30, 30), (255, 0, 0, 0), mode="RGBA"), tmp_path / "clear.png")
    fitted, _ = load_fitted(path, Size(10, 10), fill=FILL)
    assert np.unique(np.asarray(fitted).reshape(-1, 3), axis=0).tolist() == [list(FILL)]
