"""ResilientGrid against a Grid whose SuperLink answers 500 now and then (a stand-in for the one
module under test): polls and node listings ride it out, a refusal (4xx) and a push do not retry."""

from __future__ import annotations

from collections.abc import Iterable

import httpx
import pytest
from flwr.app import Message, Metadata, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

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
    monkeypatch.setattr(resilient_grid, "MIN_TTL_S", 0.0)
    for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):  # as in a ServerApp's process:
        monkeypatch.setattr(TaskIdentity, name, value)  # a message names its run, sender and task


def test_a_round_polls_through_a_locked_database_and_pushes_once() -> None:
    flaky = FlakyGrid(pulls=[[_reply("a")], _failure(500), [_reply("b")]], node_lists=[])
    replies = list(ResilientGrid(flaky, pause_s=0).send_and_receive([_train(1), _train(2)], timeout=60))
    assert [r.metadata.reply_to_message_id for r in replies] == ["a", "b"] and flaky.pushed == 1


def test_a_refusal_is_raised_and_persistent_failures_end_with_the_timeout() -> None:
    with pytest.raises(httpx.HTTPStatusError):
        list(ResilientGrid(FlakyGrid(pulls=[_failure(403)], node_lists=[]), pause_s=0)
             .send_and_receive([_train(1), _train(2)], timeout=60))
    failing = FlakyGrid(pulls=[_failure(500)] * 1000, node_lists=[])
    assert list(ResilientGrid(failing, pause_s=0).send_and_receive([_train(1), _train(2)], timeout=0.05)) == []


def test_node_listings_are_retried_a_bounded_number_of_times() -> None:
    assert list(ResilientGrid(FlakyGrid(pulls=[], node_lists=[_failure(500), [3, 4]]), pause_s=0).get_node_ids()) == [3, 4]
    with pytest.raises(httpx.HTTPStatusError):
        ResilientGrid(FlakyGrid(pulls=[], node_lists=[_failure(503)] * 3), attempts=3, pause_s=0).get_node_ids()


class ForgetfulGrid(FlakyGrid):
    """Every message is answered at once except the first one to each node of ``losing`` (that reply
    was dropped on its way: the SuperNode's push failed) and every one to a node of ``dead``."""

    def __init__(self, *, losing: frozenset[int] = frozenset(), dead: frozenset[int] = frozenset()) -> None:
        super().__init__(pulls=[], node_lists=[])
        self.losing, self.dead, self.sent = set(losing), set(dead), 0
        self.to: dict[str, int | None] = {}  # message id -> the node whose reply is waiting
        self.ttls: list[float | None] = []

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            self.sent += 1
            self.ttls.append(message.metadata.ttl)
            node = message.metadata.dst_node_id
            ids.append(f"m{self.sent}")
            self.to[ids[-1]] = None if node in self.losing | self.dead else node
            self.losing.discard(node)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = []
        for message_id in message_ids:
            if self.to.get(message_id) is not None:
                replies.append(_reply(message_id))
                self.to[message_id] = None
        return replies


def _train(node: int) -> Message:
    return Message(RecordDict(), node, "train", group_id="1")


def test_a_missing_reply_is_asked_for_again_and_each_node_counted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resilient_grid, "MIN_REASK_S", 0.0)
    grid = ForgetfulGrid(losing=frozenset({2}))
    exchange = ResilientGrid(grid, pause_s=0).exchange([_train(1), _train(2), _train(3)], timeout=60)
    assert sorted(r.metadata.reply_to_message_id for r in exchange.replies) == ["m1", "m3", "m4"]
    assert exchange.reasked == 1 and grid.sent == 4
    assert grid.ttls[-1] is not None and 0 < grid.ttls[-1] <= 60 + resilient_grid.TTL_MARGIN_S  # not 12 hours


def test_flowers_send_and_receive_never_asks_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resilient_grid, "MIN_REASK_S", 0.0)
    grid = ForgetfulGrid(losing=frozenset({2}))
    replies = list(ResilientGrid(grid, pause_s=0).send_and_receive([_train(1), _train(2)], timeout=0.05))
    assert len(replies) == 1 and grid.sent == 2  # SecAgg+'s stages must not be repeated


def test_a_node_that_never_answers_is_asked_a_bounded_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resilient_grid, "MIN_REASK_S", 0.0)
    grid = ForgetfulGrid(dead=frozenset({2}))
    exchange = ResilientGrid(grid, pause_s=0).exchange([_train(1), _train(2)], timeout=0.2)
    assert len(exchange.replies) == 1 and exchange.reasked == resilient_grid.REASKS
    assert grid.sent == 2 + resilient_grid.REASKS
