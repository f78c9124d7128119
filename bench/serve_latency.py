"""Benchmark: train and publish on a data set, then measure Recommend latency and throughput over
gRPC on loopback (bounded request count; stops by itself).

    .venv/bin/python bench/serve_latency.py --data ../shared/data/ml-100k --requests 2000 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import grpc

from cinesync.settings import Settings
from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from launcher.client import wait_for_version
from launcher.jobs import follow
from launcher.stack import Stack
from workers.tasks import training_pipeline


async def _load(address: str, users: list[str], requests: int, concurrency: int) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    triton_ranked = 0
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(users[i % len(users)])

    async def client(stub: pb_grpc.RecommendationServiceStub) -> None:
        nonlocal triton_ranked
        while not queue.empty():
            user = queue.get_nowait()
            started = time.perf_counter()
            reply = await stub.Recommend(pb.RecommendRequest(user_id=user, k=10), timeout=10)
            latencies.append(time.perf_counter() - started)
            triton_ranked += reply.ranked_by == pb.RANKED_BY_TRITON

    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.RecommendationServiceStub(channel)
        started = time.perf_counter()
        await asyncio.gather(*(client(stub) for _ in range(concurrency)))
        return latencies, triton_ranked, time.perf_counter() - started


def _summary(latencies: list[float], triton_ranked: int, wall: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 2),
        "requests_per_s": round(len(ordered) / wall, 1),
        "ranked_by_triton": triton_ranked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    data = str(Path(args.data).resolve()) if Path(args.data).is_dir() else args.data
    with tempfile.TemporaryDirectory() as root:
        settings = Settings(home=Path(root) / "home", model_repository=Path(root) / "repo", grpc_port=0,
                            metrics_port=0, bundle_poll_s=0.5, data=data)
        with Stack(settings, say=lambda line: None) as stack:
            started = time.perf_counter()
            stack.ensure_redis()
            stack.ensure_worker()
            stack.ensure_triton()
            stack.start_control_plane()
            result = follow(training_pipeline(data).apply_async(queue=settings.job_queue), say=lambda line: None)
            users = json.loads((settings.serving_dir / str(result["version"]) / "users.json").read_text())[:500]
            wait_for_version(stack.grpc_address, users[0], result["version"])
            ready_s = time.perf_counter() - started
            sequential = _summary(*asyncio.run(_load(stack.grpc_address, users, min(500, args.requests), 1)))
            concurrent = _summary(*asyncio.run(_load(stack.grpc_address, users, args.requests, args.concurrency)))
    print(json.dumps({
        "data": args.data,
        "machine": f"{platform.node()} {platform.machine()}",
        "start_train_publish_serve_s": round(ready_s, 1),
        "metrics": result["metrics"],
        "onnx_max_abs_error": {m["name"]: m["max_abs_error"] for m in result["onnx"]},
        "sequential": sequential,
        f"concurrency_{args.concurrency}": concurrent,
    }, indent=2))


if __name__ == "__main__":
    main()
