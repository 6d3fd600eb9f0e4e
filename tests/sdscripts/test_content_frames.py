"""Content-shaped frames inside the REAL sd-scripts loader (issue 10's acceptance).

A dataset TOML without any collage key plus the one line ``dataset_class`` gives collage frames;
with ``enable_bucket`` each frame is rendered at a bucket resolution, so sd-scripts neither resizes
nor crops it: the tensor that reaches the trainer is the composed frame, pixel for pixel.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import fakes
from collage_ext.commands.demo import draw_landscape, draw_portrait
from collage_ext.core.types import Size
from collage_ext.plan.policy import compose
from test_collage_dataset import cache_all, frame_paths, id_counts, load, run_loader

pytestmark = pytest.mark.sdscripts

# (W, H) of mixed photos: 2:3, 3:4, 9:16 portraits, 3:2, 16:9 landscapes, squares; about 0.2-0.25 MP.
PHOTOS = [(384, 576)] * 5 + [(432, 576)] * 3 + [(360, 640)] * 2 + [(576, 384)] * 4 + [(640, 360)] * 3 + [(480, 480)] * 3
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "teal", "pink"]


def write_photos(root: Path, sizes: list[tuple[int, int]] = PHOTOS) -> Path:
    """Drawn people (portraits) and horizons (landscapes, squares), JPEG and PNG, captions ``sks, idNNN``."""
    folder = root / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        color = COLORS[i % len(COLORS)]
        image = draw_portrait(Size(w, h), color, "azure") if h > w else draw_landscape(Size(w, h), color, "sand")
        image.save(folder / (f"p{i:02d}.jpg" if i % 2 else f"p{i:02d}.png"), **({"quality": 95} if i % 2 else {}))
        (folder / f"p{i:02d}.txt").write_text(f"sks, id{i:03d}\n", encoding="utf-8")
    return folder


def plain_toml(tmp: Path, folder: Path, *, batch_size: int = 1, repeats: int = 2, extra: str = "") -> Path:
    """A dataset TOML a user already has: no collage key at all."""
    path = tmp / "dataset.toml"
    path.write_text(
        f'[general]\ncaption_extension = ".txt"\n\n[[datasets]]\nresolution = 512\nbatch_size = {batch_size}\n'
        f"enable_bucket = true\nmax_bucket_reso = 1024\n{extra}\n"
        f'  [[datasets.subsets]]\n  image_dir = "{folder.as_posix()}"\n  num_repeats = {repeats}\n',
        encoding="utf-8",
    )
    return path


def expected_tensor(dataset: Any, key: str, epoch: int) -> np.ndarray:
    """The frame the adapter composes for a slot, in sd-scripts' tensor convention ((x / 255 - 0.5) / 0.5)."""
    frames, slot = dataset._frames[key]
    params = frames.params(slot, epoch)
    rendered, _ = compose(frames.collage, frames.sources_of(frames.groups(epoch)[slot]), params, dataset._failures)
    return ((rendered.image.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


def test_one_line_gives_collages_with_exact_coverage(
    tmp_path: Path, toks: fakes.TinyTokenizers, caplog: pytest.LogCaptureFixture
) -> None:
    """No collage key + dataset_class: collage frames; 3 epochs x 2 workers show every image num_repeats times."""
    config = plain_toml(tmp_path, write_photos(tmp_path))
    with caplog.at_level(logging.INFO, logger="collage_ext"):
        group, _, _ = load(tmp_path, toks, config)
    assert sum("collage is on by default" in r.getMessage() for r in caplog.records) == 1
    dataset = group.datasets[0]
    assert dataset._frames and len(group) < 2 * len(PHOTOS)  # frames hold several images
    epochs = run_loader(group, workers=2, persistent=True, epochs=3)
    for frames in epochs:
        assert id_counts([caption for caption, _ in frames]) == {f"id{i:03d}": 2 for i in range(len(PHOTOS))}
    assert epochs[0] != epochs[1]  # new partners every epoch
    with fakes.fresh_strategies():
        reference, _, _ = load(tmp_path / "ref", toks, config)
        assert run_loader(reference, 0, False, epochs=3) == epochs  # workers change nothing


def test_frames_arrive_at_their_bucket_without_a_second_resize(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """Every frame's registered size is its bucket; the batch tensor equals the composed frame exactly."""
    config = plain_toml(tmp_path, write_photos(tmp_path), batch_size=3)
    group, _, _ = load(tmp_path, toks, config)
    dataset = group.datasets[0]
    dataset.debug_dataset = True  # sd-scripts then names each sample's image key
    shapes, multi = set(), 0
    group.set_current_epoch(1)
    for index in range(len(group)):
        example = group[index]
        images = example["images"]
        multi += images.shape[0] > 1  # a batch of several frames collated into one tensor
        for n, key in enumerate(example["image_keys"]):
            info = dataset.image_data[key]
            if key not in dataset._frames:
                continue
            assert info.bucket_reso == info.image_size == info.resized_size  # scale 1.0, no crop
            w, h = info.image_size
            assert tuple(images[n].shape) == (3, h, w)
            assert example["original_sizes_hw"][n].tolist() == [h, w] == example["target_sizes_hw"][n].tolist()
            assert example["crop_top_lefts"][n].tolist() == [0, 0]
            assert np.array_equal(images[n].numpy(), expected_tensor(dataset, key, 1))
            shapes.add((w, h))
    assert len(shapes) >= 3 and multi  # portraits side by side, landscapes stacked, squares...
    stats = dataset._collage_info[0]["stats"]
    # 20 photos at resolution 512 (64-px bucket steps): mean fill 0.928-0.94 over 30 tmp paths, which reach
    # the grouping through the pool key (one run in 20 gave 0.9277). Issue 10's 0.93 is a benchmark target
    # on 91 photos at 1024 (benchmarks/bench_layout.py), where the planner before issue 10 gave 0.72.
    assert stats["mean_fill"] >= 0.9 and stats["span_share"] >= 0.9 and stats["images_per_frame"] >= 1.8


def test_static_content_frames_reuse_every_cache(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """Static mode with --cache_latents_to_disk: the second run encodes nothing and rewrites no npz."""
    folder = write_photos(tmp_path)
    config = plain_toml(tmp_path, folder, extra="")
    flags = ["--cache_latents", "--cache_latents_to_disk", "--network_train_unet_only"]

    def build_and_cache() -> tuple[set[str], int, set[tuple[int, int]]]:
        with fakes.fresh_strategies():
            group, args, trainer = load(tmp_path, toks, config, *flags)
            vae = fakes.make_sdxl_vae()
            cache_all(group, args, trainer, vae, toks)
            infos = [
                i for i in group.datasets[0].image_data.values() if Path(i.absolute_path).name.startswith("collage_")
            ]
            assert all(i.bucket_reso == i.image_size for i in infos)
            return frame_paths(group), vae.num_encoded, {i.image_size for i in infos}

    first, encoded, sizes = build_and_cache()
    assert first and encoded == len(first) and len(sizes) >= 3
    cache_dir = tmp_path / "out" / "collage_cache"
    npz = {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("*.npz")}
    assert len(npz) == len(first)
    again, encoded, _ = build_and_cache()
    assert again == first and encoded == 0
    assert {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("*.npz")} == npz


def test_fixed_frame_setting_keeps_the_square_frame(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """collage_frame_size set: every frame is that size (today's gallery look), bucketing or not."""
    config = plain_toml(tmp_path, write_photos(tmp_path), extra="")
    text = config.read_text(encoding="utf-8").replace("[general]\n", '[general]\ncollage_frame_size = "512,512"\n')
    config.write_text(text, encoding="utf-8")
    group, _, _ = load(tmp_path, toks, config)
    dataset = group.datasets[0]
    assert dataset._frames and {dataset.image_data[k].image_size for k in dataset._frames} == {(512, 512)}


def test_bucket_no_upscale_frames_are_their_own_buckets(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """bucket_no_upscale: sd-scripts' per-image bucket of each frame is the frame itself (no resize)."""
    config = plain_toml(tmp_path, write_photos(tmp_path), extra="bucket_no_upscale = true")
    group, _, _ = load(tmp_path, toks, config)
    dataset = group.datasets[0]
    infos = [dataset.image_data[k] for k in dataset._frames]
    assert infos and all(i.bucket_reso == i.image_size == i.resized_size for i in infos)
    assert all(w * h <= 512 * 512 and w % 64 == 0 and h % 64 == 0 for w, h in (i.image_size for i in infos))
