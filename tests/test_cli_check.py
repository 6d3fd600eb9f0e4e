"""``collage-ext check``: planted problems are found and named, the measures behave, steps are counted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from collage_ext.captions import CaptionGrammar, clip_budget, t5_budget
from collage_ext.cli import main
from collage_ext.commands.demo import draw_landscape, draw_portrait
from collage_ext.commands.quality import (
    CONTRAST_THRESHOLD,
    contrast,
    count_caption,
    detail_factor,
    phrases_past_budget,
)
from collage_ext.core.types import Size
from collage_ext.geometry.buckets import Buckets, make_bucket_resolutions
from test_cli import write_images, write_toml


def run_check(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict]:
    """Exit code and the --json report."""
    code = main(["check", str(config), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def by_code(report: dict, code: str) -> list[dict]:
    """Findings of one code."""
    return [f for f in report["findings"] if f["code"] == code]


@pytest.fixture()
def planted(tmp_path: Path) -> Path:
    """A clean dataset plus a corrupt file, a tiny image, a low-contrast image and an overflowing caption."""
    folder = write_images(tmp_path / "img", 8)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (folder / "corrupt.txt").write_text("sks, corrupt\n", encoding="utf-8")
    Image.new("RGB", (96, 128), (200, 40, 40)).save(folder / "tiny.png")
    (folder / "tiny.txt").write_text("sks, tiny\n", encoding="utf-8")
    beige = Image.new("RGB", (416, 608), (225, 205, 160))
    ImageDraw.Draw(beige).ellipse([120, 60, 300, 560], fill=(236, 207, 170))  # skin-tone figure on a beige wall
    beige.save(folder / "beige_wall.png")
    (folder / "beige_wall.txt").write_text("sks, woman, beige wall\n", encoding="utf-8")
    long_caption = "sks, " + ", ".join(f"highly detailed descriptive phrase number {i}" for i in range(40))
    (folder / "img_03.txt").write_text(long_caption + "\n", encoding="utf-8")
    return write_toml(tmp_path / "dataset.toml", folder)


def test_check_names_every_planted_problem(planted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Corrupt file (error, exit 1), tiny upscaled image, low contrast, caption overflow: each with its file."""
    code, report = run_check(planted, capsys)
    assert code == 1 and not report["ok"] and report["errors"] == 1
    [corrupt] = by_code(report, "unreadable_image")
    assert (
        corrupt["level"] == "error" and corrupt["file"].endswith("corrupt.png") and "corrupt.png" in corrupt["message"]
    )
    [tiny] = by_code(report, "too_small_for_collage")
    assert tiny["file"].endswith("tiny.png") and "collage_max_upscale" in tiny["message"]
    low = by_code(report, "low_contrast")
    assert {Path(f["file"]).name for f in low} == {"beige_wall.png", "tiny.png"}  # tiny is one flat colour
    [overflow] = by_code(report, "caption_overflow")
    assert overflow["file"].endswith("img_03.txt") and "75-token" in overflow["message"]
    assert by_code(report, "frame_caption_overflow")  # the merged captions that include it overflow too
    assert not [
        f
        for f in report["findings"]
        if f["file"]
        and Path(f["file"]).name.startswith("img_0")
        and f["code"] in ("low_contrast", "upscaled_image", "too_small_for_collage")
    ]  # no false alarms


def test_check_text_report_and_warning_only_exit_0(planted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without the corrupt file only warnings remain: exit 0; the text report lists files and steps."""
    (planted.parent / "img" / "corrupt.png").unlink()
    assert main(["check", str(planted)]) == 0
    out = capsys.readouterr().out
    assert "beige_wall.png" in out and "tiny.png" in out and "img_03.txt" in out
    assert "0 errors" in out and "steps:" in out and "per epoch" in out


def test_upscaled_image_is_found_by_effective_resolution(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A large file that was blown up from a small one is flagged; the sharp originals are not."""
    folder = write_images(tmp_path / "img", 6)
    small = draw_portrait(Size(104, 152), "red", "azure")  # blown up 8x
    small.resize((832, 1216), Image.Resampling.BICUBIC).save(folder / "blown_up.png")
    (folder / "blown_up.txt").write_text("sks, blown up\n", encoding="utf-8")
    code, report = run_check(write_toml(tmp_path / "d.toml", folder, resolution=1024), capsys)
    assert code == 0
    flagged = by_code(report, "upscaled_image")
    assert [Path(f["file"]).name for f in flagged] == ["blown_up.png"]
    assert "detail" in flagged[0]["message"]


def test_single_images_magnified_beyond_the_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Plain (non-collage) subsets: sd-scripts' bucket upscaling is checked too."""
    folder = write_images(tmp_path / "img", 2)
    draw_landscape(Size(160, 110), "red", "sand").save(folder / "small.png")
    code, report = run_check(write_toml(tmp_path / "d.toml", folder, general="collage_rate = 0.0"), capsys)
    assert code == 0
    [found] = by_code(report, "upscaled_image")
    assert found["file"].endswith("small.png") and "bucket" in found["message"]


def test_leftovers_and_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Five images in pairs only: one leftover single per epoch; samples, batches and steps are counted."""
    folder = write_images(tmp_path / "img", 5)
    config = write_toml(
        tmp_path / "d.toml", folder, general='collage_rate = 1.0\ncollage_layouts = ["1x2", "2x1"]', repeats=1
    )
    train = tmp_path / "train.toml"
    train.write_text("max_train_epochs = 10\ngradient_accumulation_steps = 1\n", encoding="utf-8")
    code, report = run_check(config, capsys, "--config", str(train))
    assert code == 0
    [left] = by_code(report, "single_leftovers")
    assert "1 image repeats" in left["message"]
    dataset = report["summary"]["datasets"][0]
    assert dataset["samples_per_epoch"] == 3 and dataset["subsets"][0]["collage_frames"] == 2
    assert report["summary"]["steps"]["epochs"] == 10
    assert report["summary"]["steps"]["total_steps"] == 10 * report["summary"]["steps"]["steps_per_epoch"]


def test_repeated_phrase_past_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A collage_repeat_phrases phrase that only appears after the token budget is reported."""
    folder = write_images(tmp_path / "img", 4)
    filler = ", ".join(f"filler tag {i}" for i in range(40))
    (folder / "img_01.txt").write_text(f"sks, {filler}, red dress\n", encoding="utf-8")
    config = write_toml(
        tmp_path / "d.toml", folder, general='collage_rate = 1.0\ncollage_repeat_phrases = ["red dress"]'
    )
    _, report = run_check(config, capsys)
    [late] = by_code(report, "phrase_past_budget")
    assert late["file"].endswith("img_01.txt") and "'red dress'" in late["message"]


def test_reading_problems_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty caption file (sd-scripts stops on it) and a missing image_dir are errors."""
    folder = write_images(tmp_path / "img", 3)
    (folder / "img_01.txt").write_text("", encoding="utf-8")
    config = write_toml(tmp_path / "d.toml", folder, general="collage_rate = 0.0")
    config.write_text(
        config.read_text() + '  [[datasets.subsets]]\n  image_dir = "/no/such/folder"\n', encoding="utf-8"
    )
    code, report = run_check(config, capsys)
    assert code == 1
    assert by_code(report, "caption_empty")[0]["file"].endswith("img_01.txt")
    assert by_code(report, "missing_image_dir")[0]["file"] == "/no/such/folder"
    assert main(["preview", str(config), "--out", str(tmp_path / "p")]) == 1  # preview stops, like training
    assert "img_01.txt is empty" in capsys.readouterr().err


def test_t5_budget_from_training_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Chroma/Flux options select the T5 budget (512, or t5xxl_max_token_length)."""
    config = write_toml(tmp_path / "d.toml", write_images(tmp_path / "img", 4))
    _, report = run_check(config, capsys, "--", "--model_type", "chroma", "--apply_t5_attn_mask")
    assert report["summary"]["text_encoder"].startswith("T5 512")
    _, report = run_check(config, capsys, "--model", "flux", "--", "--t5xxl_max_token_length", "256")
    assert report["summary"]["text_encoder"].startswith("T5 256")
    _, report = run_check(config, capsys, "--", "--max_token_length", "225")
    assert report["summary"]["text_encoder"].startswith("CLIP 225")


# -- measures ----------------------------------------------------------------------------------------


def test_detail_factor_finds_upscaling() -> None:
    """Sharp drawings: 1; a 2x / 3x upscale: about 2-3; a blurred copy: > 1."""
    sharp = draw_portrait(Size(832, 1216), "red", "azure")
    assert detail_factor(sharp) == 1.0
    for factor, lo, hi in ((2, 1.5, 2.0), (3, 2.0, 3.0)):
        small = sharp.resize((832 // factor, 1216 // factor), Image.Resampling.LANCZOS)
        assert lo <= detail_factor(small.resize((832, 1216), Image.Resampling.BICUBIC)) <= hi
    assert detail_factor(sharp.filter(ImageFilter.GaussianBlur(3))) >= 2.0
    assert detail_factor(Image.new("RGB", (300, 300), (10, 20, 30))) == 1.0  # flat: not measurable


@pytest.mark.parametrize(
    ("image", "low"),
    [
        (lambda: draw_portrait(Size(416, 608), "red", "azure"), False),
        (lambda: draw_landscape(Size(608, 416), "green", "mint"), False),
        (
            lambda: Image.blend(
                draw_portrait(Size(416, 608), "red", "azure"), Image.new("RGB", (416, 608), (128,) * 3), 0.9
            ),
            True,
        ),
        (lambda: Image.new("RGB", (100, 100), (90, 120, 200)), True),
    ],
    ids=["portrait", "landscape", "washed-out", "flat"],
)
def test_contrast_threshold(image: object, low: bool) -> None:
    """Drawn subjects on contrasting backgrounds pass; washed-out and flat images fall below the threshold."""
    assert (contrast(image()) < CONTRAST_THRESHOLD) is low  # type: ignore[operator]


def test_caption_tokens_and_late_phrases() -> None:
    """Chunks as CLIP reads them, T5 as one sequence; late phrases found by token offset."""

    def words(s: str) -> int:
        return len(s.replace(",", " ").split())

    caption = ", ".join(f"w{i}" for i in range(160))
    tokens = count_caption(caption, clip_budget(150), words)
    assert tokens.chunks == (75, 75) and tokens.overflow == 10 and tokens.describe() == "75+75 of 150, 10 cut"
    assert count_caption(caption, t5_budget(512), words).chunks == (160,)
    late = phrases_past_budget(
        caption + ", red dress", ["red dress", "w3", "<keep_tokens>"], clip_budget(150), words, CaptionGrammar()
    )
    assert late == [("red dress", 160)]


def test_bucket_math_matches_sd_scripts() -> None:
    """The bucket list and selection sd-scripts computes for 1024 px SDXL buckets."""
    resos = make_bucket_resolutions(Size(1024, 1024), 256, 2048, 64)
    assert (1024, 1024) in resos and (832, 1216) in resos and (1216, 832) in resos
    buckets = Buckets(Size(1024, 1024), True, 256, 2048, 64, False, resos)
    assert buckets.select(Size(832, 1216)) == ((832, 1216), 1.0)
    reso, scale = buckets.select(Size(416, 608))
    assert reso == (832, 1216) and scale == 2.0
    no_upscale = Buckets(Size(1024, 1024), True, 256, 2048, 64, True, [])
    assert no_upscale.select(Size(500, 700)) == ((448, 640), 1.0)
    plain = Buckets(Size(512, 512), False, resos=[(512, 512)])
    assert plain.select(Size(256, 512)) == ((512, 512), 2.0)


def test_measures_leave_global_rng_alone() -> None:
    """No global RNG use (the autouse guard checks it; this just exercises every measure once)."""
    img = Image.fromarray(np.full((64, 64, 3), 128, np.uint8))
    detail_factor(img)
    contrast(img)


def test_forced_grid_breaks_the_scale_rule_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """collage_layouts = ["2x2"]: check warns that the sources are learned at half size and names them."""
    folder = write_images(tmp_path / "img", 8)
    code, report = run_check(write_toml(tmp_path / "d.toml", folder, general='collage_layouts = ["2x2"]'), capsys)
    assert code == 0
    [found] = by_code(report, "scale_rule")
    assert found["level"] == "warning" and "img_0" in found["message"] and "collage_min_span" in found["message"]
    stats = by_code(report, "frame_stats")[0]["message"]
    assert ", 0% of sources span" in stats


def test_content_shaped_defaults_keep_the_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Defaults with enable_bucket: no scale_rule finding, frames listed with their bucket resolutions."""
    folder = write_images(tmp_path / "img", 8)
    code, report = run_check(write_toml(tmp_path / "d.toml", folder, general="", resolution=1024), capsys)
    assert code == 0 and not by_code(report, "scale_rule")
    notes = " ".join(f["message"] for f in by_code(report, "frames"))
    assert "content-shaped frames" in notes and "side by side" in notes and "stacked" in notes
    assert "100% of sources span" in by_code(report, "frame_stats")[0]["message"]


def test_fixed_frame_without_collage_keys_keeps_the_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 18: enable_bucket = false and no collage key: no scale_rule finding; the frames note says the
    rule is kept within shape classes; squares are named as training alone (info, not a warning)."""
    folder = write_images(tmp_path / "img", 8)
    for i in range(2):
        draw_portrait(Size(512, 512), "red", "azure").save(folder / f"square_{i}.png")
    toml_path = write_toml(tmp_path / "d.toml", folder, general="")
    toml_path.write_text(
        toml_path.read_text(encoding="utf-8").replace("enable_bucket = true", "enable_bucket = false"), encoding="utf-8"
    )
    code, report = run_check(toml_path, capsys)
    assert code == 0 and not by_code(report, "scale_rule") and not by_code(report, "frame_below_bucket")
    assert "only within their shape class" in " ".join(f["message"] for f in by_code(report, "frames"))
    [alone] = by_code(report, "trains_alone")
    assert alone["level"] == "info" and "square_0.png" in alone["message"]
    # not misreported as too small (they are 512 px in a 512 px frame) or as leftovers of a division
    assert not [f for f in by_code(report, "too_small_for_collage") if "square_" in f["message"]]
    assert not by_code(report, "single_leftovers")
    assert "100% of sources span" in by_code(report, "frame_stats")[0]["message"]


def test_frame_below_its_members_buckets_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A collage_frame_size smaller than the resolution with bucket_no_upscale: frames train below the bucket
    each image gets alone; check warns (counted), names images and the setting."""
    folder = write_images(tmp_path / "img", 8)
    toml_path = write_toml(
        tmp_path / "d.toml", folder, general='collage_frame_size = "256,256"', dataset="bucket_no_upscale = true"
    )
    code, report = run_check(toml_path, capsys)
    [found] = by_code(report, "frame_below_bucket")
    assert found["level"] == "warning" and "img_0" in found["message"] and "collage_frame_size" in found["message"]
    assert report["warnings"] >= 1


def test_check_prints_both_modes_when_they_differ(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """7 portraits x 3 repeats: dynamic makes pairs and one frame of three; static splits the repeats over
    variants (7 per variant: three pairs and a frame of three each). check says which the run uses."""
    folder = tmp_path / "img"
    folder.mkdir()
    for i in range(7):
        draw_portrait(Size(416, 608), COLORS_[i % 3], "azure").save(folder / f"p{i}.png")
        (folder / f"p{i}.txt").write_text(f"sks, p{i}\n", encoding="utf-8")
    toml_path = write_toml(tmp_path / "d.toml", folder, general="collage_max_images = 2", repeats=3)
    code, report = run_check(toml_path, capsys)
    modes = report["summary"]["modes"]
    assert modes["used"] == "dynamic" and modes["dynamic"] != modes["static"]
    assert modes["dynamic"]["samples_per_epoch"] == 11 and modes["static"]["samples_per_epoch"] == 12
    main(["check", str(toml_path)])
    text = capsys.readouterr().out
    assert "this run uses dynamic mode" in text and "static mode would give 12 samples" in text


COLORS_ = ["red", "blue", "green"]
