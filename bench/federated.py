"""Benchmark: federated two-tower on real Flower processes against the same kind trained centrally.

A central run of the two-tower alone is trained on --data (its split files are the ones every
federated run uses); the users are cut into --clients device folders (--partition), one SuperNode
each on loopback, and each variant runs --rounds federated rounds from fresh weights (not the
central model's): the round kept is the best on the clients' validation items, and its model is
evaluated once on their test items. Central figures beside it, on the same test split: the
two-tower fitted on the validation split's training part (the data the clients train on) and the
pipeline's refit on the test split's training part.

Variants (--variants, comma-separated): plain:<strategy> (no attack, no DP); byzantine:<strategy>
(--byzantine-share of the clients send global - --byzantine-scale x their update; Krum and Multi-Krum
tolerate that share with or without the attack, Multi-Krum averaging the other clients' replies); dp:<noise multiplier>
(FedAvg with server-side fixed clipping at --dp-clip and Flower's RDP accountant, delta 1e-5).

    .venv/bin/python -m bench.federated --data ../shared/data/ml-100k [--clients 10] [--rounds 20]
        [--variants plain:fedavg] [--run RUN_DIR] [--max-update-norm B] [--out FILE]

Results go to docs/bench/federated-<data set>.json, or --out (merged with earlier variants there).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.machine import machine
from cinesync.federation import FederatedRunConfig, State
from cinesync.settings import Settings
from control_plane.federation import Federation
from federated.devices import PARTITIONS, write_devices
from launcher.stack import Stack
from recsys.kinds import create
from recsys.metrics import evaluate_full_ranking
from recsys.pipeline import PipelineSpec, evaluate, train
from recsys.run import load_run

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "bench"


CENTRAL_SEEDS = (0, 1, 2)


def central_figures(run_dir: Path) -> dict[str, Any]:
    """The central two-tower on the run's test split: as the pipeline refit it, and fitted on the
    validation split's training part only (what the federated clients train on), at the run's seed
    (the federated runs' too) and at each of CENTRAL_SEEDS, since one seed's test figure is noisy."""
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() \
        else evaluate(run_dir)
    run = load_run(run_dir)
    described = next(k for k in run.manifest["kinds"] if k["kind"] == "two_tower")
    figures: dict[str, Any] = {"refit_on_test_training_part": metrics["two_tower"], "by_seed": {}}
    for seed in sorted({run.spec.seed, *CENTRAL_SEEDS}):
        tower = create("two_tower", run.catalog, described["params"], seed=seed)
        started = time.perf_counter()
        tower.fit(run.protocol.validation)  # type: ignore[attr-defined]
        fit_seconds = time.perf_counter() - started
        on_validation_part = evaluate_full_ranking(tower.user_scores(run.protocol.test), run.protocol.test)  # type: ignore[attr-defined]
        figures["by_seed"][str(seed)] = {"ndcg@10": on_validation_part["ndcg@10"], "chosen": tower.chosen,
                                         "fit_seconds": round(fit_seconds, 1)}
        if seed == run.spec.seed:
            figures.update(fitted_on_validation_part=on_validation_part, fit_seconds=round(fit_seconds, 1),
                           chosen=tower.chosen)
    figures["median_ndcg@10_over_seeds"] = float(np.median([s["ndcg@10"] for s in figures["by_seed"].values()]))
    return figures


def run_variant(variant: str, *, args: argparse.Namespace, run_dir: Path, devices: list[Path], home: Path) -> dict[str, Any]:
    kind, _, value = variant.partition(":")
    config = FederatedRunConfig(base_run=str(run_dir), rounds=args.rounds, min_clients=args.clients,
                                local_epochs=args.local_epochs, start_from="scratch", publish=False,
                                round_timeout_s=args.round_timeout, max_update_norm=args.max_update_norm)
    byzantine = 0
    if kind == "plain":
        config.strategy = value
    elif kind == "byzantine":
        config.strategy = value
        byzantine = max(1, round(args.byzantine_share * args.clients))
    elif kind == "dp":
        config.dp_noise_multiplier, config.dp_clipping_norm = float(value), args.dp_clip
        config.dp_max_epsilon = args.dp_max_epsilon
    else:
        raise SystemExit(f"unknown variant {variant!r}: plain:<strategy>, byzantine:<strategy> or dp:<noise>")
    tolerated = max(1, round(args.byzantine_share * args.clients))  # the same f with and without the attack
    if config.strategy == "krum":
        config.strategy_params = {"byzantine": tolerated}
    elif config.strategy == "multikrum":
        config.strategy_params = {"byzantine": tolerated, "keep": args.clients - tolerated}
    settings = Settings(home=home / variant.replace(":", "-"), superlink_port=0, superlink_health_port=0)
    with Stack(settings, say=lambda line: None) as stack:
        stack.ensure_superlink()
        started = time.perf_counter()
        stack.start_supernodes([{"device": str(folder), "partition-id": index,
                                 **({"byzantine-scale": args.byzantine_scale} if index < byzantine else {})}
                                for index, folder in enumerate(devices)])
        nodes_seconds = time.perf_counter() - started
        federation = Federation(settings.model_copy(update={"superlink_address": stack.superlink_address}))
        run_id = federation.start(config)["run_id"]
        began = time.perf_counter()
        while (status := federation.status(run_id))["state"] in State.OPEN:
            done = len(status.get("rounds", []))
            print(f"{time.strftime('%H:%M:%S')} {variant}: {done}/{args.rounds} rounds "
                  f"{status['rounds'][-1]['validation'] if done else ''}", flush=True)
            time.sleep(15)
        wall = time.perf_counter() - began
    rounds = status.get("rounds", [])
    return {"variant": variant, "state": status["state"], "detail": status["detail"], "byzantine_clients": byzantine,
            "config": status.get("config"), "test": status.get("test"), "best_round": status.get("best_round"),
            "epsilon": status.get("epsilon"), "seconds": round(wall, 1), "supernodes_start_seconds": round(nodes_seconds, 1),
            "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--run", type=Path, help="a finished two-tower run of --data (default: train one)")
    parser.add_argument("--runs-dir", type=Path, help="where the central run is trained (default: a temporary folder)")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--partition", choices=PARTITIONS, default="iid")
    parser.add_argument("--variants", default="plain:fedavg")
    parser.add_argument("--byzantine-share", type=float, default=0.2)
    parser.add_argument("--byzantine-scale", type=float, default=3.0)
    parser.add_argument("--dp-clip", type=float, default=1.0)
    parser.add_argument("--dp-max-epsilon", type=float, default=0.0, help="> 0: stop a DP run before it spends more")
    parser.add_argument("--max-update-norm", type=float, default=FederatedRunConfig.max_update_norm,
                        help="replies whose update has a larger L2 norm are rejected (screening's bound)")
    parser.add_argument("--out", type=Path, help="results file (default: docs/bench/federated-<data set>.json)")
    parser.add_argument("--round-timeout", type=float, default=150.0,
                        help="seconds a round waits for replies (a lost one is counted missing)")
    args = parser.parse_args()
    os.environ["CINESYNC_TORCH_THREADS"] = "1"  # ten client processes at once on two cores
    torch.set_num_threads(2)
    name = Path(args.data).name
    out = args.out or RESULTS / f"federated-{name}.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = args.run or train(args.data, args.runs_dir or Path(scratch) / "runs",
                                    PipelineSpec(members=["two_tower"], retrievers=["two_tower"]))
        if "by_seed" not in results.get("central", {}) or results.get("run") != str(run_dir):
            results.update(central=central_figures(run_dir), run=str(run_dir))
            print("central:", json.dumps(results["central"]), flush=True)
        devices = write_devices(run_dir, Path(scratch) / "devices", clients=args.clients, partition=args.partition)
        for variant in args.variants.split(","):
            result = run_variant(variant, args=args, run_dir=run_dir, devices=devices, home=Path(scratch) / "home")
            results.setdefault("variants", {})[f"{variant}/{args.partition}/{args.clients}/r{args.rounds}"] = result
            results.update(machine=machine(),
                           date=time.strftime("%Y-%m-%d"), data=args.data)
            out.write_text(json.dumps(results, indent=2))
            print(variant, result["state"], result["test"], "best round", result["best_round"], flush=True)


if __name__ == "__main__":
    main()
