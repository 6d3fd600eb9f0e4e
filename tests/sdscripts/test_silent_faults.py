"""Issue 20: inputs that trained the wrong thing without a word, through the REAL sd-scripts loader.

Each case either trains what the user meant or stops with a message naming the file or key and the
fix (docs/reliability.md lists every case and its outcome).
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import fakes
from test_collage_dataset import dataset_toml, id_counts, load
from test_runtime_faults import SIZES, write_images

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

pytestmark = pytest.mark.sdscripts
MAIN = fakes.is_strategy_era()


def samples(group: Any, epoch: int = 1) -> list[tuple[str, str]]:
    """(caption, sha256 of the image tensor) of every sample of an epoch, in index order."""
    group.set_current_epoch(epoch)
    out = []
    for i in range(len(group)):
        example = group[i]
        for n, caption in enumerate(example["captions"]):
            out.append((caption, hashlib.sha256(example["images"][n].numpy().tobytes()).hexdigest()))
    return out


# -- 1. static mode + skip without cached latents -----------------------------------------------------
STATIC_WITHOUT_LATENTS = {
    "collage_mode-static": ('collage_mode = "static"', ()),
    "cached-te-outputs": ("", ("--cache_text_encoder_outputs", "--network_train_unet_only")),
}


@pytest.mark.parametrize("how", list(STATIC_WITHOUT_LATENTS))
def test_static_skip_trains_the_frames(
    tmp_path: Path, toks: fakes.TinyTokenizers, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Static frames under skip load as the frames they are, pixel for pixel as under raise, not one source
    photo for every frame (the skip path once looked the frame up among the sources and fell back to the first)."""
    monkeypatch.setattr(sys, "argv", ["sdxl_train_network.py", "--seed", "42"])  # one seed for both configs
    folder = write_images(tmp_path / "img")
    extra, flags = STATIC_WITHOUT_LATENTS[how]
    seen = {}
    for policy in ("raise", "skip"):
        (tmp_path / policy).mkdir()
        config = dataset_toml(
            tmp_path / policy, folder, general=f'collage_rate = 1.0\ncollage_on_error = "{policy}"\n{extra}'
        )
        with fakes.fresh_strategies():
            group, _, _ = load(tmp_path / policy, toks, config, *flags)
        assert group.datasets[0]._static, "static mode expected"
        seen[policy] = samples(group)
    assert sorted(seen["skip"]) == sorted(seen["raise"])  # frame names hash the policy: another order
    collages = [(c, h) for c, h in seen["skip"] if c.count("id") >= 2]
    assert collages and len({h for _, h in collages}) == len(set(collages))
    assert id_counts([c for c, _ in seen["skip"]]) == {f"id{i:03d}": 2 for i in range(len(SIZES))}


# -- 2. a crop box on an image that trains alone ----------------------------------------------------------
MAGENTA = (255, 0, 255)


def cropped_photo(folder: Path, name: str = "img_000", size: tuple[int, int] = (192, 128)) -> None:
    """A photo whose right half (magenta) is cut away by its .crop box: only the left half may ever train."""
    folder.mkdir(parents=True, exist_ok=True)
    image = fakes.make_image(*size, seed=7)
    image.paste(MAGENTA, (size[0] // 2, 0, size[0], size[1]))
    image.save(folder / f"{name}.png")
    (folder / f"{name}.txt").write_text("sks, id000\n", encoding="utf-8")
    (folder / f"{name}.crop").write_text(f"0, 0, {size[0] // 2}, {size[1]}\n", encoding="utf-8")


def magenta_share(example: Any, n: int = 0) -> float:
    pixels = example["images"][n].numpy()  # C x H x W in [-1, 1]
    return float(((pixels[0] > 0.9) & (pixels[1] < -0.9) & (pixels[2] > 0.9)).mean())


MODES = {
    "dynamic": (),
    "static": ("--cache_latents",),
    "static-te": ("--cache_text_encoder_outputs", "--network_train_unet_only"),
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_crop_box_on_a_one_image_subset(tmp_path: Path, toks: fakes.TinyTokenizers, mode: str, policy: str) -> None:
    """A one-image subset trains its crop box, bucketed by the box's aspect, never the cut-away half."""
    cropped_photo(tmp_path / "img")
    config = dataset_toml(
        tmp_path, tmp_path / "img", general=f'collage_on_error = "{policy}"\nmin_bucket_reso = 64', repeats=2
    )
    group, _, _ = load(tmp_path, toks, config, *MODES[mode])
    infos = list(group.image_data.values())
    assert len(infos) == 1 and tuple(infos[0].image_size) == (96, 128)
    width, height = infos[0].bucket_reso
    assert height > width  # the box is a portrait; the whole photo a landscape
    if mode == "static":
        assert Path(infos[0].absolute_path).parent == tmp_path / "out" / "collage_cache"
        return  # sd-scripts reads the cropped file itself: its pixels are checked below for the other modes
    group.set_current_epoch(1)
    examples = [group[i] for i in range(len(group))]
    assert len(examples) == 2 and all(magenta_share(e) == 0 for e in examples)


def test_crop_box_on_a_one_image_subset_static_file(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """Static mode writes the cropped single into the cache: the file sd-scripts caches holds only the box."""
    import numpy as np
    from PIL import Image

    cropped_photo(tmp_path / "img")
    group, _, _ = load(tmp_path, toks, dataset_toml(tmp_path, tmp_path / "img"), "--cache_latents")
    (info,) = group.image_data.values()
    with Image.open(info.absolute_path) as image, Image.open(tmp_path / "img" / "img_000.png") as original:
        assert image.size == (96, 128)
        assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(original.crop((0, 0, 96, 128))))


def test_crop_box_on_singles_with_collage_rate_below_one(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """collage_rate = 0.5: the cropped image never shows its cut-away half, alone or in a frame."""
    folder = write_images(tmp_path / "img")
    cropped_photo(folder)
    config = dataset_toml(tmp_path, folder, general="collage_rate = 0.5", repeats=4)
    group, _, _ = load(tmp_path, toks, config)
    singles = 0
    for epoch in (1, 2):
        group.set_current_epoch(epoch)
        for i in range(len(group)):
            example = group[i]
            assert magenta_share(example) == 0, example["captions"]
            singles += example["captions"][0] == "sks, id000"
    assert singles  # the cropped image did train alone


# -- 7. static cache files checked by content ------------------------------------------------------------
def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def overwrite_same_size(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        size, mode = image.size, image.mode
    Image.new(mode, size, (0, 255, 0)).save(path)  # a valid PNG of the same size: the wrong pixels


DAMAGE = {"truncated": truncate, "overwritten": overwrite_same_size, "garbage": lambda p: p.write_bytes(b"\0" * 64)}


def add_subset(config: Path, image_dir: Path, extra: str = "") -> Path:
    """Append a ``[[datasets.subsets]]`` block to a dataset TOML from ``dataset_toml``."""
    config.write_text(
        config.read_text(encoding="utf-8") + f'  [[datasets.subsets]]\n  image_dir = "{image_dir}"\n  {extra}\n',
        encoding="utf-8",
    )
    return config


def cache_pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_cache_file_from_an_earlier_run_is_rendered_again(
    tmp_path: Path, toks: fakes.TinyTokenizers, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A frame or cropped single damaged between runs is rendered again at start-up, never reused by name
    (sd-scripts' latent caching then read it: a raw 'image file is truncated' naming no file)."""
    from test_collage_dataset import cache_all

    folder = write_images(tmp_path / "img")
    cropped_photo(tmp_path / "lone")  # a one-image subset: a cropped single
    config = add_subset(dataset_toml(tmp_path, folder, general="collage_max_images = 3", repeats=1), tmp_path / "lone")
    cache = tmp_path / "out" / "collage_cache"
    load(tmp_path, toks, config, "--cache_latents")
    good = cache_pngs(cache)
    assert any(n.startswith("single_") for n in good) and any(n.startswith("collage_") for n in good)
    for name in good:
        DAMAGE[damage](cache / name)
    with fakes.fresh_strategies():
        group, args, trainer = load(tmp_path, toks, config, "--cache_latents")
        cache_all(group, args, trainer, fakes.make_sdxl_vae(), toks)  # sd-scripts reads every file
    assert cache_pngs(cache) == good
    assert sum("rendering it again" in r.getMessage() for r in caplog.records) == len(good)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_cache_file_mid_run_is_rendered_again(
    tmp_path: Path, toks: fakes.TinyTokenizers, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Static mode without cached latents: a frame damaged while the run trains is rendered again at its
    next load (no 'put it back'), and the sample is the frame as planned."""
    folder = write_images(tmp_path / "img")
    cropped_photo(tmp_path / "lone")
    config = add_subset(
        dataset_toml(tmp_path, folder, general='collage_mode = "static"\ncollage_max_images = 3', repeats=1),
        tmp_path / "lone",
    )
    group, _, _ = load(tmp_path, toks, config)
    before = samples(group)
    cache = tmp_path / "out" / "collage_cache"
    good = cache_pngs(cache)
    assert any(n.startswith("single_") for n in good) and any(n.startswith("collage_") for n in good)
    for name in good:
        DAMAGE[damage](cache / name)
    assert samples(group) == before
    assert cache_pngs(cache) == good
    assert sum("rendered it again" in r.getMessage() for r in caplog.records) == len(good)


# -- 3. the cache folder inside an image folder ----------------------------------------------------------
CACHE_PLACES = {
    "the-image-folder": "{img}",
    "dotdot-same-folder": "{img}/../img",
    "inside": "{img}/cache",
    "symlink": "{tmp}/link",
}


@pytest.mark.parametrize("place", list(CACHE_PLACES))
def test_cache_folder_in_an_image_folder_is_refused(
    tmp_path: Path, toks: fakes.TinyTokenizers, place: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The frames would come back as captionless training images in the next run: training and check stop."""
    from collage_ext.cli import main
    from collage_ext.core.errors import CollageConfigError

    folder = write_images(tmp_path / "img")
    (tmp_path / "link").symlink_to(folder)
    cache = CACHE_PLACES[place].format(img=folder.as_posix(), tmp=tmp_path.as_posix())
    config = dataset_toml(tmp_path, folder, general=f'collage_cache_dir = "{cache}"')
    pattern = rf"collage_cache_dir {cache} is (inside )?the image folder {folder}: .*collage_cache_dir = \""
    with pytest.raises(CollageConfigError, match=pattern):
        load(tmp_path, toks, config, "--cache_latents")
    assert not list(folder.glob("collage_*")) and not (folder / "cache").exists()
    assert main(["check", str(config), "--", "--cache_latents"]) == 2
    assert re.search(pattern, capsys.readouterr().err)


def test_default_cache_folder_in_the_image_folder_is_refused(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """--output_dir set to the image folder puts the default cache (<output_dir>/collage_cache) inside it."""
    from collage_ext.core.errors import CollageConfigError

    folder = write_images(tmp_path / "img")
    with pytest.raises(CollageConfigError, match=r"default collage cache folder.* is inside the image folder"):
        load(tmp_path, toks, dataset_toml(tmp_path, folder), "--cache_latents", "--output_dir", str(folder))
    with fakes.fresh_strategies():
        group, _, _ = load(tmp_path, toks, dataset_toml(tmp_path, folder), "--output_dir", str(folder))  # dynamic
    assert len(group) > 0


# -- 5. skip that empties a subset -------------------------------------------------------------------------
def two_datasets(tmp: Path, broken: Path, policy: str = "skip") -> Path:
    """Dataset 0: ten good images; dataset 1: the folder ``broken``."""
    good = write_images(tmp / "img")
    path = tmp / "dataset.toml"
    path.write_text(
        f'[general]\ncaption_extension = ".txt"\ncollage_on_error = "{policy}"\n'
        f'[[datasets]]\nresolution = 256\nbatch_size = 1\n  [[datasets.subsets]]\n  image_dir = "{good}"\n'
        f"[[datasets]]\nresolution = 256\nbatch_size = 1\n"
        f'  [[datasets.subsets]]\n  image_dir = "{broken}"\n',
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_skip_that_empties_a_subset_stops_the_run(tmp_path: Path, toks: fakes.TinyTokenizers, mode: str) -> None:
    """Every image of a subset failing is no fault of single files: a subset-level error, also when another
    dataset would let the run go on (with a fraction of its samples)."""
    from collage_ext.core.errors import CollageInputError

    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(5):
        (broken / f"bad_{i}.png").write_bytes(b"")
        (broken / f"bad_{i}.txt").write_text(f"sks, id{100 + i}\n", encoding="utf-8")
    flags = ("--cache_latents",) if mode == "static" else ()
    pattern = (
        rf"collage_on_error = 'skip' left subset {broken} \(dataset 1, subset 0\) without any image: all 5 of "
        r"its images failed, e\.g\. bad_0\.png: .*remove the subset"
    )
    with pytest.raises(CollageInputError, match=pattern):
        load(tmp_path, toks, two_datasets(tmp_path, broken), *flags)


def test_skip_that_empties_a_metadata_subset(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """--in_json whose keys name no image file (here: keys without their extension)."""
    import json

    from collage_ext.core.errors import CollageInputError

    image_dir = write_images(tmp_path / "img", SIZES[:4])
    meta = {
        str(p.with_suffix("")): {"caption": f"sks, id{i:03d}"} for i, p in enumerate(sorted(image_dir.glob("*.png")))
    }
    (tmp_path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    try:
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
            collage_on_error="skip",
        )
    except CollageInputError as exc:
        assert re.search(
            r"left subset .* without any image: all 4 of its images failed, e\.g\. img_000: .*metadata "
            r"file, its keys must name the image files",
            str(exc),
        ), exc
        return
    assert id_counts([c for c, _ in samples(group)]) == {f"id{i:03d}": 1 for i in range(4)}  # keys resolved


# -- 8. check agrees with training -------------------------------------------------------------------------
def check_report(config: Path, capsys: pytest.CaptureFixture[str], *trainer: str) -> tuple[int, dict[str, Any]]:
    import json

    from collage_ext.cli import main

    code = main(["check", str(config), "--json", *(("--", *trainer) if trainer else ())])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def codes(report: dict[str, Any], level: str | None = None) -> set[str]:
    return {f["code"] for f in report.get("findings", []) if level is None or f["level"] == level}


def test_whitespace_only_caption(
    tmp_path: Path, toks: fakes.TinyTokenizers, capsys: pytest.CaptureFixture[str]
) -> None:
    """Training refuses a caption file of white space only; check reports it as an error."""
    from collage_ext.core.errors import CollageInputError

    folder = write_images(tmp_path / "img")
    (folder / "img_003.txt").write_text("  \n\t\n", encoding="utf-8")
    config = dataset_toml(tmp_path, folder)
    with pytest.raises(CollageInputError, match=r"img_003\.txt is empty"):
        load(tmp_path, toks, config)
    code, report = check_report(config, capsys)
    assert code == 1 and "caption_empty" in codes(report, "error")


@pytest.mark.parametrize("repeats", [0, -2])
# v0.9.1 buckets the empty dataset (numpy warns on its mean) before the adapter can stop the run
@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value encountered")
def test_no_repeats(
    tmp_path: Path, toks: fakes.TinyTokenizers, capsys: pytest.CaptureFixture[str], repeats: int
) -> None:
    """num_repeats < 1: sd-scripts ignores the subset; with nothing left, training stops at once and check
    says so instead of 'Ready to train'."""
    from collage_ext.core.errors import CollageConfigError

    folder = write_images(tmp_path / "img")
    config = dataset_toml(tmp_path, folder, repeats=repeats)
    with pytest.raises(
        CollageConfigError,
        match=rf"no sample to train: sd-scripts ignores subsets with num_repeats "
        rf"< 1 \({folder}: num_repeats = {repeats}\)",
    ):
        load(tmp_path, toks, config)
    code, report = check_report(config, capsys)
    assert code == 1 and "no_data" in codes(report, "error") and "subset_ignored" in codes(report, "warning")


def test_read_only_cache_folder_is_an_error_in_check(
    tmp_path: Path, toks: fakes.TinyTokenizers, capsys: pytest.CaptureFixture[str]
) -> None:
    """--cache_latents with a read-only collage_cache_dir: training stops at start-up, check reports it."""
    from collage_ext.core.errors import CollageCacheError
    from test_runtime_faults import read_only_folder

    folder = write_images(tmp_path / "img")
    with read_only_folder(tmp_path / "ro") as cache:
        config = dataset_toml(tmp_path, folder, general=f'collage_cache_dir = "{cache}/frames"')
        with pytest.raises(CollageCacheError, match="cannot be written"):
            load(tmp_path, toks, config, "--cache_latents")
        code, report = check_report(config, capsys, "--cache_latents")
        assert code == 1 and "cache_not_writable" in codes(report, "error")
        assert not (cache / "frames").exists()
        code, report = check_report(config, capsys)  # dynamic: nothing is written
        assert "cache_not_writable" not in codes(report)


def test_empty_first_caption_line_warns(
    tmp_path: Path, toks: fakes.TinyTokenizers, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """sd-scripts reads line 1 only: an empty first line trains an empty caption; training and check warn."""
    folder = write_images(tmp_path / "img")
    (folder / "img_003.txt").write_text("\nsks, id003\n", encoding="utf-8")
    config = dataset_toml(tmp_path, folder)
    load(tmp_path, toks, config)
    assert sum("img_003.txt: the first line is empty" in r.getMessage() for r in caplog.records) == 1
    code, report = check_report(config, capsys)
    assert code == 0 and "caption_first_line_empty" in codes(report, "warning")


@pytest.mark.parametrize("extension", [".txt", ".TXT", ".png", ".jpg"])
def test_crop_extension_naming_captions_or_images(
    tmp_path: Path, toks: fakes.TinyTokenizers, capsys: pytest.CaptureFixture[str], extension: str
) -> None:
    """collage_crop_extension = ".txt" would parse every caption as a crop box (".png": every image)."""
    from collage_ext.core.errors import CollageConfigError

    folder = write_images(tmp_path / "img")
    config = dataset_toml(tmp_path, folder, general=f'collage_crop_extension = "{extension}"')
    pattern = rf"collage_crop_extension = '\{extension}' is (the caption|an image) extension .*collage_crop_extension"
    with pytest.raises(CollageConfigError, match=pattern):
        load(tmp_path, toks, config)
    assert check_report(config, capsys)[0] == 2


# -- 9. messages -------------------------------------------------------------------------------------------
def test_skipped_file_is_logged_once_across_workers_and_epochs(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """Two non-persistent DataLoader workers (forked again every epoch), three epochs: one warning."""
    import logging

    from test_bad_inputs import corpus
    from test_collage_dataset import run_loader

    folder = corpus(tmp_path, "truncated-jpeg")  # fails only when its pixels are decoded, in the workers
    config = dataset_toml(tmp_path, folder, general='collage_rate = 1.0\ncollage_on_error = "skip"', repeats=2)
    group, _, _ = load(tmp_path, toks, config)
    log = tmp_path / "workers.log"
    handler = logging.FileHandler(log, encoding="utf-8")  # forked workers inherit it and append to the file
    logging.getLogger("collage_ext").addHandler(handler)
    try:
        run_loader(group, workers=2, persistent=False, epochs=3)
    finally:
        logging.getLogger("collage_ext").removeHandler(handler)
        handler.close()
    lines = [line for line in log.read_text(encoding="utf-8").splitlines() if "skipping" in line]
    assert len(lines) == 1 and "odd_900" in lines[0]


def test_image_damaged_before_the_start_is_not_called_readable(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """A single whose pixels were truncated all along: start-up read only its header, the message says so."""
    from collage_ext.core.errors import CollageInputError
    from test_bad_inputs import corpus

    folder = corpus(tmp_path, "truncated-jpeg")
    config = dataset_toml(tmp_path, folder, general="collage_rate = 0.01", repeats=1)  # every image single
    group, _, _ = load(tmp_path, toks, config)
    with pytest.raises(CollageInputError) as raised:
        samples(group)
    message = str(raised.value)
    assert "odd_900.jpg cannot be loaded" in message and "readable when training started" not in message
    assert "only its header was read at start-up" in message and "replace it with a readable copy" in message


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("collage_pad_color", "'collage_fill'"),
        ("collage_background", "'collage_fill'"),
        ("collage_background_colour", "'collage_fill'"),
        ("collage_rat", "'collage_rate'"),
        ("collage_fit", "'collage_fit_mode'"),
    ],
)
def test_did_you_mean_names_the_option_meant(tmp_path: Path, toks: fakes.TinyTokenizers, key: str, meant: str) -> None:
    from collage_ext.core.errors import CollageConfigError

    folder = write_images(tmp_path / "img", SIZES[:2])
    config = dataset_toml(tmp_path, folder, general=f'{key} = "#202020"')
    with pytest.raises(CollageConfigError, match=rf"unknown collage option '{key}'; did you mean {meant}\?"):
        load(tmp_path, toks, config)
