"""ONNX export: every member's encoder and scorer and the fusion, parity with the kinds on real
histories at several batch sizes and candidate counts, no per-user state inside, and INT8."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from cinesync import triton
from exporters import onnx_export
from exporters.onnx_export import PARITY_TOLERANCE, REPORT_FILE, Requests, ort_session, request_batch
from recsys.candidates import PAD
from recsys.data import load_dataset
from recsys.data.splits import make_protocol
from recsys.features import recent
from recsys.kinds import MemberKind, create
from recsys.kinds.ease import Ease
from recsys.pipeline import catalog_of
from recsys.run import TrainedRun, load_run

MODELS = ["score_popularity", "score_ease", "encode_two_tower", "score_two_tower", triton.FUSION]


def test_report_names_every_model_with_its_tensors_within_tolerance(exported_run: Path) -> None:
    report = json.loads((exported_run / REPORT_FILE).read_text())
    models = report["models"]
    assert report["precision"] == "fp32" and report["int8_guard"] is None
    assert [entry["name"] for entry in models] == MODELS
    assert all(0 <= entry["max_abs_error"] <= PARITY_TOLERANCE for entry in models)
    assert all(entry["served_file"] == entry["file"] and entry["precision"] == "fp32" for entry in models)
    for entry in models:  # the recorded tensors are the graph's own
        session = ort_session(exported_run / entry["file"])
        assert [t["name"] for t in entry["inputs"]] == [i.name for i in session.get_inputs()]
        assert entry["output"]["name"] == session.get_outputs()[0].name
    fusion = models[-1]
    assert [t["name"] for t in fusion["inputs"]] == [
        "score_popularity", "score_ease", "score_two_tower", triton.HISTORY_INPUT, triton.ITEMS_INPUT]
    assert [t["dims"] for t in fusion["inputs"]][-2:] == [[200], [-1]]


def _onnx_scores(run: TrainedRun, folder: Path, requests: Requests) -> dict[str, np.ndarray]:
    scores = {}
    for member in run.members:
        served = Requests(requests.histories, requests.items, requests.length)
        encoder = folder / f"{triton.encoder_model(member.name)}.onnx"
        if encoder.is_file():
            (served.vectors[member.name],) = ort_session(encoder).run(None, {"history": requests.history()})
        (scores[member.name],) = ort_session(folder / f"{triton.scorer_model(member.name)}.onnx").run(
            None, onnx_export.scorer_feeds(member, served))
    return scores


@pytest.mark.parametrize(("size", "width"), [(1, 1), (3, 40), (64, 7)])
def test_every_model_matches_the_kinds_at_any_batch_and_width(
    small_run: Path, exported_run: Path, size: int, width: int
) -> None:
    run = load_run(small_run)
    requests = request_batch(run, size, width, np.random.default_rng(size))
    valid = requests.items != PAD
    scores = _onnx_scores(run, exported_run, requests)
    for member in run.members:
        expected = member.score_lists(requests.histories, requests.items)
        np.testing.assert_allclose(scores[member.name][valid], expected[valid], atol=PARITY_TOLERANCE)
    kinds_scores = {m.name: m.score_lists(requests.histories, requests.items) for m in run.members}
    (fused,) = ort_session(exported_run / f"{triton.FUSION}.onnx").run(
        None, onnx_export.fusion_feeds(run, kinds_scores, requests))
    expected = run.fusion.score_features(onnx_export.fusion_features(run, kinds_scores, requests), valid)
    np.testing.assert_allclose(fused[valid], expected[valid], atol=PARITY_TOLERANCE)


def test_no_exported_model_holds_a_per_user_table(small_run: Path, exported_run: Path) -> None:
    run = load_run(small_run)
    n_users = run.catalog.n_users
    assert n_users not in (run.catalog.n_items, run.catalog.n_items + 1, run.spec.history_length)
    for path in exported_run.glob("*.onnx"):
        shapes = [numpy_helper.to_array(t).shape for t in onnx.load(str(path)).graph.initializer]
        assert not any(n_users in shape for shape in shapes), f"{path.name} has a table over the {n_users} users"


def test_a_user_unknown_to_training_is_scored_from_the_history_alone(small_run: Path, exported_run: Path) -> None:
    run = load_run(small_run)
    known = run.history.train_sequences[0]
    history = recent([known], run.spec.history_length)
    requests = Requests([*history, history[0][:0]], np.tile(np.arange(10), (2, 1)), run.spec.history_length)
    scores = _onnx_scores(run, exported_run, requests)
    # Same history, same scores whoever sends it; the empty history scores differently.
    for member in run.members:
        np.testing.assert_allclose(scores[member.name][0], member.score_lists(history, requests.items[:1])[0],
                                   atol=PARITY_TOLERANCE)
    assert not np.allclose(scores["ease"][0], scores["ease"][1])


def test_parity_beyond_tolerance_is_refused(small_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)  # any error, even 0, now exceeds it
    with pytest.raises(onnx_export.ParityError, match="score_popularity: max abs error"):
        onnx_export.export_run(load_run(small_run), tmp_path)


@pytest.mark.parametrize("cold_member", [-1, 1])
def test_the_dcn_fusion_itself_exports_with_parity(small_run: Path, tmp_path: Path, cold_member: int) -> None:
    run = load_run(small_run)
    run.fusion.network.passthrough.fill_(-1)  # rank with the network even where validation chose a member
    run.fusion.network.cold_member.fill_(cold_member)  # and order cold titles' slots by a member (or not)
    run.tables.item_log_popularity[1::3] = 0.0  # a third of the titles cold
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
    assert precision == {"score_popularity": "fp32", "score_ease": "fp32", "encode_two_tower": "int8",
                         "score_two_tower": "int8", triton.FUSION: "int8"}
    tower = next(m for m in exported if m.name == "score_two_tower")
    assert (folder / tower.served_file).stat().st_size * 3 < (folder / tower.file).stat().st_size  # int8 tables
    guard = json.loads((folder / REPORT_FILE).read_text())["int8_guard"]
    assert guard["relative_loss"] <= guard["max_loss"] == 0.01 and guard["users"] > 0 and guard["fp32_ndcg"] > 0
    # The quantized encoder and scorer rank like the fp32 ones on real requests.
    run = load_run(small_run)
    requests = request_batch(run, 200, 20, np.random.default_rng(0))
    history = {"history": requests.history()}
    (int8_vectors,) = ort_session(folder / "encode_two_tower.int8.onnx").run(None, history)
    (fp32_vectors,) = ort_session(folder / "encode_two_tower.onnx").run(None, history)
    feeds = {"user_vector": fp32_vectors, "items": requests.candidates()}
    (int8,) = ort_session(folder / tower.served_file).run(None, {**feeds, "user_vector": int8_vectors})
    (fp32,) = ort_session(folder / tower.file).run(None, feeds)
    valid = requests.items != PAD
    assert np.corrcoef(int8[valid], fp32[valid])[0, 1] > 0.99 and not np.array_equal(int8, fp32)


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


def test_ease_scorer_reads_the_history_as_the_kind_does(tmp_path: Path) -> None:
    dataset = load_dataset("synthetic:n_users=80,n_items=50,mean_interactions=10,seed=3")
    ease = create("ease", catalog_of(dataset, history_length=12), {"l2_grid": "30", "neighbours": 7})
    assert isinstance(ease, Ease)
    ease.fit(make_protocol(dataset).validation)
    rng = np.random.default_rng(0)
    histories = [rng.choice(50, rng.integers(0, 12), replace=False) for _ in range(33)]
    items = rng.integers(0, 50, (33, 9))
    check = Requests(histories, items, 12)
    example = Requests(histories[:8], items[:8, :4], 12)
    inputs = onnx_export.tensors_of(12)
    _, error = onnx_export.export_module(
        ease.scorer_module(), name="score_ease", folder=tmp_path, inputs=list(inputs.values()),
        output=onnx_export.Tensor("score", "FP32", [-1]),
        example={"history": example.history(), "items": example.candidates()},
        check={"history": check.history(), "items": check.candidates()},
        expected=ease.score_lists(histories, items))
    assert error <= 1e-5


@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "slist"])
def test_order_aware_kinds_export_with_parity(name: str, tmp_path: Path) -> None:
    dataset = load_dataset("synthetic:n_users=60,n_items=40,mean_interactions=12,seed=4")
    options = {"slist": {"l2_grid": "10", "decay_grid": "4", "transition_weight_grid": "0.5"}}.get(
        name, {"epochs": 1, "dim": 16, "max_length": 12})
    member = create(name, catalog_of(dataset, history_length=12), options)
    assert isinstance(member, MemberKind)
    member.fit(make_protocol(dataset).validation)
    rng = np.random.default_rng(1)
    histories = [rng.choice(40, rng.integers(1, 15), replace=False) for _ in range(21)]
    histories = recent(histories, 12)
    items = rng.integers(0, 40, (21, 6))
    check, example = Requests(histories, items, 12), Requests(histories[:4], items[:4, :3], 12)
    inputs = onnx_export.tensors_of(12)
    encoder = member.encoder_module()
    if encoder is not None:
        vector = onnx_export.Tensor("user_vector", "FP32", [16])
        _, error = onnx_export.export_module(
            encoder, name=f"encode_{name}", folder=tmp_path, inputs=[inputs["history"]], output=vector,
            example={"history": example.history()}, check={"history": check.history()},
            expected=member.encode(histories))
        assert error <= PARITY_TOLERANCE
    else:
        _, error = onnx_export.export_module(
            member.scorer_module(), name=f"score_{name}", folder=tmp_path, inputs=list(inputs.values()),
            output=onnx_export.Tensor("score", "FP32", [-1]),
            example={"history": example.history(), "items": example.candidates()},
            check={"history": check.history(), "items": check.candidates()},
            expected=member.score_lists(histories, items))
        assert error <= PARITY_TOLERANCE
