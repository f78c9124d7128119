"""Reader for the MyAnimeList subsample: Movie titles are the movie domain, TV series the tv domain."""

from __future__ import annotations

from pathlib import Path

from recsys.data.catalog import Domain, Item
from recsys.data.dataset import DatasetBuilder, InteractionDataset
from recsys.data.text_files import read_rows

_DOMAIN_BY_TYPE = {"Movie": Domain.MOVIE, "TV": Domain.TV}


def load_anime(folder: Path) -> InteractionDataset:
    """anime_info.dat + anime_history.dat; titles of other types (OVA, Special, ...) are left out."""
    items = []
    for _, fields in read_rows(folder / "anime_info.dat", separator="\t", min_fields=4, skip_header=True):
        domain = _DOMAIN_BY_TYPE.get(fields[3])
        if domain is not None:
            genres = tuple(g.strip() for g in fields[2].split(",") if g.strip())
            items.append(Item(fields[0], fields[1], genres, None, domain))
    known = {it.item_id for it in items}
    builder = DatasetBuilder("anime", items)
    for _, fields in read_rows(folder / "anime_history.dat", separator="\t", min_fields=2, skip_header=True):
        if fields[1] in known:
            builder.add(fields[0], fields[1])
    return builder.build(has_timestamps=False)
