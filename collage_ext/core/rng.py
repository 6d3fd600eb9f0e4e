"""Deterministic random streams derived from (seed, epoch, key, stream).

Every random decision in collage_ext draws from a ``random.Random`` built here, never from the
global ``random`` / ``numpy.random`` state (which sd-scripts reseeds inside its dataset). String
seeds are hashed with SHA-512 by ``random.Random``, so the streams are identical in every process,
DataLoader worker and resumed run, whatever ``PYTHONHASHSEED`` is.
"""

from __future__ import annotations

import random
from pathlib import PurePath
from typing import Literal

Stream = Literal["structure", "group", "layout", "caption", "fit"]

#: Bump only deliberately: it changes every plan ever made.
DERIVATION_VERSION = "v1"


def derive_rng(seed: int, epoch: int, key: str, stream: Stream) -> random.Random:
    """Return a private RNG for one decision stream of one sample.

    Args:
        seed: the run seed (sd-scripts ``--seed``).
        epoch: the epoch (or static variant index); use ``0`` for epoch-independent decisions.
        key: a stable sample key, e.g. the image path relative to its subset folder.
        stream: which decision this RNG feeds; streams are independent, so changing caption
            options never changes which images share a frame.

    Examples:
        >>> derive_rng(1, 0, "a.png", "layout").random() == derive_rng(1, 0, "a.png", "layout").random()
        True
        >>> derive_rng(1, 0, "a.png", "layout").random() == derive_rng(1, 1, "a.png", "layout").random()
        False
    """
    return random.Random(f"collage:{DERIVATION_VERSION}:{seed}:{epoch}:{stream}:{key}")


def sample_key(path: str | PurePath, root: str | PurePath) -> str:
    """Return the stable key of an image: its path relative to ``root`` in POSIX form.

    Absolute paths differ between machines, and dataset indices change every epoch, so neither
    can seed anything.

    Examples:
        >>> sample_key("/data/10_cat/a/b.png", "/data/10_cat")
        'a/b.png'
    """
    p, r = PurePath(path), PurePath(root)
    try:
        return p.relative_to(r).as_posix()
    except ValueError:
        return p.as_posix()
