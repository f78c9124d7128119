"""Candidate indexes by kind name: one file each, registered here."""

from __future__ import annotations

from cinesync.indexes.base import ANY, CandidateIndex
from cinesync.indexes.faiss_index import FaissIndex
from cinesync.indexes.item_item import ItemItemIndex

INDEXES: dict[str, type[CandidateIndex]] = {index.kind: index for index in (FaissIndex, ItemItemIndex)}


def index_class(kind: str) -> type[CandidateIndex]:
    """The index registered as ``kind``; a ValueError lists the known ones."""
    try:
        return INDEXES[kind]
    except KeyError:
        raise ValueError(f"unknown index kind {kind!r}; known: {', '.join(sorted(INDEXES))}") from None


__all__ = ["ANY", "INDEXES", "CandidateIndex", "index_class"]
