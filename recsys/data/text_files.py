"""Line-by-line reading of delimited text files, with errors that name the file and the line."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from recsys.data.dataset import DataFormatError


def read_rows(
    path: Path,
    *,
    separator: str,
    min_fields: int,
    encoding: str = "utf-8",
    skip_header: bool = False,
) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each non-empty line; a short line raises DataFormatError."""
    if not path.is_file():
        raise DataFormatError(path, 0, "file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding=encoding, newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if skip_header and number == 1:
                continue
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split(separator)
            if len(fields) < min_fields:
                raise DataFormatError(
                    path, number, f"expected at least {min_fields} fields separated by {separator!r}, got {len(fields)}"
                )
            yield number, fields


def parse_number(path: Path, line: int, text: str, what: str) -> float:
    """A float field, or DataFormatError naming the file, the line and the field."""
    try:
        return float(text)
    except ValueError:
        raise DataFormatError(path, line, f"{what} is not a number: {text!r}") from None


def parse_year(text: str) -> int | None:
    """A plausible release year, or None."""
    text = text.strip()
    if len(text) == 4 and text.isdigit() and 1870 <= int(text) <= 2100:
        return int(text)
    return None


def split_title_year(title: str) -> tuple[str, int | None]:
    """'Toy Story (1995)' -> ('Toy Story', 1995); titles without a year come back unchanged."""
    title = title.strip()
    if title.endswith(")") and "(" in title:
        head, _, tail = title[:-1].rpartition("(")
        year = parse_year(tail)
        if year is not None:
            return head.strip(), year
    return title, None
