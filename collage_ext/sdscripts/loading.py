"""How the mapper's images load: frame jobs rendered, files collage_ext wrote checked, singles as trained.

sd-scripts loads every image it registered through its image hook (``seams.DatasetHooks`` hands it to
``LoadingMixin._load_image``). The mapper
(``sdscripts/mapper.py``) registered three kinds; each loads by looking up what the producer planned:

- a dynamic slot: its frame job of the current epoch, rendered (``plan.jobs.slot_job``);
- a file collage_ext wrote (a static frame, a cropped single): sd-scripts' own loading, checked by
  content, written again from its job when it vanished or went bad;
- a source that trains alone: sd-scripts' own loading, or its crop box; without bucketing it arrives
  at exactly the resolution; under ``collage_on_error = "skip"`` a failing one is replaced.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageInputError
from collage_ext.plan.collage import Source
from collage_ext.plan.frames import cached_png_problem, with_alpha, write_checked_png
from collage_ext.plan.jobs import slot_job, static_job
from collage_ext.plan.policy import FailureLog, check_single, cover_to, fit_to_aspect
from collage_ext.plan.singles import cropped_pixels
from collage_ext.plan.subsets import PlannedSubset
from collage_ext.sdscripts import seams
from collage_ext.sdscripts.staticframes import restore_static_frame

logger = logging.getLogger(__name__)


class LoadingMixin(seams.DatasetHooks):
    """sd-scripts' image loading for the images the mapper registered (state set by ``CollageMixin``)."""

    _frames: dict[str, tuple[PlannedSubset, int]]
    _static: dict[str, tuple[PlannedSubset, tuple[int, ...], int]]
    _cropped: dict[str, tuple[Source, CollageConfig, bool]]
    _pool_of_subset: dict[int, PlannedSubset]
    _replaced: dict[str, str]
    _failures: FailureLog

    def _load_image(self, subset: Any, image_path: str, alpha_mask: bool = False) -> Any:
        """Render the slot's job for the current epoch; other images load as sd-scripts loads them."""
        entry = self._frames.get(image_path)
        if entry is None:
            return self._load_single(subset, image_path, alpha_mask)
        planned, slot = entry
        rendered = slot_job(planned, slot, self._epoch, self._failures).render(with_mask=alpha_mask)
        if not alpha_mask:
            return rendered.image, 0, 0, 0, 0
        return with_alpha(rendered, planned.pool.config), 0, 0, 0, 0

    def _load_single(self, subset: Any, image_path: str, alpha_mask: bool) -> Any:
        """A single image; without bucketing a collage subset's single gets exactly the resolution.

        sd-scripts refuses any other size then ("image size is small" / "image too large"); the sources
        that keep the scale rule only alone (a square in a square frame) arrive at their own size.
        """
        loaded = self._load_single_as_is(subset, image_path, alpha_mask)
        if (
            not self.enable_bucket and id(subset) in self._pool_of_subset and not subset.random_crop and not loaded[1]
        ):  # loaded[1]: face_cx (face_crop_aug_range crops to size itself)
            loaded = (cover_to(loaded[0], (self.width, self.height)), *loaded[1:])
        return loaded

    def _load_single_as_is(self, subset: Any, image_path: str, alpha_mask: bool) -> Any:
        """sd-scripts' own loading; under ``skip`` a failing image is replaced by the next readable one."""
        if image_path in self._static:  # a frame is no source of the pool: it loads as itself under any policy
            owner, group, variant = self._static[image_path]
            return self._load_cached(
                subset,
                image_path,
                alpha_mask,
                lambda problem: restore_static_frame(
                    image_path, static_job(owner, group, variant, self._failures), problem
                ),
            )
        if image_path in self._cropped:  # static mode: a cropped single, written at start-up
            source, config, alpha = self._cropped[image_path]
            return self._load_cached(
                subset,
                image_path,
                alpha_mask,
                lambda problem: _rewrite_cropped(image_path, source, config, alpha, problem),
            )
        planned = self._pool_of_subset.get(id(subset))
        if planned is None:
            return self._sd_load_image(subset, image_path, alpha_mask)
        size = self._planned_sizes().get(image_path)
        if planned.pool.config.on_error == "raise":
            try:
                loaded = self._load_source(subset, planned, image_path, alpha_mask)
            except CollageInputError:
                raise
            except Exception as exc:  # noqa: BLE001 - sd-scripts' load_image raises whatever Pillow raised
                check_single(image_path, None, size, exc)
            check_single(image_path, loaded[0], size)
            return loaded
        sources = planned.pool.sources
        start = planned.index_of(image_path) or 0  # a dict: a scan per load would be quadratic per epoch
        for step in range(len(sources)):
            candidate = sources[(start + step) % len(sources)].path
            if candidate in self._failures.failed:
                continue
            try:
                loaded = self._load_source(subset, planned, candidate, alpha_mask)
                if candidate == image_path:
                    check_single(image_path, loaded[0], size)
            except Exception as exc:  # noqa: BLE001 - sd-scripts' load_image raises whatever Pillow raised
                self._failures.record(candidate, exc)
                continue
            if candidate != image_path:
                self._replaced[image_path] = candidate
                if size is not None:  # sd-scripts resizes to the original's bucket: keep its aspect
                    loaded = (fit_to_aspect(loaded[0], size), *loaded[1:])
            return loaded
        msg = f"no readable image left in subset {subset.image_dir!r} (collage_on_error = 'skip')"
        raise CollageInputError(msg)

    def _load_cached(self, subset: Any, path: str, alpha_mask: bool, rebuild: Any) -> Any:
        """sd-scripts' loading of a file collage_ext wrote, checked by content; a bad file is written again."""
        try:
            loaded = self._sd_load_image(subset, path, alpha_mask)
            problem = cached_png_problem(path, loaded[0])
        except FileNotFoundError:
            problem = "was deleted from the cache"
        except Exception as exc:  # noqa: BLE001 - sd-scripts' load_image raises whatever Pillow raised
            problem = f"cannot be read ({type(exc).__name__}: {exc})"
        if problem is None:
            return loaded
        rebuild(problem)
        return self._sd_load_image(subset, path, alpha_mask)

    def _load_source(self, subset: Any, planned: PlannedSubset, path: str, alpha_mask: bool) -> Any:
        """A pool source as a single sample: sd-scripts' loader, or its crop box when it has one."""
        index = planned.index_of(path)
        source = planned.pool.sources[index] if index is not None else None
        if source is None or source.crop is None:
            return self._sd_load_image(subset, path, alpha_mask)
        return cropped_pixels(source, planned.pool.config, alpha=alpha_mask), 0, 0, 0, 0

    def _planned_sizes(self) -> dict[str, tuple[int, int]]:
        """``absolute_path -> image_size`` as sd-scripts bucketed it (built once per process, after bucketing)."""
        sizes = getattr(self, "_sizes_cache", None)
        if sizes is None:
            sizes = {seams.path_of(i): size for i in self._images.values() if (size := seams.size_of(i))}
            self._sizes_cache = sizes
        return sizes


def _rewrite_cropped(path: str, source: Source, config: CollageConfig, alpha: bool, problem: str) -> None:
    write_checked_png(cropped_pixels(source, config, alpha), Path(path))
    logger.warning(f"collage_ext: cropped single {path} (of {source.path}) {problem} while training; rendered it again")
