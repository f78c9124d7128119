"""What the ServerApp tells clients in each message's ConfigRecord, written and read in one place."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from flwr.app import ConfigRecord

from federated.devices import Device
from federated.kinds import FederatedKind, federated_kind
from recsys.features import build_item_features
from recsys.kinds.base import Catalog

VALIDATION = "validation"
TEST = "test"


@dataclass(frozen=True)
class ClientConfig:
    """The kind to build (name, hyper-parameters, catalog ordering and history length), the local
    epochs, the seed and which held-out items an evaluation scores."""

    kind: str
    params: str  # JSON of the kind's hyper-parameters
    ordered: bool
    history_length: int
    local_epochs: int
    seed: int
    split: str = VALIDATION

    def record(self) -> ConfigRecord:
        return ConfigRecord(asdict(self))

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> ClientConfig:
        """From a message's ConfigRecord (or the legacy API's config dict, which a fit leaves without ``split``)."""
        return cls(**{key: record[key] for key in cls.__dataclass_fields__ if key in record})

    def kind_on(self, device: Device, *, seed_offset: int = 0) -> FederatedKind:
        catalog = Catalog(n_users=device.test.n_users, n_items=len(device.items),
                          item_features=build_item_features(device.items), ordered=self.ordered,
                          history_length=self.history_length, items=tuple(device.items))
        params: dict[str, Any] = json.loads(self.params)
        return federated_kind(self.kind, catalog=catalog, params=params, seed=self.seed + seed_offset)
