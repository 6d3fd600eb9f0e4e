"""File permissions of the files collage_ext writes: a rewrite keeps the file's mode, a new file follows the umask.

``tempfile.mkstemp`` creates its file with mode 0600, and an atomic write renames that file over the
target, so without care every rewritten caption, crop box or training TOML, and every static frame,
ends up readable by its owner only: a trainer running as another user (a Docker container, a shared
machine) then gets "Permission denied". ``match_mode`` gives the temporary file the mode (and, where
the process may, the owner and group) the final file should have, before it is renamed into place.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux ``/proc``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore at once (the only portable way to read it)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: 0666 less the umask (0644 under umask 022)."""
    return 0o666 & ~current_umask()


def match_mode(fd: int, target: str | os.PathLike[str]) -> None:
    """Give the open temporary file ``fd`` the permissions ``target`` has (or a new file would get).

    An existing ``target`` keeps its permission bits, and its owner and group where this process may
    set them (root, or a group the user belongs to); otherwise the umask applies.
    """
    try:
        st = os.stat(target)
    except FileNotFoundError:
        os.fchmod(fd, new_file_mode())
        return
    try:
        os.fchown(fd, st.st_uid, st.st_gid)
    except OSError:
        try:
            os.fchown(fd, -1, st.st_gid)
        except OSError:
            pass  # another group of a user we are not: the mode still applies
    os.fchmod(fd, st.st_mode & 0o7777)


def mode_of(path: str | os.PathLike[str]) -> int:
    """Permission bits of ``path`` (for tests and messages), e.g. ``0o644``."""
    return Path(path).stat().st_mode & 0o7777


def write_bytes_atomic(path: Path, data: bytes, *, sync: bool = False) -> None:
    """Write ``data`` under a temporary name in ``path``'s folder, then rename: never a partial file at ``path``.

    The file keeps ``path``'s mode, or gets the umask's for a new file (``match_mode``), not
    ``mkstemp``'s private 0600. ``sync`` flushes it to disk before the rename (the user's own files:
    captions, crop boxes, the training TOML). A failed or interrupted write removes its temporary file.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        match_mode(fd, path)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
