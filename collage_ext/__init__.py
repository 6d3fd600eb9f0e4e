"""collage_ext: collage training for kohya-ss sd-scripts.

Several training images share one frame; each keeps its scale relative to the frame (portraits
side by side at full height, landscapes stacked at full width, 2x2 grids), empty space is padded
with #181818, and the cell captions are merged and augmented.

Enable it in a kohya training TOML with one line::

    dataset_class = "collage_ext.CollageDataset"

``import collage_ext`` stays light: it imports neither torch nor sd-scripts. ``CollageDataset``
is resolved lazily, the first time sd-scripts asks for it.
"""

from __future__ import annotations

from typing import Any

from collage_ext.core.config import OPTIONS, CollageConfig, parse_color, resolve_config
from collage_ext.core.errors import CollageConfigError, CollageError, CollageInputError, LayoutError
from collage_ext.core.rng import derive_rng, sample_key
from collage_ext.core.types import Box, Layout, Rect, Size
from collage_ext.core.version import __version__
from collage_ext.geometry.grouping import PoolStructure, Record, group_instances, pool_structure, static_variants
from collage_ext.geometry.layout import choose_layout, layout_cells, max_group_size

#: Earlier names of ``choose_layout`` and ``pool_structure`` ("plan" now means only the frames of a run,
#: ``collage_ext.plan``); kept so code written against them keeps working.
plan_layout = choose_layout
plan_structure = pool_structure


__all__ = [
    "__version__",
    "OPTIONS",
    "Box",
    "CollageConfig",
    "CollageConfigError",
    "CollageDataset",
    "CollageError",
    "CollageInputError",
    "Layout",
    "LayoutError",
    "PoolStructure",
    "Record",
    "Rect",
    "Size",
    "choose_layout",
    "derive_rng",
    "group_instances",
    "layout_cells",
    "max_group_size",
    "parse_color",
    "plan_layout",
    "plan_structure",
    "pool_structure",
    "resolve_config",
    "sample_key",
    "static_variants",
]


def __getattr__(name: str) -> Any:
    # sd-scripts does getattr(import_module("collage_ext"), "CollageDataset"): resolve it only then,
    # so plain `import collage_ext` never pulls in torch or sd-scripts.
    if name == "CollageDataset":
        from collage_ext.sdscripts.dataset import CollageDataset

        return CollageDataset
    raise AttributeError(f"module 'collage_ext' has no attribute {name!r}")
