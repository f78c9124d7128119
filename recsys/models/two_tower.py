"""Two-tower retrieval: a user tower over recent history and user features, an item tower over
id, genres, year and domain; both emit L2-normalised embeddings compared by inner product."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class TwoTowerConfig:
    n_users: int
    n_items: int
    n_genres: int
    n_year_buckets: int
    user_feature_cardinalities: list[int] = field(default_factory=lambda: [1])
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
    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        self.id_embedding = nn.Embedding(config.n_users, config.dim)
        # History holds item index + 1; 0 pads. Embedding + masked mean exports to plain ONNX ops.
        self.history_embedding = nn.Embedding(config.n_items + 1, config.dim, padding_idx=0)
        self.feature_embeddings = nn.ModuleList(nn.Embedding(c, config.dim) for c in config.user_feature_cardinalities)
        width = (2 + len(config.user_feature_cardinalities)) * config.dim
        self.mlp = _mlp(width, config.hidden, config.dim)

    def forward(self, user_idx: torch.Tensor, history: torch.Tensor, user_features: torch.Tensor) -> torch.Tensor:
        mask = (history > 0).unsqueeze(-1).to(torch.float32)
        pooled = (self.history_embedding(history) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        parts = [self.id_embedding(user_idx), pooled]
        parts += [emb(user_features[:, i]) for i, emb in enumerate(self.feature_embeddings)]
        return F.normalize(self.mlp(torch.cat(parts, dim=-1)), dim=-1)
