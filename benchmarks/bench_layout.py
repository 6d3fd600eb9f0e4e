"""How well collage frames keep the technique's scale rule, on real photos (issue 10).

Builds a photo set from the pictures scikit-image and scikit-learn ship (nothing is downloaded),
cropped to 2:3, 3:2, 1:1, 3:4, 4:3, 9:16 and 16:9, writes a dataset TOML per configuration and
plans epoch 1 through the CLI's own path (``datasets.load_project`` -> ``framesets.plan_project``
-> ``frames_for``), exactly the frames ``CollageDataset`` would feed sd-scripts. Per configuration
it prints mean and minimum fill, the share of sources spanning >= 0.95 of their frame, images per
frame and the padding share, as a markdown table.

    python benchmarks/bench_layout.py                 # the table
    python benchmarks/bench_layout.py --keep photos   # keep the photo set (e.g. for `collage-ext preview`)

Needs ``scikit-image`` and ``scikit-learn`` (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collage_ext.datasets import load_project  # noqa: E402
from collage_ext.fit import plan_fit  # noqa: E402
from collage_ext.framesets import frames_for, plan_project, text_encoder_for  # noqa: E402

ASPECTS: tuple[tuple[int, int], ...] = ((2, 3), (3, 2), (1, 1), (3, 4), (4, 3), (9, 16), (16, 9))


def base_photos() -> Iterator[tuple[str, np.ndarray]]:
    """The colour and greyscale photographs shipped with scikit-image and scikit-learn."""
    import skimage.data as data
    from sklearn.datasets import load_sample_images

    for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                 "camera", "coins", "moon", "clock"):
        image = getattr(data, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=2)
        yield name, image[:, :, :3]
    sample = load_sample_images()
    for name, image in zip(("china", "flower"), sample.images):
        yield name, image


def write_photos(folder: Path, *, jitter: float = 0.0, seed: int = 0) -> int:
    """Crop every base photo to every aspect, resize to 1-2 MP, save as JPEG or PNG with a caption."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for name, pixels in base_photos():
        image = Image.fromarray(pixels)
        for w, h in ASPECTS:
            aspect = w / h * (1 + rng.uniform(-jitter, jitter))
            width, height = image.size
            if width / height > aspect:
                crop_w, crop_h = round(height * aspect), height
            else:
                crop_w, crop_h = width, round(width / aspect)
            left = rng.randint(0, width - crop_w)
            top = rng.randint(0, height - crop_h)
            crop = image.crop((left, top, left + crop_w, top + crop_h))
            long_side = rng.choice((1152, 1216, 1344, 1536))
            scale = long_side / max(crop.size)
            crop = crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.Resampling.LANCZOS)
            stem = f"{name}_{w}x{h}"
            if count % 2:
                crop.save(folder / f"{stem}.jpg", quality=92)
            else:
                crop.save(folder / f"{stem}.png")
            (folder / f"{stem}.txt").write_text(f"photo, {name}\n", encoding="utf-8")
            count += 1
    return count


@dataclass(frozen=True)
class Case:
    """One configuration of the table."""

    label: str
    dataset: str  # lines for the [[datasets]] table
    general: str = ""


CASES = (
    Case("(a) defaults, enable_bucket, max_bucket_reso = 2048", "enable_bucket = true\nmax_bucket_reso = 2048"),
    Case("(a) defaults, enable_bucket (sd-scripts' max_bucket_reso = 1024)", "enable_bucket = true"),
    Case("(b) fixed 1024x1024 frame, contain", "", 'collage_frame_size = "1024,1024"'),
    Case("(c) fixed 1024x1024 frame, cover", "", 'collage_frame_size = "1024,1024"\ncollage_fit_mode = "cover"'),
    Case("(d) before this change: fixed 1024x1024, contain, all layouts", "",
         'collage_frame_size = "1024,1024"\ncollage_min_span = 0.0'),
)


def measure(folder: Path, case: Case, work: Path) -> dict[str, float]:
    """Plan epoch 1 of ``folder`` under ``case`` and sum up its frame statistics."""
    toml = work / "dataset.toml"
    toml.write_text(f'[general]\ncaption_extension = ".txt"\n{case.general}\n\n[[datasets]]\nresolution = 1024\n'
                    f'{case.dataset}\n\n  [[datasets.subsets]]\n  image_dir = "{folder.as_posix()}"\n',
                    encoding="utf-8")
    project = load_project(toml, seed=1)
    encoder = text_encoder_for({}, "sdxl")
    frameset = frames_for(plan_project(project, encoder), "dynamic", 1)
    summary = frameset.summary()
    spans = [span for j in frameset.jobs for span in j.stats.spans]
    kept = []  # share of each source's picture that is visible (cover crops, contain keeps all)
    for job in frameset.jobs:
        for cell, index in zip(job.params.layout.cells, job.params.layout.order):
            source = job.sources[index]
            box = plan_fit(source.size, cell.size, job.planned.subset.config.fit_mode, source.crop).src_box
            kept.append(box.width * box.height / (source.size.width * source.size.height))
    pad = sum((1 - j.stats.fill) * j.params.layout.frame.area for j in frameset.jobs)
    area = sum(j.params.layout.frame.area for j in frameset.jobs)
    mean_area = area / len(frameset.jobs) if frameset.jobs else 0
    return {"frames": summary.frames, "singles": summary.singles, "mean_fill": summary.mean_fill,
            "min_fill": summary.fill_min,
            "span": sum(1 for s in spans if s >= 0.95 - 1e-9) / len(spans) if spans else 1.0,
            "kept": sum(kept) / len(kept) if kept else 1.0, "ipf": summary.images_per_frame,
            "pad": pad / area if area else 0.0, "mp": mean_area / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the photo set here and keep it")
    parser.add_argument("--jitter", type=float, default=0.0, help="vary each crop's aspect by up to this share")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.keep or Path(tmp) / "photos").resolve()
        count = write_photos(folder, jitter=args.jitter)
        print(f"{count} photos ({', '.join(f'{w}:{h}' for w, h in ASPECTS)}), 1-2 MP, JPEG and PNG"
              + (f", aspects jittered by up to {args.jitter:.0%}" if args.jitter else "") + "\n")
        print("| configuration | collage frames | single | mean fill | min fill | sources at span >= 0.95 "
              "| picture kept | images per frame | padding share | mean frame MP |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for case in CASES:
            r = measure(folder, case, Path(tmp))
            print(f"| {case.label} | {r['frames']:.0f} | {r['singles']:.0f} | {r['mean_fill']:.3f} | "
                  f"{r['min_fill']:.3f} | {r['span']:.1%} | {r['kept']:.1%} | {r['ipf']:.2f} | {r['pad']:.1%} | {r['mp']:.2f} |")


if __name__ == "__main__":
    main()
