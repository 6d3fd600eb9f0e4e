"""Tests for collage_ext.captions.merge: exact merges per mode, grammar invariants, sd-scripts compatibility."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collage_ext.captions.grammar import CaptionGrammar, ParsedCaption, format_caption, parse_caption, tag_key
from collage_ext.captions.merge import MERGE_MODES, MergeMode, merge_captions
from collage_ext.core.errors import CollageConfigError
from tests.common import sd_split

PLAIN = CaptionGrammar()
KTS = CaptionGrammar(keep_tokens_separator="|||")
KTS_SEC = CaptionGrammar(keep_tokens_separator="|||", secondary_separator=";;;")
KEEP1 = CaptionGrammar(keep_tokens=1)
LR = ["LEFT", "RIGHT"]
PROPERTY = settings(derandomize=True, deadline=None, max_examples=200)
ROOT = Path(__file__).resolve().parents[2]


def sd_process(caption: str, grammar: CaptionGrammar, rng: random.Random) -> str:
    """Re-statement of process_caption with shuffle_caption on (sd-scripts train_util.py 872-929)."""
    sep = grammar.caption_separator
    fixed, flex, suffix = sd_split(caption, grammar)
    rng.shuffle(flex)
    caption = ", ".join(fixed + flex + suffix)
    if grammar.secondary_separator:
        caption = caption.replace(grammar.secondary_separator, sep)
    return caption


@pytest.mark.parametrize(
    ("captions", "names", "mode", "grammar", "expected"),
    [
        (["ohwx ||| 1girl, red dress", "ohwx ||| 1boy"], LR, "concat", KTS, "ohwx ||| 1girl, red dress, 1boy"),
        (["a ||| x ||| q", "b ||| y ||| q, r"], LR, "concat", KTS, "a, b ||| x, y ||| q, r"),
        (["ohwx, 1girl", "OHWX, 1boy"], LR, "concat", KEEP1, "ohwx, 1girl, 1boy"),
        (["a, b", "", "c"], ["L", "C", "R"], "concat", PLAIN, "a, b, c"),
        (["", ""], LR, "concat", KTS, ""),
        (["a, b", "a, c"], LR, "concat", PLAIN, "a, b, a, c"),
        (
            ["A woman in a red dress.", "A man in a suit."],
            LR,
            "concat",
            PLAIN,
            "A woman in a red dress. A man in a suit.",
        ),
        (['She says "hi."', "He waves!"], LR, "concat", PLAIN, 'She says "hi." He waves!'),
        (["ohwx, A woman.", "ohwx, A man."], LR, "concat", KEEP1, "ohwx, A woman. A man."),
        (["1girl, !?", "1boy"], LR, "concat", PLAIN, "1girl, !?, 1boy"),
        (["{red|blue, green} dress, {{x}}", "a"], LR, "concat", PLAIN, "{red|blue, green} dress, {{x}}, a"),
        (
            ["ohwx ||| 1girl, red dress", "ohwx ||| 1boy"],
            LR,
            "positional",
            KTS,
            "ohwx ||| [LEFT] 1girl, red dress, [RIGHT] 1boy",
        ),
        (
            ["ohwx ||| 1girl, red dress", "ohwx ||| 1boy"],
            LR,
            "positional",
            KTS_SEC,
            "ohwx ||| [LEFT] 1girl;;; red dress, [RIGHT] 1boy",
        ),
        (["a", "", "c"], ["L", "C", "R"], "positional", PLAIN, "[L] a, [R] c"),
        (["ohwx |||", "ohwx ||| b"], LR, "positional", KTS, "ohwx ||| [RIGHT] b"),
        (["A woman.", "A man."], LR, "positional", PLAIN, "[LEFT] A woman. [RIGHT] A man."),
        (["a", "b"], ["", "RIGHT"], "positional", PLAIN, "a, [RIGHT] b"),
        (["{a|b} x, y", "z"], ["TOP-LEFT", "BOTTOM"], "positional", PLAIN, "[TOP-LEFT] {a|b} x, y, [BOTTOM] z"),
        (["1girl, Red_Dress, smile", "red dress, 1boy, smile"], LR, "tags", PLAIN, "1girl, Red_Dress, smile, 1boy"),
        (["ohwx ||| 1girl, a", "1girl ||| ohwx, b"], LR, "tags", KTS, "ohwx, 1girl ||| a, b"),
        (["a ||| x ||| best", "b ||| best, x ||| Best"], LR, "tags", KTS, "a, b ||| x ||| best"),
        (["A woman.", "A man."], LR, "tags", PLAIN, "A woman. A man."),
        (["sky;;;cloud, a", "sky;;;cloud, b"], LR, "tags", KTS_SEC, "sky;;;cloud, a, b"),
    ],
    ids=[
        "concat-shared-trigger",
        "concat-suffix",
        "concat-keep-tokens",
        "concat-dropped-cell",
        "concat-all-empty",
        "concat-keeps-duplicates",
        "concat-sentences",
        "concat-quoted-sentence",
        "concat-trigger-sentences",
        "concat-booru-interrobang",
        "concat-wildcards",
        "positional",
        "positional-secondary",
        "positional-dropped-cell",
        "positional-fixed-only-cell",
        "positional-sentences",
        "positional-no-name",
        "positional-wildcard",
        "tags-normalised-dedup",
        "tags-fixed-first",
        "tags-suffix",
        "tags-sentences",
        "tags-secondary-group",
    ],
)
def test_merge_exact(
    captions: list[str], names: list[str], mode: MergeMode, grammar: CaptionGrammar, expected: str
) -> None:
    """Each mode merges hand-checked captions to the exact expected text."""
    assert merge_captions(captions, names, mode, grammar) == expected


@pytest.mark.parametrize(
    ("captions", "names", "mode", "error", "match"),
    [
        (["a"], ["L"], "union", CollageConfigError, r"collage_caption_merge must be one of .*, got 'union'"),
        (["a", "b"], ["L"], "concat", ValueError, r"same length, got 2 captions and 1 names"),
        (["a", None], ["L", "R"], "concat", TypeError, r"captions\[1\] and names\[1\] must be strings"),
        ("ab", "LR", "concat", TypeError, r"not a single string"),
    ],
    ids=["unknown-mode", "length-mismatch", "non-string", "bare-string"],
)
def test_merge_errors(captions: object, names: object, mode: str, error: type[Exception], match: str) -> None:
    """Bad arguments raise with a message that names the problem and the value."""
    with pytest.raises(error, match=match):
        merge_captions(captions, names, mode, PLAIN)  # type: ignore[arg-type]


# --- invariants ---------------------------------------------------------------------------------

TAG = st.text(alphabet="abcXY z_-0", min_size=1, max_size=6).map(str.strip).filter(bool)
WILDCARD = st.builds(lambda a, b: f"{{{a}|{b}}} x", TAG, TAG)
ANY_TAG = st.one_of(TAG, TAG, WILDCARD)
CELL = st.tuples(st.lists(ANY_TAG, max_size=2), st.lists(ANY_TAG, max_size=4), st.lists(ANY_TAG, max_size=2))
CELLS = st.lists(st.one_of(CELL, st.just(([], [], []))), min_size=1, max_size=4)


def _dedup(tags: list[str], exclude: list[str] = []) -> list[str]:  # noqa: B006 (read-only default)
    """Reference dedup: a plain list scan, first spelling wins."""
    out: list[str] = []
    for tag in tags:
        if tag_key(tag) not in [tag_key(t) for t in out + exclude]:
            out.append(tag)
    return out


def _write(cells: list[tuple[list[str], list[str], list[str]]], grammar: CaptionGrammar) -> list[str]:
    return [format_caption(ParsedCaption(tuple(f), tuple(x), tuple(s)), grammar) for f, x, s in cells]


def _no_doubled_separator(text: str) -> bool:
    return not re.search(r",\s*,|^\s*,|,\s*$|,\s*\|\|\||\|\|\|\s*,", text)


@PROPERTY
@given(cells=CELLS, mode=st.sampled_from(MERGE_MODES), secondary=st.booleans())
def test_merge_invariants(
    cells: list[tuple[list[str], list[str], list[str]]], mode: MergeMode, secondary: bool
) -> None:
    """Fixed tags first (deduped), suffix last (deduped), never a doubled separator, in every mode."""
    grammar = KTS_SEC if secondary else KTS
    names = [f"C{i}" for i in range(len(cells))]
    merged = merge_captions(_write(cells, grammar), names, mode, grammar)
    parsed = parse_caption(merged, grammar)
    fixed = _dedup([t for f, _, _ in cells for t in f])
    assert list(parsed.fixed) == fixed
    assert list(parsed.suffix) == _dedup([t for _, _, s in cells for t in s], exclude=fixed)
    assert _no_doubled_separator(merged)
    flex = [x for _, x, _ in cells]
    if mode == "concat":
        assert list(parsed.flex) == [t for x in flex for t in x]
    elif mode == "tags":
        assert list(parsed.flex) == _dedup([t for x in flex for t in x], exclude=fixed + list(parsed.suffix))
    else:
        markers = re.findall(r"\[(C\d+)\]", merged)
        assert markers == [name for name, x in zip(names, flex, strict=True) if x]


@PROPERTY
@given(cells=CELLS, seed=st.integers(0, 2**16))
def test_positional_survives_sd_shuffle(cells: list[tuple[list[str], list[str], list[str]]], seed: int) -> None:
    """After sd-scripts' shuffle, fixed tags lead and each marker still precedes its own cell's text."""
    names = [f"C{i}" for i in range(len(cells))]
    merged = merge_captions(_write(cells, KTS_SEC), names, "positional", KTS_SEC)
    processed = sd_process(merged, KTS_SEC, random.Random(seed))
    fixed = _dedup([t for f, _, _ in cells for t in f])
    assert processed.startswith(", ".join(fixed))
    for name, (_, flex, _) in zip(names, cells, strict=True):
        if flex:
            assert f"[{name}] " + ", ".join(flex) in processed


@pytest.mark.parametrize("mode", MERGE_MODES)
def test_merge_survives_keep_tokens_parsing(mode: MergeMode) -> None:
    """sd-scripts' keep_tokens_separator parsing keeps every cell's trigger in front of shuffled tags."""
    captions = ["ohwx, style ||| 1girl, red dress, smile", "", "ohwx ||| 1boy, suit", "zkz ||| cat"]
    merged = merge_captions(captions, ["L", "C", "R", "B"], mode, KTS)
    for seed in range(20):
        assert sd_process(merged, KTS, random.Random(seed)).startswith("ohwx, style, zkz, ")


def test_tags_order_independent_of_hash_seed() -> None:
    """The tags merge gives the same text under different PYTHONHASHSEED values (no set ordering)."""
    code = (
        "from collage_ext.captions import merge_captions, CaptionGrammar\n"
        "caps = [', '.join(f't{i*7 % 31}' for i in range(30)), ', '.join(f't{i}' for i in range(40))]\n"
        "print(merge_captions(caps, ['L', 'R'], 'tags', CaptionGrammar()))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1
