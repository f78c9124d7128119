"""The ClientApp every SuperNode runs: it trains the global model on the users of its own device folder
(node config ``device``) and evaluates it on their held-out items; only weights and metrics leave.

For simulations and fault tests a node may be told to misbehave (node config ``byzantine-scale``:
send global - scale x its update, a sign-flipped, scaled update; ``fault``: "nan", "shape", "norm"
or "crash", or one of them per round)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from cinesync.settings import get_settings
from federated.client_config import TEST, ClientConfig
from federated.devices import Device
from federated.kinds import Arrays
from federated.replies import ARRAYS_KEY, METRICS_KEY, reply_arrays
from recsys.metrics import K

app = ClientApp()
torch.set_num_threads(get_settings().torch_threads)  # each message is a fresh process: set once here
FAULTS = ("nan", "shape", "norm", "crash")


def misbehave(local: Arrays, start: Arrays, node_config: dict[str, object], server_round: int) -> Arrays:
    """What a Byzantine or faulty node sends instead of ``local`` (trained from ``start``) in
    ``server_round``; ``fault`` may list one fault per round ("nan,shape,norm": round 4 is nan again)."""
    scale = float(node_config.get("byzantine-scale", 0.0))  # type: ignore[arg-type]
    if scale:
        local = {name: (start[name] - scale * (local[name] - start[name])).astype(np.float32) for name in local}
    faults = str(node_config.get("fault", "")).split(",")
    fault = faults[(server_round - 1) % len(faults)]
    if fault not in ("", *FAULTS):
        raise ValueError(f"unknown fault {fault!r}; valid: {', '.join(FAULTS)}")
    name = next(iter(local))
    if fault == "nan":
        local[name] = local[name].copy()
        local[name].flat[0] = np.nan
    elif fault == "shape":
        local[name] = local[name][:-1]
    elif fault == "norm":
        local = {n: start[n] + 1e6 * (local[n] - start[n]) + 1.0 for n in local}
    elif fault == "crash":
        raise RuntimeError("this node is configured to fail (fault=crash)")
    return local


@app.train()
def train(msg: Message, context: Context) -> Message:
    began = time.monotonic()
    device = Device.load(Path(str(context.node_config["device"])))
    record = msg.content.config_records["config"]
    config = ClientConfig.of(record)
    server_round = int(record["server-round"])  # type: ignore[arg-type]
    kind = config.kind_on(device, seed_offset=1000 * server_round + int(context.node_config.get("partition-id", 0)))
    start = reply_arrays(msg.content.array_records[ARRAYS_KEY])
    mu = float(record.get("proximal-mu", 0.0))  # type: ignore[arg-type]  # FedProx sends it
    sequences = device.validation.train_sequences  # validation items stay held out for round selection
    local, loss = kind.train(start, sequences, epochs=config.local_epochs, proximal_mu=mu)
    local = misbehave(local, start, dict(context.node_config), server_round)
    examples = sum(len(s) for s in sequences)
    return Message(RecordDict({
        ARRAYS_KEY: ArrayRecord({name: Array(np.ascontiguousarray(value)) for name, value in local.items()}),
        METRICS_KEY: MetricRecord({"num-examples": examples, "unit-weight": 1, "loss": float(loss),
                                   "seconds": time.monotonic() - began}),  # inside the app, not its start
    }), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    device = Device.load(Path(str(context.node_config["device"])))
    config = ClientConfig.of(msg.content.config_records["config"])
    split = device.test if config.split == TEST else device.validation
    users = len(split.test_users())
    metrics = config.kind_on(device).evaluate(reply_arrays(msg.content.array_records[ARRAYS_KEY]), split) if users else {}
    wanted = {name: float(metrics.get(name, 0.0)) for name in (f"ndcg@{K}", f"recall@{K}", f"hr@{K}")}
    return Message(RecordDict({METRICS_KEY: MetricRecord({**wanted, "users": users, "num-examples": max(users, 1)})}),
                   reply_to=msg)
