"""``FineTuningDataset``'s reading of a subset: a ``metadata_file``'s keys, images and captions, per release.

sd-scripts changed how a metadata key names its image: v0.9.1 uses the key when that path exists and
otherwise finds ``<image_dir>/<key><ext>`` by glob (its own ``merge_captions_to_metadata.py`` writes
keys without extensions), main (v0.10) joins ``image_dir`` and the key as written, and v0.11 joins
and then globs keys without an extension. Captions and ``.jsonl`` files changed with them. The rules
of the sd-scripts found here are used (``detect_metadata_release``, read as text through
``sdscripts.seams``); without one, main's.

Not mirrored: main and v0.11 swap an image for a latent cache file (``*<cache_suffix>``) whose name
starts with the key, which only happens with absolute keys and ``--cache_latents_to_disk`` caches
already on disk; the suffix depends on the model family, and collage frames need the images anyway.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from collage_ext.kohya.files import glob_named
from collage_ext.kohya.schema import library_candidates
from collage_ext.kohya.specs import DatasetSpec, Notes, SubsetImage, SubsetSpec

logger = logging.getLogger(__name__)

#: How ``FineTuningDataset`` reads ``metadata_file`` keys and captions, per sd-scripts release
#: (``sdscripts.seams.metadata_key_release``).
MetadataRelease = Literal["v0.9.1", "main", "v0.11"]


def read_finetuning(spec: DatasetSpec, notes: Notes, release: MetadataRelease) -> None:
    """``FineTuningDataset.__init__``: images are registered by metadata key, so a key that a later
    subset lists again moves to that subset (sd-scripts' ``image_data`` is keyed by it)."""
    kept: list[SubsetSpec] = []
    registered: dict[str, tuple[SubsetSpec, SubsetImage]] = {}
    for subset in spec.subsets:
        repeats = int(subset.params["num_repeats"])
        meta_file = subset.params.get("metadata_file")
        if repeats < 1:
            subset.skipped = f"num_repeats is {repeats} (< 1)"
            continue
        if any(k.params.get("metadata_file") == meta_file for k in kept):
            subset.skipped = "the same metadata_file is already used by an earlier subset of this dataset"
            continue
        metadata = read_metadata(str(meta_file), subset, release, notes)
        if not metadata:
            subset.skipped = "no metadata entries"
            continue
        sep = str(subset.params["caption_separator"])
        wildcard = bool(subset.params.get("enable_wildcard"))
        for key, md in metadata.items():
            path = metadata_image(key, subset, release, notes)
            if path is not None:
                caption = metadata_caption(md, sep, wildcard, release)
                registered[key] = (subset, SubsetImage(path, caption, repeats))
        subset.kept_index = len(kept)
        kept.append(subset)
    for subset in kept:
        subset.images = [image for owner, image in registered.values() if owner is subset]


def metadata_image(key: str, subset: SubsetSpec, release: MetadataRelease, notes: Notes) -> str | None:
    """The image path sd-scripts registers for a metadata key (``None`` where it stops on the key)."""
    image_dir = subset.image_dir
    if not os.path.isabs(key) and image_dir is None and (release != "v0.9.1" or not os.path.exists(key)):
        notes.note(
            "error",
            "metadata_image_missing",
            f"metadata_file {subset.params.get('metadata_file')} key "
            f"{key!r} is a relative path and the subset has no image_dir @ {subset.where}; sd-scripts stops "
            "on it: set image_dir to the folder of the images",
            key,
        )
        return None
    path = metadata_key_path(key, image_dir, release)
    if path is None:  # v0.9.1: assert abs_path is not None, "no image"
        notes.note(
            "error",
            "metadata_image_missing",
            f"metadata_file {subset.params.get('metadata_file')} key "
            f"{key!r} names no image: sd-scripts {release} stops on it (no image {key!r} from the current "
            f"folder, and no {os.path.join(str(image_dir), key)}.<image extension>); write the key as the "
            "file name without its extension, or as an absolute path",
            key,
        )
        return None
    if not os.path.exists(path):
        hint = (
            f"; {found[0]} exists: sd-scripts {release} reads keys as written (v0.9.1 found files by their "
            "name without extension), so write the key with the extension"
            if (found := glob_named(os.path.dirname(path), os.path.basename(path)))
            else ""
        )
        notes.note(
            "error",
            "metadata_image_missing",
            f"metadata_file {subset.params.get('metadata_file')} key "
            f"{key!r} names {path}, which does not exist: sd-scripts stops on it when it reads the image "
            f"sizes @ {subset.where}{hint}",
            path,
        )
    return path


def read_metadata(path: str, subset: SubsetSpec, release: MetadataRelease, notes: Notes) -> dict[str, dict[str, Any]]:
    """The metadata file as sd-scripts loads it: JSON, or (after v0.9.1) ``.jsonl``, one entry a line."""
    try:
        if path.endswith(".jsonl") and release != "v0.9.1":
            out: dict[str, dict[str, Any]] = {}
            with open(path, encoding="utf-8") as handle:
                for line in handle:  # sd-scripts parses every line: a blank one stops it too
                    item = json.loads(line)
                    entry = {"caption": item.get("caption", "")}
                    if "tags" in item:
                        entry["tags"] = item["tags"]
                    out[item["image_path"]] = entry
            return out
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError, KeyError) as exc:
        notes.note(
            "error",
            "metadata_unreadable",
            f"metadata_file {path} cannot be read ({exc}) @ {subset.where}"
            + (
                "; sd-scripts v0.9.1 reads only JSON (one object), not .jsonl: convert it, or use a newer sd-scripts"
                if path.endswith(".jsonl") and release == "v0.9.1"
                else ""
            ),
            path,
        )
        return {}
    return data if isinstance(data, dict) else {}


def detect_metadata_release(sd_scripts_dir: str | os.PathLike[str] | None = None) -> tuple[MetadataRelease, str]:
    """Which sd-scripts' ``metadata_file`` rules to follow: those of the checkout found, else main's.

    Found like ``schema.detect_flavour`` (``library_candidates``), read as text through ``seams``.
    """
    from collage_ext.sdscripts.seams import FINETUNING_DATASET_FILES, metadata_key_release  # torch-free text reading

    for folder, why in library_candidates(sd_scripts_dir):
        stamp = tuple(_stamp(folder / name) for name in FINETUNING_DATASET_FILES)
        release = _cached_release(str(folder), stamp, metadata_key_release)
        if release is not None:
            return release, why
    return "main", "no sd-scripts found here; main's rules"


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (0, 0)
    return (stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _cached_release(folder: str, stamp: tuple[tuple[int, int], ...], read: Any) -> MetadataRelease | None:
    # the studio reads the project again after every edit; train_util.py is read once per version of it
    del stamp
    release = read(Path(folder))
    return release if release in ("v0.9.1", "main", "v0.11") else None


def metadata_key_path(key: str, image_dir: str | None, release: MetadataRelease) -> str | None:
    """The path ``FineTuningDataset`` gives a metadata key (``None``: v0.9.1 finds nothing and stops).

    v0.9.1: the key itself when it exists (from the current folder), else the first of
    ``glob_images(image_dir, key)``, else a latent cache ``<key>.npz``; main: ``image_dir`` joined
    with the key as written; v0.11: joined, then globbed like v0.9.1 when the key has no extension
    or names no file.

    Examples:
        >>> metadata_key_path("img.png", "/data", "main"), metadata_key_path("/abs/img", "/data", "main")
        ('/data/img.png', '/abs/img')
    """
    if release == "v0.9.1":
        if os.path.exists(key):
            return key
        found = glob_named(str(image_dir), key)
        if found:
            return found[0]
        npz = os.path.splitext(key)[0] + ".npz"
        if os.path.exists(npz):
            return npz
        npz = os.path.join(str(image_dir), key + ".npz")
        return npz if os.path.exists(npz) else None
    path = key if os.path.isabs(key) else os.path.join(str(image_dir), key)
    if release == "v0.11" and (not os.path.splitext(key)[1] or not os.path.exists(path)):
        found = glob_named(os.path.dirname(path), os.path.basename(key))
        if found:
            path = found[0]
    return path


def metadata_caption(md: Mapping[str, Any], sep: str, wildcard: bool, release: MetadataRelease) -> str:
    """A metadata entry's caption and tags joined as ``FineTuningDataset`` joins them.

    v0.9.1 takes the tags as the caption when there is no caption, and joins ``"" + sep + tags`` for
    an empty one; later releases join the tags to a non-empty caption only.

    Examples:
        >>> metadata_caption({"caption": "", "tags": "a, b"}, ",", False, "v0.9.1")
        ',a, b'
        >>> metadata_caption({"caption": "", "tags": "a, b"}, ",", False, "main")
        'a, b'
    """
    caption, tags = md.get("caption"), md.get("tags")
    if release == "v0.9.1" and caption is None:
        caption, tags = tags, None  # could be multiline
    if release != "v0.9.1" and caption is None:
        caption = ""
    if wildcard:
        if tags is not None:  # tags must be single line
            tags = tags.replace("\n", sep)
            if caption is not None:
                caption = "\n".join(f"{line}{sep}{tags}" for line in caption.split("\n") if line.strip() != "")
    elif tags is not None and len(tags) > 0:
        head = caption or ""  # never None here: v0.9.1 moved the tags into a missing caption above
        caption = (head + sep if head or release == "v0.9.1" else head) + tags
    return "" if caption is None else caption
