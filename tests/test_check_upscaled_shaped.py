"""`check` rates an upscaled image against the content-shaped frames the plan really uses (issue 19)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from collage_ext.cli import main


def photo(width: int, height: int, seed: int) -> Image.Image:
    """Photo-like detail: coarse colour blobs plus fine grain (sharp at full size)."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 255, (height // 4, width // 4, 3), dtype=np.uint8))
    grain = rng.normal(0, 40, (height, width, 3))
    pixels = np.asarray(base.resize((width, height), Image.Resampling.BICUBIC), dtype=float) + grain
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def test_upscaled_portrait_is_found_in_its_two_image_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "img"
    folder.mkdir()
    for i in range(9):
        photo(832, 1216, i).save(folder / f"p{i:02d}.png")
        (folder / f"p{i:02d}.txt").write_text(f"sks, p{i}\n", encoding="utf-8")
    photo(277, 405, 99).resize((832, 1216), Image.Resampling.LANCZOS).save(folder / "upscaled.png")  # 3x Lanczos
    (folder / "upscaled.txt").write_text("sks, upscaled\n", encoding="utf-8")
    config = tmp_path / "d.toml"
    config.write_text(
        '[general]\ncaption_extension = ".txt"\n\n[[datasets]]\nresolution = 1280\nenable_bucket = true\n'
        f'max_bucket_reso = 2048\n\n  [[datasets.subsets]]\n  image_dir = "{folder.as_posix()}"\n',
        encoding="utf-8",
    )
    capsys.readouterr()
    assert main(["check", str(config), "--json", "--seed", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    frames = {
        tuple(map(int, f.split("x")))
        for f in re.findall(r"\d+x\d+", report["summary"]["datasets"][0]["subsets"][0]["describe"].split("of ")[1])
    }
    flagged = [f for f in report["findings"] if f["code"] == "upscaled_image"]
    assert [Path(f["file"]).name for f in flagged] == ["upscaled.png"]  # the sharp ones are not flagged
    message = flagged[0]["message"]
    cell = tuple(map(int, re.search(r"its cell of about (\d+)x(\d+) in a", message).groups()))  # type: ignore[union-attr]
    frame = tuple(map(int, re.search(r"in a (\d+)x(\d+) frame", message).groups()))  # type: ignore[union-attr]
    assert frame in frames and cell != frame and cell[0] < frame[0]  # a frame the plan uses; the cell is a part of it
