"""Static-frame cache writes are atomic: a build killed at any moment leaves no file that loads as valid."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

WRITER = r"""
import sys, numpy as np
from pathlib import Path
from PIL import Image
from collage_ext.plan.frames import write_png_atomic
out = Path(sys.argv[1])
for n in range(10_000):
    value = n % 251
    pixels = np.full((1024, 1024, 3), value, np.uint8)
    pixels[::7, :, 0] = 255 - value  # some structure so each PNG takes real time to encode
    write_png_atomic(Image.fromarray(pixels), out / f"collage_{n:05d}_{value:03d}.png")
"""


def test_kill_mid_write_leaves_only_complete_frames(tmp_path: Path) -> None:
    """SIGKILL the writer at random moments; every final-named file decodes to exactly what was meant."""
    rng = random.Random(7)
    for attempt in range(5):
        out = tmp_path / f"run{attempt}"
        out.mkdir()
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(out)], env={**os.environ, "PYTHONPATH": os.getcwd()}
        )
        # Kill at a random moment after the first frame landed (a loaded machine starts Python slowly).
        deadline = time.monotonic() + 120
        while not any(out.glob("collage_*.png")) and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.random())
        child.send_signal(signal.SIGKILL)
        child.wait()
        finals = sorted(out.glob("collage_*.png"))
        assert finals, "the writer never finished a frame; give it more time"
        for path in finals:
            value = int(path.stem.rsplit("_", 1)[1])
            with Image.open(path) as img:
                pixels = np.asarray(img)
            assert pixels.shape == (1024, 1024, 3) and pixels[1, 0, 0] == value and pixels[0, 0, 0] == 255 - value
        others = [p for p in out.iterdir() if not p.name.endswith(".png")]
        assert all(p.suffix == ".tmp" for p in others)  # a partial write keeps its temporary name


def test_partial_temp_files_are_never_loaded(tmp_path: Path) -> None:
    """A leftover temp file is not a cache hit: render_static_frame only trusts final names."""
    from collage_ext.plan.frames import write_png_atomic

    target = tmp_path / "collage_abc.png"
    (tmp_path / "collage_abc.1234.tmp").write_bytes(b"\x89PNG partial")
    assert not target.exists()
    write_png_atomic(Image.new("RGB", (4, 4)), target)
    with Image.open(target) as img:
        img.load()
