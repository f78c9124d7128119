"""Benchmark: a soak, hours of steady mixed traffic against a real stack on loopback, to see whether
anything grows or drifts.

A run of --data is trained and exported first, and published twice as two versions (with
--two-runs the second version is a second run, seed 1: runs of two seeds can differ in serving cost,
1.8 x for the ranker in the rehearsal of docs/benchmarks.md (bench/stage_cost.py), and the switches below would then change
the load, not reveal a drift); a stack (its own Redis with the append-only file, Triton, the control
plane) serves them. The in-process floor of the served pipeline is measured on
this machine (bench/open_loop.py's), on histories as long as the traffic's (below). Before the clock starts, every user's live history is filled
(WATCHes of titles they have not seen, through RecordFeedback) to the path's history length: the
traffic's WATCHes would otherwise lengthen the histories for the first hour or so, and the control
plane's retrieval, which reads up to that many items of each, would cost more each minute by design,
not by a leak (the first soak, docs/benchmarks.md); the clock starts once the stack has settled
(the fill's nearline encodings done). Then traffic leaves at --share of the floor, open loop, for --minutes:
Recommend by user id (half), Recommend with a history sent in the request, WATCH and CLICK feedback
about an earlier answer, RecommendGroup of three users; both versions are published from the start (an
experiment between them) and every --switch-minutes the other one is made current. Every --sample-seconds the RSS
and open file descriptors of every process the stack started (and their children: Triton's
python-backend stubs) and Redis's used memory are sampled; latencies (from each request's scheduled
send time) and errors are summed per --window-minutes.

    .venv/bin/python -m bench.soak --data ../shared/data/ml-100k --split loo-time [--minutes 120] [--runs-dir DIR]

Checks (docs/benchmarks.md): no failed request; each serving process's RSS at the end within 10 %
of its value after the first 10 minutes (Triton, its stubs, the control plane; Redis's memory holds
the exposure and feedback streams, which grow with the traffic by design, and is reported beside);
the p99 of the last 10 minutes within 1.25 x the first 10's.
Results to docs/bench/soak-<data set>-<split>.json and a plot to docs/soak.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import redis

from bench.machine import machine
from bench.open_loop import in_process_floor
from bench.serving_cpu import cpu_seconds
from cinesync import versions
from cinesync.settings import Settings
from cinesync.splits import SPLITS
from cinesync.v1 import admin_pb2 as admin
from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from exporters.onnx_export import export_run
from exporters.publish import publish
from launcher.client import SERVICE_CONFIG, admin_call, wait_for_version
from launcher.services.process import command_line, descendants, free_port
from launcher.stack import Stack
from recsys.pipeline import PipelineSpec, train
from recsys.run import MANIFEST, TrainedRun, load_run

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "bench"
FIRST_MINUTES = 10  # the baseline the checks compare the end with
FILL_MARGIN = 5  # WATCHes beyond the history length: the published history holds a few more than training's
MIX = (("recommend", 0.5), ("recommend_history", 0.15), ("watch", 0.15), ("click", 0.1), ("group", 0.1))


@dataclass
class Sent:
    """What the traffic saw: per request (scheduled second since start, kind, latency s, ok)."""

    requests: list[tuple[float, str, float, bool]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


async def fill_histories(address: str, run: TrainedRun, length: int, *, in_flight: int = 32) -> int:
    """WATCH enough titles each user has not seen to bring their live history to ``length`` (a margin
    over the published one); the number of WATCHes sent."""
    chooser = random.Random(1)
    catalog = [item.item_id for item in run.items]
    limit = asyncio.Semaphore(in_flight)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.RecommendationServiceStub(channel)

        async def fill(index: int, user: str) -> int:
            seen = {run.items[i].item_id for i in run.history.train_sequences[index]}
            missing = length + FILL_MARGIN - len(seen)
            if missing <= 0:
                return 0
            unseen = [item for item in catalog if item not in seen]
            async with limit:
                answer = await stub.Recommend(pb.RecommendRequest(user_id=user, k=1), timeout=30)
                for item in chooser.sample(unseen, min(missing, len(unseen))):
                    await stub.RecordFeedback(pb.FeedbackRequest(request_id=answer.request_id, user_id=user,
                                                                 item_id=item, kind=pb.FEEDBACK_KIND_WATCH), timeout=30)
            return min(missing, len(unseen))

        return sum(await asyncio.gather(*(fill(index, user) for index, user in enumerate(run.user_ids))))


async def traffic(address: str, users: list[str], items: list[str], rate: float, seconds: float, sent: Sent) -> None:
    """Open loop at ``rate`` a second for ``seconds``: each request leaves at its scheduled time."""
    chooser = random.Random(0)
    last: dict[str, pb.RecommendResponse] = {}
    kinds = [kind for kind, _ in MIX]
    weights = [weight for _, weight in MIX]
    options = [("grpc.service_config", SERVICE_CONFIG), ("grpc.enable_retries", 1)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = pb_grpc.RecommendationServiceStub(channel)

        async def one(kind: str, user: str, scheduled: float, start: float) -> None:
            try:
                if kind == "recommend":
                    last[user] = await stub.Recommend(pb.RecommendRequest(user_id=user, k=10), timeout=5)
                elif kind == "recommend_history":
                    history = chooser.sample(items, chooser.randint(3, 30))
                    await stub.Recommend(pb.RecommendRequest(user_id=f"device-{user}", k=10, history=history), timeout=5)
                elif kind == "group":
                    members = [pb.GroupMember(user_id=u) for u in chooser.sample(users, 3)]
                    await stub.RecommendGroup(pb.GroupRecommendRequest(members=members, k=10), timeout=5)
                else:
                    answer = last.pop(user, None)
                    if answer is None or not answer.items:
                        answer = last[user] = await stub.Recommend(pb.RecommendRequest(user_id=user, k=10), timeout=5)
                    feedback = pb.FEEDBACK_KIND_WATCH if kind == "watch" else pb.FEEDBACK_KIND_CLICK
                    await stub.RecordFeedback(pb.FeedbackRequest(request_id=answer.request_id, user_id=user,
                                                                 item_id=answer.items[0].item_id, kind=feedback), timeout=5)
                ok = True
            except grpc.aio.AioRpcError as error:
                ok = False
                key = f"{kind}: {error.code().name}"
                sent.errors[key] = sent.errors.get(key, 0) + 1
            except Exception as error:  # noqa: BLE001 - an answer the traffic could not use is a failure too
                ok = False
                key = f"{kind}: {type(error).__name__}"
                sent.errors[key] = sent.errors.get(key, 0) + 1
            sent.requests.append((scheduled - start, kind, time.perf_counter() - scheduled, ok))

        start = time.perf_counter() + 0.1
        pending: set[asyncio.Task[None]] = set()
        for index in range(int(rate * seconds)):
            scheduled = start + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            kind = chooser.choices(kinds, weights)[0]
            task = asyncio.create_task(one(kind, users[chooser.randrange(len(users))], scheduled, start))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)


def process_sample(stack: Stack) -> dict[str, dict[str, float]]:
    """RSS (MiB), open file descriptors and how many of them are sockets, of every process the stack
    started and their children."""
    found: dict[str, dict[str, float]] = {}
    for process in stack.started:
        for pid in [process.pid, *descendants(process.pid)]:
            name = process.name if pid == process.pid else f"{process.name}/{_short(command_line(pid))}"
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                fds = [_target(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            except OSError:
                continue
            rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            found[name] = {"rss_mib": round(rss_kb / 1024, 1), "fds": len(fds),
                           "sockets": sum(fd.startswith("socket:") for fd in fds)}
    return found


def _target(fd: str) -> str:
    try:
        return os.readlink(fd)
    except OSError:  # closed since the listing
        return ""


def _short(command: str) -> str:
    """A child's name: a python-backend stub by its model, else its program."""
    words = command.split()
    if words and words[0].endswith("triton_python_backend_stub") and len(words) > 2:
        return f"{Path(words[1]).parent.parent.name} v{Path(words[1]).parent.name} {words[-2]}"
    return Path(words[0]).name if words else "?"


def sampler(stack: Stack, redis_url: str, every_s: float, stop: threading.Event, out: list[dict[str, Any]],
            sent: Sent, window_minutes: float) -> None:
    """Sample every ``every_s``; print each finished window's latencies and the newest sample (progress).
    Only the requests that ended since the last sample are read: this thread shares the traffic's GIL."""
    client = redis.Redis.from_url(redis_url)
    started = time.monotonic()
    seen, printed = 0, 0
    buckets: dict[int, list[tuple[float, bool]]] = {}
    while not stop.is_set():
        try:
            used = int(client.info("memory")["used_memory"])  # type: ignore[index]
        except redis.RedisError:
            used = -1
        out.append({"t": round(time.monotonic() - started, 1), "processes": process_sample(stack),
                    "redis_used_mib": round(used / 2**20, 2)})
        ended = sent.requests[seen:]
        seen += len(ended)
        _bucket(ended, window_minutes, buckets)
        # A window is finished once its last request's 5 s deadline (and some slack) has passed.
        while (printed + 1) * window_minutes * 60 + 10 <= time.monotonic() - started:
            row = _window_row(printed, window_minutes, buckets.pop(printed, []))
            memory = ", ".join(f"{name} {figures['rss_mib']:.0f} MiB/{figures['fds']} fds"
                               for name, figures in out[-1]["processes"].items())
            print(f"minute {row['start_min']:g}: {row['requests']} requests, {row['failed']} failed, "
                  f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms; {memory}; Redis {out[-1]['redis_used_mib']} MiB",
                  flush=True)
            printed += 1
        stop.wait(every_s)


def _bucket(requests: list[tuple[float, str, float, bool]], minutes: float,
            buckets: dict[int, list[tuple[float, bool]]]) -> None:
    for at, _, latency, ok in requests:
        buckets.setdefault(int(at // (minutes * 60)), []).append((latency, ok))


def _window_row(index: int, minutes: float, bucket: list[tuple[float, bool]]) -> dict[str, float]:
    latencies = sorted(latency for latency, _ in bucket) or [float("nan")]
    return {"start_min": index * minutes, "requests": len(bucket), "failed": sum(not ok for _, ok in bucket),
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
            "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 2)}


def windows(sent: Sent, minutes: float) -> list[dict[str, float]]:
    """p50, p99 (ms), requests and failures per window of ``minutes``."""
    buckets: dict[int, list[tuple[float, bool]]] = {}
    _bucket(sent.requests, minutes, buckets)
    return [_window_row(index, minutes, buckets[index]) for index in sorted(buckets)]


def p99_between(sent: Sent, start_s: float, end_s: float) -> float:
    latencies = sorted(latency for at, _, latency, _ in sent.requests if start_s <= at < end_s)
    return round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 2) if latencies else float("nan")


def checks(sent: Sent, samples: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The soak's targets: no failure, RSS after FIRST_MINUTES against the end, p99 first 10 min against last 10."""
    first = min(FIRST_MINUTES * 60, seconds / 2)
    baseline = min((s for s in samples if s["t"] >= first), key=lambda s: s["t"], default=samples[0])
    end = samples[-1]
    growth = {name: round(end["processes"][name]["rss_mib"] / figures["rss_mib"], 3)
              for name, figures in baseline["processes"].items() if name in end["processes"] and figures["rss_mib"]}
    serving = {name: g for name, g in growth.items() if not name.startswith("redis")}  # Redis holds data: below
    p99_first, p99_last = p99_between(sent, 0, first), p99_between(sent, seconds - first, seconds)
    return {
        "failed": sum(not ok for *_, ok in sent.requests), "requests": len(sent.requests),
        "rss_end_over_baseline": growth, "serving_rss_within_10_percent": all(g <= 1.10 for g in serving.values()),
        "fds_baseline_end": {name: [figures["fds"], end["processes"][name]["fds"]]
                             for name, figures in baseline["processes"].items() if name in end["processes"]},
        "p99_first_ms": p99_first, "p99_last_ms": p99_last, "p99_ratio": round(p99_last / p99_first, 3),
        "p99_within_1_25": p99_last <= 1.25 * p99_first,
        "redis_used_mib_baseline_end": [baseline["redis_used_mib"], end["redis_used_mib"]],
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report["samples"]
    minutes = [s["t"] / 60 for s in samples]
    figure, (rss, latency) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    names = sorted({name for s in samples for name in s["processes"]})
    for name in names:
        rss.plot(minutes, [s["processes"].get(name, {}).get("rss_mib", float("nan")) for s in samples], label=name)
    rss.plot(minutes, [s["redis_used_mib"] for s in samples], "k--", label="redis used memory")
    rss.set_ylabel("MiB")
    rss.set_yscale("log")
    rss.legend(fontsize=6, ncol=2)
    rows = report["windows"]
    middle = [row["start_min"] + report["window_minutes"] / 2 for row in rows]
    latency.plot(middle, [row["p50_ms"] for row in rows], "o-", label="p50")
    latency.plot(middle, [row["p99_ms"] for row in rows], "s-", label="p99")
    latency.set_ylabel("ms (from scheduled send)")
    latency.set_xlabel("minutes")
    latency.legend()
    figure.suptitle(f"soak: {report['data']} {report['split']}, {report['rate_per_s']}/s, {report['machine']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/ml-100k")
    parser.add_argument("--split", choices=SPLITS, default="loo-time")
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--share", type=float, default=0.5, help="the offered rate as a share of the in-process floor")
    parser.add_argument("--switch-minutes", type=float, default=20.0, help="the current version changes this often")
    parser.add_argument("--sample-seconds", type=float, default=30.0)
    parser.add_argument("--window-minutes", type=float, default=5.0)
    parser.add_argument("--two-runs", action="store_true",
                        help="the second version from a second training run (seed 1), not the first run again")
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="train the two runs here, or reuse those an earlier soak left (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "soak.png")
    args = parser.parse_args()
    data = str(Path(args.data).resolve()) if Path(args.data).is_dir() else args.data
    with tempfile.TemporaryDirectory(prefix="cinesync-soak-") as scratch:
        root = Path(scratch)
        seeds = (0, 1) if args.two_runs else (0,)
        runs = [load_run(trained(data, args.runs_dir or root / "runs", args.split, seed)) for seed in seeds]
        for index, run in enumerate(runs):
            export_run(run, root / f"onnx-{index}")
        settings = Settings(home=root / "home", model_repository=root / "repo", grpc_port=0, metrics_port=0,
                            triton_http_port=0, triton_grpc_port=0, triton_metrics_port=0,
                            redis_url=f"redis://127.0.0.1:{free_port()}/0")  # its own, append-only, sampled
        with Stack(settings, say=print) as stack:
            stack.ensure_redis()
            stack.ensure_triton()
            serving = settings.model_copy(update={"triton_url": stack.triton_url})
            first = publish(runs[0], root / "onnx-0", serving)
            second = publish(runs[-1], root / f"onnx-{len(runs) - 1}", serving, make_current=False)
            floor = in_process_floor(settings.serving_dir, first, root / "onnx-0", 20.0,
                                     fill_to=runs[0].spec.history_length)  # the histories the traffic reads
            stack.start_control_plane()
            wait_for_version(stack.grpc_address, runs[0].user_ids[0], first)
            token = settings.admin_token_list()[0]
            # Both versions serve from the start (the experiment's arms), so that switching the current
            # one later loads nothing new: what grows after the first minutes is not by design.
            admin_call(stack.grpc_address, "CreateExperiment", admin.Experiment(name="soak", variants=[
                admin.Variant(name="first", weight=0.5, retrieval_version=first, ranking_version=first),
                admin.Variant(name="second", weight=0.5, retrieval_version=second, ranking_version=second)]),
                token=token)
            started = time.perf_counter()
            filled = asyncio.run(fill_histories(stack.grpc_address, runs[0], runs[0].spec.history_length))
            print(f"live histories filled to {runs[0].spec.history_length} items: {filled} WATCHes in "
                  f"{time.perf_counter() - started:.0f} s")
            settled = settle(stack)
            print(f"the stack settled {settled:.0f} s after the fill (its WATCHes' nearline encodings done)")
            rate = round(args.share * floor, 1)
            seconds = args.minutes * 60
            sent, stop = Sent(), threading.Event()
            samples: list[dict[str, Any]] = []
            watcher = threading.Thread(target=sampler, args=(stack, settings.redis_url, args.sample_seconds, stop, samples,
                                                            sent, args.window_minutes))
            switcher = threading.Thread(target=switch_versions, args=(settings, [first, second], args.switch_minutes, stop))
            watcher.start()
            switcher.start()
            try:
                items = [item.item_id for item in runs[0].items]
                asyncio.run(traffic(stack.grpc_address, runs[0].user_ids, items, rate, seconds, sent))
            finally:
                stop.set()
                watcher.join()
                switcher.join()
    report = {
        "command": "python -m bench.soak " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                               if k not in ("out", "plot", "runs_dir")),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "data": args.data, "split": args.split,
        "machine": machine(), "in_process_floor_per_s": round(floor, 1),
        "rate_per_s": rate, "mix": dict(MIX), "window_minutes": args.window_minutes,
        "histories_filled_to": runs[0].spec.history_length, "fill_watches": filled,
        "checks": checks(sent, samples, seconds), "errors": sent.errors,
        "windows": windows(sent, args.window_minutes), "samples": samples,
    }
    out = args.out or RESULTS / f"soak-{Path(args.data).name}-{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    plot(report, args.plot)
    print(json.dumps(report["checks"], indent=2))
    print(f"written {out} and {args.plot}")


def settle(stack: Stack, *, idle_share: float = 0.1, every_s: float = 5.0, at_most_s: float = 300.0) -> float:
    """Wait until the stack's processes together use under ``idle_share`` of a core over ``every_s``
    (the fill's WATCHes leave nearline encodings behind them); the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < at_most_s:
        stats = [Path(f"/proc/{pid}/stat") for pid in stack.pids()]
        before = sum(map(cpu_seconds, stats))
        time.sleep(every_s)
        if sum(map(cpu_seconds, stats)) - before < idle_share * every_s:
            break
    return time.monotonic() - started


def trained(data: str, runs_dir: Path, split: str, seed: int) -> Path:
    """The run of ``data`` and ``split`` with ``seed`` in ``runs_dir``: one left there before, else trained now."""
    folder = runs_dir / f"{Path(data).name}-{split}-seed{seed}"
    earlier = sorted(folder.glob(f"*/{MANIFEST}"))
    if earlier:
        print(f"reusing the run {earlier[-1].parent}")
        return earlier[-1].parent
    return train(data, folder, PipelineSpec(split=split, seed=seed))


def switch_versions(settings: Settings, published: list[int], minutes: float, stop: threading.Event) -> None:
    """Every ``minutes`` the other of the two ``published`` versions is made current."""
    while not stop.wait(minutes * 60):
        current = versions.current_version(settings.serving_dir)
        other = next(v for v in published if v != current)
        versions.promote(settings.model_repository.resolve(), settings.serving_dir, other)


if __name__ == "__main__":
    main()
