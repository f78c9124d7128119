"""Finds the Flower SuperLink at CINESYNC_SUPERLINK_ADDRESS, or starts one (federated rounds); starts
SuperNodes (one per client site) for simulations. Both are Flower's, started through
federated.superlink and federated.supernode: a longer wait for the SuperLink state's lock, and a
SuperNode push retried on a server error, so that load loses no reply.

The SuperLink serves Flower's Control, Fleet and Runtime APIs on one HTTP port (its default, 8000,
is Triton's: CineSync's settings move it) and a gRPC health service on another; its state lives in
a SQLite file under the CineSync home, so a restarted SuperLink keeps its runs. Telemetry, the
update check and runtime dependency installation are off.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from launcher.services.process import ManagedProcess, StartupError

QUIET = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}


def flower_healthy(health_address: str) -> bool:
    """Whether the gRPC health service of a SuperLink or SuperNode at ``health_address`` says SERVING."""
    try:
        with grpc.insecure_channel(health_address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def flower_installed() -> None:
    """Raises StartupError unless Flower's SuperLink and SuperNode can be started by this Python."""
    if importlib.util.find_spec("flwr") is None:
        raise StartupError("Flower is not installed (pip install 'flwr[dp]==1.42.0'; `make setup` does)")


def flower_environment(home: Path) -> dict[str, str]:
    """What every Flower process CineSync starts runs with: quiet, its config under ``home``, and
    this Python's scripts first on PATH (the SuperLink starts ``flower-superexec`` by name)."""
    scripts = str(Path(sys.executable).parent)
    return {**QUIET, "FLWR_HOME": str(home), "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}


def start_superlink(*, host: str, port: int, health_port: int, home: Path, logs_dir: Path,
                    env: dict[str, str] | None = None) -> ManagedProcess:
    """A SuperLink on ``host``: its HTTP APIs on ``port``, health on ``health_port``, state in
    ``home``/superlink.db; returns once its health service says SERVING. ``env`` reaches the
    ServerApps it starts (CineSync's settings: where runs and status files go, the job queue)."""
    flower_installed()
    home.mkdir(parents=True, exist_ok=True)
    process = ManagedProcess(
        "superlink",
        [sys.executable, "-m", "federated.superlink", "--insecure", "--host", host, "--port", str(port), "--health-server-address", f"{host}:{health_port}",
         "--database", str((home / "superlink.db").resolve()), "--disable-runtime-dependency-installation"],
        log_path=logs_dir / "superlink.log",
        env={**(env or {}), **flower_environment(home.resolve())},
    )
    process.wait_ready(lambda: flower_healthy(f"{host}:{health_port}"), timeout=60)
    return process


def start_supernode(*, name: str, superlink: str, host: str, port: int, health_port: int,
                    node_config: dict[str, str | int | float], home: Path, logs_dir: Path,
                    env: dict[str, str] | None = None) -> ManagedProcess:
    """A SuperNode connected to the SuperLink's Fleet API at ``superlink`` (host:port), its Runtime
    API on ``port``, running the ClientApp for each message with ``node_config``; returns once its
    health service says SERVING."""
    flower_installed()
    config = " ".join(f"{key}={value}" if isinstance(value, (int, float)) else f'{key}="{value}"'
                      for key, value in node_config.items())
    process = ManagedProcess(
        name,
        [sys.executable, "-m", "federated.supernode", "--insecure", "--superlink", superlink, "--host", host, "--port", str(port),
         "--health-server-address", f"{host}:{health_port}", "--node-config", config],
        log_path=logs_dir / f"{name}.log",
        env={**(env or {}), **flower_environment(home.resolve())},
    )
    process.wait_ready(lambda: flower_healthy(f"{host}:{health_port}"), timeout=60)
    return process
