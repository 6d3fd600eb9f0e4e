"""Tests for collage_ext.captions.dropout: per-cell caption dropout that keeps trigger tags."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collage_ext.captions.dropout import apply_cell_dropout, drop_cells
from collage_ext.captions.grammar import CaptionGrammar, parse_caption
from collage_ext.captions.merge import merge_captions
from collage_ext.core.errors import CollageConfigError

KTS = CaptionGrammar(keep_tokens_separator="|||")
PROPERTY = settings(derandomize=True, deadline=None, max_examples=200)


@pytest.mark.parametrize(
    ("n", "rate", "expected"),
    [(0, 0.5, ()), (3, 0.0, (False, False, False)), (3, 1.0, (True, True, True)), (2, 1, (True, True))],
    ids=["no-cells", "never", "always", "int-rate"],
)
def test_drop_cells_exact(n: int, rate: float, expected: tuple[bool, ...]) -> None:
    """Rates 0 and 1 are exact; no cells means no decisions."""
    assert drop_cells(n, rate, rng=random.Random(0)) == expected


def test_drop_cells_deterministic() -> None:
    """The same seed gives the same decisions; the rate is honoured on average."""
    first = drop_cells(4000, 0.25, rng=random.Random(7))
    assert first == drop_cells(4000, 0.25, rng=random.Random(7))
    assert 0.22 < sum(first) / len(first) < 0.28


@PROPERTY
@given(n=st.integers(0, 12), rate_a=st.floats(0, 1), rate_b=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_drop_cells_draws_n_numbers(n: int, rate_a: float, rate_b: float, seed: int) -> None:
    """Exactly n draws whatever the rate, so later draws on the stream do not depend on it."""
    rng_a, rng_b = random.Random(seed), random.Random(seed)
    drop_cells(n, rate_a, rng=rng_a)
    drop_cells(n, rate_b, rng=rng_b)
    assert rng_a.getstate() == rng_b.getstate()


@pytest.mark.parametrize(
    ("n", "rate", "error", "match"),
    [
        (2, 1.5, CollageConfigError, r"collage_cell_caption_dropout_rate must be in \[0, 1\], got 1.5"),
        (2, -0.1, CollageConfigError, r"collage_cell_caption_dropout_rate .* got -0.1"),
        (2, True, CollageConfigError, r"collage_cell_caption_dropout_rate .* got True"),
        (-1, 0.5, ValueError, r"n must be an integer >= 0, got -1"),
    ],
    ids=["above-one", "negative", "bool", "negative-n"],
)
def test_drop_cells_rejects(n: int, rate: float, error: type[Exception], match: str) -> None:
    """Out-of-range values raise with the TOML key and the value."""
    with pytest.raises(error, match=match):
        drop_cells(n, rate, rng=random.Random(0))


@pytest.mark.parametrize(
    ("captions", "dropped", "grammar", "expected"),
    [
        (["ohwx ||| 1girl, smile", "1boy"], [True, True], KTS, ["ohwx |||", ""]),
        (["ohwx ||| 1girl ||| best", "a"], [True, False], KTS, ["ohwx ||| ||| best", "a"]),
        (["ohwx, extra, 1girl"], [True], CaptionGrammar(keep_tokens=2), ["ohwx, extra"]),
        (["a, b", "c"], [False, False], KTS, ["a, b", "c"]),
        (["", "c"], [True, True], KTS, ["", ""]),
    ],
    ids=["kts", "kts-suffix", "keep-tokens", "none-dropped", "empty"],
)
def test_apply_cell_dropout(
    captions: list[str], dropped: list[bool], grammar: CaptionGrammar, expected: list[str]
) -> None:
    """A dropped cell keeps only its kept (trigger) tags and suffix; others are untouched."""
    assert apply_cell_dropout(captions, dropped, grammar) == expected


def test_apply_cell_dropout_length_mismatch() -> None:
    """Captions and decisions must pair up."""
    with pytest.raises(ValueError, match=r"same length, got 2 and 1"):
        apply_cell_dropout(["a", "b"], [True], KTS)


@pytest.mark.parametrize("mode", ["concat", "positional", "tags"])
def test_dropout_then_merge_keeps_trigger(mode: str) -> None:
    """After dropping every cell's text the merged caption still has the trigger, and no marker."""
    captions = ["ohwx ||| 1girl, smile", "ohwx ||| 1boy", "zkz ||| cat"]
    kept = apply_cell_dropout(captions, drop_cells(3, 1.0, rng=random.Random(0)), KTS)
    merged = merge_captions(kept, ["L", "C", "R"], mode, KTS)  # type: ignore[arg-type]
    assert merged == "ohwx, zkz |||"
    assert parse_caption(merged, KTS).fixed == ("ohwx", "zkz")
