"""Benchmark: control-plane replicas on one machine. The open-loop saturation of one replica against
two (the same 2 cores, shared with Triton, Redis and the load generator), each rate for --seconds
through one target (two replicas: round robin, launcher.client's service config); then 100
requests/s for 10 s through the two with one SIGKILLed at 5 s: failures and latency before, in the
2 s after and over the whole run. Everything on loopback; every process started is stopped.

    .venv/bin/python -m bench.replicas --data ../shared/data/ml-100k --rates 100,200,300,400,600

Results go to docs/bench/replicas-<data set>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.open_loop import open_loop, published
from launcher.client import wait_for_version
from launcher.stack import Stack
from recsys.pipeline import PipelineSpec

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "bench"
KILL_RATE, KILL_SECONDS, KILL_AT = 100.0, 10.0, 5.0


def saturation(results: list[dict[str, float]]) -> float:
    """The highest achieved rate with no failure and p99 under a second."""
    return max((r["achieved_per_s"] for r in results if r["p99_ms"] < 1000 and not r["failures"]), default=0.0)


def percentiles(latencies: list[float]) -> dict[str, float]:
    values = np.asarray(latencies) * 1000
    return {"requests": len(values), "p50_ms": round(float(np.percentile(values, 50)), 2),
            "p99_ms": round(float(np.percentile(values, 99)), 2), "max_ms": round(float(values.max()), 2)}


async def with_a_kill(stack: Stack, users: list[str]) -> dict[str, object]:
    samples: list[tuple[float, float]] = []
    victim = next(p for p in stack.started if p.name == "control plane 2")

    async def kill() -> None:
        await asyncio.sleep(KILL_AT + 0.1)  # open_loop starts 0.1 s after it is called
        os.kill(victim.pid, signal.SIGKILL)

    killer = asyncio.create_task(kill())
    result = await open_loop(stack.grpc_address, users, KILL_RATE, KILL_SECONDS, samples)
    await killer
    return {**result,
            "before_kill": percentiles([latency for t, latency in samples if t < KILL_AT]),
            "2_s_after_kill": percentiles([latency for t, latency in samples if KILL_AT <= t < KILL_AT + 2]),
            "whole_run": percentiles([latency for _, latency in samples])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/ml-100k")
    parser.add_argument("--rates", default="100,200,300,400,600")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = str(Path(args.data).resolve()) if Path(args.data).is_dir() else args.data
    rates = [float(rate) for rate in args.rates.split(",")]
    by_replicas: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as root_name, published(data, Path(root_name), PipelineSpec()) as done:
        stack, users = done.stack, done.users
        for replicas in (1, 2):
            stack.start_control_plane(replicas)
            for address in stack.replica_addresses:
                wait_for_version(address, users[0], done.version)
            asyncio.run(open_loop(stack.grpc_address, users, 100, 2.0))  # warm-up
            by_replicas[str(replicas)] = [asyncio.run(open_loop(stack.grpc_address, users, rate, args.seconds))
                                          for rate in rates]
            if replicas == 2:
                killed = asyncio.run(with_a_kill(stack, users))
            stack.stop_control_planes()
    report = {
        "data": args.data, "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, 2 cores shared by the replicas, Triton, Redis and the load generator",
        "open_loop": by_replicas, "saturation_per_s": {k: saturation(v) for k, v in by_replicas.items()},
        "kill_one_of_two": killed,
    }
    print(json.dumps(report, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"replicas-{Path(args.data).name}.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
