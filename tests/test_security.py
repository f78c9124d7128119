"""The control plane process on loopback: TLS when configured (a self-signed certificate made by
openssl), and a flood beyond the concurrency limit answered RESOURCE_EXHAUSTED, not queued."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from launcher.services.process import ManagedProcess, free_port, port_open

pytestmark = pytest.mark.slow


def _control_plane(tmp_path: Path, **env: str) -> Iterator[str]:
    port = free_port()
    process = ManagedProcess(
        "control plane", [sys.executable, "-m", "control_plane"], log_path=tmp_path / "control_plane.log",
        env={"CINESYNC_HOME": str(tmp_path / "home"), "CINESYNC_GRPC_PORT": str(port),
             "CINESYNC_METRICS_PORT": str(free_port()), "CINESYNC_ADMIN_TOKENS": "secret", **env},
    )
    try:
        process.wait_ready(lambda: port_open("127.0.0.1", port), timeout=30)
        yield f"127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
def test_tls_serves_with_the_certificate_and_refuses_plaintext(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    for address in _control_plane(tmp_path, CINESYNC_TLS_CERT=str(cert), CINESYNC_TLS_KEY=str(key)):
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(address, credentials) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING  # up, nothing published yet
        with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as plaintext:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE


def test_calls_beyond_the_concurrency_limit_get_resource_exhausted(tmp_path: Path) -> None:
    for address in _control_plane(tmp_path, CINESYNC_MAX_CONCURRENT_RPCS="2"):
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            watches = [stub.Watch(health_pb2.HealthCheckRequest(), timeout=20) for _ in range(2)]
            for watch in watches:
                next(watch)  # both streams are open and hold a slot each
            with pytest.raises(grpc.RpcError) as flooded:
                stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert flooded.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            for watch in watches:
                watch.cancel()
            time.sleep(0.2)
            assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.NOT_SERVING
