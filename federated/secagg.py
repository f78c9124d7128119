"""SecAgg+ mode: the same federated kind and device folders through Flower's legacy workflow API,
whose SecAggPlusWorkflow masks every update so that the server learns only their weighted sum
(Bell et al. 2020). The price, fixed by Flower 1.42 (SecAgg+ exists only in that API): no screening
of single replies, no robust strategy and no DP accounting; rounds aggregate with FedAvg. Federated
evaluation, the kept round, the status file and publishing are the strategy mode's (federated.rounds).
"""

from __future__ import annotations

import math
import time
import timeit
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context
from flwr.client import Client, ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import NDArrays, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import SimpleClientManager
from flwr.server.compat.app_utils import start_update_client_manager_thread
from flwr.server.strategy import FedAvg
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.server.workflow.default_workflows import default_evaluate_workflow

from cinesync.federation import State
from federated.client_config import TEST, VALIDATION, ClientConfig
from federated.devices import Device
from federated.kinds import Arrays
from federated.rounds import NDCG, FederatedRun, size_of, users_mean
from recsys.metrics import K

MAX_WEIGHT = 1e5  # a client's example count (its weight) may reach this; quantization stays exact enough


def ordered_names(arrays: Arrays) -> list[str]:
    """The order the legacy API's unnamed parameter lists follow on both sides."""
    return sorted(arrays)


class DeviceClient(NumPyClient):
    """A legacy client over one device folder: trains and evaluates the federated kind."""

    def __init__(self, device: Device, partition: int) -> None:
        self.device, self.partition = device, partition

    def _kind_and_names(self, config: dict[str, Scalar], seed_offset: int = 0) -> tuple[Any, list[str]]:
        kind = ClientConfig.of(config).kind_on(self.device, seed_offset=seed_offset)
        return kind, ordered_names(kind.initial_arrays(None))

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[NDArrays, int, dict[str, Scalar]]:
        kind, names = self._kind_and_names(config, seed_offset=1000 * int(config["server-round"]) + self.partition)
        sequences = self.device.validation.train_sequences
        local, loss = kind.train(dict(zip(names, parameters, strict=True)), sequences,
                                 epochs=int(config["local_epochs"]), proximal_mu=0.0)
        return [local[name] for name in names], sum(len(s) for s in sequences), {"loss": float(loss)}

    def evaluate(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[float, int, dict[str, Scalar]]:
        kind, names = self._kind_and_names(config)
        split = self.device.test if config["split"] == TEST else self.device.validation
        users = len(split.test_users())
        metrics = kind.evaluate(dict(zip(names, parameters, strict=True)), split) if users else {}
        ndcg = float(metrics.get(NDCG, 0.0))
        return 1.0 - ndcg, max(users, 1), {NDCG: ndcg, f"recall@{K}": float(metrics.get(f"recall@{K}", 0.0)),
                                           f"hr@{K}": float(metrics.get(f"hr@{K}", 0.0)), "users": users}


def client_fn(context: Context) -> Client:
    return DeviceClient(Device.load(Path(str(context.node_config["device"]))),
                        int(context.node_config.get("partition-id", 0))).to_client()  # type: ignore[arg-type]


client = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])


class SecAggRun(FederatedRun):
    """FederatedRun whose rounds go through SecAggPlusWorkflow (see the module docstring)."""

    def __init__(self, *, context: Context, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.names = ordered_names(self.arrays)
        self.split = VALIDATION
        self.evaluated: dict[str, float] = {}
        legacy = FedAvg(fraction_fit=self.config.fraction_train, fraction_evaluate=1.0,
                        min_fit_clients=self.config.min_clients, min_evaluate_clients=self.config.min_clients,
                        min_available_clients=self.config.min_clients,
                        on_fit_config_fn=lambda server_round: {**self._client_settings(), "server-round": server_round},
                        on_evaluate_config_fn=lambda server_round: {**self._client_settings(), "split": self.split},
                        evaluate_metrics_aggregation_fn=self._remember)
        self.context = LegacyContext(context=context, config=ServerConfig(num_rounds=self.config.rounds),
                                     strategy=legacy, client_manager=SimpleClientManager())
        self.status["secure_aggregation"] = "secagg+"

    def _client_settings(self) -> dict[str, Scalar]:
        return {key: value for key, value in vars(self.client_config).items() if key != "split"}  # type: ignore[misc]

    def _remember(self, results: list[tuple[int, dict[str, Scalar]]]) -> dict[str, Scalar]:
        self.evaluated = users_mean(metrics for _, metrics in results)
        return dict(self.evaluated)

    def _set_global(self, arrays: Arrays) -> None:
        parameters = ndarrays_to_parameters([arrays[name] for name in self.names])
        self.context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(parameters, keep_input=True)

    def _global(self) -> Arrays:
        parameters = compat.arrayrecord_to_parameters(self.context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)
        return {name: np.asarray(value, dtype=np.float32)
                for name, value in zip(self.names, parameters_to_ndarrays(parameters), strict=True)}

    def _evaluate(self, server_round: int, arrays: Arrays, split: str) -> tuple[dict[str, float], int]:
        self.split, self.evaluated = split, {}
        self._set_global(arrays)
        self.context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND] = server_round
        default_evaluate_workflow(self.grid, self.context)
        clients = len(self.context.client_manager.all())
        return dict(self.evaluated), clients * size_of(arrays)

    def run(self) -> str:
        config = self.config
        thread, stop, registered = start_update_client_manager_thread(self.grid, self.context.client_manager)
        try:
            registered.wait()
            self.context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({Key.START_TIME: timeit.default_timer()})
            workflow = SecAggPlusWorkflow(num_shares=1.0, reconstruction_threshold=max(2, math.ceil(config.min_clients / 2)),
                                          max_weight=MAX_WEIGHT, timeout=config.round_timeout_s)
            best: dict[str, Any] = {"value": -math.inf, "round": 0, "arrays": self.arrays}
            for server_round in range(1, config.rounds + 1):
                started = time.monotonic()
                self._set_global(self.arrays)
                self.context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND] = server_round
                self._save(detail=f"round {server_round}: secure aggregation on {len(self.context.client_manager.all())} clients")
                workflow(self.grid, self.context)
                updated = self._global()
                aggregated = any(not np.array_equal(updated[n], self.arrays[n]) for n in self.names)
                self.arrays = updated
                validation, sent = self._evaluate(server_round, self.arrays, VALIDATION)
                if aggregated and validation.get(NDCG, -math.inf) > best["value"]:
                    best = {"value": validation[NDCG], "round": server_round, "arrays": self.arrays}
                self.status["rounds"].append({
                    "round": server_round, "seconds": round(time.monotonic() - started, 2),
                    "sampled": len(self.context.client_manager.all()), "replied": None, "failed": 0, "missing": 0,
                    "rejected": 0, "rejected_reasons": {}, "aggregated": aggregated,
                    "bytes_sent": sent, "bytes_received": None, "validation": validation, "epsilon": None,
                })
                self._save(detail=f"round {server_round} of {config.rounds} done")
            return self._finish(State.COMPLETED, f"{config.rounds} rounds (SecAgg+)", best, publish=config.publish)
        finally:
            stop.set()
            thread.join()

