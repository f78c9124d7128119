"""Benchmark: INT8 (QDQ) against fp32 for the exported neural models of one trained pipeline:
ONNX Runtime throughput at batch 1, 64 and 256 requests (100 candidates each for the scorers and
the fusion; same run, alternating, medians), file sizes, the
accuracy guard's validation figures, and test NDCG@10 of both served through Triton and the control
plane (each published, promoted in turn, every test user asked over gRPC).

    .venv/bin/python bench/int8.py --data ../shared/data/ml-100k
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cinesync import triton, versions
from cinesync.settings import Settings
from cinesync.splits import SPLITS
from exporters.export_report import ENCODER, SCORER, ExportedModel
from exporters.onnx_export import (
    REPORT_FILE,
    export_run,
    fusion_feeds,
    ort_session,
    request_batch,
    scorer_feeds,
)
from exporters.publish import publish
from launcher.client import wait_for_version
from launcher.served_eval import evaluate_served
from launcher.stack import Stack
from recsys.pipeline import CASCADE, PipelineSpec, evaluate, train
from recsys.run import TrainedRun, load_run

BATCHES = (1, 64, 256)  # requests per call
CANDIDATES = 100  # per request, for the scorers and the fusion


def feeds_for(run: TrainedRun, model: ExportedModel, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``batch`` real requests (recent histories, CANDIDATES candidates each) as ``model`` reads them."""
    requests = request_batch(run, batch, CANDIDATES, rng)
    if model.role == ENCODER:
        return {triton.HISTORY_INPUT: requests.history()}
    if model.role == SCORER:
        return scorer_feeds(next(m for m in run.members if m.name == model.member), requests)
    scores = {m.name: m.score_lists(requests.histories, requests.items) for m in run.members}
    return fusion_feeds(run, scores, requests)


def throughput(path: Path, feeds: dict[str, np.ndarray], seconds: float = 1.0) -> float:
    """Requests per second of one ONNX Runtime session (2 threads) on ``feeds``, over about ``seconds``."""
    session = ort_session(path, threads=2)
    session.run(None, feeds)
    rows, calls, started = len(next(iter(feeds.values()))), 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, feeds)
        calls += 1
    return rows * calls / (time.perf_counter() - started)


def served_ndcg(stack: Stack, settings: Settings, run_folder: Path, version: int, user: str) -> dict[str, object]:
    versions.promote(settings.model_repository.resolve(), settings.serving_dir, version)
    wait_for_version(stack.grpc_address, user, version, timeout=120)
    served = evaluate_served(stack.grpc_address, run_folder)
    return {"version": version, "ndcg@10": round(served.metrics["ndcg@10"], 4),
            "recall@20": round(served.metrics["recall@20"], 4), "ranked_by": served.ranked_by,
            "versions": served.versions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", choices=SPLITS, default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = str(Path(args.data).resolve()) if Path(args.data).is_dir() else args.data
    with tempfile.TemporaryDirectory() as root_name:
        root = Path(root_name)
        run_folder = train(data, root / "runs", PipelineSpec(split=args.split))
        offline = evaluate(run_folder)[CASCADE]
        run = load_run(run_folder)
        fp32_models = export_run(run, root / "fp32")
        int8_models = export_run(run, root / "int8", precision="int8")
        guard = json.loads((root / "int8" / REPORT_FILE).read_text())["int8_guard"]
        rng = np.random.default_rng(0)
        models: dict[str, object] = {}
        for fp32, int8 in zip(fp32_models, int8_models, strict=True):
            if int8.precision != "int8":
                continue
            entry: dict[str, object] = {
                "fp32_bytes": (root / "fp32" / fp32.file).stat().st_size,
                "int8_bytes": (root / "int8" / int8.served_file).stat().st_size,
            }
            entry["smaller"] = round(int(entry["fp32_bytes"]) / int(entry["int8_bytes"]), 2)  # type: ignore[call-overload]
            for batch in BATCHES:
                feeds = feeds_for(run, fp32, batch, rng)
                pairs = [(throughput(root / "fp32" / fp32.file, feeds), throughput(root / "int8" / int8.served_file, feeds))
                         for _ in range(args.repeats)]
                fp, q = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
                entry[f"batch_{batch}"] = {"fp32_requests_per_s": round(fp), "int8_requests_per_s": round(q),
                                           "speedup": round(q / fp, 2)}
            models[fp32.name] = entry
        settings = Settings(home=root / "home", model_repository=root / "repo", grpc_port=0, metrics_port=0,
                            bundle_poll_s=0.5)
        with Stack(settings, say=lambda line: None) as stack:
            stack.ensure_triton()
            publishing = settings.model_copy(update={"triton_url": stack.triton_url})
            versions = {p: publish(run, root / p, publishing) for p in ("fp32", "int8")}
            stack.start_control_plane()
            user = run.user_ids[0]
            served = {p: served_ndcg(stack, settings, run_folder, v, user) for p, v in versions.items()}
    print(json.dumps({
        "data": args.data, "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, 2 threads",
        "offline_test_ndcg@10": round(offline["ndcg@10"], 4), "guard_validation": guard,
        "models": models, "served_test": served,
    }, indent=2))


if __name__ == "__main__":
    main()
