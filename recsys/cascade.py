"""The cascade: candidates from the retriever kinds, every member's score of each candidate plus the
ranking features, re-ranked by the fusion kind; all of it from each user's recent history.

The same functions build the fusion's training lists (labels from validation, members fitted
without them) and evaluate on test; serving computes the same candidates in the control plane and
the same scores in the Triton ensemble, from the same recent history.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys.candidates import PAD, CandidateLists
from recsys.data.splits import Split
from recsys.feature_assembly import FeatureTables, assemble_dense
from recsys.features import history_matrix, recent
from recsys.kinds.base import MemberKind
from recsys.metrics import top_k_excluding


def retrieve(
    retrievers: Sequence[MemberKind], histories: Sequence[np.ndarray], exclude: list[np.ndarray], depth: int
) -> np.ndarray:
    """The union of each retriever's ``depth`` best unseen items per user, in retriever order, first
    occurrence kept: ``[len(histories), width]`` padded with PAD."""
    stacked = np.concatenate([top_k_excluding(r.score(histories), exclude, depth) for r in retrievers], axis=1)
    rows = []
    for row in stacked:
        _, first = np.unique(row, return_index=True)
        row = row[np.sort(first)]
        rows.append(row[row != PAD])
    out = np.full((len(histories), max(len(r) for r in rows)), PAD, dtype=np.int64)
    for index, row in enumerate(rows):
        out[index, : len(row)] = row
    return out


def list_features(
    members: Sequence[MemberKind], tables: FeatureTables, histories: Sequence[np.ndarray], items: np.ndarray
) -> np.ndarray:
    """``[B, W, n_members + dense_dim]`` for candidates ``items`` (``[B, W]``, PAD pads) of users with
    recent ``histories``: what the fusion reads (pads' rows hold some values)."""
    scores = [m.score_lists(histories, items)[:, :, None] for m in members]
    dense = assemble_dense(tables, history_matrix(histories, tables.history_length), items + 1)
    return np.concatenate([*scores, dense], axis=2).astype(np.float32)


def candidate_lists(
    members: Sequence[MemberKind],
    retrievers: Sequence[MemberKind],
    tables: FeatureTables,
    split: Split,
    *,
    depth: int,
    batch_users: int = 512,
) -> CandidateLists:
    """Candidate lists of ``split``'s held-out users from their recent training history, excluding
    every training item (and, for a cross-domain split, every item outside its target domain)."""
    users = split.test_users()
    parts = []
    for start in range(0, len(users), batch_users):
        batch = users[start : start + batch_users]
        histories = recent([split.train_sequences[u] for u in batch], tables.history_length)
        items = retrieve(retrievers, histories, split.excluded(batch), depth)
        features = list_features(members, tables, histories, items)
        features[items == PAD] = 0.0
        parts.append((batch, items, features))
    width = max(p[1].shape[1] for p in parts)

    def padded(array: np.ndarray, fill: float) -> np.ndarray:
        pad = [(0, 0), (0, width - array.shape[1])] + [(0, 0)] * (array.ndim - 2)
        return np.pad(array, pad, constant_values=fill)

    return CandidateLists(
        users=users,
        items=np.concatenate([padded(p[1], PAD) for p in parts]),
        features=np.concatenate([padded(p[2], 0.0) for p in parts]),
        relevant=[split.test_items[u] for u in users],
    )
