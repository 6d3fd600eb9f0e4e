"""The Collage orchestrator: one frame from files, deterministic, replayable, robust to odd images."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageInputError, LayoutError
from collage_ext.core.types import Size
from collage_ext.plan.collage import Collage, FrameParams, Source, load_source
from tests.common import make_image, solid_color_at

FRAME = Size(64, 64)
FILL = (24, 24, 24)
COLORS = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0)]


def write_sources(tmp: Path, sizes: list[tuple[int, int]], captions: list[str] | None = None) -> list[Source]:
    """Solid-colour images with captions; returns their Sources in order."""
    out = []
    for i, (w, h) in enumerate(sizes):
        path = tmp / f"s{i}.png"
        make_image(Size(w, h), COLORS[i % len(COLORS)]).save(path)
        path.with_suffix(".txt").write_text((captions or [f"tag{i}"] * len(sizes))[i], encoding="utf-8")
        out.append(load_source(path, f"s{i}.png"))
    return out


class TestCollage:
    """Fixed vocabulary: smoke, exception, shape, determinism, replay, streams."""

    def test_smoke_tiles_land_in_their_cells(self, tmp_path: Path) -> None:
        """Each solid tile fills its cell exactly (cover), so a pixel tells which source went where."""
        sources = write_sources(tmp_path, [(30, 60), (30, 60)])
        collage = Collage(CollageConfig(rate=1.0, fit_mode="cover"), FRAME)
        result = collage(sources, seed=0, epoch=0, with_mask=True)
        for cell, index in zip(result.params.layout.cells, result.params.layout.order):
            assert solid_color_at(result.image, cell) == COLORS[index]
        assert result.mask is not None and not result.mask.any()

    def test_contain_pads_with_fill_and_mask(self, tmp_path: Path) -> None:
        """Contain leaves #181818 bars exactly where the mask says padding."""
        sources = write_sources(tmp_path, [(60, 30), (60, 30)])
        result = Collage(CollageConfig(rate=1.0, layouts=("1x2",)), FRAME)(sources, seed=0, epoch=0, with_mask=True)
        assert result.mask is not None and result.mask.any()
        assert (result.image[result.mask] == FILL).all()
        assert not (result.image[~result.mask] == FILL).all(axis=1).any()

    def test_exception_too_small_for_limit(self, tmp_path: Path) -> None:
        """Sources that every layout would magnify beyond the limit raise a LayoutError."""
        sources = write_sources(tmp_path, [(4, 4), (4, 4)])
        with pytest.raises(LayoutError, match="collage_max_upscale"):
            Collage(CollageConfig(rate=1.0), FRAME)(sources, seed=0, epoch=0)

    def test_shape_and_dtype(self, tmp_path: Path) -> None:
        """HxWx3 uint8 at any frame size, also non-square."""
        sources = write_sources(tmp_path, [(50, 40), (40, 50), (45, 45)])
        result = Collage(CollageConfig(rate=1.0, max_upscale=4), Size(96, 48))(sources, seed=3, epoch=1)
        assert result.image.shape == (48, 96, 3) and result.image.dtype == np.uint8

    def test_determinism_same_bytes(self, tmp_path: Path) -> None:
        """Same inputs, seed and epoch: byte-identical frame and caption."""
        sources = write_sources(tmp_path, [(30, 60), (30, 60), (60, 30)], ["a, b", "c", "d, e"])
        collage = Collage(CollageConfig(rate=1.0), FRAME)
        first, second = collage(sources, seed=5, epoch=2), collage(sources, seed=5, epoch=2)
        assert first.image.tobytes() == second.image.tobytes() and first.caption == second.caption

    def test_replay_from_json(self, tmp_path: Path) -> None:
        """Params survive a JSON round trip and reproduce the frame."""
        sources = write_sources(tmp_path, [(30, 60), (60, 30), (40, 40), (40, 40)])
        collage = Collage(CollageConfig(rate=1.0, cell_caption_dropout_rate=0.5, layouts=("2x2",)), FRAME)
        result = collage(sources, seed=9, epoch=4)
        params = FrameParams.from_json(json.loads(json.dumps(result.params.to_json())))
        again = collage(sources, seed=0, epoch=0, params=params)
        assert params == result.params and again.image.tobytes() == result.image.tobytes()
        assert again.caption == result.caption

    def test_streams_independent(self, tmp_path: Path) -> None:
        """Caption options never change the layout the same seed picks."""
        sources = write_sources(tmp_path, [(30, 60), (30, 60), (60, 30)])
        plain = Collage(CollageConfig(rate=1.0), FRAME).make_params(sources, seed=1, epoch=0)
        dropped = Collage(CollageConfig(rate=1.0, cell_caption_dropout_rate=0.9), FRAME).make_params(
            sources, seed=1, epoch=0
        )
        assert plain.layout == dropped.layout

    def test_caption_reading_order_and_dropout(self, tmp_path: Path) -> None:
        """Captions follow the cells in reading order; a dropped cell loses its text only."""
        sources = write_sources(tmp_path, [(30, 60), (30, 60)], ["left one", "right one"])
        collage = Collage(CollageConfig(rate=1.0, caption_merge="positional"), FRAME)
        params = collage.make_params(sources, seed=0, epoch=0)
        first = sources[params.layout.order[0]].caption
        assert collage.caption(params).startswith(f"[LEFT] {first}")
        dropped = FrameParams(params.keys, params.layout, params.texts, (True, False), 0, 0)
        assert "[LEFT]" not in collage.caption(dropped)

    def test_global_rng_untouched(self, tmp_path: Path) -> None:
        """The orchestrator never draws from the global random module."""
        sources = write_sources(tmp_path, [(30, 60), (30, 60)])
        state = random.getstate()
        Collage(CollageConfig(rate=1.0, cell_caption_dropout_rate=0.5), FRAME)(sources, seed=0, epoch=0)
        assert random.getstate() == state


ODD = {
    "palette-transparency": lambda p: _palette_transparent(p),
    "cmyk-jpeg": lambda p: make_image(Size(40, 60), (0, 0, 0, 0), "CMYK").save(p.with_suffix(".jpg")),
    "16-bit": lambda p: Image.fromarray(np.full((60, 40), 40000, np.uint16)).save(p),
    "exif-rotated": lambda p: _exif_rotated(p),
    "1x1": lambda p: make_image(Size(1, 1), (9, 9, 9)).save(p),
    "1x50": lambda p: make_image(Size(1, 50), (9, 9, 9)).save(p),
}


def _palette_transparent(path: Path) -> None:
    img = Image.new("P", (40, 60), 0)
    img.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    img.info["transparency"] = 0
    img.save(path)


def _exif_rotated(path: Path) -> None:
    img = make_image(Size(60, 40), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display: stored 60x40 shows as 40x60
    img.save(path.with_suffix(".jpg"), exif=exif)


@pytest.mark.parametrize("kind", list(ODD))
def test_odd_images_give_a_frame_or_a_clear_error(tmp_path: Path, kind: str) -> None:
    """Odd sources yield a correct frame, or a LayoutError/CollageInputError naming the limit or file."""
    ODD[kind](tmp_path / "odd.png")
    odd_path = next(p for p in tmp_path.iterdir() if p.stem == "odd")
    odd = load_source(odd_path, "odd")
    partner = write_sources(tmp_path, [(40, 60)])[0]
    collage = Collage(CollageConfig(rate=1.0, max_upscale=100), FRAME)
    try:
        result = collage([odd, partner], seed=0, epoch=0)
    except (LayoutError, CollageInputError) as exc:
        assert "odd" in str(exc) or "collage_max_upscale" in str(exc)
        return
    assert result.image.shape == (64, 64, 3)
    if kind == "exif-rotated":
        assert odd.size == Size(40, 60)
    if kind == "palette-transparency":  # transparent pixels composite onto the fill, not black
        cell = result.params.layout.cells[result.params.layout.order.index(0)]
        assert tuple(result.image[cell.y + cell.height // 2, cell.x + cell.width // 2]) == FILL
