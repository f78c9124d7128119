"""Recommend over a real in-process gRPC server, with Triton unreachable or silent."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cinesync.settings import Settings
from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from control_plane.experiments.router import ExperimentRouter
from control_plane.experiments.store import ExperimentStore
from control_plane.experiments.test_store import needs_redis, own_redis
from control_plane.history import HistoryStore
from control_plane.model_state import ModelState
from control_plane.ranking import TritonRanker
from control_plane.service import RecommendationService
from exporters.publish import publish
from launcher.services.process import ManagedProcess, free_port
from recsys.run import load_run


@pytest.fixture(scope="module")
def serving_dir(small_run: Path, exported_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("service")
    settings = Settings(home=root / "home", model_repository=root / "repo")
    publish(load_run(small_run), exported_run, settings)
    return settings.serving_dir


@pytest.fixture()
def silent_triton() -> Iterator[str]:
    """A socket that accepts connections and never answers: the worst case for a deadline."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


async def _call_with(
    serving_dir: Path, triton_url: str, requests: list[tuple[pb.RecommendRequest | pb.GroupRecommendRequest, float]]
) -> list[tuple[pb.RecommendResponse | grpc.StatusCode, float]]:
    models = ModelState(serving_dir, TritonRanker(triton_url))
    models.ranker.load = _no_load  # type: ignore[union-attr,method-assign]  # loading would wait on the silent peer
    assert await models.refresh()
    server = grpc.aio.server()
    pb_grpc.add_RecommendationServiceServicer_to_server(
        RecommendationService(models, candidates=50, ranking_timeout=5.0), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    results: list[tuple[pb.RecommendResponse | grpc.StatusCode, float]] = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.RecommendationServiceStub(channel)
            for request, timeout in requests:
                started = time.perf_counter()
                call = stub.RecommendGroup if isinstance(request, pb.GroupRecommendRequest) else stub.Recommend
                try:
                    results.append((await call(request, timeout=timeout), time.perf_counter() - started))
                except grpc.aio.AioRpcError as error:
                    results.append((error.code(), time.perf_counter() - started))
    finally:
        await server.stop(None)
    return results


async def _no_load(version: int, *, encodes: bool, timeout: float = 0.0) -> None:
    del version, encodes, timeout


def test_silent_triton_gives_degraded_answer_within_deadline(serving_dir: Path, silent_triton: str) -> None:
    user = "u0"
    [(response, elapsed)] = asyncio.run(
        _call_with(serving_dir, silent_triton, [(pb.RecommendRequest(user_id=user, k=5), 0.6)])
    )
    assert isinstance(response, pb.RecommendResponse)
    assert response.degraded and response.ranked_by == pb.RANKED_BY_RETRIEVAL
    assert len(response.items) == 5 and elapsed < 0.6
    scores = [item.score for item in response.items]
    assert scores == sorted(scores, reverse=True)


def test_unreachable_triton_cold_start_and_invalid(serving_dir: Path) -> None:
    unreachable = f"127.0.0.1:{free_port()}"
    results = asyncio.run(
        _call_with(
            serving_dir,
            unreachable,
            [
                (pb.RecommendRequest(user_id="u1", k=3, domain=pb.DOMAIN_TV), 5.0),
                (pb.RecommendRequest(user_id="nobody-knows-me", k=4, domain=pb.DOMAIN_MOVIE), 5.0),
                (pb.RecommendRequest(user_id="u1", k=0), 5.0),
            ],
        )
    )
    degraded, cold, invalid = (r for r, _ in results)
    assert isinstance(degraded, pb.RecommendResponse) and degraded.degraded
    assert all(item.domain == pb.DOMAIN_TV for item in degraded.items) and len(degraded.items) == 3
    assert isinstance(cold, pb.RecommendResponse) and cold.cold_start and not cold.degraded
    assert cold.ranked_by == pb.RANKED_BY_POPULARITY
    assert all(item.domain == pb.DOMAIN_MOVIE for item in cold.items) and len(cold.items) == 4
    assert invalid == grpc.StatusCode.INVALID_ARGUMENT


def test_a_history_sent_with_the_request_is_used_and_checked(small_run: Path, serving_dir: Path) -> None:
    run = load_run(small_run)
    ids = [item.item_id for item in run.items]
    watched = [ids[i] for i in run.history.train_sequences[0][-5:]]
    long = [ids[i % len(ids)] for i in range(10_000)]
    results = asyncio.run(
        _call_with(
            serving_dir,
            f"127.0.0.1:{free_port()}",  # unreachable: retrieval order, from the history alone
            [
                (pb.RecommendRequest(user_id="never-seen", k=10, history=watched), 5.0),
                (pb.RecommendRequest(user_id="never-seen", k=10, history=[*watched, "no-such-item"]), 5.0),
                (pb.RecommendRequest(user_id="never-seen", k=10, history=["no-such-item"]), 5.0),
                (pb.RecommendRequest(user_id="never-seen", k=10, history=long), 5.0),
                (pb.RecommendRequest(user_id="never-seen", k=10, history=[watched[0], "bad id!"]), 5.0),
            ],
        )
    )
    sent, with_unknown, only_unknown, too_long, malformed = (r for r, _ in results)
    assert isinstance(sent, pb.RecommendResponse) and not sent.cold_start  # personalised, not popularity
    assert sent.ranked_by == pb.RANKED_BY_RETRIEVAL and len(sent.items) == 10
    assert not {item.item_id for item in sent.items} & set(watched)  # exclude_seen uses the sent history
    assert isinstance(with_unknown, pb.RecommendResponse)  # an unknown id is ignored: the same answer
    assert [i.item_id for i in with_unknown.items] == [i.item_id for i in sent.items]
    assert isinstance(only_unknown, pb.RecommendResponse) and only_unknown.cold_start
    assert isinstance(too_long, pb.RecommendResponse) and not too_long.cold_start  # cut, not refused
    assert malformed == grpc.StatusCode.INVALID_ARGUMENT


@needs_redis
def test_live_history_watches_change_the_next_answer_and_redis_away_falls_back(
    small_run: Path, serving_dir: Path, tmp_path: Path
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    run = load_run(small_run)
    ids = [item.item_id for item in run.items]
    known = run.user_ids[0]

    async def scenario(redis_process: ManagedProcess) -> None:
        histories = HistoryStore(url, "live", retry_after_s=0.2)
        store = ExperimentStore(url, "live")
        models = ModelState(serving_dir, None, histories=histories)
        router = ExperimentRouter(store, models)
        assert await models.refresh()
        await asyncio.wait_for(asyncio.gather(*models.seeding.values()), 30)
        assert models.seeded == {models.current}
        server = grpc.aio.server()
        pb_grpc.add_RecommendationServiceServicer_to_server(
            RecommendationService(models, candidates=50, ranking_timeout=1.0, router=router, histories=histories),
            server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.RecommendationServiceStub(channel)
                first = await stub.Recommend(pb.RecommendRequest(user_id=known, k=10), timeout=5)
                assert not first.cold_start and "live history" not in first.degraded_reason  # no Triton here
                watched = first.items[0].item_id
                await stub.RecordFeedback(pb.FeedbackRequest(request_id=first.request_id, user_id=known,
                                                             item_id=watched, kind=pb.FEEDBACK_KIND_WATCH))
                after = await stub.Recommend(pb.RecommendRequest(user_id=known, k=10), timeout=5)
                assert watched not in [item.item_id for item in after.items]  # exclude_seen reads the live history
                assert [i.item_id for i in after.items[:9]] != [i.item_id for i in first.items[1:10]]  # re-scored
                # Someone the published data never had: one watch makes them known and personalised.
                stranger = "stranger-1"
                cold = await stub.Recommend(pb.RecommendRequest(user_id=stranger, k=5), timeout=5)
                assert cold.cold_start
                await stub.RecordFeedback(pb.FeedbackRequest(request_id=cold.request_id, user_id=stranger,
                                                             item_id=ids[run.history.train_sequences[0][0]],
                                                             kind=pb.FEEDBACK_KIND_WATCH))
                warm = await stub.Recommend(pb.RecommendRequest(user_id=stranger, k=5), timeout=5)
                assert not warm.cold_start and warm.ranked_by == pb.RANKED_BY_RETRIEVAL
                # Redis away: the published history, flagged degraded, no error.
                redis_process.stop()
                away = await stub.Recommend(pb.RecommendRequest(user_id=known, k=10), timeout=5)
                assert away.degraded and "live history unavailable" in away.degraded_reason
                assert [i.item_id for i in away.items] == [i.item_id for i in first.items]  # as published
                lost = await stub.RecordFeedback(pb.FeedbackRequest(request_id=away.request_id, user_id=known,
                                                                    item_id=watched, kind=pb.FEEDBACK_KIND_WATCH))
                assert not lost.matched_exposure
        finally:
            await server.stop(None)
            await histories.close()

    with own_redis(url, tmp_path) as process:
        asyncio.run(scenario(process))


def test_group_requests_leave_out_every_members_seen_items_and_bad_groups_are_refused(
    small_run: Path, serving_dir: Path
) -> None:
    run = load_run(small_run)
    ids = [item.item_id for item in run.items]
    users = [run.user_ids[u] for u in (0, 1, 2)]
    seen = {ids[i] for u in (0, 1, 2) for i in run.history.train_sequences[u]}
    stranger = pb.GroupMember(history=[ids[i] for i in run.history.train_sequences[5][-3:]])
    member = pb.GroupMember
    requests: list[tuple[pb.RecommendRequest | pb.GroupRecommendRequest, float]] = [
        (pb.GroupRecommendRequest(members=[member(user_id=u) for u in users], k=10), 5.0),
        (pb.GroupRecommendRequest(members=[member(user_id=users[0]), stranger], k=10, domain=pb.DOMAIN_TV), 5.0),
        (pb.GroupRecommendRequest(members=[member(user_id="nobody"), member(history=["no-such-item"])], k=4), 5.0),
        (pb.GroupRecommendRequest(members=[], k=10), 5.0),
        (pb.GroupRecommendRequest(members=[member(user_id=f"u{n}") for n in range(21)], k=10), 5.0),
        (pb.GroupRecommendRequest(members=[member(user_id=users[0]), member()], k=10), 5.0),
        (pb.GroupRecommendRequest(members=[member(history=["ok", "bad id!"])], k=10), 5.0),
    ]
    results = asyncio.run(_call_with(serving_dir, f"127.0.0.1:{free_port()}", requests))  # Triton unreachable
    three, with_stranger, cold, *refused = (r for r, _ in results)
    assert isinstance(three, pb.RecommendResponse) and not three.cold_start and len(three.items) == 10
    assert three.ranked_by == pb.RANKED_BY_RETRIEVAL and three.degraded  # no Triton: interleaved retrieval order
    assert not seen & {item.item_id for item in three.items}
    assert isinstance(with_stranger, pb.RecommendResponse) and all(i.domain == pb.DOMAIN_TV for i in with_stranger.items)
    assert not set(stranger.history) & {item.item_id for item in with_stranger.items}
    assert isinstance(cold, pb.RecommendResponse) and cold.cold_start and len(cold.items) == 4
    assert refused == [grpc.StatusCode.INVALID_ARGUMENT] * 4
