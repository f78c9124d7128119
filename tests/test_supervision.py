"""Supervision and recovery with real processes: Triton killed (SIGKILL) under load on loopback is
restarted by the launcher on the same ports, the control plane answers every request meanwhile
(degraded, in retrieval order) and ranks with Triton again once it is back; SIGTERM or SIGHUP to
`cinesync serve`, its stdout a closed pipe, stops every process it started."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tritonclient.grpc as triton_grpc

from cinesync.settings import Settings
from cinesync.v1 import recommendation_pb2 as pb
from exporters.publish import publish
from launcher.client import wait_for_version
from launcher.services.process import alive
from launcher.stack import Stack
from recsys.run import load_run
from tests.loopback import Load

pytestmark = pytest.mark.slow


def _triton_live(url: str) -> bool:
    try:
        with triton_grpc.InferenceServerClient(url) as client:
            return bool(client.is_server_live(client_timeout=0.5))
    except Exception:  # noqa: BLE001  # unreachable in any way: not live
        return False


def test_killed_triton_is_restarted_and_ranking_resumes_without_a_failed_request(
    small_run: Path, exported_run: Path, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", model_repository=tmp_path / "repo", grpc_port=0, metrics_port=0,
                        bundle_poll_s=0.5)
    stop = threading.Event()
    with Stack(settings, say=print) as stack:
        stack.ensure_triton()
        assert stack.triton_url
        version = publish(load_run(small_run), exported_run, settings.model_copy(update={"triton_url": stack.triton_url}))
        stack.start_control_plane()
        users = json.loads((settings.serving_dir / str(version) / "users.json").read_text())
        wait_for_version(stack.grpc_address, users[0], version, timeout=60)
        supervisor = threading.Thread(target=stack.supervise, args=(stop,), kwargs={"interval": 0.2})
        supervisor.start()
        triton = next(p for p in stack.started if p.name == "triton")
        try:
            # About 100 requests/s from 4 clients: load that leaves Triton the cores to reload its models.
            with Load(stack.grpc_address, users, pause=0.03) as load:
                time.sleep(1.0)
                killed = time.monotonic()
                triton.popen.kill()
                degraded = load.first(lambda _, ranked_by: ranked_by == pb.RANKED_BY_RETRIEVAL, timeout=10)
                while not _triton_live(stack.triton_url):
                    assert time.monotonic() - killed < 60, "Triton was not restarted"
                    time.sleep(0.1)
                back = time.monotonic()
                ranked = load.first(lambda _, ranked_by: ranked_by == pb.RANKED_BY_TRITON, timeout=10)
                time.sleep(1.0)
        finally:
            stop.set()
            supervisor.join()
    print(f"Triton back {back - killed:.1f} s after SIGKILL; ranked again {ranked - back:.1f} s later")
    assert load.failures == []
    # Requests Triton ranked just before the kill may arrive a few milliseconds after the first
    # degraded answer; from 0.2 s after it until Triton is back, every answer is degraded.
    during = [r for t, _, r in load.answers if degraded + 0.2 <= t < back]
    assert during and set(during) == {pb.RANKED_BY_RETRIEVAL}, "answers during the outage were not degraded"
    assert ranked - back <= 10.0
    assert {r for t, _, r in load.answers if t > ranked + 0.5} == {pb.RANKED_BY_TRITON}


def test_sigterm_and_sighup_stop_like_ctrl_c() -> None:
    from launcher.cli import Stopped, _stop_on_signals

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        _stop_on_signals()
        for sig in previous:
            with pytest.raises(Stopped):
                signal.raise_signal(sig)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_sighup_stops_everything_serve_started_even_with_stdout_closed(tmp_path: Path) -> None:
    """(SIGTERM takes the same path: the test above.)"""
    env = {**os.environ, "CINESYNC_HOME": str(tmp_path / "home"), "CINESYNC_MODEL_REPOSITORY": str(tmp_path / "repo"),
           "CINESYNC_GRPC_PORT": "0", "CINESYNC_METRICS_PORT": "0", "CINESYNC_FLOWER_PORT": "0"}
    launcher = subprocess.Popen([sys.executable, "-m", "launcher.cli", "serve"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env, text=True)
    pids: list[int] = []
    try:
        assert launcher.stdout is not None
        deadline = time.monotonic() + 120
        for line in launcher.stdout:
            pids += [int(pid) for pid in re.findall(r"started, pid (\d+)", line)]
            if line.startswith("Serving on") or time.monotonic() > deadline:
                break
        assert len(pids) >= 5, pids  # triton, worker, flower, superlink, control plane (Redis may run already)
        launcher.stdout.close()  # every later write of the launcher meets a closed pipe
        launcher.send_signal(signal.SIGHUP)
        launcher.wait(timeout=60)
        deadline = time.monotonic() + 10
        while any(alive(pid, group=True) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in pids if alive(pid, group=True)], "processes left running"
    finally:
        if launcher.poll() is None:
            launcher.kill()
        for pid in filter(alive, pids):
            os.killpg(pid, signal.SIGKILL)
