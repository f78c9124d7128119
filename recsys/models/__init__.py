"""PyTorch recommenders: two-tower retrieval and a DCN-v2 ranker."""

from recsys.models.ranker import DCNRanker, RankerConfig
from recsys.models.two_tower import ItemTower, TwoTowerConfig, UserTower

__all__ = ["DCNRanker", "ItemTower", "RankerConfig", "TwoTowerConfig", "UserTower"]
