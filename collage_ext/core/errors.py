"""Exception hierarchy: every collage_ext error is also a ``ValueError``.

Subclassing ``ValueError`` keeps ``except ValueError`` in callers working, as Pillow, torchvision
and albumentations users expect.
"""

from __future__ import annotations


class CollageError(Exception):
    """Base class of every collage_ext error."""


class CollageConfigError(CollageError, ValueError):
    """A collage option has a wrong type, value or combination (raised before training starts)."""


class LayoutError(CollageError, ValueError):
    """No allowed layout can hold the given images within the limits."""


class CollageInputError(CollageError, ValueError):
    """A source image or caption file cannot be used (names the file and the cause)."""


class CollageCacheError(CollageError, ValueError):
    """The static cache folder cannot be written (read-only, disk full); names the folder and the fix."""
