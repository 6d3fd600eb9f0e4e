"""An export trains right with plain sd-scripts: its printed command and counts, and `check` on it (issue 19)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from collage_ext.cli import main
from collage_ext.core.types import Size
from collage_ext.geometry.buckets import Buckets
from test_cli import write_images, write_toml


def _export(tmp_path: Path, capsys: pytest.CaptureFixture[str], dataset: str = "") -> tuple[Path, str]:
    toml_path = write_toml(
        tmp_path / "dataset.toml", write_images(tmp_path / "img", 10), resolution=1024, dataset=dataset
    )
    out = tmp_path / "export"
    capsys.readouterr()
    assert main(["export", str(toml_path), "--out", str(out), "--seed", "5"]) == 0
    return out, capsys.readouterr().out


def test_printed_command_gives_the_frames_their_buckets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, printed = _export(tmp_path, capsys, "max_bucket_reso = 2048\nbucket_reso_steps = 32\nmin_bucket_reso = 320")
    line = next(x for x in printed.splitlines() if "--train_data_dir" in x)
    assert "--max_bucket_reso 2048" in line and "--bucket_reso_steps 32" in line and "--min_bucket_reso 320" in line
    assert "--enable_bucket" in line and "--train_batch_size 2" in line
    assert line in (out / "README.txt").read_text(encoding="utf-8")
    flags = dict(re.findall(r"--(\w+) (\d+)", line))
    buckets = Buckets.from_params(Size(1024, 1024), {"enable_bucket": True, **{k: int(v) for k, v in flags.items()}})
    default = Buckets.from_params(Size(1024, 1024), {"enable_bucket": True})
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    frames = [Size(*f["frame"]) for f in manifest["frames"]]
    assert frames and all(buckets.select(f)[0] == tuple(f) for f in frames)  # each frame is its own bucket
    assert any(default.select(f)[0] != tuple(f) for f in frames)  # with sd-scripts' defaults some would not be


def test_export_counts_agree_with_check_on_the_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The printed samples/batches are what `check` (sd-scripts' counting) finds; the export trains as single images."""
    out, printed = _export(tmp_path, capsys, "max_bucket_reso = 2048")
    found = re.search(
        r"One epoch of it: (\d+) training samples in (\d+) batches \((\d+) buckets?\) = (\d+) optimizer", printed
    )
    assert found, printed
    samples, batches, buckets, steps = map(int, found.groups())
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    exported = sum(f["repeats"] for f in manifest["frames"]) + sum(s["repeats"] for s in manifest["singles"])
    shown = sum(f["repeats"] * len(f["sources"]) for f in manifest["frames"]) + sum(
        s["repeats"] for s in manifest["singles"]
    )
    assert samples == exported and shown == 20  # 10 images x 2 repeats, in fewer samples
    capsys.readouterr()
    assert main(["check", str(out / "dataset.toml"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    dataset = report["summary"]["datasets"][0]
    assert dataset["samples_per_epoch"] == samples and dataset["batches_per_epoch"] == batches == steps
    assert dataset["buckets"] == buckets
    assert all(
        s["collage_frames"] == 0 and s["collage_rate"] == 0 for s in dataset["subsets"]
    )  # no collage of collages
    assert any(f["code"] == "export_folder" for f in report["findings"])
    capsys.readouterr()  # the same for the folder itself (--train_data_dir)
    assert (
        main(
            [
                "check",
                str(out / "train"),
                "--json",
                "--",
                "--resolution",
                "1024",
                "--enable_bucket",
                "--max_bucket_reso",
                "2048",
                "--caption_extension",
                ".txt",
            ]
        )
        == 0
    )
    subsets = json.loads(capsys.readouterr().out)["summary"]["datasets"][0]["subsets"]
    assert subsets and all(s["collage_frames"] == 0 for s in subsets)
