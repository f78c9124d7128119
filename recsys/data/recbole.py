"""Reader for RecBole atomic files (<name>.inter, .item, .user), as in ml-100k."""

from __future__ import annotations

from pathlib import Path

from recsys.data.catalog import Domain, Item
from recsys.data.dataset import DataFormatError, DatasetBuilder, InteractionDataset
from recsys.data.text_files import parse_number, parse_year, read_rows

# High-cardinality user columns that would only memorise users.
_SKIPPED_USER_COLUMNS = {"user_id", "zip_code"}


def _header(path: Path) -> dict[str, int]:
    """Column name -> position, from the typed header line ``name:type``."""
    if not path.is_file():
        raise DataFormatError(path, 0, "file not found")
    with open(path, encoding="utf-8") as handle:
        first = handle.readline().rstrip("\r\n")
    columns = {}
    for position, column in enumerate(first.split("\t")):
        name, sep, kind = column.partition(":")
        if not sep or kind not in {"token", "token_seq", "float", "float_seq"}:
            raise DataFormatError(path, 1, f"header column {column!r} is not 'name:type'")
        columns[name] = position
    return columns


def _require(path: Path, columns: dict[str, int], *names: str) -> list[int]:
    missing = [n for n in names if n not in columns]
    if missing:
        raise DataFormatError(path, 1, f"header lacks column(s) {', '.join(missing)}")
    return [columns[n] for n in names]


def _first_present(columns: dict[str, int], *names: str) -> int | None:
    return next((columns[n] for n in names if n in columns), None)


def load_atomic(folder: Path) -> InteractionDataset:
    inter_files = sorted(folder.glob("*.inter"))
    if not inter_files:
        raise DataFormatError(folder, 0, "no .inter file in folder")
    inter_path = inter_files[0]
    stem = inter_path.stem
    items = _load_items(folder / f"{stem}.item")
    builder = DatasetBuilder(stem, items)

    columns = _header(inter_path)
    user_col, item_col = _require(inter_path, columns, "user_id", "item_id")
    time_col = columns.get("timestamp")
    width = max(columns.values()) + 1
    for line, fields in read_rows(inter_path, separator="\t", min_fields=width, skip_header=True):
        timestamp = parse_number(inter_path, line, fields[time_col], "timestamp") if time_col is not None else 0.0
        builder.add(fields[user_col], fields[item_col], timestamp)
    return builder.build(has_timestamps=time_col is not None, user_features=_load_user_features(folder / f"{stem}.user"))


def _load_items(path: Path) -> list[Item]:
    if not path.is_file():
        return []
    columns = _header(path)
    (id_col,) = _require(path, columns, "item_id")
    title_col = _first_present(columns, "movie_title", "title", "name")
    year_col = _first_present(columns, "release_year", "year")
    genre_col = _first_present(columns, "class", "genre", "genres")
    width = max(columns.values()) + 1
    items = []
    for _, fields in read_rows(path, separator="\t", min_fields=width, skip_header=True):
        item_id = fields[id_col]
        items.append(
            Item(
                item_id=item_id,
                title=fields[title_col] if title_col is not None else f"item {item_id}",
                genres=tuple(fields[genre_col].split()) if genre_col is not None else (),
                year=parse_year(fields[year_col]) if year_col is not None else None,
                domain=Domain.MOVIE,
            )
        )
    return items


def _load_user_features(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    columns = _header(path)
    (id_col,) = _require(path, columns, "user_id")
    kept = {name: pos for name, pos in columns.items() if name not in _SKIPPED_USER_COLUMNS}
    features: dict[str, dict[str, str]] = {name: {} for name in kept}
    width = max(columns.values()) + 1
    for _, fields in read_rows(path, separator="\t", min_fields=width, skip_header=True):
        for name, position in kept.items():
            features[name][fields[id_col]] = fields[position]
    return features
