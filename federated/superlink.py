"""CineSync's SuperLink: Flower 1.42's ``flower-superlink`` whose SQLite state waits longer for a lock.

Flower opens its state with ``PRAGMA busy_timeout = 5000`` (``flwr.supercore.constant.SQLITE_PRAGMAS``)
and nothing retries a write that still finds the database locked: the Fleet API then answers HTTP 500
("database is locked"), and a SuperNode deletes the reply it was pushing. With ten SuperNodes on two
cores a writer can wait longer than 5 s. Every connection this process checks out of a SQLAlchemy pool
gets ``Settings.superlink_busy_timeout_ms`` (SQLAlchemy's pool ``checkout`` event runs after Flower's
``connect`` listener has set its own value), so a locked write waits instead of failing. Nothing of
Flower is changed; ``tests/test_flower_replies.py`` fails if an upgrade stops this from holding.
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

from sqlalchemy import event
from sqlalchemy.pool import Pool

from cinesync.settings import get_settings


def wait_for_locks(busy_timeout_ms: int) -> None:
    """Every SQLite connection checked out of a pool from now on waits ``busy_timeout_ms`` for a lock."""
    if busy_timeout_ms < 0:
        raise ValueError(f"busy_timeout_ms must be at least 0, got {busy_timeout_ms}")

    def on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")

    event.listen(Pool, "checkout", on_checkout)


def main() -> None:
    """``flower-superlink`` with this process's arguments."""
    from flwr.superlink.cli import flower_superlink

    wait_for_locks(get_settings().superlink_busy_timeout_ms)
    sys.argv[0] = "flower-superlink"
    flower_superlink()


if __name__ == "__main__":
    main()
