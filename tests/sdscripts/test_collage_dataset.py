"""CollageDataset inside the REAL sd-scripts code: loader, sanitizer, buckets, DataLoader, caches.

Every source image gets a unique caption tag ``idNNN``; a frame's merged caption therefore names
exactly the images it holds, so coverage can be checked from what sd-scripts' own DataLoader yields.
"""

from __future__ import annotations

import collections
import hashlib
import re
import sys
from multiprocessing import Value
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import torch

import fakes
from collage_ext.core.errors import CollageConfigError

MAIN = fakes.is_strategy_era()
main_only = pytest.mark.skipif(not MAIN, reason="Flux/Chroma and the strategy API exist only on sd-scripts main")
pytestmark = pytest.mark.sdscripts

# (W, H): 2:3 and 3:4 portraits and landscapes that all fit 256 px frames within the upscale limit and keep
# the scale rule side by side / stacked in them (a square cannot: with 256 px buckets every frame is square).
SIZES = [(128, 192)] * 4 + [(192, 128)] * 4 + [(144, 192)] * 4
ID = re.compile(r"id\d{3}")


def write_dataset(root: Path, sizes: list[tuple[int, int]] = SIZES) -> Path:
    """Images with unique caption tags ``sks, idNNN`` in ``root/img``."""
    fakes.write_dreambooth_dir(root, subdir="img", sizes=sizes, captions=[f"sks, id{i:03d}" for i in range(len(sizes))])
    return root / "img"


def dataset_toml(tmp: Path, image_dir: Path, general: str = "", subset: str = "", repeats: int = 2) -> Path:
    """A --dataset_config TOML in sd-scripts' documented shape, with collage keys where given."""
    path = tmp / "dataset.toml"
    path.write_text(
        f'[general]\ncaption_extension = ".txt"\n{general}\n'
        f"[[datasets]]\nresolution = 256\nbatch_size = 1\nenable_bucket = true\n"
        f'  [[datasets.subsets]]\n  image_dir = "{image_dir.as_posix()}"\n  num_repeats = {repeats}\n'
        f"  keep_tokens = 1\n  {subset}\n",
        encoding="utf-8",
    )
    return path


def load(
    tmp: Path, toks: fakes.TinyTokenizers, config: Path | None, *extra: str, kind: str = "sdxl", **config_file: Any
) -> tuple[Any, Any, Any]:
    """``train_util.load_arbitrary_dataset`` exactly as the trainer calls it; returns (group, args, trainer).

    ``config_file`` keys land on ``args`` the way sd-scripts' ``--config_file`` TOML puts them there.
    """
    argv = [
        "--dataset_class",
        "collage_ext.CollageDataset",
        "--tokenizer_cache_dir",
        str(toks.cache_dir),
        "--output_dir",
        str(tmp / "out"),
        "--max_data_loader_n_workers",
        "0",
        "--seed",
        "42",
        *extra,
    ]
    if config is not None:
        argv += ["--dataset_config", str(config)]
    if kind == "flux":
        argv += ["--pretrained_model_name_or_path", str(fakes.make_flux_checkpoint_stub(tmp / "flux1-dev.safetensors"))]
    args = fakes.make_args(kind, argv, strict=False, **config_file)  # type: ignore[arg-type]
    group, trainer = fakes.load_with_dataset_class(kind, args)  # type: ignore[arg-type]
    return group, args, trainer


def epoch_captions(group: Any, epoch: int) -> list[str]:
    """Every caption the dataset yields in one epoch (direct indexing, like workers=0)."""
    group.set_current_epoch(epoch)
    return [c for i in range(len(group)) for c in group[i]["captions"]]


def id_counts(captions: list[str]) -> collections.Counter[str]:
    """How often each source image appears in a list of frame captions."""
    return collections.Counter(i for c in captions for i in ID.findall(c))


@pytest.mark.parametrize(
    "kind", ["sdxl", pytest.param("flux", marks=main_only), pytest.param("chroma", marks=main_only)]
)
def test_loads_through_real_loader(tmp_path: Path, toks: fakes.TinyTokenizers, kind: str) -> None:
    """The one-line enable yields a genuine DatasetGroup of collage frames at the frame size."""
    config = dataset_toml(tmp_path, write_dataset(tmp_path), general="collage_rate = 1.0")
    group, _, _ = load(tmp_path, toks, config, kind=kind)
    train_util = fakes.import_sd("library.train_util")
    assert isinstance(group, train_util.DatasetGroup)
    assert all(isinstance(d, train_util.DreamBoothDataset) for d in group.datasets)
    example = group[0]
    assert tuple(example["images"].shape[1:]) == (3, 256, 256)
    assert example["original_sizes_hw"].tolist() == [[256, 256]]  # SDXL size conditioning = the frame
    assert len(ID.findall(example["captions"][0])) >= 2
    assert id_counts(epoch_captions(group, 1)) == {f"id{i:03d}": 2 for i in range(len(SIZES))}


def test_collage_rate_zero_is_plain_sd_scripts(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """collage_rate = 0: the dataset holds exactly sd-scripts' own images, repeats and captions."""
    image_dir = write_dataset(tmp_path)
    plain_config = dataset_toml(tmp_path, image_dir)  # what plain sd-scripts reads (it rejects collage keys)
    config = tmp_path / "collage_off.toml"
    config.write_text(
        plain_config.read_text(encoding="utf-8").replace("[general]\n", "[general]\ncollage_rate = 0\n"),
        encoding="utf-8",
    )
    group, args, _ = load(tmp_path, toks, config)
    args.dataset_config = str(plain_config)
    with fakes.fresh_strategies():
        trainer = fakes.make_trainer("sdxl")
        if MAIN:
            fakes.set_pre_dataset_strategies(trainer, args)
            plain = fakes.build_dataset_group(args)
        else:
            plain = fakes.build_dataset_group(args, tokenizer=trainer.load_tokenizer(args))
    ours = {k: (v.num_repeats, v.caption, v.bucket_reso) for k, v in group.image_data.items()}
    theirs = {k: (v.num_repeats, v.caption, v.bucket_reso) for k, v in plain.image_data.items()}
    assert ours == theirs and len(group) == len(plain)


def test_partners_change_between_epochs(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """Dynamic mode: the same number of frames every epoch, different groupings."""
    config = dataset_toml(tmp_path, write_dataset(tmp_path), general="collage_rate = 1.0")
    group, _, _ = load(tmp_path, toks, config)
    e1, e2 = epoch_captions(group, 1), epoch_captions(group, 2)
    assert len(e1) == len(e2) and set(e1) != set(e2)


def run_loader(group: Any, workers: int, persistent: bool, epochs: int = 3) -> list[list[tuple[str, str]]]:
    """Iterate like train_network.py: real collator_class, shared epoch Value, shuffled DataLoader.

    Returns, per epoch, the sorted (caption, sha256 of the frame tensor) of every sample.
    """
    train_util = fakes.import_sd("library.train_util")
    current_epoch, current_step = Value("i", 0), Value("i", 0)
    collator = train_util.collator_class(current_epoch, current_step, group if workers == 0 else None)
    loader = torch.utils.data.DataLoader(
        group,
        batch_size=1,
        shuffle=True,
        collate_fn=collator,
        num_workers=workers,
        persistent_workers=persistent and workers > 0,
    )
    seen = []
    for epoch in range(epochs):
        current_epoch.value = epoch + 1
        frames = []
        for batch in loader:
            for n, caption in enumerate(batch["captions"]):
                frames.append((caption, hashlib.sha256(batch["images"][n].numpy().tobytes()).hexdigest()))
        seen.append(sorted(frames))
    return seen


@pytest.mark.parametrize(
    ("workers", "persistent"),
    [(0, False), (2, False), (2, True)],
    ids=["main-process", "2-workers", "2-persistent-workers"],
)
def test_exact_coverage_through_dataloader(
    tmp_path: Path, toks: fakes.TinyTokenizers, workers: int, persistent: bool
) -> None:
    """Each epoch shows every image exactly num_repeats times, and the frames match workers=0 byte for byte."""
    config = dataset_toml(tmp_path, write_dataset(tmp_path), general="collage_rate = 0.7")
    group, _, _ = load(tmp_path, toks, config)
    epochs = run_loader(group, workers, persistent)
    expected = {f"id{i:03d}": 2 for i in range(len(SIZES))}
    for frames in epochs:
        assert id_counts([caption for caption, _ in frames]) == expected
    if workers:
        with fakes.fresh_strategies():
            reference, _, _ = load(tmp_path / "ref", toks, config)
            assert run_loader(reference, 0, False) == epochs


def test_wrong_values_fail_before_models(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """A bad value, an unknown key and an incompatible combination name the key, location and fix."""
    image_dir = write_dataset(tmp_path)
    cases = [
        ("collage_rate = 2.0", r"collage_rate must be a number in \[0, 1\], got 2.0.* @ data\['general'\]"),
        ("collage_rat = 1.0", r"unknown collage option 'collage_rat'; did you mean 'collage_rate'"),
    ]
    for general, pattern in cases:
        with fakes.fresh_strategies(), pytest.raises(CollageConfigError, match=pattern):
            load(tmp_path, toks, dataset_toml(tmp_path, image_dir, general=general))
    config = dataset_toml(tmp_path, image_dir, general='collage_rate = 1.0\ncollage_mode = "dynamic"')
    with fakes.fresh_strategies(), pytest.raises(CollageConfigError, match="collage_mode = 'static'"):
        load(tmp_path, toks, config, "--cache_latents")


def cache_all(group: Any, args: Any, trainer: Any, vae: Any, toks: fakes.TinyTokenizers) -> None:
    """Run sd-scripts' own latent and text-encoder caching (disk) as the trainer would."""
    te1, te2 = fakes.make_sdxl_text_encoders(toks)
    acc = fakes.SingleProcessAccelerator()
    with torch.no_grad():
        if MAIN:
            group.new_cache_latents(vae, acc)
            trainer.cache_text_encoder_outputs_if_needed(args, acc, None, None, [te1, te2], group, torch.float32)
        else:
            tokenizers = trainer.load_tokenizer(args)
            group.cache_latents(vae, args.vae_batch_size, args.cache_latents_to_disk, acc.is_main_process)
            trainer.cache_text_encoder_outputs_if_needed(
                args, acc, None, None, tokenizers, [te1, te2], group, torch.float32
            )


def frame_paths(group: Any) -> set[str]:
    """The static frame files registered in the group."""
    return {i.absolute_path for i in group.image_data.values() if Path(i.absolute_path).name.startswith("collage_")}


def test_static_mode_disk_caches_reused_and_invalidated(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """Static frames + sd-scripts' disk caches: a rerun reuses every cache file; one changed caption
    invalidates exactly the frames that contain that image."""
    image_dir = write_dataset(tmp_path)
    config = dataset_toml(tmp_path, image_dir, general="collage_rate = 1.0\ncollage_variants = 2")
    flags = [
        "--cache_latents",
        "--cache_latents_to_disk",
        "--cache_text_encoder_outputs",
        "--cache_text_encoder_outputs_to_disk",
        "--network_train_unet_only",
        "--lowram",
    ]

    def build_and_cache() -> tuple[set[str], int]:
        with fakes.fresh_strategies():
            group, args, trainer = load(tmp_path, toks, config, *flags)
            vae = fakes.make_sdxl_vae()
            cache_all(group, args, trainer, vae, toks)
            return frame_paths(group), vae.num_encoded

    first, encoded = build_and_cache()
    assert first and encoded == len(first)
    cache_dir = tmp_path / "out" / "collage_cache"
    assert all(Path(p).parent == cache_dir for p in first)
    assert not list(image_dir.glob("*.npz"))  # never next to the sources
    npz = {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("*.npz")}
    assert len(npz) == 2 * len(first)  # latents + text-encoder outputs per frame

    again, encoded = build_and_cache()
    assert again == first and encoded == 0
    assert {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("*.npz")} == npz

    (image_dir / "img_03.txt").write_text("sks, id003, changed\n", encoding="utf-8")
    changed, encoded = build_and_cache()
    with_id3 = {p for p in first if "id003" in _REGISTERED[p]}
    assert changed - first and first - changed == with_id3
    assert encoded == len(changed - first)


_REGISTERED: dict[str, str] = {}  # static frame path -> the caption it was registered with


@pytest.fixture(autouse=True)
def _record_captions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remember each static frame's caption as it is registered (for the invalidation test)."""
    from collage_ext.sdscripts import mapper

    original = mapper.CollageMixin._new_info

    def recording(self: Any, path: str, caption: str, subset: Any, frame: Any) -> Any:
        _REGISTERED[path] = str(caption)
        return original(self, path, caption, subset, frame)

    monkeypatch.setattr(mapper.CollageMixin, "_new_info", recording)


def test_metadata_carries_collage_settings(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """bucket_info (written by sd-scripts into ss_datasets / ss_bucket_info) holds the settings."""
    config = dataset_toml(tmp_path, write_dataset(tmp_path), general='collage_rate = 1.0\ncollage_fill = "#202020"')
    group, _, _ = load(tmp_path, toks, config)
    info = group.datasets[0].bucket_info["collage_ext"]
    assert info["mode"] == "dynamic" and isinstance(info["seed"], int)
    assert info["subsets"][0]["settings"]["collage_fill"] == "#202020"


def test_seed_from_command_line(tmp_path: Path, toks: fakes.TinyTokenizers, monkeypatch: pytest.MonkeyPatch) -> None:
    """--seed on the command line is the collage seed; without it the seed is derived from the config."""
    config = dataset_toml(tmp_path, write_dataset(tmp_path), general="collage_rate = 1.0")
    monkeypatch.setattr(sys, "argv", ["sdxl_train_network.py", "--seed", "42"])
    group, _, _ = load(tmp_path, toks, config)
    assert group.datasets[0].bucket_info["collage_ext"]["seed"] == 42


def test_ranks_with_different_roots(
    tmp_path: Path, toks: fakes.TinyTokenizers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes of one run mount the dataset elsewhere; without --seed both plan the same frames.

    The derived seed reduces paths to their names (``run.derived_seed``); it used to hash the absolute
    paths, so each node planned other frames (and trained others). Same epochs, same pixels, same captions.
    """
    monkeypatch.setattr(sys, "argv", ["sdxl_train_network.py"])  # no --seed: the derived one
    plans = []
    for root in (tmp_path / "node_a" / "mnt", tmp_path / "b" / "deeper" / "place"):
        root.mkdir(parents=True)
        config = dataset_toml(root, write_dataset(root), general="collage_rate = 1.0")
        with fakes.fresh_strategies():  # a second trainer in this process (each node has its own)
            group, _, _ = load(root, toks, config)
            seed = group.datasets[0].bucket_info["collage_ext"]["seed"]
            frames = []
            for epoch in (1, 2):
                group.set_current_epoch(epoch)
                for i in range(len(group)):
                    example = group[i]
                    frames += [
                        (c, hashlib.sha256(example["images"][n].numpy().tobytes()).hexdigest())
                        for n, c in enumerate(example["captions"])
                    ]
        plans.append((seed, frames))
    assert plans[0][1] and all(len(ID.findall(c)) >= 2 for c, _ in plans[0][1])
    assert plans[0] == plans[1]


def test_train_data_dir_with_config_file_defaults(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """--train_data_dir with N_name folders; collage keys from the training --config_file apply to all."""
    fakes.write_dreambooth_dir(
        tmp_path / "data", subdir="3_cat", sizes=SIZES[:6], captions=[f"sks, id{i:03d}" for i in range(6)]
    )
    group, _, _ = load(
        tmp_path,
        toks,
        None,
        "--train_data_dir",
        str(tmp_path / "data"),
        "--caption_extension",
        ".txt",
        "--resolution",
        "256",
        collage_rate=1.0,
        collage_max_images=2,
    )
    captions = epoch_captions(group, 1)
    assert id_counts(captions) == {f"id{i:03d}": 3 for i in range(6)}  # 3 repeats from the folder name
    assert all(len(ID.findall(c)) == 2 for c in captions)


def test_in_json_fine_tuning(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """--in_json (FineTuningDataset) subsets make collage frames too."""
    import json

    image_dir = write_dataset(tmp_path, SIZES[:6])
    # absolute image paths as keys: the one metadata form both v0.9.1 and main resolve the same way
    meta = {str(p): {"caption": p.with_suffix(".txt").read_text().strip()} for p in sorted(image_dir.glob("*.png"))}
    (tmp_path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    group, _, _ = load(
        tmp_path,
        toks,
        None,
        "--train_data_dir",
        str(image_dir),
        "--in_json",
        str(tmp_path / "meta.json"),
        "--resolution",
        "256",
        collage_rate=1.0,
    )
    train_util = fakes.import_sd("library.train_util")
    assert isinstance(group.datasets[0], train_util.FineTuningDataset)
    assert id_counts(epoch_captions(group, 1)) == {f"id{i:03d}": 1 for i in range(6)}


def test_phrase_repetition_uses_trainer_tokenizer(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """collage_repeat_phrases repeats a present phrase; the counter is the trainer's real tokenizer."""
    config = dataset_toml(
        tmp_path,
        write_dataset(tmp_path),
        general='collage_rate = 1.0\ncollage_repeat_phrases = ["<keep_tokens>"]\ncollage_repeat_count = 1',
        subset='caption_separator = ","',
    )
    group, _, _ = load(tmp_path, toks, config, "--max_token_length", "150")
    frames = next(f for f, _ in group.datasets[0]._frames.values())
    counter = frames.collage.counter
    assert counter is not None and counter("sks, id001") == len(
        toks.clip_l("sks, id001", add_special_tokens=False)["input_ids"]
    )
    assert frames.collage.budget is not None and frames.collage.budget.max_tokens == 150


def test_regularisation_subset_stays_single(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """A reg subset keeps plain sd-scripts behaviour unless it sets collage_rate itself."""
    image_dir = write_dataset(tmp_path, SIZES[:4])
    reg_dir = tmp_path / "reg"
    fakes.write_dreambooth_dir(tmp_path, subdir="reg", sizes=SIZES[:4], captions=["person"] * 4)
    config = dataset_toml(tmp_path, image_dir, general="collage_rate = 1.0")
    config.write_text(
        config.read_text() + f'  [[datasets.subsets]]\n  image_dir = "{reg_dir.as_posix()}"\n  is_reg = true\n',
        encoding="utf-8",
    )
    group, _, _ = load(tmp_path, toks, config)
    reg_infos = [i for i in group.image_data.values() if i.is_reg]
    assert sorted(Path(i.absolute_path).parent.name for i in reg_infos) == ["reg"] * 4
    assert all(not Path(i.absolute_path).name.startswith("collage") for i in reg_infos)
