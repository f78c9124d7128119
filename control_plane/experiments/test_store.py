"""The Redis store with a real Redis: counts per variant, feedback matched to its exposure, and
records made while Redis is down kept in order and sent once it is back (never twice)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from control_plane.experiments.store import ExperimentStore, Exposure, Feedback
from launcher.services.process import free_port
from launcher.services.redis_server import ensure_redis


def _exposure(n: int, variant: str) -> Exposure:
    return Exposure(f"{n:032x}", f"u{n}", "exp", variant, 1, 1, time.time())


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary")
def test_counts_survive_an_outage_without_duplicates(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    redis_process = ensure_redis(url, logs_dir=tmp_path, data_dir=tmp_path / "data")
    assert redis_process is not None

    async def scenario() -> None:
        store = ExperimentStore(url, "test")
        for n in range(20):
            store.expose(_exposure(n, "a"))
        # Feedback right after its answer finds the exposure: queued exposures are written first.
        assert await store.feedback(Feedback(f"{3:032x}", "u3", "i", "click", 0, time.time())) is True
        assert await store.feedback(Feedback(f"{999:032x}", "x", "i", "click", 0, time.time())) is False
        redis_process.stop()
        started = time.monotonic()
        store.expose(_exposure(100, "b"))
        store.expose(_exposure(101, "b"))
        await store.flush()
        assert store.away and len(store.pending) == 2 and time.monotonic() - started < 5
        redis_process.restart()
        for _ in range(100):
            await store.flush()
            if not store.away:
                break
            await asyncio.sleep(0.1)
        await asyncio.gather(store.flush(), store.flush())
        a, b = await store.counts("exp", "a"), await store.counts("exp", "b")
        assert (a.exposures, a.users, a.events["click"]) == (20, 20, 1) and (b.exposures, b.users) == (2, 2)
        assert await store.unmatched() == 1
        await store.close()

    try:
        asyncio.run(scenario())
    finally:
        redis_process.stop()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary")
def test_records_queued_during_an_outage_survive_a_crash_of_the_control_plane(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    spool = tmp_path / "home" / "spool.jsonl"

    async def during_outage() -> None:  # Redis is not running: the store spools, then "crashes"
        store = ExperimentStore(url, "test", spool=spool)
        store.expose(_exposure(1, "a"))
        await store.flush()
        assert store.away
        store.expose(_exposure(2, "a"))
        assert await store.feedback(Feedback(f"{1:032x}", "u1", "i", "click", 0, time.time())) is None
        await store.redis.aclose()  # no final flush: the process dies here

    asyncio.run(during_outage())
    with spool.open("a") as damaged:
        damaged.write('{"type": "Exposure", "request_')  # a line cut short by the crash
    redis_process = ensure_redis(url, logs_dir=tmp_path, data_dir=tmp_path / "data")
    assert redis_process is not None

    async def after_restart() -> None:
        store = ExperimentStore(url, "test", spool=spool)
        assert len(store.pending) == 3
        await store.flush()
        a = await store.counts("exp", "a")
        assert (a.exposures, a.users, a.events["click"]) == (2, 2, 1)
        assert not store.away and not spool.exists()
        await store.close()

    try:
        asyncio.run(after_restart())
    finally:
        redis_process.stop()
