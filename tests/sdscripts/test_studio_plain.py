"""What the studio writes, read by plain sd-scripts (no dataset class): drops are honoured, captions read.

The studio drops an image by moving it (with its sidecars) into ``<image_dir>/_collage_studio/dropped``.
sd-scripts lists a DreamBooth subset with ``glob_images(image_dir, "*")`` (not recursive), and a
``--train_data_dir`` only takes its ``N_name`` sub-folders as subsets, so a plain run leaves the
dropped image out and takes it back after Restore.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import fakes
from collage_ext.studio.model import Studio

MAIN = fakes.is_strategy_era()
pytestmark = pytest.mark.sdscripts


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with fakes.as_the_cli(monkeypatch):
        yield


def plain_images(train_dir: Path, toks: fakes.TinyTokenizers) -> dict[str, str]:
    """``{file name: caption}`` that plain sd-scripts registers from ``--train_data_dir``."""
    args = fakes.make_args(
        "sdxl",
        [
            "--train_data_dir",
            str(train_dir),
            "--caption_extension",
            ".txt",
            "--resolution",
            "256",
            "--tokenizer_cache_dir",
            str(toks.cache_dir),
        ],
    )
    trainer = fakes.make_trainer("sdxl")
    with fakes.fresh_strategies():
        if MAIN:
            fakes.set_pre_dataset_strategies(trainer, args)
            group: Any = fakes.build_dataset_group(args)
        else:
            group = fakes.build_dataset_group(args, tokenizer=trainer.load_tokenizer(args))
    return {Path(k).name: v.caption for k, v in group.image_data.items()}


def test_plain_sd_scripts_agrees_with_drop_restore_and_captions(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    train = tmp_path / "train"
    fakes.write_dreambooth_dir(
        train, subdir="10_chars", sizes=[(128, 192)] * 4 + [(192, 128)] * 2, captions=[f"sks, id{i}" for i in range(6)]
    )
    images = sorted(p.name for p in (train / "10_chars").iterdir() if p.suffix != ".txt")
    assert sorted(plain_images(train, toks)) == images

    studio = Studio(train, trainer_args=["--caption_extension", ".txt", "--resolution", "256"])
    first = f"0/0/{images[0]}"
    studio.set_caption(f"0/0/{images[1]}", "sks, id1, edited in the studio")
    studio.drop(first)
    seen = plain_images(train, toks)
    assert sorted(seen) == images[1:]  # the dropped image is out of the plain run too
    assert seen[images[1]] == "sks, id1, edited in the studio"

    studio.restore(first)
    assert sorted(plain_images(train, toks)) == images
