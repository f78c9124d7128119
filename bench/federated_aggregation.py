"""Benchmark: aggregation cost per strategy for 100 client replies of 1M float32 parameters each.

Each strategy of federated.strategies aggregates the same 100 replies (Flower Messages with an
ArrayRecord of four 250k arrays and their example counts) through its Message-API
``aggregate_train``, after CineSync's reply screening; beside it, Flower's array-level functions
(flwr.server.strategy.aggregate: aggregate, aggregate_median, aggregate_trimmed_avg, aggregate_krum)
on the same arrays. Wall time (median of --repeats) and the peak of Python-tracked memory
(tracemalloc, which numpy reports to) of one call.

    .venv/bin/python -m bench.federated_aggregation [--clients 100] [--parameters 1000000] [--repeats 3]

Results go to docs/bench/federated-aggregation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Message, Metadata, MetricRecord, RecordDict
from flwr.server.strategy.aggregate import aggregate, aggregate_krum, aggregate_median, aggregate_trimmed_avg

from bench.machine import machine
from federated.replies import screen
from federated.strategies import REGISTRY, Sampling, strategy_kind

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "bench"
PARAMS: dict[str, dict[str, float]] = {"krum": {"byzantine": 10}, "multikrum": {"byzantine": 10, "keep": 10},
                                     "trimmed_mean": {"beta": 0.2}}


def partial_right(function: Callable[..., Any], *arguments: Any) -> Callable[[Any], Any]:
    return lambda first: function(first, *arguments)


def replies(updates: list[dict[str, np.ndarray]], weights: list[int]) -> list[Message]:
    """One reply Message per client, as a SuperNode's arrive (fresh ArrayRecords each time)."""
    made = []
    for node, (arrays, weight) in enumerate(zip(updates, weights, strict=True)):
        metadata = Metadata(run_id=1, message_id=str(node), src_node_id=node + 1, dst_node_id=0,
                            reply_to_message_id="m", group_id="1", created_at=0.0, ttl=60.0, message_type="train")
        made.append(Message(content=RecordDict({  # type: ignore[call-overload]
            "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
            "metrics": MetricRecord({"num-examples": weight})}), metadata=metadata))
    return made


def measure(call: Callable[[Any], Any], make: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Median seconds of ``call(make())`` and its tracemalloc peak; each call gets fresh inputs from
    ``make`` (Flower's aggregation consumes the ArrayRecords it reads), made outside the timing."""
    seconds = []
    for _ in range(repeats):
        inputs = make()
        started = time.perf_counter()
        call(inputs)
        seconds.append(time.perf_counter() - started)
    inputs = make()
    tracemalloc.start()
    call(inputs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"seconds": round(statistics.median(seconds), 3), "peak_mb": round(peak / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--parameters", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    quarter = args.parameters // 4
    global_arrays = {f"layer{i}": rng.normal(0, 1, quarter).astype(np.float32) for i in range(4)}
    updates = [{name: value + rng.normal(0, 0.01, value.shape).astype(np.float32) for name, value in global_arrays.items()}
               for _ in range(args.clients)]
    weights = [int(w) for w in rng.integers(100, 1000, args.clients)]

    def messages() -> list[Message]:
        return replies(updates, weights)

    def ndarrays() -> list[tuple[list[np.ndarray], int]]:
        return [(list(update.values()), weight) for update, weight in zip(updates, weights, strict=True)]

    results: dict[str, Any] = {"screening": measure(
        lambda made: screen(made, global_arrays, max_update_norm=1e9), messages, args.repeats)}
    for name in REGISTRY:
        strategy = strategy_kind(name, PARAMS.get(name, {})).build(Sampling(1.0, args.clients, "num-examples"))
        results[name] = measure(partial(strategy.aggregate_train, 1), messages, args.repeats)
        print(name, results[name], flush=True)
    legacy: dict[str, Callable[[Any], Any]] = {
        "fedavg": aggregate, "median": aggregate_median, "trimmed_mean": partial_right(aggregate_trimmed_avg, 0.2),
        "krum": partial_right(aggregate_krum, 10, 0)}
    results["array_functions"] = {name: measure(call, ndarrays, args.repeats) for name, call in legacy.items()}
    print("array functions", results["array_functions"], flush=True)
    results.update(clients=args.clients, parameters=4 * quarter, machine=f"{machine()}, "
                   f"{os.cpu_count()} cores", date=time.strftime("%Y-%m-%d"), flwr="1.42.0")
    (RESULTS / "federated-aggregation.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
