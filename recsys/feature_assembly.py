"""Ranking features of (history, candidate) pairs: in numpy for training and evaluation, and the same
computation as a torch module that the fusion's ONNX model embeds, so serving builds the features
the fusion was trained on from the request's history (the exporter's parity gate compares the two).
Only item tables are kept: everything about the user comes from the history itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# The candidate's scaled log training count is this many columns from the end of the dense features
# (see DenseFeatures.forward): 0 for a title without training interactions, a cold one.
POPULARITY_FROM_END = 4


@dataclass
class FeatureTables:
    """Per-item tables, indexed by item index + 1 (row 0 is the padding item, all zeros)."""

    item_genres: np.ndarray  # [n_items + 1, n_genres] multi-hot
    item_log_popularity: np.ndarray  # [n_items + 1], scaled to [0, 1]
    item_year: np.ndarray  # [n_items + 1], scaled to [0, 1], 0.5 when unknown
    item_is_tv: np.ndarray  # [n_items + 1]
    history_length: int  # the longest history the features see (its activity feature is scaled by it)

    @property
    def dense_dim(self) -> int:
        return int(self.item_genres.shape[1]) + 6


def assemble_dense(tables: FeatureTables, history: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Dense features ``[B, W, n_genres + 6]`` (float32) of candidates ``items`` (``[B, W]``, item
    index + 1, 0 pads) for the histories ``history`` (``[B, L]``, item index + 1, 0 pads)."""
    module = DenseFeatures(tables)
    with torch.no_grad():
        return module(torch.from_numpy(np.asarray(history, dtype=np.int64)),
                      torch.from_numpy(np.asarray(items, dtype=np.int64))).numpy()


class DenseFeatures(torch.nn.Module):
    """(history ``[B, L]``, items ``[B, W]``, both item index + 1) -> ``[B, W, D]``: the candidate's
    genres, the history's genre affinity with it, domain match with the history's TV share, the
    candidate's popularity, year and domain, and the history's length."""

    item_genres: torch.Tensor  # registered buffers (FeatureTables' arrays), declared for the type checker
    item_log_popularity: torch.Tensor
    item_year: torch.Tensor
    item_is_tv: torch.Tensor

    def __init__(self, tables: FeatureTables) -> None:
        super().__init__()
        for name in ("item_genres", "item_log_popularity", "item_year", "item_is_tv"):
            self.register_buffer(name, torch.from_numpy(np.asarray(getattr(tables, name), dtype=np.float32)))
        self.log_length = float(np.log1p(max(tables.history_length, 1)))

    def forward(self, history: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        def of(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            # one ONNX Gather over the flattened rows (indexing with a 2-D tensor exports as GatherND)
            return torch.index_select(table, 0, rows.reshape(-1)).reshape(*rows.shape, *table.shape[1:])

        seen = (history > 0).to(torch.float32)  # [B, L]
        count = seen.sum(dim=1, keepdim=True)  # [B, 1]
        taste = of(self.item_genres, history).sum(dim=1)  # [B, G]: padding rows are zero
        affinity = taste / taste.sum(dim=1, keepdim=True).clamp(min=1e-9)
        tv_share = torch.where(count > 0, of(self.item_is_tv, history).sum(dim=1, keepdim=True) / count.clamp(min=1.0),
                               torch.full_like(count, 0.5))  # [B, 1]
        genres = of(self.item_genres, items)  # [B, W, G]
        is_tv = of(self.item_is_tv, items)  # [B, W]
        width = items.shape[1]
        columns = [
            genres,
            (affinity.unsqueeze(1) * genres).sum(dim=2, keepdim=True),
            (is_tv * tv_share + (1.0 - is_tv) * (1.0 - tv_share)).unsqueeze(2),
            of(self.item_log_popularity, items).unsqueeze(2),
            of(self.item_year, items).unsqueeze(2),
            is_tv.unsqueeze(2),
            (torch.log1p(count) / self.log_length).unsqueeze(1).expand(-1, width, -1),
        ]
        return torch.cat(columns, dim=2)
