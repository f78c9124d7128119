"""Benchmark: open-loop load on Recommend over gRPC on loopback, against the in-process floor.

First the floor: the same encoding, retrieval (the bundle's indexes) and ranking (the composed stage
models Triton serves, one ONNX Runtime session each) in a loop in this process, one thread. Then,
for each encoder-cache mode (cold: none, every request encodes as a user's first does; warm: the
default cache after one request per user), a control plane is started and requests leave at fixed
arrival rates (shares of the floor, and --rates) whatever the answers do; each latency is measured
from the request's scheduled send time, so a stalled server shows up in full (no coordinated
omission). Each rate runs for --seconds (bounded count), all on loopback, and the script stops
everything it started.

    .venv/bin/python bench/open_loop.py --data ../shared/data/ml-100k [--split loo-time]

The result is printed and written to docs/bench/open-loop-<data set>-<split>.json; bench/plot_latency.py
draws docs/latency.png from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import torch
from prometheus_client.parser import text_string_to_metric_families

from bench.machine import machine
from cinesync import triton
from cinesync.settings import Settings
from cinesync.splits import SPLITS
from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from control_plane.bundle import load_bundle
from control_plane.model_state import ServingState, load_indexes
from exporters.composition import compose_stages
from exporters.export_report import read_report
from exporters.onnx_export import export_run, ort_session
from exporters.publish import publish
from launcher.client import SERVICE_CONFIG, VersionTimeout, wait_for_version
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
def published(data: str, root: Path, spec: PipelineSpec, *, trained: Path | None = None) -> Iterator[Published]:
    """Train ``spec`` on ``data`` under ``root`` (or take the ``trained`` run), export it, start Redis
    and Triton, publish it; every process started is stopped on exit."""
    run = load_run(trained if trained is not None else train(data, root / "runs", spec))
    export_run(run, root / "onnx")
    settings = Settings(home=root / "home", model_repository=root / "repo", grpc_port=0, metrics_port=0,
                        triton_http_port=0, triton_grpc_port=0, triton_metrics_port=0)
    with Stack(settings, say=lambda line: None) as stack:
        stack.ensure_redis()
        stack.ensure_triton()
        version = publish(run, root / "onnx", settings.model_copy(update={"triton_url": stack.triton_url}))
        yield Published(stack, settings, version, run.user_ids, root / "onnx")


def in_process_floor(serving_dir: Path, version: int, export_dir: Path, seconds: float, *, fill_to: int = 0) -> float:
    """Requests per second of encoding, retrieval and ranking in one loop, no RPC, one thread: the
    same indexes and the same composed stage models Triton serves (one ONNX Runtime session each),
    each user's published history (lengthened to ``fill_to`` items with titles they have not seen,
    seeded, where shorter: as bench.soak fills the live histories), every request encoded (no cache)."""
    bundle = load_bundle(serving_dir, version)
    state = ServingState(bundle, load_indexes(bundle))
    if fill_to:
        chooser = np.random.default_rng(1)
        unseen = [np.setdiff1d(np.arange(len(bundle.items)), h) for h in bundle.histories]
        bundle.histories = [np.concatenate([h, chooser.permutation(u)[: max(0, fill_to - len(h))]]).astype(np.int64)
                            for h, u in zip(bundle.histories, unseen, strict=True)]
    with tempfile.TemporaryDirectory() as folder:
        stages = {s.name: s for s in compose_stages(read_report(export_dir), export_dir, Path(folder))}
        sessions = {name: ort_session(stage.file, threads=1) for name, stage in stages.items()}
    encoders = stages.get(triton.ENCODERS)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        history = bundle.histories[done % len(bundle.histories)]
        row = triton.history_row(history, bundle.history_length)[None]
        vectors: dict[str, np.ndarray] = {}
        if encoders is not None:
            found = sessions[triton.ENCODERS].run(None, {triton.HISTORY: row})
            vectors = dict(zip((t.name for t in encoders.outputs), found, strict=True))
        items, _ = state.candidates(history[-bundle.history_length :],
                                    {m: vectors[triton.user_vector(m)][0] for m in bundle.encoders},
                                    bundle.depth, domain="any", exclude=history)
        feeds = {triton.HISTORY: row, triton.ITEMS: (items + 1)[None], **vectors}
        ranker = stages[triton.RANKER]
        (ranked,) = sessions[triton.RANKER].run(None, {t.name: feeds[t.name] for t in ranker.inputs})
        np.argsort(-ranked[0], kind="stable")[:10]
        done += 1
    return done / (time.perf_counter() - started)


def encoder_cache_lookups(metrics_url: str) -> dict[str, float]:
    """The control plane's encoder cache lookups so far, by "source/result"."""
    with urllib.request.urlopen(metrics_url, timeout=5) as answer:
        text = answer.read().decode()
    return {f"{sample.labels['source']}/{sample.labels['result']}": sample.value
            for family in text_string_to_metric_families(text) if family.name == "cinesync_encoder_cache_lookups"
            for sample in family.samples if sample.name.endswith("_total")}


def load_test(done: Published, rates: list[float], seconds: float, *, cache_entries: int) -> dict[str, object]:
    """Start a control plane keeping ``cache_entries`` encoded histories (0: every request encodes, as
    a user's first does), warm it (with a cache: one request per user, so every later one hits), run
    each rate, stop it."""
    os.environ["CINESYNC_ENCODER_CACHE_ENTRIES"] = str(cache_entries)
    done.stack.start_control_plane()
    try:
        try:
            wait_for_version(done.stack.grpc_address, done.users[0], done.version)
        except VersionTimeout:
            for log in sorted(done.settings.logs_dir.glob("*.log")):
                print(f"--- {log.name}", *log.read_text().splitlines()[-20:], sep="\n")
            raise
        warm_up = max(2.0, len(done.users) / 100.0) if cache_entries else 2.0
        asyncio.run(open_loop(done.stack.grpc_address, done.users, 100, warm_up))
        results = [asyncio.run(open_loop(done.stack.grpc_address, done.users, rate, seconds)) for rate in rates]
        lookups = encoder_cache_lookups(done.stack.replica_metrics[0])
    finally:
        done.stack.stop_control_planes()
    served = [r for r in results if not r["failures"] and r["p99_ms"] < 1000]
    under_50 = [r["achieved_per_s"] for r in results if not r["failures"] and r["p99_ms"] <= 50]
    return {"encoder_cache_entries": cache_entries, "open_loop": results, "encoder_cache_lookups": lookups,
            "saturation_per_s": max((r["achieved_per_s"] for r in served), default=0.0),
            "highest_rate_p99_under_50ms_per_s": max(under_50, default=0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/ml-100k")
    parser.add_argument("--split", choices=SPLITS, default="auto")
    parser.add_argument("--shares", default="0.25,0.5,0.8,1.0",
                        help="offered rates as shares of the in-process floor measured first in the same run")
    parser.add_argument("--rates", default="", help="more offered rates, requests per second")
    parser.add_argument("--caches", default="cold,warm",
                        help="cold: no encoder cache (every request encodes); warm: the default cache, warmed")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--run", type=Path, default=None, help="serve this trained run instead of training one")
    parser.add_argument("--out", type=Path, default=None, help="results file (default docs/bench/open-loop-<data>.json)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = str(Path(args.data).resolve()) if Path(args.data).is_dir() else args.data
    cache_entries = {"cold": 0, "warm": Settings().encoder_cache_entries}
    with tempfile.TemporaryDirectory() as root_name, published(data, Path(root_name), PipelineSpec(split=args.split),
                                                                    trained=args.run) as done:
        floor = in_process_floor(done.settings.serving_dir, done.version, done.export_dir, args.seconds)
        rates = sorted({*(round(float(s) * floor) for s in args.shares.split(",") if s),
                        *(float(r) for r in args.rates.split(",") if r)})
        runs = {mode: load_test(done, rates, args.seconds, cache_entries=cache_entries[mode])
                for mode in args.caches.split(",")}
    for run in runs.values():
        run["saturation_share_of_floor"] = round(float(run["saturation_per_s"]) / floor, 2)  # type: ignore[arg-type]
    report = {
        "data": args.data, "split": args.split, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{machine()}, generator on the same machine",
        "in_process_floor_per_s": round(floor, 1), "runs": runs,
    }
    print(json.dumps(report, indent=2))
    out = args.out or RESULTS / f"open-loop-{Path(args.data).name}-{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
