"""The kohya mirror (``collage_ext.kohya``: the torch-free restatement of sd-scripts' dataset reading that the
CLI and the studio use) agrees with sd-scripts' own reader on the checkout under test (CI: main and v0.9.1).

Both read the same dataset TOML / ``--train_data_dir`` folders / ``metadata_file``; sd-scripts builds its
plain datasets (no ``--dataset_class``) through ``config_util``. Every registered image must match: which
images, their captions, repeats and whether they are regularisation images, and (``*_subsets``) which
subsets are kept in which order with which images. Where sd-scripts stops on a dataset, the reader stops too."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import toml

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import fakes
from collage_ext.core.config import split_dataset_config
from collage_ext.core.errors import CollageConfigError, CollageInputError
from collage_ext.plan.project import load_project

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
    return {
        (os.path.realpath(info.absolute_path), info.caption, info.num_repeats, bool(info.is_reg))
        for dataset in group.datasets
        for info in dataset.image_data.values()
    }


def our_images(*args: Any, **kwargs: Any) -> set[tuple[str, str, int, bool]]:
    """The same, from ``collage_ext.plan.project.load_project``."""
    project = load_project(*args, **kwargs)
    return {
        (os.path.realpath(image.path), image.caption, image.num_repeats, subset.is_reg)
        for _, subset in project.subsets()
        for image in subset.images
    }


def test_dataset_toml_agrees(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """Captions (first line, class-token fallback), repeats, skipped subsets and balanced reg repeats."""
    root = tmp_path / "data"
    fakes.write_dreambooth_dir(
        root, subdir="chars", sizes=[(128, 192)] * 5, captions=[f"sks, id{i:03d}\nsecond line" for i in range(5)]
    )
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
        encoding="utf-8",
    )
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
    argv = [
        "--train_data_dir",
        str(train),
        "--reg_data_dir",
        str(reg),
        "--caption_extension",
        ".txt",
        "--resolution",
        "256",
        "--tokenizer_cache_dir",
        str(toks.cache_dir),
    ]
    theirs = sd_scripts_images(fakes.make_args("sdxl", argv))
    config = tmp_path / "train.toml"
    config.write_text(
        f'train_data_dir = "{train.as_posix()}"\nreg_data_dir = "{reg.as_posix()}"\n'
        'caption_extension = ".txt"\nresolution = "256"\n',
        encoding="utf-8",
    )
    assert theirs == our_images(config_file=config)
    assert len(theirs) == 7


# -- whole structure: which subsets sd-scripts keeps, in which order, with which images -------------------------------

Row = tuple[int, int, str | None, str | None, bool, tuple[tuple[str, str, int, bool], ...]]


def _real(path: Any) -> str | None:
    return os.path.realpath(str(path)) if path else None


def sd_scripts_subsets(args: Any, user_config: dict[str, Any] | None = None) -> list[Row]:
    """(dataset, kept subset index, image_dir, metadata_file, is_reg, images) of every subset sd-scripts keeps.

    The images of a subset are the ``image_data`` entries sd-scripts maps to it (``image_to_subset``): a
    metadata key registered again by a later subset belongs to that later subset, as in training.
    """
    trainer = fakes.make_trainer("sdxl")
    with fakes.fresh_strategies():  # main: a test may build twice; each build sets the strategies anew
        if MAIN:
            fakes.set_pre_dataset_strategies(trainer, args)
            group = fakes.build_dataset_group(args, user_config=user_config)
        else:
            group = fakes.build_dataset_group(args, tokenizer=trainer.load_tokenizer(args), user_config=user_config)
    rows: list[Row] = []
    for d, dataset in enumerate(group.datasets):
        for s, subset in enumerate(dataset.subsets):
            images = sorted(
                (os.path.realpath(info.absolute_path), info.caption, info.num_repeats, bool(info.is_reg))
                for key, info in dataset.image_data.items()
                if dataset.image_to_subset[key] is subset
            )
            rows.append(
                (
                    d,
                    s,
                    _real(subset.image_dir),
                    _real(getattr(subset, "metadata_file", None)),
                    bool(getattr(subset, "is_reg", False)),
                    tuple(images),
                )
            )
    return rows


def our_subsets(*args: Any, **kwargs: Any) -> list[Row]:
    """The same rows from ``load_project``."""
    project = load_project(*args, **kwargs)
    rows: list[Row] = []
    for d, dataset in enumerate(project.datasets):
        for subset in dataset.kept:
            assert subset.kept_index is not None
            images = sorted((os.path.realpath(i.path), i.caption, i.num_repeats, subset.is_reg) for i in subset.images)
            rows.append(
                (
                    d,
                    subset.kept_index,
                    _real(subset.params.get("image_dir")),
                    _real(subset.params.get("metadata_file")),
                    subset.is_reg,
                    tuple(images),
                )
            )
    return rows


def _args(config: Path | None, toks: fakes.TinyTokenizers, *extra: str) -> Any:
    head = ["--dataset_config", str(config)] if config is not None else []
    return fakes.make_args("sdxl", [*head, "--tokenizer_cache_dir", str(toks.cache_dir), *extra])


def _kohya(config: Path) -> dict[str, Any]:
    return split_dataset_config(toml.load(config)).kohya  # what the adapter hands sd-scripts: no collage keys


def test_subset_order_agrees(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """Several datasets; reg subsets first, skipped subsets (repeats 0, repeated image_dir, missing or empty
    folder) take no index; reg images more than the training images are partly unused."""
    root = tmp_path / "data"
    fakes.write_dreambooth_dir(root, subdir="reg_a", sizes=[(128, 128)] * 6, captions=["person"] * 6, seed=1)
    fakes.write_dreambooth_dir(root, subdir="a", sizes=[(128, 192)] * 2, captions=["a"] * 2, seed=10)
    fakes.write_dreambooth_dir(root, subdir="b", sizes=[(192, 128)] * 3, captions=["b"] * 3, seed=20)
    fakes.write_dreambooth_dir(root, subdir="c", sizes=[(160, 160)] * 2, captions=["c"] * 2, seed=30)
    fakes.write_dreambooth_dir(root, subdir="reg_d", sizes=[(128, 128)] * 3, captions=["dog"] * 3, seed=40)
    (root / "empty").mkdir()

    def sub(name: str, extra: str = "") -> str:
        return f'  [[datasets.subsets]]\n  image_dir = "{(root / name).as_posix()}"\n{extra}\n'

    config = root / "dataset.toml"
    config.write_text(
        '[general]\ncaption_extension = ".txt"\n\n'
        "[[datasets]]\nresolution = 256\n"
        + sub("reg_a", "  is_reg = true\n  num_repeats = 2")
        + sub("a", "  num_repeats = 2")
        + sub("a", "  num_repeats = 5")
        + sub("missing")
        + sub("empty")
        + sub("c", "  num_repeats = 0")
        + sub("b")
        + "[[datasets]]\nresolution = 256\n"
        + sub("c", "  num_repeats = 3")
        + sub("reg_d", "  is_reg = true"),
        encoding="utf-8",
    )
    theirs = sd_scripts_subsets(_args(config, toks), _kohya(config))
    assert our_subsets(config, strict=False) == theirs
    assert [(d, s) for d, s, *_ in theirs] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert theirs[0][4] and theirs[4][4]  # both reg subsets kept, in TOML order


def _write_images(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        fakes.make_image(128 + 32 * (i % 3), 128, seed=i).save(folder / name)
        paths.append(folder / name)
    return paths


_METADATA = {  # caption and tags as merge_captions_to_metadata / merge_dd_tags_to_metadata write them
    "img_00": {"caption": "a cat", "tags": "red, fluffy"},
    "img_01": {"caption": "a dog"},
    "img_02": {"tags": "only tags"},
    "img_03": {"caption": "", "tags": "empty caption"},
    "img_04": {"caption": "two files, one stem"},
}
_FILES = ["img_00.png", "img_01.png", "img_02.webp", "img_03.png", "img_04.png", "img_04.jpg"]


def _metadata_case(
    tmp_path: Path, keys: str, paths: str, monkeypatch: pytest.MonkeyPatch, wildcard: bool = False
) -> Path:
    """A fine-tuning dataset TOML whose metadata keys are stems, file names, or absolute paths of either."""
    images = tmp_path / "imgs"
    _write_images(images, _FILES)
    metadata: dict[str, Any] = {}
    for stem, entry in _METADATA.items():
        name = next(f for f in _FILES if f.startswith(stem))
        key = {"stem": stem, "name": name, "abs_stem": str(images / stem), "abs": str(images / name)}[keys]
        metadata[key] = dict(entry)
    if wildcard:
        metadata[next(iter(metadata))] = {"caption": "a cat\n\nsitting", "tags": "red\nfluffy"}
    meta = tmp_path / "meta" / "meta_cap.json"
    meta.parent.mkdir()
    meta.write_text(json.dumps(metadata), encoding="utf-8")
    if paths == "rel":  # sd-scripts resolves relative paths (and v0.9.1 relative keys) from the current folder
        monkeypatch.chdir(tmp_path)
        image_dir, meta_file = "imgs", "meta/meta_cap.json"
    else:
        image_dir, meta_file = images.as_posix(), meta.as_posix()
    config = tmp_path / "dataset.toml"
    config.write_text(
        f"[[datasets]]\nresolution = 256\n{'enable_wildcard = true' if wildcard else ''}\n"
        f'  [[datasets.subsets]]\n  image_dir = "{image_dir}"\n  metadata_file = "{meta_file}"\n'
        "  num_repeats = 2\n",
        encoding="utf-8",
    )
    return config


@pytest.mark.parametrize("paths", ["abs", "rel"])
@pytest.mark.parametrize("keys", ["stem", "name", "abs_stem", "abs"])
def test_metadata_file_agrees(
    tmp_path: Path, toks: fakes.TinyTokenizers, monkeypatch: pytest.MonkeyPatch, keys: str, paths: str
) -> None:
    """metadata_file keys with and without extensions, absolute or relative to image_dir.

    v0.9.1 finds a key by ``glob_images(image_dir, key)`` (so the stems that its own
    ``merge_captions_to_metadata.py`` writes work, and a relative key with an extension does not:
    "no image"); main joins ``image_dir`` and the key as written (a stem names no file, and building
    the buckets stops on it). Whatever the checkout does, the reader does the same: the same images,
    or both stop, the reader with the key and the path it looked for.
    """
    config = _metadata_case(tmp_path, keys, paths, monkeypatch)
    args = _args(config, toks)
    try:
        theirs = sd_scripts_subsets(args, _kohya(config))
    except (AssertionError, FileNotFoundError) as exc:  # v0.9.1: "no image" / main: the bucket pass
        with pytest.raises(CollageInputError, match="metadata_file"):
            load_project(config)
        project = load_project(config, strict=False)  # what check reports: every key, and the path
        missing = [f.file for f in project.findings if f.code == "metadata_image_missing"]
        assert missing and all(not os.path.exists(str(p)) for p in missing)
        assert isinstance(exc, AssertionError) or os.path.basename(str(exc.filename)) in map(os.path.basename, missing)
        return
    assert our_subsets(config) == theirs
    images = theirs[0][5]
    assert len(images) == len(_METADATA) and {c for _, c, _, _ in images} >= {"a dog", "a cat,red, fluffy"}
    assert all(os.path.isfile(p) for p, *_ in images)


def test_metadata_wildcard_and_in_json_agree(
    tmp_path: Path, toks: fakes.TinyTokenizers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """enable_wildcard with tags (per-line captions), and the same dataset given as --in_json/--train_data_dir."""
    config = _metadata_case(tmp_path, "abs", "abs", monkeypatch, wildcard=True)
    assert our_subsets(config) == sd_scripts_subsets(_args(config, toks), _kohya(config))
    meta, images = tmp_path / "meta" / "meta_cap.json", tmp_path / "imgs"
    argv = ["--in_json", str(meta), "--train_data_dir", str(images), "--resolution", "256"]
    theirs = sd_scripts_subsets(_args(None, toks, *argv))
    assert our_subsets(trainer_args=argv) == theirs
    assert len(theirs) == 1 and len(theirs[0][5]) == len(_METADATA)


def test_metadata_key_in_two_subsets_agrees(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """Two fine-tuning subsets whose metadata share a key: sd-scripts registers images by key, the later wins."""
    rows = []
    for name in ("one", "two"):
        folder = tmp_path / name
        _write_images(folder, ["img_00.png", f"{name}.png"])
        meta = tmp_path / f"{name}.json"
        shared = str(tmp_path / "one" / "img_00.png")  # the same key (an absolute path) in both files
        meta.write_text(
            json.dumps({shared: {"caption": f"{name} shared"}, str(folder / f"{name}.png"): {"caption": name}}),
            encoding="utf-8",
        )
        rows.append(
            f'  [[datasets.subsets]]\n  image_dir = "{folder.as_posix()}"\n  metadata_file = "{meta.as_posix()}"\n'
        )
    config = tmp_path / "dataset.toml"
    config.write_text("[[datasets]]\nresolution = 256\n" + "".join(rows) + rows[0], encoding="utf-8")
    theirs = sd_scripts_subsets(_args(config, toks), _kohya(config))
    assert our_subsets(config, strict=False) == theirs
    assert [len(images) for *_, images in theirs] == [1, 2]


def test_metadata_jsonl_agrees(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """A ``.jsonl`` metadata file: main reads one entry per line; v0.9.1 reads it as one JSON document and stops."""
    folder = tmp_path / "imgs"
    paths = _write_images(folder, ["a.png", "b.png"])
    lines = [
        {"image_path": str(paths[0]), "caption": "first", "tags": "x, y"},
        {"image_path": "b.png", "caption": "second", "image_size": [160, 128]},
    ]
    meta = tmp_path / "meta.jsonl"
    meta.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    config = tmp_path / "dataset.toml"
    config.write_text(
        f'[[datasets]]\nresolution = 256\n  [[datasets.subsets]]\n  image_dir = "{folder.as_posix()}"\n'
        f'  metadata_file = "{meta.as_posix()}"\n',
        encoding="utf-8",
    )
    args = _args(config, toks)
    if not MAIN:
        with pytest.raises(json.JSONDecodeError):
            sd_scripts_subsets(args, _kohya(config))
        with pytest.raises(CollageInputError, match="cannot be read"):
            load_project(config)
        return
    theirs = sd_scripts_subsets(args, _kohya(config))
    assert our_subsets(config) == theirs
    assert {c for *_, rows in theirs for _, c, _, _ in rows} == {"first,x, y", "second"}


@pytest.mark.parametrize("where", ["dataset", "training"])
def test_validation_split_agrees(tmp_path: Path, toks: fakes.TinyTokenizers, where: str) -> None:
    """validation_split with validation_seed (dataset TOML or training arguments): the training part of each
    subset, reg subsets whole; v0.9.1 has no validation split and refuses the key."""
    root = tmp_path / "data"
    fakes.write_dreambooth_dir(root, subdir="a", sizes=[(128, 128)] * 7, captions=[f"a{i}" for i in range(7)])
    fakes.write_dreambooth_dir(root, subdir="b", sizes=[(128, 192)] * 4, captions=[f"b{i}" for i in range(4)], seed=9)
    fakes.write_dreambooth_dir(root, subdir="reg", sizes=[(192, 128)] * 5, captions=["r"] * 5, seed=20)
    split = "validation_split = 0.3\nvalidation_seed = 5\n"
    config = root / "dataset.toml"
    config.write_text(
        '[general]\ncaption_extension = ".txt"\n'
        + (split if where == "dataset" else "")
        + "[[datasets]]\nresolution = 256\n"
        + "".join(
            f'  [[datasets.subsets]]\n  image_dir = "{(root / n).as_posix()}"\n  num_repeats = 2\n'
            + ("  is_reg = true\n" if n == "reg" else "")
            for n in ("a", "reg", "b")
        ),
        encoding="utf-8",
    )
    if not MAIN:
        if where == "training":
            pytest.skip("v0.9.1 has no --validation_split")
        with pytest.raises(Exception, match="validation_split"):  # voluptuous: extra keys not allowed
            sd_scripts_subsets(_args(config, toks), _kohya(config))
        with pytest.raises(CollageConfigError, match="validation_split"):
            load_project(config)
        return
    extra = ["--validation_split", "0.3", "--validation_seed", "5"] if where == "training" else []
    theirs = sd_scripts_subsets(_args(config, toks, *extra), _kohya(config))
    training = tmp_path / "train.toml"
    training.write_text(
        f'dataset_config = "{config.as_posix()}"\nvalidation_split = 0.3\nvalidation_seed = 5\n', encoding="utf-8"
    )
    ours = our_subsets(config) if where == "dataset" else our_subsets(config_file=training)
    assert ours == theirs
    assert [len(images) for *_, images in theirs] == [math.ceil(7 * 0.7), 5, math.ceil(4 * 0.7)]


def test_caption_variants_agree(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """enable_wildcard caption files (every non-empty line), sd-scripts' default ``.caption`` extension, the
    face-crop caption name (``name_x_y_w_h``), and the misspelled ``caption_extention`` of the training TOML
    (sd-scripts lets it win over ``caption_extension``)."""
    root = tmp_path / "data"
    wild = root / "wild"
    _write_images(wild, ["w_00.png", "w_01.png"])
    (wild / "w_00.txt").write_text("first line\n\n  second line  \nthird\n", encoding="utf-8")
    (wild / "w_01.txt").write_text("only\n", encoding="utf-8")
    default = root / "default"
    _write_images(default, ["d_00.png", "face_01_10_20_30_40.png", "d_02.png"])
    (default / "d_00.caption").write_text("from .caption\nignored", encoding="utf-8")
    (default / "face_01.caption").write_text("face crop caption", encoding="utf-8")
    (default / "d_02.txt").write_text("a .txt the default extension does not read", encoding="utf-8")
    spelled = root / "tdd" / "3_thing"
    _write_images(spelled, ["s_00.png"])
    (spelled / "s_00.txt").write_text("misspelled option", encoding="utf-8")
    config = root / "dataset.toml"
    config.write_text(
        "[[datasets]]\nresolution = 256\n"
        f'  [[datasets.subsets]]\n  image_dir = "{wild.as_posix()}"\n  enable_wildcard = true\n'
        '  caption_extension = ".txt"\n'
        f'  [[datasets.subsets]]\n  image_dir = "{default.as_posix()}"\n  class_tokens = "dflt"\n',
        encoding="utf-8",
    )
    theirs = sd_scripts_subsets(_args(config, toks), _kohya(config))
    assert our_subsets(config) == theirs
    captions = {c for *_, rows in theirs for _, c, _, _ in rows}
    assert {"first line\nsecond line\nthird", "from .caption", "face crop caption", "dflt"} <= captions
    argv = [
        "--train_data_dir",
        str(root / "tdd"),
        "--caption_extension",
        ".caption",
        "--caption_extention",
        ".txt",
        "--resolution",
        "256",
    ]
    training = tmp_path / "train.toml"
    training.write_text(
        f'train_data_dir = "{(root / "tdd").as_posix()}"\ncaption_extension = ".caption"\n'
        'caption_extention = ".txt"\nresolution = "256"\n',
        encoding="utf-8",
    )
    theirs = sd_scripts_subsets(_args(None, toks, *argv))
    assert our_subsets(config_file=training) == theirs
    assert {c for *_, rows in theirs for _, c, _, _ in rows} == {"misspelled option"}


def test_cache_info_agrees(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """cache_info: sd-scripts writes ``metadata_cache.json`` once, then lists images and captions from it."""
    root = tmp_path / "data"
    fakes.write_dreambooth_dir(root, subdir="a", sizes=[(128, 128)] * 3, captions=["old"] * 3)
    config = root / "dataset.toml"
    config.write_text(
        f'[general]\ncaption_extension = ".txt"\n[[datasets]]\nresolution = 256\n'
        f'  [[datasets.subsets]]\n  image_dir = "{(root / "a").as_posix()}"\n  cache_info = true\n',
        encoding="utf-8",
    )
    first = sd_scripts_subsets(_args(config, toks), _kohya(config))
    assert (root / "a" / "metadata_cache.json").is_file()
    (root / "a" / "img_00.txt").write_text("new", encoding="utf-8")
    fakes.make_image(128, 128, seed=99).save(root / "a" / "img_09.png")
    theirs = sd_scripts_subsets(_args(config, toks), _kohya(config))
    assert theirs == first  # the cache wins over the folder
    assert our_subsets(config) == theirs
