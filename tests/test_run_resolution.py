"""One run resolution (``collage_ext.plan.run``): dataset source, mode, seed and cache folder, for the CLI and
the trainer alike; above all, a derived seed that every node of a multi-node run computes alike.

Two "ranks" see the same dataset under different mount points (a copy in another absolute folder, and
one reached through a relative path from another working folder): their plans must be identical.
The sd-scripts side of the same check is ``tests/sdscripts/test_collage_dataset.py::test_ranks_with_different_roots``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import toml

from collage_ext.cli import main
from collage_ext.core.config import CollageConfig, split_dataset_config
from collage_ext.core.errors import CollageConfigError
from collage_ext.kohya.args import dataset_source
from collage_ext.kohya.datasets import build_run
from collage_ext.plan.run import derived_seed, node_independent, resolve_run, resolve_seed
from test_cli import frame_files, write_images, write_toml


def rank_copy(dataset: Path, root: Path) -> Path:
    """The dataset folder copied under ``root`` with its own TOML naming the copy by its absolute path."""
    image_dir = root / "img"
    shutil.copytree(dataset, image_dir)
    return write_toml(root / "dataset.toml", image_dir.resolve())


def plan_of(out: Path) -> tuple[int, list[str], list[str]]:
    """A preview's seed, frame digests and frame captions."""
    frames = frame_files(out)
    seed = json.loads((out / "manifest.json").read_text())["summary"]["seed"]
    return (
        seed,
        [hashlib.sha256(p.read_bytes()).hexdigest() for p in frames],
        [p.with_suffix(".txt").read_text(encoding="utf-8") for p in frames],
    )


def test_two_ranks_with_different_roots_plan_the_same_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No --seed: rank A (/…/node_a/mnt/data), rank B (/…/b/deeper/data) and a relative image_dir agree."""
    images = write_images(tmp_path / "source")
    rank_a = rank_copy(images, tmp_path / "node_a" / "mnt" / "data")
    rank_b = rank_copy(images, tmp_path / "b" / "deeper" / "data")
    work = tmp_path / "node_c"  # a third node whose TOML names the folder relative to its working folder
    shutil.copytree(images, work / "img")
    rank_c = write_toml(work / "dataset.toml", Path("img"))
    kohya = [split_dataset_config(toml.load(p)).kohya for p in (rank_a, rank_b, rank_c)]
    assert kohya[0] != kohya[1] != kohya[2]  # the configs differ in their paths only
    plans = []
    for name, config in (("a", rank_a), ("b", rank_b), ("c", rank_c)):
        monkeypatch.chdir(config.parent)
        assert main(["preview", str(config), "--out", str(tmp_path / f"out_{name}")]) == 0
        plans.append(plan_of(tmp_path / f"out_{name}"))
    assert plans[0][1] and len(plans[0][1]) == len(plans[0][2])
    assert plans[0] == plans[1] == plans[2]
    assert plans[0][0] == derived_seed(kohya[0]) == derived_seed(kohya[2])


def test_derived_seed_depends_on_names_and_settings_not_mounts() -> None:
    """Paths reduce to their last component; another folder name or setting gives another seed."""

    def config(image_dir: str, repeats: int = 2) -> dict[str, object]:
        return {
            "general": {"caption_extension": ".txt"},
            "datasets": [
                {
                    "resolution": 512,
                    "subsets": [
                        {"image_dir": image_dir, "num_repeats": repeats},
                        {"metadata_file": "/x/meta/cat.json", "image_dir": "."},
                    ],
                }
            ],
        }

    assert node_independent(config("/mnt/node7/train/10_cat/"))["datasets"][0]["subsets"][0]["image_dir"] == "10_cat"
    assert node_independent(config("D:\\data\\10_cat"))["datasets"][0]["subsets"][1]["metadata_file"] == "cat.json"
    seeds = {
        derived_seed(config(p)) for p in ("/mnt/a/train/10_cat", "/srv/b/10_cat/", "train/10_cat", "C:\\train\\10_cat")
    }
    assert len(seeds) == 1
    assert derived_seed(config("/mnt/a/train/10_dog")) not in seeds
    assert derived_seed(config("/mnt/a/train/10_cat", repeats=3)) not in seeds


def test_explicit_seed_is_kept(tmp_path: Path) -> None:
    """--seed (after -- or in the training TOML) is the seed; the derivation only applies without it."""
    kohya = {"datasets": [{"subsets": [{"image_dir": str(tmp_path / "img")}]}]}
    assert resolve_seed(build_run(trainer_args=["--seed", "1234"]), kohya) == (1234, "from --seed")
    seed, why = resolve_seed(build_run(), kohya)
    assert seed == derived_seed(kohya) and why.startswith("derived from the dataset config")


def test_dataset_source_follows_the_trainers_order(tmp_path: Path) -> None:
    """--dataset_config over --in_json over --train_data_dir; the CLI's positional dataset over all."""
    (tmp_path / "train").mkdir()
    both = ["--dataset_config", "d.toml", "--train_data_dir", str(tmp_path / "train"), "--in_json", "m.json"]
    assert dataset_source(build_run(trainer_args=both)).kind == "dataset_config"  # type: ignore[union-attr]
    source = dataset_source(build_run(trainer_args=both[2:]))
    assert source is not None and (source.kind, source.metadata_file) == ("in_json", "m.json")
    source = dataset_source(build_run(trainer_args=[*both[2:4], "--reg_data_dir", "reg"]))
    assert source is not None and (source.kind, source.reg_data_dir) == ("train_data_dir", "reg")
    assert dataset_source(build_run(trainer_args=both), tmp_path / "train").kind == "train_data_dir"  # type: ignore[union-attr]
    assert dataset_source(build_run()) is None
    with pytest.raises(CollageConfigError, match="--in_json m.json needs --train_data_dir"):
        dataset_source(build_run(trainer_args=["--in_json", "m.json"]))


def test_resolve_run_decides_mode_seed_and_cache_folder(tmp_path: Path) -> None:
    """One call gives the mode (and why), the seed and each subset's cache folder."""
    kohya = {"datasets": [{"subsets": [{"image_dir": str(tmp_path / "img")}]}]}
    run = build_run(trainer_args=["--cache_latents", "--output_dir", str(tmp_path / "out"), "--seed", "5"])
    settings = resolve_run([CollageConfig()], run, kohya)
    assert (settings.mode, settings.seed) == ("static", 5) and "--cache_latents" in settings.mode_why
    assert settings.cache_dir(CollageConfig()) == tmp_path / "out" / "collage_cache"
    assert settings.cache_dir(CollageConfig(cache_dir=str(tmp_path / "c"))) == tmp_path / "c"
    with pytest.raises(CollageConfigError, match="inside the image folder"):
        resolve_run([CollageConfig(cache_dir=str(tmp_path / "img" / "cache"))], run, kohya)
