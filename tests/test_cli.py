"""The ``collage-ext`` command line: demo, preview, export, check, inspect, exit codes and messages.

Everything runs in-process through ``cli.main(argv)`` on datasets generated in ``tmp_path``; no
sd-scripts is needed (``tests/sdscripts/test_cli_identity.py`` compares with the real loader).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import toml
from PIL import Image

from collage_ext.cli import main
from collage_ext.commands.demo import draw_landscape, draw_portrait
from collage_ext.core.config import split_dataset_config
from collage_ext.core.types import Size
from collage_ext.geometry.buckets import Buckets
from collage_ext.kohya.datasets import build_run
from collage_ext.plan.collage import Collage
from collage_ext.plan.run import resolve_seed
from collage_ext.plan.subsets import SubsetImage, SubsetInput, plan_subset

COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "teal", "pink"]


def write_images(folder: Path, count: int = 8, *, caption: str = "sks, {i}") -> Path:
    """Portraits and landscapes (drawn, sharp, good contrast) with ``.txt`` captions."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        color = COLORS[i % len(COLORS)]
        img = (
            draw_portrait(Size(416, 608), color, "azure")
            if i % 2 == 0
            else draw_landscape(Size(608, 416), color, "sand")
        )
        img.save(folder / f"img_{i:02d}.png")
        (folder / f"img_{i:02d}.txt").write_text(caption.format(i=f"id{i:03d}, {color}") + "\n", encoding="utf-8")
    return folder


def write_toml(
    path: Path,
    image_dir: Path,
    general: str = "collage_rate = 1.0",
    subset: str = "",
    dataset: str = "",
    repeats: int = 2,
    resolution: int = 512,
) -> Path:
    """A dataset TOML in sd-scripts' documented shape."""
    path.write_text(
        f'[general]\ncaption_extension = ".txt"\nkeep_tokens = 1\n{general}\n\n'
        f"[[datasets]]\nresolution = {resolution}\nbatch_size = 2\nenable_bucket = true\n{dataset}\n"
        f'  [[datasets.subsets]]\n  image_dir = "{image_dir.as_posix()}"\n  num_repeats = {repeats}\n  {subset}\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    """An 8-image collage dataset TOML."""
    return write_toml(tmp_path / "dataset.toml", write_images(tmp_path / "img"))


def frame_files(out: Path) -> list[Path]:
    """Frame PNGs of a preview (no masks)."""
    return sorted(p for p in (out / "frames").glob("*.png") if not p.stem.endswith("_mask"))


# -- demo ------------------------------------------------------------------------------------------


def test_demo_writes_frames_contact_sheets_and_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README demo: frames + captions, index.html, contact_sheet.png and a reusable dataset TOML."""
    out = tmp_path / "demo_out"
    assert main(["demo", "--out", str(out)]) == 0
    frames = frame_files(out)
    assert frames and (out / "contact_sheet.png").is_file() and (out / "dataset" / "dataset.toml").is_file()
    page = (out / "index.html").read_text(encoding="utf-8")
    assert all(f'src="thumbs/{f.stem}.jpg"' in page for f in frames)
    assert "index.html" in capsys.readouterr().out
    assert main(["check", str(out / "dataset" / "dataset.toml")]) == 0  # the demo data is clean


def test_demo_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Usage errors exit 2 with one line on stderr."""
    assert main(["demo", "--out", str(tmp_path), "--count", "1"]) == 2
    assert "--count must be at least 2" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path), "--frame_size", "12"]) == 2


# -- preview ---------------------------------------------------------------------------------------


def test_preview_writes_every_frame_of_the_epoch(dataset: Path, tmp_path: Path) -> None:
    """One PNG + caption + mask + JSON per collage slot, matching the pool's plan for that epoch."""
    out = tmp_path / "preview"
    assert main(["preview", str(dataset), "--out", str(out), "--seed", "3"]) == 0
    frames = frame_files(out)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert len(frames) == manifest["summary"]["collage_frames"] == len(manifest["frames"]) > 0
    for png in frames:
        assert png.with_suffix(".txt").read_text(encoding="utf-8").startswith("sks")  # keep_tokens trigger first
        info = json.loads(png.with_suffix(".json").read_text(encoding="utf-8"))
        assert info["epoch"] if "epoch" in info else info["params"]["epoch"] == 1
        mask = np.asarray(Image.open(png.with_name(png.stem + "_mask.png")))
        pixels = np.asarray(Image.open(png))
        assert mask.shape == pixels.shape[:2] and set(np.unique(mask)) <= {0, 255}
        assert (pixels[mask == 255] == 24).all()  # padding is #181818
        assert info["tokens"]["chunks"] and info["layout"] in png.with_suffix(".json").read_text(encoding="utf-8")


def test_preview_equals_a_direct_plan(dataset: Path, tmp_path: Path) -> None:
    """The preview renders the plan_subset pool (the adapter's code path) pixel for pixel."""
    out = tmp_path / "preview"
    assert main(["preview", str(dataset), "--out", str(out), "--seed", "5", "--epoch", "2"]) == 0
    data = toml.load(dataset)
    tree = split_dataset_config(data)
    folder = Path(data["datasets"][0]["subsets"][0]["image_dir"])
    images = [SubsetImage(str(p), p.with_suffix(".txt").read_text().strip(), 2) for p in sorted(folder.glob("*.png"))]
    buckets = Buckets.from_params(Size(512, 512), data["datasets"][0])
    given = SubsetInput(images[::-1], str(folder), tree.subsets[0][0], Size(512, 512), buckets, 0, 0, SimpleNamespace())
    plan = plan_subset(given, seed=5)
    assert plan.pool.shaped  # enable_bucket = true and no collage_frame_size: content-shaped frames
    collage = Collage(tree.subsets[0][0], plan.pool.frame, shaped=True, max_crop=plan.pool.max_crop)
    groups = plan.pool.collage_groups(2)
    assert len(groups) == len(frame_files(out))
    for slot, group in enumerate(groups):
        sources = [plan.pool.sources[i] for i in group]
        frame = plan.pool.slot_frame(slot)
        assert tuple(frame) in buckets.resos  # a bucket resolution: sd-scripts uses it without resizing
        expected = collage.render(sources, collage.make_params(sources, seed=5, epoch=2, frame=frame)).image
        with Image.open(out / "frames" / f"0_0_img_slot{slot:05d}.png") as img:
            assert np.array_equal(np.asarray(img), expected)


def test_preview_is_deterministic_and_epochs_differ(dataset: Path, tmp_path: Path) -> None:
    """Same seed and epoch: the same bytes; another epoch: other groupings."""

    def digests(out: Path) -> list[str]:
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in frame_files(out)]

    for name, epoch in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main(["preview", str(dataset), "--out", str(tmp_path / name), "--epoch", epoch, "--seed", "9"]) == 0
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert digests(tmp_path / "a") != digests(tmp_path / "c")


def test_preview_seed_defaults_like_collage_dataset(dataset: Path, tmp_path: Path) -> None:
    """Without --seed: the training TOML's seed, else the seed derived from the stripped dataset config."""
    out = tmp_path / "p1"
    assert main(["preview", str(dataset), "--out", str(out)]) == 0
    derived, _ = resolve_seed(build_run(), split_dataset_config(toml.load(dataset)).kohya)
    assert json.loads((out / "manifest.json").read_text())["summary"]["seed"] == derived
    train = tmp_path / "train.toml"
    train.write_text(f'[training]\nseed = 1234\ndataset_config = "{dataset.as_posix()}"\n', encoding="utf-8")
    assert main(["preview", "--config", str(train), "--out", str(tmp_path / "p2")]) == 0  # dataset from the TOML
    assert json.loads((tmp_path / "p2" / "manifest.json").read_text())["summary"]["seed"] == 1234
    assert main(["preview", str(dataset), "--out", str(tmp_path / "p3"), "--", "--seed", "77"]) == 0
    assert json.loads((tmp_path / "p3" / "manifest.json").read_text())["summary"]["seed"] == 77


def test_preview_count_and_static_mode(dataset: Path, tmp_path: Path) -> None:
    """--count limits the frames; caching arguments switch to static frames named like the cache files."""
    assert main(["preview", str(dataset), "--out", str(tmp_path / "a"), "--count", "2", "--seed", "1"]) == 0
    assert len(frame_files(tmp_path / "a")) == 2
    assert main(["preview", str(dataset), "--out", str(tmp_path / "s"), "--seed", "1", "--", "--cache_latents"]) == 0
    frames = frame_files(tmp_path / "s")
    assert frames and all(p.stem.startswith("collage_") for p in frames)
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["summary"]["mode"] == "static"


def test_preview_train_data_dir_folder(tmp_path: Path) -> None:
    """A folder of N_name sub-folders works like --train_data_dir (repeats from the name, class tokens)."""
    write_images(tmp_path / "data" / "3_sks")
    train = tmp_path / "train.toml"
    train.write_text('resolution = "512,512"\ncaption_extension = ".txt"\ncollage_rate = 1.0\n', encoding="utf-8")
    out = tmp_path / "out"
    assert main(["preview", str(tmp_path / "data"), "--config", str(train), "--out", str(out), "--seed", "2"]) == 0
    assert frame_files(out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epoch", "0"], "--epoch must be at least 1"),
        (["--count", "0"], "--count must be at least 1"),
    ],
)
def test_preview_usage_errors(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """Bad numbers exit 2 with the option name."""
    assert main(["preview", str(dataset), "--out", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err


def test_config_errors_exit_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid collage value names key, value and TOML location; no traceback unless DEBUG."""
    config = write_toml(tmp_path / "d.toml", write_images(tmp_path / "img", 2), general="collage_rate = 1.5")
    assert main(["check", str(config)]) == 2
    err = capsys.readouterr().err
    assert "collage_rate must be a number in [0, 1], got 1.5" in err and "Traceback" not in err
    assert main(["--console_log_level", "DEBUG", "check", str(config)]) == 2
    assert "Traceback" in capsys.readouterr().err
    assert main(["check", str(config), "--console_log_level", "DEBUG"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_missing_inputs_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No dataset, a missing file, a missing resolution, bad trainer args: exit 2."""
    assert main(["check"]) == 2
    assert main(["check", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    no_res = tmp_path / "d.toml"
    no_res.write_text('[[datasets]]\n  [[datasets.subsets]]\n  image_dir = "x"\n', encoding="utf-8")
    assert main(["check", str(no_res)]) == 2
    assert "resolution is not set" in capsys.readouterr().err
    assert main(["check", str(no_res), "--", "seed"]) == 2
    assert main(["inspect", str(no_res), "--", "--seed", "1"]) == 2
    assert main([]) == 2 and main(["frobnicate"]) == 2


def test_runtime_errors_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """preview stops on an unreadable image like training would, naming the file."""
    folder = write_images(tmp_path / "img", 4)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 20)
    config = write_toml(tmp_path / "d.toml", folder)
    assert main(["preview", str(config), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "Traceback" not in err


def test_python_m_entry_point() -> None:
    """``python -m collage_ext --help`` works and lists every command."""
    out = subprocess.run(
        [sys.executable, "-m", "collage_ext", "--help"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=True,
    ).stdout
    for command in ("demo", "preview", "export", "check", "inspect"):
        assert command in out


# -- export ----------------------------------------------------------------------------------------


def test_export_writes_a_plain_kohya_folder(dataset: Path, tmp_path: Path) -> None:
    """N_name folders with lossless PNG frames + .txt, a manifest that traces frames, a plain dataset TOML."""
    out = tmp_path / "export"
    assert main(["export", str(dataset), "--out", str(out), "--seed", "4", "--variants", "2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["frames"] and manifest["seed"] == 4 and set(manifest["variants"].values()) == {2}
    shown = {}
    for frame in manifest["frames"]:
        path = out / frame["file"]
        assert path.parent.parent.name == "train" and path.parent.name.split("_", 1)[0].isdigit()
        assert path.with_suffix(".txt").read_text(encoding="utf-8").strip() == frame["caption"]
        assert all(Path(s).is_file() for s in frame["sources"]) and frame["layout"] and frame["cells"]
        with Image.open(path) as img:  # content-shaped: the frame is the bucket its arrangement fits
            assert img.format == "PNG" and img.size == tuple(frame["frame"]) and img.size != (512, 512)
        assert path.parent.name.startswith(f"{frame['repeats']}_")
        for source in frame["sources"]:
            shown[source] = shown.get(source, 0) + frame["repeats"]
    for single in manifest["singles"]:
        assert (out / single["file"]).read_bytes() == Path(single["source"]).read_bytes()  # copied byte for byte
        shown[single["source"]] = shown.get(single["source"], 0) + single["repeats"]
    assert set(shown.values()) == {2}  # one pass over the export = one epoch: every image num_repeats times
    exported = toml.load(out / "dataset.toml")
    tree = split_dataset_config(exported)  # a plain sd-scripts config: no collage keys (its sanitizer rejects them)
    assert tree.kohya == exported and "collage_" not in json.dumps(exported)
    assert all(Path(s["image_dir"]).is_dir() for s in exported["datasets"][0]["subsets"])
    assert "--train_data_dir" in (out / "README.txt").read_text(encoding="utf-8")


def test_export_frames_are_the_static_frames(dataset: Path, tmp_path: Path) -> None:
    """Export = the static plan: the same frame names and pixels as a static-mode preview."""
    assert main(["export", str(dataset), "--out", str(tmp_path / "e"), "--seed", "6"]) == 0
    assert main(["preview", str(dataset), "--out", str(tmp_path / "p"), "--seed", "6", "--", "--cache_latents"]) == 0
    exported = {p.stem: p for p in (tmp_path / "e" / "train").glob("*/collage_*.png")}
    previewed = {p.stem: p for p in frame_files(tmp_path / "p")}
    assert exported.keys() == previewed.keys()
    for stem, path in exported.items():
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(previewed[stem])))


def test_export_refuses_non_empty_out_and_skips_broken_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A non-empty --out needs --force (exit 2); an unreadable image is left out with a warning."""
    folder = write_images(tmp_path / "img", 6)
    (folder / "broken.png").write_bytes(b"not an image")
    config = write_toml(tmp_path / "d.toml", folder)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["export", str(config), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["export", str(config), "--out", str(out), "--force"]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [x["path"] for x in manifest["left_out"]] == [str(folder / "broken.png")]
    assert main(["export", str(config), "--out", str(folder / "sub")]) == 2  # never inside a source folder


# -- inspect ---------------------------------------------------------------------------------------


def write_safetensors(path: Path, metadata: dict[str, str] | None) -> Path:
    """A minimal .safetensors file with one 4-byte tensor."""
    header: dict[str, object] = {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode("utf-8")
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4)
    return path


COLLAGE_INFO = {
    "version": "0.1.0",
    "mode": "static",
    "seed": 42,
    "subsets": [
        {
            "subset": 0,
            "image_dir": "/data/10_mychar",
            "images": 24,
            "frames_per_epoch": 80,
            "collage_frames": 70,
            "single_samples": 10,
            "settings": {"collage_rate": 0.5, "collage_caption_merge": "tags", "collage_fill": "#181818"},
        }
    ],
}


def test_inspect_prints_settings_from_ss_datasets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dataset_config runs keep bucket_info inside ss_datasets."""
    lora = write_safetensors(
        tmp_path / "a.safetensors",
        {
            "ss_datasets": json.dumps(
                [{"bucket_info": {"buckets": {}}}, {"bucket_info": {"collage_ext": COLLAGE_INFO}}]
            ),
            "ss_network_dim": "32",
            "ss_seed": "42",
        },
    )
    assert main(["inspect", str(lora)]) == 0
    out = capsys.readouterr().out
    assert "dataset 1" in out and "mode static" in out and "collage_rate = 0.5" in out
    assert 'collage_caption_merge = "tags"' in out and "collage_fill" not in out  # defaults are not repeated
    assert "ss_network_dim: 32" in out


def test_inspect_ss_bucket_info_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--train_data_dir runs write ss_bucket_info; --json prints machine-readable settings."""
    lora = write_safetensors(tmp_path / "b.safetensors", {"ss_bucket_info": json.dumps({"collage_ext": COLLAGE_INFO})})
    assert main(["inspect", str(lora), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["collage_ext"][0]["dataset"] is None and data["collage_ext"][0]["seed"] == 42


@pytest.mark.parametrize("kind", ["no-collage", "no-metadata", "not-safetensors", "truncated", "missing"])
def test_inspect_failures_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    """Files without collage settings, or that are not safetensors, exit 1 with a message."""
    path = tmp_path / "x.safetensors"
    if kind == "no-collage":
        write_safetensors(path, {"ss_bucket_info": json.dumps({"buckets": {}})})
    elif kind == "no-metadata":
        write_safetensors(path, None)
    elif kind == "not-safetensors":
        path.write_bytes(b"PK\x03\x04 this is a zip file, not safetensors at all")
    elif kind == "truncated":
        path.write_bytes(struct.pack("<Q", 1000) + b"{}")
    assert main(["inspect", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


# -- docs ------------------------------------------------------------------------------------------


def test_docs_cover_every_command_and_finding_code() -> None:
    """docs/cli.md has a section per command and explains every error/warning code check can report."""
    import re

    from collage_ext.cli import setup_parser

    root = Path(__file__).resolve().parents[1]
    docs = (root / "docs" / "cli.md").read_text(encoding="utf-8")
    sub = next(a for a in setup_parser()._actions if a.dest == "command")
    for command in sub.choices:  # type: ignore[union-attr]
        assert f"## {command}\n" in docs
    sources = "".join(path.read_text(encoding="utf-8") for path in (root / "collage_ext").rglob("*.py"))
    codes = set(re.findall(r'(?:Finding\(|note\()\s*"(?:error|warning)",\s*"(\w+)"', sources))
    assert len(codes) > 10
    missing = sorted(c for c in codes if f"`{c}`" not in docs)
    assert not missing, f"docs/cli.md does not explain: {missing}"


def test_preview_shows_fill_and_spans(dataset: Path, tmp_path: Path) -> None:
    """index.html and the manifest show each frame's fill and spans and the run's summary (issue 10)."""
    out = tmp_path / "preview"
    assert main(["preview", str(dataset), "--out", str(out), "--seed", "3"]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    summary = manifest["summary"]
    # 512 px buckets step 64 px (12 %): a pair of 416x608 portraits (0.68) gets 576x448 and keeps the full
    # height by cropping 6 % of each (collage_max_crop)
    assert summary["mean_fill"] >= 0.93 and summary["images_per_frame"] >= 1.8
    for frame in manifest["frames"]:
        assert 0.93 <= frame["fill"] <= 1 and all(c["span"] >= 0.95 for c in frame["cells"])
        assert frame["frame"] != [512, 512]  # content-shaped (enable_bucket = true)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert re.search(r"fill [01]\.\d\d", page) and "span img_0" in page and "mean fill" in page
