"""Layering: the core never pulls in torch or sd-scripts; geometry and captions need no numpy/PIL."""

from __future__ import annotations

import subprocess
import sys

import pytest


def imported_after(statement: str) -> set[str]:
    """Top-level module names present after running ``statement`` in a fresh interpreter."""
    code = f"import sys\n{statement}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_collage_ext_is_light() -> None:
    """`import collage_ext` imports neither torch nor sd-scripts' library."""
    loaded = imported_after("import collage_ext")
    assert not loaded & {"torch", "library", "diffusers", "transformers", "torchvision", "cv2"}


@pytest.mark.parametrize(
    "module",
    [
        "collage_ext.geometry.layout",
        "collage_ext.captions",
        "collage_ext.geometry.grouping",
        "collage_ext.core.config",
        "collage_ext.core.rng",
    ],
)
def test_pure_layers_are_stdlib_only(module: str) -> None:
    """Geometry, grouping and captions are plain Python: no numpy, no Pillow."""
    loaded = imported_after(f"import {module}")
    assert not loaded & {"numpy", "PIL", "torch"}


def test_dataset_class_resolves_lazily() -> None:
    """CollageDataset is looked up only when asked for, so plain imports stay light."""
    loaded = imported_after("import collage_ext; print(hasattr(collage_ext, '__getattr__'))")
    assert "library" not in loaded
