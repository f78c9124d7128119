"""No federated reply lost to the SuperLink's server errors, with real processes, and what it relies on
in Flower 1.42 checked so that an upgrade that changes it fails here.

Each of two SuperNodes reaches the SuperLink through its own loopback proxy that answers HTTP 500 to the
first PushMessages it sees (what Flower's SQLite state answers when "database is locked"). Node 0 is
CineSync's SuperNode: it pushes again and its reply arrives. Node 1 is held to one try, as Flower's own
SuperNode is: it drops the reply, and the ServerApp, missing it, asks node 1 again within the round.
The round ends with every sampled node's reply."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from cinesync.federation import FederatedRunConfig, State
from cinesync.settings import Settings
from control_plane.federation import Federation
from federated.devices import write_devices
from federated.supernode import push_retrier
from launcher.services.superlink import start_supernode
from launcher.stack import Stack

FLOWER = "1.42.0"


def _server_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://superlink/v1/fleet/push-messages")
    return httpx.HTTPStatusError(str(code), request=request, response=httpx.Response(code, request=request))


class Failing:
    """A call that raises ``errors`` in turn, then returns "stored"; counts its calls."""

    def __init__(self, *errors: Exception) -> None:
        self.errors, self.calls = list(errors), 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "stored"


def test_flower_is_the_version_whose_gaps_cinesync_closes() -> None:
    import flwr

    assert flwr.__version__ == FLOWER, "re-check federated/superlink.py and federated/supernode.py for this Flower"


def test_flowers_own_push_gives_up_on_a_500_and_cinesyncs_tries_again() -> None:
    from flwr.supercore.retry import make_simple_http_retry_invoker

    stock = Failing(_server_error(500))
    with pytest.raises(httpx.HTTPStatusError):
        make_simple_http_retry_invoker().invoke(stock)
    assert stock.calls == 1  # when this fails, Flower retries 500s itself: the SuperNode wrapper may go

    ours = Failing(_server_error(500), _server_error(500))
    assert push_retrier(3).invoke(ours) == "stored" and ours.calls == 3
    refused = Failing(_server_error(403))
    with pytest.raises(httpx.HTTPStatusError):
        push_retrier(3).invoke(refused)
    assert refused.calls == 1  # a refusal is not tried again
    with pytest.raises(httpx.HTTPStatusError):
        push_retrier(2).invoke(Failing(*[_server_error(500)] * 3))  # bounded


def test_the_superlink_state_waits_longer_for_a_lock(tmp_path: Path) -> None:
    probe = """
import sys
from flwr.supercore.sql_mixin import SqlMixin
class State(SqlMixin):
    pass
if sys.argv[2] == "cinesync":
    from federated.superlink import wait_for_locks
    wait_for_locks(43210)
state = State(sys.argv[1])
state.initialize()
print(state.query("PRAGMA busy_timeout")[0]["timeout"])
"""
    timeouts = [subprocess.run([sys.executable, "-c", probe, str(tmp_path / f"{who}.db"), who], check=True,
                               capture_output=True, text=True).stdout.split()[-1] for who in ("flower", "cinesync")]
    assert timeouts == ["5000", "43210"]  # Flower's own 5 s, and what CineSync's SuperLink sets over it


class FaultyProxy:
    """A loopback HTTP proxy to ``upstream`` that answers 500 to the first PushMessages it sees."""

    def __init__(self, upstream: str) -> None:
        self.pushes, self.failed = 0, 0
        proxy = self
        client = httpx.Client(base_url=f"http://{upstream}", timeout=60)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.endswith("/push-messages"):
                    proxy.pushes += 1
                    if proxy.pushes == 1:
                        proxy.failed += 1
                        self._answer(500, b"database is locked", "text/plain")
                        return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                reply = client.post(self.path, content=body, headers=headers)
                self._answer(reply.status_code, reply.content, reply.headers.get("content-type", ""))

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_a_round_loses_no_reply_to_server_errors(small_run: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", superlink_port=0, superlink_health_port=0)
    devices = write_devices(small_run, tmp_path / "devices", clients=2)
    proxies: list[FaultyProxy] = []
    nodes = []
    with Stack(settings, say=print) as stack:
        stack.ensure_superlink()
        try:
            for index, (folder, attempts) in enumerate(zip(devices, (6, 1), strict=True)):
                proxy = FaultyProxy(stack.superlink_address)
                proxies.append(proxy)
                nodes.append(start_supernode(
                    name=f"supernode-{index}", superlink=proxy.address, host="127.0.0.1",
                    port=_free(), health_port=_free(), node_config={"device": str(folder), "partition-id": index},
                    home=stack.home / "flower", logs_dir=settings.logs_dir,
                    env={**stack.child_env(), "CINESYNC_SUPERNODE_PUSH_ATTEMPTS": str(attempts)}))
            federation = Federation(settings.model_copy(update={"superlink_address": stack.superlink_address}))
            config = FederatedRunConfig(base_run=str(small_run), local_batch_size=0, publish=False, rounds=1,
                                        min_clients=2, round_timeout_s=120)
            run_id = federation.start(config)["run_id"]
            status = _finished(federation, run_id, timeout=300)
        finally:
            for node in nodes:
                node.stop()
            for proxy in proxies:
                proxy.close()
    assert status["state"] == State.COMPLETED, status
    (only,) = status["rounds"]
    assert [p.failed for p in proxies] == [1, 1]  # each node's first push met a 500
    assert proxies[0].pushes >= 2 + 1  # node 0 pushed its training reply again, then its evaluation reply
    assert "Failed to send message" in nodes[1].log_path.read_text()  # Flower's one try drops the reply
    assert only["sampled"] == 2 and only["replied"] == 2 and only["missing"] == 0, only
    assert only["reasked"] >= 1 and only["aggregated"], only  # node 1 was asked again and answered


def _free() -> int:
    from launcher.services.process import free_port

    return free_port("127.0.0.1")


def _finished(federation: Federation, run_id: str, *, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = federation.status(run_id)
        if status["state"] not in State.OPEN:
            return status
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} not finished in {timeout} s: {federation.status(run_id)}")
