"""The checks ``collage-ext check`` runs on a planned epoch: the scale rule, frame areas, images that train
alone, singles, captions and leftovers. Each adds ``Finding``s; ``check.run_check`` calls them in order.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collage_ext.commands.quality import (
    ImageMeasures,
    count_caption,
    phrases_past_budget,
)
from collage_ext.core.progress import progress
from collage_ext.core.types import Size
from collage_ext.geometry.buckets import Buckets
from collage_ext.geometry.layout import group_sizes, is_line_layout, layout_cells, layouts_with
from collage_ext.geometry.shapes import area_tolerance
from collage_ext.kohya.datasets import DatasetSpec, Finding, SubsetSpec
from collage_ext.pixels.fit import upscale_factor
from collage_ext.plan.collage import Source
from collage_ext.plan.framesets import TextEncoder
from collage_ext.plan.framestats import alone_images, frame_note
from collage_ext.plan.jobs import FrameSet
from collage_ext.plan.project import Project
from collage_ext.plan.subsets import PlannedSubset

logger = logging.getLogger(__name__)

#: Examples named per aggregated finding.
EXAMPLES = 3


def _worst_cell_scale(source: Source, level: int, frame: Size, planned: PlannedSubset) -> tuple[float, Size]:
    """Fixed frames: the largest magnification over every layout the source may join; returns it and the frame."""
    config = planned.subset.config
    worst = 0.0
    for n in group_sizes(config):
        if n > level:
            break
        for name in layouts_with(n, config):
            for cell in layout_cells(name, frame, config.gutter):
                worst = max(worst, upscale_factor(source.size, cell.size, config.fit_mode, source.crop))
    return worst, frame


def _worst_shaped_scale(item: PlannedSubset, index: int, level: int, size: Size) -> tuple[float, Size]:
    """Content-shaped frames: the largest magnification over the frames the plan actually gives the source's class.

    Rating against a frame the plan never uses (a 3- or 4-image frame where every slot of the class
    holds two images) shrinks the cell and hides an upscaled image.
    """
    shapes, structure = item.pool.shapes, item.pool.structure
    assert shapes is not None
    cls = shapes.classes[index]
    used = sorted({k for k, c in zip(structure.sizes, structure.slot_classes) if c == cls and k <= level})
    if not used:
        used = [
            min(k for k in shapes.group_sizes if k <= level) if any(k <= level for k in shapes.group_sizes) else level
        ]
    worst, frame = 0.0, shapes.frame(cls, used[0])
    for k in used:
        here = shapes.frame(cls, k)
        scale = shapes.cell_scale(shapes.layout_for(cls, k), here, size, shapes.aspects[cls])
        if scale > worst:
            worst, frame = scale, here
    return worst, frame


def check_collage_sources(
    planned: Sequence[PlannedSubset], measures: dict[str, ImageMeasures], findings: list[Finding]
) -> set[str]:
    """Sources too small for any cell, and sources whose *effective* resolution a cell would over-magnify."""
    reported: set[str] = set()
    for item in planned:
        buckets = Buckets.for_dataset(item.dataset)
        config, frame = item.subset.config, item.pool.frame
        shapes = item.pool.shapes
        sizes = shapes.group_sizes if shapes is not None else group_sizes(config)
        smallest = sizes[0] if sizes else 2
        alone = alone_images(item.pool)
        for index, source in enumerate(item.pool.sources):
            level = item.pool.structure.level[index]
            if shapes is not None:
                frame = shapes.frame(shapes.classes[index], smallest)
            m = measures.get(source.path)
            if level < smallest and alone.get(index, "upscale") != "upscale":
                continue  # alone for the scale rule or the frame area: trains_alone names it
            if level < smallest:
                reso, scale = buckets.select(source.size)
                findings.append(
                    Finding(
                        "warning",
                        "too_small_for_collage",
                        f"{source.path} ({source.effective_size}) would be magnified more than collage_max_upscale = "
                        f"{config.max_upscale:g} in every {smallest}-image cell of a {frame} frame, so it never joins "
                        f"a collage and trains as a single image (sd-scripts magnifies it {scale:.1f}x to its "
                        f"{reso[0]}x{reso[1]} bucket); use a larger original, or remove it",
                        source.path,
                    )
                )
                reported.add(source.path)
                continue
            if m is None or m.detail_factor <= 1.0:
                continue
            if shapes is not None:
                scale, frame = _worst_shaped_scale(item, index, level, source.effective_size)
            else:
                scale, frame = _worst_cell_scale(source, level, frame, item)
            effective = scale * m.detail_factor
            if effective > config.max_upscale + 1e-9:
                crop = source.effective_size
                cell = Size(round(crop.width * scale), round(crop.height * scale))
                findings.append(
                    Finding(
                        "warning",
                        "upscaled_image",
                        f"{source.path} is {m.size} but holds only the detail of ~{m.effective_size} (it looks "
                        f"upscaled or blurred: detail factor {m.detail_factor:g}); its cell of about {cell} in a "
                        f"{frame} frame magnifies that {effective:.1f}x, more than collage_max_upscale = "
                        f"{config.max_upscale:g}: the blurry pixels add nothing — use the original, larger file",
                        source.path,
                    )
                )
                reported.add(source.path)
    return reported


def check_scale_rule(planned: Sequence[PlannedSubset], frameset: FrameSet, findings: list[Finding]) -> None:
    """Per collage subset: what frames it gets, their fill and spans; a warning when sources break the scale rule."""
    for item in planned:
        config = item.subset.config
        jobs = [j for j in frameset.jobs if j.planned is item]
        if not jobs:
            continue
        for note in frame_note(item.pool, Buckets.for_dataset(item.dataset)):
            findings.append(Finding("info", "frames", f"{item.subset.image_dir}: {note}"))
        stats = frameset.summary(item)
        findings.append(Finding("info", "frame_stats", f"{item.subset.image_dir}: {stats.text()}"))
        if config.min_span <= 0:
            continue
        short: list[str] = []
        frames = 0
        for job in jobs:
            names = [s.path for s, span in zip(job.sources, job.stats.spans) if span < config.min_span - 1e-9]
            frames += bool(names)
            short.extend(n for n in names if n not in short)
        if short:
            shown = _names(short)
            forced = [n for n in config.layout_names if not is_line_layout(n)]
            fix = (
                f"collage_layouts lists {', '.join(forced)} (grids put sources at part size): remove them"
                if forced
                else "raise collage_max_crop (fixed frames) or use enable_bucket = true for content-shaped frames"
            )
            findings.append(
                Finding(
                    "warning",
                    "scale_rule",
                    f"{item.subset.image_dir}: in {frames} of {len(jobs)} collage frames some sources span less than "
                    f"collage_min_span = {config.min_span:g} of the frame ({shown}), so their patterns are learned at "
                    f"a smaller scale; {fix}, or set collage_min_span = 0 to accept it knowingly",
                    short[0],
                )
            )
        _check_frame_area(item, jobs, findings)


def _names(paths: Sequence[str]) -> str:
    return ", ".join(os.path.basename(n) for n in paths[:EXAMPLES]) + (
        f" and {len(paths) - EXAMPLES} more" if len(paths) > EXAMPLES else ""
    )


def _check_frame_area(item: PlannedSubset, jobs: Sequence[Any], findings: list[Finding]) -> None:
    """A warning when a collage frame trains smaller than the bucket one of its members gets alone."""
    buckets = Buckets.for_dataset(item.dataset)
    small: list[str] = []
    frames, worst = 0, 1.0
    for job in jobs:
        (fw, fh), _ = buckets.select(job.params.layout.frame)
        own = [(_own_area(buckets, s.size), s.path) for s in job.sources]
        ratio = fw * fh / max(a for a, _ in own)
        if ratio < area_tolerance(buckets):
            frames += 1
            worst = min(worst, ratio)
            small.extend(p for a, p in own if fw * fh < area_tolerance(buckets) * a and p not in small)
    if not small:
        return
    if item.subset.config.frame_size is not None:
        fix = f"collage_frame_size = {item.subset.config.frame_size} is smaller than the resolution: unset it"
    elif buckets.no_upscale:
        fix = "bucket_no_upscale = true: use images of similar size, or bucket_no_upscale = false"
    else:
        fix = (
            f"max_bucket_reso = {buckets.max_reso} caps the frames: set max_bucket_reso = {2 * max(buckets.resolution)}"
        )
    findings.append(
        Finding(
            "warning",
            "frame_below_bucket",
            f"{item.subset.image_dir}: {frames} of {len(jobs)} collage frames train smaller than the bucket their "
            f"members get alone (down to {worst:.2f} of its area: {_names(small)}), so each image is learned at a "
            f"smaller scale than plain sd-scripts would train it; {fix}",
            small[0],
        )
    )


def _own_area(buckets: Buckets, size: Size) -> int:
    if not buckets.enable:
        return buckets.area
    (w, h), _ = buckets.select(size)
    return w * h


def check_alone(planned: Sequence[PlannedSubset], findings: list[Finding]) -> None:
    """Images that train alone because no frame can keep the rule for them, named, with the setting to change."""
    for item in planned:
        alone = alone_images(item.pool)
        if not alone:
            continue
        buckets = Buckets.for_dataset(item.dataset)
        by_reason: dict[str, list[str]] = {}
        for index, why in alone.items():
            by_reason.setdefault(why, []).append(item.pool.sources[index].path)
        area = by_reason.get("area", [])
        if area and buckets.no_upscale:
            findings.append(
                Finding(
                    "info",
                    "trains_alone",
                    f"{item.subset.image_dir}: {len(area)} images have no partner of a similar size and train alone at "
                    "their own bucket (bucket_no_upscale = true: a collage frame keeps its smallest member's scale, "
                    f"so it would be smaller than a larger partner's bucket): {_names(area)}",
                    area[0],
                )
            )
        elif area:
            findings.append(
                Finding(
                    "warning",
                    "trains_alone",
                    f"{item.subset.image_dir}: {len(area)} images train alone because max_bucket_reso = "
                    f"{buckets.max_reso} caps their collage frames below the bucket each gets alone ({_names(area)}); "
                    f"set max_bucket_reso = {2 * max(buckets.resolution)} so they share frames at full size",
                    area[0],
                )
            )
        span = by_reason.get("span", [])
        if span:
            findings.append(
                Finding(
                    "info",
                    "trains_alone",
                    f"{item.subset.image_dir}: {len(span)} images cannot keep the scale rule beside a partner in the "
                    f"fixed {item.pool.frame} frame and train alone, as sd-scripts would train them ({_names(span)}); "
                    f"enable_bucket = true gives them content-shaped frames, a larger collage_max_crop crops more "
                    f"(now {item.pool.max_crop:g})",
                    span[0],
                )
            )


def check_singles(
    project: Project,
    planned: Sequence[PlannedSubset],
    frameset: FrameSet,
    measures: dict[str, ImageMeasures],
    broken: set[str],
    reported: set[str],
    findings: list[Finding],
) -> None:
    """Images trained single (plain subsets and collage leftovers) that sd-scripts magnifies too much."""
    collage_ids = {id(p.subset) for p in planned}
    single_paths: dict[str, tuple[DatasetSpec, SubsetSpec]] = {}
    for dataset, subset in project.subsets():
        if id(subset) not in collage_ids:
            single_paths.update({im.path: (dataset, subset) for im in subset.images})
    for item, index, _ in frameset.singles:
        single_paths[item.pool.sources[index].path] = (item.dataset, item.subset)
    buckets: dict[int, Buckets] = {}
    for path, (dataset, subset) in single_paths.items():
        m = measures.get(path)
        if path in broken or m is None or path in reported:
            continue
        bucket = buckets.setdefault(dataset.index, Buckets.for_dataset(dataset))
        reso, scale = bucket.select(m.size)
        effective = scale * m.detail_factor
        limit = subset.config.max_upscale
        if effective > limit + 1e-9:
            detail = (
                f" and holds only the detail of ~{m.effective_size} (detail factor {m.detail_factor:g})"
                if m.detail_factor > 1
                else ""
            )
            findings.append(
                Finding(
                    "warning",
                    "upscaled_image",
                    f"{path} is {m.size}{detail}: trained as a single image it is magnified {effective:.1f}x to its "
                    f"{reso[0]}x{reso[1]} bucket, more than {limit:g} (collage_max_upscale): upscaled pixels add "
                    "nothing — use a larger original or remove it",
                    path,
                )
            )


def _caption_file(path: str, subset: SubsetSpec) -> str:
    candidate = os.path.splitext(path)[0] + str(subset.params.get("caption_extension") or ".caption")
    return candidate if os.path.isfile(candidate) else path


def check_captions(project: Project, encoder: TextEncoder, broken: set[str], findings: list[Finding]) -> None:
    budget, counter = encoder.budget, encoder.counter
    for _, subset in project.subsets():
        grammar_phrases = subset.config.repeat_phrases
        for image in subset.images:
            if image.path in broken or not image.caption:
                continue
            tokens = count_caption(image.caption, budget, counter)
            file = _caption_file(image.path, subset)
            if tokens.overflow:
                findings.append(
                    Finding(
                        "warning",
                        "caption_overflow",
                        f"{file}: caption has {tokens.total} tokens, {tokens.overflow} past the "
                        f"{budget.max_tokens}-token budget ({encoder.short}); the text past it is cut off and never "
                        "trained — shorten it" + encoder.raise_hint,
                        file,
                    )
                )
            if grammar_phrases:
                from collage_ext.captions.subset import grammar_of

                for phrase, start in phrases_past_budget(
                    image.caption, grammar_phrases, budget, counter, grammar_of(subset.namespace())
                ):
                    findings.append(
                        Finding(
                            "warning",
                            "phrase_past_budget",
                            f"{file}: repeated phrase {phrase!r} first appears at token {start}, past the "
                            f"{budget.max_tokens}-token budget: it is cut off and never trained — move it to the front",
                            file,
                        )
                    )


def check_frame_captions(frameset: FrameSet, encoder: TextEncoder, findings: list[Finding]) -> None:
    """Merged collage captions past the budget, aggregated per subset with examples."""
    over: dict[str, list[str]] = {}
    late: dict[str, list[str]] = {}
    totals: Counter[str] = Counter()
    for job in progress(frameset.jobs, "checking frame captions", "frame"):
        key = job.planned.subset.image_dir or job.planned.pool.key
        totals[key] += 1
        tokens = count_caption(job.caption, encoder.budget, encoder.counter)
        names = " + ".join(Path(s.path).name for s in job.sources)
        if tokens.overflow:
            over.setdefault(key, []).append(f"{names} ({tokens.total} tokens)")
        for phrase, start in phrases_past_budget(
            job.caption,
            job.planned.subset.config.repeat_phrases,
            encoder.budget,
            encoder.counter,
            job.planned.collage.grammar,
        ):
            late.setdefault(key, []).append(f"{names}: {phrase!r} at token {start}")
    when = "per epoch" if frameset.epoch is None else f"in epoch {frameset.epoch}"
    for key, items in over.items():
        findings.append(
            Finding(
                "warning",
                "frame_caption_overflow",
                f"{key}: {len(items)} of {totals[key]} collage frames {when} merge captions longer than the "
                f"{encoder.budget.max_tokens}-token budget (the end is cut off), e.g. {'; '.join(items[:EXAMPLES])}; "
                'shorten the captions, use collage_caption_merge = "tags", or lower collage_max_images',
                key,
            )
        )
    for key, items in late.items():
        findings.append(
            Finding(
                "warning",
                "frame_phrase_past_budget",
                f"{key}: in {len(items)} collage frames {when} a repeated phrase only appears past the token budget, "
                f"e.g. {'; '.join(items[:EXAMPLES])}; move the phrase to the front of the captions",
                key,
            )
        )


def check_leftovers(planned: Sequence[PlannedSubset], frameset: FrameSet, findings: list[Finding]) -> None:
    sizes_text = {}
    for item in planned:
        config = item.subset.config
        sizes = group_sizes(config)
        sizes_text[id(item)] = "/".join(str(s) for s in sizes)
        smallest = sizes[0] if sizes else 2
        structure = item.pool.structure
        alone = alone_images(item.pool)  # no partner of their shape / size: not leftovers of a division
        small = sum(
            r.num_repeats for i, r in enumerate(item.pool.records) if structure.level[i] < smallest or i in alone
        )
        leftover = sum(structure.single_repeats) - small
        if frameset.mode == "static":
            leftover = item.static_leftovers + (sum(structure.single_repeats) - small if config.rate >= 1 else 0)
        if config.rate >= 1 and leftover > 0:
            findings.append(
                Finding(
                    "warning",
                    "single_leftovers",
                    f"subset {item.subset.image_dir}: {leftover} image repeats per epoch are left over and train as "
                    f"single images although collage_rate = 1: {len(item.pool.sources) - _count_small(item, smallest)} "
                    f"collage-ready images x their repeats do not divide into frames of {sizes_text[id(item)]} images"
                    + (f" in each of the {config.variants} static variants" if frameset.mode == "static" else "")
                    + "; add or remove an image, allow more layouts, or ignore this if a few singles are fine",
                    item.subset.image_dir,
                )
            )


def check_cropped_singles(frameset: FrameSet, findings: list[Finding]) -> None:
    """Say that images with a crop box that train alone train only their box (as in training)."""
    by_subset: dict[str, list[str]] = {}
    for item, index, _ in frameset.singles:
        source = item.pool.sources[index]
        if source.crop is not None:
            names = by_subset.setdefault(item.subset.image_dir or item.pool.key, [])
            if os.path.basename(source.path) not in names:
                names.append(os.path.basename(source.path))
    for key, names in by_subset.items():
        shown = ", ".join(names[:EXAMPLES]) + (f" and {len(names) - EXAMPLES} more" if len(names) > EXAMPLES else "")
        findings.append(
            Finding(
                "info",
                "cropped_singles",
                f"{key}: {len(names)} image(s) with a crop box train as "
                f"single images ({shown}): cropped to the box, as in their collage cells",
                key,
            )
        )


def _count_small(item: PlannedSubset, smallest: int) -> int:
    return sum(1 for lv in item.pool.structure.level if lv < smallest)
