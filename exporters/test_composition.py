"""Composed stage models: one graph per stage computing exactly what the exported models compute
one by one, with the ensembles' tensor names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from cinesync import triton
from exporters.composition import compose_stages
from exporters.export_report import ENCODER, FUSION_ROLE, SCORER, read_report
from exporters.onnx_export import ort_session


def _requests(rng: np.random.Generator, batch: int, width: int, length: int, items: int) -> dict[str, np.ndarray]:
    history = rng.integers(0, items + 1, (batch, length))
    history[0] = 0  # a user with no history
    history[1, : length // 2] = 0  # a short one, left-padded
    candidates = rng.integers(1, items + 1, (batch, width))
    candidates[:, -1] = 0  # a pad
    return {triton.HISTORY: history.astype(np.int64), triton.ITEMS: candidates.astype(np.int64)}


def test_stages_compute_what_the_models_compute_one_by_one(exported_run: Path, tmp_path: Path) -> None:
    models = read_report(exported_run)
    stages = {stage.name: stage for stage in compose_stages(models, exported_run, tmp_path)}
    assert list(stages) == [triton.ENCODERS, triton.RANKER]
    encoders = [m for m in models if m.role == ENCODER]
    length = encoders[0].inputs[0].dims[0]
    items = 200  # the small run's catalog
    feeds = _requests(np.random.default_rng(0), 7, 13, length, items)

    run = {m.name: ort_session(exported_run / m.served_file) for m in models}
    vectors = {triton.user_vector(m.member): run[m.name].run(None, {triton.HISTORY_INPUT: feeds[triton.HISTORY]})[0]
               for m in encoders}
    scores = {}
    for model in (m for m in models if m.role == SCORER):
        inner = {triton.HISTORY_INPUT: feeds[triton.HISTORY], triton.ITEMS_INPUT: feeds[triton.ITEMS],
                 triton.USER_VECTOR: vectors.get(triton.user_vector(model.member))}
        scores[triton.member_score(model.member)] = run[model.name].run(
            None, {t.name: inner[t.name] for t in model.inputs})[0]
    fusion = next(m for m in models if m.role == FUSION_ROLE)
    inner = {**scores, triton.HISTORY_INPUT: feeds[triton.HISTORY], triton.ITEMS_INPUT: feeds[triton.ITEMS]}
    expected = run[fusion.name].run(None, {t.name: inner[t.name] for t in fusion.inputs})[0]

    encoding = stages[triton.ENCODERS]
    assert [t.name for t in encoding.inputs] == [triton.HISTORY]
    assert [t.name for t in encoding.outputs] == list(vectors)
    composed = ort_session(encoding.file).run(None, {triton.HISTORY: feeds[triton.HISTORY]})
    for name, value in zip(vectors, composed, strict=True):
        np.testing.assert_allclose(value, vectors[name], rtol=0, atol=1e-6)

    ranker = stages[triton.RANKER]
    assert {t.name for t in ranker.inputs} == {triton.HISTORY, triton.ITEMS, *vectors}
    assert [(t.name, t.data_type, t.dims) for t in ranker.outputs] == [(triton.SCORE, "FP32", [-1])]
    (served,) = ort_session(ranker.file).run(None, {**feeds, **vectors})
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5)
    assert ranker.precision == encoding.precision == "fp32"
    # Every part's nodes are in the one graph, each under its model's name, bound by Identity nodes.
    graph = onnx.load(ranker.file).graph
    assert {node.name.split("/")[0] for node in graph.node} == {m.name for m in models if m.role != ENCODER}
