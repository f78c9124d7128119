"""Two versions of one small trained run published in a stack of the test's own: its Redis
(append-only, on the settings' URL) and Triton; the test starts the rest."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cinesync.settings import Settings
from exporters.publish import publish
from exporters.test_lifecycle import clone_run
from launcher.services.process import ManagedProcess
from launcher.services.redis_server import ensure_redis
from launcher.stack import Stack
from recsys.run import load_run


@dataclass
class TwoVersions:
    """The stack, its Redis process, and the two published versions (the second is current)."""

    stack: Stack
    redis: ManagedProcess
    first: int
    second: int


@contextmanager
def two_versions(small_run: Path, exported_run: Path, settings: Settings, tmp_path: Path) -> Iterator[TwoVersions]:
    """Publish ``small_run`` and a clone of it; every process started is stopped on exit."""
    redis_process = ensure_redis(settings.redis_url, logs_dir=tmp_path / "logs", data_dir=tmp_path / "redis")
    assert redis_process is not None
    try:
        with Stack(settings, say=print) as stack:
            stack.ensure_triton()
            publishing = settings.model_copy(update={"triton_url": stack.triton_url})
            first = publish(load_run(small_run), exported_run, publishing)
            second = publish(load_run(clone_run(small_run, tmp_path / "second")), exported_run, publishing)
            yield TwoVersions(stack, redis_process, first, second)
    finally:
        redis_process.stop()
