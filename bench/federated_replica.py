"""Benchmark helper: an in-process replica of the federated rounds, to choose settings on validation
fast (no Flower processes): the same federated kind, device partition, client seeds (1000 x round +
client) and example-weighted mean as the ServerApp's FedAvg; ``rows`` averages each embedding row only
over the clients whose update touched it. Prints the validation NDCG@10 after every round (the test
split only once, at the end, for the record; choices are made on validation).

    .venv/bin/python -m bench.federated_replica --run RUN_DIR [--clients 10] [--local-epochs 1]
        [--rounds 20] [--average mean|rows] [--set batch_size=64]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from federated.devices import partition_users, users_of
from federated.kinds import federated_kind
from recsys.run import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a finished run with a two_tower (its split files)")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--average", choices=["mean", "rows"], default="mean")
    parser.add_argument("--server-lr", type=float, default=1.0, help="FedAvgM's server learning rate")
    parser.add_argument("--server-momentum", type=float, default=0.0, help="FedAvgM's server momentum (0: FedAvg)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PARAM=VALUE",
                        help="a two_tower hyper-parameter for the clients")
    args = parser.parse_args()
    torch.set_num_threads(2)
    run = load_run(args.run)
    params = {**next(k for k in run.manifest["kinds"] if k["kind"] == "two_tower")["params"],
              **dict(o.split("=", 1) for o in args.overrides)}
    validation, test = run.protocol.validation, run.protocol.test
    clients = [users_of(validation, users)
               for users in partition_users(test, run.items, clients=args.clients, partition="iid", seed=0)]
    kind = federated_kind("two_tower", catalog=run.catalog, params=params, seed=0)
    arrays = kind.initial_arrays(None)
    velocity: dict[str, np.ndarray] = {}
    for server_round in range(1, args.rounds + 1):
        started = time.perf_counter()
        updates, weights = [], []
        for index, client in enumerate(clients):
            local_kind = federated_kind("two_tower", catalog=run.catalog, params=params, seed=1000 * server_round + index)
            local, _ = local_kind.train(arrays, client.train_sequences, epochs=args.local_epochs, proximal_mu=0.0)
            updates.append({name: local[name] - arrays[name] for name in arrays})
            weights.append(sum(len(s) for s in client.train_sequences))
        weight = np.array(weights, dtype=np.float64)
        averaged = {}
        for name in arrays:
            stacked = np.stack([update[name] for update in updates])
            if args.average == "rows" and stacked.ndim >= 3:  # [clients, rows, ...]: rows only over who touched them
                touched = (np.abs(stacked).reshape(len(stacked), stacked.shape[1], -1).max(axis=2) > 0) * weight[:, None]
                total = np.maximum(touched.sum(axis=0), 1e-12).reshape(-1, *[1] * (stacked.ndim - 2))
                averaged[name] = np.einsum("cr,cr...->r...", touched, stacked) / total
            else:
                averaged[name] = np.tensordot(weight / weight.sum(), stacked, axes=1)
        velocity = {name: args.server_momentum * velocity.get(name, 0.0) + averaged[name] for name in arrays}
        arrays = {name: (arrays[name] + args.server_lr * velocity[name]).astype(np.float32) for name in arrays}
        print(f"round {server_round}: validation ndcg@10 {kind.evaluate(arrays, validation)['ndcg@10']:.4f} "
              f"({time.perf_counter() - started:.1f} s)", flush=True)
    print(f"last round's model, test ndcg@10 {kind.evaluate(arrays, test)['ndcg@10']:.4f}")


if __name__ == "__main__":
    main()
