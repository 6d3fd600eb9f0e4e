"""Small things a newcomer trips on (issue 19, item 7): each message says the right thing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collage_ext.cli import main
from collage_ext.commands.preview import FrameEntry, sheet_entries
from test_cli import COLLAGE_INFO, frame_files, write_images, write_safetensors, write_toml


def _check_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["check", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_missing_image_dir_is_logged_as_the_error_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_toml(tmp_path / "d.toml", tmp_path / "nowhere")
    capsys.readouterr()
    code = main(["check", "--json", str(config)])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert code == 1 and [f["level"] for f in report["findings"] if f["code"] == "missing_image_dir"] == ["error"]
    assert [line.split()[0] for line in captured.err.splitlines() if "is not a folder" in line] == ["ERROR"]


def test_nothing_to_train_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "d.toml"
    config.write_text("[general]\nshuffle_caption = true\n", encoding="utf-8")
    train = tmp_path / "t.toml"
    train.write_text("max_train_steps = 1600\n", encoding="utf-8")
    code, report = _check_json(capsys, str(config), "--config", str(train))
    assert code == 1 and any(f["code"] == "no_data" for f in report["findings"])
    assert "= 0 epochs" not in report["summary"]["steps"]["describe"]
    assert "no images to train" in report["summary"]["steps"]["describe"]


def test_one_bucket_and_one_epoch_read_right(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_images(tmp_path / "img", 4)
    for extra in folder.glob("img_0[13].*"):  # only the two portraits: one bucket
        extra.unlink()
    config = write_toml(tmp_path / "d.toml", folder, general="collage_rate = 0.0", repeats=1)
    capsys.readouterr()
    assert main(["check", str(config), "--", "--max_train_steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "(1 bucket)" in out and "(1 buckets)" not in out
    assert "max_train_steps 1 = 1 epoch " in out


def test_seed_names_where_it_was_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_toml(tmp_path / "d.toml", write_images(tmp_path / "img", 4))
    train = tmp_path / "train.toml"
    train.write_text('dataset_class = "collage_ext.CollageDataset"\nseed = 42\n', encoding="utf-8")
    _, report = _check_json(capsys, str(config), "--config", str(train))
    assert report["summary"]["seed"] == 42 and str(train) in report["summary"]["seed_why"]
    _, report = _check_json(capsys, str(config), "--", "--seed", "7")
    assert report["summary"]["seed_why"] == "from --seed after --"
    _, report = _check_json(capsys, str(config), "--seed", "8", "--config", str(train))
    assert report["summary"]["seed"] == 8 and report["summary"]["seed_why"] == "from --seed"


def test_inspect_shows_the_finish_time_as_a_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lora = write_safetensors(
        tmp_path / "a.safetensors",
        {"ss_bucket_info": json.dumps({"collage_ext": COLLAGE_INFO}), "ss_training_finished_at": "1767225600.25"},
    )
    assert main(["inspect", str(lora)]) == 0
    assert "ss_training_finished_at: 2026-01-01 00:00:00 UTC" in capsys.readouterr().out


def _entry(n: int, frame: list[int]) -> FrameEntry:
    return FrameEntry(f"f{n:03d}", "1x2", "", [], "", None, info={"frame": frame})  # type: ignore[arg-type]


def test_contact_sheet_shows_every_frame_shape() -> None:
    entries = [_entry(n, [1216, 832]) for n in range(60)] + [_entry(60 + n, [832, 1216]) for n in range(10)]
    chosen = sheet_entries(entries)
    assert len(chosen) == 48 and sum(e.info["frame"] == [832, 1216] for e in chosen) == 10
    assert [e.name for e in chosen] == sorted(e.name for e in chosen)  # still in plan order


def test_contact_sheet_has_no_big_empty_squares(tmp_path: Path) -> None:
    """Landscape and portrait thumbnails share justified rows on the dark page colour: little empty space."""
    import numpy as np
    from PIL import Image

    out = tmp_path / "p"
    assert (
        main(
            [
                "preview",
                str(write_toml(tmp_path / "d.toml", write_images(tmp_path / "img", 12))),
                "--out",
                str(out),
                "--seed",
                "3",
            ]
        )
        == 0
    )
    sheet = np.asarray(Image.open(out / "contact_sheet.png").convert("RGB")).astype(int)
    page = (np.abs(sheet - 24).sum(axis=2) == 0).mean()
    assert page < 0.35, page  # the old square grid left most of a landscape's slot white


def test_index_lists_sources_left_to_right(tmp_path: Path) -> None:
    out = tmp_path / "p"
    assert (
        main(
            [
                "preview",
                str(write_toml(tmp_path / "d.toml", write_images(tmp_path / "img", 12))),
                "--out",
                str(out),
                "--seed",
                "4",
            ]
        )
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    html = (out / "index.html").read_text(encoding="utf-8")
    assert frame_files(out)
    for frame in manifest["frames"]:
        rects = [c["rect"] for c in frame["cells"]]
        assert rects == sorted(rects, key=lambda r: (r[1], r[0]))  # reading order
        names = " + ".join(Path(c["path"]).name for c in frame["cells"])
        assert names in html
