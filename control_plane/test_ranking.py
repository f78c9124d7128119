"""The ranker's stall supervision against a fake Triton client: a model that answers late (an
overloaded machine) is never reloaded, one that never answers (a dead python-backend stub) is."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from tritonclient.utils import InferenceServerException

from control_plane import ranking
from control_plane.ranking import RankingUnavailable, TritonRanker

TIMEOUT_S = 0.05


class FakeClient:
    """Answers every infer after ``delay_s`` (None: never; the call ends at its client_timeout with
    tritonclient's deadline error); counts reloads."""

    def __init__(self, delay_s: float | None) -> None:
        self.delay_s = delay_s
        self.loads: list[str] = []

    async def infer(self, model: str, feeds: Any, *, client_timeout: float, **_: Any) -> Any:
        if self.delay_s is None:
            await asyncio.sleep(client_timeout)
            raise InferenceServerException("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED")  # as tritonclient says it
        await asyncio.sleep(self.delay_s)
        return self

    def as_numpy(self, name: str) -> NDArray[np.float32]:
        return np.zeros((1, 3), dtype=np.float32)

    async def is_server_live(self, **_: Any) -> bool:
        return True

    async def get_model_config(self, model: str, **_: Any) -> dict[str, Any]:
        return {"config": {"name": model}}

    async def load_model(self, model: str, **_: Any) -> None:
        self.loads.append(model)


async def calls_for(ranker: TritonRanker, seconds: float) -> int:
    """Rank every TIMEOUT_S for ``seconds``; the number of calls that timed out."""
    timeouts = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        try:
            await ranker.rank(np.zeros(4, np.int64), np.ones(3, np.int64), {}, target=("ranker", "1"),
                              timeout=TIMEOUT_S)
        except RankingUnavailable:
            timeouts += 1
    await asyncio.sleep(0.3)  # let reloads started in the background finish
    return timeouts


@pytest.mark.parametrize(("delay_s", "reloaded"), [(TIMEOUT_S * 3, False), (None, True)])
def test_a_model_answering_late_is_not_reloaded_a_silent_one_is(
        monkeypatch: pytest.MonkeyPatch, delay_s: float | None, reloaded: bool) -> None:
    monkeypatch.setattr(ranking, "STALL_S", 0.5)
    monkeypatch.setattr(ranking, "CANCEL_AFTER_S", 0.1)

    async def scenario() -> tuple[int, list[str]]:
        ranker = TritonRanker("127.0.0.1:1")
        fake = FakeClient(delay_s)
        ranker.client = fake
        return await calls_for(ranker, 1.5), fake.loads

    timeouts, loads = asyncio.run(scenario())
    assert timeouts >= 10  # every call missed its deadline in both cases
    assert loads == (["ranker"] if reloaded else [])
