"""Catalog updates: new titles (metadata, no interactions) added to a finished run without retraining.

A titles file is tab-separated with the header ``item_id  title  genres  year  domain`` (genres
joined by ``|``, year may be empty, domain ``movie`` or ``tv``). ``add_titles`` writes a new run:
the parent's catalog with the titles appended, every member of every fit grown by
``MemberKind.add_items`` (each new title's parameters mapped from its all-MiniLM-L6-v2 content
embedding), the fusion and the split as they were (the new titles take no part in evaluation).
Exported and published as any run, the titles become recommendable by every retriever and scorer.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from recsys.content import content_embeddings
from recsys.data import Item
from recsys.data.catalog import Domain
from recsys.data.dataset import DataFormatError
from recsys.data.text_files import parse_year, read_rows
from recsys.features import build_item_features
from recsys.kinds.base import Progress, no_progress
from recsys.run import FITS, KINDS_DIR, MANIFEST, load_run, new_run_id

COLUMNS = ("item_id", "title", "genres", "year", "domain")


def read_titles(path: Path, *, known: set[str], genres: set[str]) -> list[Item]:
    """The titles of ``path``; DataFormatError names the line of a missing title, an unknown domain,
    a genre outside ``genres`` (the models' genre features), a malformed year or an item id already
    in ``known`` or repeated."""
    path = Path(path)
    titles: list[Item] = []
    seen: set[str] = set()
    for line, fields in read_rows(path, separator="\t", min_fields=len(COLUMNS)):
        if line == 1:
            if tuple(field.strip().lower() for field in fields[: len(COLUMNS)]) != COLUMNS:
                raise DataFormatError(path, 1, f"expected the header {' '.join(COLUMNS)} (tab-separated)")
            continue
        item_id, title, genre_text, year_text, domain_text = (field.strip() for field in fields[: len(COLUMNS)])
        if not item_id:
            raise DataFormatError(path, line, "item_id is empty")
        if item_id in known or item_id in seen:
            raise DataFormatError(path, line, f"item_id {item_id!r} is already in the catalog"
                                  if item_id in known else f"item_id {item_id!r} appears twice")
        if not title:
            raise DataFormatError(path, line, f"item {item_id!r} has no title")
        if domain_text not in {d.value for d in Domain}:
            raise DataFormatError(path, line, f"domain must be one of {', '.join(d.value for d in Domain)}, "
                                  f"got {domain_text!r}")
        year = parse_year(year_text)
        if year_text and year is None:
            raise DataFormatError(path, line, f"year is not a plausible year: {year_text!r}")
        item_genres = tuple(g.strip() for g in genre_text.split("|") if g.strip())
        unknown = sorted(set(item_genres) - genres)
        if unknown:
            raise DataFormatError(path, line, f"genre(s) {', '.join(unknown)} are not among the catalog's "
                                  f"genres ({', '.join(sorted(genres))}); the models would need retraining")
        seen.add(item_id)
        titles.append(Item(item_id=item_id, title=title, genres=item_genres, year=year, domain=Domain(domain_text)))
    if not titles:
        raise DataFormatError(path, 0, "no titles after the header")
    return titles


def add_titles(run_folder: Path, titles_file: Path, runs_dir: Path, progress: Progress = no_progress) -> Path:
    """A new run under ``runs_dir``: the run at ``run_folder`` with the titles of ``titles_file``
    appended to its catalog and to every member of each of its fits; returns its folder."""
    run_folder = Path(run_folder)
    parent = load_run(run_folder)
    genres = {g for item in parent.items for g in item.genres}
    titles = read_titles(titles_file, known={item.item_id for item in parent.items}, genres=genres)
    items = [*parent.items, *titles]
    catalog = replace(parent.catalog, n_items=len(items), items=tuple(items), item_features=build_item_features(items))
    content = content_embeddings(items, progress=progress)
    folder = Path(runs_dir) / new_run_id()
    staging = folder.with_name(f".{folder.name}.staging")
    try:
        _write(staging, run_folder, items, run_id=folder.name, user_ids=parent.user_ids, n_added=len(titles))
        fits = [fit for fit, name in FITS.items() if (run_folder / name).is_dir()]
        for step, fit in enumerate(fits, start=1):
            run = parent if fit == "train" else load_run(run_folder, fitted_on=fit)
            warm = run.history.item_counts() > 0
            for member in run.members:
                member.add_items(catalog, content, warm)
                member.save(staging / FITS[fit] / member.name)
            progress("growing every member", step, len(fits), float(len(titles)), "titles")
        shutil.copytree(run_folder / KINDS_DIR / parent.spec.fusion, staging / KINDS_DIR / parent.spec.fusion)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _write(folder: Path, parent: Path, items: list[Item], *, run_id: str, user_ids: list[str], n_added: int) -> None:
    """The new run's catalog, split (target masks padded: new titles are never evaluation targets)
    and manifest."""
    folder.mkdir(parents=True)
    (folder / "catalog.json").write_text(json.dumps({"items": [it.to_json() for it in items], "user_ids": user_ids}))
    with np.load(parent / "split.npz") as arrays:
        split = {name: np.concatenate([array, np.zeros(n_added, dtype=bool)]) if name.endswith("_target") else array
                 for name, array in arrays.items()}
    np.savez(folder / "split.npz", **split)
    manifest = json.loads((parent / MANIFEST).read_text())
    manifest["catalog_update"] = {
        "from_run": manifest["run_id"],
        "titles_added": n_added,
        "items": len(items),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "note": "members grown from content without refitting; evaluation figures are the parent run's",
    }
    manifest["run_id"] = run_id
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    for name in ("metrics.json", "report.json"):  # the parent's figures: the new titles are never targets
        if (parent / name).is_file():
            shutil.copy2(parent / name, folder / name)
