"""``collage_ext.kohya.datasets`` (the torch-free restatement of sd-scripts' dataset reading that the CLI uses)
agrees with sd-scripts' own reader on the checkout under test (CI: main and v0.9.1).

Both read the same dataset TOML / ``--train_data_dir`` folders; sd-scripts builds its plain datasets
(no ``--dataset_class``) through ``config_util``. Every registered image must match: which images,
their captions, repeats and whether they are regularisation images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import toml

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import fakes  # noqa: E402

from collage_ext.core.config import split_dataset_config  # noqa: E402
from collage_ext.kohya.datasets import load_project  # noqa: E402

pytestmark = pytest.mark.sdscripts
MAIN = fakes.is_strategy_era()


def sd_scripts_images(args: Any, user_config: dict[str, Any] | None = None) -> set[tuple[str, str, int, bool]]:
    """(path, caption, repeats, is_reg) of every image sd-scripts' own reader registers."""
    trainer = fakes.make_trainer("sdxl")
    if MAIN:
        fakes.set_pre_dataset_strategies(trainer, args)
        group = fakes.build_dataset_group(args, user_config=user_config)
    else:
        group = fakes.build_dataset_group(args, tokenizer=trainer.load_tokenizer(args), user_config=user_config)
    return {(os.path.realpath(info.absolute_path), info.caption, info.num_repeats, bool(info.is_reg))
            for dataset in group.datasets for info in dataset.image_data.values()}


def our_images(*args: Any, **kwargs: Any) -> set[tuple[str, str, int, bool]]:
    """The same, from ``collage_ext.kohya.datasets.load_project``."""
    project = load_project(*args, **kwargs)
    return {(os.path.realpath(image.path), image.caption, image.num_repeats, subset.is_reg)
            for _, subset in project.subsets() for image in subset.images}


def test_dataset_toml_agrees(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """Captions (first line, class-token fallback), repeats, skipped subsets and balanced reg repeats."""
    root = tmp_path / "data"
    fakes.write_dreambooth_dir(root, subdir="chars", sizes=[(128, 192)] * 5,
                               captions=[f"sks, id{i:03d}\nsecond line" for i in range(5)])
    (root / "chars" / "img_04.txt").unlink()  # falls back to class_tokens
    fakes.write_dreambooth_dir(root, subdir="plain", sizes=[(160, 160)] * 3, captions=["plain"] * 3, seed=20)
    fakes.write_dreambooth_dir(root, subdir="reg", sizes=[(192, 128)] * 4, captions=["person"] * 4, seed=40)
    fakes.write_dreambooth_dir(root, subdir="never", sizes=[(128, 128)] * 2, seed=60)
    config = root / "dataset.toml"
    config.write_text(
        '[general]\ncaption_extension = ".txt"\ncollage_rate = 0.5\n\n'
        "[[datasets]]\nresolution = 256\nbatch_size = 1\nenable_bucket = true\n\n"
        f'  [[datasets.subsets]]\n  image_dir = "{(root / "chars").as_posix()}"\n  num_repeats = 3\n'
        '  class_tokens = "sks person"\n\n'
        f'  [[datasets.subsets]]\n  image_dir = "{(root / "plain").as_posix()}"\n  num_repeats = 2\n\n'
        f'  [[datasets.subsets]]\n  image_dir = "{(root / "never").as_posix()}"\n  num_repeats = 0\n\n'
        f'  [[datasets.subsets]]\n  image_dir = "{(root / "reg").as_posix()}"\n  is_reg = true\n',
        encoding="utf-8")
    args = fakes.make_args("sdxl", ["--dataset_config", str(config), "--tokenizer_cache_dir", str(toks.cache_dir)])
    kohya = split_dataset_config(toml.load(config)).kohya  # what the adapter hands sd-scripts: no collage keys
    theirs = sd_scripts_images(args, kohya)
    assert theirs == our_images(config)
    assert any(c == "sks person" for _, c, _, _ in theirs) and any(reg and n > 1 for _, _, n, reg in theirs)


def test_train_data_dir_agrees(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """``--train_data_dir`` / ``--reg_data_dir`` folders named ``N_class``."""
    train, reg = tmp_path / "train", tmp_path / "reg"
    fakes.write_dreambooth_dir(train, subdir="4_sks cat", sizes=[(128, 128)] * 3)
    fakes.write_dreambooth_dir(train, subdir="2_sks dog", sizes=[(128, 192)] * 2, seed=9)
    fakes.write_dreambooth_dir(reg, subdir="1_cat", sizes=[(128, 128)] * 2, captions=["cat"] * 2, seed=30)
    argv = ["--train_data_dir", str(train), "--reg_data_dir", str(reg), "--caption_extension", ".txt",
            "--resolution", "256", "--tokenizer_cache_dir", str(toks.cache_dir)]
    theirs = sd_scripts_images(fakes.make_args("sdxl", argv))
    config = tmp_path / "train.toml"
    config.write_text(f'train_data_dir = "{train.as_posix()}"\nreg_data_dir = "{reg.as_posix()}"\n'
                      'caption_extension = ".txt"\nresolution = "256"\n', encoding="utf-8")
    assert theirs == our_images(config_file=config)
    assert len(theirs) == 7
