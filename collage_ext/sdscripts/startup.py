"""What only the trainer's start-up needs: the run's arguments, caption-file checks, the summary block.

torch-free (it names nothing of sd-scripts; ``seams`` hands the trainer's namespace over), but only
``CollageDataset`` uses it: the CLI reads its arguments itself (``datasets.build_run``) and reports
caption files as findings (``datasets``) instead of stopping.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageInputError
from collage_ext.kohya.caption_files import caption_extension, first_line_empty_message
from collage_ext.kohya.runargs import RunArgs, explicit_keys, parse_argv
from collage_ext.plan.run import RunSettings
from collage_ext.sdscripts import seams

logger = logging.getLogger(__name__)


def run_arguments(argv: Sequence[str] | None = None) -> RunArgs:
    """The training run's arguments, recovered once inside the ``--dataset_class`` constructor.

    sd-scripts passes the dataset class no ``args``: ``seams.trainer_namespace`` reads them where
    sd-scripts holds them (the one documented place). Which options the user set (``--seed``
    above all; the trainer fills a random seed in before the dataset is built) is read from the
    command line and ``--config_file`` as sd-scripts read them. Without the namespace (a wrapper
    that builds the dataset itself), the arguments are rebuilt from ``sys.argv``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    found = seams.trainer_namespace()
    if found is None:
        return parse_argv(argv)
    namespace, where = found
    values = dict(vars(namespace))
    return RunArgs(
        namespace, values, explicit_keys(argv, values.get("config_file")), f"the trainer's arguments ({where})"
    )


def check_caption_files(kohya_config: dict[str, Any], run: RunArgs) -> None:
    """Every caption file sd-scripts will read must be UTF-8; name the first one that is not.

    sd-scripts raises a bare ``UnicodeDecodeError`` from deep inside its dataset constructor; this
    reports the file and the fix instead, before any model loads.
    """
    general = kohya_config.get("general", {}) or {}
    for dataset in kohya_config.get("datasets", []) or []:
        for subset in dataset.get("subsets", []) or []:
            image_dir = subset.get("image_dir")
            if not image_dir or subset.get("metadata_file") or not Path(image_dir).is_dir():
                continue
            extension = caption_extension(kohya_config, dataset, subset, run)
            wildcard = next(
                (
                    level["enable_wildcard"]
                    for level in (subset, dataset, general)
                    if level.get("enable_wildcard") is not None
                ),
                False,
            )
            for path in sorted(Path(image_dir).glob(f"*{extension}")):
                try:
                    text = path.read_bytes().decode("utf-8")
                except UnicodeDecodeError as exc:
                    msg = (
                        f"caption file {path} is not UTF-8 (byte {exc.start}: {exc.reason}); "
                        "re-save it as UTF-8 (most editors: Save As -> Encoding UTF-8)"
                    )
                    raise CollageInputError(msg) from exc
                if not text.strip():  # sd-scripts asserts on these deep inside its dataset constructor
                    msg = (
                        f"caption file {path} is empty; write a caption, or delete the file so the image "
                        "uses the subset's class_tokens"
                    )
                    raise CollageInputError(msg)
                if not wildcard and not text.lstrip("\ufeff").splitlines()[0].strip():
                    logger.warning(f"collage_ext: {first_line_empty_message(path)}")


def default_rate_note(user_config: Any, defaults: Any = None) -> str | None:
    """The one start-up line saying collage is on by default, when no level sets ``collage_rate``."""

    def sets_rate(value: Any) -> bool:
        if isinstance(value, dict):
            return "collage_rate" in value or any(sets_rate(v) for v in value.values())
        if isinstance(value, list):
            return any(sets_rate(v) for v in value)
        return False

    if sets_rate(user_config) or sets_rate(defaults or {}):
        return None
    return (
        "collage is on by default: collage_rate = 1.0 for every training subset (regularisation subsets stay "
        "single); set collage_rate = 0 for plain sd-scripts behaviour"
    )


def _stats_text(stats: dict[str, Any]) -> str:
    if not stats.get("collage_frames"):
        return "no collage frames"
    return (
        f"mean fill {stats['mean_fill']:.2f} (min {stats['min_fill']:.2f}), {stats['span_share']:.0%} of sources "
        f"span >= {stats['min_span']:g} of the frame, {stats['images_per_frame']:.2f} images/frame"
        + (" (sampled)" if stats.get("sampled") else "")
    )


def log_summary(
    datasets: Sequence[Any], settings: RunSettings, configs: Sequence[CollageConfig], default_note: str | None = None
) -> None:
    """One INFO block: images per subset, frames per epoch, layouts, mode and why, seed, cache dir."""
    lines = [f"collage_ext: mode {settings.mode} ({settings.mode_why}); seed {settings.seed} ({settings.seed_why})"]
    if default_note:
        lines.append(f"  {default_note}")
    for d, dataset in enumerate(datasets):
        for entry in getattr(dataset, "_collage_info", []):
            options = entry["settings"]
            lines.append(
                f"  [dataset {d} subset {entry['subset']}] {entry['image_dir']}: {entry['images']} images -> "
                f"{entry['frames_per_epoch']} samples/epoch ({entry['collage_frames']} collage frames, "
                f"{entry['single_samples']} single), rate {options['collage_rate']}, "
                f"{options['collage_min_images']}-{options['collage_max_images']} images/frame, "
                f"layouts {','.join(options['collage_layouts'])}, fit {options['collage_fit_mode']}"
            )
            for note in entry.get("frames", []):
                lines.append(f"    {note}")
            if entry.get("stats"):
                lines.append(f"    epoch 1: {_stats_text(entry['stats'])}")
    if settings.mode == "static":
        first = next((c for c in configs if c.cache_dir), CollageConfig(rate=0.0))  # as run.static_cache_dir
        lines.append(f"  static frames and their caches: {settings.cache_dir(first)}")
    logger.info("\n".join(lines))
