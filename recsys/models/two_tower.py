"""Two-tower retrieval: a user tower over the recent history (nothing per user: a user unknown to
training is encoded like any other), an item tower over id, genres, year and domain; both emit
L2-normalised embeddings compared by inner product."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class TwoTowerConfig:
    n_items: int
    n_genres: int
    n_year_buckets: int
    dim: int = 64
    hidden: int = 128

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class ItemTower(nn.Module):
    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        self.id_embedding = nn.Embedding(config.n_items, config.dim)
        self.genre_projection = nn.Linear(config.n_genres, config.dim, bias=False)
        self.year_embedding = nn.Embedding(config.n_year_buckets, config.dim)
        self.domain_embedding = nn.Embedding(2, config.dim)
        self.mlp = _mlp(4 * config.dim, config.hidden, config.dim)

    def forward(
        self, item_idx: torch.Tensor, genres: torch.Tensor, year_bucket: torch.Tensor, domain: torch.Tensor
    ) -> torch.Tensor:
        x = torch.cat(
            [
                self.id_embedding(item_idx),
                self.genre_projection(genres),
                self.year_embedding(year_bucket),
                self.domain_embedding(domain),
            ],
            dim=-1,
        )
        return F.normalize(self.mlp(x), dim=-1)


class UserTower(nn.Module):
    """history ``[B, L]`` (item index + 1, 0 pads on the left) -> user vector; with ``window`` only
    the last ``window`` items count (ordered data), else the whole history is pooled (a set)."""

    def __init__(self, config: TwoTowerConfig, *, window: int | None = None) -> None:
        super().__init__()
        # Embedding + masked mean exports to plain ONNX ops (EmbeddingBag would be a Loop).
        self.history_embedding = nn.Embedding(config.n_items + 1, config.dim, padding_idx=0)
        self.mlp = _mlp(config.dim, config.hidden, config.dim)
        self.window = window

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        if self.window is not None:
            history = history[:, -self.window :]
        mask = (history > 0).unsqueeze(-1).to(torch.float32)
        pooled = (self.history_embedding(history) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return F.normalize(self.mlp(pooled), dim=-1)
