"""CineSync's SuperNode: Flower 1.42's ``flower-supernode`` that does not drop a reply on a server error.

Flower's SuperNode retries a push only on 502/503/504 (``flwr.supercore.retry.http_retry``); on the
SuperLink's plain 500 (its SQLite state "database is locked" under load) it logs "Failed to send
message" and deletes the reply in ``_push_messages``' ``finally``. Storing a reply is idempotent on the
SuperLink (``store_message_res`` returns when the reply is already there) and so is storing an object,
so this process wraps the two push calls of Flower's Fleet connection (``send``: PushMessages;
``push_object``: PushObject) in Flower's own ``RetryInvoker``: a 5xx is tried again, up to
``Settings.supernode_push_attempts`` tries, with exponential backoff and jitter. Everything else is
Flower's; ``tests/test_flower_replies.py`` fails if an upgrade changes what this relies on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import httpx
from flwr.supercore.retry import RetryInvoker, exponential

from cinesync.settings import get_settings

T = TypeVar("T")
MAX_DELAY_S = 16


def server_error(error: Exception) -> bool:
    """A failure of the SuperLink (5xx) that the next try may not meet."""
    return isinstance(error, httpx.HTTPStatusError) and error.response.status_code >= 500


def push_retrier(attempts: int) -> RetryInvoker:
    """Flower's RetryInvoker for ``attempts`` tries of a call that failed with a server error."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    return RetryInvoker(lambda: exponential(max_delay=MAX_DELAY_S), httpx.HTTPStatusError, max_tries=attempts,
                        max_time=None, should_giveup=lambda error: not server_error(error))


def retried(call: Callable[..., T], retrier: RetryInvoker) -> Callable[..., T]:
    def again(*args: Any) -> T:
        return retrier.invoke(call, *args)  # type: ignore[no-any-return]

    return again


def retrying_pushes(connect: Callable[..., AbstractContextManager[tuple[Any, ...]]], attempts: int
                    ) -> Callable[..., AbstractContextManager[tuple[Any, ...]]]:
    """``connect`` (Flower's ``http_request_response``) whose ``send`` and ``push_object`` retry."""
    retrier = push_retrier(attempts)

    @contextmanager
    def connection(*args: Any, **kwargs: Any) -> Iterator[tuple[Any, ...]]:
        with connect(*args, **kwargs) as (node_id, receive, send, get_run, get_fab, pull_object, push_object,
                                          confirm_message_received):
            yield (node_id, receive, retried(send, retrier), get_run, get_fab, pull_object,
                   retried(push_object, retrier), confirm_message_received)

    return connection


def main() -> None:
    """``flower-supernode`` with this process's arguments."""
    import flwr.supernode.start_client_internal as internal
    from flwr.supernode.cli import flower_supernode

    retrying = retrying_pushes(internal.http_request_response, get_settings().supernode_push_attempts)
    internal.http_request_response = retrying  # type: ignore[assignment]
    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
