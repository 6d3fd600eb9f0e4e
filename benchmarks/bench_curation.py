"""Curation speed (issue 21): studio start-up and edits, preview / export / check on 1 and 2 cores.

One command, prints a markdown table (and the machine's load, which decides how far to trust it)::

    .venv/bin/python benchmarks/bench_curation.py                 # 200 camera-like + 200 small photos
    .venv/bin/python benchmarks/bench_curation.py --images 40     # a quicker look
    .venv/bin/python benchmarks/bench_curation.py --keep /tmp/cur # keep (and reuse) the generated photos

Two generated sets (nothing is downloaded):

* **camera**: 3000x4000 JPEGs (q92, ~4 MB) with detail at five scales down to single pixels plus sensor
  grain, like 12 MP camera files (``bench_compose._camera_like``): 8 generated frames, each used for
  several files through a different crop window, flip and JPEG quality, so every file is distinct.
* **small**: scikit-image's sample photos (astronaut, coffee, chelsea, ...), random crops scaled to
  400-900 px on the long side, as JPEG or PNG (synthetic photos from ``tests/imaging.photo`` without
  scikit-image).

Per set, a dataset TOML (``collage_rate = 1.0``, 2 repeats, 1024 px, buckets on) and a training TOML
are written, then:

* ``check`` / ``preview`` / ``export`` run as ``python -m collage_ext`` under ``taskset -c 0`` and
  ``taskset -c 0,1`` (the quality cache off, so every check decodes everything); the two outputs are
  compared byte for byte;
* the studio serves the set in this process (uvicorn on a free port, as ``collage-ext studio``),
  after a first ``check`` has filled the quality cache, and is driven with HTTP requests the way
  the page drives it:

  - start-up: ``Studio(...)`` + the page's first requests (state, sources, frames, check);
  - crop edit -> frames visible: POST /api/crop, then state, sources + frames, then the image's frame
    thumbnails (what the editor shows), repeated over 20 images (p50 / p95);
  - caption edit -> token view: POST /api/caption (its answer carries the token view), 20 times;
  - drop -> counts: POST /api/drop, then sources + frames (the counts the page shows); restored after.

Timing is wall time (``time.perf_counter``) on a shared machine: ``uptime``'s load is printed with
the table. Nothing here is a unit test; the tests only check that updates happen.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_compose import _camera_like  # noqa: E402
from collage_ext.core.types import Size  # noqa: E402
from tests.imaging import photo  # noqa: E402

TAGS = [
    "1girl",
    "solo",
    "outdoors",
    "standing",
    "smile",
    "long hair",
    "brown hair",
    "blue sky",
    "tree",
    "dress",
    "looking at viewer",
    "full body",
    "city",
    "night",
    "river",
    "bridge",
    "flowers",
    "holding umbrella",
    "from side",
    "upper body",
    "sitting",
    "bench",
    "snow",
    "cat",
    "window",
    "indoors",
    "lamp",
    "book",
]
CAMERA = Size(3000, 4000)


# -- fixtures -------------------------------------------------------------------------------------


def _caption(gen: random.Random, i: int) -> str:
    return "mychar, " + ", ".join(gen.sample(TAGS, 8)) + f", shot {i}"


def make_camera(folder: Path, count: int, bases: int = 8) -> None:
    """``count`` distinct camera-like JPEGs from ``bases`` generated 12 MP frames."""
    folder.mkdir(parents=True, exist_ok=True)
    gen = random.Random(21)
    frames: dict[int, Image.Image] = {}
    for i in range(count):
        path = folder / f"cam_{i:03d}.jpg"
        x, y = gen.randrange(0, 400), gen.randrange(0, 400)
        if not path.exists():
            b = i % min(bases, count)
            if b not in frames:
                frames[b] = _camera_like(b, Size(CAMERA.width + 400, CAMERA.height + 400))
            base = frames[b]
            w, h = (CAMERA.width, CAMERA.height) if i % 4 else (CAMERA.height, CAMERA.width - 400)  # some landscapes
            image = base.crop((x, y, x + w, y + h))
            if i % 3 == 1:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            image.save(path, quality=88 + i % 6)
        path.with_suffix(".txt").write_text(_caption(gen, i) + "\n", encoding="utf-8")


def _sample_photos() -> list[np.ndarray]:
    try:
        from skimage import data
    except ImportError:
        return [np.asarray(photo((640, 480), seed=s)) for s in range(8)]
    out = []
    for name in (
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "immunohistochemistry",
        "hubble_deep_field",
        "motorcycle_left",
        "cat",
        "retina",
    ):
        try:
            pixels = getattr(data, name)()
        except Exception:  # noqa: BLE001 - a sample missing from this scikit-image version (no download here)
            continue
        out.append(np.stack([pixels] * 3, -1) if pixels.ndim == 2 else pixels[..., :3])
    return out or [np.asarray(photo((640, 480), seed=s)) for s in range(8)]


def make_small(folder: Path, count: int) -> None:
    """``count`` small photos (400-900 px long side) cut from scikit-image's samples, JPEG and PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    gen = random.Random(22)
    photos = _sample_photos()
    for i in range(count):
        ext = ".png" if i % 5 == 0 else ".jpg"
        path = folder / f"small_{i:03d}{ext}"
        pixels = photos[i % len(photos)]
        h, w = pixels.shape[:2]
        cw, ch = int(w * gen.uniform(0.6, 1.0)), int(h * gen.uniform(0.6, 1.0))
        x, y = gen.randrange(0, w - cw + 1), gen.randrange(0, h - ch + 1)
        side = gen.randrange(400, 901)
        if not path.exists():
            image = Image.fromarray(np.ascontiguousarray(pixels[y : y + ch, x : x + cw]))
            k = side / max(image.size)
            image = image.resize(
                (max(1, round(image.width * k)), max(1, round(image.height * k))), Image.Resampling.BICUBIC
            )
            image.save(path, **({"quality": 90} if ext == ".jpg" else {}))
        path.with_suffix(".txt").write_text(_caption(gen, i) + "\n", encoding="utf-8")


def write_tomls(root: Path, images: Path) -> tuple[Path, Path]:
    dataset = root / "dataset.toml"
    dataset.write_text(
        f"""[general]
caption_extension = ".txt"
keep_tokens = 1
collage_rate = 1.0
collage_caption_merge = "tags"
collage_repeat_phrases = ["mychar"]

[[datasets]]
resolution = 1024
batch_size = 1
enable_bucket = true

  [[datasets.subsets]]
  image_dir = "{images.as_posix()}"
  num_repeats = 2
""",
        encoding="utf-8",
    )
    train = root / "train.toml"
    train.write_text(
        "[training]\nseed = 42\nmax_train_epochs = 10\nmax_token_length = 225\n"
        'dataset_class = "collage_ext.CollageDataset"\n',
        encoding="utf-8",
    )
    return dataset, train


# -- the CLI on 1 and 2 cores ----------------------------------------------------------------------


def cli(args: list[str], cpus: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system, the command and its workers) of ``python -m collage_ext ARGS``."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        subprocess.run(
            ["taskset", "-c", cpus, sys.executable, "-m", "collage_ext", *args],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    finally:
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        CPU_SPENT[0] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, CPU_SPENT[0]


CPU_SPENT = [0.0]


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes().replace(str(folder).encode(), b"OUT"))
    return h.hexdigest()


def cli_rows(
    name: str,
    root: Path,
    dataset: Path,
    train: Path,
    env: dict[str, str],
    cores: list[str],
) -> list[tuple[str, str, str]]:
    rows = []
    env = {**env, "COLLAGE_EXT_CACHE_DIR": "off"}
    for command in ("check", "preview", "export"):
        times, digests, cpu = {}, {}, {}
        for cpus in cores:
            out = root / f"{command}-{cpus.replace(',', '')}"
            shutil.rmtree(out, ignore_errors=True)
            args = [command, str(dataset), "--config", str(train)]
            if command != "check":
                args += ["--out", str(out)]
            try:
                times[cpus], cpu[cpus] = cli(args, cpus, env)
            except subprocess.CalledProcessError as exc:
                if command != "check" or exc.returncode != 1:  # check exits 1 on errors in the data: still timed
                    raise
                times[cpus], cpu[cpus] = float("nan"), CPU_SPENT[0]
            if command != "check":
                digests[cpus] = digest(out)
                shutil.rmtree(out, ignore_errors=True)
        one = times[cores[0]]
        cells = " / ".join(f"{times[c]:.1f} s" for c in cores)
        speed = f"{one / times[cores[-1]]:.2f}x" if len(cores) > 1 else "-"
        same = ("identical" if len(set(digests.values())) == 1 else "DIFFERENT") if digests else "-"
        label = " / ".join(str(c.count(",") + 1) for c in cores)
        rows.append(
            (
                f"{name}: `{command}` wall time on {label} cores (taskset)",
                cells,
                f"{speed} on {len(cores)} cores; output {same}; CPU " + " / ".join(f"{cpu[c]:.1f} s" for c in cores),
            )
        )
    return rows


# -- the studio, driven like the page --------------------------------------------------------------


class Served:
    def __init__(self, dataset: Path, train: Path) -> None:
        import uvicorn

        from collage_ext.studio.app import allowed_hosts, bind, create_app, new_token
        from collage_ext.studio.model import Studio

        self.studio = Studio(dataset, config=train)
        sock = bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        self.token = new_token()
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_app(self.studio, allowed_hosts("127.0.0.1", port), self.token),
                log_level="warning",
                access_log=False,
                lifespan="off",
            )
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.005)
        self.url = f"http://127.0.0.1:{port}"
        import httpx

        self.http = httpx.Client(
            base_url=self.url, timeout=300, headers={"Origin": self.url, "Authorization": f"token {self.token}"}
        )
        self.pool = concurrent.futures.ThreadPoolExecutor(6)

        #: CPU time of the client's threads (requests, JSON parsing): the server's is the process's minus this.
        self.client_cpu = 0.0
        self._cpu_lock = threading.Lock()

    def _counted(self, cpu: float) -> None:
        with self._cpu_lock:
            self.client_cpu += time.thread_time() - cpu

    def get(self, path: str, **params: Any) -> Any:
        cpu = time.thread_time()
        try:
            r = self.http.get(path, params=params)
            r.raise_for_status()
            return r.json() if r.headers["content-type"].startswith("application/json") else r.content
        finally:
            self._counted(cpu)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        cpu = time.thread_time()
        try:
            r = self.http.post(path, json=body)
            r.raise_for_status()
            return r.json()
        finally:
            self._counted(cpu)

    def server_cpu(self, process: float, client: float) -> float:
        """CPU time of the server's threads since ``process`` / ``client`` (``time.process_time``, ``client_cpu``)."""
        return (time.process_time() - process) - (self.client_cpu - client)

    def refresh(self) -> tuple[Any, Any, Any]:
        """What the page does after a write: state, then sources and frames together."""
        state = self.get("/api/state")
        sources, frames = self.pool.map(lambda p: self.get(p, epoch=1), ["/api/sources", "/api/frames"])
        return state, sources, frames

    def frame_thumbs(self, frames: Any, image_id: str) -> int:
        names = [f["name"] for f in frames["frames"] if any(s["id"] == image_id for s in f["sources"])]
        list(self.pool.map(lambda n: self.get("/api/frame-image", epoch=1, name=n, thumb=1), names))
        return len(names)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.pool.shutdown()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def studio_rows(name: str, dataset: Path, train: Path, edits: int) -> tuple[list[tuple[str, str, str]], list[float]]:
    from collage_ext.commands.check import run_check
    from collage_ext.commands.measurecache import MeasureCache
    from collage_ext.plan.framesets import text_encoder_for
    from collage_ext.plan.project import load_project

    project = load_project(dataset, config_file=train, strict=False)
    start = time.perf_counter()
    run_check(project, text_encoder_for(project.run.values), cache=MeasureCache())  # the "first check"
    first_check = time.perf_counter() - start

    start, cpu = time.perf_counter(), time.process_time()
    served = Served(dataset, train)
    served.refresh()
    check = served.get("/api/check", epoch=1)
    startup, startup_cpu = time.perf_counter() - start, time.process_time() - cpu
    sources = served.get("/api/sources", epoch=1)["sources"]
    start, cpu = time.perf_counter(), time.process_time()
    list(served.pool.map(lambda s: served.get("/api/source-image", id=s["id"], thumb=1), sources[:24]))
    thumbs, thumbs_cpu = time.perf_counter() - start, time.process_time() - cpu

    gen = random.Random(5)
    in_frames = [s for s in sources if s["frames"] and s["size"]]
    picks = gen.sample(in_frames, min(edits, len(in_frames)))
    crop_times, crop_check, frames_per_edit, crop_cpu = [], [], [], []
    crop_server: list[float] = []  # CPU of the server's threads (the background pre-render and check included)
    crop_check_server: list[float] = []
    for s in picks:
        w, h = s["size"]
        left, t = gen.randrange(0, w // 5), gen.randrange(0, h // 5)
        box = [left, t, left + int(w * gen.uniform(0.6, 0.8)), t + int(h * gen.uniform(0.6, 0.8))]
        start, cpu, client = time.perf_counter(), time.process_time(), served.client_cpu
        served.post("/api/crop", {"id": s["id"], "box": box})
        _, _, frames = served.refresh()
        frames_per_edit.append(served.frame_thumbs(frames, s["id"]))
        crop_times.append(time.perf_counter() - start)
        crop_cpu.append(time.process_time() - cpu)
        crop_server.append(served.server_cpu(cpu, client))
        served.get("/api/check", epoch=1)
        crop_check.append(time.perf_counter() - start)
        crop_check_server.append(served.server_cpu(cpu, client))
    caption_times, caption_refresh, caption_cpu = [], [], []
    caption_server: list[float] = []
    for i, s in enumerate(picks):
        start, cpu, client = time.perf_counter(), time.process_time(), served.client_cpu
        answer = served.post("/api/caption", {"id": s["id"], "text": f"mychar, edited {i}, " + s["caption"]})
        assert answer["tokens"]["total"] > 0
        caption_times.append(time.perf_counter() - start)
        caption_cpu.append(time.process_time() - cpu)
        served.refresh()
        caption_refresh.append(time.perf_counter() - start)
        caption_server.append(served.server_cpu(cpu, client))
        served.get("/api/check", epoch=1)  # settled before the next edit, as after a crop
    drop_times, drop_server = [], []
    for s in picks[:5]:
        start, cpu, client = time.perf_counter(), time.process_time(), served.client_cpu
        served.post("/api/drop", {"id": s["id"]})
        served.refresh()
        drop_times.append(time.perf_counter() - start)
        drop_server.append(served.server_cpu(cpu, client))
        served.post("/api/restore", {"id": s["id"]})
        served.get("/api/check", epoch=1)
    served.close()
    n = len(sources)
    rows = [
        (f"{name}: first `check` ({n} images, fills the quality cache)", f"{first_check:.1f} s", "once per new file"),
        (
            f"{name}: studio start-up after a first check (state, sources, frames, check)",
            f"{startup:.2f} s",
            f"target < 3 s; CPU {startup_cpu:.2f} s; {check['errors']} errors, {check['warnings']} warnings",
        ),
        (
            f"{name}: first 24 source thumbnails",
            f"{thumbs:.2f} s",
            f"what the first screen shows; CPU {thumbs_cpu:.2f} s",
        ),
        (
            f"{name}: crop edit -> its frames visible, p50 / p95 of {len(crop_times)}",
            f"{pct(crop_times, 0.5):.2f} / {pct(crop_times, 0.95):.2f} s",
            f"target p95 < 1 s; server CPU p50 / p95 {pct(crop_server, 0.5):.2f} / {pct(crop_server, 0.95):.2f} s (all "
            f"threads: {pct(crop_cpu, 0.5):.2f} / {pct(crop_cpu, 0.95):.2f} s); {statistics.mean(frames_per_edit):.1f} "
            "frames per edit",
        ),
        (
            f"{name}: crop edit -> findings updated too, p50 / p95",
            f"{pct(crop_check, 0.5):.2f} / {pct(crop_check, 0.95):.2f} s",
            f"server CPU p50 / p95 {pct(crop_check_server, 0.5):.2f} / {pct(crop_check_server, 0.95):.2f} s",
        ),
        (
            f"{name}: caption edit -> token view, p50 / p95 of {len(caption_times)}",
            f"{pct(caption_times, 0.5):.3f} / {pct(caption_times, 0.95):.3f} s",
            f"target < 0.2 s; CPU p95 {pct(caption_cpu, 0.95):.3f} s",
        ),
        (
            f"{name}: caption edit -> sources and frames refreshed, p50 / p95",
            f"{pct(caption_refresh, 0.5):.2f} / {pct(caption_refresh, 0.95):.2f} s",
            f"server CPU p50 / p95 {pct(caption_server, 0.5):.2f} / {pct(caption_server, 0.95):.2f} s",
        ),
        (
            f"{name}: drop -> counts updated, p50 / p95 of {len(drop_times)}",
            f"{pct(drop_times, 0.5):.2f} / {pct(drop_times, 0.95):.2f} s",
            f"server CPU p50 / p95 {pct(drop_server, 0.5):.2f} / {pct(drop_server, 0.95):.2f} s",
        ),
    ]
    return rows, crop_times


def browser_rows(name: str, dataset: Path, train: Path, edits: int) -> tuple[list[tuple[str, str, str]], list[float]]:
    """The same edits made in headless chromium (Debian's, through Playwright): drag, type, click, as a user."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import chromium_path
    from tests.studio.latency import (
        caption_until_tokens_change,
        crop_until_frames_change,
        drop_until_counted,
        open_editor,
    )

    path = chromium_path()
    if path is None:
        return [(f"{name}: browser edits", "skipped", "no chromium (apt-get install chromium)")], []
    from collage_ext.commands.check import run_check
    from collage_ext.commands.measurecache import MeasureCache
    from collage_ext.plan.framesets import text_encoder_for
    from collage_ext.plan.project import load_project

    project = load_project(dataset, config_file=train, strict=False)
    run_check(project, text_encoder_for(project.run.values), cache=MeasureCache())  # a first check, on every CPU
    served = Served(dataset, train)
    served.get("/api/check", epoch=1)  # warm: the page's own first check is not what is timed here
    sources = served.get("/api/sources", epoch=1)["sources"]
    gen = random.Random(7)
    picks = gen.sample([s for s in sources if s["frames"] and s["size"]], min(edits, len(sources)))
    crops, captions, drops = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_context(viewport={"width": 1440, "height": 960}).new_page()
        page.goto(f"{served.url}/?token={served.token}")
        page.wait_for_selector(".card[data-id]")
        page.wait_for_function("document.body.dataset.checked !== undefined", timeout=300_000)
        for i, s in enumerate(picks):
            if page.is_visible("#editor"):
                page.click("#ed-close")  # the editor covers part of the grid
            open_editor(page, s["id"], timeout=120_000)
            a, b = gen.uniform(0.0, 0.2), gen.uniform(0.0, 0.2)
            k = gen.uniform(0.6, 0.8)  # the image's own aspect, a random part of it
            seconds, before, after = crop_until_frames_change(page, (a, b, a + k, b + k), timeout=120_000)
            crops.append(seconds)
            if i < edits // 2:
                text = "mychar, " + ", ".join(gen.sample(TAGS, 10)) + f", edited {i}"
                page.fill("#ed-caption", text)
                page.wait_for_function("document.querySelector('#ed-tokens').innerText.includes('unsaved')")
                captions.append(caption_until_tokens_change(page, text, timeout=120_000))
            if i < 5:
                drops.append(drop_until_counted(page, timeout=120_000))
                served.post("/api/restore", {"id": s["id"]})
                page.reload()
                page.wait_for_selector(".card[data-id]")
        browser.close()
    served.close()
    rows = [
        (
            f"{name}: **browser**: crop drag released -> its frames' new pixels on screen, p50 / p95 of {len(crops)}",
            f"{pct(crops, 0.5):.2f} / {pct(crops, 0.95):.2f} s",
            "target p95 < 1 s",
        ),
        (
            f"{name}: **browser**: caption saved -> token view, p50 / p95 of {len(captions)}",
            f"{pct(captions, 0.5):.2f} / {pct(captions, 0.95):.2f} s",
            "click to the saved view (a refresh of the page's data)",
        ),
        (
            f"{name}: **browser**: drop clicked -> sources count, p50 / p95 of {len(drops)}",
            f"{pct(drops, 0.5):.2f} / {pct(drops, 0.95):.2f} s",
            "",
        ),
    ]
    return rows, crops


def png_rows(name: str, dataset: Path, train: Path, frames: int = 6) -> list[tuple[str, str, str]]:
    """zlib level vs PNG size and encoding CPU time on real frames of the set (fastest of 5 per frame)."""
    import io

    from collage_ext.plan.framesets import text_encoder_for
    from collage_ext.plan.jobs import frames_for
    from collage_ext.plan.project import load_project, plan_project

    project = load_project(dataset, config_file=train, strict=False)
    jobs = frames_for(plan_project(project, text_encoder_for(project.run.values)), "dynamic", 1).jobs[:frames]
    images = [Image.fromarray(job.render().image) for job in jobs]
    rows = []
    base = None
    for level in (0, 1, 2, 3, 6, 9):
        size, seconds = 0, 0.0
        for image in images:
            best = float("inf")
            for _ in range(5):
                out = io.BytesIO()
                start = time.process_time()  # CPU time: encoding is one thread, and the machine may be shared
                image.save(out, format="PNG", compress_level=level)
                best = min(best, time.process_time() - start)
            size, seconds = size + len(out.getvalue()), seconds + best
        if level == 6:
            base = (size, seconds)
        rows.append((level, size / len(images), seconds / len(images)))
    assert base is not None
    return [
        (
            f"{name}: PNG zlib level {level}{' (Pillow default)' if level == 6 else ''}",
            f"{size / 2**20:.2f} MiB, {seconds * 1000:.0f} ms CPU per frame",
            f"{size / (base[0] / len(images)):.2f}x the size, "
            f"{seconds / (base[1] / len(images)):.2f}x the time of level 6",
        )
        for level, size, seconds in rows
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="images per set (default 200)")
    parser.add_argument("--edits", type=int, default=20, help="edits of each kind (default 20)")
    parser.add_argument("--sets", default="camera,small", help="sets to run (default camera,small)")
    parser.add_argument("--keep", type=Path, help="keep the generated photos here (and reuse them next time)")
    parser.add_argument("--skip-cli", action="store_true", help="only the studio rows")
    parser.add_argument("--skip-studio", action="store_true", help="only the CLI rows")
    parser.add_argument("--skip-browser", action="store_true", help="no edits in headless chromium")
    parser.add_argument("--skip-http", action="store_true", help="no studio rows driven over HTTP (browser only)")
    parser.add_argument("--skip-png", action="store_true", help="no PNG level table")
    parser.add_argument(
        "--warm",
        action="store_true",
        help="keep the quality cache of an earlier run with --keep (the first check reads it)",
    )
    args = parser.parse_args()
    os.environ.setdefault("COLLAGE_EXT_NO_TOKENIZER", "1")
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench_curation_"))
    cores = ["0", "0,1"] if len(os.sched_getaffinity(0)) >= 2 else ["0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load_before = os.getloadavg()
    rows: list[tuple[str, str, str]] = []
    crop_times: dict[str, list[float]] = {}

    def section(name: str, what: str, run: Callable[[], Any]) -> None:
        try:
            found = run()
        except Exception as exc:  # noqa: BLE001 - report it and go on with the other sections
            found = [(f"{name}: {what}", "FAILED", f"{type(exc).__name__}: {str(exc).splitlines()[0]}")]
        if isinstance(found, tuple):
            found, crop_times[f"{name} ({what})"] = found
        rows.extend(found)
        for row in found:
            print("| " + " | ".join(row) + " |", file=sys.stderr, flush=True)

    def reset(name: str, folder: Path) -> None:
        (make_camera if name == "camera" else make_small)(folder, args.images)  # captions back
        for crop in folder.glob("*.crop"):
            crop.unlink()

    try:
        for name in args.sets.split(","):
            folder = base / name / "img"
            start = time.perf_counter()
            (make_camera if name == "camera" else make_small)(folder, args.images)
            for stale in folder.glob("*"):  # a kept set from a larger run: use only the first --images files
                if stale.is_file() and int(stale.stem.split("_")[-1]) >= args.images:
                    stale.unlink()
            shutil.rmtree(folder / "_collage_studio", ignore_errors=True)
            for crop in folder.glob("*.crop"):
                crop.unlink()
            print(f"[{name}: {args.images} images ready in {time.perf_counter() - start:.0f} s]", file=sys.stderr)
            dataset, train = write_tomls(base / name, folder)
            os.environ["COLLAGE_EXT_CACHE_DIR"] = str(base / name / "cache")
            if not args.warm:
                shutil.rmtree(base / name / "cache", ignore_errors=True)

            if not args.skip_studio:
                if not args.skip_http:
                    section(name, "studio", partial(studio_rows, name, dataset, train, args.edits))
                    reset(name, folder)
                if not args.skip_browser:
                    section(name, "browser", partial(browser_rows, name, dataset, train, args.edits))
                    reset(name, folder)
            if not args.skip_png:
                section(name, "PNG levels", partial(png_rows, name, dataset, train))
            if not args.skip_cli:
                section(name, "CLI", partial(cli_rows, name, base / name, dataset, train, env, cores))
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    load_after = os.getloadavg()
    print(
        f"\nload average (1, 5, 15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {' '.join(f'{x:.2f}' for x in load_after)}; CPUs: {os.cpu_count()}\n"
    )
    print("| measure | result | note |\n| --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for name, times in crop_times.items():
        print(f"\n{name}: crop edit -> frames visible, all {len(times)} (s): " + " ".join(f"{t:.2f}" for t in times))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
