"""A transformer over a user's item sequence (SASRec: causal; BERT4Rec: bidirectional with a mask
token), pre-norm blocks written with plain matrix products so that it exports to ONNX as ordinary
ops. Positions count back from the most recent item, so a left-padded history of any length up to
``max_length`` means the same to it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

MASKED = -1e9  # an attention bias that removes a key (finite: a row with no key left stays finite)


@dataclass(frozen=True)
class SequenceConfig:
    n_items: int
    max_length: int = 200
    dim: int = 64
    heads: int = 2
    layers: int = 2
    dropout: float = 0.2
    causal: bool = True  # SASRec; False: BERT4Rec, which reads a mask token after the history


class Block(nn.Module):
    """Pre-norm self-attention and a GELU feed-forward layer, each with a residual connection."""

    def __init__(self, config: SequenceConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.attention_norm = nn.LayerNorm(config.dim)
        self.qkv = nn.Linear(config.dim, 3 * config.dim)
        self.projection = nn.Linear(config.dim, config.dim)
        self.feed_forward_norm = nn.LayerNorm(config.dim)
        self.feed_forward = nn.Sequential(nn.Linear(config.dim, 4 * config.dim), nn.GELU(),
                                          nn.Linear(4 * config.dim, config.dim))
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).chunk(3, dim=-1)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, length, self.heads, dim // self.heads).transpose(1, 2)

        # Fused attention (no dropout on the attention weights: drawing their mask cost more than the rest
        # of a CPU training step); exported to ONNX as MatMul / Softmax.
        attended = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=bias)
        attended = attended.transpose(1, 2).reshape(batch, length, dim)
        x = x + self.dropout(self.projection(attended))
        return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))


class SequenceEncoder(nn.Module):
    """Item ids (index + 1; 0 pads, n_items + 1 is the mask token) -> a hidden state per position;
    ``forward`` is the serving form: a history ``[B, L]`` -> the user vector ``[B, dim]``."""

    def __init__(self, config: SequenceConfig) -> None:
        super().__init__()
        self.config = config
        self.mask_token = config.n_items + 1
        self.items = nn.Embedding(config.n_items + 2, config.dim, padding_idx=0)
        self.positions = nn.Embedding(config.max_length, config.dim)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)
        self.dropout = nn.Dropout(config.dropout)
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def hidden(self, sequence: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` ids (L <= max_length, left-padded) -> ``[B, L, dim]``."""
        length = sequence.shape[1]
        x = self.items(sequence) * math.sqrt(self.config.dim) + self.positions.weight[self.config.max_length - length :]
        x = self.dropout(x)
        keys = (sequence == 0).unsqueeze(1).unsqueeze(2)  # [B, 1, 1, L]: padding is never attended to
        if self.config.causal:
            future = torch.ones(length, length, dtype=torch.bool, device=sequence.device).triu(1)
            keys = keys | future
        bias = torch.zeros(keys.shape, dtype=x.dtype, device=x.device).masked_fill(keys, MASKED)
        for block in self.blocks:
            x = block(x, bias)
        return self.norm(x)

    def item_table(self) -> torch.Tensor:
        """The output embeddings of the catalog's items, ``[n_items, dim]`` (tied to the input ones)."""
        return self.items.weight[1 : self.config.n_items + 1]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.item_table().T

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        history = history[:, -self.config.max_length :]
        if not self.config.causal:  # BERT4Rec asks what comes next by a mask token after the history
            history = torch.cat([history[:, 1:], torch.full_like(history[:, :1], self.mask_token)], dim=1)
        return self.hidden(history)[:, -1]


def full_softmax_loss(encoder: SequenceEncoder, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the whole catalog at the positions with a target (item index; -1 elsewhere)."""
    rows = targets >= 0
    return F.cross_entropy(encoder.logits(hidden[rows]).float(), targets[rows])
