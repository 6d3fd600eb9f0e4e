"""``DreamBoothDataset``'s reading of a subset: its folder's images, captions, repeats and split.

A subset lists ``image_dir/*<ext>`` (not recursive) for sd-scripts' extensions, or the images and
captions of ``metadata_cache.json`` with ``cache_info``; each image's caption is the first line of
``<image><caption_extension>`` (every non-empty line with ``enable_wildcard``), else ``class_tokens``.
Subsets with ``num_repeats < 1``, a repeated ``image_dir`` or no images are skipped and take no
index; regularisation repeats are balanced against the training images; with ``validation_split``
the training part of each non-reg subset is kept.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass

from collage_ext.core.exported import export_root
from collage_ext.kohya.caption_files import first_line_empty_message
from collage_ext.kohya.files import IMAGE_INFO_CACHE_FILE, SD_IMAGE_EXTENSIONS, glob_images
from collage_ext.kohya.specs import DatasetSpec, Notes, SubsetImage, SubsetSpec


@dataclass
class _Entry:
    path: str
    caption: str
    repeats: int


def read_dreambooth(spec: DatasetSpec, notes: Notes) -> None:
    """``DreamBoothDataset.__init__``: list each kept subset's images with captions, balance reg repeats."""
    kept: list[SubsetSpec] = []
    train_count = 0
    reg: list[tuple[_Entry, SubsetSpec]] = []
    entries: dict[int, list[_Entry]] = {}
    for subset in spec.subsets:
        repeats = int(subset.params["num_repeats"])
        image_dir = subset.image_dir
        if repeats < 1:
            subset.skipped = f"num_repeats is {repeats} (< 1)"
            continue
        if any(k.params.get("image_dir") == subset.params.get("image_dir") for k in kept):
            subset.skipped = "the same image_dir is already used by an earlier subset of this dataset"
            continue
        if not image_dir or not os.path.isdir(image_dir):
            notes.note(
                "error",
                "missing_image_dir",
                f"image_dir {image_dir!r} is not a folder @ {subset.where}; sd-scripts skips this subset, "
                "so its images are never trained: fix the path",
                image_dir,
            )
            subset.skipped = "image_dir is not a folder"
            continue
        root = export_root(image_dir)
        if root is not None and subset.config.rate == 0:
            notes.note(
                "info",
                "export_folder",
                f"{image_dir} is part of a collage-ext export ({root}): its frames "
                "are collages already, so they train as single images (collage_rate = 0)",
            )
        cached = cached_info(subset, notes)
        paths = list(cached) if cached is not None else glob_images(image_dir)
        paths = validation_split(spec, subset, paths, notes)
        if not paths:
            notes.note(
                "warning",
                "empty_subset",
                f"image_dir {image_dir} has no images @ {subset.where}; "
                f"sd-scripts skips it (extensions: {', '.join(SD_IMAGE_EXTENSIONS)})",
                image_dir,
            )
            subset.skipped = "no images"
            continue
        if cached is not None:  # sd-scripts pairs the split paths with the cache's captions in file order
            items = [_Entry(p, c, repeats) for p, c in zip(paths, cached.values())]
        else:
            items = [_Entry(p, read_caption(p, subset, notes), repeats) for p in paths]
        if subset.is_reg:
            reg.extend((item, subset) for item in items)
        else:
            train_count += repeats * len(items)
            entries[id(subset)] = items
        subset.kept_index = len(kept)
        kept.append(subset)
    # Regularisation repeats: sd-scripts registers reg images until they match the training images,
    # then adds one repeat at a time (DreamBoothDataset.__init__).
    registered: dict[int, list[_Entry]] = {}
    n, first = 0, True
    if reg:
        while n < train_count:
            for item, subset in reg:
                if first:
                    registered.setdefault(id(subset), []).append(item)
                    n += item.repeats
                else:
                    item.repeats += 1
                    n += 1
                if n >= train_count:
                    break
            first = False
    for subset in kept:
        items = registered.get(id(subset), []) if subset.is_reg else entries.get(id(subset), [])
        subset.images = [SubsetImage(e.path, e.caption, e.repeats) for e in items]
        if subset.is_reg and not items:
            notes.note(
                "info",
                "reg_unused",
                f"regularisation subset {subset.image_dir} is not used: there are no "
                "training images to balance it against",
            )


def cached_info(subset: SubsetSpec, notes: Notes) -> dict[str, str] | None:
    """``cache_info``: the images and captions of ``<image_dir>/metadata_cache.json`` when it exists.

    sd-scripts writes that file on the first run and then trusts it over the folder: images added
    or captions edited later are not seen until it is deleted. This reader never writes it.
    """
    if not subset.params.get("cache_info"):
        return None
    file = os.path.join(str(subset.image_dir), IMAGE_INFO_CACHE_FILE)
    if not os.path.isfile(file):
        return None
    try:
        with open(file, encoding="utf-8") as handle:
            metas = json.load(handle)
        cached = {str(path): str(meta["caption"] or "") for path, meta in metas.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        notes.note(
            "error",
            "cache_info_unreadable",
            f"{file} cannot be read ({exc}) @ {subset.where}; "
            "sd-scripts stops on it: delete it (sd-scripts writes it again)",
            file,
        )
        return None
    notes.note(
        "info",
        "cache_info",
        f"{subset.image_dir}: images and captions come from {file} (cache_info = "
        "true), as in training; delete it after adding images or editing captions",
    )
    return cached


def validation_split(spec: DatasetSpec, subset: SubsetSpec, paths: list[str], notes: Notes) -> list[str]:
    """``split_train_val`` for the training dataset: its first part of each non-reg subset's shuffled list."""
    split = float(spec.params.get("validation_split") or 0.0)
    if split <= 0.0 or subset.is_reg:
        return paths
    seed = spec.params.get("validation_seed")
    if seed is None:
        notes.note(
            "warning",
            "validation_split_unseeded",
            f"validation_split = {split} without validation_seed @ {spec.where}: sd-scripts picks the "
            "validation images at random, so this shows every image; set validation_seed to make it "
            "reproducible",
        )
        return paths
    shuffled = list(paths)
    random.Random(int(seed)).shuffle(shuffled)  # == random.seed(seed); random.shuffle(...) in split_train_val
    return shuffled[: math.ceil(len(shuffled) * (1 - split))]


def read_caption(path: str, subset: SubsetSpec, notes: Notes) -> str:
    """``read_caption`` of sd-scripts, then the ``class_tokens`` fallback."""
    ext = str(subset.params["caption_extension"])
    base = os.path.splitext(path)[0]
    tokens = base.split("_")
    face = "_".join(tokens[:-4]) if len(tokens) >= 5 else base
    for candidate in (base + ext, face + ext):
        if os.path.isfile(candidate):
            try:
                with open(candidate, encoding="utf-8") as handle:
                    lines = handle.readlines()
            except UnicodeDecodeError:
                notes.note(
                    "error",
                    "caption_not_utf8",
                    f"caption file {candidate} is not UTF-8; sd-scripts stops on it: re-save it as UTF-8",
                    candidate,
                )
                return ""
            except OSError as exc:
                notes.note("error", "caption_unreadable", f"caption file {candidate} cannot be read ({exc})", candidate)
                return ""
            if not "".join(lines).strip():  # training refuses whitespace-only files too (caption_files)
                notes.note(
                    "error",
                    "caption_empty",
                    f"caption file {candidate} is empty"
                    + (" (only white space)" if lines else "")
                    + "; sd-scripts stops on empty caption "
                    "files: write a caption or delete the file",
                    candidate,
                )
                return ""
            if subset.params.get("enable_wildcard"):
                return "\n".join(line.strip() for line in lines if line.strip())
            if not lines[0].lstrip("\ufeff").strip():
                notes.note("warning", "caption_first_line_empty", first_line_empty_message(candidate), candidate)
            return lines[0].strip()
    others = [e for e in (".txt", ".caption") if e != ext and os.path.isfile(base + e)]
    hint = (
        f'; {os.path.basename(base + others[0])} exists: set caption_extension = "{others[0]}" (sd-scripts\' '
        'default is ".caption")'
        if others
        else ""
    )
    if subset.params.get("class_tokens") is not None:
        if hint:
            notes.note(
                "warning",
                "caption_missing",
                f"{path} has no {ext} caption file, so it trains with its "
                f"class_tokens {subset.params['class_tokens']!r}{hint}",
                path,
            )
        return str(subset.params["class_tokens"])
    notes.note(
        "warning",
        "caption_missing",
        f"{path} has no caption file ({ext}) and its subset has no class_tokens: it trains with an empty caption{hint}",
        path,
    )
    return ""
