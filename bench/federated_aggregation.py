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
import platform
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

from federated.replies import screen
from federated.strategies import REGISTRY, Sampling, strategy_kind

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "bench"
PARAMS: dict[str, dict[str, float]] = {"krum": {"byzantine": 10}, "multikrum": {"byzantine": 10, "keep": 10},
                                     "trimmed_mean": {"beta": 0.2}}


def replies(global_arrays: dict[str, np.ndarray], clients: int, rng: np.random.Generator) -> list[Message]:
    made = []
    for node in range(clients):
        arrays = {name: value + rng.normal(0, 0.01, value.shape).astype(np.float32) for name, value in global_arrays.items()}
        metadata = Metadata(run_id=1, message_id=str(node), src_node_id=node + 1, dst_node_id=0,
                            reply_to_message_id="m", group_id="1", created_at=0.0, ttl=60.0, message_type="train")
        made.append(Message(content=RecordDict({  # type: ignore[call-overload]
            "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
            "metrics": MetricRecord({"num-examples": int(rng.integers(100, 1000))})}), metadata=metadata))
    return made


def measure(call: Callable[[], Any], repeats: int) -> dict[str, float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    tracemalloc.start()
    call()
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
    messages = replies(global_arrays, args.clients, rng)
    ndarrays = [([a.numpy() for a in m.content.array_records["arrays"].values()],
                 int(m.content.metric_records["metrics"]["num-examples"])) for m in messages]  # type: ignore[arg-type]
    results: dict[str, Any] = {"screening": measure(lambda: screen(messages, global_arrays, max_update_norm=1e9),
                                                     args.repeats)}
    for name in REGISTRY:
        strategy = strategy_kind(name, PARAMS.get(name, {})).build(Sampling(1.0, args.clients, "num-examples"))
        results[name] = measure(partial(strategy.aggregate_train, 1, messages), args.repeats)
        print(name, results[name], flush=True)
    legacy = {"fedavg": lambda: aggregate(ndarrays), "median": lambda: aggregate_median(ndarrays),
              "trimmed_mean": lambda: aggregate_trimmed_avg(ndarrays, 0.2),
              "krum": lambda: aggregate_krum(ndarrays, 10, 0)}
    results["array_functions"] = {name: measure(call, args.repeats) for name, call in legacy.items()}
    print("array functions", results["array_functions"], flush=True)
    results.update(clients=args.clients, parameters=4 * quarter, machine=f"{platform.processor() or platform.machine()}, "
                   f"{os.cpu_count()} cores", date=time.strftime("%Y-%m-%d"), flwr="1.42.0")
    (RESULTS / "federated-aggregation.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
