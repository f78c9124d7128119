"""Content embeddings: the text an item is read as, unit vectors from the packaged encoder, and a clear
error naming the package when it is not installed (never a download)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from recsys.content import DIMENSION, MODEL_PACKAGE, ContentModelMissing, content_embeddings, item_text
from recsys.data.catalog import Domain, Item


def test_item_text_names_title_year_type_and_genres() -> None:
    assert item_text(Item("1", "Toy Story", ("Animation", "Comedy"), 1995, Domain.MOVIE)) == (
        "Toy Story (1995). Movie. Genres: Animation, Comedy")
    assert item_text(Item("2", "Cowboy Bebop", (), None, Domain.TV)) == "Cowboy Bebop. TV series"


def test_embeddings_are_unit_vectors_that_place_similar_titles_together() -> None:
    items = [Item("a", "Alien", ("Horror", "Sci-Fi"), 1979, Domain.MOVIE),
             Item("b", "Aliens", ("Action", "Horror", "Sci-Fi"), 1986, Domain.MOVIE),
             Item("c", "Sleepless in Seattle", ("Comedy", "Romance"), 1993, Domain.MOVIE)]
    steps: list[tuple[int, int]] = []
    vectors = content_embeddings(items, batch=2, progress=lambda stage, step, total, value, what: steps.append(
        (step, total)))
    assert vectors.shape == (3, DIMENSION) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert steps == [(1, 2), (2, 2)]


def test_a_missing_encoder_package_is_named_not_downloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    def without_package(name: str) -> Any:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr("recsys.content.importlib.import_module", without_package)
    with pytest.raises(ContentModelMissing, match=f"PyPI package {MODEL_PACKAGE}"):
        content_embeddings([Item("a", "Alien", (), None, Domain.MOVIE)])
