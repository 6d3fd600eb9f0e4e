"""sd-scripts' ``alpha_mask`` through the REAL loader: each source's transparent region is masked inside its cell.

A subset of character cut-outs (PNGs whose left and right quarters are transparent: RGBA, LA,
palette with a tRNS entry, RGB with a tRNS colour key) and two opaque RGB portraits, with
``alpha_mask = true``, and a plain subset (``collage_rate = 0``) with one RGBA square. The expected
weights are computed independently of the renderer: each source's transparent quarters are mapped
into the frame through ``fit.cell_fit`` and checked in the ``alpha_masks`` of the batches sd-scripts'
own ``collator_class`` / DataLoader yields, and in the loss weights of sd-scripts' own ``apply_masked_loss``
(zero on every latent pixel inside a transparent region). Static mode is checked through sd-scripts' latent cache.
"""

from __future__ import annotations

from functools import partial
from multiprocessing import Value
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import numpy as np
import torch
from PIL import Image

import fakes
from collage_ext.pixels.fit import cell_fit
from test_collage_dataset import load

pytestmark = pytest.mark.sdscripts
MAIN = fakes.is_strategy_era()

CUTOUT = (256, 384)  # (W, H): about 2x the cells of a 256-px frame, so the filter reaches <= 3 px
SQUARE = (256, 256)  # a single image at its bucket's size (sd-scripts does not resize it)


def cutout(width: int, height: int, seed: int) -> Image.Image:
    """A cut-out: fakes' gradient with the left and right quarters transparent (alpha 0), the middle opaque."""
    pixels = np.dstack([np.asarray(fakes.make_image(width, height, seed)), np.zeros((height, width), np.uint8)])
    pixels[:, width // 4 : width - width // 4, 3] = 255
    return Image.fromarray(pixels, "RGBA")


def transparency_kinds(image: Image.Image) -> list[tuple[Image.Image, dict[str, Any]]]:
    """The same cut-out as RGBA, LA, a palette PNG with a tRNS entry and an RGB PNG with a tRNS colour key."""
    alpha = np.asarray(image)[:, :, 3]
    quantized = image.convert("RGB").quantize(254)
    indices = np.asarray(quantized).astype(np.uint8) + 1
    indices[alpha == 0] = 0
    palette = Image.fromarray(indices, "P")
    palette.putpalette([0, 0, 0] + quantized.getpalette()[: 254 * 3])
    keyed = np.asarray(image.convert("RGB")).copy()
    keyed[alpha == 0] = (1, 2, 3)  # fakes' gradients never reach this colour
    return [
        (image, {}),
        (image.convert("LA"), {}),
        (palette, {"transparency": 0}),
        (Image.fromarray(keyed, "RGB"), {"transparency": (1, 2, 3)}),
    ]


def write_alpha_dataset(root: Path, *, general: str = "", subset: str = "alpha_mask = true") -> Path:
    """A dataset TOML: 4 cut-outs (RGBA, LA, palette + tRNS, RGB + colour key) and 2 opaque RGB portraits in a
    collage subset (``root/img``), and one RGBA square in a plain subset (``root/plain``, ``collage_rate = 0``:
    sd-scripts' own single image)."""
    kinds = [transparency_kinds(cutout(*CUTOUT, seed=i))[i] for i in range(4)]
    images = kinds + [(fakes.make_image(*CUTOUT, seed=i), {}) for i in (4, 5)]
    for folder, group in ((root / "img", images), (root / "plain", [(cutout(*SQUARE, seed=6), {})])):
        folder.mkdir(parents=True)
        for i, (image, options) in enumerate(group):
            image.save(folder / f"img_{i:02d}.png", **options)
            (folder / f"img_{i:02d}.txt").write_text(f"sks, {folder.name}{i:03d}", encoding="utf-8")
    path = root / "dataset.toml"
    path.write_text(
        f'[general]\ncaption_extension = ".txt"\ncollage_rate = 1.0\n{general}\n'
        f"[[datasets]]\nresolution = 256\nbatch_size = 1\nenable_bucket = true\n"
        f'  [[datasets.subsets]]\n  image_dir = "{(root / "img").as_posix()}"\n  num_repeats = 1\n  {subset}\n'
        f'  [[datasets.subsets]]\n  image_dir = "{(root / "plain").as_posix()}"\n  num_repeats = 1\n'
        f"  collage_rate = 0.0\n  {subset}\n",
        encoding="utf-8",
    )
    return path


Regions = list[tuple[slice, slice]]


def _frame_columns(left: int, width: int, box: Any, x0: float, x1: float) -> slice:
    """Source columns x0..x1 (inside ``box``) as frame columns, for a source placed ``width`` wide at ``left``."""
    sx = width / (box.right - box.left)
    return slice(int(np.ceil(left + (x0 - box.left) * sx)) + 4, int(left + (x1 - box.left) * sx) - 4)


def regions(frames: Any, slot_or_group: Any, params: Any, masked: set[str] | None = None) -> tuple[Regions, Regions]:
    """Frame regions that must have weight 0 (inside a source's transparent quarters) and weight 1 (opaque).

    Mapped through ``cell_fit`` (source box -> rect in the cell), 4 px inside each edge so Lanczos'
    reach and rounding never matter; computed without the renderer. ``masked`` collects the file names
    of the transparent sources.
    """
    sources = frames.sources_of(slot_or_group)
    zero, one = [], []
    for cell, index in zip(params.layout.cells, params.layout.order):
        source = sources[index]
        plan = cell_fit(source.size, cell.size, params.layout.fit or frames.pool.config.fit_mode, source.crop)
        box, dst = plan.src_box, plan.dst
        x_of = partial(_frame_columns, cell.x + dst.x, dst.width, box)
        rows = slice(cell.y + dst.y + 4, cell.y + dst.bottom - 4)
        width = source.size.width
        with Image.open(source.path) as raw:
            transparent = raw.mode in ("RGBA", "LA") or "transparency" in raw.info
        if transparent:
            if masked is not None:
                masked.add(Path(source.path).name)
            left, right = x_of(max(box.left, 0), min(box.right, width // 4)), x_of(3 * width // 4, box.right)
            zero += [(rows, s) for s in (left, right) if s.stop - s.start > 0]
            one.append((rows, x_of(width // 4, 3 * width // 4)))
        else:
            one.append((rows, slice(cell.x + dst.x + 4, cell.x + dst.right - 4)))
    return zero, one


def iterate(group: Any, epoch: int) -> list[dict[str, Any]]:
    """One epoch through a DataLoader with sd-scripts' own collator_class, as train_network.py builds it."""
    train_util = fakes.import_sd("library.train_util")
    collator = train_util.collator_class(Value("i", epoch), Value("i", 0), group)
    loader = torch.utils.data.DataLoader(group, batch_size=1, shuffle=False, collate_fn=collator, num_workers=0)
    return list(loader)


def test_cells_mask_their_sources_transparent_regions(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """Dynamic mode: zero weight inside every source's transparent region, full weight elsewhere in its cell."""
    group, _, _ = load(tmp_path, toks, write_alpha_dataset(tmp_path), "--masked_loss")
    dataset = group.datasets[0]
    dataset.debug_dataset = True  # __getitem__ then reports the image keys
    masked_loss = fakes.import_sd("library.custom_train_functions").apply_masked_loss
    frames_seen, singles_seen, zero_px, zero_latents, masked = 0, 0, 0, 0, set()
    for batch in iterate(group, 1):
        assert batch["alpha_masks"] is not None
        for n, key in enumerate(batch["image_keys"]):
            alpha = batch["alpha_masks"][n].numpy()
            if key not in dataset._frames:  # a single image: sd-scripts' own alpha (the file's, as it is)
                with Image.open(key) as raw:
                    expected = np.asarray(raw)[:, :, 3].astype(np.float32) / 255.0
                np.testing.assert_array_equal(alpha, expected)
                singles_seen += 1
                continue
            frames, slot = dataset._frames[key]
            params = frames.params(slot, 1)
            assert alpha.shape == (params.layout.frame.height, params.layout.frame.width)
            zero, one = regions(frames, frames.groups(1)[slot], params, masked)
            # sd-scripts' masked loss on a loss of ones at latent size: the weight each latent pixel gets.
            weights = masked_loss(
                torch.ones(1, 4, alpha.shape[0] // 8, alpha.shape[1] // 8),
                {"alpha_masks": batch["alpha_masks"][n : n + 1]},
            )[0, 0].numpy()
            for rows, cols in zero:
                assert (alpha[rows, cols] == 0).all(), f"{key}: transparent source pixels have weight > 0"
                zero_px += alpha[rows, cols].size
                latent = weights[-(-rows.start // 8) : rows.stop // 8, -(-cols.start // 8) : cols.stop // 8]
                assert (latent == 0).all(), f"{key}: masked loss is not 0 on a transparent region"
                zero_latents += latent.size
            for rows, cols in one:
                assert (alpha[rows, cols] == 1).all(), f"{key}: opaque source pixels lost weight"
            frames_seen += 1
    assert frames_seen and singles_seen == 1 and zero_px > 1000 and zero_latents > 10
    assert masked == {f"img_{i:02d}.png" for i in range(4)}  # RGBA, LA, palette + tRNS, RGB + colour key


def test_alpha_mask_off_keeps_sources_flattened(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """Without alpha_mask sd-scripts asks for no mask: frames are RGB, their transparency composited onto the fill."""
    group, _, _ = load(tmp_path, toks, write_alpha_dataset(tmp_path, subset=""))
    assert all(batch["alpha_masks"] is None for batch in iterate(group, 1))


def test_static_frames_carry_source_alpha_and_pad_weight_through_latent_caching(
    tmp_path: Path, toks: fakes.TinyTokenizers
) -> None:
    """Static mode + --cache_latents: the cached mask is 0 on transparent source pixels, the pad weight on padding."""
    config = write_alpha_dataset(
        tmp_path,
        general="collage_loss_mask = true\ncollage_pad_weight = 0.25\ncollage_gutter = 8\ncollage_variants = 1",
    )
    group, _, _ = load(tmp_path, toks, config, "--cache_latents", "--masked_loss")
    dataset = group.datasets[0]
    assert dataset._static
    with torch.no_grad():
        if MAIN:
            group.new_cache_latents(fakes.make_sdxl_vae(), fakes.SingleProcessAccelerator())
        else:
            group.cache_latents(fakes.make_sdxl_vae(), 1, False, True)
    zero_regions = 0
    for path, (frames, members, variant) in dataset._static.items():
        sources = frames.sources_of(members)
        params = frames.collage.make_params(
            sources, seed=frames.pool.seed, epoch=variant, frame=frames.pool.frame_for(members)
        )
        mask = frames.collage.render(sources, params, with_mask=True).mask
        cached = np.asarray(dataset.image_data[path].alpha_mask, dtype=np.float32)
        assert cached.shape == mask.shape
        assert mask.any() and (cached[mask] == np.float32(round(0.25 * 255) / 255)).all()
        zero, one = regions(frames, members, params)
        zero_regions += len(zero)
        for rows, cols in zero:
            assert (cached[rows, cols] == 0).all()
        for rows, cols in one:
            assert (cached[rows, cols] == 1).all()
        with Image.open(path) as png:
            assert png.mode == "RGBA"
    assert zero_regions >= 4


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_preview_shows_the_weights_training_gets(
    tmp_path: Path, toks: fakes.TinyTokenizers, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """`collage-ext preview` writes each frame with the alpha the adapter hands sd-scripts (dynamic) or caches."""
    from collage_ext.cli import main
    from test_cli_identity import load as load_like_the_cli

    extra = ["--cache_latents"] if mode == "static" else []
    with fakes.as_the_cli(monkeypatch):
        config = write_alpha_dataset(tmp_path / "data", general="collage_loss_mask = true\ncollage_pad_weight = 0.5")
        group = load_like_the_cli(tmp_path, toks, config, *extra)
        dataset = group.datasets[0]
        out = tmp_path / "preview"
        assert main(["preview", str(config), "--out", str(out), "--", *extra]) == 0  # seed derived, as in training
    if mode == "dynamic":
        group.set_current_epoch(1)
        expected = {
            Path(path).stem: dataset.load_image_with_face_info(dataset.image_to_subset[path], path, True)[0]
            for path in dataset._frames
        }
    else:
        expected = {}
        for path in dataset._static:
            with Image.open(path) as png:
                expected[Path(path).stem] = np.asarray(png)
    assert expected
    for stem, pixels in expected.items():
        with Image.open(out / "frames" / f"{stem}.png") as png:
            assert png.mode == "RGBA"
            np.testing.assert_array_equal(np.asarray(png), pixels)
