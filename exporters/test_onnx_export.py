"""ONNX export: parity with PyTorch at several batch sizes, and the parity report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from exporters.onnx_export import PARITY_TOLERANCE, REPORT_FILE, all_item_inputs, ort_session
from recsys.run import load_run


def test_report_records_parity_within_tolerance(exported_run: Path) -> None:
    report = json.loads((exported_run / REPORT_FILE).read_text())
    assert {entry["name"] for entry in report} == {"user_tower", "item_tower", "ranker"}
    assert all(0 <= entry["max_abs_error"] <= PARITY_TOLERANCE for entry in report)


def test_item_tower_batch_axis_is_dynamic(small_run: Path, exported_run: Path) -> None:
    run = load_run(small_run)
    inputs = all_item_inputs(run)
    session = ort_session(exported_run / "item_tower.onnx")
    for size in (1, 3, run.split.n_items):
        batch = {name: value[:size] for name, value in inputs.items()}
        (onnx_out,) = session.run(None, batch)
        with torch.no_grad():
            torch_out = run.item_tower(*(torch.from_numpy(v) for v in batch.values())).numpy()
        assert onnx_out.shape == torch_out.shape
        assert np.max(np.abs(onnx_out - torch_out)) <= PARITY_TOLERANCE
