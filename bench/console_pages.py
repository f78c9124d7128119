"""Benchmark: the operator console's server time per page on a real stack.

A run trained on --data (ML-100k by default, the default pipeline; or --run) is published in a
stack of its own (Redis, Triton, one control plane, the console); an experiment with five arms
(equal shares, ranked and retrieval-order alternately) is created and every user of the data visits
--visits times, watching an answer with probability 0.2 (RecordFeedback). Then each page is asked
--repeats times with a logged-in session (after 3 unmeasured asks); its server time is the page's
Server-Timing header (from the request reaching the console to the page rendered: AdminService
calls, statistics, plots), its wall time what the client waited. Everything runs on loopback and
every process is stopped at the end.

    .venv/bin/python -m bench.console_pages --data ../shared/data/ml-100k

Writes docs/bench/console-pages.json.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np

from bench.machine import machine
from bench.open_loop import RESULTS, published
from cinesync.v1 import admin_pb2 as admin
from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from launcher.client import admin_call, wait_for_version
from recsys.pipeline import PipelineSpec

EXPERIMENT = "five-arms"


def _traffic(address: str, users: list[str], visits: int, seed: int) -> int:
    """Every user visits ``visits`` times; 1 answer in 5 is watched. Returns the answers served."""
    rng, served = random.Random(seed), 0
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.RecommendationServiceStub(channel)
        for _ in range(visits):
            for user in users:
                answer = stub.Recommend(pb.RecommendRequest(user_id=user, k=10), timeout=10)
                served += 1
                if rng.random() < 0.2:
                    stub.RecordFeedback(pb.FeedbackRequest(request_id=answer.request_id, user_id=user,
                                                           item_id=answer.items[0].item_id,
                                                           kind=pb.FEEDBACK_KIND_WATCH), timeout=10)
    return served


def _timings(client: httpx.Client, path: str, repeats: int) -> dict[str, float]:
    server, wall = [], []
    for attempt in range(repeats + 3):
        started = time.perf_counter()
        reply = client.get(path)
        elapsed = 1000 * (time.perf_counter() - started)
        assert reply.status_code == 200, (path, reply.status_code, reply.text[:300])
        found = re.search(r"dur=([0-9.]+)", reply.headers.get("server-timing", ""))
        assert found, path
        if attempt >= 3:
            server.append(float(found.group(1)))
            wall.append(elapsed)
    return {"server_p50_ms": float(np.median(server)), "server_p95_ms": float(np.percentile(server, 95)),
            "wall_p50_ms": float(np.median(wall)), "wall_p95_ms": float(np.percentile(wall, 95)),
            "bytes": len(reply.content), "repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/ml-100k")
    parser.add_argument("--run", type=Path, default=None, help="serve this trained run instead of training one")
    parser.add_argument("--visits", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, published(args.data, Path(folder), PipelineSpec(),
                                                           trained=args.run) as stack_run:
        stack, settings, version, users = stack_run.stack, stack_run.settings, stack_run.version, stack_run.users
        stack.start_control_plane()
        stack.start_console()
        address, console = stack.grpc_address, stack.addresses["console"]
        token = settings.admin_token_file.read_text().strip()
        wait_for_version(address, users[0], version, timeout=120)
        arms = [admin.Variant(name=f"arm{n}", weight=0.2, retrieval_version=version,
                              ranking_version=version if n % 2 == 0 else 0) for n in range(5)]
        admin_call(address, "CreateExperiment", admin.Experiment(name=EXPERIMENT, variants=arms), token=token)
        deadline = time.monotonic() + 30
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.RecommendationServiceStub(channel)
            while stub.Recommend(pb.RecommendRequest(user_id=users[0], k=10), timeout=10).experiment != EXPERIMENT:
                assert time.monotonic() < deadline, "the experiment never routed"
                time.sleep(0.2)
        served = _traffic(address, users, args.visits, args.seed)
        pages = ["/versions", "/experiments", f"/experiments/{EXPERIMENT}",
                 f"/experiments/{EXPERIMENT}?metric=watches_per_user&cuped=off", "/experiments/new", "/jobs",
                 "/federated", "/monitoring"]
        with httpx.Client(base_url=console, timeout=30) as client:
            login = client.post("/login", data={"token": token, "next": "/versions"}, follow_redirects=True)
            assert login.status_code == 200, login.text[:300]
            result: dict[str, Any] = {page: _timings(client, page, args.repeats) for page in pages}
    report = {"data": args.data, "users": len(users), "answers": served, "arms": 5, "pages": result,
              "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "console-pages.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"{len(users)} users, {served} answers, 5 arms; server time per page (ms), {args.repeats} asks each:")
    print("| page | server p50 | server p95 | wall p50 | wall p95 | KB |\n|---|---|---|---|---|---|")
    for page, figures in result.items():
        print(f"| `{page}` | {figures['server_p50_ms']:.1f} | {figures['server_p95_ms']:.1f} | "
              f"{figures['wall_p50_ms']:.1f} | {figures['wall_p95_ms']:.1f} | {figures['bytes'] / 1024:.0f} |")


if __name__ == "__main__":
    main()
