"""The catalog model: one item of the movie or TV domain."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Domain(StrEnum):
    MOVIE = "movie"
    TV = "tv"


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    title: str
    genres: tuple[str, ...]
    year: int | None
    domain: Domain

    def to_json(self) -> dict[str, object]:
        return {
            "item_id": self.item_id,
            "title": self.title,
            "genres": list(self.genres),
            "year": self.year,
            "domain": self.domain.value,
        }

    @classmethod
    def from_json(cls, row: dict[str, object]) -> Item:
        year = row.get("year")
        genres = row.get("genres") or []
        assert isinstance(genres, list)
        return cls(
            item_id=str(row["item_id"]),
            title=str(row["title"]),
            genres=tuple(str(g) for g in genres),
            year=int(str(year)) if year is not None else None,
            domain=Domain(str(row["domain"])),
        )
