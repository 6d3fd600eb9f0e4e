"""Collage composition cost against sd-scripts' own image loader, on one CPU core, in one run.

    /work/sd/venv/bin/python benchmarks/bench_compose.py                        # restated sd-scripts code
    SD_SCRIPTS_DIR=/work/sd/main /work/sd/venv/bin/python benchmarks/bench_compose.py   # its real functions + P4

Needs Pillow, numpy and OpenCV (sd-scripts resizes with ``cv2.INTER_AREA``); scikit-image for the
photo fixtures when installed (else a synthetic photo stands in; the output says which); torch and
an importable sd-scripts checkout (``SD_SCRIPTS_DIR``) for the cached-latents DatasetGroup
comparison (P4). Every fixture is generated into a temporary folder; nothing is downloaded.

What is compared, on the same files in one process pinned to one core (like ``taskset -c 0``):

* **sd-scripts' per-image path** (``library/train_util.py`` ``load_image`` +
  ``trim_and_resize_if_required`` -> ``library/utils.py`` ``resize_image``): full decode, RGB
  convert, ``np.array``, ``cv2.resize(INTER_AREA)`` when shrinking. With ``SD_SCRIPTS_DIR`` the real
  functions are imported; otherwise the faithful restatement below is used.
* **collage_ext's path**: ``images.load_fitted`` (what ``Collage.render`` calls per cell) and
  ``render.render_frame`` for whole frames.

Timing: every method runs on every file in turn (interleaved, order alternating per round), after
one warm-up round; a method's time for a file is its fastest run (the least disturbed by other
processes), summed over the files. Ratios are what the targets are about; absolute numbers depend
on the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collage_ext.core.config import CollageConfig  # noqa: E402
from collage_ext.core.types import Size  # noqa: E402
from collage_ext.geometry.grouping import Record, group_instances, pool_structure  # noqa: E402
from collage_ext.geometry.layout import layout_cells  # noqa: E402
from collage_ext.pixels.fit import cell_fit, choose_draft_scale  # noqa: E402
from collage_ext.pixels.images import load_fitted, open_image, read_image_size  # noqa: E402
from collage_ext.pixels.render import render_frame  # noqa: E402
from collage_ext.plan.collage import FAST_DRAFT_GAPS  # noqa: E402
from tests.imaging import float_lanczos, psnr, stop_band_residue, zone_plate  # noqa: E402

PHOTO = Size(3000, 4000)  # 12 MP, portrait
ILLUSTRATION = Size(832, 1216)  # a common SDXL bucket
BIG_ILLUSTRATION = Size(1024, 1536)  # a common upload size for SDXL illustrations
CELL = Size(512, 1024)  # one half of a 1024x1024 1x2 frame
FRAME = Size(1024, 1024)
FILL = (24, 24, 24)


# --------------------------------------------------------------------------------------------------
# sd-scripts' per-image path: the real functions, or a faithful restatement of them
# --------------------------------------------------------------------------------------------------
def _restated_sd() -> tuple[Callable[..., np.ndarray], Callable[..., Any], str]:
    import cv2

    def load_image(image_path: str, alpha: bool = False) -> np.ndarray:  # library/train_util.py
        with Image.open(image_path) as image:
            if alpha:
                if not image.mode == "RGBA":
                    image = image.convert("RGBA")
            elif not image.mode == "RGB":
                image = image.convert("RGB")
            return np.array(image, np.uint8)

    def pil_resize(image: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:  # library/utils.py
        pil_image = Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        return cv2.cvtColor(np.array(pil_image.resize(size, resample=interpolation)), cv2.COLOR_RGB2BGR)

    def resize_image(
        image: np.ndarray,
        width: int,
        height: int,
        resized_width: int,
        resized_height: int,
        resize_interpolation: str | None = None,
    ) -> np.ndarray:  # library/utils.py
        if resize_interpolation is None:
            resize_interpolation = "area" if width >= resized_width and height >= resized_height else "lanczos"
        if resize_interpolation in ("lanczos", "lanczos4", "box"):
            method = Image.Resampling.LANCZOS if resize_interpolation != "box" else Image.Resampling.BOX
            return pil_resize(image, (resized_width, resized_height), method)
        return cv2.resize(image, (resized_width, resized_height), interpolation=cv2.INTER_AREA)

    def trim_and_resize_if_required(
        random_crop: bool,
        image: np.ndarray,
        reso: tuple[int, int],
        resized_size: tuple[int, int],
        resize_interpolation: str | None = None,
    ) -> tuple[np.ndarray, Any, Any]:
        image_height, image_width = image.shape[0:2]  # library/train_util.py
        original_size = (image_width, image_height)
        if image_width != resized_size[0] or image_height != resized_size[1]:
            image = resize_image(
                image, image_width, image_height, resized_size[0], resized_size[1], resize_interpolation
            )
        image_height, image_width = image.shape[0:2]
        if image_width > reso[0]:
            p = (image_width - reso[0]) // 2
            image = image[:, p : p + reso[0]]
        if image_height > reso[1]:
            p = (image_height - reso[1]) // 2
            image = image[p : p + reso[1]]
        return image, original_size, None

    return load_image, trim_and_resize_if_required, "restated from sd-scripts (load_image, trim_and_resize_if_required)"


def sd_functions() -> tuple[Callable[..., np.ndarray], Callable[..., Any], str]:
    """sd-scripts' ``load_image`` and ``trim_and_resize_if_required``: real when importable, else restated."""
    sd_dir = os.environ.get("SD_SCRIPTS_DIR")
    if sd_dir:
        sys.path.insert(0, str(Path(sd_dir).resolve()))
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from library import train_util
            return (
                train_util.load_image,
                train_util.trim_and_resize_if_required,
                f"real functions from {sd_dir} (library.train_util)",
            )
        except Exception as exc:  # noqa: BLE001 - any failure: fall back and say so
            print(f"note: SD_SCRIPTS_DIR={sd_dir} not importable ({type(exc).__name__}: {exc}); using the restatement")
    return _restated_sd()


# --------------------------------------------------------------------------------------------------
# Fixtures (generated, never downloaded)
# --------------------------------------------------------------------------------------------------
def _source_photos(count: int) -> tuple[list[np.ndarray], str]:
    try:
        from skimage import data
    except ImportError:
        gen = np.random.default_rng(0)
        photos = []
        for _ in range(count):
            coarse = gen.integers(0, 256, (12, 9, 3), dtype=np.uint8)
            photos.append(np.asarray(Image.fromarray(coarse).resize((480, 640), Image.Resampling.BICUBIC)))
        return photos, "synthetic (scikit-image not installed)"
    names = [
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "immunohistochemistry",
        "retina",
        "hubble_deep_field",
        "camera",
        "grass",
        "gravel",
    ]
    photos = []
    for name in (names * (count // len(names) + 1))[:count]:
        pixels = getattr(data, name)()
        photos.append(np.stack([pixels] * 3, axis=-1) if pixels.ndim == 2 else pixels[..., :3])
    return photos, "skimage.data photos, upscaled"


def _portrait(pixels: np.ndarray, size: Size) -> Image.Image:
    """Centre-crop to the target aspect, then upscale (BICUBIC) to ``size``."""
    image = Image.fromarray(pixels)
    w, h = image.size
    if w * size.height > h * size.width:
        keep = h * size.width // size.height
        image = image.crop(((w - keep) // 2, 0, (w - keep) // 2 + keep, h))
    else:
        keep = w * size.height // size.width
        image = image.crop((0, (h - keep) // 2, w, (h - keep) // 2 + keep))
    return image.resize(size, Image.Resampling.BICUBIC)


def _illustration(index: int, size: Size) -> Image.Image:
    """A PIL-drawn 'illustration': shaded background, outlined shapes, line art, slight blur and grain."""
    rng = random.Random(index)
    y, x = np.mgrid[0 : size.height, 0 : size.width].astype(np.float32)
    top, bottom = np.array([rng.randrange(256) for _ in range(3)]), np.array([rng.randrange(256) for _ in range(3)])
    t = (y / size.height)[..., None]
    image = Image.fromarray((top * (1 - t) + bottom * t + 10 * np.sin(x / 37)[..., None]).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x0, y0 = rng.randrange(size.width), rng.randrange(size.height)
        box = (x0, y0, x0 + rng.randrange(20, 300), y0 + rng.randrange(20, 300))
        color = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=color, outline=(20, 20, 30), width=3)
    for _ in range(120):
        draw.line(
            [(rng.randrange(size.width), rng.randrange(size.height)) for _ in range(3)], fill=(25, 20, 30), width=2
        )
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(0.6)), np.float32)
    grain = np.random.default_rng(index).normal(0, 1.0, pixels.shape[:2] + (1,))
    return Image.fromarray((pixels + grain).clip(0, 255).astype(np.uint8))


def _camera_like(index: int, size: Size) -> Image.Image:
    """A camera-like 12 MP frame: detail at five scales down to single pixels, plus sensor grain.

    Upscaled photos hold no detail at full resolution and compress to about 0.9 MB; camera files
    of this size are 3-6 MB, and their entropy decoding dominates the decode. This one saves to
    about 4 MB at quality 92 (luma grain sigma 5, chroma grain sigma 2).
    """
    gen = np.random.default_rng(100 + index)
    pixels = np.zeros((size.height, size.width, 3), np.float32)
    for cells, weight in ((6, 0.45), (24, 0.25), (96, 0.15), (400, 0.1), (1600, 0.05)):
        coarse = gen.integers(0, 256, (cells * size.height // size.width + 2, cells + 2, 3), dtype=np.uint8)
        layer = Image.fromarray(coarse).resize(tuple(size), Image.Resampling.BICUBIC)
        pixels += weight * np.asarray(layer, np.float32)
    pixels += gen.normal(0, 5, (size.height, size.width, 1)).astype(np.float32)
    pixels += gen.normal(0, 2, (size.height, size.width, 3)).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@dataclass
class Fixtures:
    jpegs: list[Path]  # upscaled photos (little detail at full size; informative, and the ">= 5x" set)
    grainy: list[Path]  # camera-like 12 MP JPEGs (the headline set)
    pngs: list[Path]  # 832x1216 illustrations
    big_pngs: list[Path]  # 1024x1536 illustrations
    zone_jpeg: Path  # zone plate, 3000 px, JPEG q95 4:4:4
    zone_png: Path  # zone plate, 1216 px, PNG
    photo_source: str


def make_fixtures(folder: Path, count: int) -> Fixtures:
    photos, source = _source_photos(count)
    jpegs, grainy, pngs, big_pngs = [], [], [], []
    for i, pixels in enumerate(photos):
        image = _portrait(pixels, PHOTO)
        jpegs.append(folder / f"photo_{i:02d}.jpg")
        image.save(jpegs[-1], quality=92)
        grainy.append(folder / f"camera_{i:02d}.jpg")
        _camera_like(i, PHOTO).save(grainy[-1], quality=92)
        pngs.append(folder / f"illustration_{i:02d}.png")
        _illustration(i, ILLUSTRATION).save(pngs[-1])
        big_pngs.append(folder / f"illustration_big_{i:02d}.png")
        _illustration(100 + i, BIG_ILLUSTRATION).save(big_pngs[-1])
    zone_jpeg, zone_png = folder / "zone_plate.jpg", folder / "zone_plate.png"
    zone_plate(PHOTO.width).save(zone_jpeg, quality=95, subsampling=0)
    zone_plate(ILLUSTRATION.height).save(zone_png)
    return Fixtures(jpegs, grainy, pngs, big_pngs, zone_jpeg, zone_png, source)


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------
def interleaved(methods: dict[str, Callable[[Any], object]], items: Sequence[Any], rounds: int) -> dict[str, float]:
    """Seconds each method needs for all items: per item its fastest of ``rounds`` interleaved runs, summed.

    Methods alternate per item (order reversed every round) after one warm-up round, so a burst of
    load from other processes hits all methods alike; the fastest run of each item is its least
    disturbed one.
    """
    best: dict[str, list[float]] = {name: [float("inf")] * len(items) for name in methods}
    names = list(methods)
    for round_index in range(rounds + 1):  # round 0 warms the page cache and lazy imports
        order = names if round_index % 2 else names[::-1]
        gc.collect()
        for k, item in enumerate(items):
            for name in order:
                start = time.perf_counter()
                methods[name](item)
                spent = time.perf_counter() - start
                if round_index:
                    best[name][k] = min(best[name][k], spent)
    return {name: sum(values) for name, values in best.items()}


@dataclass
class Row:
    target: str
    measure: str
    sd: str
    ours: str
    ratio: str
    goal: str
    met: str


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _decode_at(path: Path, scale: int) -> None:
    with Image.open(path) as image:
        if scale > 1:
            image.draft(None, (image.width // scale, image.height // scale))
        image.load()


def _simplejpeg_floor(scale: int) -> Callable[[Path], object] | None:
    """simplejpeg's DCT-scaled decode straight to numpy, when installed: a second decode floor."""
    try:
        import simplejpeg
    except ImportError:
        return None

    def decode(path: Path) -> object:
        data = path.read_bytes()
        width, height, _, _ = simplejpeg.decode_jpeg_header(data)
        return simplejpeg.decode_jpeg(data, min_width=width // scale, min_height=height // scale)

    return decode


@dataclass
class Kind:
    """One fixture set: its files, the cell they go into, and the zone plate cell with the same shrink."""

    label: str
    paths: list[Path]
    cell: Size
    zone: Path
    zone_cell: Size
    headline: bool


@dataclass
class Measured:
    label: str
    n: int
    scale: int
    t: dict[str, float]  # seconds for all files, per method
    quality: dict[str, float]  # worst PSNR vs the float LANCZOS reference, per path
    residue: dict[str, float]  # zone plate stop-band residue, per path


def _kinds(fx: Fixtures) -> list[Kind]:
    zone_cell_png = Size(748, 748)  # 1216 -> 748: the 832x1216 illustrations' shrink (1.63)
    return [
        Kind("12 MP camera-like JPEG (grain, q92, ~4 MB)", fx.grainy, CELL, fx.zone_jpeg, CELL, True),
        Kind("12 MP upscaled photo JPEG (q92, ~0.8 MB)", fx.jpegs, CELL, fx.zone_jpeg, CELL, False),
        Kind("832x1216 PNG illustration", fx.pngs, CELL, fx.zone_png, zone_cell_png, False),
        Kind("1024x1536 PNG illustration", fx.big_pngs, CELL, fx.zone_png, Size(608, 608), False),
    ]


def measure_kind(kind: Kind, sd: tuple[Callable[..., Any], ...], rounds: int, quality_files: int) -> Measured:
    load_image, trim_and_resize, _ = sd
    size = read_image_size(kind.paths[0])
    dst = cell_fit(size, kind.cell, "contain").dst
    scale = choose_draft_scale(size, kind.cell, "contain")

    def sd_cell(path: Path, out: tuple[int, int]) -> Any:
        result = trim_and_resize(False, load_image(str(path)), out, out)
        return result[0] if isinstance(result, tuple) else result  # (image, original size, crop) on newer trees

    fast = {"draft_gaps": FAST_DRAFT_GAPS, "soft_shrink": True}  # collage_decode = "fast"
    paths_of = {
        "sd-scripts (full decode + INTER_AREA)": lambda p, cell, out: sd_cell(p, out),
        "collage_decode = 'quality' (default)": lambda p, cell, out: load_fitted(p, cell, "contain", fill=FILL)[0],
        "collage_decode = 'fast'": lambda p, cell, out: load_fitted(p, cell, "contain", fill=FILL, **fast)[0],
    }
    methods: dict[str, Callable[[Any], object]] = {
        name: (lambda p, f=f: f(p, kind.cell, (dst.width, dst.height))) for name, f in paths_of.items()
    }
    methods[f"decode floor (Pillow, 1/{scale})"] = lambda p: _decode_at(p, scale)
    simple = _simplejpeg_floor(scale) if kind.paths[0].suffix == ".jpg" else None
    if simple is not None:
        methods[f"decode floor (simplejpeg, 1/{scale})"] = simple
    t = interleaved(methods, kind.paths, rounds)

    quality: dict[str, float] = {}
    for path in kind.paths[:quality_files]:
        reference = float_lanczos(open_image(path), (dst.width, dst.height))
        for name, f in paths_of.items():
            value = psnr(f(path, kind.cell, (dst.width, dst.height)), reference)
            quality[name] = min(quality.get(name, float("inf")), value)
    zone_n = read_image_size(kind.zone).width
    zone_dst = cell_fit(Size(zone_n, zone_n), kind.zone_cell, "contain").dst
    residue = {
        name: stop_band_residue(f(kind.zone, kind.zone_cell, (zone_dst.width, zone_dst.height)), zone_n)
        for name, f in paths_of.items()
    }
    residue["float LANCZOS reference"] = stop_band_residue(
        float_lanczos(open_image(kind.zone), (zone_dst.width, zone_dst.height), rounded=False), zone_n
    )
    return Measured(f"{kind.label} -> {dst.width}x{dst.height} cell", len(kind.paths), scale, t, quality, residue)


def detail_table(results: list[Measured]) -> list[str]:
    lines = [
        "| fixture -> cell | path | cells/s | vs sd-scripts | share of the fastest decode floor | "
        "PSNR vs float LANCZOS (worst file) | zone plate residue |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in results:
        sd_t = m.t["sd-scripts (full decode + INTER_AREA)"]
        floor = min(v for k, v in m.t.items() if k.startswith("decode floor"))
        for name, seconds in m.t.items():
            is_floor = name.startswith("decode floor")
            quality = "-" if is_floor else f"{m.quality.get(name, float('nan')):.1f} dB"
            residue = "-" if is_floor else f"{m.residue[name]:.2f}"
            share = "-" if is_floor else f"{floor / seconds:.0%}"
            lines.append(
                f"| {m.label} | {name} | {m.n / seconds:.1f} | {sd_t / seconds:.2f}x | {share} | "
                f"{quality} | {residue} |"
            )
        lines.append(
            f"| {m.label} | float LANCZOS reference | - | - | - | - | {m.residue['float LANCZOS reference']:.2f} |"
        )
    return lines


def bench_cells(
    fx: Fixtures, sd: tuple[Callable[..., Any], ...], rounds: int, quality_files: int
) -> tuple[list[Row], list[str], list[Measured]]:
    results = [measure_kind(kind, sd, rounds, quality_files) for kind in _kinds(fx)]
    camera, upscaled, png, big_png = results
    sd_name, ours, fast = (
        "sd-scripts (full decode + INTER_AREA)",
        "collage_decode = 'quality' (default)",
        "collage_decode = 'fast'",
    )

    def floor_of(m: Measured) -> float:
        return min(v for k, v in m.t.items() if k.startswith("decode floor"))

    share = floor_of(camera) / camera.t[ours]
    speedup = upscaled.t[sd_name] / upscaled.t[ours]
    worst_psnr = min(camera.quality[ours], upscaled.quality[ours])
    rows = [
        Row(
            "P1",
            f"default mode, {camera.label}: share of the fastest decode floor at its scale (1/{camera.scale})",
            f"{camera.n / camera.t[sd_name]:.1f} cells/s",
            f"{camera.n / camera.t[ours]:.1f} cells/s",
            f"{share:.0%} of the floor",
            ">= 75 %",
            _yes(share >= 0.75),
        ),
        Row(
            "P1",
            f"default mode, {upscaled.label}: cells/s",
            f"{upscaled.n / upscaled.t[sd_name]:.1f}",
            f"{upscaled.n / upscaled.t[ours]:.1f}",
            f"{speedup:.2f}x faster",
            ">= 5x",
            _yes(speedup >= 5),
        ),
        Row(
            "P1",
            "default mode, PSNR vs a float LANCZOS reference on photos (worst file of both JPEG sets)",
            "-",
            f"{worst_psnr:.1f} dB",
            "-",
            ">= 45 dB",
            _yes(worst_psnr >= 45),
        ),
        Row(
            "P1",
            "default mode, zone plate residue (3000 px JPEG -> 512 px) vs sd-scripts' path",
            f"{camera.residue[sd_name]:.2f}",
            f"{camera.residue[ours]:.2f}",
            "-",
            "no worse than before (0.8)",
            _yes(camera.residue[ours] <= 0.9),
        ),
    ]
    for m in (png, big_png):
        cost = m.t[ours] / m.t[sd_name]
        rows.append(
            Row(
                "P1 (PNG)",
                f"default mode, {m.label}: cost per image",
                f"{m.t[sd_name] / m.n * 1000:.1f} ms",
                f"{m.t[ours] / m.n * 1000:.1f} ms",
                f"{cost:.2f}x cost",
                "<= 1.0x cost",
                _yes(cost <= 1.0),
            )
        )
    rows.append(
        Row(
            "P1 (fast)",
            "collage_decode = 'fast', zone plate residue (3000 px JPEG -> 512 px)",
            f"{camera.residue[sd_name]:.2f}",
            f"{camera.residue[fast]:.2f}",
            "-",
            "<= sd-scripts",
            _yes(camera.residue[fast] <= camera.residue[sd_name]),
        )
    )
    notes = [f"{m.label}: reduced decode at 1/{m.scale}" for m in results]
    return rows, notes, results


def bench_frame(fx: Fixtures, sd: tuple[Callable[..., Any], ...], rounds: int) -> tuple[list[str], list[Row]]:
    load_image, trim_and_resize, _ = sd
    cells = layout_cells("2x2", FRAME)
    notes, rows = [], []
    for label, files, headline in (("camera-like", fx.grainy, True), ("upscaled", fx.jpegs, False)):
        groups = [[files[(i + k) % len(files)] for k in range(4)] for i in range(len(files))]
        size = read_image_size(files[0])
        # sd-scripts' BucketManager.select_bucket: scale to cover the bucket, then trim the overhang.
        scale = (
            FRAME.height / size.height
            if size.width * FRAME.height > size.height * FRAME.width
            else FRAME.width / size.width
        )
        resized = (int(size.width * scale + 0.5), int(size.height * scale + 0.5))
        draft = choose_draft_scale(size, cells[0].size, "contain")

        def compose(paths: list[Path], fast: bool = False) -> np.ndarray:
            placements = []
            for cell, path in zip(cells, paths):
                extra = {"draft_gaps": FAST_DRAFT_GAPS, "soft_shrink": True} if fast else {}
                fitted, rect = load_fitted(path, cell.size, "contain", fill=FILL, **extra)
                placements.append((rect._replace(x=cell.x + rect.x, y=cell.y + rect.y), fitted))
            return render_frame(FRAME, placements, FILL).image

        # this label's sizes bound as defaults: each round of ``interleaved`` below runs them for this label only
        def plain(paths: list[Path], resized: tuple[int, int] = resized) -> Any:
            return trim_and_resize(False, load_image(str(paths[0])), tuple(FRAME), resized)

        def floor(paths: list[Path], draft: int = draft) -> None:
            for path in paths:
                _decode_at(path, draft)

        t = interleaved(
            {"sd": plain, "ours": compose, "fast": lambda g: compose(g, True), "floor": floor}, groups, rounds
        )
        n = len(groups)
        notes.append(
            f"2x2 frame of four {label} 12 MP JPEGs: collage_decode = 'fast' {t['fast'] / n * 1000:.0f} ms = "
            f"{t['fast'] / t['sd']:.2f}x sd-scripts' frame of one; decoding the four files at 1/{draft} alone "
            f"(no resize) takes {t['floor'] / n * 1000:.0f} ms = {t['floor'] / t['sd']:.2f}x"
        )
        goal = "< 0.8x time" if headline else "informative"
        rows.append(
            Row(
                "P2" if headline else "P2 (info)",
                f"2x2 frame of four {label} 12 MP JPEGs (default mode) vs "
                "sd-scripts' plain 1024x1024 frame of one: ms/frame",
                f"{t['sd'] / n * 1000:.0f} ms",
                f"{t['ours'] / n * 1000:.0f} ms",
                f"{t['ours'] / t['sd']:.2f}x time",
                goal,
                _yes(t["ours"] < 0.8 * t["sd"]) if headline else "-",
            )
        )
    return notes, rows


def bench_planning(count: int, fx: Fixtures) -> tuple[list[Row], list[str]]:
    rng = random.Random(0)
    sizes = [
        Size(832, 1216),
        Size(1216, 832),
        Size(1024, 1024),
        Size(3000, 4000),
        Size(4000, 3000),
        Size(896, 1152),
        Size(640, 640),
        Size(300, 400),
    ]
    records = [Record(f"train/{i:06d}.png", rng.choice(sizes), rng.choice((1, 1, 2, 3))) for i in range(count)]
    config = CollageConfig(rate=1.0)

    def plan() -> tuple[Any, Any]:
        structure = pool_structure(records, FRAME, config, seed=1, pool_key="bench")
        return structure, group_instances(structure, records, seed=1, epoch=1, pool_key="bench")

    times = []
    for _ in range(5):
        gc.collect()
        start = time.perf_counter()
        plan()
        times.append(time.perf_counter() - start)
    gc.collect()
    tracemalloc.start()
    kept = plan()
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    header = statistics.median(_header_seconds(p) for p in fx.jpegs + fx.pngs)
    seconds = min(times)
    rows = [
        Row(
            "P3",
            f"pool_structure + group_instances, {count:,} records: seconds",
            "-",
            f"{seconds:.2f} s",
            "-",
            "<= 2 s",
            _yes(seconds <= 2),
        ),
        Row(
            "P3",
            f"plan memory per image ({count:,} records, tracemalloc)",
            "-",
            f"{retained / count:.0f} B kept, {peak / count:.0f} B peak",
            "-",
            "<= 1 KB",
            _yes(peak / count <= 1024),
        ),
    ]
    notes = [
        (
            f"planning reads one header per image beforehand (read_image_size: median {header * 1e6:.0f} us "
            f"per file here, {header * count:.1f} s for {count:,} files from a warm page cache)"
        )
    ]
    return rows, notes


def _header_seconds(path: Path) -> float:
    start = time.perf_counter()
    read_image_size(path)
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------------
# P4: static mode with cached latents / TE outputs vs sd-scripts' cached path (needs SD_SCRIPTS_DIR)
# --------------------------------------------------------------------------------------------------
def bench_cached_batches(folder: Path, fx: Fixtures, rounds: int) -> tuple[Row, str]:
    if not os.environ.get("SD_SCRIPTS_DIR"):
        return Row(
            "P4", "static mode, cached latents + TE outputs: ms/batch", "-", "-", "-", "<= 1.05x", "skipped"
        ), "P4 skipped: set SD_SCRIPTS_DIR and run with the sd-scripts env python"
    sys.path[:0] = [str(Path(os.environ["SD_SCRIPTS_DIR"]).resolve()), str(REPO / "tests" / "sdscripts")]
    import torch

    import fakes

    torch.set_num_threads(1)
    data = folder / "p4"
    images = data / "img"
    images.mkdir(parents=True)
    # One size for all, so both groups batch latents and TE outputs of the same shapes and only the
    # dataset code differs (a static frame is a 1024x1024 image like these).
    for i in range(48):
        Image.open(fx.pngs[i % len(fx.pngs)]).convert("RGB").resize((1024, 1024)).save(images / f"img_{i:03d}.png")
        (images / f"img_{i:03d}.txt").write_text(f"sks, tag{i}, illustration", encoding="utf-8")
    toks = fakes.make_tokenizer_cache(data / "tokenizers")

    def toml(name: str, general: str) -> Path:
        path = data / name
        path.write_text(
            f'[general]\ncaption_extension = ".txt"\n{general}\n[[datasets]]\nresolution = 1024\n'
            f"batch_size = 4\nenable_bucket = true\n  [[datasets.subsets]]\n"
            f'  image_dir = "{images.as_posix()}"\n  num_repeats = 2\n',
            encoding="utf-8",
        )
        return path

    flags = [
        "--cache_latents",
        "--cache_text_encoder_outputs",
        "--network_train_unet_only",
        "--tokenizer_cache_dir",
        str(toks.cache_dir),
        "--output_dir",
        str(data / "out"),
        "--max_data_loader_n_workers",
        "0",
        "--seed",
        "42",
    ]
    train_util = fakes.import_sd("library.train_util")

    def build(config: Path, collage: bool) -> Any:
        argv = ["--dataset_config", str(config), *flags] + (
            ["--dataset_class", "collage_ext.CollageDataset"] if collage else []
        )
        args = fakes.make_args("sdxl", argv)
        trainer = fakes.make_trainer("sdxl")
        fakes.set_pre_dataset_strategies(trainer, args)
        group = train_util.load_arbitrary_dataset(args) if collage else fakes.build_dataset_group(args)
        fakes.set_post_dataset_strategies(trainer, args, group)
        group.set_current_strategies()
        for dataset in group.datasets:
            for info in dataset.image_data.values():  # what sd-scripts' in-memory caches leave behind
                w, h = info.bucket_reso
                info.latents = torch.zeros(4, h // 8, w // 8)
                info.latents_original_size, info.latents_crop_ltrb = (w, h), (0, 0, w, h)
                info.text_encoder_outputs = [
                    np.zeros((77, 768), np.float32),
                    np.zeros((77, 1280), np.float32),
                    np.zeros(1280, np.float32),
                ]
        return group

    with fakes.hub_offline(), fakes.preserve_global_rng():
        with fakes.fresh_strategies():
            plain = build(toml("plain.toml", ""), collage=False)
        with fakes.fresh_strategies():
            static = build(toml("collage.toml", "collage_rate = 1.0"), collage=True)
        # Each dataset keeps the strategies set_current_strategies() gave it; no globals needed now.
        batches = min(len(plain), len(static))
        t = interleaved({"sd": lambda i: plain[i], "ours": lambda i: static[i]}, list(range(batches)), 4 * rounds)
    per_sd, per_ours = t["sd"] / batches, t["ours"] / batches
    frames = sum(1 for d in static.datasets for i in d.image_data.values() if "collage_" in Path(i.absolute_path).name)
    note = (
        f"P4: plain DatasetGroup {len(plain)} batches of 4 sources, CollageDataset (static, collage_rate 1.0) "
        f"{len(static)} batches of 4 frames ({frames} static frames), all 1024x1024; latents 4x128x128 and SDXL "
        f"TE outputs set on every ImageInfo, so __getitem__ reads no file in either; first {batches} batches "
        f"of each, fastest of {4 * rounds} interleaved rounds"
    )
    return Row(
        "P4",
        "static mode, cached latents + TE outputs: __getitem__ ms/batch (batch 4)",
        f"{per_sd * 1000:.3f} ms",
        f"{per_ours * 1000:.3f} ms",
        f"{per_ours / per_sd:.2f}x time",
        "<= 1.05x",
        _yes(per_ours <= 1.05 * per_sd),
    ), note


# --------------------------------------------------------------------------------------------------
def pin_to_one_core(cpu: int | None) -> str:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    with contextlib.suppress(ImportError):
        import cv2

        cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        chosen = allowed[0] if cpu is None else cpu
        os.sched_setaffinity(0, {chosen})
        return f"pinned to CPU {chosen} (os.sched_setaffinity, like taskset -c {chosen}); OpenCV threads 1"
    return "not pinned (no sched_setaffinity here): run under taskset -c 0 or equivalent"


@contextlib.contextmanager
def fixture_folder(keep: str | None) -> Iterator[Path]:
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep)
        return
    with tempfile.TemporaryDirectory(prefix="collage_bench_") as tmp:
        yield Path(tmp)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10, help="fixture files per kind (default 10)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per measurement (default 5)")
    parser.add_argument("--records", type=int, default=100_000, help="synthetic records for planning (P3)")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the first allowed)")
    parser.add_argument("--keep", default=None, help="write fixtures here and keep them (default: a temp folder)")
    parser.add_argument(
        "--quality-files",
        type=int,
        default=3,
        help="files per kind whose PSNR against the float LANCZOS reference is computed (default 3)",
    )
    parser.add_argument("--skip-dataset", action="store_true", help="skip P4 (the sd-scripts DatasetGroup run)")
    args = parser.parse_args(argv)

    pinned = pin_to_one_core(args.cpu)
    sd = sd_functions()
    rows: list[Row] = []
    notes: list[str] = []
    with fixture_folder(args.keep) as folder:
        fx = make_fixtures(folder, args.images)
        cell_rows, cell_notes, measured = bench_cells(fx, sd, args.rounds, args.quality_files)
        rows += cell_rows
        notes += cell_notes
        frame_notes, frame_rows = bench_frame(fx, sd, args.rounds)
        rows += frame_rows
        notes += frame_notes
        plan_rows, plan_notes = bench_planning(args.records, fx)
        rows += plan_rows
        notes += plan_notes
        if not args.skip_dataset:
            row, note = bench_cached_batches(folder, fx, args.rounds)
            rows.append(row)
            notes.append(note)
        sizes = {
            kind: statistics.median(p.stat().st_size for p in paths) / 1e6
            for kind, paths in (("jpeg", fx.jpegs), ("grain", fx.grainy), ("png", fx.pngs), ("big", fx.big_pngs))
        }

    import PIL

    print(
        f"## collage_ext composition benchmark\n\n{platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, Pillow {PIL.__version__}, numpy {np.__version__}; {pinned}."
    )
    print(
        f"sd-scripts path: {sd[2]}. Fixtures: {args.images} files per kind: camera-like 12 MP JPEGs "
        f"({PHOTO.width}x{PHOTO.height}, median {sizes['grain']:.1f} MB), {fx.photo_source} "
        f"(median {sizes['jpeg']:.1f} MB), PIL-drawn PNG illustrations ({ILLUSTRATION.width}x{ILLUSTRATION.height}, "
        f"median {sizes['png']:.1f} MB; {BIG_ILLUSTRATION.width}x{BIG_ILLUSTRATION.height}, median "
        f"{sizes['big']:.1f} MB). Cells: contain into {CELL.width}x{CELL.height}. Per file, the fastest of "
        f"{args.rounds} interleaved rounds; PSNR on the first {args.quality_files} files of each set.\n"
    )
    print("### Per path\n")
    for line in detail_table(measured):
        print(line)
    print("\n### Targets\n")
    print("| target | measure | sd-scripts | collage_ext | ratio | goal | met |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row.target} | {row.measure} | {row.sd} | {row.ours} | {row.ratio} | {row.goal} | {row.met} |")
    print()
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
