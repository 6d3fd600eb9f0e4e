"""The option table: cascade, conversion, and error messages a user can act on."""

from __future__ import annotations

import pytest

from collage_ext.core.config import (
    OPTIONS,
    CollageConfig,
    config_fields,
    parse_color,
    resolve_config,
)
from collage_ext.core.errors import CollageConfigError
from collage_ext.core.types import Size

GEN = "data['general']"
SUB = "data['datasets'][0]['subsets'][1]"


def test_table_matches_dataclass() -> None:
    """Every option maps to exactly one CollageConfig field and defaults agree."""
    assert sorted(o.field for o in OPTIONS) == sorted(config_fields())
    defaults = CollageConfig()
    for option in OPTIONS:
        assert option.convert(option.default) == getattr(defaults, option.field) or option.default is None


def test_cascade_most_specific_wins() -> None:
    """subset beats dataset beats general; unset keys fall through to defaults."""
    cfg = resolve_config([({"collage_rate": 0.25}, SUB), ({"collage_rate": 0.5, "collage_gutter": 4}, GEN)])
    assert cfg.rate == 0.25 and cfg.gutter == 4 and cfg.fit_mode == "contain"


def test_non_collage_keys_ignored() -> None:
    """Kohya's own keys pass through untouched."""
    assert resolve_config([({"num_repeats": 3, "image_dir": "x"}, SUB)]) == CollageConfig()


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        (
            "collage_rate",
            1.5,
            r"collage_rate must be a number in \[0, 1\], got 1.5; e.g. collage_rate = 0.5 @ "
            r"data\['general'\]\['collage_rate'\]",
        ),
        ("collage_rate", "lots", r"collage_rate .* got 'lots'"),
        ("collage_rate", True, r"collage_rate .* got True"),
        ("collage_fit_mode", "fill", r"collage_fit_mode must be one of 'contain', 'cover', got 'fill'"),
        ("collage_fill", "#18181", r"collage_fill must be a colour .* got '#18181'"),
        ("collage_max_images", 2.5, r"collage_max_images must be an integer"),
        ("collage_layouts", ["3x9"], r"collage_layouts must contain 'auto' or layout names"),
        ("collage_layouts", "", r"collage_layouts must name at least one layout"),
        ("collage_frame_size", "1024", r"collage_frame_size must be a size"),
        ("collage_repeat_phrases", [1], r"collage_repeat_phrases must be a list of non-empty strings"),
        ("collage_crop_extension", "crop", r"collage_crop_extension must be a file extension"),
    ],
    ids=[
        "rate-range",
        "rate-text",
        "rate-bool",
        "fit",
        "fill",
        "int",
        "layout",
        "no-layout",
        "frame",
        "phrases",
        "ext",
    ],
)
def test_bad_values_name_key_value_fix(key: str, value: object, pattern: str) -> None:
    """Each bad value raises with key, constraint, value and location."""
    with pytest.raises(CollageConfigError, match=pattern):
        resolve_config([({key: value}, GEN)])


def test_unknown_key_did_you_mean() -> None:
    """A typo gets the closest real option and the location."""
    with pytest.raises(
        CollageConfigError,
        match=r"unknown collage option 'collage_rat'; did you mean 'collage_rate'"
        r"\? @ data\['datasets'\]\[0\]\['subsets'\]\[1\]",
    ):
        resolve_config([({"collage_rat": 0.5}, SUB)])


def test_min_above_max_rejected() -> None:
    """A cross-field conflict is reported with both values."""
    with pytest.raises(CollageConfigError, match=r"collage_min_images must be <= collage_max_images, got 4 > 3"):
        resolve_config([({"collage_min_images": 4, "collage_max_images": 3}, GEN)])


def test_no_layout_for_population() -> None:
    """Allowed layouts must hold min..max images."""
    with pytest.raises(CollageConfigError, match=r"collage_layouts has no layout with 2..2 images"):
        resolve_config([({"collage_rate": 1, "collage_layouts": ["2x2"], "collage_max_images": 2}, GEN)])


@pytest.mark.parametrize(
    ("text", "rgb"),
    [("#181818", (24, 24, 24)), ("#fff", (255, 255, 255)), ("1, 2, 3", (1, 2, 3)), ([9, 8, 7], (9, 8, 7))],
)
def test_parse_color(text: object, rgb: tuple[int, int, int]) -> None:
    """All documented colour spellings parse."""
    assert parse_color(text) == rgb


def test_strings_from_command_line_convert() -> None:
    """String-typed options take CLI-style strings; numbers come converted from the argument scanner."""
    cfg = resolve_config([({"collage_frame_size": "768,1024", "collage_layouts": "1x2, 2x1"}, "--collage_*")])
    assert (cfg.frame_size, cfg.layouts) == (Size(768, 1024), ("1x2", "2x1"))


def test_metadata_round_trip() -> None:
    """to_metadata gives TOML names that resolve back to the same config."""
    cfg = resolve_config([({"collage_rate": 1, "collage_fill": "#102030", "collage_layouts": ["1x2"]}, GEN)])
    assert resolve_config([(cfg.to_metadata(), "meta")]) == cfg


def test_truncated_key_suggests_full_option() -> None:
    """'collage_fit' is a truncated 'collage_fit_mode', not a typo of 'collage_fill'."""
    with pytest.raises(CollageConfigError, match="did you mean 'collage_fit_mode'"):
        resolve_config([({"collage_fit": "cover"}, GEN)])


def test_split_dataset_config_strips_and_cascades() -> None:
    """collage_* keys leave the kohya TOML; values cascade; reg subsets default to single images."""
    from collage_ext.core.config import split_dataset_config

    data = {
        "general": {"collage_rate": 0.5, "shuffle_caption": True},
        "datasets": [
            {
                "resolution": 1024,
                "collage_fit_mode": "cover",
                "subsets": [
                    {"image_dir": "a", "collage_gutter": 4},
                    {"image_dir": "r", "is_reg": True},
                    {"image_dir": "s", "is_reg": True, "collage_rate": 1.0},
                ],
            }
        ],
    }
    tree = split_dataset_config(data, defaults={"collage_max_images": 2, "learning_rate": 1e-4})
    assert tree.kohya == {
        "general": {"shuffle_caption": True},
        "datasets": [
            {
                "resolution": 1024,
                "subsets": [{"image_dir": "a"}, {"image_dir": "r", "is_reg": True}, {"image_dir": "s", "is_reg": True}],
            }
        ],
    }
    a, reg, reg_on = tree.subsets[0]
    assert (a.rate, a.fit_mode, a.gutter, a.max_images) == (0.5, "cover", 4, 2)
    assert reg.rate == 0.0 and reg_on.rate == 1.0


def test_split_dataset_config_inline_tables_become_plain() -> None:
    """TOML inline tables (unpicklable in toml 0.10) come back as plain dicts."""
    import pickle

    import toml

    from collage_ext.core.config import split_dataset_config

    data = toml.loads('[[datasets]]\n[[datasets.subsets]]\nimage_dir = "a"\ncustom_attributes = {x = 1}\n')
    tree = split_dataset_config(data)
    pickle.dumps(tree.kohya)
    assert type(tree.kohya["datasets"][0]["subsets"][0]["custom_attributes"]) is dict
