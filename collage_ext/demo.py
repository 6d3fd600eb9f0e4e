"""A tiny synthetic kohya-style dataset for the README demo and the tests.

Portraits show a full-height figure, landscapes a horizon that runs edge to edge, so the rendered
collages show the technique's rule at a glance: portraits side by side keep full height,
landscapes stacked keep full width. Everything is drawn with Pillow; nothing is downloaded.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

from .types import Size

_COLORS = {
    "red": (200, 40, 50), "blue": (40, 80, 200), "green": (40, 150, 70), "yellow": (230, 200, 40),
    "purple": (130, 60, 170), "orange": (235, 130, 30), "teal": (30, 150, 150), "pink": (230, 120, 170),
}
_BACKGROUNDS = {"azure": (120, 180, 230), "mint": (170, 225, 200), "sand": (225, 205, 160), "lilac": (200, 180, 230)}


def draw_portrait(size: Size, dress: str, background: str) -> Image.Image:
    """A standing figure spanning the full image height (head to feet)."""
    img = Image.new("RGB", size, _BACKGROUNDS[background])
    d = ImageDraw.Draw(img)
    w, h = size
    head = h // 8
    d.ellipse([w / 2 - head / 2, h * 0.02, w / 2 + head / 2, h * 0.02 + head], fill=(240, 200, 170))
    d.polygon([(w / 2, h * 0.02 + head), (w * 0.22, h * 0.8), (w * 0.78, h * 0.8)], fill=_COLORS[dress])
    d.rectangle([w * 0.40, h * 0.8, w * 0.46, h * 0.99], fill=(60, 40, 30))
    d.rectangle([w * 0.54, h * 0.8, w * 0.60, h * 0.99], fill=(60, 40, 30))
    return img


def draw_landscape(size: Size, flower: str, background: str) -> Image.Image:
    """A field under a sky whose horizon runs the full image width, with a flower in it."""
    img = Image.new("RGB", size, _BACKGROUNDS[background])
    d = ImageDraw.Draw(img)
    w, h = size
    d.rectangle([0, h * 0.6, w, h], fill=(70, 140, 60))
    d.line([(w * 0.7, h * 0.95), (w * 0.7, h * 0.45)], fill=(30, 100, 30), width=max(2, w // 100))
    r = h * 0.12
    d.ellipse([w * 0.7 - r, h * 0.45 - r, w * 0.7 + r, h * 0.45 + r], fill=_COLORS[flower])
    d.ellipse([w * 0.15, h * 0.08, w * 0.15 + h * 0.2, h * 0.28], fill=(250, 230, 120))
    return img


def make_demo_dataset(root: str | Path, count: int = 8, *, seed: int = 0) -> Path:
    """Write ``count`` images with captions into ``root/10_demo`` (kohya ``N_name`` folder) and return it.

    Half are 832x1216 portraits ("1girl, <colour> dress, full body"), half 1216x832 landscapes
    ("scenery, <colour> flower, horizon"); all share the trigger word ``demo_style``.
    """
    rng = random.Random(f"collage-demo:{seed}")
    folder = Path(root) / "10_demo"
    folder.mkdir(parents=True, exist_ok=True)
    colors, backgrounds = sorted(_COLORS), sorted(_BACKGROUNDS)
    for i in range(count):
        color, background = rng.choice(colors), rng.choice(backgrounds)
        if i % 2 == 0:
            img = draw_portrait(Size(832, 1216), color, background)
            caption = f"demo_style, 1girl, {color} dress, full body, {background} background"
        else:
            img = draw_landscape(Size(1216, 832), color, background)
            caption = f"demo_style, scenery, {color} flower, horizon, {background} sky"
        img.save(folder / f"demo_{i:02d}.png")
        (folder / f"demo_{i:02d}.txt").write_text(caption + "\n", encoding="utf-8")
    return folder
