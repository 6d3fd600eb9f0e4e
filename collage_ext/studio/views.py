"""What the studio page shows of the dataset: each image's description and the frames of an epoch.

The page's two big lists. Both are built from the CLI's own functions (``preview.frame_record`` for
captions, token counts and warnings; ``framestats`` for fill and spans) and cached by what they show,
so after an edit only the images and frames it changed are described again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from collage_ext.captions.subset import grammar_of
from collage_ext.commands.preview import frame_record, group_label
from collage_ext.core.errors import CollageConfigError, CollageError
from collage_ext.core.types import Size
from collage_ext.pixels.crops import read_crop_box
from collage_ext.pixels.images import read_image_size
from collage_ext.plan.jobs import FrameJob, FrameSet, frames_for
from collage_ext.studio.entries import Entry, stat_key
from collage_ext.studio.files import RefusedError, file_version
from collage_ext.studio.state import StudioState
from collage_ext.studio.tokens import caption_view, token_view


class Views(StudioState):
    """The page's lists of sources and frames (a part of ``Studio``; call with the studio's state set up)."""

    def sources(self, epoch: int = 1) -> dict[str, Any]:
        """Every image with caption, size, crop box and the frames of ``epoch`` it is in."""
        with self.lock:
            self._fresh()
            frames_of: dict[str, list[str]] = {}
            if self.entries:
                _, jobs = self._frameset(epoch)
                for name, job in jobs.items():
                    for source in job.sources:
                        frames_of.setdefault(source.path, []).append(name)
            described: dict[tuple[Any, ...], dict[str, Any]] = {}
            out = []
            for e in self.entries.values():
                # Described by its files; the frames it is in are added (a crop can regroup every frame).
                key = (
                    e.id,
                    e.dropped,
                    e.caption,
                    self.broken.get(str(e.path)),
                    stat_key(e.path),
                    stat_key(e.caption_file),
                    stat_key(e.crop_file),
                )
                found = self._described.get(key)
                if found is not None:
                    try:
                        self.folders.readable(e.path)  # still inside the image folders (no symlink out since)?
                    except RefusedError:
                        found = None
                if found is None:
                    found = self._describe(e, [])
                described[key] = found
                out.append({**found, "frames": frames_of.get(str(e.path), [])})
            self._described = described  # what is shown now: the next call reuses what did not change
            return {"version": self.version, "epoch": epoch, "sources": out}

    def _describe(self, e: Entry, frames: list[str]) -> dict[str, Any]:
        size: Size | None = None
        crop: list[int] | None = None
        problem = self.broken.get(str(e.path))
        why = self.outside.get(e.id) or self.folders.outside([e.path, e.caption_file, e.crop_file])
        if why:  # one of its files leads out of the dataset: show nothing read through it
            problem, e = why, Entry(e.id, e.path, e.dataset, e.subset, "", e.dropped)
        else:
            try:
                size = read_image_size(e.path)
                box = read_crop_box(e.path, size, e.subset.config.crop_extension)
                crop = [int(v) for v in box] if box else None
            except CollageError as exc:
                problem = problem or str(exc)
        text = None if why else self._caption_text(e)
        g = grammar_of(e.subset.namespace())
        cfg = e.subset.config
        view = (
            self._caption_view(text if text is not None else e.caption, g, cfg.repeat_phrases, cfg.repeat_count)
            if not e.dropped
            else None
        )
        return {
            "id": e.id,
            "name": e.path.name,
            "path": str(e.path),
            "subset": f"{e.dataset.index}/{e.subset.index}",
            "subset_name": e.subset.name,
            "collage": e.subset.config.enabled,
            "dropped": e.dropped,
            "size": list(size) if size else None,
            "crop": crop,
            "caption": e.caption,
            "image_version": None if why else "-".join(map(str, stat_key(e.path) or ())),  # its image URL's
            "caption_file": e.caption_file.name,
            "caption_text": text,
            "frames": frames,
            "problem": problem,
            "caption_version": None if self.folders.outside([e.caption_file]) else file_version(e.caption_file),
            "crop_version": None if self.folders.outside([e.crop_file]) else file_version(e.crop_file),
            "tokens": view,
            "can_write": not e.subset.params.get("metadata_file"),
        }

    def _caption_text(self, e: Entry) -> str | None:
        try:
            if not e.caption_file.is_file() or self.folders.outside([e.caption_file]):
                return None
            return e.caption_file.read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return None

    # -- frames -------------------------------------------------------------------------------
    def _frameset(self, epoch: int) -> tuple[FrameSet, dict[str, FrameJob]]:
        if epoch < 1:
            raise CollageConfigError(f"epoch must be at least 1 (sd-scripts counts epochs from 1), got {epoch}")
        key = (self.version, 1 if self.mode == "static" else epoch)
        if key not in self._frames:
            fs = frames_for(self.planned, self.mode, key[1])
            self._frames = {key: (fs, {j.name: j for j in fs.jobs})}
        return self._frames[key]

    def frames(self, epoch: int) -> dict[str, Any]:
        """The frames of ``epoch`` (every static frame in static mode) with fill, spans, captions, sources."""
        with self.lock:
            self._fresh()
            fs, _ = self._frameset(epoch)
            self._epoch = epoch
            ids = {str(e.path): e.id for e in self.entries.values()}
            out = []
            fills = []
            records: dict[tuple[Any, ...], dict[str, Any]] = {}
            settings: dict[int, str] = {}
            for job in fs.jobs:
                # By content, not by slot: after a crop regroups the epoch, most groups come back in other slots.
                key = self._job_key(job, settings) + (tuple(ids.get(s.path) for s in job.sources),)
                found = records.get(key) or self._records.get(key)
                if found is None:
                    found = self._frame_json(job, ids)
                records[key] = found
                fills.append(found["fill_exact"])
                out.append(
                    {
                        "name": job.name,
                        "label": group_label(job),
                        **{k: v for k, v in found.items() if k != "fill_exact"},
                    }
                )
            self._records = records  # the frames shown now: an edit recomputes only the frames it changed
            with self._listed:  # the pre-render's check may start now (pixels.Pixels._prerender)
                self._listed_version = max(self._listed_version, self.version)
                self._listed.notify_all()
            singles = sum(n for _, _, n in fs.singles)
            return {
                "version": self.version,
                "epoch": fs.epoch,
                "mode": self.mode,
                "frames": out,
                "singles": singles,
                "mean_fill": round(sum(fills) / len(fills), 4) if fills else None,
                "seed": self.project.seed,
            }

    def _frame_json(self, job: FrameJob, ids: dict[str, str]) -> dict[str, Any]:
        record = frame_record(job, self.encoder)
        stats = job.stats  # framestats.frame_stats: the numbers preview, check and the log show
        g = job.planned.collage.grammar
        cfg = job.planned.subset.config
        return {  # without name and label: those name the slot (frames()), this is the frame's content
            "layout": record.layout,
            "frame": list(job.params.layout.frame),
            "pixels": hashlib.sha256(repr(self._pixel_key(job)).encode()).hexdigest()[:16],  # its image URL's version
            "caption": record.caption,
            "warnings": record.warnings,
            "fill": round(stats.fill, 4),
            "fill_exact": stats.fill,
            "sources": [
                {"id": ids.get(s.path), "name": Path(s.path).name, "span": round(span, 4)}
                for s, span in zip(job.sources, stats.spans)
            ],
            "cells": record.info["cells"],
            "tokens": self._token_view(record.caption, g, cfg.repeat_phrases),
        }

    def _caption_view(self, text: str, grammar: Any, phrases: Any, count: Any) -> dict[str, Any]:
        key = ("caption", text, repr(grammar), repr(phrases), count)
        found = self._views.get(key)
        if found is None:
            found = caption_view(text, self.encoder.budget, self.encoder.counter, grammar, phrases, count)
            self._views[key] = found
        return found

    def _token_view(self, text: str, grammar: Any, phrases: Any) -> dict[str, Any]:
        key = ("tokens", text, repr(grammar), repr(phrases))
        found = self._views.get(key)
        if found is None:
            found = token_view(text, self.encoder.budget, self.encoder.counter, grammar, phrases=phrases)
            self._views[key] = found
        return found

    def _job_key(self, job: FrameJob, settings: dict[int, str] | None = None) -> tuple[Any, ...]:
        """What a frame's pixels and caption are made of: params, settings, and each source's file and crop (a
        static frame's variant too: it is in the frame's record)."""
        settings = {} if settings is None else settings
        planned = job.planned
        if id(planned) not in settings:
            settings[id(planned)] = repr(
                (
                    planned.subset.config,
                    planned.collage.frame,
                    planned.dataset.index,
                    planned.subset.index,
                    job.slot is None,
                )
            )
        files = tuple((s.path, s.key, s.size, s.crop, s.caption, stat_key(s.path)) for s in job.sources)
        return (job.variant, job.params, settings[id(planned)], files)
