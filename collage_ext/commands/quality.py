"""Measures that predict a badly training image or caption, used by ``collage-ext check`` and ``preview``.

Three simple, documented measures (see docs/cli.md, "What check measures"):

* **detail factor** (effective resolution): an image that was upscaled or blurred holds no more
  detail than a smaller one. The image (its centre, at most 1024x1024 px, greyscale) is shrunk by
  a factor ``f`` and enlarged back; the RMS difference ``E(f)`` is what a ``1/f`` copy loses. The
  detail factor is the largest ``f`` in 1.5, 2, 3, 4, 6 with ``E(f) < 0.15 * E(16)`` (and the
  same for every smaller ``f``): a sharp image already loses a sizeable share at 1.5 (measured:
  0.21-0.54 of ``E(16)`` on sharp drawings, natural-image noise and its JPEG), an image upscaled
  by ``k`` loses almost nothing up to ``f = k`` (0.03-0.14). Effective resolution = size / detail
  factor; the factor errs low (a 3x upscale may read as 2), so warnings are conservative.
* **contrast**: the mean of the strongest 0.5 % of colour steps between neighbouring pixels, with the
  image reduced to 256 px on its long side (RGB distance, 0-441). Shapes that stand out from their
  background give strong steps along their outline (a red dress on blue: 130+); a subject that
  blends into its background (skin on a beige wall, grey on grey, a washed-out photo) stays below
  ``CONTRAST_THRESHOLD`` = 32, about 7 % of the full colour range.
* **tokens**: captions are counted with the run's tokenizer when it is available offline, else with
  ``captions.estimate_tokens``; text past the encoder's budget is cut off and never trained.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from collage_ext.captions import CaptionGrammar, TokenBudget, TokenCounter, chunk_token_counts, find_wildcards
from collage_ext.core.types import Size

#: ``E(f) / E(16)`` below this means the ``1/f`` copy keeps (almost) all the detail.
DETAIL_RATIO = 0.15
#: Shrink factors tried for the detail factor, smallest first.
DETAIL_FACTORS: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0, 6.0)
#: The reference shrink factor: what a 1/16 copy loses stands for "all the detail".
DETAIL_REFERENCE = 16.0
#: Images whose ``E(16)`` is below this many grey levels are flat: the detail factor cannot be measured.
FLAT_LEVELS = 0.5
#: Contrast below this (RGB distance of the strongest 0.5 % neighbour steps at 256 px) is low.
CONTRAST_THRESHOLD = 32.0


@dataclass(frozen=True, slots=True)
class ImageMeasures:
    """What ``measure_image`` found.

    Attributes:
        size: the image size (after EXIF orientation).
        detail_factor: 1.0 for a sharp image; ``k`` when it holds the detail of a ``1/k`` copy.
        contrast: see the module docstring; low values mean weak outlines.
    """

    size: Size
    detail_factor: float
    contrast: float

    @property
    def effective_size(self) -> Size:
        """The size whose detail the image really holds."""
        return Size(
            max(1, round(self.size.width / self.detail_factor)), max(1, round(self.size.height / self.detail_factor))
        )


def measure_image(image: Image.Image) -> ImageMeasures:
    """Measure the detail factor and the contrast of an RGB image."""
    return ImageMeasures(Size(*image.size), detail_factor(image), contrast(image))


def _loss(gray: Image.Image, factor: float) -> float:
    w, h = gray.size
    small = gray.resize((max(1, round(w / factor)), max(1, round(h / factor))), Image.Resampling.LANCZOS)
    back = small.resize((w, h), Image.Resampling.BICUBIC)
    diff = np.asarray(gray, dtype=np.float32) - np.asarray(back, dtype=np.float32)
    return float(np.sqrt(np.mean(diff * diff)))


def detail_factor(image: Image.Image, *, limit: int = 1024) -> float:
    """The largest shrink factor that loses (almost) no detail; 1.0 for a sharp image.

    Examples:
        >>> sharp = Image.effect_mandelbrot((512, 512), (-2, -1.5, 1, 1.5), 100).convert("RGB")
        >>> detail_factor(sharp)
        1.0
        >>> detail_factor(sharp.resize((256, 256)).resize((512, 512), Image.Resampling.BICUBIC))
        2.0
    """
    gray = image.convert("L")
    w, h = gray.size
    if w > limit or h > limit:  # the centre carries the subject; the measure is local anyway
        cw, ch = min(w, limit), min(h, limit)
        gray = gray.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch))
    if min(gray.size) < 128:
        return 1.0
    reference = _loss(gray, DETAIL_REFERENCE)
    if reference < FLAT_LEVELS:
        return 1.0
    found = 1.0
    for factor in DETAIL_FACTORS:
        if _loss(gray, factor) >= DETAIL_RATIO * reference:
            break
        found = factor
    return found


def contrast(image: Image.Image, *, side: int = 256, share: float = 0.005) -> float:
    """Mean RGB distance of the strongest ``share`` of neighbouring-pixel steps at ``side`` px.

    Examples:
        >>> flat = Image.new("RGB", (64, 64), (128, 128, 128))
        >>> contrast(flat)
        0.0
        >>> half = flat.copy(); half.paste((20, 40, 200), (32, 0, 64, 64))
        >>> round(contrast(half))  # the one strong vertical edge: |(108, 88, -72)|
        157
    """
    small = image.convert("RGB")
    if max(small.size) > side:
        small = small.copy()
        small.thumbnail((side, side), Image.Resampling.BOX)
    a = np.asarray(small, dtype=np.float32)
    steps = [np.sqrt(((a[:, 1:] - a[:, :-1]) ** 2).sum(-1)).ravel(), np.sqrt(((a[1:] - a[:-1]) ** 2).sum(-1)).ravel()]
    values = np.concatenate(steps)
    if values.size == 0:
        return 0.0
    count = max(1, math.ceil(values.size * share))
    return float(np.partition(values, values.size - count)[values.size - count :].mean())


# -- captions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaptionTokens:
    """Token use of one caption: ``chunks`` as the encoder reads them, ``total`` before truncation."""

    total: int
    chunks: tuple[int, ...]
    budget: TokenBudget

    @property
    def overflow(self) -> int:
        """Tokens past the budget (cut off, never trained)."""
        return max(0, self.total - self.budget.max_tokens)

    def describe(self) -> str:
        """E.g. ``75+75+12 of 225`` (CLIP) or ``318 of 512`` (T5)."""
        used = "+".join(str(c) for c in self.chunks)
        over = f", {self.overflow} cut" if self.overflow else ""
        return f"{used} of {self.budget.max_tokens}{over}"


def count_caption(caption: str, budget: TokenBudget, counter: TokenCounter) -> CaptionTokens:
    """Count a caption against a budget (every line of a multi-line caption: the longest counts)."""
    lines = [line for line in caption.split("\n") if line.strip()] or [""]
    longest = max(lines, key=counter)
    return CaptionTokens(counter(longest), tuple(chunk_token_counts(longest, budget, counter)), budget)


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    body = r"[\s_]+".join(re.escape(p) for p in re.split(r"[\s_]+", phrase.strip()))
    return re.compile(r"(?<![^\W_])" + body + r"(?![^\W_])", re.IGNORECASE)


def phrase_starts(caption: str, phrase: str, counter: TokenCounter, grammar: CaptionGrammar) -> list[int]:
    """Token offsets at which ``phrase`` occurs (whole words, ``_`` = space, outside wildcard groups).

    Examples:
        >>> words = lambda s: len(s.replace(",", " ").split())
        >>> phrase_starts("a, red dress, b, c, red_dress", "red dress", words, CaptionGrammar())
        [1, 5]
    """
    spans = find_wildcards(caption) if grammar.enable_wildcard else []
    return [
        counter(caption[: m.start()])
        for m in _phrase_pattern(phrase).finditer(caption)
        if not any(s < m.end() and m.start() < e for s, e in spans)
    ]


def phrases_past_budget(
    caption: str, phrases: Sequence[str], budget: TokenBudget, counter: TokenCounter, grammar: CaptionGrammar
) -> list[tuple[str, int]]:
    """``(phrase, first token offset)`` for phrases that occur only past the budget (never trained).

    ``<keep_tokens>`` is skipped: kept tags always lead the caption.
    """
    out = []
    for phrase in phrases:
        if phrase.strip() == "<keep_tokens>":
            continue
        starts = phrase_starts(caption, phrase, counter, grammar)
        if starts and min(starts) >= budget.max_tokens:
            out.append((phrase, min(starts)))
    return out
