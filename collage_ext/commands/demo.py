"""A tiny synthetic kohya-style dataset for the README demo and the tests.

Portraits show a full-height figure, landscapes a horizon that runs edge to edge, so the rendered
collages show the technique's rule at a glance: portraits side by side keep full height,
landscapes stacked keep full width. Everything is drawn with Pillow; nothing is downloaded.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

from collage_ext.core.types import Size

_COLORS = {
    "red": (200, 40, 50),
    "blue": (40, 80, 200),
    "green": (40, 150, 70),
    "yellow": (230, 200, 40),
    "purple": (130, 60, 170),
    "orange": (235, 130, 30),
    "teal": (30, 150, 150),
    "pink": (230, 120, 170),
}
_BACKGROUNDS = {"azure": (120, 180, 230), "mint": (170, 225, 200), "sand": (225, 205, 160), "lilac": (200, 180, 230)}


def draw_portrait(size: Size, dress: str, background: str, shift: float = 0.0) -> Image.Image:
    """A standing figure spanning the full image height (head to feet); ``shift`` moves it sideways (-1..1)."""
    img = Image.new("RGB", size, _BACKGROUNDS[background])
    d = ImageDraw.Draw(img)
    w, h = size
    head = h // 8
    x = w / 2 + shift * w * 0.18
    d.ellipse([x - head / 2, h * 0.02, x + head / 2, h * 0.02 + head], fill=(240, 200, 170))
    d.polygon([(x, h * 0.02 + head), (x - w * 0.28, h * 0.8), (x + w * 0.28, h * 0.8)], fill=_COLORS[dress])
    d.rectangle([x - w * 0.10, h * 0.8, x - w * 0.04, h * 0.99], fill=(60, 40, 30))
    d.rectangle([x + w * 0.04, h * 0.8, x + w * 0.10, h * 0.99], fill=(60, 40, 30))
    return img


def draw_landscape(size: Size, flower: str, background: str, shift: float = 0.0) -> Image.Image:
    """A field under a sky whose horizon runs the full image width, with a flower in it (moved by ``shift``)."""
    img = Image.new("RGB", size, _BACKGROUNDS[background])
    d = ImageDraw.Draw(img)
    w, h = size
    d.rectangle([0, h * 0.6, w, h], fill=(70, 140, 60))
    fx = w * (0.7 + 0.2 * shift)
    d.line([(fx, h * 0.95), (fx, h * 0.45)], fill=(30, 100, 30), width=max(2, w // 100))
    r = h * 0.12
    d.ellipse([fx - r, h * 0.45 - r, fx + r, h * 0.45 + r], fill=_COLORS[flower])
    sx = w * (0.15 - 0.1 * shift)
    d.ellipse([sx, h * 0.08, sx + h * 0.2, h * 0.28], fill=(250, 230, 120))
    return img


#: The demo's image folder: ``1_demo`` (one repeat, as ``num_repeats = 1`` in the demo's dataset TOML).
DEMO_FOLDER = "1_demo"


def make_demo_dataset(root: str | Path, count: int = 8, *, seed: int = 0) -> Path:
    """Write ``count`` images with captions into ``root/1_demo`` (kohya ``N_name`` folder) and return it.

    Half are 832x1216 portraits ("1girl, <colour> dress, full body"), half 1216x832 landscapes
    ("scenery, <colour> flower, horizon"); all share the trigger word ``demo_style``. No two images
    are alike (two equal ones side by side would look like one seamless picture): each orientation
    walks the 32 colour/background pairs in a shuffled order, and later rounds move the subject.
    Images of an earlier demo in the folder (``demo_*.png`` / ``.txt``) are removed first, so
    ``--count`` is what the folder holds.
    """
    rng = random.Random(f"collage-demo:{seed}")
    folder = Path(root) / DEMO_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("demo_*.png"), *folder.glob("demo_*.txt")]:
        old.unlink()
    pairs = [(c, b) for c in sorted(_COLORS) for b in sorted(_BACKGROUNDS)]
    orders = [rng.sample(pairs, len(pairs)), rng.sample(pairs, len(pairs))]
    for i in range(count):
        kind, n = i % 2, i // 2
        color, background = orders[kind][n % len(pairs)]
        round_ = n // len(pairs)
        shift = 0.0 if round_ == 0 else ((round_ * 0.618034) % 1.0) * 2 - 1
        if kind == 0:
            img = draw_portrait(Size(832, 1216), color, background, shift)
            caption = f"demo_style, 1girl, {color} dress, full body, {background} background"
        else:
            img = draw_landscape(Size(1216, 832), color, background, shift)
            caption = f"demo_style, scenery, {color} flower, horizon, {background} sky"
        img.save(folder / f"demo_{i:02d}.png")
        (folder / f"demo_{i:02d}.txt").write_text(caption + "\n", encoding="utf-8")
    return folder
