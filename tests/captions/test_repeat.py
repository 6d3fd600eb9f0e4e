"""Tests for collage_ext.captions.repeat and .tokens: budgets, token counts, phrase repetition."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collage_ext.captions.grammar import CaptionGrammar, ParsedCaption, format_caption, parse_caption, tag_key
from collage_ext.captions.repeat import KEEP_TOKENS, repeat_phrases
from collage_ext.captions.tokens import (
    TokenBudget,
    chunk_token_counts,
    clip_budget,
    estimate_tokens,
    t5_budget,
)
from collage_ext.core.errors import CollageConfigError

PLAIN = CaptionGrammar()
KTS = CaptionGrammar(keep_tokens_separator="|||")
PROPERTY = settings(derandomize=True, deadline=None, max_examples=200)


def words(text: str) -> int:
    """A transparent test tokenizer: one token per whitespace-separated word, commas free."""
    return len(text.replace(",", " ").split())


# --- tokens -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, TokenBudget("clip", 75, 75)),
        (75, TokenBudget("clip", 75, 75)),
        (150, TokenBudget("clip", 150, 75)),
        (225, TokenBudget("clip", 225, 75)),
    ],
    ids=["none", "75", "150", "225"],
)
def test_clip_budget(value: int | None, expected: TokenBudget) -> None:
    """--max_token_length None/75/150/225 map to 1-3 chunks of 75 tokens."""
    assert clip_budget(value) == expected


@pytest.mark.parametrize("value", [100, 0, 300, True, "150"], ids=["100", "0", "300", "bool", "str"])
def test_clip_budget_rejects(value: object) -> None:
    """Other --max_token_length values raise CollageConfigError naming the option and value."""
    with pytest.raises(CollageConfigError, match=r"max_token_length must be None, 75, 150 or 225, got "):
        clip_budget(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1, 1.5, True], ids=["0", "negative", "float", "bool"])
def test_t5_budget_rejects(value: object) -> None:
    """A T5 budget needs a positive integer length."""
    with pytest.raises(CollageConfigError, match=r"t5 max_tokens must be a positive integer, got "):
        t5_budget(value)  # type: ignore[arg-type]


def test_t5_budget() -> None:
    """T5 budgets are one chunk as long as the sequence."""
    assert (t5_budget(), t5_budget(256)) == (TokenBudget("t5", 512, 512), TokenBudget("t5", 256, 256))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("bert", 75, 75), r"kind must be 'clip' or 't5', got 'bert'"),
        (("clip", 0, 75), r"max_tokens .* got 0"),
        (("clip", 100, 75), r"whole chunks, got max_tokens=100, chunk=75"),
        (("t5", 512, 0), r"chunk .* got 0"),
    ],
    ids=["kind", "zero-max", "partial-chunk", "zero-chunk"],
)
def test_token_budget_rejects(args: tuple[str, int, int], match: str) -> None:
    """TokenBudget validates its own fields."""
    with pytest.raises(CollageConfigError, match=match):
        TokenBudget(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("1girl, red dress", 5),
        ("looking_at_viewer", 5),
        ("photograph", 2),
        ("don't", 2),
        ("...", 3),
        ("猫が好き", 4),
        ("2024", 4),
    ],
    ids=["empty", "tags", "underscores", "long-word", "apostrophe", "ellipsis", "cjk", "digits"],
)
def test_estimate_tokens(text: str, expected: int) -> None:
    """The documented estimate: words up to 8 letters, digits, punctuation and non-ASCII chars count 1 each."""
    assert estimate_tokens(text) == expected


@pytest.mark.parametrize(
    ("n_words", "budget", "expected"),
    [
        (0, clip_budget(None), [0]),
        (75, clip_budget(150), [75]),
        (76, clip_budget(150), [75, 1]),
        (160, clip_budget(225), [75, 75, 10]),
        (300, clip_budget(225), [75, 75, 75]),
        (300, t5_budget(256), [256]),
        (10, t5_budget(), [10]),
    ],
    ids=["empty", "one-full-chunk", "spills-one", "three-chunks", "truncated", "t5-truncated", "t5"],
)
def test_chunk_token_counts(n_words: int, budget: TokenBudget, expected: list[int]) -> None:
    """Tokens per CLIP chunk (or the T5 total), cut at the budget."""
    assert chunk_token_counts(" ".join(["w"] * n_words), budget, words) == expected


# --- repeat_phrases: exact ----------------------------------------------------------------------

TWELVE = "ohwx ||| " + ", ".join(f"t{i}" for i in range(12))


@pytest.mark.parametrize(
    ("caption", "phrases", "budget", "grammar", "count", "expected"),
    [
        (
            TWELVE,
            [KEEP_TOKENS],
            TokenBudget("clip", 20, 5),
            KTS,
            2,
            "ohwx ||| t0, t1, t2, ohwx, t3, t4, t5, t6, ohwx, t7, t8, t9, t10, t11",
        ),
        (
            TWELVE,
            [KEEP_TOKENS],
            TokenBudget("clip", 15, 5),
            KTS,
            2,
            "ohwx ||| t0, t1, t2, ohwx, t3, t4, t5, t6, t7, t8, t9, t10, t11",
        ),
        (TWELVE, [KEEP_TOKENS], TokenBudget("clip", 10, 5), KTS, 2, TWELVE),
        (TWELVE, [KEEP_TOKENS], TokenBudget("clip", 20, 5), KTS, 0, TWELVE),
        (
            TWELVE,
            ["t11"],
            TokenBudget("clip", 20, 5),
            KTS,
            1,
            "ohwx ||| t11, t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11",
        ),
        (
            "a, b, c, d, e, f, g, h, i, j, k, red dress",
            ["red dress"],
            TokenBudget("clip", 20, 5),
            PLAIN,
            2,
            "red dress, a, b, c, red dress, d, e, f, g, h, i, j, k, red dress",
        ),
        ("a, b, c, d, e, f, g, h", ["b"], t5_budget(), PLAIN, 2, "a, b, c, b, d, e, b, f, g, h"),
        (
            "A woman in a red dress walks, sunny day, city street, evening light",
            ["RED DRESS"],
            t5_budget(),
            PLAIN,
            1,
            "A woman in a red dress walks, red dress, sunny day, city street, evening light",
        ),
        ("ohwx, a, b, c, d", [KEEP_TOKENS], t5_budget(), CaptionGrammar(keep_tokens=1), 1, "ohwx, a, ohwx, b, c, d"),
        (
            "a, {red|blue} dress, c, d, e, f",
            ["red"],
            t5_budget(),
            CaptionGrammar(enable_wildcard=True),
            1,
            "a, {red|blue} dress, c, d, e, f",
        ),
        (
            "ohwx ||| a, b, c, d ||| best quality",
            ["best quality"],
            t5_budget(),
            KTS,
            1,
            "ohwx ||| a, b, best quality, c, d ||| best quality",
        ),
        (
            "a, b, red_dress, c, d, e, f, g",
            ["red dress", "Red_Dress"],
            t5_budget(),
            PLAIN,
            1,
            "a, b, red_dress, c, red_dress, d, e, f, g",
        ),
        ("a, 11girl, b, c, d, e", ["1girl"], t5_budget(), PLAIN, 1, "a, 11girl, b, c, d, e"),
        ("a, b, c, d", ["zebra"], t5_budget(), PLAIN, 2, "a, b, c, d"),
        ("a, b, c, d", [KEEP_TOKENS], t5_budget(), PLAIN, 2, "a, b, c, d"),
    ],
    ids=[
        "clip-keep-tokens",
        "clip-budget-skips-second",
        "clip-over-budget-unchanged",
        "count-zero",
        "clip-first-chunk-copy",
        "clip-first-chunk-then-later",
        "t5-thirds",
        "t5-natural-language",
        "t5-keep-tokens",
        "wildcard-alternative-not-repeated",
        "suffix-phrase-into-flex",
        "same-phrase-once",
        "word-boundary",
        "absent-phrase",
        "no-kept-tags",
    ],
)
def test_repeat_exact(
    caption: str, phrases: list[str], budget: TokenBudget, grammar: CaptionGrammar, count: int, expected: str
) -> None:
    """Copies land at hand-computed tag boundaries (word-count tokenizer)."""
    assert repeat_phrases(caption, phrases, budget, words, grammar, count=count) == expected


def test_repeat_real_clip_budget() -> None:
    """With a 225-token CLIP budget a chunk-2 phrase is copied into chunk 1 and to the start of chunk 3."""
    tags = [f"tag{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(90)]
    caption = "ohwx ||| " + ", ".join([*tags[:45], "red dress", *tags[45:]])
    out = repeat_phrases(caption, ["red dress", KEEP_TOKENS], clip_budget(225), estimate_tokens, KTS)
    starts = [estimate_tokens(out[:i]) for i in range(len(out)) if out.startswith("red dress", i)]
    assert len(starts) == 3
    assert starts[0] + estimate_tokens("red dress") <= 75
    assert 75 <= starts[1] < 150
    assert 150 <= starts[2] < 155
    assert estimate_tokens(out) <= 225
    assert parse_caption(out, KTS).fixed == ("ohwx",)


@pytest.mark.parametrize(
    ("phrases", "count", "match"),
    [
        ("red dress", 2, r"collage_repeat_phrases must be a list of strings, got 'red dress'; e\.g\. "),
        (3, 2, r"collage_repeat_phrases must be a list of strings, got 3"),
        (["a", 3], 2, r"collage_repeat_phrases\[1\] must be a non-empty string, got 3"),
        ([" "], 2, r"collage_repeat_phrases\[0\] must be a non-empty string, got ' '"),
        (["a"], -1, r"collage_repeat_count must be an integer >= 0, got -1"),
    ],
    ids=["bare-string", "int", "non-string-item", "blank-item", "negative-count"],
)
def test_repeat_rejects(phrases: object, count: int, match: str) -> None:
    """Bad phrase lists and counts raise CollageConfigError with the TOML key and an example."""
    with pytest.raises(CollageConfigError, match=match):
        repeat_phrases("a, b", phrases, t5_budget(), words, PLAIN, count=count)  # type: ignore[arg-type]


# --- repeat_phrases: invariants -----------------------------------------------------------------

TAG = st.text(alphabet="abcde _", min_size=1, max_size=7).map(str.strip).filter(bool)
BUDGETS = st.sampled_from(
    [clip_budget(None), clip_budget(150), TokenBudget("clip", 30, 10), t5_budget(40), t5_budget()]
)


@PROPERTY
@given(
    fixed=st.lists(TAG, max_size=2),
    flex=st.lists(TAG, max_size=40),
    suffix=st.lists(TAG, max_size=2),
    extra=st.lists(TAG, max_size=2),
    budget=BUDGETS,
    count=st.integers(0, 3),
)
def test_repeat_invariants(
    fixed: list[str], flex: list[str], suffix: list[str], extra: list[str], budget: TokenBudget, count: int
) -> None:
    """Within budget, grammar kept, original tags kept in order, only phrase copies added, deterministic."""
    caption = format_caption(ParsedCaption(tuple(fixed), tuple(flex), tuple(suffix)), KTS)
    phrases = [KEEP_TOKENS, *flex[:2], *extra]
    out = repeat_phrases(caption, phrases, budget, estimate_tokens, KTS, count=count)
    assert out == repeat_phrases(caption, phrases, budget, estimate_tokens, KTS, count=count)
    if estimate_tokens(caption) > budget.max_tokens or count == 0:
        assert out == caption
        return
    assert estimate_tokens(out) <= budget.max_tokens
    before, after = parse_caption(caption, KTS), parse_caption(out, KTS)
    assert (after.fixed, after.suffix) == (before.fixed, before.suffix)
    remaining = iter(after.flex)
    assert all(any(tag == t for t in remaining) for tag in before.flex)  # original flex is a subsequence
    known = {tag_key(t) for t in before.tags}
    assert all(tag_key(t) in known or any(tag_key(t) in tag_key(k) for k in before.tags) for t in after.flex)
    units = len(before.fixed) + len(phrases) - 1
    assert len(after.flex) - len(before.flex) <= count * units
