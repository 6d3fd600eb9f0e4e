"""Plain ``keep_tokens`` and natural-language captions: a partner's trigger never lands mid-sentence (issue 19)."""

from __future__ import annotations

import itertools

import pytest

from collage_ext.captions import CaptionGrammar
from collage_ext.captions.grammar import parse_caption
from collage_ext.captions.merge import merge_captions

SENTENCES = [
    "A woman walking on the beach under a clear blue sky, seen from a distance",
    "subject, a red house on a hill, autumn trees",
    "subject, portrait of a man, soft light, looking at the viewer",
    "An old bridge over a river at dusk, lanterns glowing, reflections on the water",
]


@pytest.mark.parametrize("mode", ["concat", "tags"])
def test_each_cell_text_stays_in_one_piece(mode: str) -> None:
    grammar = CaptionGrammar(keep_tokens=1)
    for a, b in itertools.permutations(SENTENCES, 2):
        merged = merge_captions([a, b], ["LEFT", "RIGHT"], mode, grammar)  # type: ignore[arg-type]
        if a.split(",")[0] == b.split(",")[0]:  # a shared trigger is kept once, in front
            continue
        assert a in merged and b in merged, merged
        assert parse_caption(merged, grammar).fixed == (a.split(",")[0],)  # sd-scripts' kept tag: the first cell's


def test_the_reported_frame() -> None:
    merged = merge_captions([SENTENCES[0], SENTENCES[1]], ["TOP", "BOTTOM"], "concat", CaptionGrammar(keep_tokens=1))
    assert "blue sky, subject," not in merged
    assert merged == (
        "A woman walking on the beach under a clear blue sky, seen from a distance, subject, a red "
        "house on a hill, autumn trees"
    )


def test_shared_trigger_and_separator_unchanged() -> None:
    """A shared trigger is still hoisted once; with keep_tokens_separator every kept tag stays in front."""
    plain = CaptionGrammar(keep_tokens=1)
    merged = merge_captions(["sks, red dress", "sks, blue dress"], ["L", "R"], "concat", plain)
    assert merged == "sks, red dress, blue dress"
    sep = CaptionGrammar(keep_tokens_separator="|||")
    assert merge_captions(["a ||| red", "b ||| blue"], ["L", "R"], "concat", sep) == "a, b ||| red, blue"
