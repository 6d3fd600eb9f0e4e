"""The bad-input corpus through the REAL sd-scripts dataset path: every case has a documented outcome.

Outcomes: ``frame`` (a correct frame, exact coverage), ``error`` (CollageInputError or
CollageConfigError naming the file or key, before training), ``skip`` (logged once, left out, the
epoch's frame count unchanged). Nothing may hang or crash inside Pillow/numpy.
"""

from __future__ import annotations

import collections
import io
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import numpy as np
import torch
from PIL import Image

import fakes
from test_collage_dataset import dataset_toml, epoch_captions, id_counts, load, run_loader

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from collage_ext.core.config import OPTIONS
from collage_ext.core.errors import CollageConfigError, CollageInputError
from tests.common import png_header_only

pytestmark = pytest.mark.sdscripts
MAIN = fakes.is_strategy_era()
ID = re.compile(r"id\d{3}")


def good_images(folder: Path, count: int = 6, start: int = 0) -> None:
    """Well-formed 160x160 images captioned ``sks, idNNN``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        fakes.make_image(160, 160, seed=i).save(folder / f"good_{i:03d}.png")
        (folder / f"good_{i:03d}.txt").write_text(f"sks, id{i:03d}\n", encoding="utf-8")


def truncated_jpeg(path: Path) -> None:
    buffer = io.BytesIO()
    fakes.make_image(160, 160, seed=99).save(buffer, format="JPEG", quality=95)
    path.with_suffix(".jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def exif_rotated(orientation: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        fakes.make_image(192, 128, seed=orientation).save(path.with_suffix(".jpg"), exif=exif)

    return write


def palette_transparent(path: Path) -> None:
    img = Image.new("P", (160, 160), 1)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    img.info["transparency"] = 0
    img.save(path)


def animated(fmt: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        frames = [Image.new("RGB", (160, 160), c) for c in ((200, 0, 0), (0, 200, 0))]
        frames[0].save(path.with_suffix("." + fmt), save_all=True, append_images=frames[1:], duration=100)

    return write


# case -> (writer of "odd" image into a folder of good ones, expected outcome)
IMAGE_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated-jpeg": (truncated_jpeg, "decode-error"),
    "zero-byte": (lambda p: p.write_bytes(b""), "header-error"),
    "text-named-png": (lambda p: p.write_text("not an image"), "header-error"),
    "bomb": (lambda p: p.write_bytes(png_header_only(20000, 20000)), "header-error"),
    "cmyk-jpeg": (lambda p: Image.new("CMYK", (160, 160), (0, 200, 200, 0)).save(p.with_suffix(".jpg")), "frame"),
    "16-bit-png": (lambda p: Image.fromarray(np.full((160, 160), 50000, np.uint16)).save(p), "frame"),
    "palette-transparency": (palette_transparent, "frame"),
    "la": (lambda p: Image.new("LA", (160, 160), (120, 128)).save(p), "frame"),
    **{f"exif-{o}": (exif_rotated(o), "frame") for o in range(1, 9)},
    "1x1": (lambda p: Image.new("RGB", (1, 1), (9, 9, 9)).save(p), "single"),
    "1x4000": (lambda p: Image.new("RGB", (1, 4000), (9, 9, 9)).save(p), "frame"),  # never magnified
    "animated-gif": (animated("gif"), "not-read"),  # not among sd-scripts' image extensions
    "animated-webp": (animated("webp"), "frame"),
}


def corpus(tmp: Path, case: str) -> Path:
    """Six good images plus the odd one (caption ``sks, id900``)."""
    folder = tmp / "img"
    good_images(folder)
    IMAGE_CASES[case][0](folder / "odd_900.png")
    (folder / "odd_900.txt").write_text("sks, id900\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_image_corpus_raise_policy(tmp_path: Path, toks: fakes.TinyTokenizers, case: str) -> None:
    """Default policy: good frames, or an error that names the odd file (at start-up or load)."""
    folder = corpus(tmp_path, case)
    outcome = IMAGE_CASES[case][1]
    # collage_min_span = 0: the odd 160x160 files pair in the 256 px square frame (with the scale rule a
    # square trains alone there) so they go through the collage path under test
    config = dataset_toml(tmp_path, folder, general="collage_rate = 1.0\ncollage_min_span = 0", repeats=1)
    if outcome == "header-error":
        with pytest.raises(CollageInputError, match="odd_900"):
            load(tmp_path, toks, config)
        return
    group, _, _ = load(tmp_path, toks, config)
    if outcome == "decode-error":
        with pytest.raises(CollageInputError, match="odd_900"):
            epoch_captions(group, 1)
        return
    counts = id_counts(epoch_captions(group, 1))
    expected = {f"id{i:03d}": 1 for i in range(6)} | ({} if outcome == "not-read" else {"id900": 1})
    assert counts == expected
    if outcome == "single":  # too small for any cell within collage_max_upscale: sd-scripts' own path
        assert any(i.absolute_path.endswith("odd_900.png") for i in group.image_data.values())


@pytest.mark.parametrize("case", ["truncated-jpeg", "zero-byte", "text-named-png", "bomb"])
def test_image_corpus_skip_policy(
    tmp_path: Path, toks: fakes.TinyTokenizers, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    """collage_on_error = 'skip': the file is logged once and left out; frames per epoch stay constant."""
    folder = corpus(tmp_path, case)
    config = dataset_toml(tmp_path, folder, general='collage_rate = 1.0\ncollage_on_error = "skip"', repeats=2)
    group, _, _ = load(tmp_path, toks, config)
    lengths, good = set(), {f"id{i:03d}": 2 for i in range(6)}
    for epoch in (1, 2, 3):
        captions = epoch_captions(group, epoch)
        lengths.add(len(captions))
        counts = id_counts(captions)
        others = {k: v for k, v in counts.items() if k != "id900"}
        # every good image at least as often as planned; a frame made only of the broken image's repeats
        # is filled by a spare (policy.compose), which may show one good image once more
        assert others.keys() == good.keys() and all(others[k] >= n for k, n in good.items())
        assert sum(others.values()) - sum(good.values()) <= 2
        assert counts.get("id900", 0) == 0
    assert len(lengths) == 1
    warnings = [r for r in caplog.records if "skipping" in r.getMessage() and "odd_900" in r.getMessage()]
    assert len(warnings) == 1


def test_skip_replaces_a_broken_single_image(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """A truncated image that stays a single sample is replaced by a readable one, caption included."""
    folder = corpus(tmp_path, "truncated-jpeg")
    config = dataset_toml(tmp_path, folder, general='collage_rate = 0.01\ncollage_on_error = "skip"', repeats=1)
    group, _, _ = load(tmp_path, toks, config)
    captions = epoch_captions(group, 1)
    assert len(captions) == 7 and "sks, id900" not in captions
    assert all(len(ID.findall(c)) >= 1 for c in captions)


CAPTION_CASES: dict[str, tuple[bytes | None, str]] = {
    "missing": (None, "frame"),
    "empty": (b"", "error"),
    "only-separators": (b" , ,, ", "frame"),
    "wildcard": (b"{red|blue} dress", "frame"),
    "bom": (b"\xef\xbb\xbfsks, id900", "frame"),
    "not-utf8": ("sks, caf\u00e9".encode("latin-1"), "error"),
}


@pytest.mark.parametrize("case", list(CAPTION_CASES))
def test_caption_corpus(tmp_path: Path, toks: fakes.TinyTokenizers, case: str) -> None:
    """Odd caption files give frames with sensible captions, or a clear error naming the file."""
    folder = tmp_path / "img"
    good_images(folder, 5)
    fakes.make_image(160, 160, seed=900).save(folder / "odd_900.png")
    data, outcome = CAPTION_CASES[case]
    if data is not None:
        (folder / "odd_900.txt").write_bytes(data)
    config = dataset_toml(
        tmp_path,
        folder,
        general="collage_rate = 1.0\ncollage_min_span = 0",  # as above
        subset="enable_wildcard = true",
    )
    if outcome == "error":
        with pytest.raises(CollageInputError, match=r"odd_900\.txt is (not UTF-8|empty)"):
            load(tmp_path, toks, config)
        return
    group, _, _ = load(tmp_path, toks, config)
    captions = epoch_captions(group, 1)
    counts = id_counts(captions)
    assert {k: v for k, v in counts.items() if k != "id900"} == {f"id{i:03d}": 2 for i in range(5)}
    text = " ".join(captions)
    assert "\ufeff" not in text and ", ," not in text and "{" not in text


def test_odd_folders(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """Unicode/space paths, a symlinked folder, duplicate stems, an empty folder, a one-image subset."""
    real = tmp_path / "bilder mit ümlaut"
    good_images(real, 4)
    fakes.make_image(200, 120, seed=50).save(real / "good_000.jpg")  # same stem, other extension
    linked = tmp_path / "linked"
    os.symlink(real, linked)
    (tmp_path / "empty").mkdir()
    lone = tmp_path / "lone"
    good_images(lone, 1, start=10)
    config = tmp_path / "dataset.toml"
    subsets = "".join(
        f'  [[datasets.subsets]]\n  image_dir = "{d.as_posix()}"\n' for d in (linked, tmp_path / "empty", lone)
    )
    config.write_text(
        '[general]\ncaption_extension = ".txt"\ncollage_rate = 1.0\n[[datasets]]\nresolution = 256\n'
        f"batch_size = 1\nenable_bucket = true\n{subsets}",
        encoding="utf-8",
    )
    group, _, _ = load(tmp_path, toks, config)
    counts = id_counts(epoch_captions(group, 1))
    assert counts == {"id000": 2, "id001": 1, "id002": 1, "id003": 1, "id010": 1}  # good_000 twice: .png + .jpg


@pytest.mark.parametrize("option", [o.name for o in OPTIONS])
def test_wrong_type_in_every_key(tmp_path: Path, toks: fakes.TinyTokenizers, option: str) -> None:
    """Every collage key rejects a wrong type with its own name and the TOML location."""
    folder = tmp_path / "img"
    good_images(folder, 2)
    wrong = "[1, 2]" if option not in ("collage_layouts", "collage_repeat_phrases") else "3"
    config = dataset_toml(tmp_path, folder, subset=f"{option} = {wrong}")
    with pytest.raises(CollageConfigError, match=rf"{option} .*got .* @ data\['datasets'\]\[0\]\['subsets'\]\[0\]"):
        load(tmp_path, toks, config)


@pytest.mark.parametrize("typo", ["collage_rat", "collage_fitmode", "collage_max_image", "collagerate_x"])
def test_typo_in_key(tmp_path: Path, toks: fakes.TinyTokenizers, typo: str) -> None:
    """Typos in collage keys are caught (did-you-mean); non-collage typos stay kohya's sanitizer's job."""
    folder = tmp_path / "img"
    good_images(folder, 2)
    config = dataset_toml(tmp_path, folder, general=f"{typo} = 1")
    error: type[Exception] = CollageConfigError if typo.startswith("collage_") else Exception
    with pytest.raises(error, match=typo):
        load(tmp_path, toks, config)


@pytest.mark.skipif(not MAIN, reason="custom_attributes exists only on sd-scripts main")
def test_inline_table_custom_attributes_do_not_hang_workers(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """sd-scripts hangs DataLoader workers on a TOML inline table; collage_ext passes plain dicts."""
    folder = tmp_path / "img"
    good_images(folder, 4)
    config = dataset_toml(tmp_path, folder, general="collage_rate = 1.0", subset="custom_attributes = {tag = 1}")
    group, _, _ = load(tmp_path, toks, config)
    train_util = fakes.import_sd("library.train_util")
    from multiprocessing import Value

    collator = train_util.collator_class(Value("i", 1), Value("i", 0), None)
    loader = torch.utils.data.DataLoader(group, batch_size=1, collate_fn=collator, num_workers=2, timeout=60)
    batches = list(loader)
    assert batches and all(b["custom_attributes"][0] == {"tag": 1} for b in batches)


@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker processes")  # 2-core machine
def test_four_workers_exact_coverage(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """4 persistent workers, 3 epochs: exact coverage, and the frames equal the main-process ones."""
    folder = tmp_path / "img"
    good_images(folder, 9)
    config = dataset_toml(tmp_path, folder, general="collage_rate = 0.8", repeats=3)
    group, _, _ = load(tmp_path, toks, config)
    epochs = run_loader(group, 4, True)
    for frames in epochs:
        assert collections.Counter(i for c, _ in frames for i in ID.findall(c)) == {f"id{i:03d}": 3 for i in range(9)}
    with fakes.fresh_strategies():
        reference, _, _ = load(tmp_path / "ref", toks, config)
        assert run_loader(reference, 0, False) == epochs


def test_resume_rebuilds_the_same_epoch(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """A resumed run (new process state, trainer sets the epoch) composes the same frames for that epoch."""
    folder = tmp_path / "img"
    good_images(folder, 8)
    config = dataset_toml(tmp_path, folder, general="collage_rate = 1.0")
    group, _, _ = load(tmp_path, toks, config)
    continuous = [sorted(epoch_captions(group, e)) for e in (1, 2, 3)]
    with fakes.fresh_strategies():
        resumed, _, _ = load(tmp_path / "resume", toks, config)
        assert sorted(epoch_captions(resumed, 3)) == continuous[2]
