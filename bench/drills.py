"""Benchmark: reliability drills, one after another, against a real stack under steady open-loop load.

A stack on loopback (Redis with its append-only file, a Celery worker, Triton, two control-plane
replicas behind one round-robin target) serves a version trained through the worker; open-loop
traffic (Recommend, and a WATCH for an item of a user's earlier answer) runs at a fixed rate the
whole time. Each drill injects one fault, waits for the stack to recover and settles; its row counts
the requests sent during it, those that failed, those answered degraded, the seconds from the fault
to the first answer ranked by Triton again, and what it says about the writes it touched. At the
end, every write the traffic had acknowledged is looked for: each exposure (an answered request id)
and each feedback in their Redis streams, each acknowledged WATCH in the user's live history in the
order the watches were acknowledged, each version a job reported published as a whole version.

    .venv/bin/python -m bench.drills [--data synthetic] [--rate 30] [--only triton,redis] [--out FILE]

Drills: triton (Triton SIGKILLed; the launcher restarts it), stub (one python-backend stub
process SIGKILLed, Triton left up), redis (SIGKILLed and restarted by the launcher: watches,
feedback and exposures wait in the control planes meanwhile), replica (one of the two control
planes SIGKILLed), worker-training, worker-export, worker-publish (the worker SIGKILLed while a
training job is in that step; the launcher restarts it and the broker delivers the step again),
truncated (a new version whose model file is cut short is published: refused before it serves),
disk-full (a publish onto a small tmpfs filled first: refused whole, the current version serves on),
superlink (the SuperLink SIGKILLed mid-round of a federated run), stop (`cinesync serve` stopped with three SIGTERMs in a row: no process left). A drill that cannot
run here says so in its row and does not count as passed. Everything runs on loopback: the runner
refuses any other host, sends a bounded number of requests, and stops every process it started.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import redis

from bench.machine import machine
from cinesync import jobs, versions
from cinesync.settings import Settings
from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from launcher.client import channel as channel_to
from launcher.client import wait_for_version
from launcher.services.process import ManagedProcess, alive, command_line, descendants, free_port
from launcher.stack import Stack

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "bench"
MAX_REQUESTS = 200_000  # a bound on the whole run, whatever --rate and the drills' durations
RECOVERY_S = 60.0  # a drill whose stack is not ranking again by then is reported as such
DEADLINE_S = 2.0  # of each request of the traffic
SETTLE_S = 3.0
DRILLS = ("triton", "stub", "redis", "replica", "worker-training", "worker-export", "worker-publish",
          "truncated", "disk-full", "superlink", "stop")
SMALL_DISK_MB = 3072  # the tmpfs the repository and the home live on, for the disk-full drill


def loopback(host: str) -> str:
    """``host`` if every address it resolves to is a loopback one; refuses anything else."""
    addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise SystemExit(f"drills run on loopback only; {host!r} resolves to {', '.join(sorted(addresses))}")
    return host


@dataclass
class Answer:
    """One request of the traffic: when it was scheduled and how it ended."""

    at: float
    kind: str  # recommend | watch
    ok: bool
    degraded: bool = False
    ranked_by_triton: bool = False
    error: str = ""


@dataclass
class Traffic:
    """Open-loop requests at ``rate`` a second until stopped: each is sent at its scheduled time
    whatever the earlier ones are doing (gRPC futures), a fifth of them WATCHes of an item of the
    user's last answer. Records every outcome and what the stack acknowledged."""

    address: str
    users: list[str]
    rate: float
    answers: list[Answer] = field(default_factory=list)
    exposures: set[str] = field(default_factory=set)  # request ids of answers
    feedback: set[str] = field(default_factory=set)  # request ids of acknowledged feedback
    watches: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # user -> items, ack order
    _last: dict[str, pb.RecommendResponse] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._channel = channel_to(self.address)
        self._stub = pb_grpc.RecommendationServiceStub(self._channel)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        time.sleep(3.0)  # the calls in flight end (each has a 2 s deadline)
        self._channel.close()

    def _run(self) -> None:
        chooser = random.Random(0)
        started = time.monotonic()
        for n in range(MAX_REQUESTS):
            scheduled = started + n / self.rate
            if self._stop.wait(max(0.0, scheduled - time.monotonic())):
                return
            user = self.users[chooser.randrange(len(self.users))]
            with self._lock:
                last = self._last.get(user)
            if last is not None and last.items and chooser.random() < 0.2:
                self._watch(scheduled, user, last)
            else:
                self._recommend(scheduled, user)

    def _recommend(self, at: float, user: str) -> None:
        call = self._stub.Recommend.future(pb.RecommendRequest(user_id=user, k=10), timeout=DEADLINE_S)

        def done(future: grpc.Future) -> None:
            try:
                answer: pb.RecommendResponse = future.result()
            except grpc.RpcError as error:
                self._add(Answer(at, "recommend", False, error=str(error.code())))
                return
            with self._lock:
                self._last[user] = answer
                self.exposures.add(answer.request_id)
            self._add(Answer(at, "recommend", True, answer.degraded, answer.ranked_by == pb.RANKED_BY_TRITON))

        call.add_done_callback(done)

    def _watch(self, at: float, user: str, last: pb.RecommendResponse) -> None:
        item = last.items[0].item_id
        with self._lock:
            self._last.pop(user, None)  # one watch per answer
        request = pb.FeedbackRequest(request_id=last.request_id, user_id=user, item_id=item,
                                     kind=pb.FEEDBACK_KIND_WATCH)
        call = self._stub.RecordFeedback.future(request, timeout=DEADLINE_S)

        def done(future: grpc.Future) -> None:
            try:
                future.result()
            except grpc.RpcError as error:
                self._add(Answer(at, "watch", False, error=str(error.code())))
                return
            with self._lock:
                self.feedback.add(last.request_id)
                self.watches[user].append(item)
            self._add(Answer(at, "watch", True))

        call.add_done_callback(done)

    def _add(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)

    def between(self, start: float, end: float) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if start <= a.at < end]

    def ranked_again(self, fault: float, timeout: float) -> float | None:
        """When answers were whole again for good after ``fault``: steady_since over the Recommend
        answers after it, ranked by Triton and not degraded (waits for it up to ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            settled = time.monotonic() - DEADLINE_S - 0.5  # every request sent before this has ended
            with self._lock:
                after = [(a.at, a.ranked_by_triton and not a.degraded) for a in self.answers
                         if fault < a.at < settled and a.kind == "recommend"]
            since = steady_since(after)
            if since is not None:
                return since
            time.sleep(0.2)
        return None


def steady_since(events: Iterable[tuple[float, bool]], steady_s: float = 2.0) -> float | None:
    """The time of the first good event (``(time, good)``) followed by ``steady_s`` of good events
    only; None if there is no such stretch (yet)."""
    start = None
    for at, good in sorted(events):
        if not good:
            start = None
        elif start is None:
            start = at
        elif at - start >= steady_s:
            return start
    return None


@dataclass
class Row:
    """One drill's figures."""

    drill: str
    ran: bool = True
    passed: bool = False
    sent: int = 0
    failed: int = 0
    degraded: int = 0
    ranked_again_s: float | None = None  # fault -> first answer ranked by Triton again
    seconds: float = 0.0
    note: str = ""
    failures: dict[str, int] = field(default_factory=dict)


class Drills:
    """The stack, its traffic and the drills; ``run(name)`` makes one row."""

    def __init__(self, stack: Stack, traffic: Traffic, data: str, workdir: Path, small_disk: Path | None) -> None:
        self.stack, self.traffic, self.data, self.workdir = stack, traffic, data, workdir
        self.small_disk = small_disk  # the file system of the repository and home, when it is a small one
        self.app = jobs.celery_app(stack.settings)
        self.published: list[int] = []  # versions jobs reported published
        self._fresh: tuple[Any, Path] | None = None
        self.last_job: dict[str, Any] = {}

    def unpublished_export(self, name: str) -> tuple[Any, Path]:
        """(run, export folder): a run trained through the worker and never published, exported here
        into a new folder ``name`` (each copy publishes as a new version until one is published)."""
        from exporters.onnx_export import export_run
        from recsys.run import load_run

        if self._fresh is None:
            last = jobs.pipeline(self.app, self.data, publish=False).apply_async(queue=self.stack.settings.job_queue)
            done = list(jobs.progress(self.app, jobs.chain_ids(last), timeout=900))[-1]["result"]
            run = load_run(Path(done["run_dir"]), fitted_on="train")
            export_run(run, self.workdir / "fresh-export")
            self._fresh = (run, self.workdir / "fresh-export")
        run, folder = self._fresh
        shutil.copytree(folder, self.workdir / name)
        return run, self.workdir / name

    def process(self, name: str) -> ManagedProcess:
        return next(p for p in self.stack.started if p.name == name)

    def run(self, name: str) -> Row:
        drill: Callable[[Row], float | None] = getattr(self, "drill_" + name.replace("-", "_"))
        row = Row(name)
        started = time.monotonic()
        try:
            fault = drill(row)
        except Unavailable as reason:
            row.ran, row.note = False, f"cannot run here: {reason}"
            fault = None
        ranked = None
        if fault is not None:
            ranked = self.traffic.ranked_again(fault, RECOVERY_S)
            row.ranked_again_s = None if ranked is None else round(max(0.0, ranked - fault), 2)
        time.sleep(SETTLE_S)
        ended = time.monotonic()
        answers = self.traffic.between(started, ended)
        row.sent, row.seconds = len(answers), round(ended - started, 1)
        row.failed = sum(not a.ok for a in answers)
        row.degraded = sum(a.degraded for a in answers)
        for answer in answers:
            if not answer.ok:
                row.failures[answer.error] = row.failures.get(answer.error, 0) + 1
        if fault is not None:  # a fault on the serving path: ranked again within 10 s, and for good
            relapsed = ranked is not None and any(a.kind == "recommend" and (a.degraded or not a.ranked_by_triton)
                                                  for a in answers if a.at >= ranked)
            if relapsed:
                row.note += "; degraded again after it was ranked again"
            row.passed = (row.passed and row.ranked_again_s is not None and row.ranked_again_s <= 10.0
                          and not relapsed)
        return row

    # -- Triton-side faults -------------------------------------------------------------------
    def drill_triton(self, row: Row) -> float:
        return self._sigkill(row, self.process("triton"))

    def drill_stub(self, row: Row) -> float:
        triton = self.process("triton")
        stubs = [pid for pid in descendants(triton.pid) if "triton_python_backend_stub" in command_line(pid)]
        if not stubs:
            raise Unavailable("no python-backend stub process under Triton")
        fault = time.monotonic()
        os.kill(stubs[0], signal.SIGKILL)
        time.sleep(DEADLINE_S + 0.5)
        felt = any(a.degraded for a in self.traffic.between(fault, time.monotonic()))
        row.passed = triton.running() and felt  # a stub the traffic does not use would test nothing
        row.note = (f"stub pid {stubs[0]} (one of {len(stubs)}); "
                    f"Triton {'stayed up' if triton.running() else 'died too'}; "
                    f"{'answers degraded until its model was reloaded' if felt else 'no answer was affected'}")
        return fault

    # -- Redis ----------------------------------------------------------------------------------
    def drill_redis(self, row: Row) -> float:
        row.note = "watches, feedback and exposures wait in the control planes; checked at the end"
        return self._sigkill(row, self.process("redis"))

    # -- the control plane -----------------------------------------------------------------------
    def drill_replica(self, row: Row) -> float:
        replica = next(p for p in self.stack.started if p.name.startswith("control plane"))
        row.note = (f"{replica.name} SIGKILLed; calls in flight on it fail, the client retries Recommend on the "
                    "other replica (RecordFeedback is not retried)")
        return self._sigkill(row, replica)

    # -- the worker -------------------------------------------------------------------------------
    def drill_worker_training(self, row: Row) -> None:
        self._worker_during(row, "train")

    def drill_worker_export(self, row: Row) -> None:
        self._worker_during(row, "export")

    def drill_worker_publish(self, row: Row) -> None:
        self._worker_during(row, "publish")

    def _worker_during(self, row: Row, step: str) -> None:
        worker = self.process("celery worker")
        last = jobs.pipeline(self.app, self.data, {"options": {"two_tower": {"epochs": 3}}}, serve="train"
                             ).apply_async(queue=self.stack.settings.job_queue)
        ids = jobs.chain_ids(last)
        deadline = time.monotonic() + 600
        while jobs.status(self.app, ids).get("step") != step:
            if time.monotonic() > deadline or jobs.status(self.app, ids)["state"] in ("SUCCESS", "FAILURE"):
                row.note = f"the job was never seen in its {step} step"
                return
            time.sleep(0.02)
        killed = worker.pid
        worker.popen.kill()
        try:
            final = list(jobs.progress(self.app, ids, timeout=900))[-1]
        except jobs.JobFailed as error:
            row.note = f"worker {killed} SIGKILLed in {step}; the job failed: {error}"
            return
        version = int(final["result"]["version"])
        self.published.append(version)
        self.last_job = final["result"]
        whole = version in versions.whole_versions(self.stack.repository, self.stack.settings.serving_dir)
        row.passed = whole and worker.pid != killed
        row.note = (f"worker {killed} SIGKILLed in {step}; restarted as {worker.pid}; the step ran again and "
                    f"published version {version} ({'whole' if whole else 'NOT whole'})")

    # -- the repository ------------------------------------------------------------------------------
    def drill_truncated(self, row: Row) -> None:
        """A new version whose largest model file was cut short on its way: refused before it serves."""
        from exporters.publish import publish

        run, export = self.unpublished_export("truncated-export")
        model = max(export.rglob("*.onnx"), key=lambda p: p.stat().st_size)
        model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
        settings = self.stack.settings.model_copy(update={"triton_url": self.stack.triton_url})
        before = versions.current_version(settings.serving_dir)
        whole_before = set(versions.whole_versions(self.stack.repository, settings.serving_dir))
        try:
            version = publish(run, export, settings)
        except Exception as error:  # noqa: BLE001 - any refusal is what the drill wants; its type is reported
            after = set(versions.whole_versions(self.stack.repository, settings.serving_dir))
            row.passed = versions.current_version(settings.serving_dir) == before and after == whole_before
            row.note = (f"{model.name} cut to half; refused ({type(error).__name__}: {str(error)[:120]}); "
                        f"current stays {before}")
            return
        row.note = f"{model.name} cut to half was published as version {version}"

    def drill_disk_full(self, row: Row) -> None:
        """The file system under the repository and the serving bundles fills during a publish: the
        publish fails, nothing half-written is served or left, and once space is back it publishes."""
        from exporters.publish import publish

        if self.small_disk is None:
            raise Unavailable("no small file system for the repository (mounting a tmpfs needs root)")
        run, export = self.unpublished_export("disk-full-export")
        settings = self.stack.settings.model_copy(update={"triton_url": self.stack.triton_url})
        before = versions.current_version(settings.serving_dir)
        whole_before = set(versions.whole_versions(self.stack.repository, settings.serving_dir))
        filler = self.small_disk / "filler"
        free = shutil.disk_usage(self.small_disk).free
        with filler.open("wb") as handle:
            os.posix_fallocate(handle.fileno(), 0, max(0, free - 256 * 1024))  # 256 KiB left
        try:
            publish(run, export, settings)
            row.note = "the publish did not run out of space"
            return
        except OSError as error:
            failed = f"publish failed: {error.strerror or error}"
        finally:
            filler.unlink()
        after = set(versions.whole_versions(self.stack.repository, settings.serving_dir))
        leftovers = [p.name for p in settings.serving_dir.glob(".staging-*")]
        version = publish(run, export, settings)  # space back: the same publish again
        self.published.append(version)
        row.passed = (versions.current_version(settings.serving_dir) == version and after == whole_before
                      and before is not None)
        row.note = (f"{failed}; current stayed {before}, no partial version ({len(leftovers)} staging folders until "
                    f"the next publish swept them); with space back it published version {version}")

    def drill_superlink(self, row: Row) -> None:
        """The SuperLink SIGKILLed in the middle of a federated round: the launcher restarts it (its state
        on disk), and the run ends marked, completed with its output or failed, never half-published."""
        from cinesync.federation import FederatedRunConfig, State
        from control_plane.federation import Federation

        superlink = self.process("superlink")
        federation = Federation(self.stack.settings.model_copy(update={"superlink_address": self.stack.superlink_address}))
        run_id = federation.start(FederatedRunConfig(base_run=self.last_job["run_dir"], rounds=2, min_clients=2,
                                                     local_batch_size=0, publish=False, round_timeout_s=60))["run_id"]
        deadline = time.monotonic() + 300
        while "training on" not in federation.status(run_id).get("detail", ""):
            if time.monotonic() > deadline:
                row.note = "the run never started training"
                return
            time.sleep(0.2)
        killed = superlink.pid
        superlink.popen.kill()
        while (status := federation.status(run_id))["state"] in State.OPEN and time.monotonic() < deadline + 600:
            time.sleep(1.0)
        rounds = status.get("rounds", [])
        missing = sum(r.get("missing", 0) for r in rounds)
        completed = status["state"] == State.COMPLETED and Path(status.get("output_run", "/nonexistent"), "manifest.json").is_file()
        marked_failed = status["state"] == State.FAILED and "output_run" not in status
        row.passed = superlink.pid != killed and (completed or marked_failed)
        row.note = (f"SuperLink {killed} SIGKILLed mid-round, restarted as {superlink.pid}; the run ended {status['state']} "
                    f"after {len(rounds)} rounds, replies missing {missing}: {status.get('detail', '')[:100]}")

    # -- the launcher ---------------------------------------------------------------------------------
    def drill_stop(self, row: Row) -> None:
        """`cinesync serve` (the current version, its own home) stopped by SIGTERM to its process group,
        then SIGINT twice while it stops: what a closing terminal or a supervisor does."""
        home = self.workdir / "serve-home"
        shutil.copytree(self.stack.settings.serving_dir, home / "serving", dirs_exist_ok=True)
        env = {**os.environ, **self.stack.child_env(), "CINESYNC_HOME": str(home), "CINESYNC_GRPC_PORT": "0",
               "CINESYNC_METRICS_PORT": "0", "CINESYNC_FLOWER_PORT": "0", "CINESYNC_SUPERLINK_PORT": "0",
               "CINESYNC_SUPERLINK_HEALTH_PORT": "0"}
        env.pop("TRITON_URL", None)  # its own Triton
        serve = subprocess.Popen([sys.executable, "-m", "launcher.cli", "serve"], env=env, start_new_session=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        pids: list[int] = []
        deadline = time.monotonic() + 180
        assert serve.stdout is not None
        for line in serve.stdout:
            pids += [int(pid) for pid in re.findall(r"started, pid (\d+)", line)]
            if line.startswith("Serving on") or time.monotonic() > deadline:
                break
        serve.stdout.close()
        os.killpg(serve.pid, signal.SIGTERM)
        for _ in range(2):
            time.sleep(0.3)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(serve.pid, signal.SIGINT)
        stopped = time.monotonic()
        while any(alive(pid, group=True) for pid in pids) and time.monotonic() - stopped < 60:
            time.sleep(0.1)
        left = [pid for pid in pids if alive(pid, group=True)]
        for pid in left:
            os.killpg(pid, signal.SIGKILL)
        if serve.poll() is None:
            serve.kill()
        row.passed = bool(pids) and not left
        row.note = (f"`cinesync serve` started {len(pids)} processes; SIGTERM then SIGINT twice to its group: "
                    f"{len(left)} left, stopped in {time.monotonic() - stopped:.1f} s")

    def _sigkill(self, row: Row, process: ManagedProcess) -> float:
        """SIGKILL ``process``; the row passes if the launcher restarted it within RECOVERY_S. The fault's time."""
        killed, fault = process.pid, time.monotonic()
        process.popen.kill()
        while time.monotonic() - fault < RECOVERY_S:
            if process.pid != killed and process.running():
                row.passed = True
                break
            time.sleep(0.1)
        return fault


class Unavailable(RuntimeError):
    """A drill this machine cannot run (its row says why; it does not count as passed)."""


def acknowledged_found(settings: Settings, traffic: Traffic, published: list[int], repository: Path,
                       timeout: float = 60.0) -> dict[str, Any]:
    """Each acknowledged write looked for in Redis and the repository (waiting up to ``timeout`` for
    what the control planes still send)."""
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    ns = settings.redis_namespace
    deadline = time.monotonic() + timeout
    while True:
        exposures = _stream_ids(client, f"{ns}:exposures")
        feedback = _stream_ids(client, f"{ns}:feedback")
        scope = _history_scope(settings)  # the HistoryStore's key of a user: <ns>:history:<scope>:<user>
        live = {user: client.lrange(f"{ns}:history:{scope}:{user}", 0, -1) for user in traffic.watches}
        watches_missing, out_of_order = 0, 0
        for user, items in traffic.watches.items():
            expected = list(dict.fromkeys(reversed(items)))[::-1]  # each item at its last acknowledgment
            found = [item for item in live[user] if item in set(expected)]
            watches_missing += len(set(expected) - set(found))
            out_of_order += found != expected and set(found) == set(expected)
        result = {
            "exposures": {"acknowledged": len(traffic.exposures), "missing": len(traffic.exposures - exposures)},
            "feedback": {"acknowledged": len(traffic.feedback), "missing": len(traffic.feedback - feedback)},
            "watches": {"acknowledged": sum(len(set(v)) for v in traffic.watches.values()),
                        "missing": watches_missing, "users_out_of_order": out_of_order},
            "versions": {"acknowledged": len(published),
                         "missing": len(set(published) - set(versions.whole_versions(repository, settings.serving_dir)))},
        }
        lost = sum(part["missing"] for part in result.values())
        if not lost or time.monotonic() > deadline:
            return {**result, "lost": lost}
        time.sleep(2.0)


def _stream_ids(client: redis.Redis, key: str) -> set[str]:
    """The request ids of every entry of stream ``key`` (a decoding client)."""
    found: set[str] = set()
    start = "-"
    while True:
        chunk: list[tuple[str, dict[str, str]]] = client.xrange(key, min=start, max="+", count=10_000)  # type: ignore[assignment]
        found.update(fields["request_id"] for _, fields in chunk)
        if len(chunk) < 10_000:
            return found
        start = "(" + chunk[-1][0]


def _history_scope(settings: Settings) -> str:
    current = versions.current_version(settings.serving_dir)
    manifest = json.loads((settings.serving_dir / str(current) / "manifest.json").read_text())
    return str(manifest["history_scope"])


@contextmanager
def small_disk(folder: Path, size_mb: int) -> Iterator[Path | None]:
    """A tmpfs of ``size_mb`` mounted at ``folder`` for the block (unmounted after); None where this
    process may not mount one (the disk-full drill then says it cannot run)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "cinesync-drill", str(folder)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        print(f"no small file system for the disk-full drill: {mounted.stderr.strip() or mounted.returncode}")
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=False)


@contextmanager
def drill_stack(root: Path, data: str, host: str, disk: Path | None) -> Iterator[tuple[Stack, dict[str, Any]]]:
    """Redis, a worker, Triton, two control planes, a SuperLink and two SuperNodes on loopback, serving
    a version trained through the worker; the model repository and the serving bundles on ``disk``
    when given; supervised (a dead process is restarted) until the block ends, then all stopped."""
    from federated.devices import write_devices

    # Every process (this one's Celery app too) reads these: the stack's own Redis, and a killed
    # worker's step delivered again after 10 s.
    os.environ.update({"REDIS_URL": f"redis://{host}:{free_port(host)}/0", "CINESYNC_VISIBILITY_TIMEOUT_S": "10",
                       "CINESYNC_RETAINED_VERSIONS": "20"})  # every version a drill published stays to be checked
    settings = Settings(home=root / "home", model_repository=(disk or root) / "repo", host=loopback(host),
                        grpc_port=0, metrics_port=0, bundle_poll_s=0.5, superlink_port=0,
                        superlink_health_port=0)
    if disk is not None:  # the serving bundles beside the repository; Redis, runs and logs elsewhere
        (disk / "serving").mkdir()
        settings.home.mkdir(parents=True)
        settings.serving_dir.symlink_to(disk / "serving", target_is_directory=True)
    stop = threading.Event()
    with Stack(settings, say=print) as stack:
        stack.ensure_redis()
        stack.ensure_worker()
        stack.ensure_triton()
        app = jobs.celery_app(settings)
        last = jobs.pipeline(app, data, serve="train").apply_async(queue=settings.job_queue)
        result = list(jobs.progress(app, jobs.chain_ids(last), timeout=1800))[-1]["result"]
        stack.start_control_plane(replicas=2)
        stack.ensure_superlink()
        devices = write_devices(Path(result["run_dir"]), root / "devices", clients=2)
        stack.start_supernodes([{"device": str(folder), "partition-id": i} for i, folder in enumerate(devices)])
        supervisor = threading.Thread(target=stack.supervise, args=(stop,), kwargs={"interval": 0.2})
        supervisor.start()
        try:
            yield stack, result
        finally:
            stop.set()
            supervisor.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="synthetic:n_users=400,n_items=300,mean_interactions=25,seed=5")
    parser.add_argument("--rate", type=float, default=30.0, help="requests a second, Recommend and WATCH together")
    parser.add_argument("--only", default=",".join(DRILLS), help="comma-separated drills, in this order")
    parser.add_argument("--host", default="127.0.0.1", help="where the stack listens: a loopback address only")
    parser.add_argument("--out", type=Path, default=RESULTS / "drills.json")
    args = parser.parse_args()
    loopback(args.host)
    chosen = [name for name in args.only.split(",") if name]
    unknown = sorted(set(chosen) - set(DRILLS))
    if unknown:
        parser.error(f"unknown drills {', '.join(unknown)} (known: {', '.join(DRILLS)})")
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="cinesync-drills-") as scratch, \
            small_disk(Path(scratch) / "disk", SMALL_DISK_MB) as disk, \
            drill_stack(Path(scratch), args.data, args.host, disk) as (stack, first):
        users = json.loads((stack.settings.serving_dir / str(first["version"]) / "users.json").read_text())
        wait_for_version(stack.grpc_address, users[0], first["version"], timeout=120)
        traffic = Traffic(stack.grpc_address, users[:200], args.rate).start()
        drills = Drills(stack, traffic, args.data, Path(scratch), disk)
        drills.published.append(int(first["version"]))
        drills.last_job = first
        time.sleep(5.0)  # steady first
        rows = []
        for name in chosen:
            row = drills.run(name)
            rows.append(row)
            print(f"{row.drill:16} {'pass' if row.passed else 'FAIL' if row.ran else 'not run'}  sent {row.sent} "
                  f"failed {row.failed} degraded {row.degraded} ranked again {row.ranked_again_s} s  {row.note}",
                  flush=True)
        traffic.stop()
        found = acknowledged_found(stack.settings, traffic, drills.published, stack.repository)
    result = {
        "command": " ".join(["python -m bench.drills", *sys.argv[1:]]), "started": started,
        "machine": machine(),
        "rate": args.rate, "rows": [asdict(row) for row in rows], "acknowledged": found,
        "passed": all(row.passed for row in rows) and found["lost"] == 0,
    }
    print(json.dumps(found, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out}; {'every drill passed, nothing lost' if result['passed'] else 'NOT all passed'}")


if __name__ == "__main__":
    main()
