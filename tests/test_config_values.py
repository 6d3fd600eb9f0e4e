"""Every option of the option table against hostile values: NaN, +-inf, booleans, strings, lists, out of range.

The tests iterate ``OPTIONS``, so an option added to the table is covered without touching this file.
The rule (same as sd-scripts' voluptuous dataset schema): numbers are TOML numbers, never quoted
strings or booleans, and always finite; an accepted value converts to something a later
``resolve_config`` of its metadata gives back unchanged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import toml
from hypothesis import given, settings
from hypothesis import strategies as st

from collage_ext.cli import main
from collage_ext.core.config import OPTIONS, CollageConfig, NumberRule, Option, resolve_config
from collage_ext.core.errors import CollageConfigError
from collage_ext.kohya.runargs import scan_options

GEN = "data['general']"
NUMERIC = [o for o in OPTIONS if isinstance(o.convert, NumberRule)]
NON_FINITE = [math.nan, math.inf, -math.inf]


def _finite(value: Any) -> bool:
    """True when no float inside ``value`` is NaN or infinite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def _outcome(option: Option, value: object) -> CollageConfig | CollageConfigError:
    try:
        return resolve_config([({option.name: value}, GEN)])
    except CollageConfigError as exc:
        return exc


hostile = st.one_of(
    st.sampled_from(
        [
            math.nan,
            -math.nan,
            math.inf,
            -math.inf,
            True,
            False,
            None,
            "",
            " ",
            "nan",
            "inf",
            "-inf",
            "1",
            "0.5",
            "1e400",
            "true",
            [],
            {},
            [math.nan],
            [math.inf, 1],
            ["1", "2"],
            [True, 0, 0],
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.text(max_size=12),
    st.lists(st.one_of(st.floats(), st.integers(-300, 300), st.text(max_size=4), st.booleans()), max_size=4),
)


@pytest.mark.parametrize("option", OPTIONS, ids=[o.name for o in OPTIONS])
@settings(max_examples=150, deadline=None)
@given(value=hostile)
def test_every_option_accepts_only_sane_values(option: Option, value: object) -> None:
    """A refused value names key, value and location; an accepted one is finite and round-trips."""
    result = _outcome(option, value)
    if isinstance(result, CollageConfigError):
        text = str(result)
        if f"@ {GEN}['{option.name}']" not in text:  # fine alone, refused with another option (min > max, layouts)
            assert option.name in text and repr(value) in text and f"@ {GEN}" in text
            return
        assert text.startswith(option.name + " ") and f"@ {GEN}['{option.name}']" in text
        assert f"got {value!r}" in text
        return
    field = getattr(result, option.field)
    assert _finite(field), f"{option.name} accepted {value!r} as {field!r}"
    if option.kind != "bool":
        assert not isinstance(field, bool)
    if isinstance(option.convert, NumberRule):
        rule = option.convert
        assert isinstance(value, (int, float)) and not isinstance(value, bool)  # never a string or bool
        assert rule.lo <= field and (rule.hi is None or field <= rule.hi)
        assert isinstance(field, int) if rule.integer else isinstance(field, float)
    metadata = result.to_metadata()
    json.dumps(metadata, allow_nan=False)  # LoRA metadata and manifests must stay strict JSON
    assert getattr(resolve_config([(metadata, "meta")]), option.field) == field


@pytest.mark.parametrize("option", NUMERIC, ids=[o.name for o in NUMERIC])
def test_numeric_options_refuse_the_named_cases(option: Option) -> None:
    """NaN, +-inf, booleans, quoted numbers, lists and both sides of the range: each one refused."""
    rule = option.convert
    assert isinstance(rule, NumberRule)
    step = 1 if rule.integer else 1e-9
    cases: list[object] = [*NON_FINITE, True, False, str(rule.lo), "1", [rule.lo], rule.lo - step]
    if rule.hi is not None:
        cases.append(rule.hi + step)
    if rule.integer:
        cases.append(float(rule.lo))  # sd-scripts' int schema refuses 2.0 too
    for value in cases:
        with pytest.raises(CollageConfigError, match=rf"^{option.name} must be .*, got "):
            resolve_config([({option.name: value}, GEN)])
    assert getattr(resolve_config([({option.name: rule.lo}, GEN)]), option.field) == rule.lo


def test_non_finite_messages_say_what_to_write() -> None:
    """The message says why nan is refused and how to write the value."""
    with pytest.raises(
        CollageConfigError,
        match=r"collage_pad_weight must be a number in \[0, 1\] \(a finite number, "
        r"not nan or inf\), got nan; e\.g\. collage_pad_weight = 0\.1",
    ):
        resolve_config([({"collage_pad_weight": math.nan}, GEN)])
    with pytest.raises(CollageConfigError, match=r"\(a TOML number, not a quoted string\), got '0\.5'"):
        resolve_config([({"collage_rate": "0.5"}, GEN)])


def test_command_line_numbers_arrive_as_numbers() -> None:
    """``-- --collage_rate 0.5`` is converted by the argument scanner, like argparse's type=float."""
    values = scan_options(["--collage_rate", "0.5", "--collage_max_images=3", "--collage_layouts", "1x2, 2x1"])
    cfg = resolve_config([(values, "--collage_*")])
    assert (cfg.rate, cfg.max_images, cfg.layouts) == (0.5, 3, ("1x2", "2x1"))
    with pytest.raises(CollageConfigError, match="collage_rate .*got nan"):
        resolve_config([(scan_options(["--collage_rate", "nan"]), "--collage_*")])


@pytest.mark.parametrize("option", NUMERIC, ids=[o.name for o in NUMERIC])
@pytest.mark.parametrize("literal", ["nan", "inf", "-inf", '"1"'])
def test_check_refuses_what_training_refuses(
    tmp_path: Path, option: Option, literal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``collage-ext check`` stops on the same TOML values, with the same message as the loader.

    (tests/sdscripts/test_runtime_faults.py feeds the same TOML to the real sd-scripts loader.)
    """
    folder = tmp_path / "img"
    folder.mkdir()
    config = tmp_path / "dataset.toml"
    config.write_text(
        f"[general]\n{option.name} = {literal}\n[[datasets]]\nresolution = 256\n"
        f'  [[datasets.subsets]]\n  image_dir = "{folder.as_posix()}"\n',
        encoding="utf-8",
    )
    value = toml.load(config)["general"][option.name]
    expected = str(_outcome(option, value))
    assert expected.startswith(option.name)
    code = main(["check", str(config), "--json"])
    captured = capsys.readouterr()
    assert code == 2 and expected in captured.out + captured.err
