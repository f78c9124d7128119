"""BERT4Rec (Sun et al. 2019): a bidirectional transformer trained to recover masked items of the
history (the cloze task), with the full cross-entropy over the catalog; at request time a mask token
after the history asks for the next item, and its state is the user vector."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys.kinds.base import Role
from recsys.kinds.sequential import SequentialMember, SequentialParams, left_padded


@dataclass
class Bert4RecParams(SequentialParams):
    mask_probability: float = 0.2  # each item of a training window is masked with this probability
    last_masked_share: float = 0.1  # windows whose last item alone is masked, as serving asks

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.mask_probability < 1:
            raise ValueError(f"mask_probability must be in (0, 1), got {self.mask_probability}")


class Bert4Rec(SequentialMember):
    """Masked-item prediction over each training window."""

    name = "bert4rec"
    roles = frozenset({Role.RETRIEVER, Role.SCORER})
    Params = Bert4RecParams
    causal = False

    def training_examples(
        self, sequences: list[np.ndarray], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        # Windows of max_length items: the encoder reads max_length positions, the mask among them.
        items = torch.from_numpy(left_padded([s[-p.max_length :] + 1 for s in sequences], p.max_length, 0))
        present = items > 0
        masked = (torch.rand(items.shape, generator=generator) < p.mask_probability) & present
        last_only = torch.rand(len(items), generator=generator) < p.last_masked_share
        masked[last_only] = False
        masked[last_only, -1] = True
        masked[~masked.any(dim=1), -1] = True  # every window teaches something
        inputs = items.masked_fill(masked, self.catalog.n_items + 1)
        targets = torch.where(masked, items - 1, torch.full_like(items, -1))
        return inputs, targets
