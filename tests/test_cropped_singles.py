"""Images with a ``.crop`` box that train alone: check, preview and export show what training trains (issue 20)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from collage_ext.cli import main
from test_cli import write_images, write_toml

MAGENTA = (255, 0, 255)


def lone_cropped(tmp_path: Path) -> Path:
    """A collage subset plus a one-image subset whose right half (magenta) its .crop box cuts away."""
    config = write_toml(tmp_path / "dataset.toml", write_images(tmp_path / "img", 4))
    lone = tmp_path / "lone"
    lone.mkdir()
    image = Image.new("RGB", (600, 400), (40, 90, 160))
    image.paste(MAGENTA, (300, 0, 600, 400))
    image.save(lone / "wide.png")
    (lone / "wide.txt").write_text("sks, wide\n", encoding="utf-8")
    (lone / "wide.crop").write_text("0, 0, 300, 400\n", encoding="utf-8")
    config.write_text(
        config.read_text(encoding="utf-8") + f'  [[datasets.subsets]]\n  image_dir = "{lone}"\n', encoding="utf-8"
    )
    return config


def test_check_says_the_crop_box_is_trained(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["check", str(lone_cropped(tmp_path)), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [finding] = [f for f in report["findings"] if f["code"] == "cropped_singles"]
    assert "wide.png" in finding["message"] and "cropped to the box" in finding["message"]


def test_export_writes_the_crop_box_of_a_single(tmp_path: Path) -> None:
    out = tmp_path / "export"
    assert main(["export", str(lone_cropped(tmp_path)), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    [single] = [s for s in manifest["singles"] if s["source"].endswith("wide.png")]
    assert single["crop"] == [0, 0, 300, 400]
    with Image.open(out / single["file"]) as exported:
        pixels = np.asarray(exported.convert("RGB"))
    assert pixels.shape == (400, 300, 3) and not (pixels == MAGENTA).all(axis=2).any()
    assert (out / single["file"]).with_suffix(".txt").read_text(encoding="utf-8").strip() == "sks, wide"


def test_preview_lists_the_trained_region(tmp_path: Path) -> None:
    out = tmp_path / "preview"
    assert main(["preview", str(lone_cropped(tmp_path)), "--out", str(out)]) == 0
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "wide.png</td><td>1</td><td>0, 0, 300, 400</td>" in html
