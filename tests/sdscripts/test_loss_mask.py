"""collage_loss_mask: sd-scripts' masked loss gets the pad weight on exactly the padded pixels."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import numpy as np
import torch
from PIL import Image

import fakes
from test_collage_dataset import dataset_toml, load, write_dataset

pytestmark = pytest.mark.sdscripts
MAIN = fakes.is_strategy_era()


def expected_alpha(mask: np.ndarray, weight: float) -> np.ndarray:
    """sd-scripts' alpha mask for our frame: alpha/255, pad weight on padding, 1 elsewhere."""
    return np.where(mask, round(weight * 255), 255).astype(np.float32) / 255.0


@pytest.mark.parametrize("weight", [0.0, 0.25])
def test_dynamic_frames_mask_padding(tmp_path: Path, toks: fakes.TinyTokenizers, weight: float) -> None:
    """Through the real __getitem__: alpha_masks equal the layout's padding, pixel for pixel."""
    config = dataset_toml(
        tmp_path,
        write_dataset(tmp_path),
        general=f"collage_rate = 1.0\ncollage_loss_mask = true\ncollage_pad_weight = {weight}\ncollage_gutter = 8",
    )
    group, _, _ = load(tmp_path, toks, config)
    dataset = group.datasets[0]
    dataset.debug_dataset = True  # __getitem__ then reports the image keys
    group.set_current_epoch(1)
    checked = 0
    for i in range(len(group)):
        example = group[i]
        for n, key in enumerate(example["image_keys"]):
            frames, slot = dataset._frames[key]
            params = frames.params(slot, 1)
            mask = frames.collage.render(frames.sources_of(frames.groups(1)[slot]), params, with_mask=True).mask
            assert mask.any()
            np.testing.assert_array_equal(example["alpha_masks"][n].numpy(), expected_alpha(mask, weight))
            checked += 1
    assert checked == len(dataset._frames)


def test_static_frames_mask_survives_latent_caching(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """Static frames carry the mask in their alpha channel; sd-scripts' latent cache keeps it."""
    config = dataset_toml(
        tmp_path, write_dataset(tmp_path), general="collage_rate = 1.0\ncollage_loss_mask = true\ncollage_variants = 1"
    )
    group, args, _ = load(tmp_path, toks, config, "--cache_latents")
    dataset = group.datasets[0]
    assert dataset._static
    acc = fakes.SingleProcessAccelerator()
    with torch.no_grad():
        if MAIN:
            group.new_cache_latents(fakes.make_sdxl_vae(), acc)
        else:
            group.cache_latents(fakes.make_sdxl_vae(), 1, False, True)
    for path, (frames, group_members, variant) in dataset._static.items():
        params = frames.collage.make_params(frames.sources_of(group_members), seed=frames.pool.seed, epoch=variant)
        mask = frames.collage.render(frames.sources_of(group_members), params, with_mask=True).mask
        with Image.open(path) as png:
            assert png.mode == "RGBA"
            np.testing.assert_array_equal(np.asarray(png)[:, :, 3] == 0, mask)
        cached = dataset.image_data[path].alpha_mask
        np.testing.assert_array_equal(np.asarray(cached, dtype=np.float32), expected_alpha(mask, 0.0))
