"""The Flower SuperLink as part of the stack, with a real flower-superlink: started on the settings'
ports (healthy), restarted by the supervisor after a SIGKILL on the same port with its state file
kept, and stopped with every process of its group (its flower-superexec child included)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from cinesync.settings import Settings
from launcher.services.process import alive
from launcher.services.superlink import flower_healthy
from launcher.stack import Stack


def test_superlink_is_started_restarted_and_stopped_with_its_children(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", superlink_port=0, superlink_health_port=0)
    stop = threading.Event()
    with Stack(settings, say=print) as stack:
        stack.ensure_superlink()
        superlink = next(p for p in stack.started if p.name == "superlink")
        health = stack.addresses["superlink"].rpartition("health grpc ")[2]
        assert flower_healthy(health) and stack.child_env()["CINESYNC_SUPERLINK_ADDRESS"] == stack.superlink_address
        assert (settings.home / "flower" / "superlink.db").is_file()
        first = superlink.pid
        supervisor = threading.Thread(target=stack.supervise, args=(stop,), kwargs={"interval": 0.2})
        supervisor.start()
        try:
            os.kill(first, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while (superlink.pid == first or not flower_healthy(health)) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert superlink.pid != first and flower_healthy(health), "the SuperLink was not restarted"
        finally:
            stop.set()
            supervisor.join()
        group = superlink.pid
    assert not alive(group, group=True) and not flower_healthy(health)


def test_a_running_superlink_is_used_not_started(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", superlink_address="127.0.0.1:1")
    with Stack(settings, say=print) as stack:
        stack.ensure_superlink()
        assert stack.started == [] and stack.superlink_address == "127.0.0.1:1"
