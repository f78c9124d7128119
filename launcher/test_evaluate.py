"""`cinesync evaluate`: the beyond-accuracy report of a finished run, as tables and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from launcher.cli import main
from recsys.pipeline import CASCADE, METRICS_FILE, REPORT_FILE


def test_evaluate_reports_every_kind_per_group_and_agrees_with_the_run_metrics(small_run: Path) -> None:
    result = CliRunner().invoke(main, ["evaluate", str(small_run), "--json"])
    assert result.exit_code == 0, result.output
    reports = json.loads(result.output)
    assert set(reports) == {"popularity", "ease", "two_tower", CASCADE}
    metrics = json.loads((small_run / METRICS_FILE).read_text())
    for kind, groups in reports.items():
        # the synthetic catalog has movies and TV, so the held-out items are broken down by domain
        assert {"all", "domain movie", "domain tv"} <= set(groups)
        every = groups["all"]
        assert every["ndcg@10"] == metrics[kind]["ndcg@10"] and every["users"] == metrics[kind]["users"]
        assert 0 < every["diversity@10"] <= 1 and 0 <= every["gini@10"] < 1 and 0 < every["popularity@10"] < 1
        assert groups["domain movie"]["users"] + groups["domain tv"]["users"] >= every["users"]
    # popularity shows the same few items to everyone: the least coverage, the most concentrated exposure
    assert reports["popularity"]["all"]["gini@10"] > reports["ease"]["all"]["gini@10"]
    assert reports["popularity"]["all"]["popularity@10"] > reports["ease"]["all"]["popularity@10"]
    assert json.loads((small_run / REPORT_FILE).read_text()) == reports


def test_evaluate_prints_a_table_per_group(small_run: Path) -> None:
    result = CliRunner().invoke(main, ["evaluate", str(small_run)])
    assert result.exit_code == 0, result.output
    blocks = result.output.strip().split("\n\n")
    assert [block.splitlines()[0] for block in blocks][:3] == ["all:", "domain movie:", "domain tv:"]
    header, *rows = blocks[0].splitlines()[1:]
    assert header.split()[:3] == ["ndcg@10", "recall@20", "map@10"]
    assert [row.split()[0] for row in rows] == ["popularity", "ease", "two_tower", CASCADE]


def test_evaluate_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path)])
    assert result.exit_code != 0 and "is not a finished training run" in result.output
