"""Recognise a folder written by ``collage-ext export``, so its frames are not put into collages again.

An export's ``train/<N>_<name>-collage/`` frames already are collages; planning collages of them
would halve the frames again (issue 19: 50 frames from 100 exported ones). Every exported image
folder lies two levels below the export's ``manifest.json`` (``OUT/train/1_name-collage/``), which
names collage_ext and the static plan; subsets reading such a folder default to ``collage_rate = 0``.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

#: The file every export writes at its top (see export.py).
MANIFEST = "manifest.json"


def export_root(image_dir: object) -> Path | None:
    """The export folder that ``image_dir`` belongs to, else ``None`` (also for a missing folder)."""
    if not isinstance(image_dir, (str, os.PathLike)) or not str(image_dir):
        return None
    folder = Path(image_dir)
    for parent in (folder.parent.parent, folder.parent):
        if _is_export(str(parent.resolve() if parent.exists() else parent)):
            return parent
    return None


@lru_cache(maxsize=64)
def _is_export(folder: str) -> bool:
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        return False
    try:
        with open(manifest, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "collage_ext" in data and data.get("plan") == "static" and "frames" in data
