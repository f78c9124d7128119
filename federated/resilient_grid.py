"""A Grid that rides out the SuperLink's transient errors. Flower's SQLite state answers HTTP 500
("database is locked": its busy timeout is 5 s) now and then when many processes share few cores;
one such answer while a round polls for replies would otherwise end the whole run. Idempotent calls
(listing nodes, pulling replies) are retried after a pause; pushing is not, since a push retried
after a partial success could deliver a message twice. A round's exchange asks a node again when its
reply is missing well after the others came: a reply a SuperNode failed to push is lost otherwise."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

log = logging.getLogger(__name__)
T = TypeVar("T")
# Pause between polls for replies: Flower's Grid waits 3 s, which adds 1.5 s on average to every
# step of a round (train, evaluate, each SecAgg+ stage); one pull a second is little for the SuperLink.
POLL_S = 1.0
# A node is asked again when its reply is later than REASK_FACTOR x the median of the replies so far
# (and at least MIN_REASK_S after it was last asked), at most REASKS times a round.
REASK_FACTOR = 2.0
MIN_REASK_S = 10.0
REASKS = 2
MIN_TTL_S = 5.0  # a copy that would live shorter than this before the deadline is not sent
TTL_MARGIN_S = 10.0  # a copy lives this much past the step's deadline


@dataclass
class Exchange:
    """What one round trip to the sampled nodes brought back."""

    replies: list[Message] = field(default_factory=list)  # the first reply of each node that replied
    reasked: int = 0  # messages sent again to nodes whose reply was missing


def transient(error: Exception) -> bool:
    """A server-side failure the next call may not meet (5xx), not a refusal of the request."""
    return isinstance(error, httpx.HTTPStatusError) and error.response.status_code >= 500


class ResilientGrid(Grid):
    """Delegates to ``grid``; retries its idempotent calls ``attempts`` times on transient errors."""

    def __init__(self, grid: Grid, *, attempts: int = 5, pause_s: float = 2.0) -> None:
        self._grid, self._attempts, self._pause_s = grid, attempts, pause_s

    def _retried(self, call: Callable[[], T], what: str) -> T:
        for attempt in range(1, self._attempts):
            try:
                return call()
            except httpx.HTTPStatusError as error:
                if not transient(error):
                    raise
                log.warning("SuperLink failed to %s (%s); attempt %d of %d in %.0f s", what,
                            error.response.status_code, attempt + 1, self._attempts, self._pause_s)
                time.sleep(self._pause_s)
        return call()  # the last attempt: its error is the caller's

    def set_run(self, run: Run) -> None:
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        return self._grid.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self._retried(lambda: list(self._grid.get_node_ids()), "list the nodes")

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        wanted = list(message_ids)
        return self._retried(lambda: list(self._grid.pull_messages(wanted)), "pull replies")

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Push once, then poll for the replies every POLL_S until all came or ``timeout`` passed
        (Flower's semantics; what Flower's own workflows, SecAgg+'s stages among them, call)."""
        return self.exchange(messages, timeout=timeout, reask=False).replies

    def exchange(self, messages: Iterable[Message], *, timeout: float | None, reask: bool = True) -> Exchange:
        """send_and_receive, and with ``reask`` a node whose reply is missing is sent the message again
        (a new message with the same content), at most REASKS times, once half the nodes have replied
        and it is later than REASK_FACTOR times their median reply time: a reply the SuperNode failed to
        push is otherwise lost for the round. The first reply from each node is kept; its other messages
        are not polled for again. A poll that meets a transient error counts as a poll without replies."""
        sent = list(messages)
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        node_of: dict[str, int] = {}  # message id -> the node it went to
        message_for: dict[int, Message] = {}
        asked_at: dict[int, float] = {}
        asks: dict[int, int] = {}
        for message, message_id in zip(sent, list(self.push_messages(sent))):  # none for a refused push
            if message_id:
                node = message.metadata.dst_node_id
                node_of[message_id], message_for[node], asked_at[node], asks[node] = node, message, started, 1
        result = Exchange()
        answered: dict[int, float] = {}  # node -> seconds to its first reply
        while node_of:
            try:
                pulled = list(self._grid.pull_messages(list(node_of)))
            except httpx.HTTPStatusError as error:
                if not transient(error):
                    raise
                log.warning("SuperLink failed to pull replies (%s); polling on", error.response.status_code)
                pulled = []
            now = time.monotonic()
            for reply in pulled:
                replier = node_of.get(reply.metadata.reply_to_message_id)
                if replier is None or replier in answered:
                    continue
                answered[replier] = now - started
                result.replies.append(reply)
                node_of = {message_id: node for message_id, node in node_of.items() if node != replier}
            if not node_of or (deadline is not None and now >= deadline):
                break
            if reask:
                result.reasked += self._reask(node_of, message_for, asked_at, asks, answered, now, deadline)
            time.sleep(POLL_S)
        return result

    def _reask(self, node_of: dict[str, int], message_for: dict[int, Message], asked_at: dict[int, float],
               asks: dict[int, int], answered: dict[int, float], now: float, deadline: float | None) -> int:
        """Sends again to the late nodes whose turn it is; returns how many were sent."""
        if not answered or 2 * len(answered) < len(message_for):
            return 0
        patience = max(MIN_REASK_S, REASK_FACTOR * statistics.median(answered.values()))
        late = sorted({node for node in node_of.values()
                       if asks[node] <= REASKS and now - asked_at[node] >= patience})
        if not late:
            return 0
        # A copy lives only until just past the step's deadline: a node that was slow, not lost, must
        # not find it queued behind its next steps' messages.
        if deadline is not None and deadline - now < MIN_TTL_S:
            return 0
        # (A copy that expired would be answered with an error reply: it must outlive the last poll.)
        ttl = None if deadline is None else deadline - now + TTL_MARGIN_S
        again = [Message(message_for[node].content, node, message_for[node].metadata.message_type,
                         group_id=message_for[node].metadata.group_id, ttl=ttl) for node in late]
        try:
            message_ids = list(self.push_messages(again))
        except httpx.HTTPStatusError as error:
            if not transient(error):
                raise
            log.warning("SuperLink failed to take the re-sent messages (%s); trying again later",
                        error.response.status_code)
            return 0
        for node, message_id in zip(late, message_ids):
            asks[node] += 1
            asked_at[node] = now
            if message_id:
                node_of[message_id] = node
        log.warning("no reply from nodes %s within %.0f s of asking (the others' median: %.1f s): sent again",
                    late, patience, patience / REASK_FACTOR)
        return len(late)
