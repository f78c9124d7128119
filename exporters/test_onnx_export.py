"""ONNX export: parity with PyTorch at several batch sizes, and the parity report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from exporters import onnx_export
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


def test_parity_beyond_tolerance_is_refused(small_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = load_run(small_run)
    inputs = all_item_inputs(run)
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)  # any error, even 0, now exceeds it
    with pytest.raises(onnx_export.ParityError, match="item_tower: max abs error"):
        onnx_export.export_module(
            run.item_tower,
            name="item_tower",
            example={k: v[:8] for k, v in inputs.items()},
            check={k: v[8:20] for k, v in inputs.items()},
            output="item_embedding",
            folder=tmp_path,
        )
