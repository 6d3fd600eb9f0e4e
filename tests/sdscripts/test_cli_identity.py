"""The CLI against the REAL sd-scripts loader: preview frames are the frames training gets, byte for byte.

* ``collage-ext preview`` (no sd-scripts import) and ``CollageDataset`` (real ``config_util`` /
  ``DreamBoothDataset``) are built from the same dataset TOML; every preview PNG must decode to the
  exact array ``load_image_with_face_info`` returns for that slot and epoch, and every caption must
  match; in static mode the preview PNGs equal the frames in the static cache.
* ``collage-ext export`` output loads with plain sd-scripts (``--train_data_dir``, no dataset class)
  and yields the exported frames and captions.
* ``collage-ext inspect`` reads the settings sd-scripts would write into a LoRA's metadata.
"""

from __future__ import annotations

import collections
import json
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

from PIL import Image

import fakes
from collage_ext.cli import main

MAIN = fakes.is_strategy_era()
pytestmark = pytest.mark.sdscripts

# portraits, landscapes, squares and one image too small for any 256 px collage cell (stays single)
SIZES = [(128, 192)] * 4 + [(192, 128)] * 4 + [(160, 160)] * 3 + [(64, 64)]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fresh strategies, no hub, sd-scripts' global RNG use contained, and no stray --seed in sys.argv."""
    with fakes.as_the_cli(monkeypatch):
        yield


def write_data(root: Path) -> Path:
    """Two train subsets (collage, plain), one collage reg subset; returns the dataset TOML."""
    fakes.write_dreambooth_dir(
        root, subdir="10_chars", sizes=SIZES, captions=[f"sks, id{i:03d}, tag{i % 3}" for i in range(len(SIZES))]
    )
    fakes.write_dreambooth_dir(root, subdir="2_plain", sizes=SIZES[:3], captions=["plain"] * 3, seed=50)
    fakes.write_dreambooth_dir(root, subdir="1_reg", sizes=SIZES[:5], captions=["person"] * 5, seed=80)
    path = root / "dataset.toml"
    path.write_text(
        '[general]\ncaption_extension = ".txt"\nkeep_tokens = 1\ncollage_rate = 0.8\n'
        'collage_caption_merge = "tags"\n\n'
        "[[datasets]]\nresolution = 256\nbatch_size = 1\nenable_bucket = true\n\n"
        f'  [[datasets.subsets]]\n  image_dir = "{(root / "10_chars").as_posix()}"\n  num_repeats = 3\n\n'
        f'  [[datasets.subsets]]\n  image_dir = "{(root / "2_plain").as_posix()}"\n  num_repeats = 2\n'
        "  collage_rate = 0.0\n\n"
        f'  [[datasets.subsets]]\n  image_dir = "{(root / "1_reg").as_posix()}"\n  is_reg = true\n'
        "  collage_rate = 1.0\n  collage_max_images = 2\n",
        encoding="utf-8",
    )
    return path


def load(tmp: Path, toks: fakes.TinyTokenizers, config: Path, *extra: str) -> Any:
    """``train_util.load_arbitrary_dataset`` as the trainer calls it."""
    argv = [
        "--dataset_config",
        str(config),
        "--dataset_class",
        "collage_ext.CollageDataset",
        "--tokenizer_cache_dir",
        str(toks.cache_dir),
        "--output_dir",
        str(tmp / "out"),
        "--max_data_loader_n_workers",
        "0",
        "--seed",
        "7",
        *extra,
    ]
    args = fakes.make_args("sdxl", argv)
    trainer = fakes.make_trainer("sdxl")
    train_util = fakes.import_sd("library.train_util")
    if MAIN:
        fakes.set_pre_dataset_strategies(trainer, args)
        group = train_util.load_arbitrary_dataset(args)
        fakes.set_post_dataset_strategies(trainer, args, group)
        group.set_current_strategies()
    else:
        group = train_util.load_arbitrary_dataset(args, trainer.load_tokenizer(args))
    return group


def training_frames(group: Any, epoch: int) -> dict[str, tuple[np.ndarray, str]]:
    """slot file stem -> (frame pixels, merged caption) exactly as the adapter produces them at ``epoch``."""
    group.set_current_epoch(epoch)
    out = {}
    for dataset in group.datasets:
        for path, (frames, slot) in dataset._frames.items():
            subset = dataset.image_to_subset[path]
            image = dataset.load_image_with_face_info(subset, path, False)[0]
            caption = frames.collage.caption(frames.params(slot, epoch))
            out[Path(path).stem] = (np.asarray(image), caption)
    return out


def preview_frames(out: Path) -> dict[str, tuple[np.ndarray, str]]:
    """stem -> (pixels, caption) of a preview folder."""
    frames = {}
    for png in sorted((out / "frames").glob("*.png")):
        if png.stem.endswith("_mask"):
            continue
        with Image.open(png) as img:
            frames[png.stem] = (np.asarray(img.convert("RGB")), png.with_suffix(".txt").read_text("utf-8").rstrip("\n"))
    return frames


@pytest.mark.parametrize("seed_args", [[], ["--seed", "7"]], ids=["derived-seed", "explicit-seed"])
def test_preview_is_byte_identical_to_training(
    tmp_path: Path, toks: fakes.TinyTokenizers, monkeypatch: pytest.MonkeyPatch, seed_args: list[str]
) -> None:
    """Dynamic mode, epochs 1 and 3: same slots, same pixels, same captions (seed derived or from --seed)."""
    config = write_data(tmp_path / "data")
    monkeypatch.setattr(sys, "argv", ["sdxl_train_network.py", *seed_args])
    group = load(tmp_path, toks, config)
    assert group.datasets[0].bucket_info["collage_ext"]["mode"] == "dynamic"
    for epoch in (1, 3):
        expected = training_frames(group, epoch)
        out = tmp_path / f"preview{epoch}"
        assert main(["preview", str(config), "--out", str(out), "--epoch", str(epoch), *seed_args]) == 0
        got = preview_frames(out)
        assert got.keys() == expected.keys() and len(got) > 4
        for stem, (pixels, caption) in expected.items():
            assert np.array_equal(got[stem][0], pixels), stem
            assert got[stem][1] == caption, stem
        summary = json.loads((out / "manifest.json").read_text("utf-8"))["summary"]
        assert summary["seed"] == group.datasets[0].bucket_info["collage_ext"]["seed"]


def test_static_preview_equals_static_cache(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """Static mode (--cache_latents): the preview shows every cached frame, pixel for pixel."""
    config = write_data(tmp_path / "data")
    group = load(tmp_path, toks, config, "--cache_latents")
    cached = {
        Path(i.absolute_path).stem: i.absolute_path
        for i in group.image_data.values()
        if Path(i.absolute_path).name.startswith("collage_")
    }
    out = tmp_path / "preview"
    assert main(["preview", str(config), "--out", str(out), "--", "--cache_latents"]) == 0
    got = preview_frames(out)
    assert got.keys() == cached.keys() and cached
    for stem, path in cached.items():
        with Image.open(path) as img:
            assert np.array_equal(got[stem][0], np.asarray(img.convert("RGB"))), stem


def test_export_trains_with_plain_sd_scripts(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """The exported folder loads with plain sd-scripts (--train_data_dir, no dataset class): frames + captions."""
    config = write_data(tmp_path / "data")
    out = tmp_path / "export"
    assert main(["export", str(config), "--out", str(out), "--variants", "2", "--seed", "7"]) == 0
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    args = fakes.make_args(
        "sdxl",
        [
            "--train_data_dir",
            str(out / "train"),
            "--reg_data_dir",
            str(out / "reg"),
            "--caption_extension",
            ".txt",
            "--resolution",
            "256",
            "--enable_bucket",
            "--tokenizer_cache_dir",
            str(toks.cache_dir),
        ],
    )
    trainer = fakes.make_trainer("sdxl")
    if MAIN:
        fakes.set_pre_dataset_strategies(trainer, args)
        plain = fakes.build_dataset_group(args)
        fakes.set_post_dataset_strategies(trainer, args, plain)
        plain.set_current_strategies()
    else:
        plain = fakes.build_dataset_group(args, tokenizer=trainer.load_tokenizer(args))
    registered = {Path(k).resolve(): v for k, v in plain.image_data.items()}
    train_frames = [f for f in manifest["frames"] if not f["file"].startswith("reg/")]
    assert train_frames and len(train_frames) < len(manifest["frames"])  # the reg subset has frames too
    for frame in manifest["frames"]:
        info = registered[(out / frame["file"]).resolve()]
        assert info.caption == frame["caption"]
        # sd-scripts re-balances reg repeats; a frame planned twice in a variant is one file with 2 repeats
        assert info.num_repeats == frame["repeats"] or frame["file"].startswith("reg/")
    train_singles = [s for s in manifest["singles"] if not s["file"].startswith("reg/")]
    assert plain.num_train_images == sum(f["repeats"] for f in train_frames) + sum(s["repeats"] for s in train_singles)
    # one epoch through sd-scripts' own __getitem__: every sample is a 3-channel image with a caption
    plain.set_current_epoch(1)
    seen = collections.Counter(c for i in range(len(plain)) for c in plain[i]["captions"])
    assert sum(seen.values()) == sum(i.num_repeats for i in plain.image_data.values())


def write_safetensors(path: Path, metadata: dict[str, str]) -> None:
    """A minimal .safetensors file (one tiny tensor) with ``metadata``, as sd-scripts saves LoRAs."""
    header = {"__metadata__": metadata, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    raw = json.dumps(header).encode("utf-8")
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0\0\0\0")


def test_inspect_reads_what_sd_scripts_writes(
    tmp_path: Path, toks: fakes.TinyTokenizers, capsys: pytest.CaptureFixture[str]
) -> None:
    """ss_datasets[i].bucket_info (with --dataset_config) and ss_bucket_info (without) both work."""
    config = write_data(tmp_path / "data")
    group = load(tmp_path, toks, config)
    bucket_info = group.datasets[0].bucket_info
    with_config = tmp_path / "a.safetensors"
    write_safetensors(with_config, {"ss_datasets": json.dumps([{"bucket_info": bucket_info}]), "ss_seed": "7"})
    assert main(["inspect", str(with_config)]) == 0
    text = capsys.readouterr().out
    assert "collage_rate = 0.8" in text and 'collage_caption_merge = "tags"' in text and "dataset 0" in text
    plain = tmp_path / "b.safetensors"
    write_safetensors(plain, {"ss_bucket_info": json.dumps(bucket_info)})
    assert main(["inspect", str(plain), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (
        data["collage_ext"][0]["dataset"] is None
        and data["collage_ext"][0]["seed"] == bucket_info["collage_ext"]["seed"]
    )


@pytest.mark.parametrize("extra", [[], ["--cache_latents"]], ids=["dynamic", "static"])
def test_preview_follows_the_skip_policy(tmp_path: Path, toks: fakes.TinyTokenizers, extra: list[str]) -> None:
    """collage_on_error = "skip": a file with a bad header leaves the pool, a truncated one rebuilds its frames,
    in training and in the preview alike."""
    config = write_data(tmp_path / "data")
    config.write_text(
        config.read_text().replace("collage_rate = 0.8\n", 'collage_rate = 0.8\ncollage_on_error = "skip"\n'),
        encoding="utf-8",
    )
    folder = tmp_path / "data" / "10_chars"
    (folder / "img_02.png").write_bytes(b"not an image at all")
    data = (folder / "img_05.png").read_bytes()
    (folder / "img_05.png").write_bytes(data[: len(data) // 2])  # header fine, pixels truncated
    group = load(tmp_path, toks, config, *extra)
    out = tmp_path / "preview"
    assert main(["preview", str(config), "--out", str(out), "--", *extra]) == 0
    got = preview_frames(out)
    if extra:
        cached = {
            Path(i.absolute_path).stem: i.absolute_path
            for i in group.image_data.values()
            if Path(i.absolute_path).name.startswith("collage_")
        }
        assert got.keys() == cached.keys()
        for stem, path in cached.items():
            with Image.open(path) as img:
                assert np.array_equal(got[stem][0], np.asarray(img.convert("RGB"))), stem
        return
    expected = training_frames(group, 1)
    assert got.keys() == expected.keys()
    for stem, (pixels, caption) in expected.items():
        assert np.array_equal(got[stem][0], pixels), stem
        assert got[stem][1] == caption, stem
    assert all("id002" not in c and "id005" not in c for _, c in expected.values())


def write_metadata_data(root: Path) -> Path:
    """A fine-tuning dataset whose metadata keys are stems, as sd-scripts' merge_captions_to_metadata.py writes them."""
    folder = fakes.write_dreambooth_dir(root, subdir="ft", sizes=SIZES, captions=["unused"] * len(SIZES)) / "ft"
    meta = root / "meta_cap.json"
    meta.write_text(
        json.dumps({f"img_{i:02d}": {"caption": f"sks, id{i:03d}", "tags": f"tag{i % 3}"} for i in range(len(SIZES))}),
        encoding="utf-8",
    )
    path = root / "dataset.toml"
    path.write_text(
        '[general]\ncollage_rate = 0.8\ncollage_caption_merge = "tags"\n\n'
        "[[datasets]]\nresolution = 256\nbatch_size = 1\nenable_bucket = true\n\n"
        f'  [[datasets.subsets]]\n  image_dir = "{folder.as_posix()}"\n'
        f'  metadata_file = "{meta.as_posix()}"\n  num_repeats = 2\n',
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("case", ["metadata_stems", "validation_split"])
def test_preview_follows_the_readers_drifts(tmp_path: Path, toks: fakes.TinyTokenizers, case: str) -> None:
    """metadata_file keys without extensions (v0.9.1 finds them by glob; main names files that do not exist
    and stops) and validation_split (main; v0.9.1 refuses the key): the preview shows the training frames,
    or both refuse."""
    if case == "metadata_stems":
        config = write_metadata_data(tmp_path / "data")
    else:
        config = write_data(tmp_path / "data")
        config.write_text(
            config.read_text().replace(
                "resolution = 256\n", "resolution = 256\nvalidation_split = 0.25\nvalidation_seed = 3\n"
            ),
            encoding="utf-8",
        )
    out = tmp_path / "preview"
    try:
        group = load(tmp_path, toks, config)
    except Exception as exc:  # noqa: BLE001  # sd-scripts stops on this dataset: so does the CLI
        assert MAIN if case == "metadata_stems" else not MAIN, exc
        assert ("img_00" in str(exc)) if case == "metadata_stems" else ("validation_split" in str(exc))
        assert main(["preview", str(config), "--out", str(out)]) in (1, 2)  # input error / config error
        return
    assert main(["preview", str(config), "--out", str(out)]) == 0
    expected, got = training_frames(group, 1), preview_frames(out)
    assert got.keys() == expected.keys() and len(got) > 2
    for stem, (pixels, caption) in expected.items():
        assert np.array_equal(got[stem][0], pixels), stem
        assert got[stem][1] == caption, stem
