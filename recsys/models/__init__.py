"""PyTorch networks the kinds train: the two towers and a DCN-v2."""

from recsys.models.dcn import DCN
from recsys.models.two_tower import ItemTower, TwoTowerConfig, UserTower

__all__ = ["DCN", "ItemTower", "TwoTowerConfig", "UserTower"]
