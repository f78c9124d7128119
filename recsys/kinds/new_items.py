"""Parameters for titles added without interactions: a ridge map from content embeddings to a kind's
per-item rows (embedding rows, item-item weight columns), fitted on the warm items, its ridge chosen
on a seeded fifth of them held out."""

from __future__ import annotations

import numpy as np

RIDGE_GRID = (0.1, 1.0, 10.0, 100.0)
HELD_OUT_SHARE = 0.2
SEED = 23


def _ridge(inputs: np.ndarray, targets: np.ndarray, l2: float) -> np.ndarray:
    gram = inputs.T @ inputs + l2 * np.eye(inputs.shape[1])
    return np.linalg.solve(gram, inputs.T @ targets)


def content_to_rows(content: np.ndarray, table: np.ndarray, warm: np.ndarray) -> np.ndarray:
    """Rows for the items after ``table``'s (``content`` holds every item's embedding, ``table``'s items
    first): ``content @ M`` with M the ridge map from content to ``table``'s ``warm`` rows. The ridge
    is the one of RIDGE_GRID with the least squared error on a seeded fifth of the warm rows."""
    known = table.shape[0]
    if content.shape[0] < known or warm.shape != (known,):
        raise ValueError(f"content for {content.shape[0]} items and a warm mask of {warm.shape} do not fit "
                         f"a table of {known} rows")
    inputs, targets = content[:known][warm].astype(np.float64), table[warm].astype(np.float64)
    if len(inputs) < 2:
        return np.zeros((content.shape[0] - known, *table.shape[1:]), dtype=table.dtype)
    held = np.random.default_rng(SEED).random(len(inputs)) < HELD_OUT_SHARE
    held[0] = True  # at least one row on each side
    held[-1] = False
    errors = [np.mean((inputs[held] @ _ridge(inputs[~held], targets[~held], l2) - targets[held]) ** 2)
              for l2 in RIDGE_GRID]
    mapping = _ridge(inputs, targets, RIDGE_GRID[int(np.argmin(errors))])
    return (content[known:].astype(np.float64) @ mapping).astype(table.dtype)


def grown(table: np.ndarray, content: np.ndarray, warm: np.ndarray) -> np.ndarray:
    """``table`` with one mapped row (content_to_rows) appended per new item."""
    return np.concatenate([table, content_to_rows(content, table, warm)])
