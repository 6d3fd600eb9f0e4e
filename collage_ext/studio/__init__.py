"""``collage-ext studio``: curate a collage dataset by eye, in a local browser page.

The studio reads the dataset exactly as training does (``plan.project.load_project``, ``plan``,
``check.run_check``), so its frames are ``preview``'s frames. It writes only what plain sd-scripts
reads anyway (crop sidecars, caption files) or ignores (a ``_collage_studio`` sub-folder that
``glob_images`` never scans), atomically and with the previous version kept for undo.

Fill and span per frame come from ``collage_ext.plan.framestats``, like every other report. Modules: ``files``
(the dataset's folders, safe atomic writes, undo history, keep/drop), ``tokens`` (the token view of a
caption), ``model`` (the dataset as the page sees it), ``app`` (the Starlette app and ``serve``). Needs the
``studio`` extra: ``pip install "collage-ext[studio]"``.
"""

from __future__ import annotations

__all__ = ["missing_packages"]

#: Import names the studio needs beyond the core.
REQUIRED = ("starlette", "uvicorn")


def missing_packages() -> list[str]:
    """The studio extra's packages that are not installed (empty when the studio can run)."""
    import importlib.util

    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]
