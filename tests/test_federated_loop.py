"""The federated loop with real processes, from `cinesync federated start` to the federated version
answering Recommend in an A/B experiment: Redis, a Celery worker, Triton, the control plane, a Flower
SuperLink and three SuperNodes (one sends an oversized update, then a wrong shape; another a NaN,
then an oversized update). The run's replies are screened (rejected, counted, the rounds go on), the
admin RPCs refuse a second open run and a call without a token, the worker publishes the global
model without making it current, the CLI puts it in an experiment against the central version, and
Prometheus-format metrics count the rounds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest

from cinesync.bundle import current_version
from cinesync.federation import State
from cinesync.settings import Settings
from cinesync.v1 import admin_pb2 as admin
from cinesync.v1 import admin_pb2_grpc as admin_grpc
from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from exporters.publish import publish
from federated.devices import write_devices
from launcher.client import wait_for_version
from launcher.stack import Stack
from recsys.run import load_run

pytestmark = pytest.mark.slow


def _admin(address: str, method: str, request: Any, token: str | None) -> Any:
    with grpc.insecure_channel(address) as channel:
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        return getattr(admin_grpc.AdminServiceStub(channel), method)(request, timeout=30, metadata=metadata)


def _cinesync(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "launcher.cli", *args], env=env, capture_output=True, text=True, check=False,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_federated_run_is_published_and_served_in_an_experiment(
    small_run: Path, exported_run: Path, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", model_repository=tmp_path / "repo", grpc_port=0, metrics_port=0,
                        bundle_poll_s=0.3, superlink_port=0, superlink_health_port=0)
    devices = write_devices(small_run, tmp_path / "devices", clients=3, partition="genre")
    faults = {1: "norm,shape", 2: "nan,norm"}
    with Stack(settings, say=print) as stack:
        stack.ensure_redis()  # the settings' (the workers' app checks that one), found or started
        stack.ensure_triton()
        central = publish(load_run(small_run), exported_run, settings.model_copy(update={"triton_url": stack.triton_url}))
        stack.ensure_worker()
        stack.ensure_superlink()
        stack.start_supernodes([{"device": str(folder), "partition-id": index,
                                 **({"fault": faults[index]} if index in faults else {})}
                                for index, folder in enumerate(devices)])
        stack.start_control_plane()
        address, token = stack.grpc_address, settings.admin_token_file.read_text().strip()
        env = {**os.environ, **stack.child_env(), "CINESYNC_HOST": "127.0.0.1",
               "CINESYNC_GRPC_PORT": address.rpartition(":")[2]}

        started = _cinesync(env, "federated", "start", "--rounds", "2", "--min-clients", "3",
                            "--max-update-norm", "1000", "--local-batch-size", "0", "--base-run", str(small_run))
        run_id = started.split()[-1]
        for credentials, code in ((token, grpc.StatusCode.FAILED_PRECONDITION), (None, grpc.StatusCode.UNAUTHENTICATED)):
            with pytest.raises(grpc.RpcError) as refused:
                _admin(address, "StartFederatedRun", admin.FederatedRunRequest(rounds=1), credentials)
            assert refused.value.code() == code

        deadline = time.monotonic() + 420
        while True:
            run = _admin(address, "GetFederatedRun", admin.FederatedRunId(run_id=run_id), token)
            if run.state not in State.OPEN and (run.version or run.state != State.COMPLETED
                                                or "publish_error" in json.loads(run.status_json)):
                break
            assert time.monotonic() < deadline, run
            time.sleep(1)
        assert run.state == State.COMPLETED and run.version > central, run.status_json
        assert [(r.sampled, r.replied, r.rejected, r.aggregated) for r in run.rounds] == [(3, 3, 2, True)] * 2
        assert [dict(r.rejected_reasons) for r in run.rounds] == [{"not finite": 1, "update norm": 1},
                                                                   {"shape": 1, "update norm": 1}]
        assert 0 < run.test_ndcg_at_10 <= 1 and run.best_round in (1, 2)
        assert current_version(settings.serving_dir) == central  # published, not made current
        global_run = load_run(Path(json.loads(run.status_json)["output_run"]))
        assert global_run.spec.members == ["two_tower"] and global_run.fusion.chosen == {"passthrough": "two_tower"}
        assert global_run.manifest["federated"]["best_round"] == run.best_round
        assert "kept round" in _cinesync(env, "federated", "status", run_id)

        _cinesync(env, "experiment", "create", "central-vs-federated", "--variant", f"central:0.5:{central}",
                  "--variant", f"federated:0.5:{run.version}")
        users = json.loads((settings.serving_dir / str(central) / "users.json").read_text())
        wait_for_version(address, users[0], central, timeout=60)
        served: dict[str, set[int]] = {"central": set(), "federated": set()}
        deadline = time.monotonic() + 60
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.RecommendationServiceStub(channel)
            while not all(served.values()):
                assert time.monotonic() < deadline, served
                for user in users[:40]:
                    answer = stub.Recommend(pb.RecommendRequest(user_id=user, k=5), timeout=5)
                    if answer.experiment == "central-vs-federated" and answer.ranked_by == pb.RANKED_BY_TRITON:
                        served[answer.variant].add(int(answer.model_version))
                time.sleep(0.2)
        assert served == {"central": {central}, "federated": {run.version}}

        metrics = urllib.request.urlopen(stack.addresses["control plane metrics"], timeout=5).read().decode()
        assert f'cinesync_federated_rounds_total{{run="{run_id}"}} 2.0' in metrics
        assert f'cinesync_federated_rejected_replies_total{{reason="update norm",run="{run_id}"}} 2.0' in metrics
