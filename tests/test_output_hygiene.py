"""Output hygiene (issue 19): no progress-bar noise in files, no stale frames, demo images that are all different."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import toml
from PIL import Image

from collage_ext.cli import main
from collage_ext.core import progress as progress_module
from collage_ext.core.progress import progress, set_quiet
from test_cli import frame_files, write_images, write_toml

ROOT = Path(__file__).resolve().parents[1]


def test_no_bar_when_stderr_is_not_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """stderr to a file: no \\r redraws, one summary line per long loop."""
    dataset = write_toml(tmp_path / "dataset.toml", write_images(tmp_path / "img", 12))
    capsys.readouterr()
    assert main(["check", str(dataset)]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "it/s" not in err and "image/s" not in err
    assert len(re.findall(r"^INFO checking images: 12 images in \d+\.\d s$", err, re.M)) == 1, err


def test_bar_on_a_terminal_and_quiet_mode(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(progress_module, "on_terminal", lambda: True)
    bar = progress(list(range(10)), "work", "item")
    assert type(bar).__name__ == "tqdm" and list(bar) == list(range(10))
    assert progress([1, 2], "short", "item") == [1, 2]  # short loops: nothing at all
    monkeypatch.setattr(progress_module, "on_terminal", lambda: False)
    try:
        set_quiet(True)  # the studio: no bar, the summary only at DEBUG
        with caplog.at_level(logging.INFO, logger="collage_ext.core.progress"):
            assert list(progress(list(range(10)), "work", "item")) == list(range(10))
        assert not caplog.records
    finally:
        set_quiet(False)


def test_preview_into_a_used_folder_leaves_no_stale_frames(tmp_path: Path) -> None:
    dataset = write_toml(tmp_path / "dataset.toml", write_images(tmp_path / "img", 12))
    out = tmp_path / "preview"
    assert main(["preview", str(dataset), "--out", str(out), "--seed", "1"]) == 0
    assert len(frame_files(out)) > 3
    (out / "frames" / "mine.png").write_bytes(b"not the preview's")  # not named in its manifest: kept
    assert main(["preview", str(dataset), "--out", str(out), "--seed", "2", "--count", "3"]) == 0
    frames = frame_files(out)
    assert len(frames) == 4 and (out / "frames" / "mine.png") in frames
    assert len(list((out / "thumbs").glob("*.jpg"))) == 3
    assert len(list((out / "frames").glob("*.json"))) == 3 and len(list((out / "frames").glob("*.txt"))) == 3


def test_demo_count_is_what_the_folder_holds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--count", "4"]) == 0
    printed = capsys.readouterr().out
    folder = out / "dataset" / "1_demo"
    assert len(list(folder.glob("*.png"))) == 4 and len(list(folder.glob("*.txt"))) == 4
    frames = frame_files(out)
    assert printed.startswith(f"4 source images -> {len(frames)} collage frames")
    toml_text = (out / "dataset" / "dataset.toml").read_text(encoding="utf-8")
    assert "num_repeats = 1" in toml_text and "/1_demo" in toml_text  # the folder name says the same repeats


def test_demo_images_are_all_different(tmp_path: Path) -> None:
    from collage_ext.commands.demo import make_demo_dataset

    folder = make_demo_dataset(tmp_path, 72)  # 64 distinct colour pairs, then moved subjects
    digests = {
        hashlib.sha256(np.asarray(Image.open(p).convert("RGB")).tobytes()).hexdigest()
        for p in sorted(folder.glob("*.png"))
    }
    assert len(digests) == 72


def test_pytest_lists_skip_reasons() -> None:
    """The README says skipped tests are reported with the reason: pytest's -rs is on by default."""
    config = toml.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "-rs" in config["tool"]["pytest"]["ini_options"]["addopts"].split()


def test_preview_of_a_run_without_collage_frames(tmp_path: Path) -> None:
    """Every image trains single (rate 0): preview says so with an empty sheet instead of an internal error."""
    config = write_toml(tmp_path / "d.toml", write_images(tmp_path / "img", 4), general="collage_rate = 0.0")
    out = tmp_path / "preview"
    assert main(["preview", str(config), "--out", str(out), "--seed", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["frames"] == []
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width > 0
