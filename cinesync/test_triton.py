"""Triton names: where a version is encoded and ranked, for composed and for older versions."""

from __future__ import annotations

import numpy as np

from cinesync import triton


def test_a_composed_version_is_called_at_its_stage_models_version() -> None:
    families = {triton.ENCODERS: "encoders_0123abcd", triton.RANKER: "ranker_89ef4567"}
    assert triton.stage_targets(7, families) == (("encoders_0123abcd", "7"), ("ranker_89ef4567", "7"))
    assert triton.stage_targets(7, {triton.RANKER: "ranker_89ef4567"})[1] == ("ranker_89ef4567", "7")


def test_a_version_published_as_steps_is_called_through_its_ensembles() -> None:
    families = {"score_ease": "score_ease_0123abcd", triton.FUSION: "fusion_89ef4567"}
    assert triton.stage_targets(3, families) == (("encode_3", ""), ("ranking_3", ""))


def test_history_rows_keep_the_latest_items_left_padded() -> None:
    assert triton.history_row(np.array([4, 5, 6]), 5).tolist() == [0, 0, 5, 6, 7]
    assert triton.history_row(np.array([4, 5, 6]), 2).tolist() == [6, 7]
