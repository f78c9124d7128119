"""The history store with a real Redis: seeding never overwrites live history, appends move re-watched
items to the end within ``keep``, and an outage fails fast (a breaker) and heals once Redis is back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable
from pathlib import Path

import pytest

from control_plane.experiments.test_store import needs_redis, own_redis
from control_plane.history import HistoryStore, HistoryUnavailable, Watch
from launcher.services.process import ManagedProcess, free_port
from launcher.services.redis_server import redis_answers


async def _fails_within(call: Awaitable[object], limit_s: float) -> float:
    """Await ``call``, which must raise HistoryUnavailable within ``limit_s``; the time it took."""
    started = time.monotonic()
    with pytest.raises(HistoryUnavailable):
        await call
    elapsed = time.monotonic() - started
    assert elapsed < limit_s, f"took {elapsed:.3f} s"
    return elapsed


@needs_redis
def test_seed_creates_only_missing_lists_once_per_source(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario() -> None:
        store = HistoryStore(url, "test", keep=3, timeout_s=2.0)
        await store.append("live", "x")  # watched before any seed: a list of its own
        histories = {
            "live": ["a", "b"],
            "long": ["1", "2", "3", "4", "5"],
            "empty": [],
            **{f"u{n}": [f"i{n}", f"j{n}"] for n in range(5)},
        }
        assert await store.seed(histories.items(), source="run-1", batch=2) == 6  # 5 batches, "live" and "empty" skipped
        assert await store.read("live") == ["x"]
        assert await store.read("long") == ["3", "4", "5"]  # the last `keep`, oldest first
        assert await store.read("empty") is None
        assert [await store.read(f"u{n}") for n in range(5)] == [[f"i{n}", f"j{n}"] for n in range(5)]
        assert await store.redis.exists("test:history-seeded:run-1") == 1

        # The same source again: nothing at all, not even users it did not know.
        assert await store.seed({"long": ["9"], "new": ["7"]}.items(), source="run-1") == 0
        assert await store.read("long") == ["3", "4", "5"] and await store.read("new") is None

        # Another source: users with a list (seeded, then changed by an append) keep theirs.
        await store.append("long", "6")
        assert await store.seed({"long": ["9"], "u0": ["9"], "new": ["7", "8"]}.items(), source="run-2") == 1
        assert await store.read("long") == ["4", "5", "6"]
        assert await store.read("u0") == ["i0", "j0"]
        assert await store.read("new") == ["7", "8"]
        assert await store.seed({}.items(), source="run-3") == 0
        await store.close()

    with own_redis(url, tmp_path):
        asyncio.run(scenario())


@needs_redis
def test_append_moves_a_rewatched_item_to_the_end_within_keep(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario() -> None:
        store = HistoryStore(url, "test", keep=3, timeout_s=2.0)
        assert await store.read("new") is None
        await store.append("new", "a")
        assert await store.read("new") == ["a"]  # unknown before: now known
        await store.append("new", "b")
        await store.append("new", "a")
        assert await store.read("new") == ["b", "a"]  # moved, not duplicated
        for item in ("c", "d", "c", "e", "c"):
            await store.append("new", item)
            history = await store.read("new")
            assert history is not None and len(history) <= 3 and len(set(history)) == len(history)
        assert await store.read("new") == ["d", "e", "c"]
        assert store.key("new") == "test:history:new" and await store.redis.llen("test:history:new") == 3
        await store.close()

    with own_redis(url, tmp_path):
        asyncio.run(scenario())


@needs_redis
def test_a_stopped_redis_fails_fast_and_heals(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario(redis_process: ManagedProcess) -> None:
        store = HistoryStore(url, "test", keep=10, timeout_s=0.1, retry_after_s=0.2)
        await store.append("u", "a")
        redis_process.stop()
        await _fails_within(store.read("u"), 0.5)
        await _fails_within(store.append("u", "b"), 0.02)  # the breaker: no network
        await _fails_within(store.seed({"v": ["s"]}.items(), source="run"), 0.02)
        await asyncio.sleep(0.25)
        await _fails_within(store.append("u", "b"), 0.5)  # tried again, still away: open again
        await _fails_within(store.read("u"), 0.02)

        redis_process.restart()  # same port; append-only data kept
        redis_process.wait_ready(lambda: redis_answers(url), timeout=15)
        await asyncio.sleep(0.25)  # past retry_after_s
        assert await store.read("u") == ["a"]
        await store.append("u", "b")
        assert await store.read("u") == ["a", "b"]
        # The failed seed did not set its marker: the same source seeds now.
        assert await store.seed({"v": ["s"]}.items(), source="run") == 1
        assert await store.read("v") == ["s"]
        await store.close()

    with own_redis(url, tmp_path) as redis_process:
        asyncio.run(scenario(redis_process))


@needs_redis
def test_watches_during_an_outage_are_added_once_redis_is_back_in_order_once_even_across_a_restart(
    tmp_path: Path,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    spool = tmp_path / "spool"

    async def scenario(redis_process: ManagedProcess) -> None:
        store = HistoryStore(url, "test", keep=10, timeout_s=0.1, retry_after_s=0.2, spool_dir=spool)
        assert await store.record(Watch("u", "test:u", "a")) == "stored" and await store.read("test:u") == ["a"]
        await store.redis.set(store.key("test:w"), "not a list")
        assert await store.record(Watch("w", "test:w", "z")) == "dropped"  # refused (WRONGTYPE), not queued
        redis_process.stop()
        assert await store.record(Watch("u", "test:u", "b")) == "queued"
        assert await store.record(Watch("v", "test:v", "y", ["x"])) == "queued"  # first watch: from the published
        assert await store.replay() == []  # Redis still away: nothing taken off the queue
        await store.close()  # a control plane stopped during the outage: the spool keeps the watches

        store = HistoryStore(url, "test", keep=10, timeout_s=0.1, retry_after_s=0.2, spool_dir=spool)
        assert [w.item_id for w in store.waiting] == ["b", "y"]
        redis_process.restart()
        redis_process.wait_ready(lambda: redis_answers(url), timeout=15)
        await asyncio.sleep(0.25)  # past retry_after_s
        assert await store.record(Watch("u", "test:u", "a")) == "queued"  # behind those waiting: order kept
        assert await store.replay() == ["u", "v", "u"] and not store.waiting
        assert await store.read("test:u") == ["b", "a"] and await store.read("test:v") == ["x", "y"]
        assert await store.replay() == []  # each watch added once
        assert await store.record(Watch("u", "test:u", "c")) == "stored" and await store.read("test:u") == ["b", "a", "c"]
        await store.close()
        assert not list(spool.glob("history-spool-*.jsonl"))  # nothing waits

    with own_redis(url, tmp_path) as redis_process:
        asyncio.run(scenario(redis_process))


@needs_redis
def test_a_hung_redis_times_out_and_answers_nothing_stale_after(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario(redis_process: ManagedProcess) -> None:
        store = HistoryStore(url, "test", keep=10, timeout_s=0.1, retry_after_s=0.2)
        await store.seed({"u": ["1", "2"], "w": ["3"]}.items(), source="run")
        os.kill(redis_process.pid, signal.SIGSTOP)  # connected, but no answer: the timeout decides
        try:
            elapsed = await _fails_within(store.read("u"), 0.5)
            assert elapsed >= 0.09  # it did wait for Redis...
            await _fails_within(store.read("w"), 0.02)  # ...and this one did not
        finally:
            os.kill(redis_process.pid, signal.SIGCONT)
        await _fails_within(store.read("w"), 0.02)  # Redis answers again, the breaker is still open
        await asyncio.sleep(0.25)
        # The reply to the timed-out read of "u" must not be taken for this one.
        assert await store.read("w") == ["3"]
        assert await store.read("u") == ["1", "2"]
        await store.close()

    with own_redis(url, tmp_path) as redis_process:
        asyncio.run(scenario(redis_process))


@needs_redis
def test_memory_per_user_is_small(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario() -> None:
        store = HistoryStore(url, "test", keep=1000, timeout_s=2.0)
        items = [str(1000 + n) for n in range(1000)]  # item ids of 4 digits
        assert await store.seed({"u200": items[:200], "u1000": items}.items(), source="run") == 2
        used = {n: int(await store.redis.memory_usage(store.key(f"u{n}"), samples=0) or 0) for n in (200, 1000)}
        # Measured with redis-server 7.0: 776 and 3208 bytes (4-digit ids are stored as small integers).
        assert 200 < used[200] < 4096 and 1000 < used[1000] < 8192, used
        await store.close()

    with own_redis(url, tmp_path):
        asyncio.run(scenario())


@needs_redis
def test_a_watch_before_seeding_starts_from_the_published_history(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario() -> None:
        store = HistoryStore(url, "test", keep=4, timeout_s=2.0)
        await store.append("early", "z", published=["a", "b", "c", "d"])
        assert await store.read("early") == ["b", "c", "d", "z"]  # the published history, then the watch
        await store.append("early", "b", published=["ignored"])  # a list exists: published is not used
        assert await store.read("early") == ["c", "d", "z", "b"]
        assert await store.seed({"early": ["a"]}.items(), source="run") == 0  # seeding keeps the live list
        assert await store.read("early") == ["c", "d", "z", "b"]
        await store.close()

    with own_redis(url, tmp_path):
        asyncio.run(scenario())
