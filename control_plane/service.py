"""The Recommend and RecordFeedback RPCs: validate, route to an experiment's variant, gather
candidates, rank with Triton, fall back without hanging, log the exposure."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import NoReturn

import grpc
import numpy as np
from numpy.typing import NDArray

from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from control_plane.experiments.router import ExperimentRouter, Route
from control_plane.experiments.store import Exposure, now
from control_plane.metrics import (
    ERRORS,
    EXPOSURES,
    FEEDBACK,
    LATENCY,
    RANKING_FAILURES,
    REQUESTS,
    STAGE_LATENCY,
)
from control_plane.model_state import ModelState, ServingState
from control_plane.ranking import RankingUnavailable
from control_plane.validation import (
    DOMAIN_VALUES,
    InvalidRequest,
    RecommendQuery,
    parse_feedback,
    parse_request,
    shorten,
)

log = logging.getLogger(__name__)
DEADLINE_MARGIN_S = 0.02  # left for building the answer after ranking gives up


async def _abort(context: grpc.aio.ServicerContext, method: str, code: grpc.StatusCode, message: str) -> NoReturn:
    ERRORS.labels(method, code.name).inc()
    await context.abort(code, shorten(message))
    raise AssertionError("ServicerContext.abort returns only by raising")


def explain(state: ServingState, user: int, items: NDArray[np.int64]) -> list[int | None]:
    """For each item, the item of the user's history nearest to it (cosine of item embeddings of
    the first retriever that has them); None without a history or embeddings."""
    history = state.bundle.histories[user]
    vectors = next((r.arrays["item_vectors"] for r in state.bundle.retrievers if "item_vectors" in r.arrays), None)
    if vectors is None or not len(history) or not len(items):
        return [None] * len(items)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    nearest = np.argmax(unit[items] @ unit[history].T, axis=1)
    return [int(history[n]) for n in nearest]


class RecommendationService(pb_grpc.RecommendationServiceServicer):  # type: ignore[misc]  # untyped generated base
    def __init__(
        self, models: ModelState, *, candidates: int, ranking_timeout: float, router: ExperimentRouter | None = None
    ) -> None:
        self.models = models
        self.candidates = candidates
        self.ranking_timeout = ranking_timeout
        self.router = router

    async def Recommend(
        self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecommendResponse:
        started = time.perf_counter()
        try:
            query = parse_request(request)
        except InvalidRequest as error:
            REQUESTS.labels("invalid").inc()
            await _abort(context, "Recommend", grpc.StatusCode.INVALID_ARGUMENT, str(error))
        current = self.models.state
        if current is None:
            REQUESTS.labels("unavailable").inc()
            await _abort(context, "Recommend", grpc.StatusCode.UNAVAILABLE, "no model has been published yet")
        route = self.router.route(query.user_id, query.domain) if self.router else None
        state, ranking_version = current, current.bundle.version
        config = route.config if route is not None else None
        if config is not None:
            variant_state = self.models.states.get(config.retrieval_version)
            if variant_state is None:  # not loaded (yet): serve the current version, outside the experiment
                route = None
            else:
                state, ranking_version = variant_state, config.ranking_version
        user = state.bundle.user_index.get(query.user_id)
        if user is None:
            response = self._cold_start(state, query)
        else:
            response = await self._personalised(state, query, user, ranking_version, context.time_remaining(),
                                                variant=route.variant if route else "")
        response.request_id = uuid.uuid4().hex
        if route is not None:
            response.experiment, response.variant = route.experiment, route.variant
        self._log_exposure(response, query, route, state.bundle.version, ranking_version)
        outcome = "cold_start" if response.cold_start else "degraded" if response.degraded else (
            "triton" if response.ranked_by == pb.RANKED_BY_TRITON else "retrieval")
        REQUESTS.labels(outcome).inc()
        elapsed = time.perf_counter() - started
        LATENCY.observe(elapsed)
        STAGE_LATENCY.labels("total", response.variant).observe(elapsed)
        return response

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
        matched = await self.router.store.feedback(record)
        FEEDBACK.labels(record.kind, "unknown" if matched is None else str(matched).lower()).inc()
        return pb.FeedbackResponse(matched_exposure=bool(matched))

    def _log_exposure(
        self, response: pb.RecommendResponse, query: RecommendQuery, route: Route | None, retrieval: int, ranking: int
    ) -> None:
        EXPOSURES.labels(response.experiment, response.variant).inc()
        if self.router is None:
            return
        self.router.store.expose(Exposure(
            response.request_id, query.user_id, route.experiment if route else "", route.variant if route else "",
            retrieval, ranking if response.ranked_by == pb.RANKED_BY_TRITON else 0, now(),
        ))

    def _cold_start(self, state: ServingState, query: RecommendQuery) -> pb.RecommendResponse:
        items = state.popular.get(query.domain, np.zeros(0, dtype=np.int64))[: query.k]
        return self._response(
            state, items, state.bundle.popularity[items], ranked_by=pb.RANKED_BY_POPULARITY, cold_start=True
        )

    async def _personalised(
        self, state: ServingState, query: RecommendQuery, user: int, ranking_version: int,
        time_remaining: float | None, *, variant: str,
    ) -> pb.RecommendResponse:
        bundle = state.bundle
        exclude = bundle.histories[user] if query.exclude_seen else np.zeros(0, dtype=np.int64)
        depth = max(self.candidates or bundle.depth, query.k)
        started = time.perf_counter()
        # FAISS and numpy release the GIL: off the event loop, other requests proceed meanwhile.
        items, scores = await asyncio.to_thread(state.candidates, user, depth, domain=query.domain, exclude=exclude)
        STAGE_LATENCY.labels("retrieval", variant).observe(time.perf_counter() - started)
        because = (lambda chosen: explain(state, user, chosen)) if query.explain else None
        budget = self.ranking_timeout
        if time_remaining is not None:
            budget = min(budget, time_remaining - DEADLINE_MARGIN_S)
        reason = ""
        if not ranking_version or len(items) == 0:
            pass  # a variant that serves retrieval order, or nothing to rank
        elif self.models.ranker is None:
            reason = "no Triton configured"
        elif budget <= 0:
            reason = "deadline too short to rank"
        else:
            try:
                started = time.perf_counter()
                ranked = await self.models.ranker.rank(user, items, version=ranking_version, timeout=budget)
                STAGE_LATENCY.labels("ranking", variant).observe(time.perf_counter() - started)
                order = np.argsort(-ranked, kind="stable")[: query.k]
                return self._response(state, items[order], ranked[order], ranked_by=pb.RANKED_BY_TRITON,
                                      because=because)
            except RankingUnavailable as error:
                RANKING_FAILURES.inc()
                reason = f"Triton ranking failed: {error}"
                log.warning("%s", reason)
        return self._response(
            state, items[: query.k], scores[: query.k], ranked_by=pb.RANKED_BY_RETRIEVAL,
            degraded=bool(reason), degraded_reason=reason, because=because,
        )

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
