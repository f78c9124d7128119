"""ResilientGrid against a Grid whose SuperLink answers 500 now and then (a stand-in for the one
module under test): polls and node listings ride it out, a refusal (4xx) and a push do not retry."""

from __future__ import annotations

from collections.abc import Iterable

import httpx
import pytest
from flwr.app import Message, Metadata, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from federated import resilient_grid
from federated.resilient_grid import ResilientGrid


def _failure(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://superlink/v1/runtime/pull-messages")
    return httpx.HTTPStatusError(f"{code}", request=request, response=httpx.Response(code, request=request))


def _reply(to: str) -> Message:
    return Message(content=RecordDict(), metadata=Metadata(  # type: ignore[call-overload]
        run_id=1, message_id="", src_node_id=7, dst_node_id=0, reply_to_message_id=to, group_id="", created_at=0.0,
        ttl=60.0, message_type="train"))


class FlakyGrid(Grid):
    """Answers each call from a script: an exception to raise or a value to return."""

    def __init__(self, *, pulls: list[object], node_lists: list[object]) -> None:
        self.pulls, self.node_lists, self.pushed = pulls, node_lists, 0

    def set_run(self, run: Run) -> None:
        raise NotImplementedError

    @property
    def run(self) -> Run:
        raise NotImplementedError

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        raise NotImplementedError

    @staticmethod
    def _next(script: list[object]) -> object:
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def get_node_ids(self) -> Iterable[int]:
        return self._next(self.node_lists)  # type: ignore[return-value]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        self.pushed += 1
        return ["a", "b"]

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._next(self.pulls)  # type: ignore[return-value]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        raise NotImplementedError


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resilient_grid, "POLL_S", 0.0)


def test_a_round_polls_through_a_locked_database_and_pushes_once() -> None:
    flaky = FlakyGrid(pulls=[[_reply("a")], _failure(500), [_reply("b")]], node_lists=[])
    replies = list(ResilientGrid(flaky, pause_s=0).send_and_receive([], timeout=60))
    assert [r.metadata.reply_to_message_id for r in replies] == ["a", "b"] and flaky.pushed == 1


def test_a_refusal_is_raised_and_persistent_failures_end_with_the_timeout() -> None:
    with pytest.raises(httpx.HTTPStatusError):
        list(ResilientGrid(FlakyGrid(pulls=[_failure(403)], node_lists=[]), pause_s=0).send_and_receive([], timeout=60))
    failing = FlakyGrid(pulls=[_failure(500)] * 1000, node_lists=[])
    assert list(ResilientGrid(failing, pause_s=0).send_and_receive([], timeout=0.05)) == []


def test_node_listings_are_retried_a_bounded_number_of_times() -> None:
    assert list(ResilientGrid(FlakyGrid(pulls=[], node_lists=[_failure(500), [3, 4]]), pause_s=0).get_node_ids()) == [3, 4]
    with pytest.raises(httpx.HTTPStatusError):
        ResilientGrid(FlakyGrid(pulls=[], node_lists=[_failure(503)] * 3), attempts=3, pause_s=0).get_node_ids()
