"""One federated run on the ServerApp side: the strategy's rounds with every reply screened before
aggregation, federated evaluation on the clients' validation items after each round (the best round's
model is kept), DP accounting and its budget, a status file after each round, the kept model
evaluated once on the clients' test items, written as a training run and handed to the workers to
export and publish (not made current)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Message
from flwr.serverapp import NeighboringRelation, PrivacyConfig, SamplingMethod
from flwr.serverapp.exception import PrivacyBudgetExhausted
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, Strategy

from cinesync import jobs
from cinesync.federation import FederatedRunConfig, InvalidRunConfig, State, write_status
from cinesync.settings import Settings
from federated.client_config import TEST, VALIDATION, ClientConfig
from federated.global_run import write_global_run
from federated.kinds import Arrays, federated_kind
from federated.replies import METRICS_KEY, screen
from federated.resilient_grid import ResilientGrid
from federated.strategies import Sampling, strategy_kind
from recsys.metrics import K
from recsys.run import TrainedRun, load_run

log = logging.getLogger(__name__)
NDCG = f"ndcg@{K}"


def record_of(arrays: Arrays) -> ArrayRecord:
    return ArrayRecord({name: Array(np.ascontiguousarray(value)) for name, value in arrays.items()})


def size_of(arrays: Arrays) -> int:
    return sum(a.nbytes for a in arrays.values())


def users_mean(per_client: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Each metric averaged over every evaluated user of every client (a client's "users" weigh it)."""
    totals: dict[str, float] = {}
    users = 0
    for metrics in per_client:
        count = int(metrics.get("users", 0))
        users += count
        for name in (NDCG, f"recall@{K}", f"hr@{K}"):
            totals[name] = totals.get(name, 0.0) + float(metrics.get(name, 0.0)) * count
    return {**{name: total / users for name, total in totals.items()}, "users": float(users)} if users else {}


def evaluation_mean(replies: Iterable[Message]) -> dict[str, float]:
    """users_mean of the evaluation replies that carry metrics."""
    return users_mean(dict(reply.content.metric_records[METRICS_KEY]) for reply in replies
                      if not reply.has_error() and METRICS_KEY in reply.content.metric_records)


class FederatedRun:
    """A run of ``config`` on ``grid``; ``run()`` returns the final state."""

    def __init__(self, *, config: FederatedRunConfig, settings: Settings, grid: ResilientGrid,
                 flower_run_id: int) -> None:
        config.check()
        self.config, self.settings, self.grid = config, settings, grid
        self.reasked = 0  # messages of the current round sent again (train and evaluation)
        self.base: TrainedRun = load_run(Path(config.base_run))
        described = {kind["kind"]: kind for kind in self.base.manifest["kinds"]}
        base_member = next((m for m in self.base.members if m.name == config.kind), None)
        if base_member is None and config.start_from == "base":
            raise InvalidRunConfig(f"the base run {self.base.manifest['run_id']} has no {config.kind} to start from "
                                   "(start_from='scratch' starts from fresh weights)")
        params = described.get(config.kind, {}).get("params", {})
        if config.local_batch_size:
            params = {**params, "batch_size": config.local_batch_size}
        self.kind = federated_kind(config.kind, catalog=self.base.catalog, params=params, seed=config.seed)
        self.arrays = self.kind.initial_arrays(base_member if config.start_from == "base" else None)
        self.client_config = ClientConfig(kind=config.kind, params=json.dumps(params),
                                          ordered=self.base.catalog.ordered,
                                          history_length=self.base.catalog.history_length,
                                          local_epochs=config.local_epochs, seed=config.seed)
        self.strategy = self._strategy()
        self.status: dict[str, Any] = {
            "run_id": config.run_id, "flower_run_id": flower_run_id, "state": State.RUNNING, "detail": "",
            "config": dataclasses.asdict(config), "rounds": [], "parameters": int(sum(a.size for a in self.arrays.values())),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def _strategy(self) -> Strategy:
        config = self.config
        chosen = strategy_kind(config.strategy, config.strategy_params)
        if not config.private:
            return chosen.build(Sampling(config.fraction_train, config.min_clients, "num-examples"))
        if not chosen.averages:
            raise InvalidRunConfig(f"DP accounting needs the plain weighted mean (fedavg), not {config.strategy}")
        from flwr.serverapp import RdpAccountant

        # Accounted rounds sample exactly min_clients nodes and weigh them equally (Flower's requirement).
        inner = chosen.build(Sampling(1e-9, config.min_clients, "unit-weight"))
        accountant = RdpAccountant(PrivacyConfig(
            target_delta=config.dp_delta, population_size=config.min_clients,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE, sampling_method=SamplingMethod.NO_AMPLIFICATION,
            max_epsilon=config.dp_max_epsilon or None))
        return DifferentialPrivacyServerSideFixedClipping(
            inner, config.dp_noise_multiplier, config.dp_clipping_norm, config.min_clients, accountant=accountant)

    def _save(self, **changes: Any) -> None:
        self.status.update(changes)
        write_status(self.settings.home, self.config.run_id, self.status)

    def _epsilon(self) -> float | None:
        spent = self.strategy.privacy_spent() if isinstance(self.strategy, DifferentialPrivacyServerSideFixedClipping) else None
        return None if spent is None else float(spent.epsilon)

    def _evaluate(self, server_round: int, arrays: Arrays, split: str) -> tuple[dict[str, float], int]:
        config = dataclasses.replace(self.client_config, split=split).record()
        messages = list(self.strategy.configure_evaluate(server_round, record_of(arrays), config, self.grid))
        exchange = self.grid.exchange(messages, timeout=self.config.round_timeout_s)
        self.reasked += exchange.reasked
        return evaluation_mean(exchange.replies), len(messages) * size_of(arrays)

    def run(self) -> str:
        config = self.config
        best: dict[str, Any] = {"value": -math.inf, "round": 0, "arrays": self.arrays}
        connected = len(list(self.grid.get_node_ids()))
        self._save(detail=f"waiting for {config.min_clients} clients ({connected} connected)")
        for server_round in range(1, config.rounds + 1):
            started = time.monotonic()
            try:
                messages = list(self.strategy.configure_train(server_round, record_of(self.arrays),
                                                              self.client_config.record(), self.grid))
            except PrivacyBudgetExhausted as exhausted:
                return self._finish(State.BUDGET_EXHAUSTED, str(exhausted), best, publish=config.publish_on_budget)
            self._save(detail=f"round {server_round}: training on {len(messages)} clients")
            exchange = self.grid.exchange(messages, timeout=config.round_timeout_s)
            replies, self.reasked = exchange.replies, exchange.reasked
            screened = screen(replies, self.arrays, max_update_norm=config.max_update_norm)
            aggregated, train_metrics = self.strategy.aggregate_train(server_round, screened.accepted)
            if aggregated is not None:
                self.arrays = {name: array.numpy() for name, array in aggregated.items()}
            validation, sent = self._evaluate(server_round, self.arrays, VALIDATION)
            if aggregated is not None and validation.get(NDCG, -math.inf) > best["value"]:
                best = {"value": validation[NDCG], "round": server_round, "arrays": self.arrays}
            self.status["rounds"].append({
                "round": server_round, "seconds": round(time.monotonic() - started, 2),
                "sampled": len(messages), "replied": len(replies) - screened.failed, "failed": screened.failed,
                "missing": len(messages) - len(replies), "reasked": self.reasked, "rejected": sum(screened.rejected.values()),
                "rejected_reasons": dict(screened.rejected), "aggregated": aggregated is not None,
                "bytes_sent": len(messages) * size_of(self.arrays) + sent, "bytes_received": screened.bytes_received,
                "train_loss": float(train_metrics["loss"]) if train_metrics and "loss" in train_metrics else None,  # type: ignore[arg-type]
                "update_norm_median": float(np.median(screened.update_norms)) if screened.update_norms else None,
                "update_norm_max": float(np.max(screened.update_norms)) if screened.update_norms else None,
                "client_seconds": float(train_metrics["seconds"]) if train_metrics and "seconds" in train_metrics else None,  # type: ignore[arg-type]
                "validation": validation, "epsilon": self._epsilon(),
            })
            self._save(detail=f"round {server_round} of {config.rounds} done", epsilon=self._epsilon())
        return self._finish(State.COMPLETED, f"{config.rounds} rounds", best, publish=config.publish)

    def _finish(self, state: str, detail: str, best: dict[str, Any], *, publish: bool) -> str:
        """Evaluate the kept model on test once, write it as a training run, hand it to the workers."""
        if best["round"] == 0:
            state = State.FAILED if state == State.COMPLETED else state
            self._save(state=state, detail=f"{detail}; no round was aggregated, nothing to publish",
                       finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            return state
        self._save(detail=f"{detail}; evaluating round {best['round']}'s model on the clients' test items")
        test, _ = self._evaluate(self.config.rounds + 1, best["arrays"], TEST)
        member = self.kind.load(best["arrays"])
        folder = write_global_run(self.base, member, self.settings.runs_dir / self.config.run_id, metrics=test,
                                  federated={"config": self.status["config"], "rounds": self.status["rounds"],
                                             "best_round": best["round"], "epsilon": self._epsilon(),
                                             "delta": self.config.dp_delta if self.config.private else None})
        job = None
        if publish:
            app = jobs.celery_app(self.settings)
            job = jobs.federated_publish(app, str(folder)).apply_async(queue=self.settings.job_queue).id
        self._save(state=state, detail=detail, best_round=best["round"], test=test, output_run=str(folder),
                   publish_job=job, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        return state
