"""Static frames rendered through sd-scripts' real loader are readable by a trainer running as another user.

``tempfile.mkstemp`` made every frame 0600 (issue 20 item 4): a second run as another uid (Docker)
that reuses the cache got "Permission denied". Frames now follow the umask like any new file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import fakes
from test_collage_dataset import dataset_toml, load
from test_runtime_faults import RAISE, STATIC, write_images

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.common import python_for_another_user

pytestmark = pytest.mark.sdscripts


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_static_frames_follow_the_umask(tmp_path: Path, toks: fakes.TinyTokenizers, umask: int) -> None:
    folder = write_images(tmp_path / "img")
    cache = tmp_path / "cache"
    config = dataset_toml(tmp_path, folder, general=f'{RAISE}\ncollage_cache_dir = "{cache.as_posix()}"')
    old = os.umask(umask)
    try:
        group, _, _ = load(tmp_path, toks, config, *STATIC)
    finally:
        os.umask(old)
    frames = sorted(Path(i.absolute_path) for i in group.image_data.values() if "collage_" in i.absolute_path)
    assert frames and all(f.parent == cache for f in frames)
    modes = {f.name: f.stat().st_mode & 0o777 for f in frames}
    assert set(modes.values()) == {0o666 & ~umask}, modes  # was 0o600 for every frame
    if hasattr(os, "geteuid") and os.geteuid() == 0 and (python := python_for_another_user()) is not None:
        # The trainer in the container: another uid reads every frame (the cache folder is world-searchable).
        for path in (tmp_path, cache):
            path.chmod(0o755)
        for parent in tmp_path.parents:
            if parent.stat().st_mode & 0o001 == 0:
                return  # a private parent folder (pytest's tmp root): the mode assertion above is the test
        done = subprocess.run(
            [python, "-I", "-c", "import sys\nfor p in sys.argv[1:]: open(p, 'rb').read()", *map(str, frames)],
            user="nobody",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
