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
from recsys.data import load_dataset
from recsys.data.splits import make_protocol
from recsys.kinds import create
from recsys.kinds import ease as ease_module
from recsys.kinds.ease import Ease
from recsys.pipeline import catalog_of
from recsys.run import load_run


def test_report_names_every_member_and_the_fusion_within_tolerance(exported_run: Path) -> None:
    report = json.loads((exported_run / REPORT_FILE).read_text())
    models = report["models"]
    assert report["precision"] == "fp32" and report["int8_guard"] is None
    assert [entry["name"] for entry in models] == [
        "score_popularity", "score_ease", "score_two_tower", triton.FUSION,
    ]
    assert all(0 <= entry["max_abs_error"] <= PARITY_TOLERANCE for entry in models)
    assert all(entry["served_file"] == entry["file"] and entry["precision"] == "fp32" for entry in models)
    fusion = models[-1]
    graph_inputs = [i.name for i in ort_session(exported_run / fusion["file"]).get_inputs()]
    assert fusion["inputs"] == graph_inputs == ["score_popularity", "score_ease", "score_two_tower", *triton.PAIR_INPUTS]


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
    feeds = onnx_export.fusion_feeds([m.name for m in run.members], features, users, items)
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


@pytest.fixture(scope="module")
def int8_export(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[onnx_export.ExportedModel]]:
    folder = tmp_path_factory.mktemp("int8")
    return folder, onnx_export.export_run(load_run(small_run), folder, precision="int8")


def test_int8_quantizes_the_neural_models_and_records_the_guard(
    small_run: Path, int8_export: tuple[Path, list[onnx_export.ExportedModel]]
) -> None:
    folder, exported = int8_export
    precision = {m.name: m.precision for m in exported}
    assert precision == {"score_popularity": "fp32", "score_ease": "fp32", "score_two_tower": "int8",
                         triton.FUSION: "int8"}
    tower = next(m for m in exported if m.name == "score_two_tower")
    assert (folder / tower.served_file).stat().st_size * 3 < (folder / tower.file).stat().st_size  # int8 tables
    guard = json.loads((folder / REPORT_FILE).read_text())["int8_guard"]
    assert guard["relative_loss"] <= guard["max_loss"] == 0.01 and guard["users"] > 0 and guard["fp32_ndcg"] > 0
    # The quantized tower ranks like the fp32 one on real pairs.
    run = load_run(small_run)
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, run.catalog.n_users, 500), rng.integers(0, run.catalog.n_items, 500)
    feeds = dict(zip(triton.PAIR_INPUTS, (users[:, None], items[:, None]), strict=True))
    (int8,) = ort_session(folder / tower.served_file).run(None, feeds)
    (fp32,) = ort_session(folder / tower.file).run(None, feeds)
    assert np.corrcoef(int8.reshape(-1), fp32.reshape(-1))[0, 1] > 0.99 and not np.array_equal(int8, fp32)


def test_an_int8_pipeline_losing_too_much_validation_ndcg_is_refused(small_run: Path, tmp_path: Path) -> None:
    from exporters.quantize import QuantizationRejected

    # A limit below any achievable loss: the guard must refuse, name the figures, and write no report.
    with pytest.raises(QuantizationRejected, match=r"INT8 loses .* % of validation NDCG@10 \(0\.\d+ fp32 -> 0\.\d+ int8\)"):
        onnx_export.export_run(load_run(small_run), tmp_path, precision="int8", max_loss=-1.0)
    assert not (tmp_path / REPORT_FILE).exists()


def test_guard_measures_the_relative_loss() -> None:
    from exporters.quantize import guard

    result = guard(lambda: np.array([1.0]), lambda: np.array([0.9]), lambda s: float(s[0]), max_loss=0.05, users=3)
    assert result.relative_loss == pytest.approx(0.1) and not result.accepted
    assert guard(lambda: np.array([1.0]), lambda: np.array([0.995]), lambda s: float(s[0]), max_loss=0.01,
                 users=3).accepted


@pytest.mark.parametrize("rows_max_items", [ease_module.ROWS_MAX_ITEMS, 0])
def test_onnx_scorer_matches_the_pairs_scores_by_rows_and_by_flat_index(
    rows_max_items: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ease_module, "ROWS_MAX_ITEMS", rows_max_items)
    dataset = load_dataset("synthetic:n_users=80,n_items=50,mean_interactions=10,seed=3")
    ease = create("ease", catalog_of(dataset), {"l2_grid": "30", "neighbours": 7})
    assert isinstance(ease, Ease)
    ease.fit(make_protocol(dataset).validation)
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 80, 33), rng.integers(0, 50, 33)
    exported = onnx_export.export_module(ease.scorer_module(), name="score_ease", folder=tmp_path,
                             example={"user_idx": users[:8, None], "item_idx": items[:8, None]},
                             check={"user_idx": users[:, None], "item_idx": items[:, None]},
                             expected=ease.score_pairs(users, items))
    assert exported.max_abs_error <= 1e-5
