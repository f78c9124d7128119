"""DCN-v2 (Wang et al. 2021): cross layers beside a deep MLP over one feature vector; outputs a logit."""

from __future__ import annotations

import torch
from torch import nn


class CrossLayer(nn.Module):
    """x_{l+1} = x_0 * (W x_l + b) + x_l."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.linear(x) + x


class DCN(nn.Module):
    """Stacked cross layers, then a two-layer MLP and a linear head: [..., width] -> [..., 1]."""

    def __init__(self, width: int, *, cross_layers: int = 2, hidden: int = 64) -> None:
        super().__init__()
        self.cross = nn.ModuleList(CrossLayer(width) for _ in range(cross_layers))
        self.deep = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU())
        self.head = nn.Linear(hidden // 2, 1)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        return self.head(self.deep(x))
