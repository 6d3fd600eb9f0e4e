"""What the mirror reads a dataset into: datasets, subsets, their images, and findings about them.

These are sd-scripts' own notions (a subset's parameters after the cascade, the images it registers
with caption and repeats, which subsets it keeps and in which order), not collage decisions; the plan
layer turns them into frames.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Literal

from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageInputError
from collage_ext.core.types import Size

logger = logging.getLogger(__name__)

Level = Literal["error", "warning", "info"]


@dataclass(frozen=True, slots=True)
class SubsetImage:
    """One image of a subset as the trainer registered it.

    Attributes:
        path: the path exactly as sd-scripts spells it (``ImageInfo.absolute_path``).
        caption: the raw caption sd-scripts read (caption file, else ``class_tokens``, else "").
        num_repeats: repeats per epoch (for regularisation images, after sd-scripts' balancing).
    """

    path: str
    caption: str
    num_repeats: int


def subset_root(image_dir: str | None, metadata_file: str | None) -> str:
    """The folder sample keys are relative to: ``image_dir``, else the metadata file's folder.

    Examples:
        >>> subset_root("train/10_cat", None), subset_root(None, "meta/cat.json")
        ('train/10_cat', 'meta')
    """
    return image_dir or os.path.dirname(metadata_file or ".")


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem or note about the dataset, for logs and the ``check`` report.

    Attributes:
        level: ``error`` (training would fail or lose the file), ``warning`` (trains badly), ``info``.
        code: a stable machine name, e.g. ``unreadable_image``.
        message: one sentence naming the file, the problem and the fix.
        file: the file concerned, when there is one.
    """

    level: Level
    code: str
    message: str
    file: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {"level": self.level, "code": self.code, "message": self.message, "file": self.file}


@dataclass
class Notes:
    """Where the readers put findings: with ``strict`` an error raises at once (preview, export), else it
    is recorded so that ``check`` can list every problem."""

    strict: bool
    findings: list[Finding] = field(default_factory=list)

    def note(self, level: Level, code: str, message: str, file: str | None = None) -> None:
        """Record (and log at its level) one finding; raise it when strict and an error.

        Raises:
            CollageInputError: ``strict`` and ``level == "error"``.
        """
        if self.strict and level == "error":
            raise CollageInputError(message)
        self.findings.append(Finding(level, code, message, file))
        getattr(logger, level)(message)  # logged at the level the report gives it


@dataclass
class SubsetSpec:
    """One ``[[datasets.subsets]]`` entry, resolved like sd-scripts resolves it.

    Attributes:
        index: position in the TOML's ``subsets`` list.
        where: TOML location for messages.
        params: sd-scripts' subset parameters after the cascade.
        config: the resolved collage settings.
        images: the images sd-scripts registers, with caption and repeats.
        kept_index: position among the subsets sd-scripts keeps (``None`` when it skips this one).
        skipped: why sd-scripts skips it.
    """

    index: int
    where: str
    params: dict[str, Any]
    config: CollageConfig
    images: list[SubsetImage] = field(default_factory=list)
    kept_index: int | None = None
    skipped: str | None = None

    @property
    def image_dir(self) -> str | None:
        """The image folder as it is used (possibly resolved next to the dataset TOML)."""
        value = self.params.get("image_dir")
        return str(value) if value else None

    @property
    def root(self) -> str:
        """The folder sample keys are relative to."""
        return subset_root(self.image_dir, self.params.get("metadata_file"))

    @property
    def is_reg(self) -> bool:
        """True for regularisation subsets."""
        return bool(self.params.get("is_reg"))

    @property
    def name(self) -> str:
        """A short name: the folder name without a ``N_`` repeat prefix."""
        base = os.path.basename(str(self.root).rstrip("/")) or "subset"
        head, sep, tail = base.partition("_")
        return tail if sep and head.isdigit() and tail else base

    def namespace(self) -> SimpleNamespace:
        """The parameters as attributes, like an sd-scripts subset object (for ``grammar_of``)."""
        return SimpleNamespace(**self.params)


@dataclass
class DatasetSpec:
    """One ``[[datasets]]`` entry: its resolution, batching and subsets."""

    index: int
    where: str
    kind: Literal["dreambooth", "finetuning"]
    params: dict[str, Any]
    resolution: Size
    subsets: list[SubsetSpec]

    @property
    def kept(self) -> list[SubsetSpec]:
        """The subsets sd-scripts keeps, in order."""
        return [s for s in self.subsets if s.kept_index is not None]
