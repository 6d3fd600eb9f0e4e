"""Files collage_ext writes stay readable by the trainer: a rewrite keeps the mode, a new file follows the umask.

``tempfile.mkstemp`` makes 0600 files; renamed over a caption (studio) or written as a static frame,
they locked out a trainer running as another user (Docker) with "Permission denied" (issue 20 item 4,
issue 19 item 5).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from collage_ext.core.filemodes import current_umask, mode_of, new_file_mode
from collage_ext.plan.frames import write_png_atomic
from collage_ext.studio.files import Folders, History, write_atomic
from tests.common import python_for_another_user


@pytest.fixture
def umask022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_umask_is_read_without_changing_it() -> None:
    old = os.umask(0o027)
    try:
        assert current_umask() == 0o027 and new_file_mode() == 0o640
        assert current_umask() == 0o027
    finally:
        os.umask(old)


def test_static_frames_follow_the_umask(tmp_path: Path, umask022: None) -> None:
    frame = tmp_path / "cache" / "collage_00001_abc.png"
    write_png_atomic(Image.new("RGB", (8, 8)), frame)
    assert mode_of(frame) == 0o644  # mkstemp alone gave 0600
    os.umask(0o002)
    second = tmp_path / "cache" / "collage_00002_abc.png"
    write_png_atomic(Image.new("RGB", (8, 8)), second)
    assert mode_of(second) == 0o664


def test_studio_rewrites_keep_the_files_mode(tmp_path: Path, umask022: None) -> None:
    folder = tmp_path / "10_a"
    folder.mkdir()
    caption = folder / "a.txt"
    caption.write_text("old\n", encoding="utf-8")
    for mode in (0o640, 0o664, 0o604):
        caption.chmod(mode)
        History(Folders([folder])).write(caption, f"caption {mode:o}\n".encode(), "caption")
        assert mode_of(caption) == mode
    write_atomic(caption, b"again\n")
    assert mode_of(caption) == 0o604


def test_studio_new_files_and_history_copies_follow_the_umask(tmp_path: Path, umask022: None) -> None:
    folder = tmp_path / "10_a"
    folder.mkdir()
    caption = folder / "a.txt"
    caption.write_text("old\n", encoding="utf-8")
    caption.chmod(0o600)  # a private caption stays private; its copy follows the umask like any new file
    history = History(Folders([folder]))
    history.write(folder / "a.crop", b"0, 0, 4, 4\n", "crop")
    assert mode_of(folder / "a.crop") == 0o644
    history.write(caption, b"new\n", "caption")
    kept = list((folder / "_collage_studio" / "history").iterdir())
    assert len(kept) == 1 and mode_of(kept[0]) == 0o644
    assert mode_of(caption) == 0o600


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to act as another user")
def test_another_user_can_read_what_was_written(umask022: None) -> None:
    """The Docker case: the files are written by one uid and read by ``nobody``."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="collage-modes-"))  # pytest's tmp_path is private to root (0700)
    try:
        root.chmod(0o755)
        _written_then_read_as_nobody(root)
    finally:
        shutil.rmtree(root)


def _written_then_read_as_nobody(root: Path) -> None:
    folder = root / "10_a"
    folder.mkdir()
    caption = folder / "a.txt"
    caption.write_text("old\n", encoding="utf-8")
    caption.chmod(0o644)
    History(Folders([folder])).write(caption, b"new caption\n", "caption")
    frame = folder / "collage_00001_abc.png"
    write_png_atomic(Image.new("RGB", (8, 8)), frame)
    code = "import sys\nfor p in sys.argv[1:]:\n    open(p, 'rb').read()\nprint('read', len(sys.argv) - 1)"
    python = python_for_another_user()
    if python is None:
        pytest.skip("no Python interpreter that the user nobody may run")
    done = subprocess.run(
        [python, "-I", "-c", code, str(caption), str(frame)], capture_output=True, text=True, user="nobody", timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "read 2"
