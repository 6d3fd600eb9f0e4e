"""Run-level decisions (mode, seed) and the one start-up log block."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageConfigError
from collage_ext.kohya.runargs import RunArgs

logger = logging.getLogger(__name__)


def static_cache_dir(configs: Sequence[CollageConfig], run: RunArgs) -> Path:
    """Where static frames (and so sd-scripts' npz caches) go: never a source folder."""
    explicit = next((c.cache_dir for c in configs if c.cache_dir), None)
    if explicit:
        return Path(explicit)
    if run.get("output_dir"):
        return Path(run.get("output_dir")) / "collage_cache"
    return Path.home() / ".cache" / "collage_ext"


def refuse_cache_in_image_folders(configs: Sequence[CollageConfig], run: RunArgs, kohya_config: dict[str, Any]) -> None:
    """Stop when a static cache folder is an image folder of the dataset, or inside one.

    sd-scripts lists every image of a folder: the frames written there would come back as training
    images (captionless, doubling the samples) in the next run. Paths are compared after resolving
    ``..`` and symlinks, so ``<image_dir>/../<same folder>`` is caught too.

    Raises:
        CollageConfigError: naming the cache folder, the image folder and the fix.
    """
    folders = {os.path.realpath(str(s["image_dir"])): str(s["image_dir"])
               for d in kohya_config.get("datasets") or [] for s in (d.get("subsets") or []) if s.get("image_dir")}
    for config in configs:
        cache = static_cache_dir([config], run)
        real = os.path.realpath(cache)
        for folder, written in folders.items():
            if real == folder or real.startswith(folder.rstrip(os.sep) + os.sep):
                origin = ("collage_cache_dir" if config.cache_dir else
                          "the default collage cache folder, <output_dir>/collage_cache,")
                suggest = Path(folder).parent / f"{Path(folder).name}_collage_cache"
                msg = (f"{origin} {cache} is {'the' if real == folder else 'inside the'} image folder {written}: the "
                       "static frames written there would be read back as training images by the next run "
                       "(captionless, doubling the samples); set collage_cache_dir to a folder outside every image "
                       f'folder, e.g. collage_cache_dir = "{suggest.as_posix()}"')
                raise CollageConfigError(msg)


def resolve_mode(configs: Sequence[CollageConfig], run: RunArgs) -> tuple[str, str]:
    """Pick dynamic or static for the run and say why; reject dynamic frames with sd-scripts' caches."""
    enabled = [c for c in configs if c.enabled]
    caching = [name for name, on in (("--cache_latents", run.caches_latents),
                                      ("--cache_text_encoder_outputs", run.caches_text_encoder)) if on]
    modes = {c.mode for c in enabled}
    if "dynamic" in modes and caching:
        msg = (f"collage_mode = 'dynamic' cannot be combined with {' and '.join(caching)}: dynamic frames change "
               f"every epoch, so sd-scripts' caches would be stale; set collage_mode = 'static' (or 'auto')")
        raise CollageConfigError(msg)
    if "static" in modes and "dynamic" in modes:
        msg = "collage_mode must be the same for every subset, got both 'static' and 'dynamic'; use one of them"
        raise CollageConfigError(msg)
    if not enabled:
        return "off", "collage_rate is 0 for every subset: plain sd-scripts behaviour (single images)"
    if "static" in modes:
        return "static", "collage_mode = 'static'"
    if "dynamic" in modes:
        return "dynamic", "collage_mode = 'dynamic'"
    if caching:
        return "static", f"collage_mode = 'auto' and the run uses {' and '.join(caching)}"
    return "dynamic", "collage_mode = 'auto' and the run caches neither latents nor text-encoder outputs"


def resolve_seed(run: RunArgs, kohya_config: dict[str, Any]) -> tuple[int, str]:
    """The collage seed: ``--seed`` when the user set it, else one derived from the dataset config.

    train_network.py draws a random ``--seed`` per process when none is given, which would give
    every GPU a different plan; a seed derived from the config is the same on every rank.
    """
    if "seed" in run.explicit and run.get("seed") is not None:
        return int(run.get("seed")), "from --seed"
    digest = hashlib.sha256(json.dumps(kohya_config, sort_keys=True, default=str).encode()).hexdigest()
    return int(digest[:8], 16), "derived from the dataset config (pass --seed to choose one)"


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
    return ("collage is on by default: collage_rate = 1.0 for every training subset (regularisation subsets stay "
            "single); set collage_rate = 0 for plain sd-scripts behaviour")


def _stats_text(stats: dict[str, Any]) -> str:
    if not stats.get("collage_frames"):
        return "no collage frames"
    return (f"mean fill {stats['mean_fill']:.2f} (min {stats['min_fill']:.2f}), {stats['span_share']:.0%} of sources "
            f"span >= {stats['min_span']:g} of the frame, {stats['images_per_frame']:.2f} images/frame"
            + (" (sampled)" if stats.get("sampled") else ""))


def log_summary(datasets: Sequence[Any], mode: str, why: str, seed: int, seed_why: str,
                configs: Sequence[CollageConfig], run: RunArgs, default_note: str | None = None) -> None:
    """One INFO block: images per subset, frames per epoch, layouts, mode and why, seed, cache dir."""
    lines = [f"collage_ext: mode {mode} ({why}); seed {seed} ({seed_why})"]
    if default_note:
        lines.append(f"  {default_note}")
    for d, dataset in enumerate(datasets):
        for entry in getattr(dataset, "_collage_info", []):
            settings = entry["settings"]
            lines.append(
                f"  [dataset {d} subset {entry['subset']}] {entry['image_dir']}: {entry['images']} images -> "
                f"{entry['frames_per_epoch']} samples/epoch ({entry['collage_frames']} collage frames, "
                f"{entry['single_samples']} single), rate {settings['collage_rate']}, "
                f"{settings['collage_min_images']}-{settings['collage_max_images']} images/frame, "
                f"layouts {','.join(settings['collage_layouts'])}, fit {settings['collage_fit_mode']}")
            for note in entry.get("frames", []):
                lines.append(f"    {note}")
            if entry.get("stats"):
                lines.append(f"    epoch 1: {_stats_text(entry['stats'])}")
    if mode == "static":
        lines.append(f"  static frames and their caches: {static_cache_dir(configs, run)}")
    logger.info("\n".join(lines))
