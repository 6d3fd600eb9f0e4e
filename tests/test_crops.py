"""Tests for collage_ext.pixels.crops: the crop sidecar format and its error messages."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from collage_ext.core.errors import CollageConfigError, CollageInputError
from collage_ext.core.types import Box, Rect, Size
from collage_ext.pixels.crops import crop_path_for, parse_crop_box, read_crop_box
from collage_ext.pixels.fit import fit_image
from collage_ext.pixels.images import open_image, read_image_size
from tests.common import make_quadrants, save

SIZE = Size(640, 480)

PARSE_CASES = [
    ("10, 20, 110, 70", Box(10, 20, 110, 70)),
    ("10 20 110 70", Box(10, 20, 110, 70)),
    ("10,20,110,70", Box(10, 20, 110, 70)),
    ("  10 ,20 ,\t110,  70  \n", Box(10, 20, 110, 70)),
    ("# watermark at the bottom\n\n0, 0, 640, 440  # keep the top\n", Box(0, 0, 640, 440)),
    ("0 0 640 480", Box(0, 0, 640, 480)),
    ("25% 0% 75% 50%", Box(160, 0, 480, 240)),
    ("0%, 0%, 100%, 100%", Box(0, 0, 640, 480)),
    ("0, 10%, 640, 90%", Box(0, 48, 640, 432)),
    ("12.5% 0 87.5% 480", Box(80, 0, 560, 480)),
    ("+10 20 110 70", Box(10, 20, 110, 70)),
    ("\ufeff10 20 110 70", None),
]
PARSE_IDS = [
    "commas-and-spaces",
    "spaces",
    "commas",
    "ragged-whitespace",
    "comments",
    "whole-image",
    "percentages",
    "full-percent",
    "mixed",
    "decimal-percent",
    "plus-sign",
    "bom-is-not-a-number",
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES, ids=PARSE_IDS)
def test_parse_crop_box_table(text: str, expected: Box | None) -> None:
    """Valid sidecar texts parse to whole-pixel boxes (a stray BOM in text is not a number)."""
    if expected is None:
        with pytest.raises(CollageInputError, match="not a number"):
            parse_crop_box(text, SIZE, source="img.crop")
        return
    box = parse_crop_box(text, SIZE, source="img.crop")
    assert box == expected
    assert all(type(v) is int for v in box)


@pytest.mark.parametrize(
    ("text", "size", "expected"),
    [("10% 10% 90% 90%", Size(5, 5), Box(1, 1, 5, 5)), ("30% 0% 70% 100%", Size(5, 3), Box(2, 0, 4, 3))],
    ids=["half-rounds-up", "1.5-and-3.5-round-up"],
)
def test_percentages_round_half_up(text: str, size: Size, expected: Box) -> None:
    """Percentages become whole pixels, halves rounding up (10% of 5 px = 0.5 -> 1)."""
    assert parse_crop_box(text, size, source="a.crop") == expected


ERROR_CASES = [
    ("", r"crop file img_001\.crop holds no crop box; write one line 'left, top, right, bottom'"),
    ("# only a comment\n\n", r"holds no crop box"),
    ("0 0 10 10\n5 5 20 20", r"must hold exactly one crop box, got 2 lines"),
    ("0, 0, 10", r"must hold four values 'left, top, right, bottom'.*got '0, 0, 10'"),
    ("0 0 10 10 10", r"must hold four values .*got '0 0 10 10 10'"),
    ("0,0,10,10,", r"must hold four values"),
    ("0,,10,10", r"must hold four values"),
    ("a, b, c, d", r"has a value that is not a number: 'a' in 'a, b, c, d'"),
    ("0 0 10px 10", r"not a number: '10px'"),
    ("0 0 10.5 10", r"fractional pixel value '10\.5' in '0 0 10\.5 10'; use whole pixels or a percentage"),
    (
        "0, 0, 700, 480",
        r"^crop box in img_001\.crop lies outside the 640x480 image: got '0, 0, 700, 480'; keep right <= 640$",
    ),
    ("-1 0 10 10", r"lies outside the 640x480 image: got '-1 0 10 10'; keep left >= 0"),
    ("0 0 10 481", r"keep bottom <= 480"),
    ("0 0 110% 100%", r"got '0 0 110% 100%' \(= 0, 0, 704, 480 px\); keep right <= 640"),
    ("10 0 10 480", r"crop box in img_001\.crop is empty: got '10 0 10 480'; right must be greater than left"),
    ("0 50 640 20", r"is empty: got '0 50 640 20'; bottom must be greater than top"),
]
ERROR_IDS = [
    "empty-file",
    "comments-only",
    "two-boxes",
    "three-values",
    "five-values",
    "trailing-comma",
    "double-comma",
    "letters",
    "unit-suffix",
    "fractional-pixels",
    "past-right-exact-message",
    "negative-left",
    "past-bottom",
    "percent-past-right",
    "zero-width",
    "inverted-height",
]


@pytest.mark.parametrize(("text", "pattern"), ERROR_CASES, ids=ERROR_IDS)
def test_parse_errors_name_file_text_and_fix(text: str, pattern: str) -> None:
    """Every malformed, empty or out-of-bounds box raises with the file, the text and the fix."""
    with pytest.raises(CollageInputError, match=pattern):
        parse_crop_box(text, SIZE, source="img_001.crop")


def test_crop_path_for_replaces_only_the_last_suffix() -> None:
    """The sidecar shares the image's folder and stem."""
    assert crop_path_for(Path("data/img_001.png")) == Path("data/img_001.crop")
    assert crop_path_for("data/img.v2.jpg", ".box") == Path("data/img.v2.box")


@pytest.mark.parametrize("extension", ["crop", ".", "", "./x"], ids=["no-dot", "dot-only", "empty", "folder"])
def test_bad_extension_raises(extension: str) -> None:
    """The extension must look like '.crop'."""
    with pytest.raises(CollageConfigError, match=re.escape(f"got {extension!r}; e.g. '.crop'")):
        crop_path_for("img.png", extension)


def test_read_crop_box_without_sidecar_is_none(tmp_path: Path) -> None:
    """No sidecar means no crop."""
    assert read_crop_box(tmp_path / "img.png", SIZE) is None


def test_read_crop_box_reads_the_sidecar(tmp_path: Path) -> None:
    """The sidecar next to the image is parsed against the given size (a UTF-8 BOM is fine)."""
    (tmp_path / "img_001.crop").write_text("\ufeff# crop\n10, 20, 110, 70\n", encoding="utf-8")
    assert read_crop_box(tmp_path / "img_001.png", SIZE) == Box(10, 20, 110, 70)


def test_read_crop_box_custom_extension(tmp_path: Path) -> None:
    """The extension is configurable; other sidecars are ignored."""
    (tmp_path / "img.box").write_text("0 0 50% 50%", encoding="utf-8")
    (tmp_path / "img.crop").write_text("garbage", encoding="utf-8")
    assert read_crop_box(tmp_path / "img.png", SIZE, extension=".box") == Box(0, 0, 320, 240)


def test_read_crop_box_error_names_the_sidecar_path(tmp_path: Path) -> None:
    """Errors from a sidecar name its full path."""
    sidecar = tmp_path / "img_001.crop"
    sidecar.write_text("0, 0, 700, 480", encoding="utf-8")
    with pytest.raises(CollageInputError, match=re.escape(f"crop box in {sidecar} lies outside the 640x480 image")):
        read_crop_box(tmp_path / "img_001.png", SIZE)


def test_read_crop_box_non_utf8_raises(tmp_path: Path) -> None:
    """A binary or wrongly encoded sidecar raises naming the file instead of a UnicodeDecodeError."""
    sidecar = tmp_path / "img.crop"
    sidecar.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(CollageInputError, match=re.escape(f"crop file {sidecar} cannot be read")):
        read_crop_box(tmp_path / "img.png", SIZE)


def test_sidecar_that_is_a_directory_raises(tmp_path: Path) -> None:
    """A folder named like the sidecar is an error, not 'no crop'."""
    (tmp_path / "img.crop").mkdir()
    with pytest.raises(CollageInputError, match=r"crop file .*img\.crop cannot be read"):
        read_crop_box(tmp_path / "img.png", SIZE)


def test_crop_uses_exif_oriented_coordinates(tmp_path: Path) -> None:
    """The box applies to the image as displayed: a rotated phone photo is cropped as seen."""
    displayed = make_quadrants((32, 48))  # TL red, TR green, BL blue, BR white
    stored = displayed.transpose(Image.Transpose.ROTATE_90)  # orientation 6 rotates it back
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(stored, tmp_path / "photo.png", exif=exif)
    (tmp_path / "photo.crop").write_text("0 0 100% 50%", encoding="utf-8")
    size = read_image_size(path)
    assert size == Size(32, 48)
    crop = read_crop_box(path, size)
    assert crop == Box(0, 0, 32, 24)
    fitted, rect = fit_image(open_image(path), Size(8, 6), "stretch", crop)
    pixels = np.asarray(fitted)
    assert rect == Rect(0, 0, 8, 6)
    assert (pixels[:, :2, 0] >= 250).all() and (pixels[:, -2:, 1] >= 250).all()  # red left, green right
    assert pixels[..., 2].max() == 0  # nothing of the blue/white bottom half leaked in
