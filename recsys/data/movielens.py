"""Readers for MovieLens: the ml-1m '::' files with its fixed split, and the current CSV format."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from recsys.data.catalog import Domain, Item
from recsys.data.dataset import DataFormatError, DatasetBuilder, InteractionDataset
from recsys.data.text_files import parse_number, read_rows, split_title_year

_ML1M_ENCODING = "iso-8859-1"


def load_ml1m(folder: Path, *, fixed_split: bool = True) -> InteractionDataset:
    """ml-1m: movies.dat and users.dat, with split/train.txt + split/test.txt if present (and
    ``fixed_split``), else the timestamped ratings*.dat[.gz]."""
    items = _ml1m_movies(folder / "movies.dat")
    builder = DatasetBuilder("ml-1m", items)
    split = folder / "split"
    if fixed_split and (split / "train.txt").is_file():
        for part, is_test in (("train.txt", False), ("test.txt", True)):
            for user_id, item_id in _split_rows(split / part):
                builder.add(user_id, item_id, test=is_test)
        return builder.build(has_timestamps=False, user_features=_ml1m_users(folder / "users.dat"), fixed_split=True)
    ratings = sorted(folder.glob("ratings*.dat")) + sorted(folder.glob("ratings*.dat.gz"))
    if not ratings:
        raise DataFormatError(folder, 0, "neither split/train.txt nor a ratings*.dat file")
    for path in ratings:
        for line, fields in read_rows(path, separator="::", min_fields=4, encoding=_ML1M_ENCODING):
            builder.add(fields[0], fields[1], parse_number(path, line, fields[3], "timestamp"))
    return builder.build(has_timestamps=True, user_features=_ml1m_users(folder / "users.dat"))


def _ml1m_movies(path: Path) -> list[Item]:
    items = []
    for _, fields in read_rows(path, separator="::", min_fields=3, encoding=_ML1M_ENCODING):
        title, year = split_title_year(fields[1])
        genres = tuple(g for g in fields[2].split("|") if g and g != "(no genres listed)")
        items.append(Item(fields[0], title, genres, year, Domain.MOVIE))
    return items


def _ml1m_users(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    features: dict[str, dict[str, str]] = {"gender": {}, "age": {}, "occupation": {}}
    for _, fields in read_rows(path, separator="::", min_fields=4, encoding=_ML1M_ENCODING):
        features["gender"][fields[0]] = fields[1]
        features["age"][fields[0]] = fields[2]
        features["occupation"][fields[0]] = fields[3]
    return features


def _split_rows(path: Path) -> Iterator[tuple[str, str]]:
    """'user item item ...' with 0-based ids -> (UserID, MovieID) strings, 1-based as in the .dat files."""
    for line, fields in read_rows(path, separator=" ", min_fields=1):
        try:
            ids = [int(f) for f in fields if f]
        except ValueError:
            raise DataFormatError(path, line, "ids must be integers") from None
        user_id = str(ids[0] + 1)
        for item in ids[1:]:
            yield user_id, str(item + 1)


def load_movielens_csv(folder: Path) -> InteractionDataset:
    """Current MovieLens CSV format (ml-latest, ml-25m): ratings.csv and movies.csv."""
    items = []
    for line, row in _csv_rows(folder / "movies.csv", ("movieId", "title", "genres")):
        title, year = split_title_year(row["title"])
        genres = tuple(g for g in row["genres"].split("|") if g and g != "(no genres listed)")
        items.append(Item(row["movieId"], title, genres, year, Domain.MOVIE))
    builder = DatasetBuilder(folder.name, items)
    ratings = folder / "ratings.csv"
    for line, row in _csv_rows(ratings, ("userId", "movieId", "timestamp")):
        builder.add(row["userId"], row["movieId"], parse_number(ratings, line, row["timestamp"], "timestamp"))
    return builder.build(has_timestamps=True)


def _csv_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    if not path.is_file():
        raise DataFormatError(path, 0, "file not found")
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or any(name not in header for name in required):
            raise DataFormatError(path, 1, f"header must name {', '.join(required)}")
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise DataFormatError(path, reader.line_num, f"expected {len(header)} fields, got {len(row)}")
            yield reader.line_num, dict(zip(header, row, strict=True))
