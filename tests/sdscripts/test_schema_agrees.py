"""``collage-ext check`` refuses exactly the dataset TOMLs sd-scripts' own ``ConfigSanitizer`` refuses.

The corpus (tests/schema_corpus.py: good and bad TOMLs, every case of issue 19) is run through the
real sanitizer of the checkout under test (CI: main and v0.9.1), built as the trainers build it:
``ConfigSanitizer(True, True, args.masked_loss, True)``, after collage_ext removed its ``collage_*``
keys as the adapter does. The CLI finds the release through ``SD_SCRIPTS_DIR`` and must exit 2
(configuration error, one line) on exactly the refused files, and never 2 on an accepted one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import toml

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

from library import config_util

from collage_ext.cli import main
from collage_ext.core.config import strip_collage_keys
from collage_ext.kohya.schema import detect_flavour, schema_for
from schema_corpus import CASES, make_corpus_data

pytestmark = pytest.mark.sdscripts


def sd_scripts_accepts(data: dict, masked_loss: bool) -> bool:
    """True when sd-scripts' sanitizer accepts ``data`` (what the trainers run first on --dataset_config)."""
    try:
        config_util.ConfigSanitizer(True, True, masked_loss, True).sanitize_user_config(data)
    except Exception:  # noqa: BLE001 - voluptuous.MultipleInvalid, or what validate_flex_dataset raises
        return False
    return True


def test_the_release_is_detected() -> None:
    flavour, why = detect_flavour()
    assert flavour == (
        "main" if "validation_split" in config_util.ConfigSanitizer.DATASET_ASCENDABLE_SCHEMA else "v0.9.1"
    )
    assert os.environ["SD_SCRIPTS_DIR"] in why


@pytest.mark.parametrize("masked_loss", [False, True])
def test_key_sets_are_sd_scripts_own(masked_loss: bool) -> None:
    """Every level's allowed keys equal the sanitizer's schema objects."""
    real = config_util.ConfigSanitizer(True, True, masked_loss, True)
    ours = schema_for(detect_flavour()[0], controlnet=masked_loss)

    def keys(schema: dict) -> set[str]:
        return {str(k) for k in schema if str(k) != "subsets"}

    assert set(ours.general) == keys(real.general_schema)
    for kind, name in (("db", "db"), ("ft", "ft"), ("cn", "cn")):
        assert set(ours.datasets[kind]) == keys(getattr(real, f"{name}_dataset_schema")), kind
        assert set(ours.subsets[kind]) == keys(getattr(real, f"{name}_subset_schema")), kind


@pytest.mark.parametrize("masked_loss", [False, True])
def test_cli_refuses_what_sd_scripts_refuses(
    tmp_path: Path, masked_loss: bool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    img, meta = make_corpus_data(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    flavour = detect_flavour()[0]
    assert len(CASES) >= 40
    disagreements, verdicts = [], []
    for case in CASES:
        path = tmp_path / f"{case.name}.toml"
        path.write_text(case.render(img, meta), encoding="utf-8")
        real = sd_scripts_accepts(strip_collage_keys(toml.load(path)), masked_loss)
        capsys.readouterr()
        code = main(
            ["check", str(path), "--seed", "1", "--console_log_level", "ERROR"]
            + (["--", "--masked_loss"] if masked_loss else [])
        )
        err = capsys.readouterr().err
        ours = code != 2
        verdicts.append(real)
        if real != ours or real != case.expect(flavour, masked_loss):
            disagreements.append(
                f"{case.name}: sd-scripts {'accepts' if real else 'refuses'}, check exit {code}, "
                f"corpus says {case.expect(flavour, masked_loss)}: {err.strip()}"
            )
        if not ours:
            lines = [line for line in err.splitlines() if line.startswith("error:")]
            assert len(lines) == 1 and path.name in lines[0], err
    assert not disagreements, "\n".join(disagreements)
    assert 15 <= sum(verdicts) <= len(CASES) - 15  # both kinds well represented
