"""Redis: started on the URL's port when nothing answers there, and stopped again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from launcher.services.process import free_port
from launcher.services.redis_server import ensure_redis, persistent, redis_answers


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary")
def test_starts_redis_where_none_answers(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert not redis_answers(url)
    process = ensure_redis(url, logs_dir=tmp_path, data_dir=tmp_path / "data")
    assert process is not None and redis_answers(url) and persistent(url)
    assert ensure_redis(url, logs_dir=tmp_path, data_dir=tmp_path / "data") is None  # found, not started twice
    process.stop()
    assert not redis_answers(url)

