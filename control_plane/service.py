"""The Recommend, RecommendGroup and RecordFeedback RPCs: validate, route to an experiment's variant,
find the user's history (sent with the request, live in Redis, or as published), encode it and gather
candidates, rank with Triton, fall back without hanging, log the exposure; a WATCH enters the live
history. A group's members are each retrieved and ranked that way, then aggregated."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

import grpc
import numpy as np
from numpy.typing import NDArray

from cinesync import triton
from cinesync.groups import aggregate
from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from control_plane.bundle import ServingBundle
from control_plane.encoder_cache import EncoderCache, Vectors
from control_plane.experiments.router import ExperimentRouter, Route
from control_plane.experiments.store import Exposure, now
from control_plane.history import HistoryStore, HistoryUnavailable, Watch
from control_plane.metrics import (
    ERRORS,
    EXPOSURES,
    FEEDBACK,
    FEEDBACK_EVENTS,
    HISTORY_UNKNOWN_ITEMS,
    HISTORY_WRITES,
    LATENCY,
    RANKING_FAILURES,
    REQUESTS,
    STAGE_LATENCY,
)
from control_plane.model_state import ModelState, ServingState
from control_plane.quality import QualityWindow, ServedAnswer
from control_plane.ranking import RankingUnavailable, TritonRanker
from control_plane.validation import (
    DOMAIN_VALUES,
    GroupQuery,
    InvalidRequest,
    RecommendQuery,
    parse_feedback,
    parse_group_request,
    parse_request,
    shorten,
)

log = logging.getLogger(__name__)
Request = TypeVar("Request")
Query = TypeVar("Query")
DEADLINE_MARGIN_S = 0.02  # left for building the answer after ranking gives up


async def _abort(context: grpc.aio.ServicerContext, method: str, code: grpc.StatusCode, message: str) -> NoReturn:
    ERRORS.labels(method, code.name).inc()
    await context.abort(code, shorten(message))
    raise AssertionError("ServicerContext.abort returns only by raising")


def interleaved(lists: Sequence[NDArray[np.int64]], *, limit: int) -> NDArray[np.int64]:
    """The items of ``lists`` taken in turn (each list's first, then each one's second, ...), each
    item once, at most ``limit`` of them."""
    width = max((len(items) for items in lists), default=0)
    grid = np.full((width, len(lists)), -1, dtype=np.int64)
    for column, items in enumerate(lists):
        grid[: len(items), column] = items
    flat = grid.reshape(-1)
    flat = flat[flat >= 0]
    _, first = np.unique(flat, return_index=True)
    chosen: NDArray[np.int64] = flat[np.sort(first)][:limit]
    return chosen


def explain(state: ServingState, history: NDArray[np.int64], items: NDArray[np.int64]) -> list[int | None]:
    """For each item, the item of the user's history nearest to it (cosine of item embeddings of
    the first retriever that has them); None without a history or embeddings."""
    vectors = next((r.arrays["item_vectors"] for r in state.bundle.retrievers if "item_vectors" in r.arrays), None)
    if vectors is None or not len(history) or not len(items):
        return [None] * len(items)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    nearest = np.argmax(unit[items] @ unit[history].T, axis=1)
    return [int(history[n]) for n in nearest]


class RecommendationService(pb_grpc.RecommendationServiceServicer):  # type: ignore[misc]  # untyped generated base
    """Recommend from the user's history (sent, live in Redis, or as published) and RecordFeedback."""

    def __init__(
        self, models: ModelState, *, candidates: int, ranking_timeout: float, router: ExperimentRouter | None = None,
        histories: HistoryStore | None = None, history_kinds: frozenset[str] = frozenset({"watch"}),
        encoder_cache: EncoderCache | None = None, quality: QualityWindow | None = None,
    ) -> None:
        self.models = models
        self.quality = quality  # the last answers, for the online quality and drift gauges
        self.candidates = candidates
        self.ranking_timeout = ranking_timeout
        self.router = router
        self.histories = histories
        self.history_kinds = history_kinds  # feedback kinds that enter the live history
        self.encoder_cache = encoder_cache
        self.refreshing: set[asyncio.Task[None]] = set()  # nearline encodings after watches, kept referenced

    async def _accept(
        self, context: grpc.aio.ServicerContext, method: str, parse: Callable[[Request], Query], request: Request,
    ) -> tuple[Query, ServingState]:
        """The parsed request and the current serving state; else the call ends with INVALID_ARGUMENT
        (naming the problem) or UNAVAILABLE (nothing published yet)."""
        try:
            query = parse(request)
        except InvalidRequest as error:
            REQUESTS.labels("invalid").inc()
            await _abort(context, method, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        state = self.models.state
        if state is None:
            REQUESTS.labels("unavailable").inc()
            await _abort(context, method, grpc.StatusCode.UNAVAILABLE, "no model has been published yet")
        return query, state

    async def Recommend(
        self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecommendResponse:
        started = time.perf_counter()
        query, current = await self._accept(context, "Recommend", parse_request, request)
        route, state, ranking_version = self._routed(query.user_id, query.domain, current)
        history, history_problem = await self._history(query, state)
        if not len(history):
            response = self._cold_start(state, query)
        else:
            response = await self._personalised(state, query, history, ranking_version, context.time_remaining(),
                                                variant=route.variant if route else "",
                                                source="request" if query.history is not None else "live")
        if history_problem:
            response.degraded = True
            response.degraded_reason = "; ".join(filter(None, [history_problem, response.degraded_reason]))
        response.request_id = uuid.uuid4().hex
        if route is not None:
            response.experiment, response.variant = route.experiment, route.variant
        self._log_exposure(response, query, route, state.bundle.version, ranking_version)
        if self.quality is not None:
            self.quality.observe(ServedAnswer(
                version=state.bundle.version,
                items=np.array([state.bundle.item_index[item.item_id] for item in response.items], dtype=np.int64),
                scores=(np.array([item.score for item in response.items], dtype=np.float32)
                        if response.ranked_by == pb.RANKED_BY_TRITON else None),
                history_length=min(len(history), state.bundle.history_length), cold_start=response.cold_start,
                degraded=response.degraded,
            ))
        outcome = "cold_start" if response.cold_start else "degraded" if response.degraded else (
            "triton" if response.ranked_by == pb.RANKED_BY_TRITON else "retrieval")
        REQUESTS.labels(outcome).inc()
        elapsed = time.perf_counter() - started
        LATENCY.observe(elapsed)
        STAGE_LATENCY.labels("total", response.variant).observe(elapsed)
        return response

    def _routed(self, user_id: str, domain: str, current: ServingState) -> tuple[Route | None, ServingState, int]:
        """The user's experiment route (None outside one), the state retrieving for them and the
        version ranking for them."""
        route = self.router.route(user_id, domain) if self.router else None
        config = route.config if route is not None else None
        if config is None:
            return route, current, current.bundle.version
        variant_state = self.models.states.get(config.retrieval_version)
        if variant_state is None:  # not loaded (yet): serve the current version, outside the experiment
            return None, current, current.bundle.version
        return route, variant_state, config.ranking_version

    async def RecordFeedback(
        self, request: pb.FeedbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.FeedbackResponse:
        try:
            record = parse_feedback(request)
        except InvalidRequest as error:
            await _abort(context, "RecordFeedback", grpc.StatusCode.INVALID_ARGUMENT, str(error))
        if self.router is None:
            await _abort(context, "RecordFeedback", grpc.StatusCode.FAILED_PRECONDITION,
                         "feedback needs Redis (CINESYNC_REDIS_URL)")
        current = self.models.state
        if self.histories is not None and current is not None and record.kind in self.history_kinds:
            bundle = current.bundle
            published = bundle.published_history(record.user_id)
            ids = [bundle.items[i].item_id for i in published] if published is not None else []
            watch = Watch(record.user_id, bundle.history_key(record.user_id), record.item_id, ids)
            written = await self.histories.record(watch)
            HISTORY_WRITES.labels(written).inc()
            if written == "stored":
                self._refresh_encoded(record.user_id, current)
        outcome = await self.router.store.feedback(record)
        FEEDBACK.labels(record.kind, "unknown" if outcome.matched is None else str(outcome.matched).lower()).inc()
        if outcome.matched:
            FEEDBACK_EVENTS.labels(record.kind, outcome.experiment, outcome.variant, str(outcome.version)).inc()
        return pb.FeedbackResponse(matched_exposure=bool(outcome.matched))

    async def RecommendGroup(
        self, request: pb.GroupRecommendRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecommendResponse:
        started = time.perf_counter()
        query, state = await self._accept(context, "RecommendGroup", parse_group_request, request)
        found = await asyncio.gather(*(self._history(member, state) for member in query.members))
        histories = [history for history, _ in found if len(history)]
        if not histories:  # nobody with a known history: the domain's popular items
            response = self._cold_start(state, query.members[0])
        else:
            response = await self._group(state, query, histories, context.time_remaining())
        problems = sorted({problem for _, problem in found if problem})
        if problems:
            response.degraded = True
            response.degraded_reason = "; ".join([*problems, *filter(None, [response.degraded_reason])])
        response.request_id = uuid.uuid4().hex
        REQUESTS.labels("cold_start" if response.cold_start else "degraded" if response.degraded else "group").inc()
        LATENCY.observe(time.perf_counter() - started)
        return response

    async def _group(
        self, state: ServingState, query: GroupQuery, histories: list[NDArray[np.int64]], time_remaining: float | None
    ) -> pb.RecommendResponse:
        """Each member's candidates, interleaved (each member's best first) into the group's; every
        member's Triton scores of all of them, aggregated by cinesync.groups.aggregate with the version's tilt."""
        bundle = state.bundle
        seen = np.unique(np.concatenate(histories))
        exclude = seen if query.exclude_seen else np.zeros(0, dtype=np.int64)
        deadline = self._deadline(time_remaining)
        depth = max(self.candidates or bundle.depth, query.k)
        retrieved = await asyncio.gather(*(self._retrieve(state, history, query.domain, depth, exclude, deadline, "",
                                                          source="live") for history in histories))
        items = interleaved([found[0] for found in retrieved], limit=triton.MAX_CANDIDATES)
        reasons = sorted({reason for found in retrieved for reason in found[3]})
        if not len(items):
            popular = self._popular(state, query.members[0], exclude)
            return self._response(state, popular, bundle.popularity[popular], ranked_by=pb.RANKED_BY_POPULARITY,
                                  degraded=True, degraded_reason="; ".join(reasons) or "no candidates")
        ranker = self.models.ranker
        problem = "; ".join(reasons) or self._rank_problem(ranker, deadline)
        if not problem:
            try:
                scores = await asyncio.gather(*(self._rank(history, items, found[2], bundle, bundle.version, deadline,
                                                           source="live")
                                                for history, found in zip(histories, retrieved, strict=True)))
                group = aggregate(np.stack(scores), tilt=bundle.group_tilt).astype(np.float32)
                order = np.argsort(-group, kind="stable")[: query.k]
                return self._response(state, items[order], group[order], ranked_by=pb.RANKED_BY_TRITON)
            except RankingUnavailable as error:
                RANKING_FAILURES.inc()
                problem = f"Triton ranking failed: {error}"
                log.warning("%s", problem)
        shown = items[: query.k]  # interleaved retrieval order: each member's best first
        return self._response(state, shown, 1.0 / np.arange(1, len(shown) + 1, dtype=np.float32),
                              ranked_by=pb.RANKED_BY_RETRIEVAL, degraded=True, degraded_reason=problem)

    async def replay_watches(self) -> int:
        """Add the watches that waited for Redis to the live histories, in order, and encode their
        users' new histories; how many were added."""
        if self.histories is None:
            return 0
        users = await self.histories.replay()
        current = self.models.state
        if current is not None:
            for user_id in dict.fromkeys(users):
                self._refresh_encoded(user_id, current)
        HISTORY_WRITES.labels("replayed").inc(len(users))
        return len(users)

    def _refresh_encoded(self, user_id: str, current: ServingState) -> None:
        """Encode the user's new live history for the version that retrieves for them, in the
        background (the feedback call does not wait), so that their next Recommend finds the vectors."""
        _, state, _ = self._routed(user_id, "any", current)
        if self.encoder_cache is None or self.histories is None or not state.bundle.encoders:
            return
        task = asyncio.create_task(self._encode_live(user_id, state))
        self.refreshing.add(task)
        task.add_done_callback(self.refreshing.discard)

    async def _encode_live(self, user_id: str, state: ServingState) -> None:
        bundle = state.bundle
        assert self.histories is not None
        try:
            live = await self.histories.read(bundle.history_key(user_id))
            if live is None:
                return
            history = self._known(live, bundle, None)  # the next Recommend counts its unknown items
            deadline = time.monotonic() + self.ranking_timeout
            await self._user_vectors(triton.history_row(history, bundle.history_length), bundle.encoders,
                                     bundle.version, deadline, source="watch")
        except (HistoryUnavailable, RankingUnavailable) as error:  # the next Recommend encodes on its path
            log.info("the watch of %s was not encoded nearline: %s", user_id, error)

    async def _history(self, query: RecommendQuery, state: ServingState) -> tuple[NDArray[np.int64], str]:
        """The user's history as item indices, oldest first, and why it is not the live one ("" when
        it is, or when the request sent its own): the request's, else Redis's, else the published one."""
        bundle = state.bundle
        if query.history is not None:
            return self._known(query.history, bundle, "request"), ""
        published = bundle.published_history(query.user_id)
        fallback = published if published is not None else np.zeros(0, dtype=np.int64)
        if self.histories is None:
            return fallback, ""
        try:
            live = await self.histories.read(bundle.history_key(query.user_id))
        except HistoryUnavailable as error:
            return fallback, f"live history unavailable, the published one was used ({error})"
        return (self._known(live, bundle, "live"), "") if live is not None else (fallback, "")

    @staticmethod
    def _known(item_ids: Sequence[str], bundle: ServingBundle, source: str | None) -> NDArray[np.int64]:
        """The catalog indices of ``item_ids`` in order, unknown ones left out and counted under
        ``source`` (None: not counted)."""
        found = [bundle.item_index.get(item_id, -1) for item_id in item_ids]
        unknown = found.count(-1)
        if unknown and source is not None:
            HISTORY_UNKNOWN_ITEMS.labels(source).inc(unknown)
        return np.array([index for index in found if index >= 0], dtype=np.int64)

    def _log_exposure(
        self, response: pb.RecommendResponse, query: RecommendQuery, route: Route | None, retrieval: int, ranking: int
    ) -> None:
        EXPOSURES.labels(response.experiment, response.variant, str(retrieval)).inc()
        if self.router is None:
            return
        self.router.store.expose(Exposure(
            response.request_id, query.user_id, route.experiment if route else "", route.variant if route else "",
            retrieval, ranking if response.ranked_by == pb.RANKED_BY_TRITON else 0, now(),
            *((route.covariate_window_s,) if route else ()),
        ))

    def _popular(
        self, state: ServingState, query: RecommendQuery, exclude: NDArray[np.int64]
    ) -> NDArray[np.int64]:
        popular = state.popular.get(query.domain, np.zeros(0, dtype=np.int64))
        return popular[~np.isin(popular, exclude)][: query.k] if len(exclude) else popular[: query.k]

    def _cold_start(self, state: ServingState, query: RecommendQuery) -> pb.RecommendResponse:
        items = self._popular(state, query, np.zeros(0, dtype=np.int64))
        return self._response(
            state, items, state.bundle.popularity[items], ranked_by=pb.RANKED_BY_POPULARITY, cold_start=True
        )

    async def _personalised(
        self, state: ServingState, query: RecommendQuery, history: NDArray[np.int64], ranking_version: int,
        time_remaining: float | None, *, variant: str, source: str,
    ) -> pb.RecommendResponse:
        bundle = state.bundle
        exclude = history if query.exclude_seen else np.zeros(0, dtype=np.int64)
        recent = history[-bundle.history_length :]
        deadline = self._deadline(time_remaining)
        ranker = self.models.ranker
        depth = max(self.candidates or bundle.depth, query.k)
        items, scores, vectors, reasons = await self._retrieve(state, history, query.domain, depth, exclude,
                                                               deadline, variant, source=source)
        because = (lambda chosen: explain(state, recent, chosen)) if query.explain else None
        if not len(items):  # every retriever needed an encoder Triton did not answer for
            popular = self._popular(state, query, exclude)
            return self._response(state, popular, bundle.popularity[popular], ranked_by=pb.RANKED_BY_POPULARITY,
                                  degraded=True, degraded_reason="; ".join(reasons) or "no candidates")
        if ranking_version and not reasons:
            reason = self._rank_problem(ranker, deadline)
            if reason:
                reasons.append(reason)
            else:
                try:
                    started = time.perf_counter()
                    ranked = await self._rank(history, items, vectors, bundle, ranking_version, deadline,
                                              source=source)
                    STAGE_LATENCY.labels("ranking", variant).observe(time.perf_counter() - started)
                    order = np.argsort(-ranked, kind="stable")[: query.k]
                    return self._response(state, items[order], ranked[order], ranked_by=pb.RANKED_BY_TRITON,
                                          because=because)
                except RankingUnavailable as error:
                    RANKING_FAILURES.inc()
                    reasons.append(f"Triton ranking failed: {error}")
                    log.warning("%s", reasons[-1])
        return self._response(
            state, items[: query.k], scores[: query.k], ranked_by=pb.RANKED_BY_RETRIEVAL,
            degraded=bool(reasons), degraded_reason="; ".join(reasons), because=because,
        )

    def _deadline(self, time_remaining: float | None) -> float:
        """When ranking must be done: the ranking timeout, or sooner where the call's deadline is."""
        budget = self.ranking_timeout
        if time_remaining is not None:
            budget = min(budget, time_remaining - DEADLINE_MARGIN_S)
        return time.monotonic() + budget

    async def _retrieve(
        self, state: ServingState, history: NDArray[np.int64], domain: str, depth: int, exclude: NDArray[np.int64],
        deadline: float, variant: str, *, source: str,
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], Vectors, list[str]]:
        """Candidates and their retrieval scores for ``history``, the user vectors encoded for it
        (cached, else by Triton), and why any are missing."""
        bundle = state.bundle
        reasons: list[str] = []
        vectors: Vectors = {}
        started = time.perf_counter()
        if bundle.encoders:  # at most half the time: a silent Triton leaves the rest for the answer
            row = triton.history_row(history, bundle.history_length)
            try:
                vectors = await self._user_vectors(row, bundle.encoders, bundle.version,
                                                   time.monotonic() + (deadline - time.monotonic()) / 2, source=source)
            except RankingUnavailable as error:
                reasons.append(str(error))
        # FAISS and numpy release the GIL: off the event loop, other requests proceed meanwhile.
        items, scores = await asyncio.to_thread(state.candidates, history[-bundle.history_length :], vectors, depth,
                                                domain=domain, exclude=exclude)
        STAGE_LATENCY.labels("retrieval", variant).observe(time.perf_counter() - started)
        return items, scores, vectors, reasons

    @staticmethod
    def _rank_problem(ranker: TritonRanker | None, deadline: float) -> str:
        """Why ranking cannot be tried ("" when it can)."""
        if ranker is None:
            return "no Triton configured"
        if deadline - time.monotonic() <= 0:
            return "deadline too short to rank"
        return ""

    async def _user_vectors(
        self, row: NDArray[np.int64], members: Sequence[str], version: int, deadline: float, *, source: str,
    ) -> Vectors:
        """``members``' user vectors of version ``version`` for the HISTORY row ``row``: cached, else
        encoded by Triton (and kept). RankingUnavailable says why there are none."""
        if not members:
            return {}
        cached = self.encoder_cache.get(version, row, members, source=source) if self.encoder_cache else None
        if cached is not None:
            return cached
        ranker = self.models.ranker
        problem = self._rank_problem(ranker, deadline)
        if problem or ranker is None:
            raise RankingUnavailable(problem)
        try:
            vectors = await ranker.encode(row, members, target=self.models.interface(version).encoder_target,
                                          timeout=deadline - time.monotonic())
        except RankingUnavailable as error:
            RANKING_FAILURES.inc()
            log.warning("Triton encoding failed: %s", error)
            raise RankingUnavailable(f"Triton encoding failed: {error}") from error
        if self.encoder_cache is not None:
            self.encoder_cache.put(version, row, vectors)
        return vectors

    async def _rank(
        self, history: NDArray[np.int64], items: NDArray[np.int64], vectors: Vectors,
        bundle: ServingBundle, ranking_version: int, deadline: float, *, source: str,
    ) -> NDArray[np.float32]:
        """The ranking ensemble's scores of ``items`` (item indices) for the user with ``history``,
        padded to the version's widest candidate list so that Triton batches requests together. A
        ranking version other than the retrieval one reads the history at its own length and
        encodes it with its own encoders first (or finds its vectors cached)."""
        ranker = self.models.ranker
        assert ranker is not None  # checked by _rank_problem
        if ranking_version != bundle.version:
            interface = self.models.interface(ranking_version)
            row = triton.history_row(history, interface.history_length)
            vectors = await self._user_vectors(row, interface.ranking_vectors, ranking_version, deadline, source=source)
        else:
            row = triton.history_row(history, bundle.history_length)
            vectors = {member: vectors[member] for member in bundle.ranking_vectors}
        width = max(len(items), (self.candidates or bundle.depth) * len(bundle.retrievers))
        candidates = np.zeros(width, dtype=np.int64)
        candidates[: len(items)] = items + 1
        target = self.models.interface(ranking_version).ranker_target
        scores = await ranker.rank(row, candidates, vectors, target=target, timeout=deadline - time.monotonic())
        return scores[: len(items)]

    @staticmethod
    def _response(
        state: ServingState,
        items: NDArray[np.int64],
        scores: NDArray[np.float32],
        *,
        ranked_by: pb.RankedBy,
        cold_start: bool = False,
        degraded: bool = False,
        degraded_reason: str = "",
        because: Callable[[NDArray[np.int64]], list[int | None]] | None = None,
    ) -> pb.RecommendResponse:
        catalog = state.bundle.items
        reasons = because(items) if because is not None else [None] * len(items)
        return pb.RecommendResponse(
            items=[
                pb.RecommendedItem(
                    item_id=catalog[i].item_id,
                    title=catalog[i].title,
                    domain=DOMAIN_VALUES[catalog[i].domain],
                    score=float(s),
                    genres=list(catalog[i].genres),
                    year=catalog[i].year or 0,
                    reason=f"because you watched {catalog[b].title}" if b is not None else "",
                    because_item_id=catalog[b].item_id if b is not None else "",
                )
                for i, s, b in zip(items.tolist(), scores.tolist(), reasons, strict=True)
            ],
            model_version=str(state.bundle.version),
            ranked_by=ranked_by,
            cold_start=cold_start,
            degraded=degraded,
            degraded_reason=degraded_reason,
        )
