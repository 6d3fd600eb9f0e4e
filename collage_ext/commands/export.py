"""``collage-ext export``: materialise collage frames as a plain kohya-style folder any trainer can read.

The export is a **static** plan (as ``collage_mode = "static"``): each collage subset's repeats are
spread over ``--variants`` fixed groupings, so one pass over the exported folder shows every image
exactly ``num_repeats`` times, like one epoch of collage training. Layout::

    OUT/train/1_<name>-collage/collage_<digest>.png + .txt   collage frames (lossless PNG, merged caption)
    OUT/train/<r>_<name>/<image> + .txt                       images that train single, r repeats each
    OUT/reg/<r>_<name>/...                                    regularisation subsets
    OUT/dataset.toml                                          the same datasets as a --dataset_config
    OUT/manifest.json                                         every frame traced back to its sources
    OUT/README.txt                                            how to train on it

Single images are copied byte for byte (sd-scripts loads them exactly as before); frames are PNG.
Images that cannot be read are left out with a warning (the ``warn`` policy of style.md §5.2).
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import toml
from PIL import Image

from collage_ext.commands.renderjobs import render_jobs
from collage_ext.core.errors import CollageConfigError
from collage_ext.core.filemodes import write_bytes_atomic
from collage_ext.core.progress import progress
from collage_ext.core.types import Size
from collage_ext.core.version import __version__
from collage_ext.geometry.buckets import Buckets
from collage_ext.kohya.datasets import DatasetSpec, Finding, SubsetSpec
from collage_ext.plan.frames import encode_png, frame_pixels, uses_alpha
from collage_ext.plan.framesets import TextEncoder
from collage_ext.plan.jobs import FrameSet, frames_for
from collage_ext.plan.project import Project, plan_project, read_failures
from collage_ext.plan.singles import cropped_pixels
from collage_ext.plan.subsets import PlannedSubset

logger = logging.getLogger(__name__)

#: Subset keys that describe *where* images come from; the export replaces them.
_LOCATION_KEYS = (
    "image_dir",
    "num_repeats",
    "class_tokens",
    "metadata_file",
    "caption_extension",
    "is_reg",
    "cache_info",
    "conditioning_data_dir",
)


@dataclass
class ExportResult:
    """What ``run_export`` wrote."""

    out: Path
    frames: int = 0
    singles: int = 0
    copied: int = 0
    skipped: list[str] = field(default_factory=list)
    train_dir: Path | None = None
    reg_dir: Path | None = None
    findings: list[Finding] = field(default_factory=list)
    #: Per epoch of the exported folder, as sd-scripts counts it: training samples, batches, buckets,
    #: regularisation samples as copied (sd-scripts balances them against the training samples).
    samples: int = 0
    batches: int = 0
    buckets: int = 0
    reg_samples: int = 0


def check_out_dir(out: Path, project: Project, *, force: bool) -> None:
    """Refuse a non-empty output folder (unless ``force``) and one inside a source folder.

    Raises:
        CollageConfigError: exit status 2.
    """
    if out.exists() and not out.is_dir():
        msg = f"--out {out} is a file; give a folder"
        raise CollageConfigError(msg)
    if out.is_dir() and any(out.iterdir()) and not force:
        msg = f"--out {out} is not empty; choose a new folder, or pass --force to write into it"
        raise CollageConfigError(msg)
    resolved = out.resolve()
    for _, subset in project.subsets():
        root = Path(subset.root).resolve()
        if resolved == root or root in resolved.parents:
            msg = f"--out {out} lies inside the source folder {subset.root}; sd-scripts would train on the export too"
            raise CollageConfigError(msg)


def run_export(
    project: Project,
    encoder: TextEncoder,
    out: Path,
    *,
    variants: int | None = None,
    force: bool = False,
    jobs_n: int | None = None,
) -> ExportResult:
    """Write the static frames, the single images and the manifest into ``out``.

    Raises:
        CollageConfigError: bad ``--variants`` or output folder.
        CollageInputError: a frame source fails while rendering (its header read fine).
    """
    if variants is not None and not 1 <= variants <= 64:
        msg = f"--variants must be in [1, 64], got {variants}; e.g. --variants 4"
        raise CollageConfigError(msg)
    check_out_dir(out, project, force=force)
    result = ExportResult(out)
    subsets = project.subsets()
    if variants is not None:
        for _, subset in subsets:
            subset.config = dataclasses.replace(subset.config, variants=variants)
    paths = [im.path for _, s in subsets for im in s.images]
    failed = read_failures(progress(paths, "checking images", "image"))
    for path, exc in failed.items():
        result.findings.append(Finding("warning", "unreadable_image", f"left out of the export: {exc}", path))
        logger.warning(f"left out of the export: {exc}")
    planned = plan_project(project, encoder, exclude=frozenset(failed))
    frameset = frames_for(planned, "static", 1)
    out.mkdir(parents=True, exist_ok=True)
    folders = _Folders(out, multi=len(project.datasets) > 1)
    manifest_frames = _write_frames(frameset, folders, result, jobs_n)
    manifest_singles = _write_singles(frameset, folders, result)
    plain = _copy_plain(project, planned, folders, failed, result)
    result.train_dir = out / "train" if (out / "train").is_dir() else None
    result.reg_dir = out / "reg" if (out / "reg").is_dir() else None
    _write_dataset_toml(project, folders, out / "dataset.toml")
    _count_epoch(project, out, manifest_frames + manifest_singles + plain, result)
    manifest = {
        "collage_ext": __version__,
        "source": project.source,
        "seed": project.seed,
        "seed_why": project.seed_why,
        "plan": "static",
        "variants": {p.pool.key: p.subset.config.variants for p in planned},
        "settings": {p.pool.key: p.subset.config.to_metadata() for p in planned},
        "stats": frameset.summary().to_json(),
        "frames": manifest_frames,
        "singles": manifest_singles + plain,
        "left_out": [{"path": p, "error": str(e)} for p, e in failed.items()],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "README.txt").write_text(training_hint(project, result) + "\n", encoding="utf-8")
    return result


class _Folders:
    """Allocates unique ``N_name`` folders under ``train/`` and ``reg/`` and remembers what went where."""

    def __init__(self, out: Path, *, multi: bool) -> None:
        self.out, self.multi = out, multi
        self.used: set[str] = set()
        self.paths: dict[tuple[int, int, int, str], Path] = {}
        self.by_subset: dict[tuple[int, int], list[tuple[Path, int]]] = {}

    def get(self, dataset: DatasetSpec, subset: SubsetSpec, repeats: int, suffix: str = "") -> Path:
        key = (dataset.index, subset.index, repeats, suffix)
        if key in self.paths:
            return self.paths[key]
        base = (f"d{dataset.index}-" if self.multi else "") + _clean(subset.name) + suffix
        name, k = f"{repeats}_{base}", 2
        while name in self.used:
            name, k = f"{repeats}_{base}-{k}", k + 1
        self.used.add(name)
        path = self.out / ("reg" if subset.is_reg else "train") / name
        path.mkdir(parents=True, exist_ok=True)
        self.paths[key] = path
        self.by_subset.setdefault((dataset.index, subset.index), []).append((path, repeats))
        return path


def _clean(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip(".") or "subset"


def _write_frames(
    frameset: FrameSet, folders: _Folders, result: ExportResult, jobs_n: int | None = None
) -> list[dict[str, Any]]:
    # A static variant can hold the same frame twice (an image with more repeats than partners of its
    # shape): one file in an N_ folder with N = its count keeps every repeat. Repeats are found by the
    # planned name; a frame renamed while rendering (a source failed) is written once per planned name.
    counts = collections.Counter((id(job.planned), job.name) for job in frameset.jobs)
    first: dict[tuple[int, str], Any] = {}
    for job in frameset.jobs:
        first.setdefault((id(job.planned), job.name), job)
    unique = list(first.values())
    planned_key = {id(job): (id(job.planned), job.name) for job in unique}
    records = []
    for job, png, error in render_jobs(
        unique,
        _encode_export,
        with_mask=lambda job: job.planned.subset.config.loss_mask,
        jobs_n=jobs_n,
        desc="exporting frames",
    ):
        key = planned_key[id(job)]
        if error is not None:  # export's policy is "warn": leave the frame out, go on
            names = " + ".join(Path(s.path).name for s in job.sources)
            result.findings.append(Finding("warning", "frame_left_out", f"frame {names} left out: {error}"))
            logger.warning(f"frame {names} left out of the export: {error}")
            continue
        folder = folders.get(job.planned.dataset, job.planned.subset, counts[key], "-collage")
        path = folder / f"{job.name}.png"
        write_bytes_atomic(path, png)
        write_bytes_atomic(path.with_suffix(".txt"), (job.caption + "\n").encode("utf-8"))
        layout = job.params.layout
        records.append(
            {
                "file": path.relative_to(folders.out).as_posix(),
                "repeats": counts[key],
                "dataset": job.planned.dataset.index,
                "subset": job.planned.subset.index,
                "image_dir": job.planned.subset.image_dir,
                "pool_key": job.planned.pool.key,
                "variant": job.variant,
                "seed": job.planned.pool.seed,
                "frame": list(layout.frame),
                "layout": layout.name,
                **_stats_json(job),
                "cells": [
                    {
                        "rect": list(c),
                        "position": n,
                        "source": job.sources[i].path,
                        "key": job.sources[i].key,
                        "crop": _box(job.sources[i].crop),
                    }
                    for c, i, n in zip(layout.cells, layout.order, layout.names or [""] * len(layout.cells))
                ],
                "sources": [s.path for s in job.sources],
                "caption": job.caption,
                "params": job.params.to_json(),
            }
        )
        result.frames += counts[key]
    return records


def _encode_export(job: Any, rendered: Any) -> bytes:
    """The exported frame as PNG (in a worker): RGBA when it carries loss weights, padding (collage_loss_mask)
    or its sources' own alpha (alpha_mask)."""
    return encode_png(Image.fromarray(frame_pixels(rendered, job.planned.subset.config)))


def _stats_json(job: Any) -> dict[str, Any]:
    stats = job.stats
    return {"fill": round(stats.fill, 4), "spans": {s.path: round(v, 4) for s, v in zip(job.sources, stats.spans)}}


def _box(box: Any) -> list[float] | None:
    return None if box is None else [float(v) for v in box]


def _copy(source: str, folder: Path, caption: str, used: set[Path], suffix: str | None = None) -> Path:
    """Copy an image and write its caption; with ``suffix`` only reserve the name (the caller writes the image)."""
    target = folder / os.path.basename(source)
    if suffix is not None:
        target = target.with_suffix(suffix)
    stem, ext, k = target.stem, target.suffix, 2
    while target in used or target.with_suffix(".txt") in used:
        target, k = folder / f"{stem}-{k}{ext}", k + 1
    used.update((target, target.with_suffix(".txt")))
    if suffix is None:
        shutil.copyfile(source, target)
    target.with_suffix(".txt").write_text(caption + "\n", encoding="utf-8")
    return target


def _write_singles(frameset: FrameSet, folders: _Folders, result: ExportResult) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    used: set[Path] = set()
    for item, index, repeats in progress(frameset.singles, "copying single images", "image"):
        source = item.pool.sources[index]
        folder = folders.get(item.dataset, item.subset, repeats)
        if source.crop is None:
            target = _copy(source.path, folder, source.caption, used)
        else:  # as in training: only the crop box (plain sd-scripts knows no .crop files)
            target = _copy(source.path, folder, source.caption, used, suffix=".png")
            alpha = uses_alpha(item.subset.params.get("alpha_mask", False), item.subset.config)
            Image.fromarray(cropped_pixels(source, item.subset.config, alpha)).save(target)
        records.append(
            {
                "file": target.relative_to(folders.out).as_posix(),
                "source": source.path,
                "repeats": repeats,
                "dataset": item.dataset.index,
                "subset": item.subset.index,
                "crop": _box(source.crop),
            }
        )
        result.singles += 1
    return records


def _copy_plain(
    project: Project, planned: Sequence[PlannedSubset], folders: _Folders, failed: dict[str, Any], result: ExportResult
) -> list[dict[str, Any]]:
    """Subsets without collage frames are copied with their TOML ``num_repeats`` (sd-scripts balances reg again)."""
    collage = {id(p.subset) for p in planned}
    records: list[dict[str, Any]] = []
    used: set[Path] = set()
    for dataset, subset in project.subsets():
        if id(subset) in collage:
            continue
        repeats = int(subset.params.get("num_repeats") or 1)
        for image in progress(subset.images, f"copying {subset.name}", "image"):
            if image.path in failed:
                continue
            target = _copy(image.path, folders.get(dataset, subset, repeats), image.caption, used)
            records.append(
                {
                    "file": target.relative_to(folders.out).as_posix(),
                    "source": image.path,
                    "repeats": repeats,
                    "dataset": dataset.index,
                    "subset": subset.index,
                }
            )
            result.copied += 1
    return records


def _write_dataset_toml(project: Project, folders: _Folders, path: Path) -> None:
    """The exported folders as a ``--dataset_config``: the original settings, new image folders."""
    data = copy.deepcopy(project.tree.kohya)
    data.setdefault("general", {})
    out_datasets = []
    for dataset, raw in zip(project.datasets, data.get("datasets", []) or []):
        entries = []
        raw_subsets = raw.get("subsets", []) or []
        for subset in dataset.subsets:
            base = {
                k: v
                for k, v in (raw_subsets[subset.index] if subset.index < len(raw_subsets) else {}).items()
                if k not in _LOCATION_KEYS
            }
            for folder, repeats in folders.by_subset.get((dataset.index, subset.index), []):
                entry = dict(base, image_dir=str(folder.resolve()), num_repeats=repeats, caption_extension=".txt")
                if uses_alpha(subset.params.get("alpha_mask", False), subset.config):
                    # As in training: the frames' alpha carries the padding weight and the sources' own alpha,
                    # and collage_loss_mask turns alpha_mask on for the subset's single images too.
                    entry["alpha_mask"] = True
                if subset.is_reg:
                    entry["is_reg"] = True
                entries.append(entry)
        if entries:
            new = {k: v for k, v in raw.items() if k != "subsets"}
            if "resolution" not in new:
                new["resolution"] = list(dataset.resolution)
            new["subsets"] = entries
            out_datasets.append(new)
    data["datasets"] = out_datasets
    header = (
        f"# Written by collage-ext export {__version__} from {project.source}.\n"
        "# Plain sd-scripts dataset config: no collage_ext needed. Paths are absolute.\n"
    )
    path.write_text(header + toml.dumps(data), encoding="utf-8")


def _count_epoch(project: Project, out: Path, records: Sequence[dict[str, Any]], result: ExportResult) -> None:
    """Samples, batches and buckets of one pass over the export, bucketed the way sd-scripts buckets them."""
    per_bucket: dict[int, collections.Counter[tuple[int, int]]] = {}
    for record in records:
        dataset = project.datasets[record["dataset"]]
        repeats = int(record["repeats"])
        if dataset.subsets[record["subset"]].is_reg:
            result.reg_samples += repeats
            continue
        if "frame" in record:
            size = Size(*record["frame"])
        else:
            with Image.open(out / record["file"]) as image:
                size = Size(*image.size)
        bucket = Buckets.for_dataset(dataset).select(size)[0]
        per_bucket.setdefault(dataset.index, collections.Counter())[bucket] += repeats
        result.samples += repeats
    for index, counts in per_bucket.items():
        batch = int(project.datasets[index].params.get("batch_size") or 1)
        result.batches += sum(math.ceil(n / batch) for n in counts.values())
        result.buckets += len(counts)


#: sd-scripts' argparse defaults of the bucket options (``train_util.add_dataset_arguments``).
_BUCKET_DEFAULTS = {"min_bucket_reso": 256, "max_bucket_reso": 1024, "bucket_reso_steps": 64}


def bucket_flags(dataset: DatasetSpec) -> str:
    """The command-line bucket options that give the exported frames the buckets they were made for.

    A frame rendered for a 1408x704 bucket lands in a 1024x512 one with sd-scripts' default
    ``max_bucket_reso = 1024`` (half its area), so every setting that differs from the default is named.

    Examples:
        >>> from types import SimpleNamespace
        >>> bucket_flags(SimpleNamespace(params={"enable_bucket": True, "max_bucket_reso": 2048, "min_bucket_reso": 256,
        ...                                       "bucket_reso_steps": 64, "bucket_no_upscale": False}))
        ' --enable_bucket --max_bucket_reso 2048'
    """
    params = dataset.params
    if not params.get("enable_bucket"):
        return ""
    flags = " --enable_bucket"
    for key, default in _BUCKET_DEFAULTS.items():
        value = params.get(key)
        if value is not None and int(value) != default:
            flags += f" --{key} {int(value)}"
    return flags + (" --bucket_no_upscale" if params.get("bucket_no_upscale") else "")


def training_hint(project: Project, result: ExportResult) -> str:
    """How to train on the export with plain sd-scripts (and other trainers)."""
    out = result.out
    resolutions = {tuple(d.resolution) for d in project.datasets}
    reso = ",".join(str(v) for v in min(resolutions)) if resolutions else "1024,1024"
    first = min(project.datasets, key=lambda d: tuple(d.resolution)) if project.datasets else None
    batch = int(first.params.get("batch_size") or 1) if first is not None else 1
    accumulation = int(project.run.get("gradient_accumulation_steps") or 1)
    steps = math.ceil(result.batches / accumulation)
    reg = (
        f" + {result.reg_samples} regularisation samples as copied (sd-scripts adds regularisation samples "
        "until they match the training samples, so expect up to twice the steps)"
        if result.reg_samples
        else ""
    )
    lines = [
        (
            f"collage-ext export {__version__}: {result.frames} collage frames, {result.singles} single images from "
            f"collage subsets, {result.copied} images copied from other subsets (seed {project.seed})."
        ),
        (
            f"One epoch of it: {result.samples} training samples in {result.batches} batches ({result.buckets} "
            f"bucket{'s' * (result.buckets != 1)}) = {steps} optimizer step{'s' * (steps != 1)}"
            + (f" with gradient_accumulation_steps {accumulation}" if accumulation > 1 else "")
            + f"{reg}."
        ),
        "",
        "Train with plain sd-scripts (no collage_ext needed) either on the folders:",
        (
            f"  --train_data_dir {out / 'train'}"
            + (f" --reg_data_dir {out / 'reg'}" if result.reg_dir else "")
            + f" --caption_extension .txt --resolution {reso} --train_batch_size {batch}"
            + (bucket_flags(first) if first is not None else "")
        ),
        "or on the dataset config, which keeps your other dataset settings (keep_tokens, batch size...):",
        f"  --dataset_config {out / 'dataset.toml'}",
        "Remove dataset_class / dataset_config / train_data_dir from your training TOML first (or override them).",
        "",
        (
            "ai-toolkit, OneTrainer, diffusion-pipe: point the dataset folder at the N_name folders under train/ "
            "(image + .txt caption pairs); the N_ prefix is the repeat count per epoch."
        ),
        "manifest.json traces every frame back to its source images, crop boxes, layout and seed.",
    ]
    if len(resolutions) > 1:
        lines.insert(4, "  (your datasets use different resolutions: prefer --dataset_config)")
    return "\n".join(lines)
