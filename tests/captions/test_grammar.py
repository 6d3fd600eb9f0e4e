"""Tests for collage_ext.captions.grammar: sd-scripts caption grammar, parse/format round trip."""

from __future__ import annotations

import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from collage_ext.captions.grammar import (
    CaptionGrammar,
    ParsedCaption,
    find_wildcards,
    format_caption,
    parse_caption,
    select_line,
    split_tags,
    tag_key,
)
from collage_ext.core.errors import CollageConfigError
from tests.common import sd_split

KTS = CaptionGrammar(keep_tokens_separator="|||")
KEEP1_KTS = CaptionGrammar(keep_tokens=1, keep_tokens_separator="|||")
KEEP2_KTS = CaptionGrammar(keep_tokens=2, keep_tokens_separator="|||")
PROPERTY = settings(derandomize=True, deadline=None, max_examples=200)


# --- CaptionGrammar -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"caption_separator": ""}, r"caption_separator must be a non-blank string, got ''"),
        ({"caption_separator": " "}, r"caption_separator must be a non-blank string, got ' '"),
        ({"keep_tokens": -1}, r"keep_tokens must be an integer >= 0, got -1"),
        ({"keep_tokens": True}, r"keep_tokens must be an integer >= 0, got True"),
        ({"keep_tokens_separator": None}, r"keep_tokens_separator must be a string .*, got None"),
        ({"secondary_separator": 3}, r"secondary_separator must be a string .*, got 3"),
    ],
    ids=["empty-sep", "blank-sep", "negative-keep", "bool-keep", "none-kts", "int-secondary"],
)
def test_grammar_rejects_bad_values(kwargs: dict[str, object], match: str) -> None:
    """Invalid grammar values raise CollageConfigError naming the sd-scripts key and the value."""
    with pytest.raises(CollageConfigError, match=match):
        CaptionGrammar(**kwargs)  # type: ignore[arg-type]


# --- split_tags / find_wildcards ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "separator", "expected"),
    [
        ("a, b,c", ",", ["a", "b", "c"]),
        (" a ,, , b ,", ",", ["a", "b"]),
        ("", ",", []),
        ("{red|blue, green} dress, smile", ",", ["{red|blue, green} dress", "smile"]),
        ("{{a, b}}, c", ",", ["{{a", "b}}", "c"]),
        ("{{x}} {a, b}", ",", ["{{x}} {a, b}"]),
        ("a{b, c", ",", ["a{b", "c"]),
        ("x}, {y", ",", ["x}", "{y"]),
        ("sky;;;cloud, day", ",", ["sky;;;cloud", "day"]),
        ("a / b / c", " / ", ["a", "b", "c"]),
        ("a;b", ";", ["a", "b"]),
    ],
    ids=[
        "plain",
        "empties",
        "empty",
        "wildcard",
        "escaped",
        "escape-then-group",
        "unclosed",
        "reversed",
        "secondary",
        "multichar",
        "semicolon",
    ],
)
def test_split_tags(text: str, separator: str, expected: list[str]) -> None:
    """Tags split on the separator only outside wildcard groups, stripped, empties dropped."""
    assert split_tags(text, separator) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{a|b}", [(0, 5)]),
        ("x {a|b} {c}", [(2, 7), (8, 11)]),
        ("{{a|b}}", []),
        ("{}", []),
        ("{a{b}", [(0, 5)]),
    ],
    ids=["one", "two", "escaped", "empty-group", "nested-open"],
)
def test_find_wildcards(text: str, expected: list[tuple[int, int]]) -> None:
    """Wildcard spans follow sd-scripts' regex after hiding {{ and }} escapes."""
    assert find_wildcards(text) == expected


# --- parse_caption ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "grammar", "expected"),
    [
        ("a, b, c", CaptionGrammar(), ParsedCaption((), ("a", "b", "c"), ())),
        ("a, b, c", CaptionGrammar(keep_tokens=2), ParsedCaption(("a", "b"), ("c",), ())),
        ("a, b", CaptionGrammar(keep_tokens=5), ParsedCaption(("a", "b"), (), ())),
        ("a, b ||| c, d", KTS, ParsedCaption(("a", "b"), ("c", "d"), ())),
        ("a ||| b ||| c, d", KTS, ParsedCaption(("a",), ("b",), ("c", "d"))),
        ("a ||| b ||| c ||| d", KTS, ParsedCaption(("a",), ("b",), ("c ||| d",))),
        ("||| b, c", KTS, ParsedCaption((), ("b", "c"), ())),
        ("a |||", KTS, ParsedCaption(("a",), (), ())),
        ("a|||b", KTS, ParsedCaption(("a",), ("b",), ())),
        ("a, b, c", KEEP1_KTS, ParsedCaption(("a",), ("b", "c"), ())),
        ("a ||| b, c", KEEP2_KTS, ParsedCaption(("a",), ("b", "c"), ())),
        ("{x|y, z}, w", CaptionGrammar(keep_tokens=1), ParsedCaption(("{x|y, z}",), ("w",), ())),
        ("", KTS, ParsedCaption()),
    ],
    ids=[
        "plain",
        "keep-2",
        "keep-more-than-tags",
        "kts",
        "kts-suffix",
        "kts-third-stays",
        "kts-empty-fixed",
        "kts-empty-flex",
        "kts-no-spaces",
        "kts-absent-uses-keep",
        "kts-overrides-keep",
        "wildcard-one-tag",
        "empty",
    ],
)
def test_parse_caption(text: str, grammar: CaptionGrammar, expected: ParsedCaption) -> None:
    """parse_caption splits exactly as process_caption's keep_tokens(_separator) code does."""
    assert parse_caption(text, grammar) == expected


TAG = st.text(alphabet="abXY z_-0", min_size=1, max_size=6).map(str.strip).filter(bool)
GRAMMARS = st.builds(
    CaptionGrammar,
    keep_tokens=st.integers(0, 3),
    keep_tokens_separator=st.sampled_from(["", "|||"]),
)


@PROPERTY
@given(
    fixed=st.lists(TAG, max_size=3),
    flex=st.lists(TAG, max_size=4),
    suffix=st.lists(TAG, max_size=3),
    grammar=GRAMMARS,
)
def test_parse_matches_sd_scripts(
    fixed: list[str], flex: list[str], suffix: list[str], grammar: CaptionGrammar
) -> None:
    """On captions without empty tags or braces, parse_caption equals sd-scripts' own split."""
    kts = grammar.keep_tokens_separator or "|||"
    text = f"{', '.join(fixed)} {kts} {', '.join(flex)} {kts} {', '.join(suffix)}" if suffix else ", ".join(flex)
    expected = sd_split(text, grammar)
    assume(text.strip() and "" not in expected[0] + expected[1])  # sd-scripts keeps empty tags there
    ours = parse_caption(text, grammar)
    assert (list(ours.fixed), list(ours.flex), list(ours.suffix)) == expected


# --- format_caption -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parsed", "grammar", "expected"),
    [
        (ParsedCaption((), ("a", "b"), ()), CaptionGrammar(), "a, b"),
        (ParsedCaption(("t",), ("a", "b"), ()), CaptionGrammar(keep_tokens=1), "t, a, b"),
        (ParsedCaption(("t",), ("a",), ()), KTS, "t ||| a"),
        (ParsedCaption(("t",), (), ()), KTS, "t |||"),
        (ParsedCaption(("t",), ("a",), ("s",)), KTS, "t ||| a ||| s"),
        (ParsedCaption((), ("a",), ("s",)), KTS, "||| a ||| s"),
        (ParsedCaption(("t",), (), ("s",)), KTS, "t ||| ||| s"),
        (ParsedCaption((), ("a", "b"), ()), KTS, "a, b"),
        (ParsedCaption((), ("a", "b"), ()), KEEP1_KTS, "||| a, b"),
        (ParsedCaption(), KTS, ""),
        (ParsedCaption((), ("a", "b"), ()), CaptionGrammar(caption_separator=";"), "a; b"),
        (ParsedCaption((), ("{x|y, z}", "w;;;v"), ()), CaptionGrammar(), "{x|y, z}, w;;;v"),
    ],
    ids=[
        "plain",
        "keep-tokens",
        "kts",
        "kts-no-flex",
        "kts-suffix",
        "kts-no-fixed-suffix",
        "kts-empty-flex",
        "kts-flex-only",
        "kts-flex-only-keep",
        "empty",
        "semicolon",
        "wildcard-secondary",
    ],
)
def test_format_caption(parsed: ParsedCaption, grammar: CaptionGrammar, expected: str) -> None:
    """format_caption writes the grammar process_caption expects, with spaces around |||."""
    assert format_caption(parsed, grammar) == expected


WILDCARD_TAG = st.builds(lambda a, b, c: f"{{{a}|{b}, {c}}} x", TAG, TAG, TAG)
ANY_TAG = st.one_of(TAG, WILDCARD_TAG, st.builds(lambda a, b: f"{a};;;{b}", TAG, TAG))


@st.composite
def canonical_captions(draw: st.DrawFn) -> tuple[ParsedCaption, CaptionGrammar]:
    """A ParsedCaption that parse_caption can produce under the drawn grammar."""
    grammar = draw(GRAMMARS)
    fixed, flex, suffix = (tuple(draw(st.lists(ANY_TAG, max_size=4))) for _ in range(3))
    if not grammar.keep_tokens_separator:
        # Without a separator the fixed part is exactly the first keep_tokens tags.
        tags = fixed + flex + suffix
        fixed, flex, suffix = tags[: grammar.keep_tokens], tags[grammar.keep_tokens :], ()
    return ParsedCaption(fixed, flex, suffix), grammar


@PROPERTY
@given(case=canonical_captions())
def test_round_trip(case: tuple[ParsedCaption, CaptionGrammar]) -> None:
    """parse(format(x)) == x for every caption the grammar can express."""
    parsed, grammar = case
    assert parse_caption(format_caption(parsed, grammar), grammar) == parsed


@PROPERTY
@given(text=st.text(alphabet="ab ,{}|;_", max_size=30), grammar=GRAMMARS)
def test_parse_format_idempotent(text: str, grammar: CaptionGrammar) -> None:
    """Any text (braces, stray separators) re-parses to the same tags after one format."""
    parsed = parse_caption(text, grammar)
    formatted = format_caption(parsed, grammar)
    assert parse_caption(formatted, grammar) == parsed
    outside = "".join(c for i, c in enumerate(formatted) if not any(s <= i < e for s, e in find_wildcards(formatted)))
    assert ",," not in outside.replace(" ", "")


# --- tag_key / select_line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [("Red_Dress", "red dress", True), ("  red   dress ", "red dress", True), ("red dress", "red-dress", False)],
    ids=["case-underscore", "whitespace", "hyphen-differs"],
)
def test_tag_key(a: str, b: str, same: bool) -> None:
    """tag_key ignores case, _ vs space and whitespace runs, nothing else."""
    assert (tag_key(a) == tag_key(b)) is same


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a, b", "a, b"),
        ("\ufeffa, b\n", "a, b"),
        ("first\r\nsecond", "first"),
        ("  first  \nsecond", "first"),
        ("\nsecond", ""),
        ("", ""),
    ],
    ids=["one-line", "bom", "crlf", "stripped", "blank-first-line", "empty"],
)
def test_select_line_first(text: str, expected: str) -> None:
    """Without wildcards the first line is used, as sd-scripts' read_caption does."""
    assert select_line(text, CaptionGrammar(), rng=random.Random(0)) == expected


def test_select_line_wildcard_uses_rng() -> None:
    """With enable_wildcard a non-blank line is drawn from the given rng, reproducibly."""
    grammar = CaptionGrammar(enable_wildcard=True)
    text = "\ufeffone\n\ntwo\r\nthree\n"
    picks = [select_line(text, grammar, rng=random.Random(seed)) for seed in range(30)]
    assert set(picks) == {"one", "two", "three"}
    assert picks == [select_line(text, grammar, rng=random.Random(seed)) for seed in range(30)]
    assert select_line("  \n only \n", grammar, rng=random.Random(0)) == "only"
