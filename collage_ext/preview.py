"""``collage-ext preview``: write the frames training sees in one epoch, with captions, masks and a contact sheet.

For every collage frame of the epoch (dynamic mode) or every static frame, ``OUT/frames/`` gets

* ``<name>.png`` — the frame, pixel for pixel what ``CollageDataset`` hands sd-scripts (before
  sd-scripts resizes it to its bucket and applies flip / colour augmentation);
* ``<name>.txt`` — the merged caption (before sd-scripts' shuffle / keep_tokens / dropout);
* ``<name>_mask.png`` — white where the frame is padding (fill, gutters, letterboxes);
* ``<name>.json`` — sources, crop boxes, cells, layout, seed, params and token counts.

``OUT/index.html`` is a contact sheet that opens in any browser from disk (no server, no
JavaScript), ``OUT/contact_sheet.png`` the same as one image, and ``OUT/manifest.json`` all of it
for machines.
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

from PIL import Image, ImageDraw

from . import __version__
from .datasets import Finding, Project
from .frames import encode_png
from .framesets import FrameJob, FrameSet, TextEncoder
from .parallel import write_bytes_atomic
from .render import RenderResult
from .renderjobs import render_jobs
from .quality import CaptionTokens, count_caption, phrases_past_budget

logger = logging.getLogger(__name__)

THUMB = 320
#: Frames on ``contact_sheet.png`` (index.html shows all of them).
SHEET_LIMIT = 48


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


def frame_record(job: FrameJob, encoder: TextEncoder) -> FrameEntry:
    """Describe a frame: layout, sources, caption, token use and caption warnings."""
    planned = job.planned
    caption = job.caption
    tokens = count_caption(caption, encoder.budget, encoder.counter)
    warnings = []
    names = [Path(s.path).name for s in job.sources]
    if tokens.overflow:
        warnings.append(f"caption has {tokens.total} tokens, {tokens.overflow} past the {encoder.budget.max_tokens}-"
                        f"token budget are cut off (never trained)")
    for phrase, start in phrases_past_budget(caption, planned.subset.config.repeat_phrases, encoder.budget,
                                             encoder.counter, planned.collage.grammar):
        warnings.append(f"phrase {phrase!r} first appears at token {start}, past the budget: it is never trained")
    layout = job.params.layout
    stats = job.stats
    min_span = planned.subset.config.min_span
    short = [Path(s.path).name for s, span in zip(job.sources, stats.spans) if span < min_span - 1e-9]
    if short and min_span > 0:
        warnings.append(f"scale rule: {', '.join(short)} span{'s' if len(short) == 1 else ''} less than "
                        f"{min_span:g} of the frame (layout {layout.name})")
    cells = []
    for cell, index, position in zip(layout.cells, layout.order, layout.names or [""] * len(layout.cells)):
        source = job.sources[index]
        cells.append({"rect": list(cell), "position": position, "key": source.key, "path": source.path,
                      "size": list(source.size), "crop": list(source.crop) if source.crop else None,
                      "span": round(stats.spans[index], 4)})
    where = job.variant if job.variant is not None else job.slot
    label = (f"dataset {planned.dataset.index} / subset {planned.subset.index} ({planned.subset.name}), "
             f"{'variant' if job.variant is not None else 'slot'} {where}")
    info = {
        "name": job.name, "dataset": planned.dataset.index, "subset": planned.subset.index,
        "image_dir": planned.subset.image_dir, "pool_key": planned.pool.key, "slot": job.slot,
        "variant": job.variant, "seed": planned.pool.seed, "frame": list(layout.frame),
        "fill": round(stats.fill, 4), "layout": layout.name, "cells": cells, "sources": [s.path for s in job.sources], "caption": caption,
        "tokens": {"encoder": encoder.label, "total": tokens.total, "chunks": list(tokens.chunks),
                   "max": encoder.budget.max_tokens, "exact": encoder.exact},
        "params": job.params.to_json(), "collage_ext": __version__,
    }
    return FrameEntry(job.name, layout.name, label, names, caption, tokens, warnings, info)


def write_frames(jobs: Sequence[FrameJob], out: Path, encoder: TextEncoder, *, masks: bool = True,
                 desc: str = "rendering frames", jobs_n: int | None = None) -> list[FrameEntry]:
    """Render each job into ``out/frames`` (PNG, caption, mask, JSON) and a thumbnail into ``out/thumbs``.

    Frames render on ``jobs_n`` processes (``parallel.default_jobs``); files are written here, in
    order and atomically, so the output is the same bytes as a serial run's and Ctrl+C leaves no
    partial file.
    """
    frames_dir, thumbs_dir = out / "frames", out / "thumbs"
    frames_dir.mkdir(parents=True, exist_ok=True)
    thumbs_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for job, files, error in render_jobs(jobs, _encode_preview, with_mask=lambda job: masks, jobs_n=jobs_n,
                                         desc=desc):
        if error is not None:
            raise error
        png, mask_png, thumb_jpg, thumb_size = files
        write_bytes_atomic(frames_dir / f"{job.name}.png", png)
        if mask_png is not None:
            write_bytes_atomic(frames_dir / f"{job.name}_mask.png", mask_png)
        entry = frame_record(job, encoder)
        write_bytes_atomic(frames_dir / f"{job.name}.txt", (entry.caption + "\n").encode("utf-8"))
        write_bytes_atomic(frames_dir / f"{job.name}.json",
                           (json.dumps(entry.info, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
        write_bytes_atomic(thumbs_dir / f"{job.name}.jpg", thumb_jpg)
        entry.info["thumb_size"] = list(thumb_size)
        for warning in entry.warnings:
            logger.warning(f"{job.name}: {warning}")
        entries.append(entry)
    return entries


def _encode_preview(job: FrameJob, rendered: RenderResult) -> tuple[bytes, bytes | None, bytes, tuple[int, int]]:
    """The frame PNG, its mask PNG, the contact-sheet thumbnail (JPEG) and its size (run in a worker)."""
    image = Image.fromarray(rendered.image)
    mask = None
    if rendered.mask is not None:
        mask = encode_png(Image.fromarray(rendered.mask.astype("uint8") * 255))
    thumb = image.copy()
    thumb.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="JPEG", quality=88)
    return encode_png(image), mask, out.getvalue(), thumb.size


def run_preview(project: Project, frameset: FrameSet, encoder: TextEncoder, out: Path, *, count: int | None,
                title: str = "collage-ext preview", notes: Sequence[str] = (),
                jobs_n: int | None = None) -> list[FrameEntry]:
    """Write the frames (at most ``count``), the contact sheets and the manifest; returns the entries."""
    out.mkdir(parents=True, exist_ok=True)
    jobs = frameset.jobs if count is None else frameset.jobs[:count]
    entries = write_frames(jobs, out, encoder, jobs_n=jobs_n)
    summary = summarize(project, frameset, encoder, len(jobs))
    all_notes = list(notes)
    if count is not None and count < len(frameset.jobs):
        all_notes.append(f"showing the first {count} of {len(frameset.jobs)} collage frames (--count)")
    write_index_html(out / "index.html", entries, title=title, summary=summary, findings=project.findings,
                     notes=all_notes, singles=_singles(frameset))
    write_contact_sheet([(out / "frames" / f"{e.name}.png", e.layout) for e in entries[:SHEET_LIMIT]],
                        out / "contact_sheet.png")
    manifest = {"collage_ext": __version__, "summary": summary, "frames": [e.info for e in entries],
                "singles": _singles(frameset), "findings": [f.to_json() for f in project.findings]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return entries


def summarize(project: Project, frameset: FrameSet, encoder: TextEncoder, written: int) -> dict[str, Any]:
    """The header facts of a preview (also stored in the manifest)."""
    singles = sum(n for _, _, n in frameset.singles)
    stats = frameset.summary()
    return {
        "source": project.source, "seed": project.seed, "seed_why": project.seed_why, "mode": project.mode,
        "mode_why": project.mode_why, "epoch": frameset.epoch, "collage_frames": len(frameset.jobs),
        "frames_written": written, "single_samples_in_collage_subsets": singles, "text_encoder": encoder.label,
        "frame_stats": stats.text(), "mean_fill": round(stats.mean_fill, 4), "min_fill": round(stats.fill_min, 4),
        "span_share": round(stats.span_share, 4), "images_per_frame": round(stats.images_per_frame, 4),
    }


def _singles(frameset: FrameSet) -> list[dict[str, Any]]:
    return [{"path": item.pool.sources[i].path, "repeats": n, "dataset": item.dataset.index,
             "subset": item.subset.index} for item, i, n in frameset.singles]


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


def write_index_html(path: Path, entries: Sequence[FrameEntry], *, title: str, summary: dict[str, Any],
                     findings: Sequence[Finding] = (), notes: Sequence[str] = (),
                     singles: Sequence[dict[str, Any]] = ()) -> Path:
    """A self-contained contact sheet: thumbnails, layout names, captions, token counts, warnings.

    It references only files next to it (relative links), has no JavaScript and no external
    resources, so it opens from disk in any browser.
    """
    e = html.escape
    rows = "".join(f"<dt>{e(str(k).replace('_', ' '))}</dt><dd>{e(str(v))}</dd>" for k, v in summary.items()
                   if v is not None)
    note_items = "".join(f"<li>{e(n)}</li>" for n in notes)
    finding_items = "".join(f'<li class="{e(f.level)}">{e(f.level)}: {e(f.message)}</li>' for f in findings)
    cards = []
    for entry in entries:
        width, height = entry.info.get("thumb_size", [THUMB, THUMB])
        warn = "".join(f'<div class="warn">⚠ {e(w)}</div>' for w in entry.warnings)
        spans = " · ".join(f"{Path(str(c['path'])).name} {c['span']:.2f}" for c in entry.info.get("cells", [])
                           if "span" in c)
        frame = entry.info.get("frame") or ["?", "?"]
        fill = entry.info.get("fill")
        cards.append(
            f'<figure id="{e(entry.name)}">'
            f'<a href="frames/{e(entry.name)}.png"><img src="thumbs/{e(entry.name)}.jpg" width="{width}" '
            f'height="{height}" alt="{e(entry.name)}, layout {e(entry.layout)}"></a>'
            f'<figcaption><div><span class="layout">{e(entry.layout)}</span> · {len(entry.sources)} images · '
            f'{e(entry.group_label)}</div>'
            f'<div class="name">{e(entry.name)}</div>'
            f'<div class="name">{e(" + ".join(entry.sources))}</div>'
            f'<div class="stats">frame {frame[0]}x{frame[1]}'
            + (f' · fill {fill:.2f}' if fill is not None else '') + f' · span {e(spans)}</div>'
            f'<div class="caption">{e(entry.caption)}</div>'
            f'<div class="tokens">tokens {e(entry.tokens.describe())}</div>{warn}'
            f'<div><a href="frames/{e(entry.name)}.png">frame</a> · <a href="frames/{e(entry.name)}_mask.png">'
            f'padding mask</a> · <a href="frames/{e(entry.name)}.txt">caption</a> · '
            f'<a href="frames/{e(entry.name)}.json">params</a></div></figcaption></figure>')
    single_rows = "".join(f"<tr><td>{e(str(s['path']))}</td><td>{s['repeats']}</td></tr>" for s in singles)
    singles_html = (f"<details><summary>{len(singles)} images also train as single images (not shown)</summary>"
                    f"<table><tr><th>image</th><th>repeats per epoch</th></tr>{single_rows}</table></details>"
                    if singles else "")
    empty = "" if entries else "<p style='padding:0 24px'>No collage frames: every sample is a single image.</p>"
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{e(title)}</title>"
        f"<link rel=\"icon\" href=\"data:,\"><style>{_CSS}</style></head><body>"
        f"<header><h1>{e(title)}</h1><dl>{rows}</dl>"
        + (f"<ul class=\"notes\">{note_items}</ul>" if note_items else "")
        + (f"<ul class=\"findings\">{finding_items}</ul>" if finding_items else "")
        + f"</header><main>{''.join(cards)}</main>{empty}{singles_html}</body></html>\n"
    )
    path.write_text(page, encoding="utf-8")
    return path


def write_contact_sheet(frames: Sequence[tuple[Path, str]], out: Path, thumb: int = 256) -> Path:
    """One PNG with every frame as a labelled thumbnail: the quickest way to eyeball a plan."""
    cols = min(4, max(1, len(frames)))
    rows = max(1, -(-len(frames) // cols))
    label = 18
    sheet = Image.new("RGB", (cols * (thumb + 8) + 8, rows * (thumb + label + 8) + 8), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for n, (path, name) in enumerate(frames):
        x, y = 8 + (n % cols) * (thumb + 8), 8 + (n // cols) * (thumb + label + 8)
        with Image.open(path) as img:
            img.thumbnail((thumb, thumb))
            sheet.paste(img, (x, y))
        draw.text((x, y + thumb + 3), f"{path.stem[-24:]}  {name}", fill=(0, 0, 0))
    sheet.save(out)
    return out
