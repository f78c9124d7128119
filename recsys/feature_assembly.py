"""Ranking features of (user, item) pairs from lookup tables: in numpy for training and evaluation,
and the same computation as a torch module that the fusion's ONNX model embeds, so serving builds
the features the fusion was trained on (the exporter's parity gate compares the two).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class FeatureTables:
    """Per-user and per-item tables, indexed by the dense indices of one training run."""

    user_genre_affinity: np.ndarray  # [n_users, n_genres], rows sum to 1 (or 0)
    user_tv_share: np.ndarray  # [n_users]
    user_log_activity: np.ndarray  # [n_users], scaled to [0, 1]
    item_genres: np.ndarray  # [n_items, n_genres] multi-hot
    item_log_popularity: np.ndarray  # [n_items], scaled to [0, 1]
    item_year: np.ndarray  # [n_items], scaled to [0, 1], 0.5 when unknown
    item_is_tv: np.ndarray  # [n_items]

    @property
    def dense_dim(self) -> int:
        return int(self.item_genres.shape[1]) + 6


def assemble_dense(tables: FeatureTables, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
    """Dense features ``[n, n_genres + 6]`` (float32) for the pairs (user_idx[i], item_idx[i])."""
    users = np.asarray(user_idx, dtype=np.int64).reshape(-1)
    items = np.asarray(item_idx, dtype=np.int64).reshape(-1)
    affinity = tables.user_genre_affinity[users]
    genres = tables.item_genres[items]
    is_tv = tables.item_is_tv[items]
    tv_share = tables.user_tv_share[users]
    columns = [
        genres,
        (affinity * genres).sum(axis=1, keepdims=True),
        (is_tv * tv_share + (1.0 - is_tv) * (1.0 - tv_share))[:, None],
        tables.item_log_popularity[items][:, None],
        tables.item_year[items][:, None],
        is_tv[:, None],
        tables.user_log_activity[users][:, None],
    ]
    return np.concatenate(columns, axis=1).astype(np.float32)


class DenseFeatures(torch.nn.Module):
    """``assemble_dense`` as a module, the tables inside: (user_idx, item_idx) ``[B, 1]`` -> ``[B, D]``."""

    user_genre_affinity: torch.Tensor  # registered buffers (FeatureTables' fields), declared for the type checker
    user_tv_share: torch.Tensor
    user_log_activity: torch.Tensor
    item_genres: torch.Tensor
    item_log_popularity: torch.Tensor
    item_year: torch.Tensor
    item_is_tv: torch.Tensor

    def __init__(self, tables: FeatureTables) -> None:
        super().__init__()
        for name, value in vars(tables).items():
            self.register_buffer(name, torch.from_numpy(np.asarray(value, dtype=np.float32)))

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        users, items = user_idx.reshape(-1), item_idx.reshape(-1)

        def of(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return torch.index_select(table, 0, rows)  # one ONNX Gather (indexing exports as GatherND)

        genres = of(self.item_genres, items)
        is_tv = of(self.item_is_tv, items)
        tv_share = of(self.user_tv_share, users)
        columns = [
            genres,
            (of(self.user_genre_affinity, users) * genres).sum(dim=1, keepdim=True),
            (is_tv * tv_share + (1.0 - is_tv) * (1.0 - tv_share)).unsqueeze(1),
            of(self.item_log_popularity, items).unsqueeze(1),
            of(self.item_year, items).unsqueeze(1),
            is_tv.unsqueeze(1),
            of(self.user_log_activity, users).unsqueeze(1),
        ]
        return torch.cat(columns, dim=1)
