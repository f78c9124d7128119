"""Benchmark: how every cost of the whole pipeline grows with users and titles, on the seeded generator.

For each size point (users x titles; each user's interaction count Poisson with mean
--mean-interactions, as recsys.data.synthetic draws it, so every point keeps the same per-user
distribution) the run's peak memory is estimated first (recsys.footprint) and a point beyond the
memory available is refused with the estimate and the limit. Then every step runs in a child
process of its own, timed, with its peak RSS from the kernel (wait4): generate the data, train the
default pipeline (auto split), evaluate on test, export to ONNX, and serve: Redis and Triton start,
the version is published (FAISS built and tuned to its recall target), one control plane starts,
Recommend runs open loop at --rate for --seconds with users drawn at random (every request a user's
first: an encoder-cache miss) twice: at once, while the control plane seeds Redis with every user's
published history, and again once that is done; then Redis memory per live history, the RSS of the
control plane, Triton (with its python-backend stubs) and Redis, and the sizes of the export, bundle
and model repository are read.
Everything started is stopped, loopback only.

    .venv/bin/python -m bench.scale [--points 6000x3700,50000x10000,200000x20000]

Results: docs/bench/scale.json (each point as it finishes); bench/plot_scale.py draws docs/scale.png.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis
import torch

from bench.machine import machine
from bench.open_loop import RESULTS, open_loop
from cinesync.bundle import MANIFEST
from cinesync.settings import Settings
from exporters.onnx_export import export_run
from exporters.publish import publish
from launcher.client import wait_for_version
from launcher.stack import Stack, pick_port
from recsys.data import load_dataset
from recsys.footprint import GIB, RunTooLarge, available_bytes, refuse_beyond
from recsys.pipeline import PipelineSpec, evaluate, train
from recsys.run import load_run

STEPS = ("generate", "train", "evaluate", "export", "serve")
ROOT_FILE = "scale-point.json"  # in the point's folder: what earlier steps handed on


def data_spec(users: int, items: int, mean: int, seed: int) -> str:
    return f"synthetic:n_users={users},n_items={items},mean_interactions={mean},seed={seed}"


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (0 when it is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) * 1024 for line in lines if line.startswith("VmRSS:")), 0)


def with_children(pid: int) -> list[int]:
    """``pid`` and its direct children (Triton's python-backend stubs)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return [pid, *children]


def seeding_seconds(log: Path, *, timeout: float = 1800.0) -> float:
    """Seconds the control plane took to seed the live histories, from its log's timestamps: from
    "serving model version" to "seeded the live histories" (waited for up to ``timeout``)."""
    started = time.monotonic()

    def stamp(line: str) -> float:
        return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()

    while True:
        lines = log.read_text().splitlines()
        serving = next((stamp(line) for line in lines if "serving model version" in line), None)
        seeded = next((stamp(line) for line in lines if "seeded the live histories" in line), None)
        if serving is not None and seeded is not None:
            return round(seeded - serving, 1)
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"live histories not seeded within {timeout:.0f} s ({log})")
        time.sleep(0.5)


def step_generate(point: dict[str, Any]) -> dict[str, Any]:
    dataset = load_dataset(point["data"])
    return {"interactions": dataset.n_interactions, "users": dataset.n_users, "items": dataset.n_items}


def step_train(point: dict[str, Any]) -> dict[str, Any]:
    def progress(stage: str, step: int, steps: int, value: float, measure: str) -> None:
        if step in (1, steps):
            print(f"  {time.strftime('%H:%M:%S')} {stage} {step}/{steps} {value:.4f} {measure}", file=sys.stderr, flush=True)

    spec = PipelineSpec.from_dict(point["pipeline"])
    folder = train(point["data"], Path(point["root"]) / "runs", spec, progress)
    manifest = json.loads((folder / "manifest.json").read_text())
    return {"run": str(folder), "run_bytes": folder_bytes(folder),
            "chosen": {kind["kind"]: kind["chosen"] for kind in manifest["kinds"]}}


def step_evaluate(point: dict[str, Any]) -> dict[str, Any]:
    metrics = evaluate(Path(point["run"]))
    return {"ndcg@10": {kind: round(values["ndcg@10"], 4) for kind, values in metrics.items()},
            "evaluated_users": int(metrics["cascade"]["users"])}


def step_export(point: dict[str, Any]) -> dict[str, Any]:
    export_dir = Path(point["root"]) / "onnx"
    export_run(load_run(Path(point["run"])), export_dir)
    return {"export_bytes": folder_bytes(export_dir)}


def step_serve(point: dict[str, Any]) -> dict[str, Any]:
    root = Path(point["root"])
    for earlier in (root / "home", root / "repo"):  # a kept point served again starts afresh
        shutil.rmtree(earlier, ignore_errors=True)
    run = load_run(Path(point["run"]))
    settings = Settings(home=root / "home", model_repository=root / "repo", grpc_port=0, metrics_port=0,
                        triton_http_port=0, triton_grpc_port=0, triton_metrics_port=0,
                        redis_url=f"redis://127.0.0.1:{pick_port('127.0.0.1', 0)}/0")
    with Stack(settings, say=lambda line: None) as stack:
        stack.ensure_redis()
        stack.ensure_triton()
        started = time.monotonic()
        version = publish(run, root / "onnx", settings.model_copy(update={"triton_url": stack.triton_url}))
        publish_seconds = time.monotonic() - started
        bundle_dir = settings.serving_dir / str(version)
        plans = {r["member"]: r["plan"] for r in json.loads((bundle_dir / MANIFEST).read_text())["retrievers"]}
        before = int(redis.Redis.from_url(settings.redis_url).info("memory")["used_memory"])
        started = time.monotonic()
        stack.start_control_plane()
        pids = {process.name: process.pid for process in stack.started}
        wait_for_version(stack.grpc_address, run.user_ids[0], version, timeout=600)
        first_answer_seconds = time.monotonic() - started
        rng = np.random.default_rng(point["seed"])
        users = [run.user_ids[u] for u in rng.choice(len(run.user_ids), len(run.user_ids), replace=False)]
        # At once: the control plane seeds Redis with every user's published history meanwhile.
        while_seeding = asyncio.run(open_loop(stack.grpc_address, users, point["rate"], point["seconds"]))
        seeded_seconds = seeding_seconds(settings.logs_dir / "control_plane.log")
        middle = len(users) // 2  # users neither load reads: connections warmed, not the cache
        asyncio.run(open_loop(stack.grpc_address, users[middle : middle + 200], point["rate"], 2.0))
        steady = asyncio.run(open_loop(stack.grpc_address, users[::-1], point["rate"], point["seconds"]))
        live_histories_bytes = int(redis.Redis.from_url(settings.redis_url).info("memory")["used_memory"]) - before
        rss = {"control_plane": rss_bytes(pids["control plane"]),
               "triton": sum(rss_bytes(pid) for pid in with_children(pids["triton"])),
               "redis": rss_bytes(pids.get("redis", 0))}
    return {
        "publish_seconds": round(publish_seconds, 1), "first_answer_seconds": round(first_answer_seconds, 1),
        "retrieval_indexes": plans,
        "seeded_seconds": seeded_seconds, "recommend_while_seeding": while_seeding, "recommend": steady,
        "rss_bytes": rss, "redis_bytes_per_live_history": round(live_histories_bytes / len(run.user_ids)),
        "bundle_bytes": folder_bytes(bundle_dir), "repository_bytes": folder_bytes(settings.model_repository),
    }


def run_step(name: str, point: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Run step ``name`` in a child process; its result with wall seconds and peak RSS."""
    (folder / ROOT_FILE).write_text(json.dumps(point))
    out = folder / f"{name}.json"
    started = time.monotonic()
    out.unlink(missing_ok=True)
    child = subprocess.Popen([sys.executable, "-m", "bench.scale", "--step", name, "--point-file", str(folder / ROOT_FILE),
                              "--step-out", str(out)])
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if child.returncode != 0:
        raise RuntimeError(f"step {name} failed with exit status {child.returncode}")
    return {**json.loads(out.read_text()), "seconds": round(seconds, 1), "peak_rss_bytes": usage.ru_maxrss * 1024}


def run_point(users: int, items: int, args: argparse.Namespace, folder: Path, steps: list[str]) -> dict[str, Any]:
    spec = PipelineSpec(options={"ease": {"l2_grid": args.ease_l2, "emphasis_grid": "0", "popularity_tilt_grid": "0"}})
    expected = users * args.mean_interactions
    footprint = spec.footprint(users=users, items=items, interactions=expected)
    result: dict[str, Any] = {"users": users, "items": items, "estimated_peak_bytes": footprint.terms}
    try:
        refuse_beyond(footprint, limit=available_bytes(), what=f"{users} users x {items} titles")
    except RunTooLarge as refused:
        result["refused"] = str(refused)
        print(refused, file=sys.stderr)
        return result
    point: dict[str, Any] = {"data": data_spec(users, items, args.mean_interactions, args.seed), "root": str(folder),
                             "pipeline": spec.to_dict(), "seed": args.seed, "rate": args.rate,
                             "seconds": args.seconds}
    for name in STEPS:
        if name in steps:
            print(f"{time.strftime('%H:%M:%S')} {users} x {items}: {name}", file=sys.stderr, flush=True)
            result[name] = run_step(name, point, folder)
            (folder / f"{name}.result.json").write_text(json.dumps(result[name]))
        else:
            result[name] = json.loads((folder / f"{name}.result.json").read_text())  # kept from an earlier run
        point.update({key: value for key, value in result[name].items() if key == "run"})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", default="6000x3700,50000x10000,200000x20000", help="users x titles, comma-separated")
    parser.add_argument("--mean-interactions", type=int, default=40)
    parser.add_argument("--ease-l2", default="500",
                        help="EASE's λ grid at every point (one value: each point measures one fit; the default "
                             "grid multiplies the fit by its size)")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep each point's run, export and step results under this folder (default: removed)")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help="steps to run; with --keep, the others' results are read back from an earlier run there")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--point-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--step-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:  # a child: one step of one point
        torch.set_num_threads(2)
        point = json.loads(args.point_file.read_text())
        args.step_out.write_text(json.dumps(globals()[f"step_{args.step}"](point)))
        return
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{machine()}, "
                   f"{(available_bytes() or 0) / GIB:.1f} GiB available at start",
        "command": " ".join(["bench/scale.py", *sys.argv[1:]]),
        "mean_interactions": args.mean_interactions, "rate_per_s": args.rate, "points": [],
    }
    for text in args.points.split(","):
        users, items = (int(part) for part in text.lower().split("x"))
        if args.keep is not None:
            folder = args.keep / f"{users}x{items}"
            folder.mkdir(parents=True, exist_ok=True)
            report["points"].append(run_point(users, items, args, folder, args.steps.split(",")))
        else:
            with tempfile.TemporaryDirectory(prefix=f"scale-{users}x{items}-") as name:
                report["points"].append(run_point(users, items, args, Path(name), list(STEPS)))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
