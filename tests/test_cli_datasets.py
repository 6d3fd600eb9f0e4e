"""Reading a dataset the way sd-scripts does, without sd-scripts (``collage_ext.kohya.datasets``).

The same rules are checked against the real loader in ``tests/sdscripts/test_cli_identity.py``; here
each rule gets an exact, hand-computed case.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from collage_ext.core.errors import CollageConfigError, CollageInputError
from collage_ext.kohya.datasets import build_run, parse_trainer_args, subsets_from_folders
from collage_ext.plan.project import load_project


def images(folder: Path, names: list[str], captions: dict[str, str] | None = None, ext: str = ".txt") -> Path:
    """Tiny images (and captions) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (64, 96), (120, 30, 200)).save(folder / name)
    for name, text in (captions or {}).items():
        (folder / name).with_suffix(ext).write_text(text, encoding="utf-8")
    return folder


def toml_file(path: Path, body: str) -> Path:
    """A dataset TOML with resolution 256."""
    path.write_text("[general]\nresolution = 256\n" + body, encoding="utf-8")
    return path


def subset(image_dir: Path, extra: str = "") -> str:
    """One ``[[datasets.subsets]]`` block."""
    return f'  [[datasets.subsets]]\n  image_dir = "{image_dir.as_posix()}"\n  {extra}\n'


def test_captions_follow_sd_scripts_rules(tmp_path: Path) -> None:
    """First line of the caption file; class_tokens fallback; .caption default; face-crop names; wildcards."""
    folder = images(
        tmp_path / "a",
        ["p1.png", "p2.png", "p3.jpg", "x_1_2_3_4.png", "note.gif"],
        {"p1.png": "first line\nsecond line\n", "x.png": "face crop caption\n"},
    )
    (folder / "p3.caption").write_text("legacy caption", encoding="utf-8")
    project = load_project(
        toml_file(tmp_path / "d.toml", "[[datasets]]\n" + subset(folder, 'class_tokens = "sks"')), strict=False
    )
    got = {Path(i.path).name: i.caption for i in project.datasets[0].subsets[0].images}
    # default caption_extension is ".caption": p1.txt is ignored, p3.caption is read, gifs are not images
    assert got == {"p1.png": "sks", "p2.png": "sks", "p3.jpg": "legacy caption", "x_1_2_3_4.png": "sks"}
    assert any('caption_extension = ".txt"' in f.message for f in project.findings)
    project = load_project(
        toml_file(
            tmp_path / "e.toml", 'caption_extension = ".txt"\n[[datasets]]\n' + subset(folder, "enable_wildcard = true")
        ),
        strict=False,
    )
    got = {Path(i.path).name: i.caption for i in project.datasets[0].subsets[0].images}
    assert got["p1.png"] == "first line\nsecond line" and got["x_1_2_3_4.png"] == "face crop caption"
    assert got["p2.png"] == "" and any(f.code == "caption_missing" for f in project.findings)


def test_empty_caption_file_stops_like_sd_scripts(tmp_path: Path) -> None:
    """strict: raise naming the file; not strict: an error finding."""
    folder = images(tmp_path / "a", ["p1.png"], {"p1.png": ""})
    config = toml_file(tmp_path / "d.toml", 'caption_extension = ".txt"\n[[datasets]]\n' + subset(folder))
    with pytest.raises(CollageInputError, match=r"p1\.txt is empty"):
        load_project(config)
    assert [f.code for f in load_project(config, strict=False).findings] == ["caption_empty"]


def test_subsets_skipped_like_sd_scripts_take_no_index(tmp_path: Path) -> None:
    """num_repeats < 1, a repeated image_dir and an empty folder are skipped; kept subsets are numbered densely."""
    a = images(tmp_path / "a", ["1.png"])
    b = images(tmp_path / "b", ["2.png"])
    empty = tmp_path / "empty"
    empty.mkdir()
    body = "[[datasets]]\n" + subset(a, "num_repeats = 0") + subset(b) + subset(b) + subset(empty) + subset(a)
    project = load_project(toml_file(tmp_path / "d.toml", body), strict=False)
    kept = [(s.index, s.kept_index, s.skipped) for s in project.datasets[0].subsets]
    assert kept == [
        (0, None, "num_repeats is 0 (< 1)"),
        (1, 0, None),
        (2, None, "the same image_dir is already used by an earlier subset of this dataset"),
        (3, None, "no images"),
        (4, 1, None),
    ]


def test_regularisation_repeats_are_balanced(tmp_path: Path) -> None:
    """Reg images are registered until they match the training images, then get one more repeat at a time."""
    train = images(tmp_path / "train", [f"{i}.png" for i in range(5)])
    reg = images(tmp_path / "reg", [f"r{i}.png" for i in range(3)])
    body = "[[datasets]]\n" + subset(train, "num_repeats = 2") + subset(reg, "is_reg = true\n  num_repeats = 1")
    project = load_project(toml_file(tmp_path / "d.toml", body), strict=False)
    reg_images = project.datasets[0].subsets[1].images
    # 10 training samples: first pass registers 3 (n = 3), then +1 each round: r0..r2 get 4, 3, 3
    assert [(Path(i.path).name, i.num_repeats) for i in reg_images] == [("r0.png", 4), ("r1.png", 3), ("r2.png", 3)]


def test_validation_split_with_seed(tmp_path: Path) -> None:
    """validation_split keeps the training part of sd-scripts' seeded shuffle; without a seed it warns."""
    folder = images(tmp_path / "a", [f"{i}.png" for i in range(10)])
    body = "[[datasets]]\nvalidation_split = 0.2\nvalidation_seed = 3\n" + subset(folder)
    project = load_project(toml_file(tmp_path / "d.toml", body), strict=False)
    assert len(project.datasets[0].subsets[0].images) == 8
    body = "[[datasets]]\nvalidation_split = 0.2\n" + subset(folder)
    project = load_project(toml_file(tmp_path / "e.toml", body), strict=False)
    assert len(project.datasets[0].subsets[0].images) == 10
    assert "validation_split_unseeded" in [f.code for f in project.findings]


def test_train_data_dir_subsets(tmp_path: Path) -> None:
    """N_name folders become subsets with repeats and class tokens; folders without a number are ignored."""
    images(tmp_path / "data" / "3_sks_woman", ["a.png"])
    images(tmp_path / "data" / "misc", ["b.png"])
    images(tmp_path / "reg" / "1_woman", ["c.png"])
    subsets = subsets_from_folders(str(tmp_path / "data"), str(tmp_path / "reg"))
    assert [(Path(s["image_dir"]).name, s["num_repeats"], s["class_tokens"], s["is_reg"]) for s in subsets] == [
        ("3_sks_woman", 3, "sks_woman", False),
        ("1_woman", 1, "woman", True),
    ]


def test_fine_tuning_metadata(tmp_path: Path) -> None:
    """metadata_file subsets: captions plus tags joined with the caption separator."""
    folder = images(tmp_path / "a", ["1.png", "2.png"])
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"1.png": {"caption": "a cat", "tags": "red, cute"}, str(folder / "2.png"): {}}))
    body = f'[[datasets]]\n  [[datasets.subsets]]\n  image_dir = "{folder.as_posix()}"\n  metadata_file = "{meta}"\n'
    project = load_project(toml_file(tmp_path / "d.toml", body), strict=False)
    dataset = project.datasets[0]
    assert dataset.kind == "finetuning"
    assert sorted((Path(i.path).name, i.caption) for i in dataset.subsets[0].images) == [
        ("1.png", "a cat,red, cute"),
        ("2.png", ""),
    ]


def test_relative_paths_fall_back_to_the_toml_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sd-scripts resolves from the current folder; a path that only exists next to the TOML is used with a note."""
    images(tmp_path / "proj" / "img", ["1.png"])
    config = toml_file(tmp_path / "proj" / "d.toml", '[[datasets]]\n  [[datasets.subsets]]\n  image_dir = "img"\n')
    monkeypatch.chdir(tmp_path)
    project = load_project(config, strict=False)
    assert len(project.datasets[0].subsets[0].images) == 1
    assert [f.code for f in project.findings if f.code != "caption_missing"] == ["path_beside_toml"]


def test_training_arguments(tmp_path: Path) -> None:
    """--config TOML sections are flattened; trainer args override it; --seed overrides both."""
    train = tmp_path / "train.toml"
    train.write_text('[a]\nseed = 1\nresolution = "512,768"\n[b]\ncollage_rate = 0.5\n', encoding="utf-8")
    run = build_run(train, ["--seed", "2", "--cache_latents"])
    assert run.get("seed") == 2 and run.caches_latents and run.collage_defaults == {"collage_rate": 0.5}
    assert build_run(train, ["--seed", "2"], seed=3).get("seed") == 3 and "seed" in build_run(train).explicit
    assert parse_trainer_args(["--max_token_length=225", "--network_train_unet_only"]) == {
        "max_token_length": 225,
        "network_train_unet_only": True,
    }
    with pytest.raises(CollageConfigError, match="is not an option"):
        parse_trainer_args(["seed"])
    with pytest.raises(CollageConfigError, match="cannot be read"):
        build_run(tmp_path / "missing.toml")


def test_resolution_cascade(tmp_path: Path) -> None:
    """Dataset resolution comes from the dataset, [general], or the training arguments (string W,H)."""
    folder = images(tmp_path / "a", ["1.png"])
    config = tmp_path / "d.toml"
    config.write_text("[[datasets]]\n" + subset(folder), encoding="utf-8")
    with pytest.raises(CollageConfigError, match="resolution is not set"):
        load_project(config, strict=False)
    project = load_project(config, trainer_args=["--resolution", "512,768"], strict=False)
    assert tuple(project.datasets[0].resolution) == (512, 768)


@pytest.mark.parametrize("release", ["v0.9.1", "main", "v0.11"])
def test_metadata_keys_follow_the_installed_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, release: str
) -> None:
    """Extension-less keys (merge_captions_to_metadata.py's) are found by glob in v0.9.1 and v0.11, and name a
    file that does not exist in main (v0.10), which the reader reports with the file that does."""
    folder = images(tmp_path / "imgs", ["a.png", "b.jpg", "b.png"])
    meta = tmp_path / "meta.json"
    meta.write_text(
        json.dumps(
            {"a": {"caption": "", "tags": "t1, t2"}, "b": {"tags": "only"}, str(folder / "a.png"): {"caption": "abs"}}
        ),
        encoding="utf-8",
    )
    body = "[[datasets]]\n" + subset(folder, f'metadata_file = "{meta.as_posix()}"')
    monkeypatch.setattr("collage_ext.kohya.datasets.detect_metadata_release", lambda: (release, "test"))
    project = load_project(toml_file(tmp_path / "d.toml", body), strict=False)
    got = {Path(i.path).name: i.caption for _, s in project.subsets() for i in s.images}
    missing = [f for f in project.findings if f.code == "metadata_image_missing"]
    if release == "main":
        assert got == {"a": "t1, t2", "b": "only", "a.png": "abs"}
        assert [Path(str(f.file)).name for f in missing] == ["a", "b"] and "b.jpg exists" in missing[1].message
        with pytest.raises(CollageInputError, match="does not exist"):
            load_project(toml_file(tmp_path / "d.toml", body))
    else:  # sorted glob: b.jpg before b.png; v0.9.1 joins an empty caption and tags with the separator
        assert got == {"a.png": "abs", "b.jpg": "only"} and not missing
        assert next(i.caption for _, s in project.subsets() for i in s.images) == (
            ",t1, t2" if release == "v0.9.1" else "t1, t2"
        )
