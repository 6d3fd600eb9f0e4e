"""``collage-ext check``: a report on a dataset before training, with an exit status for scripts.

Errors (exit status 1) are problems that stop training or silently drop data: unreadable or
corrupt images, invalid crop boxes, empty or non-UTF-8 caption files, image folders that do not
exist. Warnings (exit status 0) predict weak training: images magnified beyond
``collage_max_upscale`` (by their *effective* resolution, see ``quality``), low subject/background
contrast, captions past the text encoder's token budget, repeated phrases that land past it, and
collage subsets whose image count leaves single leftovers. The report ends with the samples,
batches and optimizer steps per epoch, counted the way sd-scripts counts them (buckets included).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from collage_ext.commands.measurecache import MeasureCache, file_key
from collage_ext.commands.quality import (
    CONTRAST_THRESHOLD,
    ImageMeasures,
    measure_image,
)
from collage_ext.commands.rules import (
    check_alone,
    check_captions,
    check_collage_sources,
    check_cropped_singles,
    check_frame_captions,
    check_leftovers,
    check_scale_rule,
    check_singles,
)
from collage_ext.core.errors import CollageError, CollageInputError
from collage_ext.core.parallel import ordered_map, tqdm_progress
from collage_ext.geometry.buckets import Buckets
from collage_ext.kohya.datasets import DatasetSpec, Finding, SubsetSpec
from collage_ext.pixels.crops import read_crop_box
from collage_ext.pixels.images import open_image
from collage_ext.plan.frames import unwritable_reason
from collage_ext.plan.framesets import TextEncoder
from collage_ext.plan.jobs import FrameSet, frames_for
from collage_ext.plan.project import Project, plan_project
from collage_ext.plan.run import static_cache_dir
from collage_ext.plan.subsets import PlannedSubset

logger = logging.getLogger(__name__)


# -- the report ---------------------------------------------------------------------------------


@dataclass
class CheckReport:
    """Findings plus the per-dataset sample / step summary."""

    findings: list[Finding]
    summary: dict[str, Any]

    @property
    def errors(self) -> list[Finding]:
        """Error findings."""
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        """Warning findings."""
        return [f for f in self.findings if f.level == "warning"]

    @property
    def exit_code(self) -> int:
        """1 when there are errors, else 0."""
        return 1 if self.errors else 0

    def to_json(self) -> dict[str, Any]:
        """Everything, JSON-serialisable (``collage-ext check --json``)."""
        return {
            "ok": not self.errors,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [f.to_json() for f in self.findings],
            "summary": self.summary,
        }

    def format_text(self) -> str:
        """The human report."""
        s = self.summary
        lines = [
            f"collage-ext check: {s['source']}",
            f"seed {s['seed']} ({s['seed_why']}); mode {s['mode']} ({s['mode_why']})",
            f"text encoder: {s['text_encoder']}, model {s['model']} ({s['model_why']})",
            "",
        ]
        for d in s["datasets"]:
            lines.append(
                f"dataset {d['index']}: resolution {d['resolution']}, batch size {d['batch_size']}, "
                f"{'buckets on' if d['enable_bucket'] else 'no buckets'}"
            )
            for sub in d["subsets"]:
                lines.append(f"  subset {sub['index']} {sub['image_dir']}: {sub['describe']}")
            lines.append(
                f"  per epoch: {d['samples_per_epoch']} samples in {d['batches_per_epoch']} batches "
                f"({d['buckets']} bucket{'s' * (d['buckets'] != 1)})"
            )
        st = s["steps"]
        lines.append(f"steps: {st['describe']}")
        modes = modes_line(s)
        if modes:
            lines.append(f"modes: {modes}")
        lines.append("")
        order = {"error": 0, "warning": 1, "info": 2}
        for f in sorted(self.findings, key=lambda f: order[f.level]):
            lines.append(f"{f.level.upper():8s}{f.code}: {f.message}")
        e, w = len(self.errors), len(self.warnings)
        verdict = f"{e} error{'s' * (e != 1)}, {w} warning{'s' * (w != 1)}. " + (
            "Training would stop or lose data on the errors: fix them first."
            if e
            else "Warnings predict weaker training; fix what you can."
            if w
            else "Ready to train."
        )
        lines += ["", verdict]
        return "\n".join(lines)


def run_check(
    project: Project,
    encoder: TextEncoder,
    *,
    epoch: int = 1,
    cache: MeasureCache | None = None,
    jobs_n: int | None = None,
    planner: Callable[[frozenset[str]], list[PlannedSubset]] | None = None,
) -> CheckReport:
    """Check every kept subset: files, crop boxes, effective resolution, contrast, captions, plan, steps.

    Images are decoded and measured on ``jobs_n`` processes (``parallel.default_jobs``), except those
    whose measures ``cache`` holds (by path, size and mtime: ``measurecache``); the report is the same.
    ``planner`` plans the project without the unreadable images it is given (default: ``plan_project``;
    the studio hands over the plan it already has when it left out the same images).
    """
    findings = list(project.findings)
    images = {im.path: (d, s) for d, s in project.subsets() for im in s.images}
    measures, broken = _scan_images(project, images, findings, cache, jobs_n)
    planned = (
        planner(frozenset(broken)) if planner is not None else plan_project(project, encoder, exclude=frozenset(broken))
    )
    mode = "static" if project.mode == "static" else "dynamic"
    frameset = frames_for(planned, mode, epoch)
    in_collage = check_collage_sources(planned, measures, findings)
    check_singles(project, planned, frameset, measures, broken, in_collage, findings)
    check_captions(project, encoder, broken, findings)
    check_frame_captions(frameset, encoder, findings)
    check_leftovers(planned, frameset, findings)
    check_cropped_singles(frameset, findings)
    check_scale_rule(planned, frameset, findings)
    check_alone(planned, findings)
    summary = _summary(project, planned, frameset, measures, broken, encoder)
    if planned:  # the other mode's count too: they differ by design where repeats split over static variants
        other = "dynamic" if mode == "static" else "static"
        alternative = _summary(project, planned, frames_for(planned, other, epoch), measures, broken, encoder)
        summary["modes"] = {"used": mode, "why": project.mode_why, mode: _counts(summary), other: _counts(alternative)}
    _check_trainable(project, summary, findings)
    return CheckReport(findings, summary)


def _counts(summary: dict[str, Any]) -> dict[str, int]:
    """Samples and optimizer steps per epoch of a ``_summary``."""
    return {
        "samples_per_epoch": sum(int(d["samples_per_epoch"]) for d in summary["datasets"]),
        "steps_per_epoch": int(summary["steps"]["steps_per_epoch"]),
    }


def modes_line(summary: dict[str, Any]) -> str | None:
    """One line when dynamic and static mode count differently, saying which one the run uses."""
    modes = summary.get("modes")
    if not modes:
        return None
    used, other = modes["used"], "static" if modes["used"] == "dynamic" else "dynamic"
    if modes[used] == modes[other]:
        return f"dynamic and static mode: the same {modes[used]['samples_per_epoch']} samples per epoch"
    return (
        f"this run uses {used} mode ({modes['why']}): {modes[used]['samples_per_epoch']} samples, "
        f"{modes[used]['steps_per_epoch']} steps per epoch; {other} mode would give "
        f"{modes[other]['samples_per_epoch']} samples, {modes[other]['steps_per_epoch']} steps (static mode "
        "spreads an image's repeats over collage_variants, so odd leftovers fall per variant)"
    )


def _check_trainable(project: Project, summary: dict[str, Any], findings: list[Finding]) -> None:
    """What stops training after the model loads: no sample at all, an unwritable static cache folder."""
    for dataset in project.datasets:
        for subset in dataset.subsets:
            if subset.skipped and subset.skipped.startswith("num_repeats"):
                findings.append(
                    Finding(
                        "warning",
                        "subset_ignored",
                        f"subset {subset.image_dir} @ {subset.where}: "
                        f"{subset.skipped}, so sd-scripts ignores it and its images never train; set "
                        "num_repeats >= 1",
                        subset.image_dir,
                    )
                )
    if not summary["steps"]["steps_per_epoch"]:
        findings.append(
            Finding(
                "error",
                "no_data",
                "no image of the dataset would be trained (no subset with images "
                "and num_repeats >= 1): sd-scripts stops with \"No data found\" or 'num_samples=0'; "
                "check image_dir and num_repeats",
            )
        )
    if project.mode == "static":
        for folder in sorted({static_cache_dir([s.config], project.run) for _, s in project.subsets()}):
            reason = unwritable_reason(folder)
            if reason:
                findings.append(Finding("error", "cache_not_writable", reason, str(folder)))


def _measure_file(item: tuple[str, tuple[int, int, int]]) -> ImageMeasures | str:
    """Decode and measure one image (in a worker); an unreadable file gives its error message."""
    path, fill = item
    try:
        return measure_image(open_image(path, fill=fill))
    except CollageInputError as exc:
        return str(exc)


def _scan_images(
    project: Project,
    images: dict[str, tuple[DatasetSpec, SubsetSpec]],
    findings: list[Finding],
    cache: MeasureCache | None = None,
    jobs_n: int | None = None,
) -> tuple[dict[str, ImageMeasures], set[str]]:
    measures: dict[str, ImageMeasures] = {}
    broken: set[str] = set()
    results: dict[str, ImageMeasures | str] = {}
    keys = {path: file_key(path, subset.config.fill) for path, (_, subset) in images.items()}
    todo = []
    for path, (_, subset) in images.items():
        found = cache.get(keys[path]) if cache is not None else None
        if found is None:
            todo.append((path, subset.config.fill))
        else:
            results[path] = found
    for result, (path, _) in zip(
        ordered_map(_measure_file, todo, jobs=jobs_n, progress=tqdm_progress("checking images", "image")), todo
    ):
        results[path] = result
        if cache is not None:
            cache.put(keys[path], result)
    if cache is not None:
        cache.save()
    for path, (_, subset) in images.items():
        m = results[path]
        if isinstance(m, str):
            findings.append(Finding("error", "unreadable_image", m, path))
            broken.add(path)
            continue
        if subset.config.enabled:
            try:
                read_crop_box(path, m.size, subset.config.crop_extension)
            except CollageError as exc:
                findings.append(Finding("error", "bad_crop_box", f"{exc}", path))
                broken.add(path)
                continue
        measures[path] = m
        if m.contrast < CONTRAST_THRESHOLD:
            findings.append(
                Finding(
                    "warning",
                    "low_contrast",
                    f"{path}: low subject/background contrast ({m.contrast:.0f} < {CONTRAST_THRESHOLD:.0f}: even its "
                    "strongest outlines are faint); the model learns shapes from contrast, so it teaches little — "
                    "prefer an image whose subject stands out from the background",
                    path,
                )
            )
    return measures, broken


def _summary(
    project: Project,
    planned: Sequence[PlannedSubset],
    frameset: FrameSet,
    measures: dict[str, ImageMeasures],
    broken: set[str],
    encoder: TextEncoder,
) -> dict[str, Any]:
    by_subset = {id(p.subset): p for p in planned}
    frames_by: Counter[int] = Counter(id(j.planned.subset) for j in frameset.jobs)
    singles_by: Counter[int] = Counter()
    for item, _, n in frameset.singles:
        singles_by[id(item.subset)] += n
    datasets = []
    total_batches = 0
    for dataset in project.datasets:
        buckets = Buckets.for_dataset(dataset)
        bucket_counts: Counter[tuple[int, int]] = Counter()
        subsets: list[dict[str, Any]] = []
        for subset in dataset.subsets:
            if subset.kept_index is None:
                subsets.append(
                    {
                        "index": subset.index,
                        "image_dir": subset.image_dir,
                        "skipped": subset.skipped,
                        "describe": f"skipped by sd-scripts ({subset.skipped})",
                    }
                )
                continue
            found = by_subset.get(id(subset))
            images = len(subset.images)
            if found is not None:
                item = found
                frames, singles = frames_by[id(subset)], singles_by[id(subset)]
                for job in frameset.jobs:
                    if job.planned is item:
                        bucket_counts[buckets.select(job.params.layout.frame)[0]] += 1
                for source_item, index, n in frameset.singles:
                    if source_item is item:
                        bucket_counts[buckets.select(item.pool.sources[index].size)[0]] += n
                shapes = sorted({str(j.params.layout.frame) for j in frameset.jobs if j.planned is item})
                describe = (
                    f"{images} images -> {frames + singles} samples per epoch ({frames} collage frames "
                    f"of {', '.join(shapes) or item.pool.frame}, {singles} single), rate {subset.config.rate:g}"
                )
                samples = frames + singles
            else:
                samples = sum(im.num_repeats for im in subset.images if im.path not in broken)
                for image in subset.images:
                    m = measures.get(image.path)
                    if m is not None:
                        bucket_counts[buckets.select(m.size)[0]] += image.num_repeats
                describe = f"{images} images -> {samples} samples per epoch (single images" + (
                    ", regularisation)" if subset.is_reg else ")"
                )
                frames = 0
            subsets.append(
                {
                    "index": subset.index,
                    "image_dir": subset.image_dir,
                    "images": images,
                    "samples_per_epoch": samples,
                    "collage_frames": frames,
                    "is_reg": subset.is_reg,
                    "collage_rate": subset.config.rate,
                    "describe": describe,
                }
            )
        batch = int(dataset.params.get("batch_size") or 1)
        batches = sum(math.ceil(n / batch) for n in bucket_counts.values() if n)
        total_batches += batches
        datasets.append(
            {
                "index": dataset.index,
                "resolution": str(dataset.resolution),
                "batch_size": batch,
                "enable_bucket": buckets.enable,
                "subsets": subsets,
                "samples_per_epoch": sum(int(s.get("samples_per_epoch") or 0) for s in subsets),
                "batches_per_epoch": batches,
                "buckets": sum(1 for n in bucket_counts.values() if n),
            }
        )
    return {
        "source": project.source,
        "seed": project.seed,
        "seed_why": project.seed_why,
        "mode": project.mode,
        "mode_why": project.mode_why,
        "text_encoder": encoder.label,
        "model": encoder.model,
        "model_why": encoder.why,
        "datasets": datasets,
        "steps": _steps(project, total_batches),
    }


def _steps(project: Project, batches: int) -> dict[str, Any]:
    run = project.run
    accumulation = int(run.get("gradient_accumulation_steps") or 1)
    per_epoch = math.ceil(batches / accumulation) if batches else 0
    epochs = run.get("max_train_epochs")
    out: dict[str, Any] = {
        "batches_per_epoch": batches,
        "gradient_accumulation_steps": accumulation,
        "steps_per_epoch": per_epoch,
    }
    if isinstance(epochs, int) and epochs > 0:
        out.update(
            epochs=epochs,
            total_steps=epochs * per_epoch,
            describe=f"{per_epoch} per epoch x max_train_epochs {epochs} = {epochs * per_epoch} steps",
        )
    elif not per_epoch:
        out.update(
            epochs=0, total_steps=0, describe='0 per epoch: no images to train (sd-scripts stops with "No data found")'
        )
    else:
        steps = int(run.get("max_train_steps") or 1600)
        n = math.ceil(steps / per_epoch)
        out.update(
            epochs=n,
            total_steps=steps,
            describe=f"{per_epoch} per epoch; max_train_steps {steps} = {n} epoch{'s' * (n != 1)}"
            + ("" if run.get("max_train_steps") else " (sd-scripts' default max_train_steps)"),
        )
    out["describe"] += " (one GPU; with N GPUs divide the steps by N)"
    return out
