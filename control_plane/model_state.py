"""The model version being served, and the watcher that switches to newly published versions."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from control_plane.bundle import ServingBundle, current_version, load_bundle
from control_plane.metrics import MODEL_VERSION
from control_plane.ranking import RankingUnavailable, TritonRanker
from control_plane.retrieval import Retriever

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingState:
    bundle: ServingBundle
    retriever: Retriever


class ModelState:
    """Holds the live ServingState; ``refresh`` loads the version CURRENT names, Triton first."""

    def __init__(self, serving_dir: Path, ranker: TritonRanker | None, *, faiss_index: str) -> None:
        self.serving_dir = Path(serving_dir)
        self.ranker = ranker
        self.faiss_index = faiss_index
        self.state: ServingState | None = None
        self.triton_version: int | None = None

    async def refresh(self) -> bool:
        """Switch to the published version if it changed; True when a state is being served."""
        version = current_version(self.serving_dir)
        if version is not None and (self.state is None or self.state.bundle.version != version):
            bundle = await asyncio.to_thread(load_bundle, self.serving_dir, version)
            retriever = await asyncio.to_thread(
                Retriever, bundle.item_embeddings, bundle.item_domains, factory=self.faiss_index
            )
            await self._load_triton(version)
            self.state = ServingState(bundle, retriever)
            MODEL_VERSION.set(version)
            log.info("serving model version %d (%s)", version, bundle.manifest.get("dataset"))
        elif self.state is not None and self.triton_version != self.state.bundle.version:
            await self._load_triton(self.state.bundle.version)
        return self.state is not None

    async def _load_triton(self, version: int) -> None:
        if self.ranker is None:
            return
        try:
            await self.ranker.load()
            self.triton_version = version
        except RankingUnavailable as error:
            log.warning("Triton did not load version %d, serving degraded until it does: %s", version, error)

    async def watch(self, interval: float) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("could not switch model version")
            await asyncio.sleep(interval)
