"""Finds the Flower SuperLink at CINESYNC_SUPERLINK_ADDRESS, or starts one (federated rounds).

The SuperLink serves Flower's Control, Fleet and Runtime APIs on one HTTP port (its default, 8000,
is Triton's: CineSync's settings move it) and a gRPC health service on another; its state lives in
a SQLite file under the CineSync home, so a restarted SuperLink keeps its runs. Telemetry, the
update check and runtime dependency installation are off.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from launcher.services.process import ManagedProcess, StartupError

QUIET = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}


def superlink_healthy(health_address: str) -> bool:
    """Whether the SuperLink's gRPC health service at ``health_address`` says SERVING."""
    try:
        with grpc.insecure_channel(health_address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def flower_environment(home: Path) -> dict[str, str]:
    """What every Flower process CineSync starts runs with: quiet, its config under ``home``, and
    this Python's scripts first on PATH (the SuperLink starts ``flower-superexec`` by name)."""
    scripts = str(Path(sys.executable).parent)
    return {**QUIET, "FLWR_HOME": str(home), "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}


def start_superlink(*, host: str, port: int, health_port: int, home: Path, logs_dir: Path) -> ManagedProcess:
    """A SuperLink on ``host``: its HTTP APIs on ``port``, health on ``health_port``, state in
    ``home``/superlink.db; returns once its health service says SERVING."""
    binary = shutil.which("flower-superlink", path=str(Path(sys.executable).parent)) or shutil.which("flower-superlink")
    if binary is None:
        raise StartupError("flower-superlink is not installed (pip install 'flwr[dp]==1.42.0'; `make setup` does)")
    home.mkdir(parents=True, exist_ok=True)
    process = ManagedProcess(
        "superlink",
        [binary, "--insecure", "--host", host, "--port", str(port), "--health-server-address", f"{host}:{health_port}",
         "--database", str((home / "superlink.db").resolve()), "--disable-runtime-dependency-installation"],
        log_path=logs_dir / "superlink.log",
        env=flower_environment(home.resolve()),
    )
    process.wait_ready(lambda: superlink_healthy(f"{host}:{health_port}"), timeout=60)
    return process
