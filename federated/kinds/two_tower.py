"""The federated two-tower: both towers (item id, history and feature embeddings, and the MLPs) are
global; a client trains them on its own histories with the kind's sampled softmax, so only weights
leave the device."""

from __future__ import annotations

import numpy as np
import torch

from federated.kinds.base import Arrays, FederatedKind
from recsys.kinds import MemberKind
from recsys.kinds.two_tower import TowerState, TwoTower


def to_arrays(state: TowerState) -> Arrays:
    return {f"{tower}.{name}": tensor.detach().cpu().numpy().astype(np.float32, copy=True)
            for tower, weights in state.items() for name, tensor in weights.items()}


def to_state(arrays: Arrays) -> TowerState:
    state: TowerState = {"user": {}, "item": {}}
    for key, value in arrays.items():
        tower, _, name = key.partition(".")
        state[tower][name] = torch.from_numpy(np.ascontiguousarray(value))
    return state


class FederatedTwoTower(FederatedKind):
    """two_tower's weights as arrays named ``user.<weight>`` and ``item.<weight>``."""

    name = "two_tower"
    member: TwoTower

    def initial_arrays(self, base: MemberKind | None) -> Arrays:
        if base is None:
            return to_arrays(self.member.initial_state())
        assert isinstance(base, TwoTower)
        return to_arrays(base.tower_state())

    def train(self, arrays: Arrays, sequences: list[np.ndarray], *, epochs: int, proximal_mu: float) -> tuple[Arrays, float]:
        loss = self.member.train_from(to_state(arrays), sequences, epochs=epochs, proximal_mu=proximal_mu)
        return to_arrays(self.member.tower_state()), loss

    def load(self, arrays: Arrays) -> MemberKind:
        self.member.load_towers(to_state(arrays))
        return self.member
