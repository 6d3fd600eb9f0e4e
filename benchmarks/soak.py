"""Soak test: N DataLoader steps with workers over a 200-image collage dataset, through real sd-scripts.

Reports resident memory (main process + workers) and open file descriptors every 100 steps, and
the RSS slope after the first epoch. Run with the sd-scripts environment:

    SD_SCRIPTS_DIR=/path/to/sd-scripts /path/to/sd-venv/bin/python benchmarks/soak.py --steps 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from multiprocessing import Value
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [os.environ.get("SD_SCRIPTS_DIR", ""), str(HERE.parent / "tests" / "sdscripts"), str(HERE.parent)]


def process_tree_stats() -> tuple[float, int]:
    """(RSS in MiB, open fds) summed over this process and its children (DataLoader workers)."""
    pids = [os.getpid()]
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        children = (task / "children").read_text().split()
        pids.extend(int(c) for c in children)
    rss = fds = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return rss / 1024, fds


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope (per step) of (step, value) points."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points) or 1.0
    return sum((p[0] - mx) * (p[1] - my) for p in points) / den


def run(steps: int, workers: int, images: int, root: Path) -> dict[str, object]:
    """Build the dataset like train_network.py and iterate; returns the measurements."""
    import torch

    import fakes

    folder = root / "img"
    # Portraits and landscapes near the 256 px frame: the scale rule (issue 18) lets them share frames (smaller
    # sources would each need > 1.5x magnification and all train single, and nothing would be composed).
    sizes = [(176 + (i % 3) * 8, 256) if i % 2 else (256, 176 + (i % 3) * 8) for i in range(images)]
    fakes.write_dreambooth_dir(root, subdir="img", sizes=sizes, captions=[f"sks, id{i:03d}" for i in range(images)])
    config = root / "dataset.toml"
    config.write_text(
        f'[general]\ncaption_extension = ".txt"\ncollage_rate = 0.8\n[[datasets]]\nresolution = 256\n'
        f'batch_size = 1\nenable_bucket = true\n  [[datasets.subsets]]\n  image_dir = "{folder}"\n'
    )
    toks = fakes.make_tokenizer_cache(root / "tok")
    args = fakes.make_args(
        "sdxl",
        [
            "--dataset_config",
            str(config),
            "--dataset_class",
            "collage_ext.CollageDataset",
            "--tokenizer_cache_dir",
            str(toks.cache_dir),
            "--seed",
            "1",
        ],
    )
    train_util = fakes.import_sd("library.train_util")
    with fakes.hub_offline():
        group, _ = fakes.load_with_dataset_class("sdxl", args)
    epoch, step = Value("i", 0), Value("i", 0)
    collator = train_util.collator_class(epoch, step, group if workers == 0 else None)
    loader = torch.utils.data.DataLoader(
        group, batch_size=1, shuffle=True, collate_fn=collator, num_workers=workers, persistent_workers=workers > 0
    )
    samples: list[tuple[int, float, int]] = []
    done, epoch_len = 0, len(group)
    while done < steps:
        epoch.value += 1
        for _batch in loader:
            done += 1
            step.value = done
            if done % 100 == 0:
                rss, fds = process_tree_stats()
                samples.append((done, rss, fds))
            if done >= steps:
                break
    settled = [(s, r) for s, r, _ in samples if s > epoch_len]
    return {
        "steps": done,
        "epoch_len": epoch_len,
        "samples": samples,
        "rss_slope_mib_per_1000_steps": 1000 * slope(settled) if len(settled) > 1 else 0.0,
        "fds": [f for _, _, f in samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.steps, args.workers, args.images, Path(tmp))
    fds: list[int] = result["fds"]  # type: ignore[assignment]
    print("| step | RSS MiB (main + workers) | open fds |\n| --- | --- | --- |")
    for s, rss, fds in result["samples"]:  # type: ignore[union-attr]
        print(f"| {s} | {rss:.1f} | {fds} |")
    print(
        f"\n{result['steps']} steps ({result['epoch_len']} per epoch), {args.workers} workers: RSS slope after the "
        f"first epoch {result['rss_slope_mib_per_1000_steps']:+.2f} MiB / 1000 steps; open fds min {min(fds)} "
        f"max {max(fds)} (first half max {max(fds[: len(fds) // 2])}, second half max {max(fds[len(fds) // 2 :])})"
    )


if __name__ == "__main__":
    main()
