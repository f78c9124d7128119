"""The encoders' outputs (user vectors) kept per serving version and history, so that a user who has
watched nothing since their last request is not encoded again.

An entry's key is the version and a digest of the exact HISTORY row the encoders read (the last
``history_length`` items), so an entry can never be stale nor serve another version: a watch changes
the row, and so the key. A WATCH recomputes the user's entry right after it enters the live history
(nearline, off the request path: control_plane.service), so the next Recommend finds it; a request
that sends its own history is keyed the same way, by the digest of the row made from it. Entries are
dropped least recently used first beyond ``max_entries``, and once unused for ``idle_s``: a history a
watch replaced is never asked for again, so without the expiry the cache would fill with them to its
bound (about 40 minutes at 130 requests a second) and the control plane's memory would grow that long."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from control_plane.metrics import ENCODER_CACHE, ENCODER_CACHE_BYTES, ENCODER_CACHE_ENTRIES

Vectors = dict[str, NDArray[np.float32]]
# Measured with tracemalloc over 50,000 entries (CPython 3.11): an entry's key, digest, dicts and slot,
# and each vector's array object, beside the vectors' data (762 bytes with one 64-dim vector).
ENTRY_OVERHEAD_BYTES, ARRAY_OVERHEAD_BYTES = 400, 112


def history_digest(row: NDArray[np.int64]) -> bytes:
    """A 16-byte digest of a HISTORY row (its length is part of it)."""
    return hashlib.blake2b(np.ascontiguousarray(row, dtype=np.int64).tobytes(), digest_size=16).digest()


class EncoderCache:
    """A bounded, least-recently-used map from (version, history row) to each member's user vector,
    whose entries also expire once unused for ``idle_s`` seconds."""

    def __init__(self, *, max_entries: int, idle_s: float = float("inf")) -> None:
        self.max_entries = max_entries
        self.idle_s = idle_s
        # Each entry with the monotonic time it was last put or found, least recently used first.
        self.entries: OrderedDict[tuple[int, bytes], tuple[float, Vectors]] = OrderedDict()
        self.bytes = 0

    @staticmethod
    def _size(vectors: Vectors) -> int:
        return ENTRY_OVERHEAD_BYTES + sum(ARRAY_OVERHEAD_BYTES + v.nbytes for v in vectors.values())

    def get(self, version: int, row: NDArray[np.int64], members: Iterable[str], *, source: str) -> Vectors | None:
        """``members``' vectors for ``row`` of version ``version`` when all are cached (counted as a hit
        or a miss of ``source``: request, live)."""
        now = time.monotonic()
        self._drop(expired_at=now)
        key = (version, history_digest(row))
        _, entry = self.entries.get(key, (now, {}))
        if not entry or any(member not in entry for member in members):
            ENCODER_CACHE.labels(source, "miss").inc()
            return None
        self.entries[key] = (now, entry)
        self.entries.move_to_end(key)
        ENCODER_CACHE.labels(source, "hit").inc()
        return {member: entry[member] for member in members}

    def put(self, version: int, row: NDArray[np.int64], vectors: Vectors) -> None:
        """Keep ``vectors`` (added to what the entry holds) as the newest entry, then drop the oldest
        beyond ``max_entries`` and those unused for ``idle_s``."""
        if self.max_entries <= 0 or not vectors:
            return
        now = time.monotonic()
        key = (version, history_digest(row))
        _, old = self.entries.pop(key, (now, {}))
        # Copies: Triton's answers are views into whole reply arrays, which would stay alive with them.
        entry = {**old, **{member: np.array(vector, dtype=np.float32) for member, vector in vectors.items()}}
        self.bytes += self._size(entry) - (self._size(old) if old else 0)
        self.entries[key] = (now, entry)
        self._drop(expired_at=now)

    def _drop(self, *, expired_at: float) -> None:
        """Drop the least recently used entries beyond ``max_entries`` and those unused for ``idle_s``
        at ``expired_at`` (the oldest come first in the order kept)."""
        while self.entries:
            used, _ = next(iter(self.entries.values()))
            if len(self.entries) <= self.max_entries and expired_at - used < self.idle_s:
                break
            _, (_, vectors) = self.entries.popitem(last=False)
            self.bytes -= self._size(vectors)
        ENCODER_CACHE_ENTRIES.set(len(self.entries))
        ENCODER_CACHE_BYTES.set(self.bytes)
