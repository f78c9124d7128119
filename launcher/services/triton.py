"""Finds a tritonserver binary and runs it in explicit model-control mode on free ports.

Precedence: TRITON_URL (a running server, not started here), then ``tritonserver`` on PATH,
then the binary bundled in the nvidia-pytriton wheel (python backend only).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import tritonclient.grpc as triton_grpc

from launcher.services.process import ManagedProcess, StartupError

STUB = "triton_python_backend_stub"


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    backends: Path
    caches: Path | None
    library_path: str


@dataclass(frozen=True)
class TritonEndpoints:
    grpc: str
    http: str
    metrics: str  # full URL of the Prometheus endpoint


def find_triton() -> TritonInstall:
    on_path = shutil.which("tritonserver")
    if on_path:
        root = Path(on_path).resolve().parent.parent
        return TritonInstall(Path(on_path), root / "backends", None, os.environ.get("LD_LIBRARY_PATH", ""))
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise StartupError("no tritonserver: set TRITON_URL, put tritonserver on PATH, or install nvidia-pytriton")
    package = Path(spec.origin).parent
    root = package / "tritonserver"
    backends = root / "backends"
    _install_python_stub(root, backends)
    libraries = [str(package.parent / "nvidia_pytriton.libs"), str(sysconfig.get_config_var("LIBDIR"))]
    return TritonInstall(root / "bin" / "tritonserver", backends, root / "caches", os.pathsep.join(libraries))


def _install_python_stub(root: Path, backends: Path) -> None:
    """The wheel ships the python backend's stub per Python version beside the backend: put ours in place."""
    version = sysconfig.get_python_version()
    stub = root / "python_backend_stubs" / version / STUB
    target = backends / "python" / STUB
    if not stub.is_file():
        raise StartupError(f"nvidia-pytriton has no python backend stub for Python {version}")
    if not target.is_file() or target.stat().st_size != stub.stat().st_size:
        shutil.copy2(stub, target)


MODEL_LOAD_THREADS = 16


def triton_ready(grpc_url: str) -> bool:
    client = triton_grpc.InferenceServerClient(grpc_url)
    try:
        return bool(client.is_server_ready(client_timeout=1.0))
    finally:
        client.close()


def start_triton(
    repository: Path, *, host: str, logs_dir: Path, ports: tuple[int, int, int], timeout: float = 120.0
) -> tuple[ManagedProcess, TritonEndpoints]:
    """Triton on ``ports`` (http, grpc, metrics), each already checked free by the caller."""
    install = find_triton()
    http_port, grpc_port, metrics_port = ports
    command = [
        str(install.binary),
        f"--model-repository={Path(repository).resolve()}",
        f"--backend-directory={install.backends}",
        "--model-control-mode=explicit",
        "--strict-readiness=false",
        f"--http-address={host}",
        f"--grpc-address={host}",
        f"--metrics-address={host}",
        f"--http-port={http_port}",
        f"--grpc-port={grpc_port}",
        f"--metrics-port={metrics_port}",
        "--log-verbose=0",
        # Our configs are complete: no stub process per model to auto-complete them, and every
        # step of an ensemble loads at once (the default is 4 at a time), which halves a reload.
        "--disable-auto-complete-config",
        f"--model-load-thread-count={MODEL_LOAD_THREADS}",
    ]
    if install.caches is not None:
        command.append(f"--cache-directory={install.caches}")
    Path(repository).mkdir(parents=True, exist_ok=True)
    # The python backend stub embeds Python, which takes its prefix from the first `python` on PATH:
    # ours first makes the stub use this environment's packages (numpy, onnxruntime), not the base's.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    process = ManagedProcess(
        "triton",
        command,
        log_path=logs_dir / "triton.log",
        env={"LD_LIBRARY_PATH": install.library_path, "PATH": path},
    )
    endpoints = TritonEndpoints(
        grpc=f"{host}:{grpc_port}", http=f"{host}:{http_port}", metrics=f"http://{host}:{metrics_port}/metrics"
    )
    process.wait_ready(lambda: triton_ready(endpoints.grpc), timeout=timeout)
    return process, endpoints
