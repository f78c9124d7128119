"""Benchmark: what each composed stage model (encoders, ranker) of trained runs costs per request,
in one process, on the same inputs for every run: ONNX Runtime, one thread, batch 1, a full
HISTORY row and --candidates candidates (random titles, seeded; user vectors random).

    .venv/bin/python -m bench.stage_cost RUN [RUN ...] [--candidates 300] [--repeats 200]

Two runs of the same pipeline can differ here where training chose differently (for example a
cold-title slot ordered by a member, which puts that member's scorer inside the ranker).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.machine import machine
from cinesync import triton
from exporters.composition import compose_stages
from exporters.export_report import read_report
from exporters.onnx_export import export_run, ort_session
from recsys.run import load_run


def stage_costs(run_dir: Path, candidates: int, repeats: int) -> dict[str, float]:
    """Median milliseconds per call of each composed stage model of the run at ``run_dir``."""
    run = load_run(run_dir)
    chooser = np.random.default_rng(0)
    costs = {}
    with tempfile.TemporaryDirectory() as scratch:
        onnx, stages_dir = Path(scratch) / "onnx", Path(scratch) / "stages"
        stages_dir.mkdir()
        export_run(run, onnx)
        for stage in compose_stages(read_report(onnx), onnx, stages_dir):
            session = ort_session(stage.file, threads=1)
            feeds = {}
            for tensor in session.get_inputs():
                if tensor.name == triton.HISTORY:
                    feeds[tensor.name] = chooser.integers(1, len(run.items) + 1, (1, run.spec.history_length))
                elif tensor.name == triton.ITEMS:
                    feeds[tensor.name] = chooser.integers(1, len(run.items) + 1, (1, candidates))
                else:  # a user vector
                    feeds[tensor.name] = chooser.standard_normal((1, tensor.shape[-1])).astype(np.float32)
            for _ in range(repeats // 10):  # warm up
                session.run(None, feeds)
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                session.run(None, feeds)
                times.append(time.perf_counter() - started)
            costs[stage.name] = round(float(np.median(times)) * 1000, 3)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="trained runs (recsys.pipeline.train)")
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "candidates": args.candidates, "median_ms": {str(run): stage_costs(run, args.candidates, args.repeats)
                                                           for run in args.runs}}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
