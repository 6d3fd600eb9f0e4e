"""The collage orchestrator: sample a frame's parameters, then apply them deterministically.

Sampling and applying are split (torchvision ``make_params`` / ``transform``, kornia replay): all
randomness of a frame lives in a frozen, JSON-serialisable ``FrameParams``, so a preview, an export
and a training worker that hold the same params produce the same bytes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
from PIL import Image

from collage_ext.captions import (
    CaptionGrammar,
    TokenBudget,
    TokenCounter,
    apply_cell_dropout,
    drop_cells,
    merge_captions,
    repeat_phrases,
    select_line,
)
from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageInputError
from collage_ext.core.rng import derive_rng
from collage_ext.core.types import Box, Layout, Rect, Size
from collage_ext.geometry.layout import choose_layout, layout_cells, position_names
from collage_ext.pixels.crops import check_crop_unchanged, read_crop_box
from collage_ext.pixels.fit import DRAFT_GAPS, FitMode, fit_image
from collage_ext.pixels.images import alpha_channel, load_fitted, load_fitted_with_alpha, read_image_size, to_rgb
from collage_ext.pixels.render import RenderResult, render_frame

logger = logging.getLogger(__name__)


class CellCache(Protocol):
    """Decoded cells kept between renders (the studio's byte-budgeted ``ByteLRU``, or a dict)."""

    def get(self, key: Hashable) -> tuple[Image.Image, Rect, Image.Image | None] | None: ...

    def __setitem__(self, key: Hashable, value: tuple[Image.Image, Rect, Image.Image | None]) -> None: ...


#: ``collage_decode = "fast"``: reduce JPEGs in the DCT domain as far as leaves a 1.4x shrink for the
#: final (BILINEAR) pass. Decoding straight to the cell size (gap 1.0) is libjpeg's block mean, which aliases
#: exactly like sd-scripts' INTER_AREA; the 1.4 gap keeps 'fast' below it on zone plates (tests/test_decode_fast.py).
FAST_DRAFT_GAPS = {8: 1.4, 4: 1.4, 2: 1.4}


@dataclass(frozen=True, slots=True)
class Source:
    """One source image of a frame: stable key, file, oriented size, raw caption and optional crop box."""

    key: str
    path: str
    size: Size
    caption: str = ""
    crop: Box | None = None

    @property
    def effective_size(self) -> Size:
        """The size of the region that is used: the crop box if any, else the whole image."""
        if self.crop is None:
            return self.size
        return Size(max(1, round(self.crop.width)), max(1, round(self.crop.height)))


def load_source(
    path: str | Path,
    key: str,
    *,
    caption: str | None = None,
    caption_extension: str = ".txt",
    crop_extension: str = ".crop",
) -> Source:
    """Describe an image file with one header read; the caption comes from ``caption`` or its sidecar file."""
    path = Path(path)
    size = read_image_size(path)
    if caption is None:
        caption_file = path.with_suffix(caption_extension)
        caption = caption_file.read_text(encoding="utf-8-sig").strip() if caption_file.is_file() else ""
    return Source(key=key, path=str(path), size=size, caption=caption, crop=read_crop_box(path, size, crop_extension))


@dataclass(frozen=True, slots=True)
class FrameParams:
    """Everything random about one frame; replaying it reproduces the frame bit for bit.

    Attributes:
        keys: source keys in the order the frame was planned with.
        layout: the cells and which source goes into each (``layout.order``).
        texts: per cell, the caption line chosen for it (multi-line captions pick one line).
        dropped: per cell, whether its caption text is dropped (its pixels stay).
        seed, epoch: where the randomness came from.
    """

    keys: tuple[str, ...]
    layout: Layout
    texts: tuple[str, ...]
    dropped: tuple[bool, ...]
    seed: int
    epoch: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (for manifests and previews)."""
        return {
            "keys": list(self.keys),
            "layout": self.layout.to_json(),
            "texts": list(self.texts),
            "dropped": list(self.dropped),
            "seed": self.seed,
            "epoch": self.epoch,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FrameParams:
        """Rebuild params written by ``to_json``."""
        lay = data["layout"]
        layout = Layout(
            name=lay["name"],
            frame=Size(*lay["frame"]),
            cells=tuple(Rect(*c) for c in lay["cells"]),
            order=tuple(lay["order"]),
            names=tuple(lay["names"]),
            fit=lay.get("fit"),
        )
        return cls(
            keys=tuple(data["keys"]),
            layout=layout,
            texts=tuple(data["texts"]),
            dropped=tuple(data["dropped"]),
            seed=data["seed"],
            epoch=data["epoch"],
        )


@dataclass(frozen=True)
class CollageResult:
    """A rendered frame: ``image`` is HxWx3 uint8 RGB, ``mask`` True on padding (when asked for),
    ``alpha`` the sources' own alpha (``Collage.alpha_mask``; None when no source has any)."""

    image: np.ndarray
    mask: np.ndarray | None
    caption: str
    params: FrameParams
    alpha: np.ndarray | None = None


@dataclass
class Collage:
    """Compose several images and their captions into one training frame.

    Workflow:
        1. ``make_params`` (the only random step): plan the layout from the sources' sizes
           (stream ``layout``), pick each cell's caption line and per-cell caption dropout
           (stream ``caption``); all from ``derive_rng(seed, epoch, frame key, stream)``.
        2. ``render``: load each source, fit it into its cell (contain/cover, crop box), paint the
           rest with the fill colour; deterministic.
        3. ``caption``: drop the dropped cells' text, merge in reading order, repeat key phrases
           within the token budget; deterministic.

    Examples:
        >>> from collage_ext.core.config import CollageConfig
        >>> c = Collage(CollageConfig(rate=1.0), Size(64, 64))
        >>> srcs = [Source("a", "a.png", Size(30, 60), "red"), Source("b", "b.png", Size(30, 60), "blue")]
        >>> c.make_params(srcs, seed=1, epoch=0).layout.name
        '1x2'
    """

    config: CollageConfig
    frame: Size
    grammar: CaptionGrammar = field(default_factory=CaptionGrammar)
    budget: TokenBudget | None = None
    counter: TokenCounter | None = None
    #: Content-shaped frames (``Pool.shaped``): lines of cells sized to their sources' aspects.
    shaped: bool = False
    #: sd-scripts' ``alpha_mask`` is on for the subset (``frames.uses_alpha``): each cell also carries its
    #: source's own alpha, fitted with the same plan as its pixels (``RenderResult.alpha``).
    alpha_mask: bool = False
    #: Fixed frames (``Pool.max_crop``): share of a source's width / height a line may crop to keep the rule.
    max_crop: float = 0.0

    def make_params(
        self, sources: Sequence[Source], *, seed: int, epoch: int, frame: Size | None = None
    ) -> FrameParams:
        """Sample the layout, caption lines and per-cell dropout for these sources.

        ``frame`` is the group's frame (``Pool.frame_for``); default: the collage's fixed frame.
        """
        frame = frame or self.frame
        key = "|".join(s.key for s in sources)
        if len(sources) == 1:  # a frame left with one image (error policy): it fills the frame
            cells = layout_cells("1x1", frame)
            layout = Layout("1x1", frame, cells, (0,), ("",))  # no position marker for a lone image
        else:
            layout = choose_layout(
                [s.effective_size for s in sources],
                frame,
                self.config,
                rng=derive_rng(seed, epoch, key, "layout"),
                shaped=self.shaped,
                max_crop=[0.0 if s.crop is not None else self.max_crop for s in sources],
            )
        rng = derive_rng(seed, epoch, key, "caption")
        texts = tuple(select_line(sources[i].caption, self.grammar, rng=rng) for i in layout.order)
        dropped = drop_cells(len(texts), self.config.cell_caption_dropout_rate, rng=rng)
        return FrameParams(tuple(s.key for s in sources), layout, texts, dropped, seed, epoch)

    def render(
        self,
        sources: Sequence[Source],
        params: FrameParams,
        *,
        images: Sequence[Image.Image] | None = None,
        with_mask: bool = False,
        cells: CellCache | None = None,
    ) -> RenderResult:
        """Fit every source into its cell and paint the frame (no randomness).

        With ``alpha_mask`` each source's own alpha is fitted with the same plan as its pixels (crop
        box, cover trim, resampler) and pasted into ``RenderResult.alpha``. ``cells`` (the studio's)
        keeps decoded cells by file (path, size, mtime), crop box, cell size and decode settings: a
        frame re-rendered after an edit of one image decodes only that image.
        """
        placements = []
        # a layout names its own fit only as "contain" or "cover" (geometry.layout), like the config
        fit_mode = cast(FitMode, params.layout.fit or self.config.fit_mode)
        for cell, index in zip(params.layout.cells, params.layout.order):
            source = sources[index]
            alpha = None
            if images is not None:  # in-memory images: what load_fitted does with a file (to_rgb, then fit)
                rgb = to_rgb(images[index], fill=self.config.fill)
                fitted, rect = fit_image(rgb, cell.size, fit_mode, source.crop)
                own = alpha_channel(images[index]) if self.alpha_mask else None
                alpha = None if own is None else fit_image(own, cell.size, fit_mode, source.crop)[0]
            else:
                try:
                    fitted, rect, alpha = self.fitted(source, cell.size, fit_mode, cells)
                except CollageInputError as exc:
                    exc.source_path = source.path  # type: ignore[attr-defined]  # for the error policy
                    raise
            placements.append((Rect(cell.x + rect.x, cell.y + rect.y, rect.width, rect.height), fitted, alpha))
        return render_frame(params.layout.frame, placements, self.config.fill, with_mask=with_mask)

    def fitted(
        self,
        source: Source,
        size: Size,
        fit_mode: FitMode,
        cells: CellCache | None = None,
    ) -> tuple[Image.Image, Rect, Image.Image | None]:
        """One source decoded straight into a cell of ``size`` (JPEG DCT-domain reduction, see
        ``images.load_fitted``): the fitted pixels, where they sit in the cell, and their alpha (with
        ``alpha_mask``). ``cells``: see ``render`` (the studio also fills it ahead, a frame's cells at once).

        Raises:
            CollageInputError: the file cannot be decoded, or its crop box changed since planning.
        """
        check_crop_unchanged(source.path, source.size, source.crop, self.config.crop_extension)
        key = self._cell_key(source, size, fit_mode) if cells is not None else None
        found = cells.get(key) if cells is not None and key is not None else None
        if found is not None:
            return found
        alpha = None
        fill = self.config.fill
        draft_gaps = FAST_DRAFT_GAPS if self.config.decode == "fast" else DRAFT_GAPS
        soft_shrink = self.config.decode == "fast"
        convert_icc = self.config.color_profile == "srgb"
        if self.alpha_mask:
            fitted, rect, alpha = load_fitted_with_alpha(
                source.path,
                size,
                fit_mode,
                source.crop,
                fill=fill,
                draft_gaps=draft_gaps,
                soft_shrink=soft_shrink,
                expected=source.size,
                convert_icc=convert_icc,
            )
        else:
            fitted, rect = load_fitted(
                source.path,
                size,
                fit_mode,
                source.crop,
                fill=fill,
                draft_gaps=draft_gaps,
                soft_shrink=soft_shrink,
                expected=source.size,
                convert_icc=convert_icc,
            )
        if cells is not None and key is not None:
            cells[key] = (fitted, rect, alpha)
        return fitted, rect, alpha

    def _cell_key(self, source: Source, cell: Size, fit_mode: str) -> Hashable | None:
        """What a decoded cell depends on: the file's bytes (path, size, mtime), crop, cell and decode settings."""
        try:
            stat = os.stat(source.path)
        except OSError:
            return None  # load_fitted reports the missing file
        c = self.config
        return (
            source.path,
            stat.st_size,
            stat.st_mtime_ns,
            source.size,
            source.crop,
            tuple(cell),
            fit_mode,
            tuple(c.fill),
            c.decode,
            c.color_profile,
            self.alpha_mask,
        )

    def caption(self, params: FrameParams) -> str:
        """Merge the cells' captions in reading order and repeat key phrases (no randomness)."""
        texts = apply_cell_dropout(params.texts, params.dropped, self.grammar)
        names = params.layout.names or position_names(params.layout.cells, params.layout.frame)
        merged = merge_captions(texts, names, self.config.caption_merge, self.grammar)
        if self.config.repeat_phrases and self.budget is not None and merged:
            counter = self.counter if self.counter is not None else _estimate_counter()
            merged = repeat_phrases(
                merged, self.config.repeat_phrases, self.budget, counter, self.grammar, count=self.config.repeat_count
            )
        return merged

    def __call__(
        self,
        sources: Sequence[Source],
        *,
        seed: int,
        epoch: int,
        with_mask: bool = False,
        params: FrameParams | None = None,
    ) -> CollageResult:
        """Sample (or replay ``params``) and apply: the image, its mask and its caption."""
        params = params if params is not None else self.make_params(sources, seed=seed, epoch=epoch)
        rendered = self.render(sources, params, with_mask=with_mask)
        return CollageResult(rendered.image, rendered.mask, self.caption(params), params, rendered.alpha)


def _estimate_counter() -> TokenCounter:
    from collage_ext.captions import estimate_tokens

    return estimate_tokens
