"""Reply screening on Flower's own Message objects: accepted replies, and each kind of refusal
counted under its reason, never aggregated."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, Error, Message, Metadata, MetricRecord, RecordDict

from federated.replies import screen

GLOBAL = {"item.w": np.zeros((4, 3), np.float32), "user.b": np.zeros(3, np.float32)}


def metadata() -> Metadata:
    """A node's reply to a training message of run 1."""
    return Metadata(run_id=1, message_id="", src_node_id=7, dst_node_id=0, reply_to_message_id="m", group_id="",
                    created_at=0.0, ttl=60.0, message_type="train")


def reply(arrays: dict[str, np.ndarray], examples: float = 10) -> Message:
    # Replies as a SuperNode's arrive: with their metadata (Flower's typed overloads build outgoing ones).
    return Message(content=RecordDict({  # type: ignore[call-overload]
        "arrays": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()}),
        "metrics": MetricRecord({"num-examples": examples})}), metadata=metadata())


def test_replies_are_accepted_or_refused_with_their_reason() -> None:
    good = {k: v + 0.1 for k, v in GLOBAL.items()}
    nan = {**good, "user.b": np.array([np.nan, 0, 0], np.float32)}
    wrong_dtype = {**good, "user.b": good["user.b"].astype(np.float64)}
    failed = Message(error=Error(code=1, reason="boom"), metadata=metadata())  # type: ignore[call-overload]
    replies = [reply(good), reply({**good, "item.w": good["item.w"][:-1]}), reply(nan), reply(wrong_dtype),
               reply({"item.w": good["item.w"]}), reply({k: v + 100 for k, v in GLOBAL.items()}),
               reply(good, examples=0), failed]
    screened = screen(replies, GLOBAL, max_update_norm=10.0)
    assert screened.accepted == [replies[0]]
    assert dict(screened.rejected) == {"shape": 1, "not finite": 1, "dtype": 1, "array names": 1, "update norm": 1,
                                       "example count": 1}
    assert screened.failed == 1
    assert np.allclose(screened.update_norms, [np.sqrt(15 * 0.1 ** 2)])
