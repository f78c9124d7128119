"""Finds the Redis server at REDIS_URL, or starts one there when none answers."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import redis

from launcher.services.process import ManagedProcess, StartupError


def redis_answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def persistent(url: str) -> bool:
    """Whether the Redis at ``url`` keeps an append-only file (exposures and feedback survive a restart)."""
    with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as client:
        try:
            return bool(client.config_get("appendonly").get("appendonly") == "yes")
        except redis.ResponseError:  # CONFIG disabled: cannot tell
            return True


def ensure_redis(url: str, *, logs_dir: Path, data_dir: Path) -> ManagedProcess | None:
    """None when Redis already answers at ``url``; else a redis-server started on the URL's port, with
    append-only persistence (fsync every second) in ``data_dir``."""
    if redis_answers(url):
        return None
    parsed = urlparse(url)
    host = parsed.hostname or "127.0.0.1"
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise StartupError(f"no Redis answers at {url}, and CineSync only starts one on this machine")
    binary = shutil.which("redis-server")
    if binary is None:
        raise StartupError(
            f"no Redis answers at {url} and redis-server is not installed "
            "(Debian: apt-get install -y redis-server; `make setup` does this when run as root)"
        )
    port = parsed.port or 6379
    data_dir.mkdir(parents=True, exist_ok=True)
    process = ManagedProcess(
        "redis",
        [binary, "--port", str(port), "--bind", host, "--save", "", "--appendonly", "yes",
         "--appendfsync", "everysec", "--dir", str(data_dir.resolve())],
        log_path=logs_dir / "redis.log",
    )
    process.wait_ready(lambda: redis_answers(url), timeout=15)
    return process
