"""ICC profiles -> sRGB: Display P3 and Adobe RGB JPEGs give the sRGB pixels a colour-managed viewer shows."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from collage_ext.core.config import CollageConfig
from collage_ext.core.types import Size
from collage_ext.pixels.color import _transform_for, to_srgb
from collage_ext.pixels.images import load_fitted, read_image_size
from collage_ext.plan.collage import Collage, Source
from icc import ADOBE_RGB, DISPLAY_P3, expected_srgb, matrix_profile

PROFILES = {"p3": matrix_profile(DISPLAY_P3, "Display P3"), "adobe": matrix_profile(ADOBE_RGB, "Adobe RGB (1998)")}
COLOURS = {"p3": [(200, 120, 60), (30, 60, 200), (90, 170, 120)], "adobe": [(200, 120, 60), (90, 170, 120)]}


def tagged_jpeg(path: Path, space: str, colour: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> Path:
    """A flat JPEG (quality 100, no chroma subsampling: the stored values survive) with an embedded profile."""
    Image.new("RGB", size, colour).save(path, quality=100, subsampling=0, icc_profile=PROFILES[space])
    return path


@pytest.mark.parametrize("space", ["p3", "adobe"])
def test_profiles_convert_to_known_srgb(tmp_path: Path, space: str) -> None:
    """Every colour lands within one level of the published linear-light conversion."""
    for n, colour in enumerate(COLOURS[space]):
        path = tagged_jpeg(tmp_path / f"{space}{n}.jpg", space, colour)
        raw, _ = load_fitted(path, Size(48, 32))  # sd-scripts' behaviour: the stored numbers
        stored = np.asarray(raw).reshape(-1, 3)
        assert np.abs(stored.astype(int) - np.array(colour)).max() <= 1  # JPEG's YCbCr round trip
        fitted, _ = load_fitted(path, Size(48, 32), convert_icc=True)
        got = np.asarray(fitted).reshape(-1, 3).astype(int)
        want = np.array(expected_srgb(tuple(int(v) for v in stored[0]), space))  # type: ignore[arg-type]
        assert np.abs(got - want).max() <= 1, (colour, got[0], want)
        assert np.abs(got - np.array(expected_srgb(colour, space))).max() <= 3


def test_collage_cells_follow_the_option(tmp_path: Path) -> None:
    """collage_color_profile = 'srgb' (default) converts the cell; 'ignore' keeps sd-scripts' numbers.

    (Within 3 levels of the nominal colour: JPEG's YCbCr round trip moves the stored values by one.)
    """
    colour = (200, 120, 60)
    paths = [tagged_jpeg(tmp_path / "a.jpg", "p3", colour), tagged_jpeg(tmp_path / "b.jpg", "adobe", colour)]
    sources = [Source(p.stem, str(p), read_image_size(p)) for p in paths]
    for policy, expected in (
        ("srgb", [expected_srgb(colour, "p3"), expected_srgb(colour, "adobe")]),
        ("ignore", [colour, colour]),
    ):
        collage = Collage(CollageConfig(rate=1.0, color_profile=policy), Size(128, 128))  # type: ignore[arg-type]
        params = collage.make_params(sources, seed=1, epoch=1)
        image = collage.render(sources, params).image
        for cell, index in zip(params.layout.cells, params.layout.order):
            centre = image[cell.y + cell.height // 2, cell.x + cell.width // 2]
            assert np.abs(centre.astype(int) - np.array(expected[index])).max() <= 3, (policy, index, centre)


def test_no_profile_and_srgb_profile_are_untouched(tmp_path: Path) -> None:
    """No transform is built or applied for files without a profile or with an sRGB one (by name or by value)."""
    image = Image.new("RGB", (4, 4), (200, 120, 60))
    assert to_srgb(image, None) is image
    builtin = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert to_srgb(image, builtin) is image
    renamed = matrix_profile((((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)), (0.3127, 0.3290), "srgb"), "Camera RGB")
    assert to_srgb(image, renamed) is image  # sRGB primaries and curve under another name
    assert to_srgb(image, b"not a profile") is image  # logged, used as sRGB
    gray = Image.new("L", (4, 4), 100)
    assert to_srgb(gray, PROFILES["p3"]) is gray


def test_transforms_are_cached() -> None:
    """One littlecms transform per distinct profile and process."""
    _transform_for.cache_clear()
    image = Image.new("RGB", (4, 4), (200, 120, 60))
    for _ in range(5):
        to_srgb(image, bytes(PROFILES["p3"]))
    info = _transform_for.cache_info()
    assert info.misses == 1 and info.hits == 4


def test_profile_bytes_parse() -> None:
    """The generated profiles are what they say (guards the helper itself)."""
    for name, data in PROFILES.items():
        profile = ImageCms.ImageCmsProfile(io.BytesIO(data))
        assert profile.profile.xcolor_space.strip() == "RGB"
        assert profile.profile.profile_description in ("Display P3", "Adobe RGB (1998)"), name
