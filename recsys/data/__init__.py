"""Data sets: the catalog model, readers for published formats, splits and a synthetic generator."""

from recsys.data.catalog import Domain, Item
from recsys.data.dataset import DataFormatError, InteractionDataset
from recsys.data.loader import load_dataset

__all__ = ["DataFormatError", "Domain", "InteractionDataset", "Item", "load_dataset"]
