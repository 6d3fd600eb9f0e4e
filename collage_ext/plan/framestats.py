"""How well a frame keeps the technique's scale rule: fill and per-source span. Pure, no image I/O.

* **fill**: the share of the frame that shows source pixels (the rest is ``collage_fill`` padding).
* **span** of a source: the larger of (its shown width / frame width, its shown height / frame
  height). The rule asks for a span of at least ``collage_min_span`` (0.95): a full-length person
  keeps the full frame height.

One function computes these for a frame (``frame_stats``), one sums them up for a subset
(``epoch_stats``, over the frames ``PlannedSubset.jobs`` lists); the start-up log, ``check``,
``preview`` and ``export`` all call them, so every report shows the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from collage_ext.core.types import Layout, Size
from collage_ext.geometry.shapes import TIER, area_tolerance
from collage_ext.pixels.fit import cell_fit

if TYPE_CHECKING:
    from collage_ext.geometry.buckets import Buckets
    from collage_ext.plan.collage import Source
    from collage_ext.plan.pool import Pool
    from collage_ext.plan.subsets import PlannedSubset

#: Frames looked at for a subset's summary; beyond this the summary is a deterministic sample.
SUMMARY_FRAMES = 2000


@dataclass(frozen=True, slots=True)
class FrameStats:
    """Fill and spans of one frame.

    Attributes:
        frame: the frame size.
        fill: share of the frame that shows source pixels, 0..1.
        spans: per source, in the order the frame was planned with (``FrameParams.keys``).
    """

    frame: Size
    fill: float
    spans: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        """Rounded for manifests and reports."""
        return {"frame": list(self.frame), "fill": round(self.fill, 4), "spans": [round(s, 4) for s in self.spans]}


def frame_stats(layout: Layout, sources: Sequence[Source], fit_mode: str) -> FrameStats:
    """Fill and spans of a planned frame, from the exact placement the renderer uses (``fit.cell_fit``).

    Args:
        layout: the frame's layout (``FrameParams.layout``); ``layout.order[i]`` indexes ``sources``.
        sources: the frame's sources in planning order.
        fit_mode: ``contain`` or ``cover``.
    """
    frame = layout.frame
    fit_mode = layout.fit or fit_mode
    spans = [0.0] * len(sources)
    shown = 0
    for cell, index in zip(layout.cells, layout.order):
        source = sources[index]
        dst = cell_fit(source.size, cell.size, fit_mode, source.crop).dst  # type: ignore[arg-type]
        shown += dst.width * dst.height
        spans[index] = max(dst.width / frame.width, dst.height / frame.height)
    return FrameStats(frame, shown / (frame.width * frame.height), tuple(spans))


@dataclass(frozen=True)
class SummaryStats:
    """Frame statistics summed over the collage frames of a subset (or a run).

    Attributes:
        frames: collage frames looked at.
        sources: source placements in them.
        singles: single-image samples (they fill their bucket and span it).
        fill_sum, fill_min: for the mean and the worst fill.
        at_span: placements with span >= ``min_span``.
        min_span: the rule's threshold.
        sampled: True when only ``SUMMARY_FRAMES`` frames were looked at.
    """

    frames: int = 0
    sources: int = 0
    singles: int = 0
    fill_sum: float = 0.0
    fill_min: float = 1.0
    at_span: int = 0
    min_span: float = 0.95
    sampled: bool = False

    @property
    def mean_fill(self) -> float:
        """Mean fill of the collage frames (1.0 without any)."""
        return self.fill_sum / self.frames if self.frames else 1.0

    @property
    def span_share(self) -> float:
        """Share of collage placements that keep the scale rule."""
        return self.at_span / self.sources if self.sources else 1.0

    @property
    def images_per_frame(self) -> float:
        """Images per training sample, single images included."""
        samples = self.frames + self.singles
        return (self.sources + self.singles) / samples if samples else 0.0

    def add(self, other: SummaryStats) -> SummaryStats:
        """The two summaries together."""
        return SummaryStats(
            self.frames + other.frames,
            self.sources + other.sources,
            self.singles + other.singles,
            self.fill_sum + other.fill_sum,
            min(self.fill_min, other.fill_min),
            self.at_span + other.at_span,
            min(self.min_span, other.min_span),
            self.sampled or other.sampled,
        )

    def text(self) -> str:
        """One line: ``mean fill 0.97 (min 0.91), 100% of sources span >= 0.95, 2.0 images/frame``."""
        if not self.frames:
            return f"no collage frames, {self.singles} single samples"
        return (
            f"mean fill {self.mean_fill:.2f} (min {self.fill_min:.2f}), {self.span_share:.0%} of sources span "
            f">= {self.min_span:g} of the frame, {self.images_per_frame:.2f} images/frame"
            + (" (sampled)" if self.sampled else "")
        )

    def to_json(self) -> dict[str, Any]:
        """For manifests, LoRA metadata and the check report."""
        return {
            "collage_frames": self.frames,
            "sources": self.sources,
            "single_samples": self.singles,
            "mean_fill": round(self.mean_fill, 4),
            "min_fill": round(self.fill_min, 4),
            "span_share": round(self.span_share, 4),
            "min_span": self.min_span,
            "images_per_frame": round(self.images_per_frame, 4),
            "sampled": self.sampled,
        }


def summarize(stats: Iterable[FrameStats], min_span: float, *, singles: int = 0, sampled: bool = False) -> SummaryStats:
    """Sum per-frame statistics up."""
    frames = sources = at = 0
    total, worst = 0.0, 1.0
    for item in stats:
        frames += 1
        sources += len(item.spans)
        total += item.fill
        worst = min(worst, item.fill)
        at += sum(1 for s in item.spans if s >= min_span - 1e-9)
    return SummaryStats(frames, sources, singles, total, worst, at, min_span, sampled)


def epoch_stats(planned: PlannedSubset, mode: str, epoch: int = 1) -> SummaryStats:
    """A subset's summary: the frames of ``epoch`` (dynamic) or of every static variant (``PlannedSubset.jobs``)."""
    jobs = planned.jobs(mode, epoch, limit=SUMMARY_FRAMES)
    return summarize(
        (job.stats for job in jobs),
        planned.pool.config.min_span,
        singles=sum(planned.single_repeats(mode)),
        sampled=planned.frame_count(mode) > SUMMARY_FRAMES,
    )


def frame_note(pool: Pool, buckets: Buckets | None) -> list[str]:
    """What frames this subset gets and why, for the start-up log and ``check``.

    Content-shaped: the frame of every (shape class, population) in use, and a hint when
    ``max_bucket_reso`` keeps frames below the resolution's area. Fixed: that padding is expected.
    """
    shapes = pool.shapes
    why = (
        "collage_frame_size is set"
        if pool.config.frame_size is not None
        else "the dataset does not bucket (enable_bucket = false)"
    )
    if shapes is None:
        return [
            f"fixed {pool.frame} frames ({why}), collage_min_span = 0: sources keep their aspect, so "
            "#{:02x}{:02x}{:02x} padding is expected; enable_bucket = true gives content-shaped frames".format(
                *pool.config.fill
            )
        ]
    structure = pool.structure
    used = list(dict.fromkeys(zip(structure.slot_classes, structure.sizes)))
    alone = alone_counts(pool)
    if pool.fixed:
        crop = f"cropping at most {pool.max_crop:.0%} of a source" if pool.max_crop < 1 else "cropping as needed"
        lines = [
            f"fixed {pool.frame} frames ({why}): sources share a frame only within their shape class, each at "
            f">= {pool.config.min_span:g} of the frame's height or width ({crop}, collage_max_crop): "
            + ("; ".join(shapes.describe(used)) if used else "no source has a partner of its shape")
        ]
        if alone.get("span"):
            lines.append(
                f"{alone['span']} images cannot keep the scale rule beside a partner in a {pool.frame} frame "
                "(e.g. squares in a square frame) and train alone, as sd-scripts would train them; "
                "enable_bucket = true gives them content-shaped frames"
            )
        return lines
    if not used:
        return ["content-shaped frames: no source has a partner of its shape, so every image trains single"]
    lines = ["content-shaped frames (bucket resolutions): " + "; ".join(shapes.describe(used))]
    if alone.get("area") and buckets is not None:
        setting = (
            "bucket_no_upscale = true: no partner of a similar size"
            if buckets.no_upscale
            else f"max_bucket_reso = {buckets.max_reso} caps their collage frames below that; set "
            f"max_bucket_reso = {2 * max(buckets.resolution)}"
        )
        lines.append(
            f"{alone['area']} images train alone, at their own bucket, because a collage frame would be "
            f"smaller than the bucket each gets alone ({setting})"
        )
    if (
        buckets is not None
        and not buckets.no_upscale
        and any(shapes.frame(c, k).area < 0.85 * buckets.area for c, k in used)
    ):
        lines.append(
            f"max_bucket_reso = {buckets.max_reso} leaves some arrangements well below the "
            f"{buckets.resolution} area; set max_bucket_reso = {2 * max(buckets.resolution)} so side-by-side "
            "and stacked frames keep the full area"
        )
    return lines


def alone_counts(pool: Pool) -> dict[str, int]:
    """Images that never join a collage, by what stops them (``ShapeClasses.limit``).

    The keys are ``upscale``, ``area`` and ``span``.
    """
    out: dict[str, int] = {}
    for name in alone_images(pool).values():
        out[name] = out.get(name, 0) + 1
    return out


def alone_images(pool: Pool) -> dict[int, str]:
    """Per source index that trains alone (level 1), why (``upscale``, ``area`` or ``span``)."""
    shapes = pool.shapes
    if shapes is None or not pool.config.enabled:
        return {}
    out = {}
    smallest = shapes.group_sizes[0] if shapes.group_sizes else 2
    partners: dict[int, int] = {}  # per class, distinct images that may join a frame
    for i in range(len(pool.records)):
        level, why = shapes.limit(i)
        if level < 2 and why:
            out[i] = why
        elif level >= smallest:
            partners[shapes.classes[i]] = partners.get(shapes.classes[i], 0) + 1
    tiered = {c % TIER for c in partners if c >= TIER}
    for i in range(len(pool.records)):
        cls = shapes.classes[i]
        if i not in out and partners.get(cls, 0) < 2:  # the only image of its class (or size tier)
            out[i] = "area" if cls >= TIER or cls in tiered else "shape"
    return out


def rule_warning(planned: PlannedSubset, buckets: Buckets, mode: str, epoch: int = 1) -> str | None:
    """One line for the start-up log when a frame breaks the scale rule or trains below a member's own bucket.

    The same test as ``check``'s ``scale_rule`` and ``frame_below_bucket`` warnings (over the frames of
    ``epoch``, or every static variant, up to ``SUMMARY_FRAMES``); ``None`` when every frame keeps both.
    """
    pool = planned.pool
    config = pool.config
    short: list[str] = []
    small: list[str] = []
    for job in planned.jobs(mode, epoch, limit=SUMMARY_FRAMES):
        sources = job.sources
        stats = job.stats
        if config.min_span > 0:
            short.extend(s.key for s, span in zip(sources, stats.spans) if span < config.min_span - 1e-9)
        (fw, fh), _ = buckets.select(job.params.layout.frame)
        for s in sources:
            own = buckets.area if not buckets.enable else (lambda r: r[0] * r[1])(buckets.select(s.size)[0])
            if fw * fh < area_tolerance(buckets) * own:
                small.append(s.key)
    if not short and not small:
        return None
    parts = []
    if short:
        names = sorted(set(short))
        parts.append(
            f"{len(names)} images span less than collage_min_span = {config.min_span:g} of their frame "
            f"({', '.join(names[:3])}{' ...' if len(names) > 3 else ''}; collage_layouts / collage_max_crop)"
        )
    if small:
        names = sorted(set(small))
        parts.append(
            f"{len(names)} images sit in frames smaller than their own bucket "
            f"({', '.join(names[:3])}{' ...' if len(names) > 3 else ''}; collage_frame_size / "
            "max_bucket_reso / bucket_no_upscale)"
        )
    return f"collage_ext: {pool.key}: the scale rule is broken: " + "; ".join(parts) + " (collage-ext check names them)"
