"""Bounded in-memory caches of the studio: encoded images and decoded cells, by content, within a byte budget.

The studio re-reads the dataset after every edit, but an edit touches one image: the frames that do
not hold it have the same plan, the same source files and the same crop boxes, so their pixels are
the same. Keys are therefore made of *content* (the frame's params, each source's path, size, mtime
and crop box), never of the dataset version, and an edit misses only for what it changed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from PIL import Image

V = TypeVar("V")

#: Encoded frames and source images (PNG / JPEG bytes) kept, in bytes.
IMAGE_BUDGET = 256 * 2**20
#: Decoded, fitted cells kept (RGB pixels), in bytes: about 60 cells of a 1024 px 2x2 frame at 4 MiB.
CELL_BUDGET = 256 * 2**20


class ByteLRU(Generic[V]):
    """A least-recently-used map that keeps the sum of its values' sizes within ``budget`` bytes; thread-safe.

    Examples:
        >>> cache = ByteLRU(10, len)
        >>> cache.put("a", b"12345"); cache.put("b", b"123456")
        >>> "a" in cache, "b" in cache, cache.size
        (False, True, 6)
    """

    def __init__(self, budget: int, size_of: Callable[[V], int]) -> None:
        self.budget, self.size_of = budget, size_of
        self.size = 0
        self._data: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            found = self._data.get(key)
            if found is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return found[0]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def put(self, key: Hashable, value: V) -> None:
        size = self.size_of(value)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.size -= old[1]
            if size > self.budget:
                return
            self._data[key] = (value, size)
            self.size += size
            while self.size > self.budget:
                _, (_, dropped) = self._data.popitem(last=False)
                self.size -= dropped

    __setitem__ = put

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.size = 0

    def __len__(self) -> int:
        return len(self._data)


def cell_bytes(value: tuple[Image.Image, Any]) -> int:
    """Memory of a decoded cell (its RGB pixels)."""
    image = value[0]
    return image.width * image.height * len(image.getbands())


class KeyLocks:
    """One lock per key, so two requests for the same frame render it once (the second waits and hits the cache)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[Hashable, tuple[threading.Lock, int]] = {}

    def acquire(self, key: Hashable) -> threading.Lock:
        with self._lock:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        lock.acquire()
        return lock

    def release(self, key: Hashable) -> None:
        with self._lock:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
        lock.release()
