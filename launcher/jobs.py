"""Submits the training pipeline to Celery and follows it, printing each step's progress."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from celery.result import AsyncResult

from workers.tasks import PROGRESS


class JobFailed(RuntimeError):
    pass


def _chain_nodes(last: AsyncResult) -> list[AsyncResult]:
    nodes = []
    node: AsyncResult | None = last
    while node is not None:
        nodes.append(node)
        node = node.parent
    return nodes[::-1]


def describe(meta: dict[str, Any]) -> str:
    parts = [str(meta.get("step", ""))]
    if "stage" in meta:
        parts.append(str(meta["stage"]))
    if "epoch" in meta:
        parts.append(f"epoch {meta['epoch']}/{meta['epochs']}")
    parts += [f"{key} {value:.4f}" for key, value in meta.items() if key in ("loss", "validation ndcg@10")]
    if "percent" in meta:
        parts.append(f"{meta['percent']:.0f}%")
    return " · ".join(parts)


def follow(result: AsyncResult, *, say: Callable[[str], None], timeout: float = 3600.0) -> dict[str, Any]:
    """Wait for a chain's last result, printing progress as it changes; raise JobFailed on failure."""
    nodes = _chain_nodes(result)
    deadline = time.monotonic() + timeout
    last_line = ""
    while time.monotonic() < deadline:
        for node in nodes:
            state = node.state
            if state == "FAILURE":
                raise JobFailed(f"task {node.name or node.id} failed: {node.result!r}")
            if state == PROGRESS and isinstance(node.info, dict):
                line = describe(node.info)
                if line != last_line:
                    say(f"  {line}")
                    last_line = line
        if result.ready():
            value = result.get(propagate=False)
            if result.failed():
                raise JobFailed(f"pipeline failed: {value!r}")
            assert isinstance(value, dict)
            return value
        time.sleep(0.25)
    raise JobFailed(f"pipeline did not finish within {timeout:.0f} s")
