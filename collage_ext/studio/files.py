"""The dataset's folders and every write the studio makes: inside them only, atomic, undoable.

* ``Folders`` knows the image folders of the dataset (real paths, symlinks resolved) and answers
  "may I read / write this file?" with one rule for both: a file belongs to the dataset when its real
  path (every symlink resolved) lies in one of them, so ``..`` and symlinks that lead elsewhere are
  refused, for an image, a caption, a crop box, and a frame built from them alike. A write through a
  symlink that stays inside goes to the file it points to (the link is kept).
* ``write_atomic`` writes a temporary file in the same folder and renames it over the target
  (``os.replace``), so a crash leaves the old or the new file, never half of one.
* ``History`` keeps the previous bytes of every caption or crop file it overwrites (in memory for
  ``undo``, and on disk under ``<image folder>/_collage_studio/history/``), so nothing is lost by
  accident; both are bounded (``KEEP_PER_FILE`` copies per file and ``KEEP_BYTES`` per history
  folder on disk, ``UNDO_STEPS`` / ``UNDO_BYTES`` in memory), the oldest going first.
* ``file_version`` names a file's content, so a write based on an older read is refused (409)
  instead of silently replacing what another tab or program wrote.
* ``drop`` / ``restore`` move an image and its sidecars (a sidecar another image shares by stem, as
  ``img_004.txt`` serves both ``img_004.jpg`` and ``img_004.png``, is copied, never taken away)
  into ``<image folder>/_collage_studio/dropped/``
  and back. sd-scripts lists a DreamBooth subset with ``glob_images(image_dir, "*")``, which is not
  recursive (``library/train_util.py``), so a dropped image leaves plain sd-scripts' run too;
  nothing is deleted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from collage_ext.core.errors import CollageError
from collage_ext.core.filemodes import write_bytes_atomic

logger = logging.getLogger(__name__)

#: The studio's own sub-folder of an image folder (sd-scripts never scans sub-folders of image_dir).
STUDIO_DIR = "_collage_studio"
DROPPED = "dropped"
HISTORY = "history"

#: Copies kept on disk per file, and bytes per history folder (the oldest copies are removed first).
KEEP_PER_FILE = 20
KEEP_BYTES = 64 << 20
#: Changes Undo remembers in memory, and their bytes (the oldest are forgotten first; the disk copies stay).
UNDO_STEPS = 200
UNDO_BYTES = 64 << 20

_KEPT = re.compile(r"^(\d{8}-\d{6})-(\d+)_(.+)$")


def file_version(path: Path) -> str:
    """A short name for ``path``'s content (``"absent"`` when there is no file), to detect stale writes.

    Examples:
        >>> file_version(Path("/nonexistent/caption.txt"))
        'absent'
    """
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        return "absent"


class RefusedError(CollageError):
    """A request the studio refuses: a file outside the dataset, a symlink leading out, a name clash.

    ``status`` is the HTTP status the page gets (403 refused, 404 unknown id, 409 conflicts with the files).
    """

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


def _under(real: Path, roots: Iterable[Path]) -> Path | None:
    """The root of ``roots`` that is ``real`` or one of its folders, or ``None``."""
    text = os.path.normcase(str(real))  # a string prefix test: ``real.parents`` builds a Path per folder level
    for root in roots:
        top = os.path.normcase(str(root))
        if text == top or text.startswith(top if top.endswith(os.sep) else top + os.sep):
            return root
    return None


class Folders:
    """The dataset's image folders, resolved once; every read and write is checked against them."""

    def __init__(
        self,
        folders: Iterable[str | os.PathLike[str]],
        files: Iterable[str | os.PathLike[str]] = (),
        read_only: Iterable[str | os.PathLike[str]] = (),
    ) -> None:
        self.roots: tuple[Path, ...] = tuple(sorted({Path(os.path.realpath(f)) for f in folders}))
        #: Single files outside the image folders the user asked the studio to edit (the training TOML's seed).
        self.files: frozenset[Path] = frozenset(Path(os.path.realpath(f)) for f in files)
        #: Image folders shown but never written (subsets read from a ``metadata_file``).
        self.read_roots: tuple[Path, ...] = tuple(sorted({Path(os.path.realpath(f)) for f in read_only}))
        #: Resolved folders (``_real``): a dataset's files share a few folders, and the studio asks about
        #: every file after every edit. Built anew with the project (``Studio._load``).
        self._dirs: dict[str, str] = {}

    def _real(self, path: str | os.PathLike[str]) -> Path:
        """``os.path.realpath(path)``, with the folder part resolved once per folder.

        A file that is itself a symlink, or a path with ``..`` (which ``realpath`` resolves after the
        links before it), is resolved in full; otherwise one ``lstat`` says the file is no link and its
        folder's resolution is reused: a full ``realpath`` costs an ``lstat`` per path component, and
        after every edit the studio asks about every image and sidecar of the dataset.
        """
        text = os.fspath(path)
        if ".." in text.replace(os.altsep or os.sep, os.sep).split(os.sep) or os.path.islink(text):
            return Path(os.path.realpath(text))
        folder, name = os.path.split(os.path.abspath(text))
        real = self._dirs.get(folder)
        if real is None:
            real = self._dirs[folder] = os.path.realpath(folder)
        return Path(real, name)

    def allowed_folders(self) -> set[Path]:
        """The folders the studio writes into: the image folders and its two sub-folders of each (and the
        history folder beside each extra file)."""
        out = {f for r in self.roots for f in (r, r / STUDIO_DIR / HISTORY, r / STUDIO_DIR / DROPPED)}
        return out | {f.parent / STUDIO_DIR / HISTORY for f in self.files}

    def root_of(self, path: str | os.PathLike[str]) -> Path | None:
        """The image folder that really holds ``path`` (symlinks resolved), or ``None``."""
        return _under(self._real(path), self.roots)

    def readable(self, path: str | os.PathLike[str]) -> Path:
        """``path`` resolved, when it is a file of the dataset.

        Raises:
            RefusedError: it lies outside every image folder (``..``, an absolute path, a symlink out).
        """
        real = self._real(path)
        if _under(real, self.roots) is None and _under(real, self.read_roots) is None:
            raise RefusedError(
                f"{path} is not inside the dataset's image folders (or is a symlink leading out "
                "of them); the studio only shows the dataset's own files"
            )
        return real

    def outside(self, paths: Iterable[str | os.PathLike[str]]) -> str | None:
        """Why the studio may not read one of ``paths`` that exist (an image and its sidecars), or ``None``."""
        for path in paths:
            if os.path.lexists(path):
                try:
                    self.readable(path)
                except RefusedError as exc:
                    return str(exc)
        return None

    def writable(self, path: str | os.PathLike[str]) -> Path:
        """``path`` itself when the studio may write it: its folder is an image folder (or the studio's
        sub-folder of one) and it is not a symlink.

        Raises:
            RefusedError: the target or its folder lies outside the image folders, or is a symlink.
        """
        target = Path(path)
        if target.is_symlink():
            real = Path(os.path.realpath(target))
            if self.root_of(real) is None and real not in self.files:
                raise RefusedError(
                    f"refusing to write {target}: it is a symlink leading out of the dataset's image "
                    f"folders (to {real}); the studio reads and writes only files inside them"
                )
            target = real  # a link inside the dataset: write the file it points to, keep the link
        if Path(os.path.realpath(target)) in self.files:
            return target
        folder = Path(os.path.realpath(target.parent))
        if folder not in self.allowed_folders():
            raise RefusedError(
                f"refusing to write {target}: it is not in one of the dataset's image folders "
                f"({', '.join(str(r) for r in self.roots) or 'none'})"
            )
        if self.root_of(target) is None and folder not in self.allowed_folders():
            raise RefusedError(f"refusing to write {target}: it resolves outside the dataset's image folders")
        return target


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file of the user's through a temporary file in the same folder and one rename, synced to disk."""
    write_bytes_atomic(path, data, sync=True)


@dataclass(frozen=True)
class Change:
    """One write: ``path`` held ``before`` (``None``: it did not exist) and the studio made it ``after``."""

    path: Path
    before: bytes | None
    after: bytes | None
    what: str


class History:
    """The undo stack of this session, with every overwritten version also kept on disk."""

    def __init__(self, folders: Folders) -> None:
        self.folders = folders
        self.changes: list[Change] = []

    def write(self, path: Path, data: bytes | None, what: str) -> Change:
        """Replace ``path`` with ``data`` (``None``: remove it), keeping the previous version.

        Raises:
            RefusedError: ``path`` may not be written (see ``Folders.writable``).
        """
        target = self.folders.writable(path)
        before = target.read_bytes() if target.is_file() else None
        if before is not None:
            self._keep(target, before)
        if data is None:
            if before is not None:
                target.unlink()
        else:
            write_atomic(target, data)
        change = Change(target, before, data, what)
        self.changes.append(change)
        self._forget()
        logger.info(f"studio: {what}: {target}")
        return change

    def _forget(self) -> None:
        """Keep Undo's memory within ``UNDO_STEPS`` changes and ``UNDO_BYTES`` (the copies on disk stay)."""

        def size(c: Change) -> int:
            return len(c.before or b"") + len(c.after or b"")

        total = sum(size(c) for c in self.changes)
        while len(self.changes) > UNDO_STEPS or (total > UNDO_BYTES and len(self.changes) > 1):
            total -= size(self.changes.pop(0))

    def undo(self) -> Change | None:
        """Put back what the last change replaced, byte for byte; ``None`` when there is nothing to undo."""
        if not self.changes:
            return None
        change = self.changes.pop()
        target = self.folders.writable(change.path)
        if change.before is None:
            if target.is_file():
                self._keep(target, target.read_bytes())
                target.unlink()
        else:
            write_atomic(target, change.before)
        logger.info(f"studio: undo {change.what}: {target}")
        return change

    def retire(self, path: Path) -> None:
        """Remove ``path``, its bytes kept on disk in the history folder (not an Undo step).

        Raises:
            RefusedError: ``path`` may not be written.
        """
        target = self.folders.writable(path)
        self._keep(target, target.read_bytes())
        target.unlink()

    def _keep(self, target: Path, data: bytes) -> None:
        in_dropped = target.parent.name == DROPPED and target.parent.parent.name == STUDIO_DIR
        folder = target.parent.parent / HISTORY if in_dropped else target.parent / STUDIO_DIR / HISTORY
        if Path(os.path.realpath(folder)) not in self.folders.allowed_folders():
            raise RefusedError(f"refusing to keep a copy of {target} outside its image folder")
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        # Numbered after every copy of this second (pruning frees low numbers; reusing one would misorder them).
        taken = [int(m.group(2)) for m in map(_KEPT.match, os.listdir(folder)) if m and m.group(1) == stamp]
        n = max(taken, default=-1) + 1
        while (keep := folder / f"{stamp}-{n}_{target.name}").exists():
            n += 1
        write_atomic(self.folders.writable(keep), data)
        prune_history(folder, keep)


def prune_history(folder: Path, newest: Path | None = None) -> list[Path]:
    """Remove the oldest copies in a history folder beyond ``KEEP_PER_FILE`` per file and ``KEEP_BYTES`` in all.

    ``newest`` (the copy just written) is never removed. Returns the removed copies.
    """
    copies = []
    for item in folder.iterdir():
        m = _KEPT.match(item.name)
        if m and item.is_file() and not item.is_symlink():
            copies.append(((m.group(1), int(m.group(2))), m.group(3), item, item.stat().st_size))
    copies.sort(key=lambda c: c[0])  # oldest first
    removed: list[Path] = []
    per: dict[str, int] = {}
    for _, name, _, _ in copies:
        per[name] = per.get(name, 0) + 1
    total = sum(c[3] for c in copies)
    for _, name, item, size in copies:
        if item == newest:
            continue
        if per[name] > KEEP_PER_FILE or total > KEEP_BYTES:
            item.unlink()
            removed.append(item)
            per[name] -= 1
            total -= size
    if removed:
        logger.info(
            f"studio: removed {len(removed)} old cop{'y' if len(removed) == 1 else 'ies'} from {folder} "
            f"(keeps {KEEP_PER_FILE} per file, {KEEP_BYTES >> 20} MiB in all)"
        )
    return removed


def sidecars(image: Path, extensions: Sequence[str]) -> list[Path]:
    """The image and those of its sidecars (caption, crop box) that exist."""
    out = [image]
    for ext in dict.fromkeys(extensions):
        side = image.with_suffix(ext)
        if side != image and side.is_file():
            out.append(side)
    return out


def dropped_folder(image_dir: Path) -> Path:
    """Where dropped images of an image folder wait."""
    return image_dir / STUDIO_DIR / DROPPED


def move_group(files: Sequence[Path], dest: Path, folders: Folders, *, copy: Sequence[Path] = ()) -> list[Path]:
    """Move ``files`` into ``dest`` (created inside an image folder), refusing to overwrite anything.

    The files in ``copy`` (sidecars another image shares) are copied instead and stay where they are.

    Raises:
        RefusedError: a file or ``dest`` lies outside the image folders, or a name is already taken.
    """
    for f in files:
        folders.writable(f)
    if Path(os.path.realpath(dest)) not in folders.allowed_folders():
        raise RefusedError(f"refusing to move files into {dest}: not an image folder or its {STUDIO_DIR}/{DROPPED}")
    dest.mkdir(parents=True, exist_ok=True)
    targets = [folders.writable(dest / f.name) for f in files]
    taken = [t for t in targets if t.exists() or t.is_symlink()]
    if taken:
        raise RefusedError(
            f"refusing to move {files[0].name}: {taken[0]} already exists; rename one of them first", 409
        )
    for f, t in zip(files, targets):
        if f in copy:
            write_atomic(t, f.read_bytes())
        else:
            os.replace(f, t)
    return targets
