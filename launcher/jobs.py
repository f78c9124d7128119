"""Follows a submitted training job, printing each step's progress."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.result import AsyncResult

from cinesync.jobs import PROGRESS, JobFailed, chain_ids, describe, progress


def follow(result: AsyncResult, *, say: Callable[[str], None], timeout: float = 3600.0) -> dict[str, Any]:
    """Wait for a chain's last result, printing progress as it changes; raise JobFailed on failure."""
    for update in progress(result.app, chain_ids(result), timeout=timeout):
        if update["state"] == PROGRESS:
            say(f"  {describe(update)}")
        elif update["state"] == "SUCCESS":
            value = update["result"]
            assert isinstance(value, dict)
            return value
    raise JobFailed("the job ended without a result")

