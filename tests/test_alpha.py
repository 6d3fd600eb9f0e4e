"""sd-scripts' ``alpha_mask`` in collage frames: each cell carries its source's own alpha, registered with its pixels.

The alpha is read from every kind of transparency ``to_rgb`` composites (alpha modes, palette
alpha, tRNS colour keys, 16-bit keys), fitted with the same plan as the pixels (crop box, cover trim,
EXIF orientation, soft shrink) and pasted where the pixels go; ``frames.with_alpha`` then adds the
padding weight of ``collage_loss_mask``. tests/sdscripts/test_loss_mask.py checks the same through
sd-scripts' real loader and masked loss.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from collage_ext.commands.preview import CHECKER, viewable
from collage_ext.core.config import CollageConfig
from collage_ext.core.types import Box, Size
from collage_ext.pixels.fit import cell_fit
from collage_ext.pixels.images import alpha_channel, load_fitted, load_fitted_with_alpha, to_rgb
from collage_ext.plan.collage import Collage, Source, load_source
from collage_ext.plan.frames import frame_pixels, uses_alpha, with_alpha
from collage_ext.plan.jobs import frame_digest
from tests.common import FILL, make_image, save

# --- alpha_channel: every kind of transparency, the same pixels to_rgb composites -------------------


def _palette_with_trns() -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = bytes([0, 255])
    return image


def _rgba_palette() -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 255, 0, 0, 0, 0, 255, 255], rawmode="RGBA")
    image.putpixel((1, 0), 1)
    return image


def _gif_frame() -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((1, 0), 1)
    return image


def _color_key() -> Image.Image:
    image = make_image((2, 1), (255, 0, 0))
    image.putpixel((1, 0), (0, 0, 255))
    image.info["transparency"] = (255, 0, 0)
    return image


def _key16() -> Image.Image:
    image = Image.fromarray(np.array([[1000, 1001]], dtype=np.uint16))
    image.info["transparency"] = 1000
    return image


def _two(mode: str, transparent: Any, opaque: Any) -> Image.Image:
    image = make_image((2, 1), transparent, mode)
    image.putpixel((1, 0), opaque)
    return image


TRANSPARENT_CASES = {
    "rgba": lambda: _two("RGBA", (255, 0, 0, 0), (0, 0, 255, 255)),
    "premultiplied-rgba": lambda: _two("RGBa", (0, 0, 0, 0), (0, 0, 255, 255)),
    "la": lambda: _two("LA", (9, 0), (200, 255)),
    "premultiplied-la": lambda: _two("La", (0, 0), (200, 255)),
    "pa": lambda: _two("PA", (0, 0), (0, 255)),
    "palette-trns": _palette_with_trns,
    "palette-rgba": _rgba_palette,
    "rgb-color-key": _color_key,
    "i16-color-key": _key16,
}


@pytest.mark.parametrize("make", TRANSPARENT_CASES.values(), ids=TRANSPARENT_CASES.keys())
def test_alpha_channel_reads_every_kind_of_transparency(make: Any) -> None:
    """Left pixel transparent, right opaque, in each mode; masked exactly where to_rgb shows the fill."""
    image = make()
    alpha = alpha_channel(image)
    assert alpha is not None and alpha.mode == "L" and alpha.size == image.size
    assert list(np.asarray(alpha)[0]) == [0, 255]
    assert tuple(np.asarray(to_rgb(image, fill=FILL))[0, 0]) == FILL  # the pixel composited onto the fill


@pytest.mark.parametrize(
    ("mode", "color"),
    [
        ("RGB", (1, 2, 3)),
        ("L", 7),
        ("RGBA", (1, 2, 3, 255)),
        ("LA", (5, 255)),
        ("I;16", 300),
        ("F", 0.5),
        ("CMYK", (0, 0, 0, 0)),
    ],
)
def test_alpha_channel_none_when_fully_opaque(mode: str, color: Any) -> None:
    """No transparency (or alpha 255 everywhere): None, the source is fully weighted at no cost."""
    assert alpha_channel(make_image((3, 2), color, mode)) is None


def test_alpha_channel_keeps_partial_alpha() -> None:
    """Soft edges (anti-aliased cut-outs) keep their partial weights."""
    image = Image.new("RGBA", (3, 1), (10, 20, 30, 0))
    image.putpixel((1, 0), (10, 20, 30, 128))
    image.putpixel((2, 0), (10, 20, 30, 255))
    alpha = alpha_channel(image)
    assert alpha is not None and list(np.asarray(alpha)[0]) == [0, 128, 255]


# --- load_fitted_with_alpha: the alpha follows the pixels' geometry --------------------------------

W, H = 96, 64
INVERSE = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def _pattern(width: int, height: int) -> np.ndarray:
    """An asymmetric 8-bit pattern: a transparent block, a diagonal ramp and soft steps."""
    ys, xs = np.indices((height, width))
    values = ((xs * 5 + ys * 3) % 256).astype(np.uint8)
    values[: height // 3, : width // 4] = 0
    values[height // 2 :, width // 2 : width // 2 + 7] = 255
    return values


def _twin_files(tmp: Path, orientation: int = 1) -> tuple[Path, Path, np.ndarray]:
    """The same pattern as the alpha of an RGBA PNG and as the gray value of an opaque PNG (same EXIF)."""
    upright = _pattern(W, H)
    rgba = np.dstack(
        [np.full((H, W), 200, np.uint8), np.zeros((H, W), np.uint8), np.full((H, W), 50, np.uint8), upright]
    )
    images = [Image.fromarray(rgba, "RGBA"), Image.fromarray(np.dstack([upright] * 3), "RGB")]
    method = INVERSE[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    paths = []
    for image, name in zip(images, ("alpha.png", "gray.png")):
        stored = image if method is None else image.transpose(method)
        paths.append(save(stored, tmp / f"o{orientation}_{name}", exif=exif))
    return paths[0], paths[1], upright


GEOMETRIES = {
    "contain-shrink": (Size(48, 48), "contain", None, False),
    "cover-trim": (Size(40, 60), "cover", None, False),
    "stretch": (Size(50, 20), "stretch", None, False),
    "crop-box-contain": (Size(30, 30), "contain", Box(10, 5, 70, 50), False),
    "crop-box-cover": (Size(32, 48), "cover", Box(10, 5, 70, 50), False),
    "enlarge": (Size(150, 100), "contain", None, False),
    "soft-shrink": (Size(40, 30), "contain", None, True),
}


@pytest.mark.parametrize("orientation", sorted(INVERSE))
@pytest.mark.parametrize("geometry", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_alpha_is_fitted_like_the_pixels(tmp_path: Path, geometry: tuple[Any, ...], orientation: int) -> None:
    """A source's alpha, fitted, equals the same pattern fitted as opaque pixels: same box, rect, filter."""
    cell, mode, crop, soft = geometry
    alpha_png, gray_png, _ = _twin_files(tmp_path, orientation)
    fitted, rect, alpha = load_fitted_with_alpha(alpha_png, cell, mode, crop, soft_shrink=soft)
    twin, twin_rect = load_fitted(gray_png, cell, mode, crop, soft_shrink=soft)
    assert alpha is not None and rect == twin_rect and alpha.size == fitted.size == twin.size
    np.testing.assert_array_equal(np.asarray(alpha), np.asarray(twin)[:, :, 0])
    same, _ = load_fitted(alpha_png, cell, mode, crop, soft_shrink=soft)
    np.testing.assert_array_equal(np.asarray(fitted), np.asarray(same))  # the RGB bytes do not change


def test_transparent_block_is_zero_where_the_plan_puts_it(tmp_path: Path) -> None:
    """Independent of the resampler: the block mapped through cell_fit is 0 inside, and the cover trim cuts it."""
    alpha_png, _, _ = _twin_files(tmp_path)
    cell = Size(48, 32)  # exactly half size: the block [0, 24) x [0, 21) lands on [0, 12) x [0, 10.5)
    _, rect, alpha = load_fitted_with_alpha(alpha_png, cell, "contain")
    assert alpha is not None and rect.size == cell
    values = np.asarray(alpha)
    assert (values[:7, :9] == 0).all()  # inside the block, 3 px from its edges (Lanczos-3's reach at a 2x shrink)
    assert (values[:7, 15:] > 0).any(axis=1).all()  # beside the block each row has weight again
    cover_cell = Size(20, 40)  # cover trims the sides: a 32-px wide central strip, clear of the block
    plan = cell_fit(Size(W, H), cover_cell, "cover")
    assert plan.src_box.left >= W // 4
    _, _, trimmed = load_fitted_with_alpha(alpha_png, cover_cell, "cover")
    assert trimmed is not None and not (np.asarray(trimmed)[:10] == 0).all(axis=1).any()


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_opaque_files_have_no_alpha(tmp_path: Path, suffix: str) -> None:
    """JPEGs (also decoded reduced) and opaque PNGs (the libvips path) are fully weighted."""
    path = save(make_image((800, 600), (90, 120, 150)), tmp_path / f"plain{suffix}")
    fitted, _, alpha = load_fitted_with_alpha(path, Size(64, 48), "contain")
    assert alpha is None
    np.testing.assert_array_equal(np.asarray(fitted), np.asarray(load_fitted(path, Size(64, 48), "contain")[0]))


FILE_CASES = {
    "palette-png-trns": lambda p: save(_palette_with_trns(), p / "p.png"),
    "la-png": lambda p: save(_two("LA", (9, 0), (200, 255)), p / "la.png"),
    "rgb-png-color-key": lambda p: save(_two("RGB", (255, 0, 0), (0, 0, 255)), p / "key.png", transparency=(255, 0, 0)),
    "gif-transparency": lambda p: save(_gif_frame(), p / "t.gif", transparency=0),
    "rgba-webp": lambda p: save(_two("RGBA", (255, 0, 0, 0), (0, 0, 255, 255)), p / "t.webp", lossless=True),
}


@pytest.mark.parametrize("write", FILE_CASES.values(), ids=FILE_CASES.keys())
def test_transparent_files(tmp_path: Path, write: Any) -> None:
    """Palette, LA, colour-key, GIF and WebP files: the transparent pixel has weight 0, the opaque one 255."""
    path = write(tmp_path)
    with Image.open(path) as raw:
        if tuple(np.asarray(raw.convert("RGBA"))[0, 0])[3] != 0:
            pytest.skip(f"this Pillow wrote {path.name} without its transparency")
    fitted, _, alpha = load_fitted_with_alpha(path, Size(2, 1), "stretch")
    assert alpha is not None and list(np.asarray(alpha)[0]) == [0, 255]
    assert tuple(np.asarray(fitted)[0, 0]) == FILL


def test_16bit_png_color_key(tmp_path: Path) -> None:
    """A 16-bit PNG's colour key is a transparent pixel of weight 0."""
    try:
        path = save(_key16(), tmp_path / "deep.png", transparency=1000)
    except OSError:
        pytest.skip("this Pillow cannot write a 16-bit PNG colour key")
    _, _, alpha = load_fitted_with_alpha(path, Size(2, 1), "stretch")
    assert alpha is not None and list(np.asarray(alpha)[0]) == [0, 255]


# --- Collage.render and frames: the frame's alpha -------------------------------------------------


def _cutout(tmp: Path, name: str, size: tuple[int, int], color: tuple[int, int, int]) -> Source:
    """A character cut-out: opaque centre column band, transparent left quarter and right quarter."""
    width, height = size
    pixels = np.zeros((height, width, 4), np.uint8)
    pixels[:, :, :3] = color
    pixels[:, width // 4 : width - width // 4, 3] = 255
    path = save(Image.fromarray(pixels, "RGBA"), tmp / name)
    return load_source(path, name, caption=name)


def _collage(alpha_mask: bool, **config: Any) -> Collage:
    return Collage(CollageConfig(rate=1.0, layouts=("1x2",), **config), Size(128, 96), alpha_mask=alpha_mask)


def test_cells_carry_their_sources_alpha(tmp_path: Path) -> None:
    """Two cut-outs side by side: each one's transparent quarters are 0 inside its own cell; pixels unchanged."""
    sources = [_cutout(tmp_path, "a.png", (64, 96), (200, 0, 0)), _cutout(tmp_path, "b.png", (64, 96), (0, 0, 200))]
    collage = _collage(True)
    params = collage.make_params(sources, seed=1, epoch=0)
    rendered = collage.render(sources, params, with_mask=True)
    assert rendered.alpha is not None
    for cell, index in zip(params.layout.cells, params.layout.order):
        plan = cell_fit(sources[index].size, cell.size, "contain")
        x0 = cell.x + plan.dst.x
        scale = plan.dst.width / sources[index].size.width
        rows = slice(cell.y + plan.dst.y, cell.y + plan.dst.bottom)
        left_end, right_start = x0 + 16 * scale, x0 + 48 * scale  # the transparent quarters' edges, mapped
        alpha = rendered.alpha[rows]
        assert (alpha[:, x0 : int(left_end) - 1] == 0).all()
        assert (alpha[:, int(right_start) + 2 : x0 + plan.dst.width] == 0).all()
        assert (alpha[:, int(left_end) + 2 : int(right_start) - 1] == 255).all()
    assert rendered.mask is not None and (rendered.alpha[rendered.mask] == 255).all()  # padding: the mask's business
    plain = _collage(False).render(sources, params, with_mask=True)
    assert plain.alpha is None
    np.testing.assert_array_equal(plain.image, rendered.image)


@pytest.mark.parametrize(("loss_mask", "weight"), [(True, 0.25), (True, 0.0), (False, 0.25)])
def test_with_alpha_combines_sources_and_padding(tmp_path: Path, loss_mask: bool, weight: float) -> None:
    """Source alpha inside the cells, pad weight on padding with collage_loss_mask (else 255)."""
    sources = [_cutout(tmp_path, "a.png", (64, 64), (200, 0, 0)), _cutout(tmp_path, "b.png", (64, 64), (0, 0, 200))]
    config = CollageConfig(rate=1.0, layouts=("1x2",), loss_mask=loss_mask, pad_weight=weight)
    collage = Collage(config, Size(128, 96), alpha_mask=True)
    rendered = collage.render(sources, collage.make_params(sources, seed=1, epoch=0), with_mask=True)
    pixels = with_alpha(rendered, config)
    assert pixels.shape == (96, 128, 4)
    np.testing.assert_array_equal(pixels[:, :, :3], rendered.image)
    assert rendered.mask is not None and rendered.mask.any() and rendered.alpha is not None
    assert set(np.unique(pixels[:, :, 3][rendered.mask])) == {round(weight * 255) if loss_mask else 255}
    np.testing.assert_array_equal(pixels[:, :, 3][~rendered.mask], rendered.alpha[~rendered.mask])
    assert (pixels[:, :, 3][~rendered.mask] == 0).any()


def test_frame_pixels_rgb_without_weights(tmp_path: Path) -> None:
    """RGB sources in an alpha_mask subset: the written frame stays RGB (sd-scripts reads it as weight 1)."""
    paths = [save(make_image((64, 96), c), tmp_path / f"{i}.png") for i, c in enumerate([(9, 9, 9), (99, 9, 9)])]
    sources = [load_source(p, p.name) for p in paths]
    collage = _collage(True)
    rendered = collage.render(sources, collage.make_params(sources, seed=1, epoch=0), with_mask=True)
    assert rendered.alpha is None
    assert frame_pixels(rendered, collage.config).shape == (96, 128, 3)
    assert frame_pixels(rendered, CollageConfig(rate=1.0, loss_mask=True)).shape == (96, 128, 4)


def test_uses_alpha() -> None:
    """The user's alpha_mask, or collage_loss_mask (which turns sd-scripts' alpha_mask on for the subset)."""
    assert not uses_alpha(False, CollageConfig(rate=1.0))
    assert uses_alpha(True, CollageConfig(rate=1.0))
    assert uses_alpha(False, CollageConfig(rate=1.0, loss_mask=True))


def test_static_names_change_with_alpha_mask(tmp_path: Path) -> None:
    """A static frame rendered without the sources' alpha is never reused by a run that needs it."""
    sources = [_cutout(tmp_path, "a.png", (64, 96), (200, 0, 0)), _cutout(tmp_path, "b.png", (64, 96), (0, 0, 200))]
    with_, without = _collage(True), _collage(False)
    params = without.make_params(sources, seed=1, epoch=0)
    caption = without.caption(params)
    assert frame_digest(params, sources, with_, caption) != frame_digest(params, sources, without, caption)


def test_viewable_shows_a_checkerboard_where_the_weight_is_below_one() -> None:
    """Preview / studio thumbnails: zero weight shows the checkerboard, full weight the pixels."""
    pixels = np.zeros((16, 32, 4), np.uint8)
    pixels[:, :, :3] = (200, 0, 0)
    pixels[:, 16:, 3] = 255
    view = np.asarray(viewable(Image.fromarray(pixels, "RGBA")))
    side, dark, light = CHECKER
    assert tuple(view[0, 0]) == light and tuple(view[0, side]) == dark and tuple(view[side, 0]) == dark
    assert (view[:, 16:] == (200, 0, 0)).all()
    rgb = make_image((4, 4), (1, 2, 3))
    assert np.array_equal(np.asarray(viewable(rgb)), np.asarray(rgb))


def test_rotated_png_crop_box_valid_only_upright(tmp_path: Path) -> None:
    """An opaque PNG stored sideways (EXIF 6) with a crop box that fits only its upright size loads (was an error)."""
    _, gray_png, upright = _twin_files(tmp_path, 6)
    crop = Box(10, 5, 90, 50)  # 90 > the stored width 64
    fitted, _ = load_fitted(gray_png, Size(80, 45), "stretch", crop)
    np.testing.assert_array_equal(np.asarray(fitted)[:, :, 0], upright[5:50, 10:90])


# --- preview and export ----------------------------------------------------------------------------


def _alpha_dataset(tmp: Path, subset: str = "alpha_mask = true", general: str = "") -> Path:
    """4 cut-outs (transparent side quarters) and 2 opaque portraits; a dataset TOML in sd-scripts' shape."""
    folder = tmp / "img"
    folder.mkdir()
    for i in range(6):
        pixels = np.zeros((288, 192, 4), np.uint8)
        pixels[:, :, :3] = (40 * i, 200 - 30 * i, 90)
        pixels[:, :, 3] = 255 if i >= 4 else 0
        pixels[:, 48:144, 3] = 255
        Image.fromarray(pixels, "RGBA").save(folder / f"img_{i:02d}.png")
        (folder / f"img_{i:02d}.txt").write_text(f"sks, id{i:03d}", encoding="utf-8")
    path = tmp / "dataset.toml"
    path.write_text(
        f'[general]\ncaption_extension = ".txt"\ncollage_rate = 1.0\n{general}\n'
        f"[[datasets]]\nresolution = 256\nbatch_size = 1\nenable_bucket = true\n"
        f'  [[datasets.subsets]]\n  image_dir = "{folder.as_posix()}"\n  num_repeats = 2\n  {subset}\n',
        encoding="utf-8",
    )
    return path


def test_preview_writes_rgba_frames_weight_views_and_checkerboard_thumbs(tmp_path: Path) -> None:
    """preview: frames with cut-outs are RGBA, <name>_weight.png is their alpha, thumbnails show the checkerboard."""
    from collage_ext.cli import main

    out = tmp_path / "p"
    assert main(["preview", str(_alpha_dataset(tmp_path)), "--out", str(out), "--seed", "3"]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    weighted = 0
    for path in sorted((out / "frames").glob("*_slot?????.png")):
        with Image.open(path) as frame:
            if frame.mode != "RGBA":
                assert frame.mode == "RGB" and not path.with_name(f"{path.stem}_weight.png").exists()
                continue
            alpha = np.asarray(frame)[:, :, 3]
        weighted += 1
        assert (alpha == 0).any() and (alpha == 255).any()
        with Image.open(path.with_name(f"{path.stem}_weight.png")) as weight:
            np.testing.assert_array_equal(np.asarray(weight), alpha)
        assert f'frames/{path.stem}_weight.png">loss weight' in page
        with Image.open(out / "thumbs" / f"{path.stem}.jpg") as thumb:
            view = np.asarray(thumb.convert("L"), dtype=np.int16)
        assert view.std() > 10  # checkerboard and pixels, not one flat colour
    assert weighted


def test_export_writes_the_weights_as_alpha(tmp_path: Path) -> None:
    """export: the frames are RGBA with the sources' alpha (as the static cache); dataset.toml keeps alpha_mask."""
    from collage_ext.cli import main

    dataset = _alpha_dataset(tmp_path)
    assert main(["export", str(dataset), "--out", str(tmp_path / "e"), "--seed", "6"]) == 0
    assert main(["preview", str(dataset), "--out", str(tmp_path / "p"), "--seed", "6", "--", "--cache_latents"]) == 0
    exported = {p.stem: p for p in (tmp_path / "e" / "train").glob("*/collage_*.png")}
    assert exported
    rgba = 0
    for stem, path in exported.items():
        with Image.open(path) as frame, Image.open(tmp_path / "p" / "frames" / f"{stem}.png") as previewed:
            assert frame.mode == previewed.mode
            np.testing.assert_array_equal(np.asarray(frame), np.asarray(previewed))
            rgba += frame.mode == "RGBA" and (np.asarray(frame)[:, :, 3] == 0).any()
    assert rgba
    import toml

    subsets = toml.load(tmp_path / "e" / "dataset.toml")["datasets"][0]["subsets"]
    assert subsets and all(s.get("alpha_mask") is True for s in subsets)


def test_export_loss_mask_turns_alpha_mask_on_for_singles_too(tmp_path: Path) -> None:
    """collage_loss_mask turns sd-scripts' alpha_mask on for the whole subset in training, so the export does too."""
    import toml

    from collage_ext.cli import main

    dataset = _alpha_dataset(tmp_path, subset="collage_rate = 0.5", general="collage_loss_mask = true")
    assert main(["export", str(dataset), "--out", str(tmp_path / "e"), "--seed", "6"]) == 0
    manifest = json.loads((tmp_path / "e" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["singles"] and manifest["frames"]
    subsets = toml.load(tmp_path / "e" / "dataset.toml")["datasets"][0]["subsets"]
    assert len(subsets) >= 2 and all(s.get("alpha_mask") is True for s in subsets)


def test_in_memory_images_carry_their_alpha_like_files(tmp_path: Path) -> None:
    """Collage.render(images=...) gives the same pixels and alpha as reading the same images from files."""
    sources = [_cutout(tmp_path, "a.png", (64, 96), (200, 0, 0)), _cutout(tmp_path, "b.png", (64, 96), (0, 0, 200))]
    collage = _collage(True)
    params = collage.make_params(sources, seed=1, epoch=0)
    from_files = collage.render(sources, params, with_mask=True)
    in_memory = collage.render(sources, params, images=[Image.open(s.path) for s in sources], with_mask=True)
    np.testing.assert_array_equal(in_memory.image, from_files.image)
    assert in_memory.alpha is not None and from_files.alpha is not None
    np.testing.assert_array_equal(in_memory.alpha, from_files.alpha)


def test_studio_shows_the_weights(tmp_path: Path) -> None:
    """The studio serves a frame as the RGBA PNG preview writes, and its thumbnail with the checkerboard."""
    pytest.importorskip("starlette", reason="the studio extra is not installed")
    import io

    from collage_ext.cli import main
    from collage_ext.studio.model import Studio

    dataset = _alpha_dataset(tmp_path)
    out = tmp_path / "p"
    assert main(["preview", str(dataset), "--out", str(out)]) == 0
    studio = Studio(dataset)
    shown = 0
    for frame in studio.frames(1)["frames"]:
        with (
            Image.open(io.BytesIO(studio.frame_image(1, frame["name"]))) as png,
            Image.open(out / "frames" / f"{frame['name']}.png") as previewed,
        ):
            assert png.mode == previewed.mode
            np.testing.assert_array_equal(np.asarray(png), np.asarray(previewed))
            shown += png.mode == "RGBA"
        with Image.open(io.BytesIO(studio.frame_image(1, frame["name"], thumb=True))) as thumb:
            assert thumb.format == "JPEG" and thumb.mode == "RGB"
    assert shown
