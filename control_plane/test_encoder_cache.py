"""The encoder cache: keyed by version and the exact history row, bounded, counted."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from cinesync import triton
from control_plane.encoder_cache import EncoderCache, history_digest
from control_plane.metrics import ENCODER_CACHE


def _row(*items: int) -> NDArray[np.int64]:
    return triton.history_row(np.array(items, dtype=np.int64), 8)


def _vectors(value: float) -> dict[str, NDArray[np.float32]]:
    return {"two_tower": np.full(4, value, dtype=np.float32), "sasrec": np.full(4, -value, dtype=np.float32)}


def _count(source: str, result: str) -> float:
    return ENCODER_CACHE.labels(source, result)._value.get()  # type: ignore[no-any-return]


def test_an_entry_serves_only_its_version_and_its_exact_history() -> None:
    cache = EncoderCache(max_entries=10)
    cache.put(3, _row(5, 7), _vectors(1.0))
    hits, misses = _count("live", "hit"), _count("live", "miss")
    found = cache.get(3, _row(5, 7), ["two_tower", "sasrec"], source="live")
    assert found is not None and float(found["two_tower"][0]) == 1.0 and float(found["sasrec"][0]) == -1.0
    assert cache.get(4, _row(5, 7), ["two_tower"], source="live") is None  # another version: never used
    assert cache.get(3, _row(5, 7, 9), ["two_tower"], source="live") is None  # a watch later: another key
    assert cache.get(3, _row(7, 5), ["two_tower"], source="live") is None  # order matters to the encoders
    assert cache.get(3, _row(5, 7), ["bert4rec"], source="live") is None  # a member it does not hold
    assert (_count("live", "hit") - hits, _count("live", "miss") - misses) == (1, 4)


def test_entries_merge_members_and_the_oldest_go_first() -> None:
    cache = EncoderCache(max_entries=2)
    cache.put(1, _row(1), {"two_tower": np.zeros(4, dtype=np.float32)})
    cache.put(1, _row(1), {"sasrec": np.ones(4, dtype=np.float32)})
    assert cache.get(1, _row(1), ["two_tower", "sasrec"], source="request") is not None
    one_entry = cache.bytes
    cache.put(1, _row(2), _vectors(2.0))
    assert cache.get(1, _row(1), ["sasrec"], source="request") is not None  # used: now the newest
    cache.put(1, _row(3), _vectors(3.0))  # beyond two: the least recently used (row 2) goes
    assert len(cache.entries) == 2 and cache.bytes == 2 * one_entry
    assert cache.get(1, _row(2), ["sasrec"], source="request") is None
    assert cache.get(1, _row(1), ["sasrec"], source="request") is not None


def test_no_entries_keeps_nothing() -> None:
    cache = EncoderCache(max_entries=0)
    cache.put(1, _row(1), _vectors(1.0))
    assert cache.get(1, _row(1), ["two_tower"], source="request") is None and cache.bytes == 0


def test_entries_unused_for_the_idle_time_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("control_plane.encoder_cache.time.monotonic", lambda: clock[0])
    cache = EncoderCache(max_entries=10, idle_s=60.0)
    cache.put(1, _row(1), _vectors(1.0))
    cache.put(1, _row(2), _vectors(2.0))
    clock[0] = 130.0
    assert cache.get(1, _row(1), ["sasrec"], source="live") is not None  # used: its idle time starts again
    clock[0] = 165.0  # row 2 unused for 65 s, row 1 for 35 s
    assert cache.get(1, _row(2), ["sasrec"], source="live") is None
    assert list(cache.entries) == [(1, history_digest(_row(1)))] and cache.bytes == cache._size(_vectors(1.0))
    clock[0] = 190.0  # row 1 unused for 60 s: a put of another row drops it too
    cache.put(1, _row(3), _vectors(3.0))
    assert cache.get(1, _row(1), ["sasrec"], source="live") is None and len(cache.entries) == 1
