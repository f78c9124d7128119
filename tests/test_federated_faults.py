"""Federated modes and faults with real processes: a SuperLink (supervised, so restarted when it dies)
and two SuperNodes on loopback (each message starts a ClientApp process: two keep the rounds short),
each reaching the SuperLink through a loopback proxy that can answer 500 to its next push. A push
that meets a 500 loses no reply (node 0 pushes again; node 1, held to one try as Flower's own
SuperNode is, drops it, and the ServerApp asks it again). A SecAgg+ run trains on masked updates; a
DP budget that allows one round stops the run after it and says so; a client killed mid-round
leaves the round to the others after the round's timeout, and the SuperLink killed later in that run
is restarted while the run ends marked (completed or failed), never half-published."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cinesync.federation import FederatedRunConfig, State
from cinesync.settings import Settings
from control_plane.federation import Federation
from federated.devices import write_devices
from launcher.stack import Stack
from tests.fault_proxy import FaultyProxy

pytestmark = pytest.mark.slow


class Flower:
    """The module's stack: its SuperLink, SuperNodes and a control-plane Federation on them."""

    def __init__(self, stack: Stack, federation: Federation, base_run: Path, proxies: list[FaultyProxy]) -> None:
        self.stack, self.federation, self.base_run, self.proxies = stack, federation, base_run, proxies

    def config(self, **changes: Any) -> FederatedRunConfig:
        """A run on the module's base run, not published, at the base kind's own minibatch (fewer
        steps than the default: these tests are about modes and faults, not quality)."""
        return FederatedRunConfig(base_run=str(self.base_run), local_batch_size=0, publish=False, **changes)

    def process(self, name: str) -> Any:
        return next(p for p in self.stack.started if p.name == name)

    def wait(self, run_id: str, until: Any, *, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.federation.status(run_id)
            if until(status):
                return status
            time.sleep(0.5)
        raise AssertionError(f"run {run_id}: condition not met in {timeout} s: {self.federation.status(run_id)}")


@pytest.fixture(scope="module")
def flower(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flower]:
    root = tmp_path_factory.mktemp("federated-faults")
    settings = Settings(home=root / "home", superlink_port=0, superlink_health_port=0)
    devices = write_devices(small_run, root / "devices", clients=2)
    stop = threading.Event()
    with Stack(settings, say=print) as stack:
        stack.ensure_superlink()
        assert stack.superlink_address
        proxies = [FaultyProxy(stack.superlink_address) for _ in devices]
        try:
            stack.start_supernodes([{"device": str(folder), "partition-id": i} for i, folder in enumerate(devices)],
                                   through=[proxy.address for proxy in proxies], push_attempts=[0, 1])
            supervisor = threading.Thread(target=stack.supervise, args=(stop,), kwargs={"interval": 0.2})
            supervisor.start()
            try:
                yield Flower(stack, Federation(settings.model_copy(update={"superlink_address": stack.superlink_address})),
                             small_run, proxies)
            finally:
                stop.set()
                supervisor.join()
        finally:
            for proxy in proxies:
                proxy.close()


def test_a_push_that_meets_a_server_error_loses_no_reply(flower: Flower) -> None:
    for proxy in flower.proxies:
        proxy.fail_next_push()  # each node's training reply meets a 500 ("database is locked")
    pushed = [proxy.pushes for proxy in flower.proxies]
    run_id = flower.federation.start(flower.config(rounds=1, min_clients=2, round_timeout_s=120))["run_id"]
    status = flower.wait(run_id, lambda s: s["state"] not in State.OPEN, timeout=300)
    assert status["state"] == State.COMPLETED, status
    (only,) = status["rounds"]
    assert [proxy.failed for proxy in flower.proxies] == [1, 1]
    assert flower.proxies[0].pushes - pushed[0] >= 2 + 2  # training reply pushed again; validation, test
    assert "Failed to send message" in flower.process("supernode-1").log_path.read_text()  # Flower's one try
    assert only["sampled"] == 2 and only["replied"] == 2 and only["missing"] == 0, only
    assert only["reasked"] >= 1 and only["aggregated"], only  # node 1 was asked again and answered


def test_secagg_mode_trains_on_masked_updates(flower: Flower) -> None:
    config = flower.config(rounds=1, min_clients=2, mode="secagg")
    run_id = flower.federation.start(config)["run_id"]
    status = flower.wait(run_id, lambda s: s["state"] not in State.OPEN, timeout=300)
    assert status["state"] == State.COMPLETED and status["secure_aggregation"] == "secagg+", status
    (only,) = status["rounds"]
    assert only["aggregated"] and only["validation"]["users"] > 0 and 0 < status["test"]["ndcg@10"] <= 1


def test_a_spent_dp_budget_stops_the_run_and_says_so(flower: Flower) -> None:
    from flwr.serverapp import (
        GaussianPrivacyEvent,
        NeighboringRelation,
        PrivacyConfig,
        RdpAccountant,
        SamplingMethod,
    )

    accountant = RdpAccountant(PrivacyConfig(target_delta=1e-5, population_size=2, sampling_method=SamplingMethod.NO_AMPLIFICATION,
                                             neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE))
    epsilons = []
    for _ in range(2):
        accountant.compose(GaussianPrivacyEvent(noise_multiplier=1.0, sample_size=2, population_size=2))
        epsilons.append(accountant.get_epsilon(1e-5))
    config = flower.config(rounds=2, min_clients=2, dp_noise_multiplier=1.0, dp_clipping_norm=1.0,
                           dp_max_epsilon=sum(epsilons) / 2)
    run_id = flower.federation.start(config)["run_id"]
    status = flower.wait(run_id, lambda s: s["state"] not in State.OPEN, timeout=240)
    assert status["state"] == State.BUDGET_EXHAUSTED and "max_epsilon" in status["detail"], status
    assert len(status["rounds"]) == 1 and status["rounds"][0]["epsilon"] == pytest.approx(epsilons[0], rel=1e-6)
    assert status["best_round"] == 1 and status.get("publish_job") is None  # kept, not published: not asked to


def test_a_dropped_client_leaves_the_round_to_the_others_and_a_killed_superlink_never_half_publishes(
    flower: Flower,
) -> None:
    # The dead node stays listed until its heartbeat lapses (within a minute): until then every step
    # waits the round timeout for it.
    config = flower.config(rounds=2, min_clients=1, round_timeout_s=30)
    run_id = flower.federation.start(config)["run_id"]
    flower.wait(run_id, lambda s: "training on 2 clients" in s.get("detail", ""), timeout=120)
    os.killpg(flower.process("supernode-1").pid, signal.SIGKILL)
    status = flower.wait(run_id, lambda s: len(s["rounds"]) >= 1, timeout=180)
    first = status["rounds"][0]
    assert first["sampled"] == 2 and first["replied"] + first["failed"] == 1 and first["missing"] == 1, first
    assert first["aggregated"] and first["validation"]["users"] > 0  # the others' round went on

    superlink = flower.process("superlink")
    killed = superlink.pid
    os.kill(killed, signal.SIGKILL)
    status = flower.wait(run_id, lambda s: s["state"] not in State.OPEN, timeout=240)
    assert superlink.pid != killed  # the supervisor restarted it
    if status["state"] == State.COMPLETED:
        assert Path(status["output_run"], "manifest.json").is_file()
    else:
        assert status["state"] == State.FAILED and "output_run" not in status and "publish_job" not in status, status
