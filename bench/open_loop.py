"""Benchmark: open-loop load on Recommend over gRPC on loopback, and the in-process floor.

Requests leave at a fixed arrival rate whatever the answers do; each latency is measured from the
request's scheduled send time, so a stalled server shows up in full (no coordinated omission). Each
rate runs for --seconds (bounded count), all on loopback, and the script stops everything it started.
Then the floor: the same encoding, retrieval (the bundle's indexes) and ranking (ONNX Runtime
sessions of the encoders, scorers and the fusion) in a loop in this process.

    .venv/bin/python bench/open_loop.py --data ../shared/data/ml-100k --rates 100,200,300,400,700

The result is printed and written to docs/bench/open-loop-<data set>.json; bench/plot_latency.py
draws docs/latency.png from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import torch

from cinesync import triton
from cinesync.settings import Settings
from cinesync.splits import SPLITS
from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from control_plane.bundle import load_bundle
from control_plane.model_state import ServingState, load_indexes
from exporters.export_report import ENCODER, FUSION_ROLE, SCORER, read_report
from exporters.onnx_export import export_run, ort_session
from exporters.publish import publish
from launcher.client import SERVICE_CONFIG, wait_for_version
from launcher.stack import Stack
from recsys.pipeline import PipelineSpec, train
from recsys.run import load_run

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "bench"


async def open_loop(address: str, users: list[str], rate: float, seconds: float,
                    samples: list[tuple[float, float]] | None = None) -> dict[str, float]:
    """Send rate × seconds requests at fixed intervals; latencies from the scheduled send times. The
    channel balances over every address ``address`` resolves to (launcher.client's service config);
    ``samples`` receives each request's (scheduled send time from the start, latency) in seconds."""
    count = int(rate * seconds)
    latencies: list[float] = []
    failures = 0
    ranked = 0
    options = [("grpc.service_config", SERVICE_CONFIG), ("grpc.enable_retries", 1)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = pb_grpc.RecommendationServiceStub(channel)

        async def one(index: int, scheduled: float) -> None:
            nonlocal failures, ranked
            try:
                reply = await stub.Recommend(pb.RecommendRequest(user_id=users[index % len(users)], k=10), timeout=5)
                ranked += reply.ranked_by == pb.RANKED_BY_TRITON
            except grpc.aio.AioRpcError:
                failures += 1
            latencies.append(time.perf_counter() - scheduled)
            if samples is not None:
                samples.append((scheduled - start, latencies[-1]))

        start = time.perf_counter() + 0.1
        tasks = []
        for index in range(count):
            scheduled = start + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index, scheduled)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    ordered = sorted(latencies)
    return {"offered_per_s": rate, "requests": count, "achieved_per_s": round(count / wall, 1),
            "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
            "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 2),
            "failures": failures, "ranked_by_triton": ranked}


@dataclass
class Published:
    """A trained run published in a stack of its own (Redis, Triton), its control planes not started."""

    stack: Stack
    settings: Settings
    version: int
    users: list[str]
    export_dir: Path


@contextmanager
def published(data: str, root: Path, spec: PipelineSpec) -> Iterator[Published]:
    """Train ``spec`` on ``data`` under ``root``, export it, start Redis and Triton, publish it; every
    process started is stopped on exit."""
    run = load_run(train(data, root / "runs", spec))
    export_run(run, root / "onnx")
    settings = Settings(home=root / "home", model_repository=root / "repo", grpc_port=0, metrics_port=0,
                        triton_http_port=0, triton_grpc_port=0, triton_metrics_port=0)
    with Stack(settings, say=lambda line: None) as stack:
        stack.ensure_redis()
        stack.ensure_triton()
        version = publish(run, root / "onnx", settings.model_copy(update={"triton_url": stack.triton_url}))
        yield Published(stack, settings, version, run.user_ids, root / "onnx")


def in_process_floor(serving_dir: Path, version: int, export_dir: Path, seconds: float) -> float:
    """Requests per second of encoding, retrieval and ranking in one loop, no RPC: the same indexes,
    the same ONNX models (one session each), each user's published history."""
    bundle = load_bundle(serving_dir, version)
    state = ServingState(bundle, load_indexes(bundle))
    models = read_report(export_dir)
    sessions = {m.name: ort_session(export_dir / m.served_file, threads=1) for m in models}
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        history = bundle.histories[done % len(bundle.histories)]
        inputs: dict[str, np.ndarray] = {triton.HISTORY_INPUT: triton.history_row(history, bundle.history_length)[None]}
        vectors = {m.member: sessions[m.name].run(None, inputs)[0] for m in models if m.role == ENCODER}
        items, _ = state.candidates(history[-bundle.history_length :], {k: v[0] for k, v in vectors.items()},
                                    bundle.depth, domain="any", exclude=history)
        inputs[triton.ITEMS_INPUT] = (items + 1)[None]
        for model in (m for m in models if m.role == SCORER):
            feeds = {t.name: vectors[model.member] if t.name == triton.USER_VECTOR else inputs[t.name]
                     for t in model.inputs}
            inputs[triton.member_score(model.member)] = sessions[model.name].run(None, feeds)[0]
        fusion = next(m for m in models if m.role == FUSION_ROLE)
        ranked = sessions[fusion.name].run(None, {t.name: inputs[t.name] for t in fusion.inputs})[0][0]
        np.argsort(-ranked, kind="stable")[:10]
        done += 1
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/ml-100k")
    parser.add_argument("--split", choices=SPLITS, default="auto")
    parser.add_argument("--rates", default="100,200,400,700,1000")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = str(Path(args.data).resolve()) if Path(args.data).is_dir() else args.data
    with tempfile.TemporaryDirectory() as root_name:
        with published(data, Path(root_name), PipelineSpec(split=args.split)) as done:
            done.stack.start_control_plane()
            wait_for_version(done.stack.grpc_address, done.users[0], done.version)
            asyncio.run(open_loop(done.stack.grpc_address, done.users, 100, 2.0))  # warm-up
            results = [asyncio.run(open_loop(done.stack.grpc_address, done.users, float(rate), args.seconds))
                       for rate in args.rates.split(",")]
        floor = in_process_floor(done.settings.serving_dir, done.version, done.export_dir, args.seconds)
    saturation = max(r["achieved_per_s"] for r in results if r["p99_ms"] < 1000 and not r["failures"])
    report = {
        "data": args.data, "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, 2 cores, generator on the same machine",
        "open_loop": results, "saturation_per_s": saturation, "in_process_floor_per_s": round(floor, 1),
        "saturation_share_of_floor": round(saturation / floor, 2),
        "median_p99_ms": statistics.median(r["p99_ms"] for r in results),
    }
    print(json.dumps(report, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"open-loop-{Path(args.data).name}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
