"""Catalog updates: the titles file is checked line by line, and a grown run is a whole run with the
new titles appended, its parent untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recsys.catalog_update import add_titles, read_titles
from recsys.data.catalog import Domain
from recsys.data.dataset import DataFormatError
from recsys.run import load_run

HEADER = "item_id\ttitle\tgenres\tyear\tdomain\n"


def _titles(tmp_path: Path, rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "titles.tsv"
    path.write_text(header + rows)
    return path


def test_titles_are_read_with_their_metadata(tmp_path: Path) -> None:
    path = _titles(tmp_path, "n1\tA New Film\tDrama|Comedy\t2026\tmovie\nn2\tA New Series\tDrama\t\ttv\n")
    first, second = read_titles(path, known={"i1"}, genres={"Drama", "Comedy"})
    assert (first.item_id, first.title, first.genres, first.year, first.domain) == (
        "n1", "A New Film", ("Drama", "Comedy"), 2026, Domain.MOVIE)
    assert (second.year, second.domain) == (None, Domain.TV)


@pytest.mark.parametrize(("rows", "header", "problem"), [
    ("n1\tA Film\tDrama\t2026\tmovie\n", "id\ttitle\tgenres\tyear\tdomain\n", ":1: expected the header"),
    ("n1\t\tDrama\t2026\tmovie\n", HEADER, ":2: item 'n1' has no title"),
    ("n1\tA Film\tDrama\t2026\tpodcast\n", HEADER, ":2: domain must be one of movie, tv, got 'podcast'"),
    ("n1\tA Film\tDrama\t2026\tmovie\ni1\tOld\tDrama\t2001\tmovie\n", HEADER, ":3: item_id 'i1' is already in"),
    ("n1\tA Film\tDrama\t2026\tmovie\nn1\tAgain\tDrama\t2026\tmovie\n", HEADER, ":3: item_id 'n1' appears twice"),
    ("n1\tA Film\tWestern\t2026\tmovie\n", HEADER, ":2: genre\\(s\\) Western are not among"),
    ("n1\tA Film\tDrama\tsoon\tmovie\n", HEADER, ":2: year is not a plausible year"),
    ("n1\tA Film\tDrama\n", HEADER, ":2: expected at least 5 fields"),
    ("", HEADER, ":0: no titles after the header"),
])
def test_a_bad_titles_file_is_refused_naming_the_line(tmp_path: Path, rows: str, header: str, problem: str) -> None:
    with pytest.raises(DataFormatError, match=problem):
        read_titles(_titles(tmp_path, rows, header), known={"i1"}, genres={"Drama"})


def test_a_grown_run_holds_the_new_titles_in_every_member_and_leaves_its_parent_alone(
    small_run: Path, tmp_path: Path
) -> None:
    parent = load_run(small_run)
    genre = parent.items[0].genres[0]
    path = _titles(tmp_path, f"n1\tA New Film\t{genre}\t2026\tmovie\nn2\tA New Series\t{genre}\t2025\ttv\n")
    grown_folder = add_titles(small_run, path, tmp_path / "runs")

    grown = load_run(grown_folder)
    n = len(parent.items)
    assert [it.item_id for it in grown.items] == [*(it.item_id for it in parent.items), "n1", "n2"]
    assert grown.catalog.n_items == n + 2 and grown.user_ids == parent.user_ids
    histories = [parent.history.train_sequences[u][-20:] for u in range(10)]
    for old, new in zip(parent.members, grown.members, strict=True):
        scores = new.score(histories)
        assert scores.shape == (10, n + 2) and np.isfinite(scores).all(), new.name
        np.testing.assert_allclose(scores[:, :n], old.score(histories), rtol=1e-5, atol=1e-5, err_msg=new.name)
    manifest = json.loads((grown_folder / "manifest.json").read_text())
    assert manifest["run_id"] == grown_folder.name and manifest["catalog_update"]["from_run"] == small_run.name
    assert manifest["catalog_update"]["titles_added"] == 2
    assert (grown_folder / "metrics.json").read_text() == (small_run / "metrics.json").read_text()
    assert load_run(small_run).catalog.n_items == n  # the parent is as it was
    assert not list((tmp_path / "runs").glob(".*staging"))
