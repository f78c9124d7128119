"""ManagedProcess with real processes: a restart after the leader died kills its orphaned group at
once, even a member that ignores SIGTERM, and starts the same command again."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from launcher.services.process import ManagedProcess, alive

# The leader starts a child that ignores SIGTERM, writes the child's pid, then exits.
LEADER = """
import os, signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
open(sys.argv[1], "a").write(f"{child.pid}\\n")
time.sleep(float(sys.argv[2]))
"""


def test_restart_after_the_leader_died_kills_its_orphans_at_once(tmp_path: Path) -> None:
    pids = tmp_path / "children"
    process = ManagedProcess(
        "leader", [sys.executable, "-c", LEADER, str(pids), "0.5"], log_path=tmp_path / "leader.log"
    )
    try:
        process.popen.wait(10)
        orphan = int(pids.read_text().split()[0])
        started = time.monotonic()
        process.restart()
        took = time.monotonic() - started
        assert not alive(orphan) or Path(f"/proc/{orphan}/stat").read_text().split()[2] == "Z"  # zombie: dead
        assert took < 5.0, f"restart waited {took:.1f} s on an orphan that ignores SIGTERM"
        deadline = time.monotonic() + 10
        while len(pids.read_text().split()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pids.read_text().split()) == 2  # the same command ran again
    finally:
        process.stop(timeout=1.0)  # its new child ignores SIGTERM too
