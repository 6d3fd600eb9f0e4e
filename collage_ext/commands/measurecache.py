"""Image-quality measures remembered per file, so a check after an edit decodes only what changed.

``check`` decodes every image in full to measure its detail factor and contrast (``quality``): for
200 camera photos that is a minute on one core, and the studio re-checks after every edit. The
measures depend only on the file's bytes (and the fill colour transparent pixels are laid on), so
they are cached under the key (absolute path, size, mtime in ns, fill): an edited, replaced or
touched file gets a new key and is measured again; a crop box or caption edit does not touch the
image, so its measures stay valid (crop boxes are re-validated on every check, a cheap header read).

The cache is kept in memory and in one JSON file, ``quality-v<N>.json``, in
``COLLAGE_EXT_CACHE_DIR`` (else ``$XDG_CACHE_HOME/collage_ext``, else ``~/.cache/collage_ext``), so
the studio starts warm after a first ``check``. ``COLLAGE_EXT_CACHE_DIR=off`` keeps it in memory
only. Unreadable files are cached too (their error message), under the same key. A file that
cannot be written costs nothing but the speed-up (logged at debug).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from collage_ext.commands.quality import ImageMeasures
from collage_ext.core.filemodes import write_bytes_atomic
from collage_ext.core.types import Size

logger = logging.getLogger(__name__)

#: Bumped when ``quality``'s measures change meaning: an old file is then ignored.
VERSION = 1
#: Files remembered at most (the oldest entries go first).
MAX_ENTRIES = 100_000

Key = tuple[str, int, int, tuple[int, int, int]]


def cache_dir() -> Path | None:
    """Where the cache file lives, or None when ``COLLAGE_EXT_CACHE_DIR=off``."""
    env = os.environ.get("COLLAGE_EXT_CACHE_DIR")
    if env:
        return None if env.lower() in ("off", "0", "none") else Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "collage_ext"


def file_key(path: str, fill: tuple[int, int, int]) -> Key | None:
    """The cache key of an image file now, or None when it cannot be stat'ed."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, tuple(fill))  # type: ignore[return-value]


class MeasureCache:
    """``ImageMeasures`` (or the error message of an unreadable file) per file key; safe across threads."""

    def __init__(self, file: Path | None = None, *, persist: bool = True) -> None:
        folder = cache_dir() if persist else None
        self.file = file if file is not None else (folder / f"quality-v{VERSION}.json" if folder else None)
        self._lock = threading.Lock()
        self._data: dict[Key, ImageMeasures | str] = {}
        self._dirty = False
        self._load()

    def _load(self) -> None:
        if self.file is None or not self.file.is_file():
            return
        try:
            raw = json.loads(self.file.read_text(encoding="utf-8"))
            for path, size, mtime, fill, value in raw.get("entries", []):
                key: Key = (path, size, mtime, tuple(fill))
                self._data[key] = (
                    value
                    if isinstance(value, str)
                    else ImageMeasures(Size(*value["size"]), float(value["detail_factor"]), float(value["contrast"]))
                )
        except (OSError, ValueError, TypeError, KeyError) as exc:
            logger.debug(f"ignoring the quality cache {self.file}: {exc}")
            self._data = {}

    def get(self, key: Key | None) -> ImageMeasures | str | None:
        """The cached measures (or error message) for this key, or None."""
        if key is None:
            return None
        with self._lock:
            return self._data.get(key)

    def put(self, key: Key | None, value: ImageMeasures | str) -> None:
        """Remember a file's measures; other keys of the same path are forgotten (the file changed)."""
        if key is None:
            return
        with self._lock:
            for old in [k for k in self._data if k[0] == key[0] and k != key] if len(self._data) < 5000 else []:
                del self._data[old]
            self._data[key] = value
            while len(self._data) > MAX_ENTRIES:
                del self._data[next(iter(self._data))]
            self._dirty = True

    def forget(self, path: str | None = None) -> None:
        """Forget one file (or everything): its next check measures it again."""
        with self._lock:
            if path is None:
                self._data.clear()
            else:
                target = os.path.abspath(path)
                for key in [k for k in self._data if k[0] == target]:
                    del self._data[key]
            self._dirty = True

    def __len__(self) -> int:
        return len(self._data)

    def save(self) -> None:
        """Write the cache file (atomically) when something changed."""
        with self._lock:
            if self.file is None or not self._dirty:
                return
            entries: list[list[Any]] = []
            for (path, size, mtime, fill), value in self._data.items():
                entries.append(
                    [
                        path,
                        size,
                        mtime,
                        list(fill),
                        value
                        if isinstance(value, str)
                        else {
                            "size": list(value.size),
                            "detail_factor": value.detail_factor,
                            "contrast": value.contrast,
                        },
                    ]
                )
            self._dirty = False
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(self.file, json.dumps({"version": VERSION, "entries": entries}).encode("utf-8"))
        except OSError as exc:
            logger.debug(f"cannot write the quality cache {self.file}: {exc}")
