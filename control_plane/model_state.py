"""The model version being served, and the watcher that switches to newly published versions."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cinesync.bundle import MANIFEST, current_version
from cinesync.indexes import CandidateIndex, index_class
from cinesync.triton import MAX_CANDIDATES, stage_targets
from control_plane.bundle import ServingBundle, load_bundle
from control_plane.history import HistoryStore, HistoryUnavailable
from control_plane.metrics import HISTORY_SEEDED, INDEX_ITEMS, MODEL_VERSION
from control_plane.ranking import RankingUnavailable, TritonRanker

log = logging.getLogger(__name__)
UNLOAD_GRACE_S = 10.0  # an ensemble no served version needs is unloaded this long after, not at once


@dataclass(frozen=True)
class ServingState:
    """A loaded bundle with one candidate index per retriever member, in the bundle's order."""

    bundle: ServingBundle
    indexes: list[CandidateIndex]

    @cached_property
    def popular(self) -> dict[str, NDArray[np.int64]]:
        """Per domain ("any" too), the catalog by descending popularity (ties to the lower index):
        the cold-start answers, computed once per version."""
        order = np.argsort(-self.bundle.popularity, kind="stable")
        domains = self.bundle.item_domains[order]
        return {"any": order, **{d: order[domains == d] for d in sorted(set(domains.tolist()))}}

    def candidates(
        self, history: NDArray[np.int64], vectors: Mapping[str, NDArray[np.float32]], depth: int, *, domain: str,
        exclude: NDArray[np.int64],
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Each index's ``depth`` best unseen items for a user with recent ``history`` (item indices)
        and encoded ``vectors`` (per member; a FAISS retriever without one finds nothing), concatenated
        in index order with the first occurrence kept (as offline evaluation builds them), with the
        score of the index that found each."""
        found = [index.search(history, vectors.get(entry.member), depth, domain=domain, exclude=exclude)
                 for entry, index in zip(self.bundle.retrievers, self.indexes, strict=True)]
        items = np.concatenate([f[0] for f in found]) if found else np.zeros(0, dtype=np.int64)
        scores = np.concatenate([f[1] for f in found]) if found else np.zeros(0, dtype=np.float32)
        _, first = np.unique(items, return_index=True)
        keep = np.sort(first)
        return items[keep], scores[keep]


def load_indexes(bundle: ServingBundle) -> list[CandidateIndex]:
    """One index per retriever, from the arrays and plan the exporter shipped."""
    return [index_class(entry.index)(entry.arrays, bundle.item_domains, plan=entry.plan) for entry in bundle.retrievers]


@dataclass(frozen=True)
class VersionInterface:
    """What a version's Triton models read and where they are: the history length, the members the
    encoders make vectors for, those the ranker reads back, and the (model, version) pairs called
    to encode and to rank (cinesync.triton.stage_targets)."""

    history_length: int
    encoders: tuple[str, ...]
    ranking_vectors: tuple[str, ...]
    encoder_target: tuple[str, str] = ("", "")
    ranker_target: tuple[str, str] = ("", "")


class BundleRefused(ValueError):
    """A published bundle this control plane cannot serve as configured."""


def check_fits_one_request(bundle: ServingBundle, candidates: int) -> None:
    """All retrievers' candidates for one request must fit the ranking ensemble's candidate axis."""
    most = (candidates or bundle.depth) * len(bundle.retrievers)
    if most > MAX_CANDIDATES:
        raise BundleRefused(
            f"version {bundle.version}: {len(bundle.retrievers)} retrievers x {candidates or bundle.depth} "
            f"candidates = {most}, above the {MAX_CANDIDATES} candidates one ranking request may carry; "
            "lower CINESYNC_RETRIEVAL_CANDIDATES"
        )


class ModelState:
    """Holds the served versions: the current one (CURRENT) and those experiments' variants use
    (``wanted``); ``refresh`` loads what changed, bundles and indexes first, then Triton."""

    def __init__(
        self, serving_dir: Path, ranker: TritonRanker | None, *, candidates: int = 0,
        histories: HistoryStore | None = None,
    ) -> None:
        self.serving_dir = Path(serving_dir)
        self.ranker = ranker
        self.candidates = candidates
        self.histories = histories  # live histories, seeded from each loaded version's published ones
        self.seeded: set[int] = set()  # versions whose published histories Redis has
        self.interfaces: dict[int, VersionInterface] = {}
        self.seeding: dict[int, asyncio.Task[None]] = {}
        self.states: dict[int, ServingState] = {}
        self.current: int | None = None
        self.wanted: set[int] = set()  # retrieval versions of experiment variants
        self.wanted_ranking: set[int] = set()  # their ranking versions
        self.refused: set[int] = set()  # versions that could not be loaded: not retried
        self.triton_loaded: set[int] = set()
        self.evicted: dict[int, float] = {}  # loaded ensembles no version needs any more, since when
        self.triton_unavailable = False

    @property
    def state(self) -> ServingState | None:
        """The current version's state (None before the first version is loaded)."""
        return self.states.get(self.current) if self.current is not None else None

    async def _load_bundle(self, version: int) -> bool:
        if not (self.serving_dir / str(version) / MANIFEST).is_file():
            return False  # not published (yet) or retired: not a defect, looked at again next round
        try:
            bundle = await asyncio.to_thread(load_bundle, self.serving_dir, version)
            check_fits_one_request(bundle, self.candidates)
            indexes = await asyncio.to_thread(load_indexes, bundle)
        except Exception as error:  # noqa: BLE001  # any defect of the files: refuse the version, keep serving
            self.refused.add(version)
            log.error("refused model version %d, still serving %s: %s", version, self.current, error)
            return False
        self.states[version] = ServingState(bundle, indexes)
        for entry in bundle.retrievers:
            INDEX_ITEMS.labels(str(version), entry.member).set(len(bundle.items))
        return True

    async def refresh(self) -> bool:
        """Load the published version if it changed and the versions experiments want; keep Triton's
        ensembles loaded (again, after a Triton restart). True when a current state is served.

        A version that cannot be loaded is logged once and skipped; the current state stays."""
        version = current_version(self.serving_dir)
        fresh = version is not None and version != self.current and version not in self.refused
        if fresh and version is not None and (version in self.states or await self._load_bundle(version)):
            await self._load_triton(version)
            self.current = version
            MODEL_VERSION.set(version)
            log.info("serving model version %d (%s)", version, self.states[version].bundle.manifest.get("dataset"))
        for wanted in sorted(self.wanted - set(self.states) - self.refused):
            await self._load_bundle(wanted)
        self._seed_live_histories()
        keep = {self.current, *self.wanted}
        for old in set(self.states) - keep:
            for entry in self.states.pop(old).bundle.retrievers:
                INDEX_ITEMS.remove(str(old), entry.member)
        ranked = {v for v in (self.current, *self.wanted_ranking) if v is not None and v not in self.refused}
        now = time.monotonic()
        for unused in sorted(self.triton_loaded - ranked):  # evicted: free Triton of its ensemble once
            since = self.evicted.setdefault(unused, now)  # requests already sent to it have finished
            if now - since >= UNLOAD_GRACE_S:
                self.triton_loaded.discard(unused)
                del self.evicted[unused]
                if self.ranker is not None:
                    await self.ranker.unload(unused, encodes=self.encodes(unused))
        for back in set(self.evicted) & ranked:
            del self.evicted[back]
        for needed in sorted(ranked):
            if not await self._triton_ready(needed):
                await self._load_triton(needed)  # Triton restarted, or never loaded it
        return self.state is not None

    def interface(self, version: int) -> VersionInterface:
        """What version ``version``'s ensembles read (from its bundle, or its manifest on disk when it
        is not loaded, e.g. a variant's ranking version), remembered once read."""
        known = self.interfaces.get(version)
        if known is not None:
            return known
        state = self.states.get(version)
        try:
            manifest = state.bundle.manifest if state is not None else json.loads(
                (self.serving_dir / str(version) / MANIFEST).read_text())
        except (OSError, ValueError):
            return VersionInterface(0, (), ())  # retired: not remembered, it may be published again
        encoder_target, ranker_target = stage_targets(version, manifest.get("triton_models", {}))
        found = VersionInterface(int(manifest["history_length"]), tuple(manifest["encoders"]),
                                 tuple(manifest["ranking_vectors"]), encoder_target, ranker_target)
        self.interfaces[version] = found
        return found

    def encodes(self, version: int) -> bool:
        """Whether ``version`` has an encoding ensemble (its bundle names encoders)."""
        return bool(self.interface(version).encoders)

    def _seed_live_histories(self) -> None:
        """Start seeding Redis from every loaded version's published histories not seeded yet (in the
        background: serving goes on meanwhile, and reads the published history of an unseeded user)."""
        if self.histories is None:
            return
        for version, state in self.states.items():
            running = self.seeding.get(version)
            if version not in self.seeded and (running is None or running.done()):
                self.seeding[version] = asyncio.create_task(self._seed(version, state.bundle))

    async def _seed(self, version: int, bundle: ServingBundle) -> None:
        assert self.histories is not None

        ids = [item.item_id for item in bundle.items]
        # Built as the store reads them, a batch at a time on the event loop: a thread building every
        # user's list at once held the GIL against the requests served meanwhile (p99 112 ms at
        # 100/s while 50,000 users were seeded, bench/scale.py).
        users = ((bundle.history_key(user), [ids[i] for i in bundle.histories[index]])
                 for user, index in bundle.user_index.items())
        source = f"{bundle.manifest.get('run_id')}:{bundle.manifest.get('fitted_on')}"
        try:
            created = await self.histories.seed(users, source=source)
        except HistoryUnavailable as error:
            log.warning("live histories not seeded from version %d yet: %s", version, error)
            return
        self.seeded.add(version)
        HISTORY_SEEDED.inc(created)
        log.info("seeded the live histories of %d users from version %d", created, version)

    async def _triton_ready(self, version: int) -> bool:
        return self.ranker is None or (
            version in self.triton_loaded and await self.ranker.ready(version, encodes=self.encodes(version)))

    async def _load_triton(self, version: int) -> None:
        if self.ranker is None:
            return
        try:
            # Loaded already (by the publisher's check, another replica or before a restart of this
            # process): asking again would make Triton reload every model of the version.
            if not await self.ranker.ready(version, encodes=self.encodes(version)):
                await self.ranker.load(version, encodes=self.encodes(version))
            self.triton_loaded.add(version)
            if self.triton_unavailable:
                log.info("Triton is back: version %d loaded, ranking again", version)
            self.triton_unavailable = False
        except RankingUnavailable as error:
            self.triton_loaded.discard(version)
            if not self.triton_unavailable:  # once per outage
                log.warning("Triton did not load version %d, serving degraded until it does: %s", version, error)
            self.triton_unavailable = True

    async def watch(self, interval: float, before: Callable[[], Awaitable[None]] | None = None) -> None:
        """Refresh every ``interval`` seconds, after ``before`` (the experiments' refresh); a failure
        of either is logged and the next round tries again."""
        while True:
            await self.refresh_all(before)
            await asyncio.sleep(interval)

    async def refresh_all(self, before: Callable[[], Awaitable[None]] | None = None) -> bool:
        """``before`` then ``refresh``, each failure logged; whether a current state is served."""
        if before is not None:
            try:
                await before()
            except Exception:
                log.exception("could not refresh the experiments")
        try:
            return await self.refresh()
        except Exception:
            log.exception("could not refresh the served versions")
            return self.state is not None
