"""One run resolution for the CLI and the trainer: mode, seed and cache folder.

Both sides hand their training arguments over as a ``RunArgs`` (the CLI builds it from ``--config``
and the options after ``--``; the adapter from the trainer's own namespace, see
``sdscripts.startup.run_arguments``) and get the same ``RunSettings`` back from ``resolve_run``.
Nothing here imports sd-scripts or torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageConfigError
from collage_ext.kohya.runargs import RunArgs

logger = logging.getLogger(__name__)


def static_cache_dir(configs: Sequence[CollageConfig], run: RunArgs) -> Path:
    """Where static frames (and so sd-scripts' npz caches) go: never a source folder."""
    return _cache_dir(next((c.cache_dir for c in configs if c.cache_dir), None), run.get("output_dir"))


def _cache_dir(explicit: str | None, output_dir: Any) -> Path:
    if explicit:
        return Path(explicit)
    if output_dir:
        return Path(output_dir) / "collage_cache"
    return Path.home() / ".cache" / "collage_ext"


@dataclass(frozen=True)
class RunSettings:
    """What a run decides once, the same for ``collage-ext`` and for training.

    Attributes:
        mode, mode_why: ``dynamic`` / ``static`` / ``off``, and why.
        seed, seed_why: the collage seed, and where it came from.
        output_dir: the trainer's ``--output_dir`` (the default cache folder lives under it).
    """

    mode: str
    mode_why: str
    seed: int
    seed_why: str
    output_dir: str | None = None

    def cache_dir(self, config: CollageConfig) -> Path:
        """The static-frame cache folder of a subset: ``collage_cache_dir``, else under ``--output_dir``."""
        return _cache_dir(config.cache_dir, self.output_dir)


def resolve_run(configs: Sequence[CollageConfig], run: RunArgs, kohya_config: dict[str, Any]) -> RunSettings:
    """Mode, seed and cache folder of a run, from its subsets' settings and its training arguments.

    Raises:
        CollageConfigError: dynamic frames with sd-scripts' caches, mixed modes, or a static cache
            folder inside an image folder.
    """
    mode, mode_why = resolve_mode(configs, run)
    if mode == "static":
        refuse_cache_in_image_folders(configs, run, kohya_config)
    seed, seed_why = resolve_seed(run, kohya_config)
    output_dir = run.get("output_dir")
    return RunSettings(mode, mode_why, seed, seed_why, str(output_dir) if output_dir else None)


def refuse_cache_in_image_folders(configs: Sequence[CollageConfig], run: RunArgs, kohya_config: dict[str, Any]) -> None:
    """Stop when a static cache folder is an image folder of the dataset, or inside one.

    sd-scripts lists every image of a folder: the frames written there would come back as training
    images (captionless, doubling the samples) in the next run. Paths are compared after resolving
    ``..`` and symlinks, so ``<image_dir>/../<same folder>`` is caught too.

    Raises:
        CollageConfigError: naming the cache folder, the image folder and the fix.
    """
    folders = {
        os.path.realpath(str(s["image_dir"])): str(s["image_dir"])
        for d in kohya_config.get("datasets") or []
        for s in (d.get("subsets") or [])
        if s.get("image_dir")
    }
    for config in configs:
        cache = static_cache_dir([config], run)
        real = os.path.realpath(cache)
        for folder, written in folders.items():
            if real == folder or real.startswith(folder.rstrip(os.sep) + os.sep):
                origin = (
                    "collage_cache_dir"
                    if config.cache_dir
                    else "the default collage cache folder, <output_dir>/collage_cache,"
                )
                suggest = Path(folder).parent / f"{Path(folder).name}_collage_cache"
                msg = (
                    f"{origin} {cache} is {'the' if real == folder else 'inside the'} image folder {written}: the "
                    "static frames written there would be read back as training images by the next run "
                    "(captionless, doubling the samples); set collage_cache_dir to a folder outside every image "
                    f'folder, e.g. collage_cache_dir = "{suggest.as_posix()}"'
                )
                raise CollageConfigError(msg)


def resolve_mode(configs: Sequence[CollageConfig], run: RunArgs) -> tuple[str, str]:
    """Pick dynamic or static for the run and say why; reject dynamic frames with sd-scripts' caches."""
    enabled = [c for c in configs if c.enabled]
    caching = [
        name
        for name, on in (
            ("--cache_latents", run.caches_latents),
            ("--cache_text_encoder_outputs", run.caches_text_encoder),
        )
        if on
    ]
    modes = {c.mode for c in enabled}
    if "dynamic" in modes and caching:
        msg = (
            f"collage_mode = 'dynamic' cannot be combined with {' and '.join(caching)}: dynamic frames change "
            f"every epoch, so sd-scripts' caches would be stale; set collage_mode = 'static' (or 'auto')"
        )
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


#: kohya dataset-config keys that hold a path (a folder or a file), at any level.
PATH_KEYS = ("image_dir", "metadata_file", "conditioning_data_dir")


def node_independent(value: Any) -> Any:
    """The dataset config with every path reduced to its last component (folder or file name).

    Each machine of a multi-node run (accelerate) may mount the dataset elsewhere, and the same
    folder may be written relative on one and absolute on another; only the names are the same
    everywhere. Pool keys use the folder name for the same reason (``plan.pool_key``).

    Examples:
        >>> node_independent({"datasets": [{"subsets": [{"image_dir": "/mnt/a/train/10_cat/"}]}]})
        {'datasets': [{'subsets': [{'image_dir': '10_cat'}]}]}
    """
    if isinstance(value, dict):
        return {
            k: (_path_name(v) if k in PATH_KEYS and isinstance(v, (str, os.PathLike)) else node_independent(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [node_independent(v) for v in value]
    return value


def _path_name(path: str | os.PathLike[str]) -> str:
    text = os.fspath(path).replace("\\", "/").rstrip("/")
    return text.rsplit("/", 1)[-1] or text


def derived_seed(kohya_config: dict[str, Any]) -> int:
    """A seed from what every node of a run sees alike: the dataset config with paths reduced to names."""
    text = json.dumps(node_independent(kohya_config), sort_keys=True, default=str)
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def resolve_seed(run: RunArgs, kohya_config: dict[str, Any]) -> tuple[int, str]:
    """The collage seed: ``--seed`` when the user set it, else one derived from the dataset config.

    train_network.py draws a random ``--seed`` per process when none is given, which would give
    every GPU a different plan; the derived seed is the same on every rank and every node.
    """
    if "seed" in run.explicit and run.get("seed") is not None:
        return int(run.get("seed")), "from --seed"
    return derived_seed(kohya_config), "derived from the dataset config (pass --seed to choose one)"
