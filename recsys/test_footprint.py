"""The training run's memory estimate and the refusal before starting."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.footprint import GIB, RunTooLarge, available_bytes, refuse_beyond
from recsys.pipeline import PipelineSpec, train


def test_ease_beyond_its_cap_costs_no_more_and_a_whole_catalog_kind_costs_items_squared() -> None:
    spec = PipelineSpec()
    small = spec.footprint(users=200_000, items=8_000, interactions=8_000_000)
    large = spec.footprint(users=200_000, items=50_000, interactions=8_000_000)
    assert large.terms["item-item fit"] == small.terms["item-item fit"] == 40 * 8_000**2
    uncapped = PipelineSpec(options={"ease": {"max_items": 0}}).footprint(users=200_000, items=50_000,
                                                                          interactions=8_000_000)
    assert uncapped.terms["item-item fit"] == 40 * 50_000**2
    sequential = PipelineSpec(split="loo-time").footprint(users=200_000, items=50_000, interactions=8_000_000)
    assert sequential.terms["item-item fit"] == 40 * 50_000**2  # SLIST fits the whole catalog
    # The fusion's lists grow with the evaluated users only up to the sample.
    assert PipelineSpec().footprint(users=10**6, items=8_000, interactions=0).terms["candidate lists"] == \
        small.terms["candidate lists"]


def test_available_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   2097152 kB\n")
    assert available_bytes(meminfo) == 2 * GIB
    assert available_bytes(tmp_path / "absent") is None


def test_a_run_beyond_the_limit_is_refused_naming_the_estimate_and_the_limit() -> None:
    footprint = PipelineSpec().footprint(users=10**6, items=50_000, interactions=4 * 10**7)
    with pytest.raises(RunTooLarge, match=r"needs an estimated \d+\.\d GiB .* and 4\.0 GiB is available"):
        refuse_beyond(footprint, limit=4 * GIB, what="1000000 users")
    refuse_beyond(footprint, limit=None, what="unknown limit")  # nothing to compare with: not refused
    refuse_beyond(footprint, limit=footprint.total, what="just fits")


def test_training_is_refused_before_any_fit_when_memory_is_short(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("recsys.pipeline.available_bytes", lambda: GIB)
    with pytest.raises(RunTooLarge, match="synthetic: 100 users"):
        train("synthetic:n_users=100,n_items=50,mean_interactions=8,seed=1", tmp_path, PipelineSpec())
    assert not any(tmp_path.iterdir())  # no run folder started
