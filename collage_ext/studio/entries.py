"""The images of a dataset as the studio lists them: one ``Entry`` per file, kept or dropped.

Split from the studio's model so that reading the dataset into entries (and deciding which images are
left out because a file leads out of the dataset) is one small piece, shared by the full read and the
per-image refresh after an edit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from collage_ext.kohya.datasets import DatasetSpec, SubsetSpec, glob_images
from collage_ext.pixels.crops import crop_path_for
from collage_ext.plan.project import Project
from collage_ext.studio.files import Folders, dropped_folder

#: Largest caption file the studio plans frames with. The text encoders read 75-512 tokens (a few KB);
#: merging a 10 MB caption into frames took half a minute per frame, with the studio's lock held.
MAX_CAPTION_BYTES = 1 << 20
#: Added to a dropped image's id when a new image in its folder has taken its name.
DROPPED_SUFFIX = " (dropped)"


@dataclass
class Entry:
    """One image of the dataset (kept or dropped) and where it lives."""

    id: str
    path: Path
    dataset: DatasetSpec
    subset: SubsetSpec
    caption: str
    dropped: bool = False

    @property
    def caption_file(self) -> Path:
        """The caption file sd-scripts reads for this image (the subset's ``caption_extension``)."""
        return self.path.with_suffix(str(self.subset.params.get("caption_extension") or ".caption"))

    @property
    def crop_file(self) -> Path:
        """The crop sidecar (``collage_crop_extension``)."""
        return crop_path_for(self.path, self.subset.config.crop_extension)


def entry_id(dataset: DatasetSpec, subset: SubsetSpec, path: str | os.PathLike[str]) -> str:
    """A stable id for an image: dataset and subset position in the TOML plus the file name.

    Examples:
        >>> from types import SimpleNamespace as N
        >>> entry_id(N(index=0), N(index=2), "/data/10_cat/img 1.png")
        '0/2/img 1.png'
    """
    return f"{dataset.index}/{subset.index}/{os.path.basename(path)}"


def folders_of(project: Project, config: str | os.PathLike[str] | None) -> Folders:
    """The folders the studio reads and writes for this project (image folders; metadata subsets read-only)."""
    dirs = [s.image_dir for _, s in project.subsets() if s.image_dir and not s.params.get("metadata_file")]
    dirs += [
        s.image_dir
        for d in project.datasets
        for s in d.subsets
        if s.image_dir and os.path.isdir(s.image_dir) and not s.params.get("metadata_file")
    ]
    shown = [s.image_dir for d in project.datasets for s in d.subsets if s.image_dir and s.params.get("metadata_file")]
    return Folders(dirs, [config] if config else [], read_only=shown)


def read_entries(project: Project, folders: Folders) -> tuple[dict[str, Entry], dict[str, str]]:
    """Every image of the project (dropped ones too) by id, and the ids left out of plan and check, with why.

    An image is left out when one of its files leads out of the dataset (nothing is read through it) or
    its caption file is larger than ``MAX_CAPTION_BYTES``; it is taken out of its subset's ``images``.
    """
    entries: dict[str, Entry] = {}
    outside: dict[str, str] = {}
    for dataset in project.datasets:
        for subset in dataset.subsets:
            inside = []
            for image in subset.images:
                eid = entry_id(dataset, subset, image.path)
                entry = Entry(eid, Path(image.path), dataset, subset, image.caption)
                why = left_out(entry, folders)
                if why is not None:  # one rule for reads and writes: nothing outside is read, shown or framed
                    entry.caption = ""
                    outside[eid] = why
                else:
                    inside.append(image)
                entries[eid] = entry
            subset.images = inside
            if subset.image_dir and not subset.params.get("metadata_file"):
                for path in glob_images(str(dropped_folder(Path(subset.image_dir)))):
                    eid = entry_id(dataset, subset, path)
                    if eid in entries:  # a new file took its name: both stay listed
                        eid += DROPPED_SUFFIX
                    entries.setdefault(eid, Entry(eid, Path(path), dataset, subset, "", dropped=True))
    return entries, outside


def left_out(e: Entry, folders: Folders) -> str | None:
    """Why the studio neither reads nor plans with ``e`` (a file leads out of the dataset, the caption is
    too long), or ``None``."""
    return folders.outside([e.path, e.caption_file, e.crop_file]) or too_long(e)


def too_long(e: Entry) -> str | None:
    """Why the studio does not plan with ``e``'s caption file (larger than ``MAX_CAPTION_BYTES``), or ``None``."""
    try:
        size = e.caption_file.stat().st_size
    except OSError:
        return None
    if size <= MAX_CAPTION_BYTES:
        return None
    return (
        f"caption file {e.caption_file} is {size / 2**20:.1f} MiB; the text encoder reads a few hundred tokens "
        f"of it (a few KB), and the studio plans no frames with captions over {MAX_CAPTION_BYTES >> 20} MiB: "
        "write a shorter caption"
    )


def stat_key(path: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """A file's (size, mtime, ctime) in ns, or None when it is missing: changes whenever the file is written."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns
