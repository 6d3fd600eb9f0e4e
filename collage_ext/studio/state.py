"""What the parts of ``Studio`` share: its state and the methods one part calls on another.

``Studio`` (model.py) is put together from mixins (``Views``, ``Pixels``, ``Edits``) that read the
state ``Studio.__init__`` sets up and call each other's methods. ``StudioState`` declares both, so that
each part type-checks on its own; it adds nothing at run time (annotations only, and signatures under
``TYPE_CHECKING``), so every attribute and method still comes from where it is defined.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collage_ext.plan.framesets import TextEncoder
    from collage_ext.plan.jobs import FrameJob, FrameSet
    from collage_ext.plan.project import Project
    from collage_ext.plan.subsets import PlannedSubset
    from collage_ext.studio.cache import ByteLRU, KeyLocks
    from collage_ext.studio.entries import Entry
    from collage_ext.studio.files import Folders, History

__all__ = ["StudioState"]


class StudioState:
    """The studio's shared state (set by ``Studio.__init__``, ``_load`` and ``_plan``) and cross-part methods."""

    # -- what the studio was started with ------------------------------------------------------------------
    dataset: str | os.PathLike[str] | None
    config: str | os.PathLike[str] | None
    trainer_args: list[str]
    model: str
    seed: int | None

    # -- the dataset as last read and planned ----------------------------------------------------------------
    lock: threading.RLock
    version: int
    project: Project
    encoder: TextEncoder
    history: History
    folders: Folders
    entries: dict[str, Entry]
    outside: dict[str, str]
    broken: dict[str, str]
    planned: list[PlannedSubset]
    error: str | None

    # -- caches and workers ----------------------------------------------------------------------------------
    _epoch: int
    _listed: threading.Condition
    _listed_version: int
    _frames: dict[tuple[int, int], tuple[FrameSet, dict[str, FrameJob]]]
    _images: ByteLRU[bytes]
    cells: ByteLRU[Any]
    _rendering: KeyLocks
    _described: dict[tuple[Any, ...], dict[str, Any]]
    _records: dict[tuple[Any, ...], dict[str, Any]]
    _views: ByteLRU[dict[str, Any]]
    _background: concurrent.futures.ThreadPoolExecutor
    _renderers: concurrent.futures.ThreadPoolExecutor
    _decoders: concurrent.futures.ThreadPoolExecutor

    if TYPE_CHECKING:
        # -- model.Studio ------------------------------------------------------------------------------------
        @property
        def mode(self) -> str: ...
        def entry(self, eid: object) -> Entry: ...
        def check(self, epoch: int = 1) -> dict[str, Any]: ...
        def _changed(self, eid: str | None = None) -> None: ...
        def _reread(self) -> None: ...
        def _fresh(self) -> None: ...
        def _state(self) -> dict[str, Any]: ...

        # -- views.Views --------------------------------------------------------------------------------------
        def _describe(self, e: Entry, frames: list[str]) -> dict[str, Any]: ...
        def _caption_text(self, e: Entry) -> str | None: ...
        def _frameset(self, epoch: int) -> tuple[FrameSet, dict[str, FrameJob]]: ...

        # -- pixels.Pixels ------------------------------------------------------------------------------------
        def _pixel_key(self, job: FrameJob) -> tuple[Any, ...]: ...
        def _warm(self, path: Path | None) -> None: ...
