"""The Recommend RPC: validate, gather candidates, rank with Triton, fall back without hanging."""

from __future__ import annotations

import logging
import time
from typing import NoReturn

import grpc
import numpy as np
from numpy.typing import NDArray

from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from control_plane.metrics import LATENCY, RANKING_FAILURES, REQUESTS
from control_plane.model_state import ModelState, ServingState
from control_plane.ranking import RankingUnavailable
from control_plane.validation import DOMAIN_VALUES, InvalidRequest, RecommendQuery, parse_request

log = logging.getLogger(__name__)
DEADLINE_MARGIN_S = 0.02  # left for building the answer after ranking gives up


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("ServicerContext.abort returns only by raising")


class RecommendationService(pb_grpc.RecommendationServiceServicer):  # type: ignore[misc]  # untyped generated base
    def __init__(self, models: ModelState, *, candidates: int, ranking_timeout: float) -> None:
        self.models = models
        self.candidates = candidates
        self.ranking_timeout = ranking_timeout

    async def Recommend(
        self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecommendResponse:
        started = time.perf_counter()
        try:
            query = parse_request(request)
        except InvalidRequest as error:
            REQUESTS.labels("invalid").inc()
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        state = self.models.state
        if state is None:
            REQUESTS.labels("unavailable").inc()
            await _abort(context, grpc.StatusCode.UNAVAILABLE, "no model has been published yet")
        user = state.bundle.user_index.get(query.user_id)
        if user is None:
            response = self._cold_start(state, query)
        else:
            response = await self._personalised(state, query, user, context.time_remaining())
        outcome = "cold_start" if response.cold_start else "degraded" if response.degraded else "triton"
        REQUESTS.labels(outcome).inc()
        LATENCY.observe(time.perf_counter() - started)
        return response

    def _cold_start(self, state: ServingState, query: RecommendQuery) -> pb.RecommendResponse:
        bundle = state.bundle
        candidates = np.arange(len(bundle.items))
        if query.domain != "any":
            candidates = candidates[bundle.item_domains == query.domain]
        popularity = bundle.popularity[candidates]
        order = np.argsort(-popularity, kind="stable")[: query.k]
        return self._response(
            state, candidates[order], popularity[order], ranked_by=pb.RANKED_BY_POPULARITY, cold_start=True
        )

    async def _personalised(
        self, state: ServingState, query: RecommendQuery, user: int, time_remaining: float | None
    ) -> pb.RecommendResponse:
        bundle = state.bundle
        exclude = bundle.histories[user] if query.exclude_seen else np.zeros(0, dtype=np.int64)
        depth = max(self.candidates or bundle.depth, query.k)
        items, scores = state.candidates(user, depth, domain=query.domain, exclude=exclude)
        budget = self.ranking_timeout
        if time_remaining is not None:
            budget = min(budget, time_remaining - DEADLINE_MARGIN_S)
        if self.models.ranker is None or len(items) == 0:
            reason = "" if len(items) == 0 else "no Triton configured"
        elif budget <= 0:
            reason = "deadline too short to rank"
        else:
            try:
                ranked = await self.models.ranker.rank(user, items, version=bundle.version, timeout=budget)
                order = np.argsort(-ranked, kind="stable")[: query.k]
                return self._response(state, items[order], ranked[order], ranked_by=pb.RANKED_BY_TRITON)
            except RankingUnavailable as error:
                RANKING_FAILURES.inc()
                reason = f"Triton ranking failed: {error}"
                log.warning("%s", reason)
        return self._response(
            state,
            items[: query.k],
            scores[: query.k],
            ranked_by=pb.RANKED_BY_RETRIEVAL,
            degraded=bool(reason),
            degraded_reason=reason,
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
    ) -> pb.RecommendResponse:
        catalog = state.bundle.items
        return pb.RecommendResponse(
            items=[
                pb.RecommendedItem(
                    item_id=catalog[i].item_id,
                    title=catalog[i].title,
                    domain=DOMAIN_VALUES[catalog[i].domain],
                    score=float(s),
                    genres=list(catalog[i].genres),
                    year=catalog[i].year or 0,
                )
                for i, s in zip(items.tolist(), scores.tolist(), strict=True)
            ],
            model_version=str(state.bundle.version),
            ranked_by=ranked_by,
            cold_start=cold_start,
            degraded=degraded,
            degraded_reason=degraded_reason,
        )
