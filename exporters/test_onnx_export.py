"""ONNX export: every member scorer and the fusion, parity with the kinds at several batch sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cinesync import triton
from exporters import onnx_export
from exporters.onnx_export import PARITY_TOLERANCE, REPORT_FILE, ort_session
from recsys.cascade import pair_features
from recsys.run import load_run


def test_report_names_every_member_and_the_fusion_within_tolerance(exported_run: Path) -> None:
    report = json.loads((exported_run / REPORT_FILE).read_text())
    assert [entry["name"] for entry in report] == [
        "score_popularity", "score_ease", "score_two_tower", triton.FUSION,
    ]
    assert all(0 <= entry["max_abs_error"] <= PARITY_TOLERANCE for entry in report)
    fusion = report[-1]
    assert fusion["inputs"] == ["score_popularity", "score_ease", "score_two_tower", triton.DENSE_INPUT]


@pytest.mark.parametrize("size", [1, 3, 200])
def test_scorers_and_fusion_match_the_kinds_at_any_batch_size(small_run: Path, exported_run: Path, size: int) -> None:
    run = load_run(small_run)
    rng = np.random.default_rng(size)
    users = rng.integers(0, run.catalog.n_users, size)
    items = rng.integers(0, run.catalog.n_items, size)
    feeds = dict(zip(triton.PAIR_INPUTS, (users[:, None], items[:, None]), strict=True))
    for member in run.members:
        (scores,) = ort_session(exported_run / f"{triton.scorer_model(member.name)}.onnx").run(None, feeds)
        np.testing.assert_allclose(scores.reshape(-1), member.score_pairs(users, items), atol=PARITY_TOLERANCE)
    features = pair_features(run.members, run.tables, users, items)
    feeds = onnx_export.fusion_feeds([m.name for m in run.members], features)
    (fused,) = ort_session(exported_run / f"{triton.FUSION}.onnx").run(None, feeds)
    np.testing.assert_allclose(fused.reshape(-1), run.fusion.score_features(features[None])[0], atol=PARITY_TOLERANCE)


def test_parity_beyond_tolerance_is_refused(small_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)  # any error, even 0, now exceeds it
    with pytest.raises(onnx_export.ParityError, match="score_popularity: max abs error"):
        onnx_export.export_run(load_run(small_run), tmp_path)


def test_the_dcn_fusion_itself_exports_with_parity(small_run: Path, tmp_path: Path) -> None:
    run = load_run(small_run)
    run.fusion.network.passthrough.fill_(-1)  # rank with the network even where validation chose a member
    report = onnx_export.export_run(run, tmp_path)
    assert report[-1].name == triton.FUSION and report[-1].max_abs_error <= PARITY_TOLERANCE
