"""Unit tests of the AdminService's federated request mapping: unset fields keep the run config's defaults."""

from __future__ import annotations

import pytest

from cinesync.federation import FederatedRunConfig, InvalidRunConfig
from cinesync.v1 import admin_pb2 as admin
from control_plane.admin import federated_config


def test_unset_fields_keep_the_defaults_and_set_ones_override_them() -> None:
    assert federated_config(admin.FederatedRunRequest()) == FederatedRunConfig()
    config = federated_config(admin.FederatedRunRequest(
        strategy="multikrum", strategy_params={"byzantine": 2, "keep": 8}, rounds=3, local_batch_size=0,
        publish=False, mode="strategy"))
    assert (config.strategy, config.strategy_params, config.rounds) == ("multikrum", {"byzantine": 2, "keep": 8}, 3)
    assert config.local_batch_size == 0 and config.publish is False  # explicit zero and false are kept
    assert config.local_epochs == FederatedRunConfig.local_epochs


def test_a_negative_batch_size_is_refused_with_the_reason() -> None:
    with pytest.raises(InvalidRunConfig, match="local_batch_size cannot be negative"):
        federated_config(admin.FederatedRunRequest(local_batch_size=-1)).check()
