"""Benchmark: the ceiling of the served path's transport alone, on this machine's cores.

A grpc.aio server (the control plane's server library and event loop, one process) answers every
Recommend at once with a fixed ten-item reply, doing nothing else; bench/open_loop.py's generator
sends it open-loop load on loopback at rising rates from the same cores. The highest rate it serves
bounds what any Recommend path in python gRPC can reach here, before Redis, retrieval or Triton
cost anything: set beside the pipelines' in-process floors (docs/benchmarks.md).

    .venv/bin/python -m bench.grpc_ceiling [--rates 200,400,...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time

import grpc

from bench.machine import machine
from bench.open_loop import RESULTS, open_loop
from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from launcher.services.process import free_port


class FixedReply(pb_grpc.RecommendationServiceServicer):
    """Answers every Recommend with the same ten items."""

    def __init__(self) -> None:
        self.reply = pb.RecommendResponse(
            items=[pb.RecommendedItem(item_id=f"i{n}", score=1.0 - n / 10) for n in range(10)],
            ranked_by=pb.RANKED_BY_TRITON, model_version="1")

    async def Recommend(self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext) -> pb.RecommendResponse:
        return self.reply


async def serve(port: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_RecommendationServiceServicer_to_server(FixedReply(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="200,400,600,800,1000,1200,1600")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    port = free_port("127.0.0.1")
    server = subprocess.Popen([sys.executable, "-m", "bench.grpc_ceiling", "--serve", str(port)])
    try:
        address = f"127.0.0.1:{port}"
        grpc.channel_ready_future(grpc.insecure_channel(address)).result(timeout=30)
        asyncio.run(open_loop(address, ["u"], 100, 2.0))
        results = [asyncio.run(open_loop(address, ["u"], float(rate), args.seconds)) for rate in args.rates.split(",")]
    finally:
        server.terminate()
        server.wait(timeout=10)
    served = [r["achieved_per_s"] for r in results if not r["failures"] and r["p99_ms"] < 1000]
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{machine()}, generator on the same machine",
              "open_loop": results, "saturation_per_s": max(served, default=0.0)}
    print(json.dumps(report, indent=2))
    (RESULTS / "grpc-ceiling.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
