"""The ``collage-ext`` command line (also ``python -m collage_ext``).

Commands:
    demo     generate a small dataset and preview its collage frames (index.html + contact_sheet.png)
    preview  write the exact frames (and captions, masks, token counts) training sees in one epoch
    export   materialise collage frames as a plain kohya folder any trainer can read
    check    report unreadable files, upscaled / low-contrast images, caption overflow, leftovers, steps
    inspect  print the collage settings stored in a LoRA's metadata
    studio   curate the dataset in a local browser page: crops, captions, keep/drop, frames (extra "studio")

Every command that reads a dataset takes the dataset TOML (or a folder of ``N_name`` sub-folders),
``--config TRAIN.toml`` (the training ``--config_file``) and, after ``--``, any sd-scripts options
of the training command line (``-- --seed 42 --cache_latents``), so it sees the run as the trainer
does.

Exit codes: 0 success, 1 runtime error (a file that cannot be read, ``check`` found errors),
2 usage or configuration error. Errors print one ``error: ...`` line; ``--console_log_level DEBUG``
adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from collage_ext.core.config import CollageConfig, parse_size
from collage_ext.core.errors import CollageConfigError, CollageError
from collage_ext.kohya.families import MODEL_CHOICES

if TYPE_CHECKING:
    from collage_ext.plan.framesets import TextEncoder
    from collage_ext.plan.project import Project

logger = logging.getLogger("collage_ext")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _common(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    parser.add_argument(
        "--console_log_level",
        choices=LOG_LEVELS,
        default="INFO" if top else argparse.SUPPRESS,
        help="log level (default INFO); DEBUG also shows tracebacks",
    )


def _dataset_args(parser: argparse.ArgumentParser, *, seed_help: str) -> None:
    parser.add_argument(
        "dataset",
        nargs="?",
        type=Path,
        help="dataset TOML (--dataset_config), or a folder of N_name sub-folders (--train_data_dir); "
        "optional when --config names dataset_config or train_data_dir",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="TRAIN.toml",
        help="the training TOML (--config_file): seed, resolution, caching, collage_* defaults",
    )
    parser.add_argument("--seed", type=int, help=seed_help)
    parser.add_argument(
        "--model",
        choices=MODEL_CHOICES,
        default="auto",
        help="model family whose text encoder budget captions are checked against (default: from "
        "the training arguments, as the trainer picks it: SD3 and Flux/Chroma options mean T5, "
        "else CLIP)",
    )
    _common(parser)


_SEED_HELP = (
    "collage seed; default: the training arguments' --seed, else the seed CollageDataset derives from the "
    "dataset config"
)


def _jobs_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="processes that render / check in parallel (default: the CPUs this process may use, "
        "or COLLAGE_EXT_JOBS); the output is the same bytes for any N",
    )


def setup_parser() -> argparse.ArgumentParser:
    """The argument parser (sd-scripts tools expose the same function name)."""
    parser = argparse.ArgumentParser(
        prog="collage-ext",
        description="Collage training tools for kohya-ss sd-scripts.",
        epilog="sd-scripts options of your training command line can follow after --, e.g. "
        "collage-ext check dataset.toml -- --seed 42 --cache_latents",
    )
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="generate a small dataset and preview its collage frames")
    demo.add_argument("--out", required=True, type=Path, help="output folder")
    demo.add_argument("--count", type=int, default=8, help="number of generated source images (default 8)")
    demo.add_argument(
        "--seed",
        type=int,
        default=None,
        help="collage seed; default: derived from the dataset, as in training without --seed, so "
        "check/preview/training show the same frames",
    )
    demo.add_argument("--epoch", type=int, default=1, help="epoch whose frames are rendered (default 1)")
    demo.add_argument(
        "--frame_size",
        default="1024,1024",
        help="resolution W,H: the area of the content-shaped frames (default 1024,1024)",
    )
    _common(demo)

    preview = sub.add_parser("preview", help="write the exact frames training sees in one epoch, with index.html")
    _dataset_args(preview, seed_help=_SEED_HELP)
    preview.add_argument("--out", required=True, type=Path, help="output folder")
    preview.add_argument(
        "--epoch",
        type=int,
        default=1,
        help="training epoch, counted from 1 as sd-scripts does (default 1; static mode shows every frame)",
    )
    preview.add_argument("--count", type=int, help="write at most this many frames (default: all)")
    _jobs_arg(preview)

    export = sub.add_parser("export", help="write collage frames + captions as a plain kohya folder for any trainer")
    _dataset_args(export, seed_help=_SEED_HELP)
    export.add_argument("--out", required=True, type=Path, help="output folder (new or empty)")
    export.add_argument(
        "--variants",
        type=int,
        help="partner groupings an image's repeats are spread over (default: collage_variants, 4)",
    )
    export.add_argument("--force", action="store_true", help="write into a non-empty --out")
    _jobs_arg(export)

    check = sub.add_parser("check", help="report problems before training; exit 1 on errors")
    _dataset_args(check, seed_help=_SEED_HELP)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--epoch", type=int, default=1, help="epoch whose collage captions are checked (default 1)")
    _jobs_arg(check)

    studio = sub.add_parser(
        "studio",
        help="curate the dataset in the browser: crop by dragging, edit captions with "
        "their token view, keep or drop images, see the frames of any epoch",
    )
    _dataset_args(studio, seed_help=_SEED_HELP)
    studio.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this computer only; another address needs --allow_remote)",
    )
    studio.add_argument(
        "--allow_remote",
        action="store_true",
        help="allow a --host that other computers can reach (the page still needs the printed token)",
    )
    studio.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    studio.add_argument("--no_browser", action="store_true", help="do not open the page in a browser")

    inspect = sub.add_parser("inspect", help="print the collage settings stored in a LoRA's metadata")
    inspect.add_argument("lora", type=Path, help="a .safetensors LoRA trained with collage_ext")
    inspect.add_argument("--json", action="store_true", help="print the settings as JSON")
    _common(inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    trainer_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, trainer_args = argv[:cut], argv[cut + 1 :]
    parser = setup_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, message already printed)
        return int(exc.code) if isinstance(exc.code, int) else 2
    level = args.console_log_level
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", force=True, stream=sys.stderr)
    if trainer_args and args.command in ("demo", "inspect"):
        return _fail(CollageConfigError(f"{args.command} takes no trainer arguments after --"), 2, level)
    commands = {
        "demo": run_demo,
        "preview": run_preview_command,
        "export": run_export_command,
        "check": run_check_command,
        "inspect": run_inspect,
        "studio": run_studio_command,
    }
    try:
        return commands[args.command](args, trainer_args)
    except CollageConfigError as exc:
        return _fail(exc, 2, level)
    except (CollageError, OSError) as exc:
        return _fail(exc, 1, level)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: say so in one line, traceback with DEBUG
        return _fail(exc, 1, level, internal=True)


def _fail(exc: BaseException, code: int, level: str, *, internal: bool = False) -> int:
    if level == "DEBUG":
        logger.error("traceback", exc_info=exc)
    if internal:
        print(
            f"error: internal error {type(exc).__name__}: {exc} (rerun with --console_log_level DEBUG for the "
            "traceback, and please report it)",
            file=sys.stderr,
        )
    else:
        print(f"error: {exc}", file=sys.stderr)
    return code


def _load(
    args: argparse.Namespace, trainer_args: Sequence[str], *, strict: bool, plan: str | None = None
) -> tuple[Project, TextEncoder]:
    from collage_ext.plan.framesets import text_encoder_for
    from collage_ext.plan.project import load_project

    if args.dataset is None and args.config is None and not trainer_args:
        msg = "give a dataset TOML (or a folder of N_name sub-folders), or --config TRAIN.toml with dataset_config"
        raise CollageConfigError(msg)
    if args.config is not None and not args.config.is_file() and not args.config.with_suffix(".toml").is_file():
        raise CollageConfigError(f"--config {args.config} does not exist; give the training TOML (--config_file)")
    project = load_project(
        args.dataset, config_file=args.config, trainer_args=trainer_args, seed=args.seed, strict=strict
    )
    encoder = text_encoder_for(project.run.values, args.model)
    mode = plan or f"mode {project.mode} ({project.mode_why})"
    logger.info(
        f"{project.source}: seed {project.seed} ({project.seed_why}; rerun with --seed {project.seed}); "
        f"{mode}; captions counted for {encoder.label}, {encoder.family.title} ({encoder.why})"
    )
    return project, encoder


def run_preview_command(args: argparse.Namespace, trainer_args: Sequence[str]) -> int:
    """``collage-ext preview``."""
    from collage_ext.commands.preview import run_preview
    from collage_ext.plan.jobs import frames_for
    from collage_ext.plan.project import plan_project

    if args.count is not None and args.count < 1:
        raise CollageConfigError(f"--count must be at least 1, got {args.count}")
    project, encoder = _load(args, trainer_args, strict=True)
    planned = plan_project(project, encoder)
    mode = "static" if project.mode == "static" else "dynamic"
    frameset = frames_for(planned, mode, args.epoch)
    notes = _preview_notes(encoder, mode, args.epoch)
    entries = run_preview(project, frameset, encoder, args.out, count=args.count, notes=notes, jobs_n=_jobs(args))
    warned = sum(1 for e in entries if e.warnings)
    print(
        f"{len(entries)} collage frames{'' if mode == 'static' else f' of epoch {args.epoch}'} written to "
        f"{args.out / 'frames'}; open {args.out / 'index.html'} in a browser"
        + (f" ({warned} frames with caption warnings)" if warned else "")
    )
    return 0


def _preview_notes(encoder: TextEncoder, mode: str, epoch: int) -> list[str]:
    notes = [
        (
            "Frames are shown as CollageDataset hands them to sd-scripts; content-shaped frames already have their "
            "bucket's size (a fixed frame is resized to its bucket); sd-scripts then applies flip/colour augmentation "
            "and processes the caption (shuffle, keep_tokens, dropout) as usual."
        ),
    ]
    if mode == "static":
        notes.append(
            "Static mode: the same frames are trained every epoch (--epoch does not change them); names "
            "match the files in the static cache."
        )
    else:
        notes.append(f"Epoch {epoch} (sd-scripts counts epochs from 1); other epochs pair the images differently.")
    if not encoder.exact:
        notes.append(
            "Token counts are ESTIMATES (no local tokenizer found; install transformers in this environment "
            "or set tokenizer_cache_dir): phrase-repeat positions may differ slightly from training."
        )
    return notes


def _jobs(args: argparse.Namespace) -> int:
    from collage_ext.core.parallel import default_jobs

    try:
        return default_jobs(args.jobs)
    except ValueError as exc:
        raise CollageConfigError(str(exc)) from exc


def run_export_command(args: argparse.Namespace, trainer_args: Sequence[str]) -> int:
    """``collage-ext export``."""
    from collage_ext.commands.export import run_export, training_hint

    project, encoder = _load(
        args, trainer_args, strict=False, plan="static plan (export writes fixed variants, whatever the run's mode)"
    )
    result = run_export(project, encoder, args.out, variants=args.variants, force=args.force, jobs_n=_jobs(args))
    print(training_hint(project, result))
    return 0


def run_check_command(args: argparse.Namespace, trainer_args: Sequence[str]) -> int:
    """``collage-ext check``."""
    from collage_ext.commands.check import run_check
    from collage_ext.commands.measurecache import MeasureCache

    project, encoder = _load(args, trainer_args, strict=False)
    report = run_check(project, encoder, epoch=args.epoch, jobs_n=_jobs(args), cache=MeasureCache())
    if args.json:
        print(json.dumps(report.to_json(), indent=1, ensure_ascii=False))
    else:
        print(report.format_text())
    return report.exit_code


def run_studio_command(args: argparse.Namespace, trainer_args: Sequence[str]) -> int:
    """``collage-ext studio``: serve the curation page until Ctrl+C."""
    from collage_ext.studio import missing_packages

    missing = missing_packages()
    if missing:
        raise CollageConfigError(
            f'the studio needs {", ".join(missing)}: pip install "collage-ext[studio]" (into this environment)'
        )
    from collage_ext.studio.app import check_host, open_in_browser, serve
    from collage_ext.studio.model import Studio

    if args.dataset is None and args.config is None and not trainer_args:
        raise CollageConfigError("give a dataset TOML (or a folder of N_name sub-folders), or --config TRAIN.toml")
    check_host(args.host, args.allow_remote)  # before reading the dataset: the refusal is the first thing said
    studio = Studio(args.dataset, config=args.config, trainer_args=trainer_args, seed=args.seed, model=args.model)
    from collage_ext.core.progress import set_quiet

    set_quiet(True)  # every edit re-plans: no bar or summary line per request in the server's log

    def ready(url: str) -> None:
        print(
            f"collage-ext studio: {studio.project.source}; open {url} (Ctrl+C stops it; the address holds this "
            "session's token: the studio answers nothing without it)",
            flush=True,
        )
        if not args.no_browser:
            open_in_browser(url)

    serve(studio, args.host, args.port, ready=ready, allow_remote=args.allow_remote)
    return 0


def run_inspect(args: argparse.Namespace, trainer_args: Sequence[str]) -> int:
    """``collage-ext inspect``."""
    from collage_ext.commands.lora import collage_settings, format_settings, read_safetensors_metadata

    metadata = read_safetensors_metadata(args.lora)
    blocks = collage_settings(metadata)
    if args.json:
        print(json.dumps({"file": str(args.lora), "collage_ext": blocks}, indent=1, ensure_ascii=False))
    elif blocks:
        print(format_settings(str(args.lora), metadata, blocks))
    if not blocks:
        print(
            f"error: {args.lora} holds no collage_ext settings: it was trained without collage_ext, or its "
            "metadata was stripped (e.g. --no_metadata, or a merge tool)",
            file=sys.stderr,
        )
        return 1
    return 0


def run_demo(args: argparse.Namespace, trainer_args: Sequence[str]) -> int:
    """Generate a demo dataset with its dataset TOML, then preview one epoch of its collage frames."""
    from collage_ext.commands.demo import make_demo_dataset
    from collage_ext.commands.preview import run_preview
    from collage_ext.plan.framesets import text_encoder_for
    from collage_ext.plan.jobs import frames_for
    from collage_ext.plan.project import load_project, plan_project

    if args.count < 2:
        raise CollageConfigError(f"--count must be at least 2, got {args.count}")
    try:
        size = parse_size(args.frame_size)
    except ValueError as exc:
        raise CollageConfigError(f"--frame_size {exc}, got {args.frame_size!r}; e.g. --frame_size 1024,1024") from exc
    if size is None:
        raise CollageConfigError("--frame_size must be a size like 1024,1024, got ''")
    folder = make_demo_dataset(args.out / "dataset", args.count)
    toml_path = args.out / "dataset" / "dataset.toml"
    toml_path.write_text(
        _DEMO_TOML.format(w=size.width, h=size.height, max_reso=2 * max(size), image_dir=folder.resolve().as_posix()),
        encoding="utf-8",
    )
    project = load_project(toml_path, seed=args.seed)
    encoder = text_encoder_for({}, "sdxl")
    frameset = frames_for(plan_project(project, encoder), "dynamic", args.epoch)
    entries = run_preview(
        project,
        frameset,
        encoder,
        args.out,
        count=None,
        title="collage-ext demo",
        notes=_preview_notes(encoder, "dynamic", args.epoch),
    )
    for entry in entries:
        logger.info("%s  %-4s %s", entry.name, entry.layout, entry.caption)
    print(
        f"{args.count} source images -> {len(entries)} collage frames in {args.out / 'frames'}\n"
        f"open {args.out / 'index.html'} in a browser (or {args.out / 'contact_sheet.png'}); "
        f"dataset TOML: {toml_path} (collage seed {project.seed}: {project.seed_why})"
    )
    return 0


_DEMO_TOML = """\
# collage-ext demo dataset: try `collage-ext check` / `preview` / `export` on it.
[general]
caption_extension = ".txt"
keep_tokens = 1                   # the trigger word demo_style stays first
collage_caption_merge = "tags"    # collage is on by default (collage_rate = 1.0)

[[datasets]]
resolution = [{w}, {h}]
batch_size = 1
enable_bucket = true              # content-shaped frames: each collage gets the bucket its arrangement fits
max_bucket_reso = {max_reso}

  [[datasets.subsets]]
  image_dir = "{image_dir}"
  num_repeats = 1
"""


def write_contact_sheet(frames: Sequence[tuple[Path, str]], out: Path, thumb: int = 256) -> Path:
    """One PNG with every frame as a labelled thumbnail (kept here for callers of the earlier CLI)."""
    from collage_ext.commands.preview import write_contact_sheet as write

    return write(frames, out, thumb)


def default_config() -> CollageConfig:
    """The settings a training subset without any collage key gets (collage on: ``collage_rate = 1``)."""
    return CollageConfig()
