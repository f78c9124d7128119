"""The terminal table of `cinesync evaluate`: one block per user group, one row per kind."""

from __future__ import annotations

COLUMNS = ("ndcg@10", "recall@20", "map@10", "mrr@10", "hr@10", "coverage@10", "novelty@10", "diversity@10",
           "gini@10", "popularity@10", "users")


def format_report(reports: dict[str, dict[str, dict[str, float]]]) -> str:
    """``reports`` (kind -> group -> metric, as recsys.pipeline.beyond_accuracy_report returns) as
    aligned text: a block per group, a row per kind, the columns of COLUMNS that the group has."""
    groups = list(dict.fromkeys(group for by_group in reports.values() for group in by_group))
    name_width = max(len(kind) for kind in reports) if reports else 4
    blocks = []
    for group in groups:
        rows = {kind: by_group[group] for kind, by_group in reports.items() if group in by_group}
        columns = [c for c in COLUMNS if any(c in metrics for metrics in rows.values())]
        widths = [max(len(c), 7) for c in columns]
        lines = [f"{group}:", "  " + " " * name_width + "".join(f"  {c:>{w}}" for c, w in zip(columns, widths, strict=True))]
        for kind, metrics in rows.items():
            cells = "".join(f"  {_cell(metrics.get(c), c):>{w}}" for c, w in zip(columns, widths, strict=True))
            lines.append(f"  {kind:<{name_width}}{cells}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _cell(value: float | None, column: str) -> str:
    if value is None:
        return "-"
    return f"{int(value)}" if column == "users" else f"{value:.4f}"
