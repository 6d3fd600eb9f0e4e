"""Tests for collage_ext.pixels.render: solid tiles land exactly in their rects, fill and mask elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from collage_ext.core.errors import CollageConfigError, CollageInputError, LayoutError
from collage_ext.core.types import Rect, Size
from collage_ext.pixels.fit import fit_image
from collage_ext.pixels.render import RenderResult, render_frame
from tests.common import BLUE, FILL, GREEN, RED, WHITE, make_image, solid_color_at

FRAME = Size(12, 8)
# Two columns with a 1-px gutter and a letterboxed tile in the right column.
PLACEMENTS = [
    (Rect(0, 0, 6, 8), RED),
    (Rect(7, 1, 5, 3), BLUE),
    (Rect(7, 5, 4, 3), GREEN),
]


def _expected_mask(frame: Size, rects: list[Rect]) -> np.ndarray:
    mask = np.ones((frame.height, frame.width), dtype=bool)
    for rect in rects:
        mask[rect.y : rect.bottom, rect.x : rect.right] = False
    return mask


def _render(with_mask: bool = True, fill: tuple[int, int, int] = FILL) -> RenderResult:
    placements = [(rect, make_image(rect.size, color)) for rect, color in PLACEMENTS]
    return render_frame(FRAME, placements, fill, with_mask=with_mask)


def test_render_shape_and_dtype() -> None:
    """The frame is HxWx3 uint8, as sd-scripts' load_image returns."""
    result = _render()
    assert result.image.shape == (8, 12, 3)
    assert result.image.dtype == np.uint8
    assert result.mask is not None and result.mask.shape == (8, 12) and result.mask.dtype == np.bool_


@pytest.mark.parametrize(("rect", "color"), PLACEMENTS, ids=["left-red", "right-top-blue", "right-bottom-green"])
def test_tiles_land_exactly_in_their_rects(rect: Rect, color: tuple[int, int, int]) -> None:
    """Each solid tile covers exactly its rect."""
    assert solid_color_at(_render().image, rect) == color


@pytest.mark.parametrize("fill", [FILL, (1, 2, 3), WHITE], ids=["default-181818", "custom", "white"])
def test_fill_exactly_elsewhere_and_mask_marks_it(fill: tuple[int, int, int]) -> None:
    """Every pixel outside the rects is the fill colour, and the mask is True exactly there."""
    result = _render(fill=fill)
    expected = _expected_mask(FRAME, [rect for rect, _ in PLACEMENTS])
    assert result.mask is not None
    np.testing.assert_array_equal(result.mask, expected)
    assert (result.image[expected] == fill).all()
    assert not (result.image[~expected] == fill).all(axis=-1).any()


def test_mask_is_optional() -> None:
    """Without with_mask the mask is None (no allocation for the common case)."""
    result = _render(with_mask=False)
    assert result.mask is None
    assert solid_color_at(result.image, Rect(6, 0, 1, 8)) == FILL


def test_empty_placements_give_a_fill_frame() -> None:
    """No placements: the whole frame is fill and padding."""
    result = render_frame(Size(3, 2), [], FILL, with_mask=True)
    assert solid_color_at(result.image, Rect(0, 0, 3, 2)) == FILL
    assert result.mask is not None and result.mask.all()


def test_later_placement_paints_over_earlier() -> None:
    """Overlaps are resolved in order (layouts never overlap; this pins the rule)."""
    placements = [(Rect(0, 0, 4, 4), make_image((4, 4), RED)), (Rect(2, 2, 2, 2), make_image((2, 2), BLUE))]
    image = render_frame(Size(4, 4), placements, FILL).image
    assert solid_color_at(image, Rect(2, 2, 2, 2)) == BLUE
    assert solid_color_at(image, Rect(0, 0, 2, 4)) == RED


def test_contain_letterbox_is_fill_and_masked() -> None:
    """End to end: a contained wide image leaves fill bars above and below, marked in the mask."""
    cell = Rect(2, 0, 10, 10)
    fitted, inner = fit_image(make_image((40, 20), GREEN), cell.size, "contain")
    placed = Rect(cell.x + inner.x, cell.y + inner.y, inner.width, inner.height)
    result = render_frame(Size(12, 10), [(placed, fitted)], FILL, with_mask=True)
    assert placed == Rect(2, 2, 10, 5)
    assert solid_color_at(result.image, placed) == GREEN
    assert solid_color_at(result.image, Rect(2, 0, 10, 2)) == FILL
    assert solid_color_at(result.image, Rect(2, 7, 10, 3)) == FILL
    assert result.mask is not None
    np.testing.assert_array_equal(result.mask, _expected_mask(Size(12, 10), [placed]))


def test_render_is_deterministic() -> None:
    """Same inputs, byte-identical frames."""
    assert _render().image.tobytes() == _render().image.tobytes()


def test_input_images_are_not_modified() -> None:
    """Rendering copies pixels; the tiles stay as they were."""
    tile = make_image((2, 2), RED)
    before = tile.tobytes()
    render_frame(Size(4, 4), [(Rect(1, 1, 2, 2), tile)], FILL)
    assert tile.tobytes() == before


@pytest.mark.parametrize(
    ("rect", "size", "pattern"),
    [
        (Rect(-1, 0, 2, 2), (2, 2), r"placement 0 rect \(-1, 0, 2, 2\) lies outside the 4x4 frame"),
        (Rect(3, 0, 2, 2), (2, 2), r"lies outside the 4x4 frame; keep .* x \+ width <= 4"),
        (Rect(0, 3, 2, 2), (2, 2), r"y \+ height <= 4"),
        (Rect(0, 0, 3, 2), (2, 2), r"placement 0 rect \(0, 0, 3, 2\) is 3x2 but its image is 2x2"),
    ],
    ids=["negative-x", "past-right", "past-bottom", "size-mismatch"],
)
def test_bad_rects_raise(rect: Rect, size: tuple[int, int], pattern: str) -> None:
    """Rects outside the frame or not matching their image are layout bugs and raise."""
    with pytest.raises(LayoutError, match=pattern):
        render_frame(Size(4, 4), [(rect, make_image(size, RED))], FILL)


def test_non_rgb_image_raises() -> None:
    """Only RGB tiles are accepted; the message points to to_rgb."""
    with pytest.raises(CollageInputError, match=r"placement 1 image must be RGB, got mode 'RGBA'"):
        render_frame(
            Size(4, 4),
            [(Rect(0, 0, 1, 1), make_image((1, 1), RED)), (Rect(1, 1, 1, 1), make_image((1, 1), RED, "RGBA"))],
            FILL,
        )


def test_wrong_types_raise_type_error() -> None:
    """Arrays or bare values instead of PIL images are programming errors."""
    with pytest.raises(TypeError, match=r"placement 0 image must be a PIL\.Image\.Image, got ndarray"):
        render_frame(Size(4, 4), [(Rect(0, 0, 1, 1), np.zeros((1, 1, 3), np.uint8))], FILL)  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"placement 0 must be a \(Rect, PIL.Image.Image\[, alpha\]\) tuple"):
        render_frame(Size(4, 4), [Rect(0, 0, 1, 1)], FILL)  # type: ignore[list-item]


@pytest.mark.parametrize("fill", [(24, 24), (0, 0, 256), "gray", (1.0, 2, 3)], ids=["two", "over", "str", "float"])
def test_bad_fill_raises(fill: object) -> None:
    """The fill colour must be three integers in [0, 255]."""
    with pytest.raises(CollageConfigError, match=r"fill must be three integers in \[0, 255\]"):
        render_frame(Size(2, 2), [], fill)  # type: ignore[arg-type]


def test_empty_frame_raises() -> None:
    """A 0-px frame is a configuration bug."""
    with pytest.raises(LayoutError, match="frame must be at least 1x1 px, got 0x4"):
        render_frame(Size(0, 4), [], FILL)


def test_result_is_frozen() -> None:
    """RenderResult is immutable, like every value object in collage_ext."""
    result = render_frame(Size(1, 1), [], FILL)
    with pytest.raises(AttributeError):
        result.image = np.zeros((1, 1, 3), np.uint8)  # type: ignore[misc]


def test_accepts_plain_tuple_rects() -> None:
    """Rects may arrive as plain 4-tuples (e.g. from JSON replay)."""
    image = render_frame(Size(3, 3), [((1, 1, 1, 1), Image.new("RGB", (1, 1), BLUE))], FILL).image  # type: ignore[list-item]
    assert solid_color_at(image, Rect(1, 1, 1, 1)) == BLUE


def test_alpha_pasted_with_its_pixels() -> None:
    """A placement's own alpha lands exactly in its rect; other rects and padding stay 255."""
    own = Image.fromarray(np.array([[0, 64, 255], [128, 0, 7]], dtype=np.uint8))
    placements = [
        (Rect(1, 1, 3, 2), make_image((3, 2), RED), own),
        (Rect(5, 0, 2, 2), make_image((2, 2), BLUE), None),
        (Rect(0, 3, 2, 1), make_image((2, 1), GREEN)),
    ]
    result = render_frame(Size(8, 4), placements, FILL, with_mask=True)
    expected = np.full((4, 8), 255, np.uint8)
    expected[1:3, 1:4] = np.asarray(own)
    assert result.alpha is not None
    np.testing.assert_array_equal(result.alpha, expected)
    assert result.mask is not None and result.mask[0, 0] and not result.mask[1, 1]  # the mask is unchanged
    assert solid_color_at(result.image, Rect(1, 1, 3, 2)) == RED  # pixels stay RGB


def test_no_alpha_without_an_alpha_placement() -> None:
    """Frames whose sources bring no alpha carry none (the RGB path costs nothing more)."""
    placements = [(Rect(0, 0, 2, 2), make_image((2, 2), RED), None), (Rect(2, 0, 2, 2), make_image((2, 2), RED))]
    assert render_frame(Size(4, 2), placements, FILL).alpha is None


def test_bad_alpha_raises() -> None:
    """An alpha of another size or mode would not line up with its pixels: a bug upstream."""
    tile = make_image((2, 2), RED)
    with pytest.raises(LayoutError, match=r"placement 0 alpha must be an 'L' image of its image's size 2x2"):
        render_frame(Size(4, 4), [(Rect(0, 0, 2, 2), tile, Image.new("L", (2, 1)))], FILL)
    with pytest.raises(LayoutError, match=r"got mode 'RGBA'"):
        render_frame(Size(4, 4), [(Rect(0, 0, 2, 2), tile, Image.new("RGBA", (2, 2)))], FILL)
    with pytest.raises(TypeError, match=r"placement 0 alpha must be a PIL\.Image\.Image or None, got ndarray"):
        alpha = np.zeros((2, 2), np.uint8)
        render_frame(Size(4, 4), [(Rect(0, 0, 2, 2), tile, alpha)], FILL)  # type: ignore[list-item]
