"""Starts what is missing of the serving stack, tells where each part listens, keeps what it started
running (restarting a process that exits, with backoff, on the same ports) and stops it all."""

from __future__ import annotations

import functools
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

from cinesync.settings import Settings
from launcher.services.process import ManagedProcess, descendants, free_port, port_open
from launcher.services.redis_server import ensure_redis, persistent
from launcher.services.superlink import start_superlink, start_supernode
from launcher.services.triton import start_triton


def pick_port(host: str, preferred: int) -> int:
    """``preferred`` when it is free, else any free port (0 means any)."""
    return preferred if preferred and not port_open(host, preferred) else free_port(host)


def workers_on_queue(queue: str) -> list[str]:
    """Names of the Celery workers that answer within a second and consume ``queue``."""
    from workers.celery_app import app

    replies = app.control.inspect(timeout=1.0).active_queues() or {}
    return [worker for worker, queues in replies.items() if any(q["name"] == queue for q in queues)]


RESTART_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # after the 1st, 2nd, ... exit in a row
GRACE_S = 15.0  # SIGTERM to SIGKILL when stopping
HURRIED_GRACE_S = 2.0  # the same after a second stop signal
STABLE_AFTER_S = 60.0  # a process up this long has its backoff reset


@dataclass
class Restarts:
    """Backoff state of one supervised process."""

    in_a_row: int = 0
    due: float | None = None  # when the pending restart happens
    started: float = 0.0


class Stack:
    """The processes of one `cinesync up` / `demo`; a context manager that stops them in reverse order."""

    def __init__(self, settings: Settings, *, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self._say_to = say
        self.started: list[ManagedProcess] = []
        self.addresses: dict[str, str] = {}
        self.home = settings.home.resolve()
        self.repository = settings.model_repository.resolve()
        self.triton_url = settings.triton_url
        self.superlink_address = settings.superlink_address or ""
        self.grpc_address = ""  # one target for every control-plane replica
        self.replica_addresses: list[str] = []
        self.replica_metrics: list[str] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> list[int]:
        """Every process the stack started and, after each, its children (Triton's python-backend stubs)."""
        return [pid for process in self.started for pid in (process.pid, *descendants(process.pid))]

    def say(self, line: str) -> None:
        """Report progress; a closed stdout (``| head``, a dead terminal) silences it rather than failing."""
        try:
            self._say_to(line)
        except (BrokenPipeError, OSError):
            self._say_to = lambda line: None

    def supervise(self, stop: threading.Event, *, interval: float = 0.5) -> None:
        """Until ``stop`` is set: restart every started process that exits, after 1, 2, 4 … 30 s in a
        row (reset once it stays up a minute), with the same command and ports, and say so."""
        state = {id(p): Restarts(started=time.monotonic()) for p in self.started}
        while not stop.wait(interval):
            now = time.monotonic()
            for process in list(self.started):
                entry = state.setdefault(id(process), Restarts(started=now))
                if process.running():
                    if entry.in_a_row and now - entry.started > STABLE_AFTER_S:
                        entry.in_a_row = 0
                    continue
                if entry.due is None:
                    delay = RESTART_DELAYS_S[min(entry.in_a_row, len(RESTART_DELAYS_S) - 1)]
                    entry.due = now + delay
                    self.say(f"  {process.name} exited (code {process.popen.returncode}); restarting in "
                             f"{delay:.0f} s, log {process.log_path}")
                elif now >= entry.due:
                    process.restart()
                    entry.in_a_row, entry.due, entry.started = entry.in_a_row + 1, None, now
                    self.say(f"  {process.name} restarted (pid {process.pid})")

    def child_env(self) -> dict[str, str]:
        """Settings for child processes, with paths made absolute so every process agrees."""
        env = {
            "REDIS_URL": self.settings.redis_url,
            "CINESYNC_HOME": str(self.home),
            "CINESYNC_MODEL_REPOSITORY": str(self.repository),
            "CINESYNC_TRITON_TARGET": self.settings.triton_target,
            "CINESYNC_CELERY_QUEUE": self.settings.celery_queue,
            "CINESYNC_SUPERLINK_BUSY_TIMEOUT_MS": str(self.settings.superlink_busy_timeout_ms),
            "CINESYNC_SUPERNODE_PUSH_ATTEMPTS": str(self.settings.supernode_push_attempts),
            "PYTHONUNBUFFERED": "1",
        }
        if self.triton_url:
            env["TRITON_URL"] = self.triton_url
        if self.superlink_address:
            env["CINESYNC_SUPERLINK_ADDRESS"] = self.superlink_address
        return env

    def _started(self, process: ManagedProcess, name: str, address: str) -> None:
        self.started.append(process)
        self.addresses[name] = address
        self.say(f"  {name:<14} {address}  (started, pid {process.pid}, log {process.log_path})")

    def _found(self, name: str, address: str) -> None:
        self.addresses[name] = address
        self.say(f"  {name:<14} {address}  (already running)")

    def ensure_redis(self) -> None:
        process = ensure_redis(self.settings.redis_url, logs_dir=self.settings.logs_dir,
                               data_dir=self.home / "redis")
        if process is None:
            self._found("redis", self.settings.redis_url)
            if not persistent(self.settings.redis_url):
                self.say("  warning: that Redis has no append-only file: exposures and feedback since its last "
                         "save are lost if it restarts (redis-cli CONFIG SET appendonly yes)")
        else:
            self._started(process, "redis", self.settings.redis_url)

    def ensure_admin_token(self) -> None:
        """Without CINESYNC_ADMIN_TOKENS, make one token for this home (the control plane and the CLI read it)."""
        path = self.settings.admin_token_file
        if self.settings.admin_tokens or path.is_file():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
        self.say(f"  admin token   {path} (made now; `cinesync experiment ...` reads it)")

    def ensure_worker(self) -> None:
        queue = self.settings.job_queue
        busy = workers_on_queue(queue)
        if busy:
            self._found("celery worker", f"{busy[0]} on queue {queue}")
            return
        process = ManagedProcess(
            "celery worker",
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", queue,
             "--pool=solo", "--concurrency=1", "--loglevel=INFO", "-n", f"cinesync-{free_port()}@%h"],
            log_path=self.settings.logs_dir / "worker.log",
            env=self.child_env(),
        )
        process.wait_ready(lambda: bool(workers_on_queue(queue)), timeout=60)
        self._started(process, "celery worker", f"queue {queue} at {self.settings.redis_url}")

    def start_flower(self) -> None:
        port = pick_port(self.settings.host, self.settings.flower_port)
        process = ManagedProcess(
            "flower",
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", "flower",
             f"--port={port}", f"--address={self.settings.host}"],
            log_path=self.settings.logs_dir / "flower.log",
            env=self.child_env(),
        )
        process.wait_ready(lambda: port_open(self.settings.host, port), timeout=30)
        self._started(process, "flower", f"http://{self.settings.host}:{port}")

    def ensure_superlink(self) -> None:
        """The Flower SuperLink that federated rounds run on: the one at ``superlink_address``, or one
        started here (its state under <home>/flower, kept across restarts)."""
        if self.settings.superlink_address:
            self._found("superlink", f"http://{self.settings.superlink_address}")
            return
        host = self.settings.host
        port, health = pick_port(host, self.settings.superlink_port), pick_port(host, self.settings.superlink_health_port)
        if health == port:
            health = free_port(host)
        process = start_superlink(host=host, port=port, health_port=health, home=self.home / "flower",
                                  logs_dir=self.settings.logs_dir, env=self.child_env())
        self.superlink_address = f"{host}:{port}"
        self._started(process, "superlink", f"http://{self.superlink_address}, health grpc {host}:{health}")

    def start_supernodes(self, node_configs: list[dict[str, str | int | float]], *,
                         through: Sequence[str | None] = (), push_attempts: Sequence[int | None] = ()) -> None:
        """One SuperNode per entry of ``node_configs`` (each a client site: its ``device`` folder and
        partition), connected to this stack's SuperLink, supervised and stopped like the rest. Node i
        reaches the SuperLink at ``through[i]`` when given (a proxy in front of it) and tries a push
        ``push_attempts[i]`` times when given (else the settings')."""
        if not self.superlink_address:
            raise RuntimeError("no SuperLink: call ensure_superlink first")
        host = self.settings.host
        for index, node_config in enumerate(node_configs):
            port, health = free_port(host), free_port(host)
            name = f"supernode-{index}"
            address = (through[index] if index < len(through) else None) or self.superlink_address
            env = self.child_env()
            if index < len(push_attempts) and push_attempts[index]:
                env["CINESYNC_SUPERNODE_PUSH_ATTEMPTS"] = str(push_attempts[index])
            process = start_supernode(name=name, superlink=address, host=host, port=port,
                                      health_port=health, node_config=node_config, home=self.home / "flower",
                                      logs_dir=self.settings.logs_dir, env=env)
            self._started(process, name, f"runtime {host}:{port}, health grpc {host}:{health}")

    def ensure_triton(self) -> None:
        if self.triton_url:
            self._found("triton", self.triton_url)
            return
        host, settings = self.settings.host, self.settings
        ports = (pick_port(host, settings.triton_http_port), pick_port(host, settings.triton_grpc_port),
                 pick_port(host, settings.triton_metrics_port))
        process, endpoints = start_triton(self.repository, host=host, logs_dir=settings.logs_dir, ports=ports)
        self.triton_url = endpoints.grpc
        self._started(process, "triton", f"grpc {endpoints.grpc}, http {endpoints.http}, metrics {endpoints.metrics}")
        self.addresses["triton metrics"] = endpoints.metrics

    def start_control_plane(self, replicas: int = 1) -> None:
        """``replicas`` control-plane processes sharing Redis, Triton and the serving bundles, on the
        settings' ports and the next ones (or free ones); ``grpc_address`` is one target for all of
        them (``ipv4:host:port,host:port``), which launcher.client balances round robin."""
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {replicas}")
        self.ensure_admin_token()
        host = self.settings.host
        for replica in range(replicas):
            suffix = f" {replica + 1}" if replicas > 1 else ""
            port = pick_port(host, self.settings.grpc_port and self.settings.grpc_port + replica)
            metrics_port = pick_port(host, self.settings.metrics_port and self.settings.metrics_port + replica)
            env = {**self.child_env(), "CINESYNC_HOST": host, "CINESYNC_GRPC_PORT": str(port),
                   "CINESYNC_METRICS_PORT": str(metrics_port)}
            process = ManagedProcess(
                f"control plane{suffix}",
                [sys.executable, "-m", "control_plane"],
                log_path=self.settings.logs_dir / f"control_plane{suffix.replace(' ', '-')}.log",
                env=env,
            )
            process.wait_ready(functools.partial(port_open, host, port), timeout=60)
            self.replica_addresses.append(f"{host}:{port}")
            self.replica_metrics.append(f"http://{host}:{metrics_port}/metrics")
            if replica == 0:
                self.addresses["control plane metrics"] = f"http://{host}:{metrics_port}/metrics"
            self._started(process, f"control plane{suffix}",
                          f"grpc {host}:{port}, metrics http://{host}:{metrics_port}/metrics")
        self.grpc_address = (self.replica_addresses[0] if len(self.replica_addresses) == 1
                             else "ipv4:" + ",".join(self.replica_addresses))

    def start_console(self) -> None:
        """The operator console, talking to the first control-plane replica (start those first)."""
        host = self.settings.host
        port = pick_port(host, self.settings.console_port)
        metrics = self.replica_metrics[0]
        process = ManagedProcess(
            "console", [sys.executable, "-m", "console"], log_path=self.settings.logs_dir / "console.log",
            env={**self.child_env(), "CINESYNC_HOST": host, "CINESYNC_CONSOLE_PORT": str(port),
                 "CINESYNC_CONSOLE_CONTROL_PLANE": self.replica_addresses[0], "CINESYNC_CONTROL_PLANE_METRICS_URL": metrics,
                 "CINESYNC_PROMETHEUS_URL": self.settings.prometheus_url},
        )
        process.wait_ready(functools.partial(port_open, host, port), timeout=60)
        self._started(process, "console", f"http://{host}:{port}")
        self.say(f"  {'':<14} log in with the token in {self.settings.admin_token_file} or one of CINESYNC_ADMIN_TOKENS")

    def stop_control_planes(self) -> None:
        """Stop every control-plane replica started here (the rest keeps running)."""
        for process in [p for p in self.started if p.name.startswith("control plane")]:
            process.stop()
            self.started.remove(process)
            self.say(f"  stopped {process.name}")
        self.replica_addresses.clear()
        self.replica_metrics.clear()
        self.grpc_address = ""

    def start_all(self, *, replicas: int = 1) -> None:
        self.say("Starting the CineSync stack:")
        self.ensure_redis()
        self.ensure_triton()  # before the worker, which checks each version it publishes in this Triton
        self.ensure_worker()
        self.start_flower()
        self.ensure_superlink()
        self.start_control_plane(replicas)
        self.start_console()

    def stop(self) -> None:
        """Stop every started process, newest first. SIGINT, SIGTERM or SIGHUP during the stop (a
        second Ctrl-C, make forwarding the group's SIGTERM) cannot interrupt it: each only shortens
        the grace the remaining processes get before SIGKILL."""
        hurried = threading.Event()
        previous = self._hold_signals(hurried) if threading.current_thread() is threading.main_thread() else {}
        try:
            while self.started:
                process = self.started.pop()
                process.stop(timeout=HURRIED_GRACE_S if hurried.is_set() else GRACE_S)
                self.say(f"  stopped {process.name}")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _hold_signals(self, hurried: threading.Event) -> dict[int, Any]:
        """Make the stop signals set ``hurried`` instead of raising; returns the handlers they had."""
        def hurry(signum: int, frame: object) -> None:
            if not hurried.is_set():
                self.say(f"  ({signal.Signals(signum).name} while stopping: the rest get {HURRIED_GRACE_S:.0f} s each)")
            hurried.set()

        previous: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, hurry)
        return previous


