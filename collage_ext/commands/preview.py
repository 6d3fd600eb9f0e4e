"""``collage-ext preview``: write the frames training sees in one epoch, with captions, masks and a contact sheet.

For every collage frame of the epoch (dynamic mode) or every static frame, ``OUT/frames/`` gets

* ``<name>.png`` — the frame, pixel for pixel what ``CollageDataset`` hands sd-scripts (before
  sd-scripts resizes it to its bucket and applies flip / colour augmentation); RGBA when it carries
  loss weights (``collage_loss_mask``'s padding weight, the sources' own alpha with ``alpha_mask``);
* ``<name>.txt`` — the merged caption (before sd-scripts' shuffle / keep_tokens / dropout);
* ``<name>_mask.png`` — white where the frame is padding (fill, gutters, letterboxes);
* ``<name>_weight.png`` — RGBA frames only: the loss weight (the alpha channel), white = full weight;
* ``<name>.json`` — sources, crop boxes, cells, layout, seed, params and token counts.

``OUT/index.html`` is a contact sheet that opens in any browser from disk (no server, no
JavaScript), ``OUT/contact_sheet.png`` the same as one image, and ``OUT/manifest.json`` all of it
for machines. Thumbnails show where the loss weight is below 1 as a checkerboard (``viewable``).
"""

from __future__ import annotations

import html
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from collage_ext.commands.quality import CaptionTokens, count_caption, phrases_past_budget
from collage_ext.commands.renderjobs import render_jobs
from collage_ext.core.filemodes import write_bytes_atomic
from collage_ext.core.parallel import ordered_map
from collage_ext.core.version import __version__
from collage_ext.kohya.datasets import Finding
from collage_ext.pixels.render import RenderResult
from collage_ext.plan.frames import PNG_LEVEL, encode_png, frame_pixels
from collage_ext.plan.framesets import TextEncoder
from collage_ext.plan.jobs import FrameJob, FrameSet
from collage_ext.plan.project import Project

logger = logging.getLogger(__name__)

THUMB = 320
#: Frames on ``contact_sheet.png`` (index.html shows all of them).
SHEET_LIMIT = 48
#: Checkerboard behind loss weights below 1 (``viewable``): square side in pixels and its two grays.
CHECKER = (8, (102, 102, 102), (153, 153, 153))


def viewable(image: Image.Image) -> Image.Image:
    """An RGB view of a frame: where an RGBA frame's alpha (its loss weight) is below 255, a checkerboard shows through.

    The usual picture of transparency, so masked-out backgrounds and zero-weight padding are told
    apart from trained pixels at a glance; RGB frames are returned unchanged.
    """
    if image.mode != "RGBA":
        return image.convert("RGB")
    side, dark, light = CHECKER
    ys, xs = np.indices((image.height, image.width))
    board = np.where(
        (((ys // side) + (xs // side)) % 2 == 0)[:, :, None], np.array(light, np.uint8), np.array(dark, np.uint8)
    )
    return Image.alpha_composite(Image.fromarray(board.astype(np.uint8)).convert("RGBA"), image).convert("RGB")


@dataclass
class FrameEntry:
    """One written frame, for the contact sheet and the manifest."""

    name: str
    layout: str
    group_label: str
    sources: list[str]
    caption: str
    tokens: CaptionTokens
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def group_label(job: FrameJob) -> str:
    """Where a frame comes from, e.g. ``dataset 0 / subset 1 (10_cat), slot 3``."""
    planned = job.planned
    where = job.variant if job.variant is not None else job.slot
    return (
        f"dataset {planned.dataset.index} / subset {planned.subset.index} ({planned.subset.name}), "
        f"{'variant' if job.variant is not None else 'slot'} {where}"
    )


def frame_record(job: FrameJob, encoder: TextEncoder) -> FrameEntry:
    """Describe a frame: layout, sources, caption, token use and caption warnings."""
    planned = job.planned
    caption = job.caption
    tokens = count_caption(caption, encoder.budget, encoder.counter)
    warnings = []
    layout = job.params.layout
    reading = sorted(range(len(layout.cells)), key=lambda c: (layout.cells[c].y, layout.cells[c].x))
    names = [Path(job.sources[layout.order[c]].path).name for c in reading]  # left to right, top to bottom
    if tokens.overflow:
        warnings.append(
            f"caption has {tokens.total} tokens, {tokens.overflow} past the {encoder.budget.max_tokens}-"
            f"token budget are cut off (never trained)"
        )
    for phrase, start in phrases_past_budget(
        caption, planned.subset.config.repeat_phrases, encoder.budget, encoder.counter, planned.collage.grammar
    ):
        warnings.append(f"phrase {phrase!r} first appears at token {start}, past the budget: it is never trained")
    stats = job.stats
    min_span = planned.subset.config.min_span
    short = [Path(s.path).name for s, span in zip(job.sources, stats.spans) if span < min_span - 1e-9]
    if short and min_span > 0:
        warnings.append(
            f"scale rule: {', '.join(short)} span{'s' if len(short) == 1 else ''} less than "
            f"{min_span:g} of the frame (layout {layout.name})"
        )
    cells = []
    positions = layout.names or [""] * len(layout.cells)
    for c in reading:
        cell, index, position = layout.cells[c], layout.order[c], positions[c]
        source = job.sources[index]
        cells.append(
            {
                "rect": list(cell),
                "position": position,
                "key": source.key,
                "path": source.path,
                "size": list(source.size),
                "crop": list(source.crop) if source.crop else None,
                "span": round(stats.spans[index], 4),
            }
        )
    label = group_label(job)
    info = {
        "name": job.name,
        "dataset": planned.dataset.index,
        "subset": planned.subset.index,
        "image_dir": planned.subset.image_dir,
        "pool_key": planned.pool.key,
        "slot": job.slot,
        "variant": job.variant,
        "seed": planned.pool.seed,
        "frame": list(layout.frame),
        "fill": round(stats.fill, 4),
        "layout": layout.name,
        "cells": cells,
        "sources": [s.path for s in job.sources],
        "caption": caption,
        "tokens": {
            "encoder": encoder.label,
            "total": tokens.total,
            "chunks": list(tokens.chunks),
            "max": encoder.budget.max_tokens,
            "exact": encoder.exact,
        },
        "params": job.params.to_json(),
        "collage_ext": __version__,
    }
    return FrameEntry(job.name, layout.name, label, names, caption, tokens, warnings, info)


def write_frames(
    jobs: Sequence[FrameJob],
    out: Path,
    encoder: TextEncoder,
    *,
    masks: bool = True,
    desc: str = "rendering frames",
    jobs_n: int | None = None,
) -> list[FrameEntry]:
    """Render each job into ``out/frames`` (PNG, caption, mask, JSON) and a thumbnail into ``out/thumbs``.

    Frames render on ``jobs_n`` processes (``parallel.default_jobs``); files are written here, in
    order and atomically, so the output is the same bytes as a serial run's and Ctrl+C leaves no
    partial file.
    """
    frames_dir, thumbs_dir = out / "frames", out / "thumbs"
    frames_dir.mkdir(parents=True, exist_ok=True)
    thumbs_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for job, files, error in render_jobs(
        jobs,
        _encode_preview,
        with_mask=lambda job: masks or job.planned.subset.config.loss_mask,
        jobs_n=jobs_n,
        desc=desc,
    ):
        if error is not None:
            raise error
        png, mask_png, weight_png, thumb_jpg, thumb_size = files
        write_bytes_atomic(frames_dir / f"{job.name}.png", png)
        if mask_png is not None and masks:
            write_bytes_atomic(frames_dir / f"{job.name}_mask.png", mask_png)
        if weight_png is not None:
            write_bytes_atomic(frames_dir / f"{job.name}_weight.png", weight_png)
        entry = frame_record(job, encoder)
        entry.info["loss_weight"] = weight_png is not None
        write_bytes_atomic(frames_dir / f"{job.name}.txt", (entry.caption + "\n").encode("utf-8"))
        write_bytes_atomic(
            frames_dir / f"{job.name}.json",
            (json.dumps(entry.info, indent=1, ensure_ascii=False) + "\n").encode("utf-8"),
        )
        write_bytes_atomic(thumbs_dir / f"{job.name}.jpg", thumb_jpg)
        entry.info["thumb_size"] = list(thumb_size)
        for warning in entry.warnings:
            logger.warning(f"{job.name}: {warning}")
        entries.append(entry)
    return entries


#: What a preview writes per frame, under ``frames/`` and ``thumbs/``.
_FRAME_FILES = (
    ("frames", ".png"),
    ("frames", "_mask.png"),
    ("frames", "_weight.png"),
    ("frames", ".txt"),
    ("frames", ".json"),
    ("thumbs", ".jpg"),
)


def clear_previous(out: Path) -> int:
    """Remove the frames an earlier preview wrote into ``out`` (named by its manifest); returns how many.

    Only files the earlier manifest names are removed, so a reused ``--out`` never mixes the frames
    of two runs and nothing else in the folder is touched.
    """
    try:
        old = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    if not isinstance(old, dict) or "collage_ext" not in old or "summary" not in old:
        return 0  # not a preview's manifest (an export's has no summary): leave the folder alone
    removed = 0
    for frame in old.get("frames") or []:
        name = frame.get("name") if isinstance(frame, dict) else None
        if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
            continue
        for folder, suffix in _FRAME_FILES:
            path = out / folder / f"{name}{suffix}"
            if path.is_file():
                path.unlink()
                removed += 1
    if removed:
        logger.info(f"removed the {len(old.get('frames') or [])} frames of the earlier preview in {out}")
    return removed


def _encode_preview(
    job: FrameJob, rendered: RenderResult
) -> tuple[bytes, bytes | None, bytes | None, bytes, tuple[int, int]]:
    """The frame PNG (as the adapter hands it: RGBA when it carries loss weights), its padding mask PNG,
    its weight PNG (the alpha as gray), the contact-sheet thumbnail (JPEG, weights < 1 on a checkerboard)
    and the thumbnail's size (run in a worker)."""
    image = Image.fromarray(frame_pixels(rendered, job.planned.subset.config))
    mask = None
    if rendered.mask is not None:
        mask = encode_png(Image.fromarray(rendered.mask.astype("uint8") * 255))
    weight = encode_png(image.getchannel("A")) if image.mode == "RGBA" else None
    thumb = image.copy()
    thumb.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    viewable(thumb).save(out, format="JPEG", quality=88)
    return encode_png(image), mask, weight, out.getvalue(), thumb.size


def run_preview(
    project: Project,
    frameset: FrameSet,
    encoder: TextEncoder,
    out: Path,
    *,
    count: int | None,
    title: str = "collage-ext preview",
    notes: Sequence[str] = (),
    jobs_n: int | None = None,
) -> list[FrameEntry]:
    """Write the frames (at most ``count``), the contact sheets and the manifest; returns the entries."""
    out.mkdir(parents=True, exist_ok=True)
    clear_previous(out)
    jobs = frameset.jobs if count is None else frameset.jobs[:count]
    entries = write_frames(jobs, out, encoder, jobs_n=jobs_n)
    summary = summarize(project, frameset, encoder, len(jobs))
    all_notes = list(notes)
    if count is not None and count < len(frameset.jobs):
        all_notes.append(f"showing the first {count} of {len(frameset.jobs)} collage frames (--count)")
    write_index_html(
        out / "index.html",
        entries,
        title=title,
        summary=summary,
        findings=project.findings,
        notes=all_notes,
        singles=_singles(frameset),
    )
    write_contact_sheet(
        [(out / "frames" / f"{e.name}.png", e.layout) for e in sheet_entries(entries)],
        out / "contact_sheet.png",
        jobs_n=jobs_n,
    )
    manifest = {
        "collage_ext": __version__,
        "summary": summary,
        "frames": [e.info for e in entries],
        "singles": _singles(frameset),
        "findings": [f.to_json() for f in project.findings],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return entries


def summarize(project: Project, frameset: FrameSet, encoder: TextEncoder, written: int) -> dict[str, Any]:
    """The header facts of a preview (also stored in the manifest)."""
    singles = sum(n for _, _, n in frameset.singles)
    stats = frameset.summary()
    return {
        "source": project.source,
        "seed": project.seed,
        "seed_why": project.seed_why,
        "mode": project.mode,
        "mode_why": project.mode_why,
        "epoch": frameset.epoch,
        "collage_frames": len(frameset.jobs),
        "frames_written": written,
        "single_samples_in_collage_subsets": singles,
        "text_encoder": encoder.label,
        "frame_stats": stats.text(),
        "mean_fill": round(stats.mean_fill, 4),
        "min_fill": round(stats.fill_min, 4),
        "span_share": round(stats.span_share, 4),
        "images_per_frame": round(stats.images_per_frame, 4),
    }


def _singles(frameset: FrameSet) -> list[dict[str, Any]]:
    return [
        {
            "path": item.pool.sources[i].path,
            "repeats": n,
            "dataset": item.dataset.index,
            "subset": item.subset.index,
            "crop": list(item.pool.sources[i].crop or ()) or None,
        }
        for item, i, n in frameset.singles
    ]


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#181818;color:#ddd}
header{padding:16px 24px;background:#222;border-bottom:1px solid #333}
h1{font-size:20px;margin:0 0 8px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}
dt{color:#999}dd{margin:0}
.notes li,.findings li{margin:2px 0}.error{color:#ff8080}.warning{color:#ffd27f}.info{color:#9cf}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:16px;padding:16px 24px}
figure{margin:0;background:#222;border:1px solid #333;border-radius:6px;padding:10px}
figure img{display:block;max-width:100%;height:auto;background:#181818;margin:0 auto}
figcaption{margin-top:8px}
.name{font:12px monospace;color:#aaa;word-break:break-all}
.layout{font-weight:bold;color:#fff}
.caption{white-space:pre-wrap;background:#1b1b1b;padding:6px;border-radius:4px;margin:6px 0}
.tokens{font:12px monospace;color:#9c9}
.warn{color:#ffd27f;margin:4px 0}
.stats{font:12px monospace;color:#bbb}
a{color:#8bf}
details{padding:0 24px 24px}
table{border-collapse:collapse}td,th{border-bottom:1px solid #333;padding:2px 8px;text-align:left}
"""


def write_index_html(
    path: Path,
    entries: Sequence[FrameEntry],
    *,
    title: str,
    summary: dict[str, Any],
    findings: Sequence[Finding] = (),
    notes: Sequence[str] = (),
    singles: Sequence[dict[str, Any]] = (),
) -> Path:
    """A self-contained contact sheet: thumbnails, layout names, captions, token counts, warnings.

    It references only files next to it (relative links), has no JavaScript and no external
    resources, so it opens from disk in any browser.
    """
    e = html.escape
    rows = "".join(
        f"<dt>{e(str(k).replace('_', ' '))}</dt><dd>{e(str(v))}</dd>" for k, v in summary.items() if v is not None
    )
    note_items = "".join(f"<li>{e(n)}</li>" for n in notes)
    finding_items = "".join(f'<li class="{e(f.level)}">{e(f.level)}: {e(f.message)}</li>' for f in findings)
    cards = []
    for entry in entries:
        width, height = entry.info.get("thumb_size", [THUMB, THUMB])
        warn = "".join(f'<div class="warn">⚠ {e(w)}</div>' for w in entry.warnings)
        spans = " · ".join(
            f"{Path(str(c['path'])).name} {c['span']:.2f}" for c in entry.info.get("cells", []) if "span" in c
        )
        frame = entry.info.get("frame") or ["?", "?"]
        fill = entry.info.get("fill")
        cards.append(
            f'<figure id="{e(entry.name)}">'
            f'<a href="frames/{e(entry.name)}.png"><img src="thumbs/{e(entry.name)}.jpg" width="{width}" '
            f'height="{height}" alt="{e(entry.name)}, layout {e(entry.layout)}"></a>'
            f'<figcaption><div><span class="layout">{e(entry.layout)}</span> · {len(entry.sources)} images · '
            f"{e(entry.group_label)}</div>"
            f'<div class="name">{e(entry.name)}</div>'
            f'<div class="name">{e(" + ".join(entry.sources))}</div>'
            f'<div class="stats">frame {frame[0]}x{frame[1]}'
            + (f" · fill {fill:.2f}" if fill is not None else "")
            + f" · span {e(spans)}</div>"
            f'<div class="caption">{e(entry.caption)}</div>'
            f'<div class="tokens">tokens {e(entry.tokens.describe())}</div>{warn}'
            f'<div><a href="frames/{e(entry.name)}.png">frame</a> · <a href="frames/{e(entry.name)}_mask.png">'
            f"padding mask</a> · "
            + (
                f'<a href="frames/{e(entry.name)}_weight.png">loss weight</a> (checkerboard: weight &lt; 1) · '
                if entry.info.get("loss_weight")
                else ""
            )
            + f'<a href="frames/{e(entry.name)}.txt">caption</a> · '
            f'<a href="frames/{e(entry.name)}.json">params</a></div></figcaption></figure>'
        )
    single_rows = "".join(
        f"<tr><td>{e(str(s['path']))}</td><td>{s['repeats']}</td><td>"
        + (e(", ".join(str(v) for v in s["crop"])) if s.get("crop") else "whole image")
        + "</td></tr>"
        for s in singles
    )
    singles_html = (
        f"<details><summary>{len(singles)} images also train as single images (not shown)</summary>"
        "<table><tr><th>image</th><th>repeats per epoch</th><th>trained region (crop box)</th></tr>"
        f"{single_rows}</table></details>"
        if singles
        else ""
    )
    empty = "" if entries else "<p style='padding:0 24px'>No collage frames: every sample is a single image.</p>"
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{e(title)}</title>'
        f'<link rel="icon" href="data:,"><style>{_CSS}</style></head><body>'
        f"<header><h1>{e(title)}</h1><dl>{rows}</dl>"
        + (f'<ul class="notes">{note_items}</ul>' if note_items else "")
        + (f'<ul class="findings">{finding_items}</ul>' if finding_items else "")
        + f"</header><main>{''.join(cards)}</main>{empty}{singles_html}</body></html>\n"
    )
    path.write_text(page, encoding="utf-8")
    return path


def sheet_entries(entries: Sequence[FrameEntry], limit: int = SHEET_LIMIT) -> list[FrameEntry]:
    """At most ``limit`` frames for the contact sheet, every frame shape included.

    Frames are taken in turn from each frame size (portrait pairs, stacked landscapes, ...), in plan
    order within a size, so a set whose first 48 frames are all portraits still shows its landscapes.
    """
    groups: dict[tuple[int, ...], list[FrameEntry]] = {}
    for entry in entries:
        groups.setdefault(tuple(entry.info.get("frame") or ()), []).append(entry)
    chosen: list[FrameEntry] = []
    queues = [list(g) for g in groups.values()]
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    order = {id(e): n for n, e in enumerate(entries)}
    return sorted(chosen, key=lambda e: order[id(e)])


def _sheet_thumb(item: tuple[Path, int, int]) -> tuple[bytes, tuple[int, int]]:
    """One frame decoded and shrunk to its place on the contact sheet (run in a worker): RGB bytes and size."""
    path, w, h = item
    with Image.open(path) as img:
        small = viewable(img.resize((w, h), Image.Resampling.LANCZOS)).convert("RGB")  # checkerboard: loss weights
    return small.tobytes(), small.size


def write_contact_sheet(
    frames: Sequence[tuple[Path, str]], out: Path, thumb: int = 256, *, jobs_n: int | None = None
) -> Path:
    """One PNG with the frames as labelled thumbnails in justified rows: the quickest way to eyeball a plan.

    Thumbnails keep their frame's shape at a common row height (``thumb`` px), rows are filled up to
    the sheet width, so portraits and landscapes sit side by side without empty squares around them.
    Each frame is decoded and shrunk on ``jobs_n`` processes (``parallel.default_jobs``); the sheet is the
    same bytes as a serial run's.
    """
    label, gap = 16, 8
    width = 4 * thumb + 5 * gap
    sizes = []
    for path, _ in frames:
        with Image.open(path) as img:
            w, h = img.size
        sizes.append((max(1, round(thumb * 0.75 * w / h)), round(thumb * 0.75)))
    rows: list[list[int]] = [[]]
    x = gap
    for n, (w, _) in enumerate(sizes):
        if rows[-1] and x + min(w, width - 2 * gap) + gap > width:
            rows.append([])
            x = gap
        rows[-1].append(n)
        x += min(w, width - 2 * gap) + gap
    rows = [row for row in rows if row]  # no frames at all (every image trains single): an empty sheet
    placed: list[tuple[int, int, int, int, int]] = []  # frame index, x, y, w, h
    y = gap
    for r, row in enumerate(rows):
        natural = sum(min(sizes[n][0], width - 2 * gap) for n in row)
        room = width - gap * (len(row) + 1)
        factor = room / natural if r < len(rows) - 1 or natural > room else 1.0  # justify all but the last row
        x, h = gap, round(sizes[row[0]][1] * factor)
        for n in row:
            w = max(1, round(min(sizes[n][0], width - 2 * gap) * factor))
            placed.append((n, x, y, w, h))
            x += w + gap
        y += h + label + gap
    sheet = Image.new("RGB", (width, max(y, gap + label)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    smalls = ordered_map(_sheet_thumb, [(frames[n][0], w, h) for n, _, _, w, h in placed], jobs=jobs_n)
    for (n, x, y, w, h), (pixels, size) in zip(placed, smalls):
        path, name = frames[n]
        sheet.paste(Image.frombytes("RGB", size, pixels), (x, y))
        room = max(0, w // 6 - len(name) - 1)  # about 6 px per character of the default font
        draw.text((x, y + h + 2), f"{name} {path.stem[-room:] if room else ''}", fill=(220, 220, 220))
    sheet.save(out, compress_level=PNG_LEVEL)  # the frames' level: a quarter of the CPU for ~10 % more bytes
    return out
