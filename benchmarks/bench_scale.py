"""Start-up cost against the size of the input: many small images, huge ``num_repeats``.

    SD_SCRIPTS_DIR=/path/to/sd-scripts /path/to/sd-venv/bin/python benchmarks/bench_scale.py

Each case builds the dataset through the real sd-scripts loader (``load_arbitrary_dataset`` with
``--dataset_class collage_ext.CollageDataset``, fakes from tests/sdscripts) in a fresh process and
reports the construction time, the first ``__getitem__`` of an epoch (which plans that epoch's
groups), and how much the peak RSS grew while building (after imports); ``plain`` is the same
folder without collage keys (sd-scripts alone).
Images are generated into a temporary folder (128x128 JPEGs); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, resource, sys, time, warnings
sys.path[:0] = [os.environ["SD_SCRIPTS_DIR"], sys.argv[1], sys.argv[1] + "/tests/sdscripts"]
warnings.simplefilter("ignore")
import fakes
from pathlib import Path
tmp, config, toks = Path(sys.argv[2]), sys.argv[3], sys.argv[4]
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
argv = ["--dataset_class", "collage_ext.CollageDataset", "--tokenizer_cache_dir", toks, "--output_dir",
        str(tmp / "out"), "--max_data_loader_n_workers", "0", "--seed", "42", "--dataset_config", config]
args = fakes.make_args("sdxl", argv, strict=False)
start = time.perf_counter()
with fakes.preserve_global_rng():
    group, _ = fakes.load_with_dataset_class("sdxl", args)
built = time.perf_counter() - start
start = time.perf_counter()
with fakes.preserve_global_rng():
    group.set_current_epoch(2)
    group[0]
first = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"build_s": built, "first_item_s": first, "samples": len(group), "rss_mib": rss / 1024,
                  "rss_growth_mib": (rss - rss0) / 1024}))
"""


def write_folder(folder: Path, count: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    base = Image.linear_gradient("L").resize((128, 128)).convert("RGB")
    for i in range(count):
        path = folder / f"img_{i:05d}.jpg"
        if not path.exists():
            base.rotate(i % 360).save(path, quality=80)
            (folder / f"img_{i:05d}.txt").write_text(f"sks, id{i:05d}\n", encoding="utf-8")


def write_config(tmp: Path, folder: Path, repeats: int, collage: bool) -> Path:
    path = tmp / f"dataset_{folder.name}_{repeats}_{int(collage)}.toml"
    general = 'collage_rate = 1.0\ncollage_on_error = "raise"\n' if collage else ""
    path.write_text(
        f'[general]\ncaption_extension = ".txt"\n{general}[[datasets]]\nresolution = 256\n'
        f'batch_size = 1\nenable_bucket = true\n  [[datasets.subsets]]\n  image_dir = "{folder}"\n'
        f"  num_repeats = {repeats}\n",
        encoding="utf-8",
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 2500, 5000])
    parser.add_argument("--repeats", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeat-images", type=int, default=20)
    options = parser.parse_args()
    sys.path[:0] = [str(REPO / "tests" / "sdscripts")]
    import fakes

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        toks = fakes.make_tokenizer_cache(tmp / "toks").cache_dir
        cases = [(f"{n}_images", n, 1) for n in options.images]
        cases += [(f"{r}_name", options.repeat_images, r) for r in options.repeats]
        print(
            "| case | images x repeats | samples | plain build s | collage build s | first item of an epoch s "
            "| plain RSS growth MiB | collage RSS growth MiB |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for label, count, repeats in cases:
            folder = tmp / label
            write_folder(folder, count)
            row = {}
            for collage in (False, True):
                config = write_config(tmp, folder, repeats, collage)
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, str(REPO), str(tmp / label), str(config), str(toks)],
                    capture_output=True,
                    text=True,
                    check=True,
                    env={**os.environ, "PYTHONWARNINGS": "ignore"},
                )
                row[collage] = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"| `{label}` | {count} x {repeats} | {row[True]['samples']} | {row[False]['build_s']:.2f} "
                f"| {row[True]['build_s']:.2f} | {row[True]['first_item_s']:.3f} "
                f"| {row[False]['rss_growth_mib']:.1f} | {row[True]['rss_growth_mib']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
