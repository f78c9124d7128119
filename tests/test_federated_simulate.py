"""`cinesync federated simulate` with real processes: against a running control plane and SuperLink,
it cuts a run's users by dominant genre across three SuperNodes it starts on loopback (one of them
Byzantine), runs a median round through the AdminService, prints the round table, and stops every
SuperNode it started; its refusals come before anything starts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cinesync.federation import read_status
from cinesync.settings import Settings
from launcher.stack import Stack

pytestmark = pytest.mark.slow


def _simulate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "launcher.cli", "federated", "simulate", *args], env=env,
                          capture_output=True, text=True, check=False, timeout=300)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_simulate_runs_rounds_on_supernodes_it_starts_and_stops(small_run: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", grpc_port=0, metrics_port=0, superlink_port=0, superlink_health_port=0)
    with Stack(settings, say=print) as stack:
        stack.ensure_redis()
        stack.ensure_superlink()
        stack.start_control_plane()
        env = {**os.environ, **stack.child_env(), "CINESYNC_HOST": "127.0.0.1",
               "CINESYNC_GRPC_PORT": stack.grpc_address.rpartition(":")[2]}

        refused = _simulate(env, "--clients", "2", "--byzantine", "3", "--base-run", str(small_run))
        assert refused.returncode == 2 and "--byzantine" in refused.stderr and "SuperNode" not in refused.stdout
        refused = _simulate(env, "--clients", "2", "--data", "ml-100k-nowhere")
        assert refused.returncode == 1 and "no training run of ml-100k-nowhere" in refused.stderr

        done = _simulate(env, "--clients", "3", "--rounds", "1", "--partition", "genre", "--byzantine", "1",
                         "--byzantine-scale", "5", "--strategy", "median", "--no-publish", "--round-timeout", "120",
                         "--local-batch-size", "0", "--base-run", str(small_run))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "3 clients (genre, 1 Byzantine)" in done.stdout
        run_id = re.search(r"started federated run (\S+)", done.stdout).group(1)  # type: ignore[union-attr]
        assert re.search(rf"{run_id}: completed", done.stdout) and "kept round 1: test ndcg@10" in done.stdout

        pids = [int(pid) for pid in re.findall(r"supernode-\d\s.*\(started, pid (\d+)", done.stdout)]
        assert len(pids) == 3 and not any(_alive(pid) for pid in pids)
        assert all(f"stopped supernode-{index}" in done.stdout for index in range(3))

        status = read_status(settings.home, run_id)
        (only,) = status["rounds"]
        assert status["config"]["strategy"] == "median" and status["config"]["min_clients"] == 3
        assert (only["sampled"], only["replied"], only["rejected"]) == (3, 3, 0) and only["aggregated"]
        # The Byzantine client sent global - 5 x its update: its update is the largest by far.
        assert only["update_norm_max"] > 2.5 * only["update_norm_median"], only
