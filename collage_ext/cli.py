"""The ``collage-ext`` command line.

Exit codes: 0 success, 1 runtime error (a file that cannot be read...), 2 usage or configuration
error. Errors print one ``error: ...`` line; ``--console_log_level DEBUG`` adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from PIL import Image, ImageDraw

from .captions import CaptionGrammar
from .collage import Collage
from .config import CollageConfig, resolve_config
from .demo import make_demo_dataset
from .errors import CollageConfigError, CollageError
from .pool import Pool, scan_folder
from .types import Size

logger = logging.getLogger("collage_ext")
T = TypeVar("T")


def progress(items: Sequence[T], desc: str) -> Iterable[T]:
    """A tqdm progress bar when tqdm is installed (it is in every kohya venv), else the plain items."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a test dependency
        return items
    return tqdm(items, desc=desc, unit="frame", disable=len(items) < 4)


def setup_parser() -> argparse.ArgumentParser:
    """The argument parser (sd-scripts tools expose the same function name)."""
    parser = argparse.ArgumentParser(prog="collage-ext", description="Collage training tools for kohya-ss sd-scripts.")
    parser.add_argument("--console_log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log level; DEBUG also shows tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="generate a small dataset and render its collage frames to a folder")
    demo.add_argument("--out", required=True, type=Path, help="output folder")
    demo.add_argument("--count", type=int, default=8, help="number of generated source images (default 8)")
    demo.add_argument("--seed", type=int, default=0, help="seed for the frame plan (default 0)")
    demo.add_argument("--epoch", type=int, default=1, help="epoch whose frames are rendered (default 1)")
    demo.add_argument("--frame_size", default="1024,1024", help="frame size W,H (default 1024,1024)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = setup_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.console_log_level, format="%(levelname)s %(message)s", force=True)
    try:
        if args.command == "demo":
            return run_demo(args)
    except CollageConfigError as exc:
        return _fail(exc, 2, args.console_log_level)
    except (CollageError, OSError) as exc:
        return _fail(exc, 1, args.console_log_level)
    return 2  # pragma: no cover - argparse rejects unknown commands


def _fail(exc: BaseException, code: int, level: str) -> int:
    if level == "DEBUG":
        logger.exception("traceback")
    print(f"error: {exc}", file=sys.stderr)
    return code


def run_demo(args: argparse.Namespace) -> int:
    """Generate a demo dataset, plan one epoch and render every collage frame with its caption."""
    if args.count < 2:
        raise CollageConfigError(f"--count must be at least 2, got {args.count}")
    config = resolve_config([({"collage_rate": 1.0, "collage_frame_size": args.frame_size,
                               "collage_caption_merge": "tags"}, "demo")])
    frame = config.frame_size or Size(1024, 1024)
    folder = make_demo_dataset(args.out / "dataset", args.count, seed=args.seed)
    sources = scan_folder(folder)
    pool = Pool(key=folder.name, sources=sources, config=config, frame=frame, seed=args.seed)
    collage = Collage(config, frame, grammar=CaptionGrammar(keep_tokens=1))  # the trigger word leads, once
    frames_dir = args.out / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, str]] = []
    groups = [g for g in pool.frames(args.epoch) if len(g) > 1]
    for n, group in enumerate(progress(groups, "rendering collages")):
        result = collage([sources[i] for i in group], seed=args.seed, epoch=args.epoch)
        path = frames_dir / f"frame_{n:03d}.png"
        Image.fromarray(result.image).save(path)
        path.with_suffix(".txt").write_text(result.caption + "\n", encoding="utf-8")
        written.append((path, result.params.layout.name))
        logger.info("%s  %-4s %s", path.name, result.params.layout.name, result.caption)
    sheet = write_contact_sheet(written, args.out / "contact_sheet.png")
    logger.info("%d source images -> %d collage frames in %s; overview: %s", len(sources), len(written),
                frames_dir, sheet)
    return 0


def write_contact_sheet(frames: Sequence[tuple[Path, str]], out: Path, thumb: int = 256) -> Path:
    """One PNG with every frame as a labelled thumbnail: the quickest way to eyeball a plan."""
    cols = min(4, max(1, len(frames)))
    rows = max(1, -(-len(frames) // cols))
    label = 18
    sheet = Image.new("RGB", (cols * (thumb + 8) + 8, rows * (thumb + label + 8) + 8), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for n, (path, name) in enumerate(frames):
        x, y = 8 + (n % cols) * (thumb + 8), 8 + (n // cols) * (thumb + label + 8)
        with Image.open(path) as img:
            img.thumbnail((thumb, thumb))
            sheet.paste(img, (x, y))
        draw.text((x, y + thumb + 3), f"{path.stem}  {name}", fill=(0, 0, 0))
    sheet.save(out)
    return out


def default_config() -> CollageConfig:
    """The settings a dataset without any collage key gets (plain sd-scripts behaviour)."""
    return CollageConfig()
