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
from control_plane.model_state import ModelState
from control_plane.ranking import TritonRanker
from control_plane.service import RecommendationService
from exporters.publish import publish
from launcher.services.process import free_port
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


async def _call_with(serving_dir: Path, triton_url: str, requests: list[tuple[pb.RecommendRequest, float]]) -> list[
    tuple[pb.RecommendResponse | grpc.StatusCode, float]
]:
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
                try:
                    results.append((await stub.Recommend(request, timeout=timeout), time.perf_counter() - started))
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
