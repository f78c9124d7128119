"""DCN-v2 ranker over (user, candidate item) with dense features; outputs a relevance logit."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class RankerConfig:
    n_users: int
    n_items: int
    dense_dim: int
    embedding_dim: int = 32
    cross_layers: int = 2
    hidden: int = 128

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class CrossLayer(nn.Module):
    """x_{l+1} = x_0 * (W x_l + b) + x_l (Wang et al., DCN-v2)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.linear(x) + x


class DCNRanker(nn.Module):
    def __init__(self, config: RankerConfig) -> None:
        super().__init__()
        self.user_embedding = nn.Embedding(config.n_users, config.embedding_dim)
        self.item_embedding = nn.Embedding(config.n_items, config.embedding_dim)
        width = 2 * config.embedding_dim + config.dense_dim
        self.cross = nn.ModuleList(CrossLayer(width) for _ in range(config.cross_layers))
        self.deep = nn.Sequential(
            nn.Linear(width, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.hidden // 2), nn.ReLU()
        )
        self.head = nn.Linear(config.hidden // 2, 1)

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """user_idx, item_idx: [batch, 1] int64; dense: [batch, dense_dim]; returns [batch, 1] logits."""
        x0 = torch.cat(
            [self.user_embedding(user_idx.reshape(-1)), self.item_embedding(item_idx.reshape(-1)), dense], dim=-1
        )
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        return self.head(self.deep(x))
