"""The studio's writes: captions, crop boxes, drops and restores, undo and the seed.

Every write goes through ``files.History`` (atomic, the previous version kept for undo) and refuses a
write based on an older read of the file; the project is refreshed on the page's next read.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collage_ext.captions.subset import grammar_of
from collage_ext.core.errors import CollageInputError
from collage_ext.pixels.crops import parse_crop_box
from collage_ext.pixels.images import read_image_size
from collage_ext.studio.entries import Entry
from collage_ext.studio.files import RefusedError, dropped_folder, file_version, move_group, sidecars
from collage_ext.studio.state import StudioState
from collage_ext.studio.tokens import caption_view

logger = logging.getLogger(__name__)

#: Seeds sd-scripts accepts: it seeds numpy, whose seeds are 0 to 2**32 - 1.
SEED_MAX = 2**32 - 1


class Edits(StudioState):
    """What the page writes (a part of ``Studio``; call with the studio's state set up)."""

    def _writable(self, e: Entry) -> None:
        if e.subset.params.get("metadata_file"):
            raise RefusedError(
                f"{e.path.name} belongs to a subset read from metadata_file "
                f"{e.subset.params['metadata_file']}; edit that file (the studio writes only folders "
                "of images with sidecar files)"
            )
        if e.dropped:
            raise RefusedError(f"{e.path.name} is dropped; restore it first", 409)

    def _unchanged(self, path: Path, version: object, what: str) -> None:
        """Refuse a write based on an older read: ``version`` is ``file_version`` as the page last saw it.

        Raises:
            RefusedError: (409) the file changed since; the page says so and keeps the user's text.
        """
        if version is None:
            return
        if version != file_version(path):
            raise RefusedError(
                f"the {what} changed since this page read it (another tab or program wrote "
                f"{path.name}); nothing was written: reload to see the new version, then "
                "edit again (your text is still in the editor)",
                409,
            )

    def set_caption(self, eid: object, text: str, version: object = None) -> dict[str, Any]:
        """Write the image's caption file (atomically, the previous version kept for undo).

        ``version`` (``file_version`` of the caption the page edited) makes a write based on a stale read a 409.
        """
        with self.lock:
            e = self.entry(eid)
            self._writable(e)
            self._unchanged(e.caption_file, version, f"caption of {e.path.name}")
            if not text.strip():
                raise RefusedError(
                    "refusing to write an empty caption: sd-scripts stops on empty caption files; write a caption"
                )
            old = self._caption_text(e)
            newline = "\n" if old is None or old.endswith("\n") else ""
            data = (text.rstrip("\n") + newline).encode("utf-8")
            self.history.write(e.caption_file, data, f"caption of {e.path.name}")
            self._changed(e.id)  # its files are read again when the page asks for frames: this answer is at once
            self._warm(e.path)
            return self._describe(e, [])

    def set_crop(self, eid: object, box: Sequence[Any] | None, version: object = None) -> dict[str, Any]:
        """Write the image's crop sidecar (``left, top, right, bottom`` in pixels), or remove it for ``None``."""
        with self.lock:
            e = self.entry(eid)
            self._writable(e)
            self._unchanged(e.crop_file, version, f"crop box of {e.path.name}")
            if box is None:
                self.history.write(e.crop_file, None, f"crop box of {e.path.name} cleared")
            else:
                if (
                    not isinstance(box, (list, tuple))
                    or len(box) != 4
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in box)
                ):
                    raise RefusedError(
                        f"a crop box is four whole pixel numbers [left, top, right, bottom], got {box!r}"
                    )
                line = ", ".join(str(v) for v in box)
                size = read_image_size(self.folders.readable(e.path))
                try:
                    parse_crop_box(line, size, source=str(e.crop_file))
                except CollageInputError as exc:
                    raise RefusedError(str(exc)) from exc
                self.history.write(e.crop_file, (line + "\n").encode("utf-8"), f"crop box of {e.path.name}")
            self._changed(e.id)
            self._warm(e.path)
            return self._describe(e, [])

    def drop(self, eid: object) -> None:
        """Take an image (and its caption and crop files) out of training: move it into ``_collage_studio/dropped``."""
        with self.lock:
            e = self.entry(eid)
            self._writable(e)
            if e.subset.image_dir is None:
                raise RefusedError(f"{e.path.name} has no image folder")
            files = sidecars(e.path, [e.caption_file.suffix, e.crop_file.suffix])
            shared = [f for f in files[1:] if self._shared(e, f)]  # img_004.png's drop leaves img_004.jpg's .txt
            move_group(files, dropped_folder(Path(e.subset.image_dir)), self.folders, copy=shared)
            logger.info(f"studio: dropped {e.path} (moved to {dropped_folder(Path(e.subset.image_dir))})")
            self._reread()
            self._warm(None)

    def restore(self, eid: object) -> None:
        """Put a dropped image (and its sidecars) back into its image folder."""
        with self.lock:
            e = self.entry(eid)
            if not e.dropped or e.subset.image_dir is None:
                raise RefusedError(f"{e.path.name} is not dropped", 409)
            files = sidecars(e.path, [e.caption_file.suffix, e.crop_file.suffix])
            home = Path(e.subset.image_dir)
            # A sidecar a same-stem image still uses stays as it is; the dropped copy goes to the history.
            shared = [f for f in files[1:] if os.path.lexists(home / f.name) and self._shared(e, home / f.name)]
            move_group([f for f in files if f not in shared], home, self.folders)
            for f in shared:
                self.history.retire(f)
            logger.info(f"studio: restored {e.path.name} into {e.subset.image_dir}")
            self._reread()
            self._warm(Path(e.subset.image_dir) / e.path.name)

    def _shared(self, e: Entry, sidecar: Path) -> bool:
        """Whether another image of the dataset (kept, in the sidecar's folder) reads ``sidecar`` too."""
        return any(
            o is not e
            and not o.dropped
            and o.path.parent == sidecar.parent
            and o.path.with_suffix(sidecar.suffix) == sidecar
            for o in self.entries.values()
        )

    def undo(self) -> str | None:
        """Undo the last caption or crop change; returns what was undone."""
        with self.lock:
            change = self.history.undo()
            if change is None:
                return None  # nothing written, nothing to read again
            owner = next(
                (e for e in self.entries.values() if not e.dropped and change.path in (e.caption_file, e.crop_file)),
                None,
            )
            self._changed(owner.id if owner else None)  # a caption or crop box: that image's files are read again
            self._warm(owner.path if owner else None)
            return change.what

    def preview_tokens(self, eid: object, text: str) -> dict[str, Any]:
        """The token view of a caption being typed (nothing is written)."""
        e = self.entry(eid)
        cfg = e.subset.config
        return caption_view(
            text,
            self.encoder.budget,
            self.encoder.counter,
            grammar_of(e.subset.namespace()),
            cfg.repeat_phrases,
            cfg.repeat_count,
        )

    def set_seed(self, seed: int | None = None, *, write: bool = False) -> dict[str, Any]:
        """Use another collage seed (a fresh random one for ``None``); ``write`` saves it to the training TOML.

        Raises:
            RefusedError: ``write`` without a training TOML (``--config``).
        """
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX):
            raise RefusedError(
                f"seed must be a whole number from 0 to {SEED_MAX} (2**32 - 1: sd-scripts seeds numpy "
                f"with it), got {seed!r}",
                400,
            )
        with self.lock:
            value = secrets.randbelow(2**31) if seed is None else int(seed)
            if write:
                if not self.config:
                    raise RefusedError(
                        "start the studio with --config TRAIN.toml to save the seed; until then "
                        f"pass --seed {value} to training"
                    )
                path = Path(self.config)
                text = path.read_text(encoding="utf-8")
                self.history.write(path, set_seed_line(text, value).encode("utf-8"), f"seed in {path.name}")
            self.seed = value
            self._reread()
            return self._state()


def set_seed_line(text: str, seed: int) -> str:
    """The training TOML with ``seed = N`` (the first ``seed`` line replaced, else one added on top).

    sd-scripts flattens every table of a ``--config_file``, so a ``seed`` line anywhere is the seed.

    Examples:
        >>> set_seed_line("# run\\n[training]\\nseed = 1  # mine\\n", 42)
        '# run\\n[training]\\nseed = 42  # mine\\n'
        >>> set_seed_line("[model]\\nx = 1\\n", 7)
        'seed = 7\\n[model]\\nx = 1\\n'
    """
    pattern = re.compile(r"^(\s*seed\s*=\s*)[^#\n]*?(\s*(#.*)?)$", re.MULTILINE)
    if pattern.search(text):
        return pattern.sub(lambda m: f"{m.group(1)}{seed}{m.group(2)}", text, count=1)
    return f"seed = {seed}\n" + text
