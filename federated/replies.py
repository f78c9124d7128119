"""Screening of client replies before aggregation: a reply is aggregated only if it carries the
global model's arrays (same names, shapes and dtypes), every value finite, an update (reply - global)
within the norm bound and a positive example count. Others are counted by reason and logged."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, Message

from federated.kinds import Arrays

log = logging.getLogger(__name__)
ARRAYS_KEY = "arrays"
METRICS_KEY = "metrics"


@dataclass
class Screened:
    """The replies worth aggregating, and why the others were not."""

    accepted: list[Message] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> replies
    failed: int = 0  # replies carrying an error (the client's app failed)
    bytes_received: int = 0
    update_norms: list[float] = field(default_factory=list)  # of the accepted replies


def reply_arrays(record: ArrayRecord) -> Arrays:
    return {name: array.numpy() for name, array in record.items()}


def _problem(reply: Message, global_arrays: Arrays, max_update_norm: float) -> tuple[str, int, float]:
    """(reason it is refused or "", bytes of its arrays, the L2 norm of its update)."""
    content = reply.content
    if ARRAYS_KEY not in content.array_records:
        return "no arrays", 0, math.nan
    arrays = reply_arrays(content.array_records[ARRAYS_KEY])
    size = sum(a.nbytes for a in arrays.values())
    if set(arrays) != set(global_arrays):
        return "array names", size, math.nan
    for name, expected in global_arrays.items():
        if arrays[name].shape != expected.shape:
            return "shape", size, math.nan
        if arrays[name].dtype != expected.dtype:
            return "dtype", size, math.nan
    if not all(np.isfinite(a).all() for a in arrays.values()):
        return "not finite", size, math.nan
    norm = math.sqrt(sum(float(np.square(arrays[n].astype(np.float64) - g).sum()) for n, g in global_arrays.items()))
    if norm > max_update_norm:
        return "update norm", size, norm
    metrics = content.metric_records.get(METRICS_KEY)
    examples = metrics.get("num-examples") if metrics is not None else None
    if not isinstance(examples, (int, float)) or not examples > 0:
        return "example count", size, norm
    return "", size, norm


def screen(replies: Iterable[Message], global_arrays: Arrays, *, max_update_norm: float) -> Screened:
    """Sort ``replies`` to a training round whose global model was ``global_arrays``."""
    screened = Screened()
    for reply in replies:
        if reply.has_error():
            screened.failed += 1
            log.warning("node %s failed its round: %s", reply.metadata.src_node_id, reply.error.reason)
            continue
        reason, size, norm = _problem(reply, global_arrays, max_update_norm)
        screened.bytes_received += size
        if reason:
            screened.rejected[reason] += 1
            log.warning("rejected the reply of node %s: %s", reply.metadata.src_node_id, reason)
        else:
            screened.accepted.append(reply)
            screened.update_norms.append(norm)
    return screened
