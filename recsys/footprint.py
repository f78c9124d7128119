"""A training run's peak memory, estimated from its sizes before it starts, and the refusal when the
estimate is more than the machine has available (nothing is left to run out of memory half-way).

The terms are the run's largest allocations, with constants calibrated on the scale benchmark's
measured peaks (docs/benchmarks.md, "How every cost grows"): the interpreter with torch and the
kinds; the data set and its splits per interaction; the closed-form item-item fits (EASE and the
kinds built on it hold about five items × items matrices at once while solving and pruning; SLIST
and the transfer and content kinds fit the whole catalog, EASE at most its ``max_items``); the
fusion's candidate lists for the evaluated users.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys.kinds.ease import EaseParams

GIB = 2**30
BASE_BYTES = int(1.5 * GIB)  # interpreter, torch, numpy, ONNX and the loaded kinds
BYTES_PER_INTERACTION = 160  # raw rows while reading, dense indices, split sequences, tables
ITEM_ITEM_BYTES_PER_CELL = 40  # float64 Gram + inverse + weights, float32 |weights|, int64 argpartition
FEATURE_COLUMNS_BEYOND_MEMBERS = 40  # genres and the other dense ranking features per candidate
LIST_COPIES = 3  # features assembled per batch, padded, concatenated
WHOLE_CATALOG_KINDS = ("slist", "ease_transfer", "ease_content")


class RunTooLarge(MemoryError):
    """A training run whose estimated peak memory exceeds the memory available; nothing was started."""


@dataclass(frozen=True)
class Footprint:
    """Estimated peak bytes of a training run, by term."""

    terms: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.terms.values())

    def describe(self) -> str:
        parts = ", ".join(f"{name} {size / GIB:.1f}" for name, size in self.terms.items() if size >= GIB // 10)
        return f"{self.total / GIB:.1f} GiB ({parts})"


def estimate(
    *, users: int, items: int, interactions: int, members: list[str], retrievers: int, depth: int,
    evaluation_users: int, options: Mapping[str, Mapping[str, Any]],
) -> Footprint:
    """The peak of a run of ``members`` on a data set of these sizes (``evaluation_users`` 0: all)."""
    cells = 0
    if "ease" in members:
        cap = int(options.get("ease", {}).get("max_items", EaseParams.max_items))
        fitted = items if cap <= 0 else min(items, cap)
        cells = max(cells, fitted * fitted)
    if any(kind in members for kind in WHOLE_CATALOG_KINDS):
        cells = max(cells, items * items)
    listed = users if evaluation_users <= 0 else min(users, evaluation_users)
    width = depth * max(retrievers, 1)
    return Footprint({
        "base": BASE_BYTES,
        "interactions": interactions * BYTES_PER_INTERACTION,
        "item-item fit": cells * ITEM_ITEM_BYTES_PER_CELL,
        "candidate lists": listed * width * (len(members) + FEATURE_COLUMNS_BEYOND_MEMBERS) * 4 * LIST_COPIES,
    })


def available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable (Linux), or None where the kernel does not say."""
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def refuse_beyond(footprint: Footprint, *, limit: int | None, what: str) -> None:
    """Raise RunTooLarge, naming the estimate and the limit, when ``footprint`` exceeds ``limit``
    (None: unknown, nothing refused)."""
    if limit is not None and footprint.total > limit:
        raise RunTooLarge(f"{what} needs an estimated {footprint.describe()} of memory and "
                          f"{limit / GIB:.1f} GiB is available: refused before starting (fewer users or "
                          "titles, a smaller ease max_items, or fewer evaluation_users)")
