"""Federated rounds on real processes: a SuperLink, four SuperNodes (one sending a NaN, a wrong shape
and an oversized update in turn), a run opened through the control plane's Federation (Flower's
Control API) from the small run's two-tower, and its global model written as a servable run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cinesync.federation import FederatedRunConfig, State
from cinesync.settings import Settings
from control_plane.federation import Federation, RunAlreadyOpen
from federated.devices import write_devices
from launcher.stack import Stack
from recsys.kinds.two_tower import TwoTower
from recsys.run import load_run

pytestmark = pytest.mark.slow


def wait_for(federation: Federation, run_id: str, *, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = federation.status(run_id)
        if status["state"] not in State.OPEN:
            return status
        time.sleep(1)
    raise AssertionError(f"run {run_id} still open after {timeout} s: {federation.status(run_id)}")


def test_rounds_screen_replies_and_write_a_servable_global_model(small_run: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", superlink_port=0, superlink_health_port=0)
    devices = write_devices(small_run, tmp_path / "devices", clients=4, partition="iid")
    with Stack(settings, say=print) as stack:
        stack.ensure_superlink()
        stack.start_supernodes([{"device": str(folder), "partition-id": index,
                                 **({"fault": "nan,shape,norm"} if index == 3 else {})}
                                for index, folder in enumerate(devices)])
        federation = Federation(settings.model_copy(update={"superlink_address": stack.superlink_address}))
        config = FederatedRunConfig(base_run=str(small_run), rounds=3, min_clients=4, local_epochs=1,
                                    max_update_norm=1e3, publish=False)
        started = federation.start(config)
        with pytest.raises(RunAlreadyOpen):
            federation.start(config)
        status = wait_for(federation, started["run_id"], timeout=400)
    assert status["state"] == State.COMPLETED, status
    rounds = status["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert [r["rejected_reasons"] for r in rounds] == [{"not finite": 1}, {"shape": 1}, {"update norm": 1}]
    assert all(r["sampled"] == 4 and r["replied"] == 4 and r["aggregated"] for r in rounds)
    assert all(0 < r["validation"]["ndcg@10"] <= 1 and r["validation"]["users"] > 0 for r in rounds)
    assert status["best_round"] in (1, 2, 3) and 0 < status["test"]["ndcg@10"] <= 1

    base, served = load_run(small_run), load_run(Path(status["output_run"]))
    assert served.spec.members == ["two_tower"] and served.fusion.chosen == {"passthrough": "two_tower"}
    federated_tower, central_tower = served.members[0], next(m for m in base.members if m.name == "two_tower")
    assert isinstance(federated_tower, TwoTower) and isinstance(central_tower, TwoTower)
    assert np.isfinite(federated_tower.item_vectors).all()
    assert np.abs(federated_tower.item_vectors - central_tower.item_vectors).max() > 0  # the rounds trained it
    assert served.manifest["federated"]["best_round"] == status["best_round"]
