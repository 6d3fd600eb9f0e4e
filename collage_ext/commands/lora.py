"""``collage-ext inspect``: the collage settings a LoRA was trained with, read from its metadata.

The adapter stores its settings in ``dataset.bucket_info["collage_ext"]``; sd-scripts writes
``bucket_info`` into the ``.safetensors`` metadata: inside ``ss_datasets`` (a JSON list of
datasets, each with ``"bucket_info"``) when ``--dataset_config`` was used, else as
``ss_bucket_info``. The header is read with ``json`` and ``struct`` (8-byte little-endian length,
then JSON whose ``"__metadata__"`` maps strings to strings), so neither safetensors nor torch is
needed.
"""

from __future__ import annotations

import datetime
import json
import os
import struct
from typing import Any

from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageInputError

#: Refuse headers larger than this (safetensors' own limit is 100 MB).
MAX_HEADER = 100_000_000

#: sd-scripts metadata keys worth showing next to the collage settings.
CONTEXT_KEYS = (
    "ss_output_name",
    "ss_sd_model_name",
    "ss_base_model_version",
    "ss_model_type",
    "ss_network_module",
    "ss_network_dim",
    "ss_network_alpha",
    "ss_epoch",
    "ss_steps",
    "ss_max_train_steps",
    "ss_num_train_images",
    "ss_resolution",
    "ss_seed",
    "ss_training_finished_at",
)


def read_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` of a ``.safetensors`` file (empty when it has none).

    Raises:
        CollageInputError: the file cannot be read or is not a safetensors file.
    """
    name = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                msg = f"{name} is not a .safetensors file: it is shorter than the 8-byte header length"
                raise CollageInputError(msg)
            (length,) = struct.unpack("<Q", head)
            if length < 2 or length > MAX_HEADER:
                msg = f"{name} is not a .safetensors file: header length {length} is implausible"
                raise CollageInputError(msg)
            raw = handle.read(length)
    except OSError as exc:
        msg = f"{name} cannot be read ({exc.strerror or exc}); check the path"
        raise CollageInputError(msg) from exc
    if len(raw) < length:
        msg = f"{name} is truncated: the header says {length} bytes, the file has {len(raw)}"
        raise CollageInputError(msg)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        msg = f"{name} is not a .safetensors file: its header is not JSON ({exc})"
        raise CollageInputError(msg) from exc
    if not isinstance(header, dict):
        msg = f"{name} is not a .safetensors file: its header is not a JSON object"
        raise CollageInputError(msg)
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def _json(value: str | None) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def collage_settings(metadata: dict[str, str]) -> list[dict[str, Any]]:
    """Every ``collage_ext`` block in the metadata, with its dataset index (``None`` for ss_bucket_info)."""
    found: list[dict[str, Any]] = []
    datasets = _json(metadata.get("ss_datasets"))
    if isinstance(datasets, list):
        for index, dataset in enumerate(datasets):
            info = dataset.get("bucket_info") if isinstance(dataset, dict) else None
            if isinstance(info, dict) and isinstance(info.get("collage_ext"), dict):
                found.append({"dataset": index, **info["collage_ext"]})
    info = _json(metadata.get("ss_bucket_info"))
    if isinstance(info, dict) and isinstance(info.get("collage_ext"), dict):
        found.append({"dataset": None, **info["collage_ext"]})
    return found


#: Metadata keys holding a Unix time (sd-scripts writes ``time.time()`` as text).
TIME_KEYS = ("ss_training_started_at", "ss_training_finished_at")


def _shown(key: str, value: str) -> str:
    """A metadata value for people: Unix times as UTC date and time.

    Examples:
        >>> _shown("ss_training_finished_at", "1767225600.5")
        '2026-01-01 00:00:00 UTC'
        >>> _shown("ss_training_finished_at", "soon"), _shown("ss_steps", "1600")
        ('soon', '1600')
    """
    if key not in TIME_KEYS:
        return value
    try:
        when = datetime.datetime.fromtimestamp(float(value), tz=datetime.timezone.utc)
    except (ValueError, OverflowError, OSError):
        return value
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_settings(path: str, metadata: dict[str, str], blocks: list[dict[str, Any]]) -> str:
    """A human summary: training context, then per dataset and subset the collage settings (non-defaults first)."""
    lines = [f"{path}"]
    for key in CONTEXT_KEYS:
        if metadata.get(key) not in (None, "", "None"):
            lines.append(f"  {key}: {_shown(key, metadata[key])}")
    defaults = CollageConfig().to_metadata()
    for block in blocks:
        where = "ss_bucket_info" if block["dataset"] is None else f"dataset {block['dataset']}"
        lines.append(
            f"collage_ext {block.get('version', '?')} ({where}): mode {block.get('mode', '?')}, "
            f"seed {block.get('seed', '?')}"
        )
        for subset in block.get("subsets", []) or []:
            lines.append(
                f"  subset {subset.get('subset', '?')} {subset.get('image_dir', '')}: "
                f"{subset.get('images', '?')} images -> {subset.get('frames_per_epoch', '?')} samples/epoch "
                f"({subset.get('collage_frames', '?')} collage frames, {subset.get('single_samples', '?')} "
                "single)"
            )
            settings = subset.get("settings") or {}
            changed = {k: v for k, v in settings.items() if defaults.get(k, object()) != v}
            for key, value in changed.items():
                lines.append(f"    {key} = {json.dumps(value)}")
            if not changed:
                lines.append("    (all collage settings at their defaults)")
    return "\n".join(lines)
