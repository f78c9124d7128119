"""The drill runner's refusals come before it starts anything: a host that is not loopback, an unknown
drill. (The drills themselves are a benchmark: docs/benchmarks.md.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.drills import loopback

ROOT = Path(__file__).resolve().parent.parent


def _drills(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.drills", *args], capture_output=True, text=True, timeout=120,
                          check=False, cwd=ROOT)


def test_only_loopback_hosts_are_accepted() -> None:
    assert loopback("127.0.0.1") == "127.0.0.1" and loopback("localhost") == "localhost"
    with pytest.raises(SystemExit, match="loopback only"):
        loopback("192.0.2.10")


def test_the_runner_refuses_a_remote_host_and_an_unknown_drill_before_starting_anything(tmp_path: Path) -> None:
    refused = _drills("--host", "192.0.2.10", "--out", str(tmp_path / "out.json"))
    assert refused.returncode != 0 and "loopback only" in refused.stderr and "started" not in refused.stdout
    refused = _drills("--only", "triton,meteor", "--out", str(tmp_path / "out.json"))
    assert refused.returncode == 2 and "unknown drills meteor" in refused.stderr
    assert not (tmp_path / "out.json").exists()
