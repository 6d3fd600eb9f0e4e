"""Parallel preview / export / check: the same bytes as a serial run, and Ctrl+C leaves no partial file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from collage_ext.cli import main
from collage_ext.commands import check
from collage_ext.commands.check import run_check
from collage_ext.commands.measurecache import MeasureCache
from collage_ext.core import filemodes, parallel
from collage_ext.plan.framesets import text_encoder_for
from collage_ext.plan.project import load_project
from tests.test_cli import write_images, write_toml


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with the folder's own path replaced (absolute paths in TOML)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            out[path.relative_to(folder).as_posix()] = path.read_bytes().replace(str(folder).encode(), b"OUT")
    return out


def truncate(path: Path) -> None:
    """Keep the header, lose most pixel data: a header read passes, a decode fails (as a half-copied file)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


@pytest.fixture()
def skipping(tmp_path: Path) -> Path:
    """12 images under collage_on_error = "skip", two of them truncated (they fail only when a frame decodes them)."""
    folder = write_images(tmp_path / "img", 12)
    truncate(folder / "img_03.png")
    truncate(folder / "img_08.png")
    return write_toml(tmp_path / "d.toml", folder, general='collage_rate = 1.0\ncollage_on_error = "skip"')


def test_written_files_get_the_usual_mode(tmp_path: Path) -> None:
    """Atomic writes go through mkstemp (0600); the final file has open()'s mode, as before (the trainer reads it)."""
    filemodes.write_bytes_atomic(tmp_path / "a.png", b"x")
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == filemodes.new_file_mode()
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_ordered_map_keeps_order_and_raises_in_order() -> None:
    assert list(parallel.ordered_map(lambda x: x * x, list(range(20)), jobs=2)) == [x * x for x in range(20)]

    def fail_at_5(x: int) -> int:
        if x == 5:
            raise ValueError("five")
        return x

    seen = []
    with pytest.raises(ValueError, match="five"):
        for value in parallel.ordered_map(fail_at_5, list(range(10)), jobs=2):
            seen.append(value)
    assert seen == [0, 1, 2, 3, 4]


def test_jobs_follow_the_cpu_set_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # taskset -c 0
    assert parallel.default_jobs() == 1
    monkeypatch.setenv("COLLAGE_EXT_JOBS", "3")
    assert parallel.default_jobs() == 3
    assert parallel.default_jobs(2) == 2
    with pytest.raises(ValueError, match="at least 1"):
        parallel.default_jobs(0)


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_preview_on_two_processes_writes_the_serial_bytes(tmp_path: Path, mode: str) -> None:
    folder = write_images(tmp_path / "img", 10)
    config = write_toml(tmp_path / "d.toml", folder, general=f'collage_rate = 1.0\ncollage_mode = "{mode}"')
    assert main(["preview", str(config), "--out", str(tmp_path / "one"), "--jobs", "1"]) == 0
    assert main(["preview", str(config), "--out", str(tmp_path / "two"), "--jobs", "2"]) == 0
    one, two = tree(tmp_path / "one"), tree(tmp_path / "two")
    assert len([k for k in one if k.startswith("frames/") and k.endswith(".png")]) >= 4
    assert one == two


def test_export_on_two_processes_writes_the_serial_bytes(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "img", 10)
    config = write_toml(tmp_path / "d.toml", folder, general="collage_rate = 1.0\ncollage_loss_mask = true")
    assert main(["export", str(config), "--out", str(tmp_path / "one"), "--jobs", "1"]) == 0
    assert main(["export", str(config), "--out", str(tmp_path / "two"), "--jobs", "2"]) == 0
    one, two = tree(tmp_path / "one"), tree(tmp_path / "two")
    assert sum(k.endswith(".png") for k in one) >= 4
    assert one == two


@pytest.mark.parametrize("command", ["preview", "export"])
def test_failures_found_while_rendering_give_the_serial_result(skipping: Path, tmp_path: Path, command: str) -> None:
    """Truncated files fail inside workers; frames a serial run would plan without them are redone in order."""
    extra = ["--epoch", "1"] if command == "preview" else []
    assert main([command, str(skipping), "--out", str(tmp_path / "one"), "--jobs", "1", *extra]) == 0
    assert main([command, str(skipping), "--out", str(tmp_path / "two"), "--jobs", "2", *extra]) == 0
    one, two = tree(tmp_path / "one"), tree(tmp_path / "two")
    manifest = json.loads(one["manifest.json"])
    used = {p for f in manifest["frames"] for p in (f.get("sources") or [])}
    assert not any(p.endswith(("img_03.png", "img_08.png")) for p in used)  # the broken files were left out
    assert one == two


def test_check_on_two_processes_and_from_the_cache_gives_the_same_report(
    skipping: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = load_project(skipping, strict=False)
    encoder = text_encoder_for(project.run.values)
    serial = run_check(project, encoder, jobs_n=1).to_json()
    cache = MeasureCache(tmp_path / "q.json")
    assert run_check(project, encoder, jobs_n=2, cache=cache).to_json() == serial
    assert len(cache) == 12 and (tmp_path / "q.json").is_file()
    monkeypatch.setattr(check, "_measure_file", lambda item: pytest.fail(f"{item[0]} was decoded again"))
    warm = MeasureCache(tmp_path / "q.json")  # a new process: read from the file
    assert run_check(project, encoder, jobs_n=1, cache=warm).to_json() == serial


def test_an_edited_image_is_measured_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_images(tmp_path / "img", 6)
    config = write_toml(tmp_path / "d.toml", folder)
    project = load_project(config, strict=False)
    encoder = text_encoder_for(project.run.values)
    cache = MeasureCache(persist=False)
    run_check(project, encoder, jobs_n=1, cache=cache)
    Image.new("RGB", (608, 416), (128, 128, 128)).save(folder / "img_01.png")  # now flat: low contrast
    decoded = []
    measure = check._measure_file
    monkeypatch.setattr(check, "_measure_file", lambda item: decoded.append(item[0]) or measure(item))
    report = run_check(load_project(config, strict=False), encoder, jobs_n=1, cache=cache)
    assert decoded == [str(folder / "img_01.png")]
    assert any(f.code == "low_contrast" and f.file == str(folder / "img_01.png") for f in report.findings)


def test_ctrl_c_leaves_no_partial_file(tmp_path: Path) -> None:
    """SIGINT while preview renders on two processes: it stops, and every frame file there is complete."""
    folder = write_images(tmp_path / "img", 24)
    config = write_toml(tmp_path / "d.toml", folder, repeats=4, resolution=768)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "collage_ext", "preview", str(config), "--out", str(out), "--jobs", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not list((out / "frames").glob("*.png")) if (out / "frames").is_dir() else True:
        if time.monotonic() > deadline or proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    written = sorted((out / "frames").glob("*.png"))
    assert written, err.decode()
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"
    for path in written:
        with Image.open(path) as image:
            image.load()  # a partial PNG fails here
    if proc.returncode != 0:  # it was still rendering: interrupted, not finished
        assert len(written) < 2 * 48


@pytest.mark.parametrize("broken", [False, True])
def test_static_cache_build_on_two_processes_writes_the_serial_files(tmp_path: Path, broken: bool) -> None:
    """staticframes.render_static_frames (the adapter's static-mode build): same files, paths, captions, failures."""
    from collage_ext.plan.policy import FailureLog
    from collage_ext.plan.project import plan_project
    from collage_ext.sdscripts.staticframes import render_static_frames

    folder = write_images(tmp_path / "img", 12)
    if broken:
        truncate(folder / "img_05.png")
    config = write_toml(tmp_path / "d.toml", folder, general='collage_rate = 1.0\ncollage_on_error = "skip"')
    project = load_project(config, strict=False)
    planned = plan_project(project, text_encoder_for(project.run.values))[0]
    results = {}
    for jobs in (1, 2):
        cache, failures = tmp_path / f"cache{jobs}", FailureLog()
        cache.mkdir()
        out = [
            (p.name, caption, new)
            for p, caption, new in render_static_frames(planned.jobs("static", 1, failures), cache, jobs_n=jobs)
        ]
        results[jobs] = (out, dict(failures.failed), tree(cache))
    assert results[1][0] and results[1] == results[2]
    assert bool(results[1][1]) == broken
