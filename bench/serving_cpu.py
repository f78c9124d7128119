"""Benchmark: where the served path spends its CPU. Publishes a trained run in a stack of its own
(Redis, Triton, one control plane), warms it, then sends an open loop at one rate and reads each
process's CPU time (/proc/<pid>/stat) before and after: CPU per request of the control plane (and
of its busiest threads), Triton, its python-backend stubs, Redis and this generator.

    .venv/bin/python -m bench.serving_cpu --run RUN [--rate 150] [--cache warm|cold]

Publish-time scheduling comes from the environment (CINESYNC_TRITON_INSTANCES,
CINESYNC_TRITON_QUEUE_DELAY_US), so the same command compares configurations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path

from bench.open_loop import open_loop, published
from cinesync.settings import Settings
from launcher.client import wait_for_version
from recsys.pipeline import PipelineSpec

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(stat_path: Path) -> float:
    """User plus system CPU seconds of a process or thread (0 when it has gone)."""
    try:
        fields = stat_path.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def role(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return "gone"
    for needle, name in (("triton_python_backend_stub", "python-backend stub"), ("tritonserver", "tritonserver"),
                         ("control_plane", "control plane"), ("redis-server", "redis-server")):
        if needle in command:
            return name
    return "generator" if pid == os.getpid() else command[:40]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a trained run (recsys.pipeline.train)")
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--cache", choices=("warm", "cold"), default="warm")
    args = parser.parse_args()
    os.environ["CINESYNC_ENCODER_CACHE_ENTRIES"] = str(Settings().encoder_cache_entries if args.cache == "warm" else 0)
    with tempfile.TemporaryDirectory() as root, published("", Path(root), PipelineSpec(), trained=args.run) as done:
        done.stack.start_control_plane()
        wait_for_version(done.stack.grpc_address, done.users[0], done.version)
        asyncio.run(open_loop(done.stack.grpc_address, done.users, 100, max(2.0, len(done.users) / 100)))
        pids = [os.getpid(), *done.stack.pids()]
        control_plane = next(p for p in pids if role(p) == "control plane")
        threads = {t.name: t / "stat" for t in Path(f"/proc/{control_plane}/task").iterdir()}
        before = {p: cpu_seconds(Path(f"/proc/{p}/stat")) for p in pids}
        threads_before = {t: cpu_seconds(path) for t, path in threads.items()}
        result = asyncio.run(open_loop(done.stack.grpc_address, done.users, args.rate, args.seconds))
        per_request = {f"{role(p)} {p}": round(1000 * (cpu_seconds(Path(f"/proc/{p}/stat")) - before[p])
                                               / result["requests"], 3) for p in pids}
        busiest = sorted(((cpu_seconds(path) - threads_before[t]) / result["requests"] * 1000, t)
                         for t, path in threads.items())[-4:]
    print(json.dumps({"open_loop": result, "cpu_ms_per_request": dict(sorted(per_request.items(),
                                                                              key=lambda kv: -kv[1])),
                      "control_plane_threads_ms_per_request": {t: round(ms, 3) for ms, t in reversed(busiest)}},
                     indent=2))


if __name__ == "__main__":
    main()
