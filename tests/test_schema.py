"""The torch-free dataset-TOML schema (collage_ext.kohya.schema): sd-scripts' verdicts and one clear line each.

tests/sdscripts/test_schema_agrees.py proves these verdicts are sd-scripts' own on main and v0.9.1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import toml

from collage_ext.cli import main
from collage_ext.core.config import strip_collage_keys
from collage_ext.kohya.schema import FLAVOURS, detect_flavour, schema_for, validate
from schema_corpus import CASES, make_corpus_data


@pytest.fixture(autouse=True)
def no_sd_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests decide the release themselves: no SD_SCRIPTS_DIR from the environment."""
    monkeypatch.delenv("SD_SCRIPTS_DIR", raising=False)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("masked_loss", [False, True])
def test_corpus_verdicts(flavour: str, masked_loss: bool) -> None:
    assert len(CASES) >= 40
    wrong = []
    for case in CASES:
        data = strip_collage_keys(toml.loads(case.render("/data/img", "/data/meta.json")))
        problems = validate(data, schema_for(flavour, controlnet=masked_loss))  # type: ignore[arg-type]
        if (not problems) != case.expect(flavour, masked_loss):
            wrong.append(f"{case.name}: {problems[:1]}")
    assert not wrong


def _check(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["check", *args, "--console_log_level", "ERROR"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "num_repeat_typo",
            "num_repeat is not allowed in [[datasets.subsets]] (sd-scripts stops: extra keys not allowed): "
            "did you mean num_repeats? @ data['datasets'][0]['subsets'][0]['num_repeat']",
        ),
        ("subset_typo", "did you mean subsets? write [[datasets.subsets]]"),
        (
            "training_toml_flat",
            "looks like a training TOML (it sets pretrained_model_name_or_path, output_dir, "
            "network_module), not a dataset TOML: pass it as --config",
        ),
        ("training_toml_sections", "looks like a training TOML"),
        ("batch_size_in_subset", "batch_size belongs in [general] or [[datasets]]; move it there"),
        ("image_dir_in_general", "image_dir belongs in [[datasets.subsets]]"),
        ("missing_image_dir", "required key image_dir is missing"),
        (
            "resolution_string",
            "resolution must be a whole number or two of them, got '1024,1024'; e.g. resolution = 1024",
        ),
        ("network_multiplier_int", "network_multiplier must be a number with a decimal point"),
        ("datasets_single_table", "write [[datasets]] (two brackets)"),
        ("mixed_db_ft", "cannot be mixed in one dataset: split them into two [[datasets]]"),
        ("seed_in_general", "seed is a training option: put it in the training TOML"),
        ("caption_extention_spelling", "did you mean caption_extension?"),
    ],
)
def test_one_clear_line_naming_file_key_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, expected: str
) -> None:
    img, meta = make_corpus_data(tmp_path)
    case = next(c for c in CASES if c.name == name)
    path = tmp_path / f"{name}.toml"
    path.write_text(case.render(img, meta), encoding="utf-8")
    code, err = _check(tmp_path, capsys, str(path))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: ") and str(path) in lines[0] and expected in lines[0], lines[0]


def test_swapped_files_and_dataset_toml_as_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img, meta = make_corpus_data(tmp_path)
    dataset = tmp_path / "dataset.toml"
    dataset.write_text(CASES[0].render(img, meta), encoding="utf-8")
    train = tmp_path / "train.toml"
    train.write_text(
        'pretrained_model_name_or_path = "m.safetensors"\noutput_dir = "out"\nmax_train_steps = 100\n', encoding="utf-8"
    )
    code, err = _check(tmp_path, capsys, str(train), "--config", str(dataset))
    assert code == 2 and "the two files look swapped" in err and f"{dataset} --config {train}" in err
    code, err = _check(tmp_path, capsys, "--config", str(dataset))
    assert code == 2 and f"--config {dataset} looks like a dataset TOML" in err
    code, err = _check(tmp_path, capsys, str(dataset), "--config", str(train))
    assert code == 0, err
    for command in ("preview", "export"):  # the other torch-free commands refuse it too (exit 0 before)
        capsys.readouterr()
        assert main([command, str(train), "--out", str(tmp_path / command)]) == 2
        assert "looks like a training TOML" in capsys.readouterr().err


def test_release_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, text, flavour in (
        ("new", 'class ConfigSanitizer:\n    X = {"validation_split": float}\n', "main"),
        ("old", "class ConfigSanitizer:\n    X = {}\n", "v0.9.1"),
    ):
        (tmp_path / name / "library").mkdir(parents=True)
        (tmp_path / name / "library" / "config_util.py").write_text(text, encoding="utf-8")
        monkeypatch.setenv("SD_SCRIPTS_DIR", str(tmp_path / name))
        assert detect_flavour()[0] == flavour


def test_newer_keys_warn_when_no_sd_scripts_is_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("collage_ext.kohya.datasets.detect_flavour", lambda: ("main", "no sd-scripts found here"))
    img, meta = make_corpus_data(tmp_path)
    case = next(c for c in CASES if c.name == "resize_interpolation")
    path = tmp_path / "d.toml"
    path.write_text(case.render(img, meta), encoding="utf-8")
    capsys.readouterr()
    assert main(["check", str(path), "--json"]) in (0, 1)
    out = capsys.readouterr().out
    assert "newer_sd_scripts_key" in out and "resize_interpolation needs sd-scripts newer than v0.9.1" in out
    monkeypatch.setattr("collage_ext.kohya.datasets.detect_flavour", lambda: ("v0.9.1", "SD_SCRIPTS_DIR=x"))
    assert main(["check", str(path)]) == 2
    assert "sd-scripts v0.9.1 does not know resize_interpolation" in capsys.readouterr().err
