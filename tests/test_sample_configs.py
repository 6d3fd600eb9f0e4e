"""Every sample config parses through the option table (and sd-scripts' own checks when available).

Each ``sample_configs/<name>/`` folder holds ``train.toml`` (``--config_file``), ``dataset.toml``
(``--dataset_config``) and ``train.sh``. The collage keys go through ``split_dataset_config`` exactly
as ``CollageDataset`` reads them (training-TOML ``collage_*`` keys as defaults); with
``SD_SCRIPTS_DIR`` pointing at an importable checkout, the kohya part also goes through sd-scripts'
``ConfigSanitizer`` and every training-TOML key must be an option of the trainer the script runs.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import toml

from collage_ext.core.config import CollageConfig, split_dataset_config
from collage_ext.kohya.datasets import build_run
from collage_ext.kohya.families import detect
from collage_ext.plan.run import resolve_mode

SAMPLES = Path(__file__).resolve().parents[1] / "sample_configs"
NAMES = sorted(p.name for p in SAMPLES.iterdir() if p.is_dir())
#: Which trainer each sample's train.sh launches, and the mode its training TOML implies.
EXPECTED = {
    "illustrious_character": ("sdxl_train_network", "dynamic"),
    "chroma_style": ("flux_train_network", "static"),
    "mixed_with_reg": ("sdxl_train_network", "dynamic"),
}


def test_the_three_use_cases_are_there() -> None:
    """(a) Illustrious character, (b) Chroma style, (c) mixed subsets with regularisation."""
    assert set(NAMES) == set(EXPECTED)
    for name in NAMES:
        assert {"train.toml", "dataset.toml", "train.sh"} <= {p.name for p in (SAMPLES / name).iterdir()}


def load(name: str) -> tuple[dict[str, Any], Any, Any]:
    """(training values, RunArgs, DatasetTree) as CollageDataset would see them."""
    run = build_run(SAMPLES / name / "train.toml")
    data = toml.load(SAMPLES / name / "dataset.toml")
    tree = split_dataset_config(data, defaults=run.collage_defaults, defaults_where=f"--config_file {name}")
    return run.values, run, tree


@pytest.mark.parametrize("name", NAMES)
def test_sample_parses_through_option_table(name: str) -> None:
    """The training TOML enables the dataset class and names a dataset config; every collage key is valid."""
    values, run, tree = load(name)
    assert values["dataset_class"] == "collage_ext.CollageDataset"
    assert Path(values["dataset_config"]).name == "dataset.toml"
    configs = [c for row in tree.subsets for c in row]
    assert configs and all(isinstance(c, CollageConfig) for c in configs)
    assert any(c.enabled for c in configs)
    mode, _ = resolve_mode(configs, run)
    assert mode == EXPECTED[name][1]
    assert not any(k.startswith("collage_") for k in _keys(tree.kohya))  # stripped for sd-scripts


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [k for k, v in value.items() for k in [k, *_keys(v)]]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def test_chroma_sample_is_a_chroma_run() -> None:
    """T5 attention mask, no guidance, cached text-encoder outputs (so static frames), T5 token budget."""
    values, _, _ = load("chroma_style")
    assert values["model_type"] == "chroma" and values["apply_t5_attn_mask"] is True
    assert values["guidance_scale"] == 0.0 and values["cache_text_encoder_outputs"] is True
    assert detect(values)[0].name == "chroma"


def test_mixed_sample_mixes_collage_single_and_reg() -> None:
    """One collage subset, one partly-single subset, one regularisation subset that stays single."""
    _, _, tree = load("mixed_with_reg")
    rates = [c.rate for c in tree.subsets[0]]
    assert rates == [1.0, 0.5, 0.0]
    assert tree.kohya["datasets"][0]["subsets"][2]["is_reg"] is True


@pytest.mark.parametrize("name", NAMES)
def test_shell_script_runs_the_right_trainer(name: str) -> None:
    """train.sh checks and previews first, then launches the trainer with the sample's TOMLs."""
    script = (SAMPLES / name / "train.sh").read_text(encoding="utf-8")
    assert script.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in script
    assert f"{EXPECTED[name][0]}.py" in script
    assert re.search(r"collage-ext check .*dataset\.toml", script)
    assert re.search(r"collage-ext preview .*dataset\.toml", script)
    assert "--config_file" in script and os.access(SAMPLES / name / "train.sh", os.X_OK)


# -- with a real sd-scripts checkout ----------------------------------------------------------------


def _sd_scripts() -> Any:
    """sd-scripts' library.config_util, or skip with the reason."""
    sd_dir = os.environ.get("SD_SCRIPTS_DIR")
    if not sd_dir:
        pytest.skip(
            "SD_SCRIPTS_DIR is not set: sd-scripts' ConfigSanitizer check skipped (see tests/sdscripts/NOTES.md)"
        )
    if str(Path(sd_dir).resolve()) not in sys.path:
        sys.path.insert(0, str(Path(sd_dir).resolve()))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import sentencepiece  # noqa: F401  # before transformers' T5 tokenizers (see NOTES.md)
            from library import config_util
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"sd-scripts' library does not import with {sys.executable}: {type(exc).__name__}: {exc}")
    return config_util


@pytest.mark.parametrize("name", NAMES)
def test_sample_passes_sd_scripts_sanitizer(name: str) -> None:
    """The kohya part of dataset.toml passes sd-scripts' own ConfigSanitizer (unknown keys are errors there)."""
    config_util = _sd_scripts()
    _, _, tree = load(name)
    sanitizer = config_util.ConfigSanitizer(True, True, False, True)
    sanitizer.sanitize_user_config(tree.kohya)


@pytest.mark.parametrize("name", NAMES)
def test_training_keys_are_trainer_options(name: str) -> None:
    """Every train.toml key (except collage_*) is an option of the trainer train.sh launches."""
    _sd_scripts()
    import importlib
    import importlib.util

    if importlib.util.find_spec(EXPECTED[name][0]) is None:
        pytest.skip(f"this sd-scripts checkout has no {EXPECTED[name][0]}.py (Chroma needs sd-scripts main)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = importlib.import_module(EXPECTED[name][0])
        parser = trainer.setup_parser()
    options = {a.dest for a in parser._actions}
    values, _, _ = load(name)
    unknown = sorted(k for k in values if k not in options and not k.startswith("collage_") and k != "config_file")
    assert not unknown, f"{name}/train.toml: not options of {EXPECTED[name][0]}.py: {unknown}"
