"""Picks the reader for a data set from its folder's contents."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from recsys.data.anime import load_anime
from recsys.data.dataset import DataFormatError, InteractionDataset
from recsys.data.movielens import load_ml1m, load_movielens_csv
from recsys.data.recbole import load_atomic
from recsys.data.synthetic import generate, parse_spec

# Marker file (glob) -> reader; the first match wins.
READERS: tuple[tuple[str, Callable[[Path], InteractionDataset]], ...] = (
    ("*.inter", load_atomic),
    ("movies.dat", load_ml1m),
    ("ratings.csv", load_movielens_csv),
    ("anime_info.dat", load_anime),
)


def load_dataset(spec: str, *, timestamped: bool = False) -> InteractionDataset:
    """'synthetic[:options]' or a folder in one of the formats of READERS. ``timestamped``: where a
    data set has both a fixed split without time and timestamped interactions (ml-1m), read the latter."""
    if spec == "synthetic" or spec.startswith("synthetic:"):
        return generate(parse_spec(spec))
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise DataFormatError(folder, 0, "data set folder not found (or pass 'synthetic')")
    if timestamped and (folder / "movies.dat").is_file():
        return load_ml1m(folder, fixed_split=False)
    for pattern, reader in READERS:
        if any(folder.glob(pattern)):
            return reader(folder)
    known = ", ".join(pattern for pattern, _ in READERS)
    raise DataFormatError(folder, 0, f"unknown data set format: expected one of {known}")
