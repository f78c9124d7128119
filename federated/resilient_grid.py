"""A Grid that rides out the SuperLink's transient errors. Flower's SQLite state answers HTTP 500
("database is locked": its busy timeout is 5 s) now and then when many processes share few cores;
one such answer while a round polls for replies would otherwise end the whole run. Idempotent calls
(listing nodes, pulling replies) are retried after a pause; pushing is not, since a push retried
after a partial success could deliver a message twice."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
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
        (Flower's semantics); a poll that meets a transient error counts as a poll without replies."""
        pending = {message_id for message_id in self.push_messages(messages) if message_id}
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending:
            try:
                pulled = list(self._grid.pull_messages(pending))
            except httpx.HTTPStatusError as error:
                if not transient(error):
                    raise
                log.warning("SuperLink failed to pull replies (%s); polling on", error.response.status_code)
                pulled = []
            replies.extend(pulled)
            pending -= {reply.metadata.reply_to_message_id for reply in pulled}
            if not pending or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(POLL_S)
        return replies
