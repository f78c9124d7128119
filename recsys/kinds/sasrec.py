"""SASRec (Kang & McAuley 2018) trained with the full cross-entropy over the catalog at every
position ("SASRec+", Klenitskiy & Vasilev 2023): a causal transformer reads the history and its last
position's state is the user vector that scores the next item."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys.kinds.base import Role
from recsys.kinds.sequential import SequentialMember, SequentialParams, left_padded


@dataclass
class SasRecParams(SequentialParams):
    """SASRec's hyper-parameters (those of SequentialParams)."""


class SasRec(SequentialMember):
    """Next-item prediction at every position of each training window."""

    name = "sasrec"
    roles = frozenset({Role.RETRIEVER, Role.SCORER})
    Params = SasRecParams
    causal = True

    def training_examples(
        self, sequences: list[np.ndarray], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        length = self.params.max_length
        inputs = left_padded([s[:-1] + 1 for s in sequences], length, 0)
        targets = left_padded([s[1:] for s in sequences], length, -1)
        return torch.from_numpy(inputs), torch.from_numpy(targets)
