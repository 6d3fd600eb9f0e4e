"""What sd-scripts registers for a subset: its images (path, caption, repeats) and the folder their keys hang off.

Both readers describe a subset with these: the CLI's reader (``kohya.datasets``) from the dataset
TOML, the adapter from sd-scripts' own ``ImageInfo`` objects. The planner (``plan.subsets``) takes
them in a ``SubsetInput``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SubsetImage:
    """One image of a subset as the trainer registered it.

    Attributes:
        path: the path exactly as sd-scripts spells it (``ImageInfo.absolute_path``).
        caption: the raw caption sd-scripts read (caption file, else ``class_tokens``, else "").
        num_repeats: repeats per epoch (for regularisation images, after sd-scripts' balancing).
    """

    path: str
    caption: str
    num_repeats: int


def subset_root(image_dir: str | None, metadata_file: str | None) -> str:
    """The folder sample keys are relative to: ``image_dir``, else the metadata file's folder.

    Examples:
        >>> subset_root("train/10_cat", None), subset_root(None, "meta/cat.json")
        ('train/10_cat', 'meta')
    """
    return image_dir or os.path.dirname(metadata_file or ".")
