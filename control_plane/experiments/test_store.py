"""The Redis store with a real Redis: counts per variant, feedback matched to its exposure, and
records made while Redis is down kept in order and sent once it is back (never twice)."""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from control_plane.experiments.statistics import ArmSums
from control_plane.experiments.store import ExperimentStore, Exposure, Feedback
from launcher.services.process import ManagedProcess, free_port
from launcher.services.redis_server import ensure_redis

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary")


@contextmanager
def own_redis(url: str, tmp_path: Path) -> Iterator[ManagedProcess]:
    """A redis-server of the test's own on ``url``, stopped at the end."""
    process = ensure_redis(url, logs_dir=tmp_path, data_dir=tmp_path / "data")
    assert process is not None
    try:
        yield process
    finally:
        process.stop()


def _exposure(n: int, variant: str) -> Exposure:
    return Exposure(f"{n:032x}", f"u{n}", "exp", variant, 1, 1, time.time())


@needs_redis
def test_counts_survive_an_outage_without_duplicates(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario(redis_process: ManagedProcess) -> None:
        store = ExperimentStore(url, "test")
        for n in range(20):
            store.expose(_exposure(n, "a"))
        # Feedback right after its answer finds the exposure: queued exposures are written first.
        found = await store.feedback(Feedback(f"{3:032x}", "u3", "i", "click", 0, time.time()))
        assert (found.matched, found.experiment, found.variant, found.version) == (True, "exp", "a", 1)
        assert (await store.feedback(Feedback(f"{999:032x}", "x", "i", "click", 0, time.time()))).matched is False
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
        a, b = await store.sums("exp", "a"), await store.sums("exp", "b")
        assert (a.m, a.n, a.c) == (20, 20, 1) and (b.m, b.n) == (2, 2)
        assert await store.unmatched() == 1
        await store.close()

    with own_redis(url, tmp_path) as redis_process:
        asyncio.run(scenario(redis_process))


# A control plane during a Redis outage: it queues two exposures and an unmatched feedback, then dies.
DIES_DURING_OUTAGE = """
import asyncio, os, signal, sys, time
from pathlib import Path
from control_plane.experiments.statistics import ArmSums
from control_plane.experiments.store import ExperimentStore, Exposure, Feedback

async def main():
    store = ExperimentStore(sys.argv[1], "test", spool_dir=Path(sys.argv[2]))
    for n in (1, 2):
        store.expose(Exposure(f"{n:032x}", f"u{n}", "exp", "a", 1, 1, time.time()))
        await store.flush()
    assert store.away
    assert (await store.feedback(Feedback(f"{999:032x}", "x", "i", "click", 0, time.time()))).matched is None
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


@needs_redis
def test_records_queued_during_an_outage_survive_a_killed_control_plane(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    spool_dir = tmp_path / "home" / "spool"
    died = subprocess.run([sys.executable, "-c", DIES_DURING_OUTAGE, url, str(spool_dir)], timeout=60, check=False)
    assert died.returncode == -signal.SIGKILL
    (spool,) = spool_dir.glob("*.jsonl")
    with spool.open("a") as damaged:
        damaged.write('{"type": "Exposure", "request_')  # a line cut short by the kill

    async def after_restart() -> None:
        store = ExperimentStore(url, "test", spool_dir=spool_dir)  # takes the slot the dead one held
        assert store.spool is not None and store.spool.path == spool and len(store.pending) == 3
        store.expose(_exposure(3, "a"))  # queued after the damaged line: read back whole
        await store.flush()
        a = await store.sums("exp", "a")
        assert (a.m, a.n) == (3, 3) and await store.unmatched() == 1
        assert await store.redis.xlen("test:exposures") == 3 and await store.redis.xlen("test:feedback") == 1
        assert not store.away and not spool.exists()
        await store.close()

    with own_redis(url, tmp_path):
        asyncio.run(after_restart())


# A control plane with Redis up: two answers' exposures queue for the next batch, and it is killed first.
DIES_BEFORE_THE_BATCH = """
import asyncio, os, signal, sys, time
from pathlib import Path
from control_plane.experiments.store import ExperimentStore, Exposure

async def main():
    store = ExperimentStore(sys.argv[1], "test", spool_dir=Path(sys.argv[2]))
    await store.redis.ping()
    for n in (1, 2):
        store.expose(Exposure(f"{n:032x}", f"u{n}", "exp", "a", 1, 1, time.time()))
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


@needs_redis
def test_exposures_queued_with_redis_up_survive_a_killed_control_plane(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    spool_dir = tmp_path / "home" / "spool"
    with own_redis(url, tmp_path):
        died = subprocess.run([sys.executable, "-c", DIES_BEFORE_THE_BATCH, url, str(spool_dir)], timeout=60, check=False)
        assert died.returncode == -signal.SIGKILL

        async def after_restart() -> None:
            store = ExperimentStore(url, "test", spool_dir=spool_dir)
            assert await store.redis.xlen("test:exposures") == 0 and len(store.pending) == 2
            await store.flush()
            assert (await store.sums("exp", "a")).m == 2 and await store.redis.xlen("test:exposures") == 2
            assert store.spool is not None and not store.spool.path.exists()
            await store.close()

        asyncio.run(after_restart())


@needs_redis
def test_a_record_redis_refuses_is_dropped_and_blocks_nothing(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario() -> None:
        store = ExperimentStore(url, "test")
        await store.redis.hset(f"test:exposed:{1:032x}", "x", "1")  # a key of another type: GET fails
        assert (await store.feedback(Feedback(f"{1:032x}", "u1", "i", "click", 0, time.time()))).matched is None
        store.expose(_exposure(2, "a"))
        await store.flush()
        assert store.dropped == 1 and not store.away and not store.pending
        assert (await store.sums("exp", "a")).m == 1
        await store.close()

    with own_redis(url, tmp_path):
        asyncio.run(scenario())


@needs_redis
def test_per_user_sums_are_kept_incrementally_and_count_each_request_once(tmp_path: Path) -> None:
    """Simulated repeat visitors (watches before their first exposure, answers clicked and watched,
    records sent twice): the arm's sums in Redis equal the sums of the users' own counts."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    rng = random.Random(8)
    start, day = 1_700_000_000.0, 24 * 3600.0
    users = [f"u{n}" for n in range(40)]
    expected = {u: {"exposures": 0, "clicks": 0, "watches": 0, "covariate": 0} for u in users}

    async def scenario() -> None:
        store = ExperimentStore(url, "test")
        for user in users:  # watches before the experiment: 3 days (in the window) and 20 days (outside) back
            for n, age in enumerate([3 * day] * rng.randint(0, 3) + [20 * day] * rng.randint(0, 2)):
                await store.feedback(Feedback(f"pre-{user}-{n}", user, "i", "watch", 0, start - age))
                expected[user]["covariate"] += age < 14 * day
        sent = []
        for visit in range(200):
            user = rng.choice(users)
            record = Exposure(f"{visit:032x}", user, "exp", "a", 1, 1, start + visit)
            store.expose(record)
            sent.append(record)
            expected[user]["exposures"] += 1
            clicked, watched = rng.random() < 0.3, rng.random() < 0.15
            for kind, happened in (("click", clicked), ("watch", watched), ("watch", watched)):  # a watch sent twice
                if happened:
                    await store.feedback(Feedback(record.request_id, user, "i", kind, 0, start + visit + 1))
            expected[user]["clicks"] += clicked
            expected[user]["watches"] += watched
            # A watch after the first exposure is not the covariate's, even in the window.
        for record in sent[:50]:  # replayed after an outage: counted once
            store.expose(record)
        await store.flush()
        exposed = [u for u in users if expected[u]["exposures"]]
        wanted = ArmSums.of_users(**{k: [expected[u][k] for u in exposed] for k in expected[users[0]]})
        assert await store.sums("exp", "a") == wanted and wanted.x > 0 and wanted.w > 0
        assert await store.sums("exp", "none") == ArmSums()
        await store.close()

    with own_redis(url, tmp_path):
        asyncio.run(scenario())
