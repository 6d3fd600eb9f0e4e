"""Display P3 / Adobe RGB photos in collage frames, through the REAL sd-scripts loader."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import numpy as np
from PIL import Image

import fakes
from test_collage_dataset import dataset_toml, epoch_captions, id_counts, load

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.icc import ADOBE_RGB, DISPLAY_P3, expected_srgb, matrix_profile

pytestmark = pytest.mark.sdscripts
COLOUR = (200, 120, 60)
SPACES = {"id000": ("p3", DISPLAY_P3, "Display P3"), "id001": ("adobe", ADOBE_RGB, "Adobe RGB (1998)")}


def write_photos(folder: Path) -> Path:
    """Two flat, profile-tagged JPEGs (id000 Display P3, id001 Adobe RGB) and four untagged PNGs."""
    folder.mkdir(parents=True)
    for i in range(6):
        if i < 2:
            _, definition, name = SPACES[f"id{i:03d}"]
            Image.new("RGB", (128, 192), COLOUR).save(
                folder / f"img_{i:03d}.jpg", quality=100, subsampling=0, icc_profile=matrix_profile(definition, name)
            )
        else:
            fakes.make_image(128, 192, seed=i).save(folder / f"img_{i:03d}.png")
        (folder / f"img_{i:03d}.txt").write_text(f"sks, id{i:03d}\n", encoding="utf-8")
    return folder


def frame_has(pixels: np.ndarray, colour: tuple[int, int, int]) -> bool:
    """True when a block of the frame (C x H x W in [-1, 1]) shows ``colour`` within 3 levels."""
    rgb = np.rint((pixels.transpose(1, 2, 0) + 1) * 127.5).astype(int)
    return int((np.abs(rgb - np.array(colour)).max(axis=2) <= 3).sum()) > 500


@pytest.mark.parametrize("policy", ["srgb", "ignore"])
def test_tagged_photos_in_frames(tmp_path: Path, toks: fakes.TinyTokenizers, policy: str) -> None:
    """'srgb': the cells show the colours a viewer shows; 'ignore': sd-scripts' raw numbers."""
    folder = write_photos(tmp_path / "img")
    config = dataset_toml(tmp_path, folder, general=f'collage_rate = 1.0\ncollage_color_profile = "{policy}"')
    group, _, _ = load(tmp_path, toks, config)
    assert id_counts(epoch_captions(group, 1)) == {f"id{i:03d}": 2 for i in range(6)}
    checked = 0
    for index in range(len(group)):
        example = group[index]
        caption, pixels = example["captions"][0], example["images"][0].numpy()
        for tag, (space, _, _) in SPACES.items():
            if tag in caption:
                viewer = expected_srgb(COLOUR, space)
                assert frame_has(pixels, viewer if policy == "srgb" else COLOUR)
                assert not frame_has(pixels, COLOUR if policy == "srgb" else viewer)
                checked += caption.count(tag)  # small pools may show one image twice in a frame
    assert checked == 4  # each tagged photo, twice per epoch
