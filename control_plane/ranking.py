"""Scores (user, candidate) pairs with a serving version's ensemble in Triton, within a time limit."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc.aio as triton_aio
from numpy.typing import NDArray
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from cinesync import triton
from control_plane.metrics import TRITON_LATENCY


class RankingUnavailable(RuntimeError):
    """Triton could not rank in time: unreachable, too slow, or the model is not loaded."""


# After Triton restarts, gRPC would wait up to 120 s (growing by 1.6x from 1 s) before it dials
# again; capped at half a second, ranking resumes as soon as Triton listens.
CHANNEL_ARGS = [
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


class TritonRanker:
    """A Triton client that loads, checks, unloads and queries the versions' ranking ensembles."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = triton_aio.InferenceServerClient(url, channel_args=CHANNEL_ARGS)

    async def load(self, version: int, timeout: float = 60.0) -> None:
        """Load version ``version``'s ensemble and the step model versions it pins."""
        model = triton.ensemble_model(version)
        try:
            await self.client.load_model(model, client_timeout=timeout)
        except InferenceServerException as error:
            raise RankingUnavailable(f"loading {model}: {error.message()}") from error

    async def unload(self, version: int, timeout: float = 30.0) -> None:
        """Unload version ``version``'s ensemble (its pinned steps stay while other versions use them)."""
        try:
            await self.client.unload_model(triton.ensemble_model(version), client_timeout=timeout)
        except InferenceServerException:
            pass  # Triton away or the model already gone: nothing to free

    async def ready(self, version: int, timeout: float = 1.0) -> bool:
        """Whether version ``version``'s ensemble is loaded and ready (False when Triton is away)."""
        try:
            return bool(await self.client.is_model_ready(triton.ensemble_model(version), client_timeout=timeout))
        except InferenceServerException:
            return False

    async def rank(
        self, user: int, items: NDArray[np.int64], *, version: int, timeout: float
    ) -> NDArray[np.float32]:
        """Version ``version``'s ensemble scores for ``items`` of ``user``, in the order of ``items``."""
        user_input = InferInput(triton.USER_IDX, [len(items), 1], "INT64")
        user_input.set_data_from_numpy(np.full((len(items), 1), user, dtype=np.int64))
        item_input = InferInput(triton.ITEM_IDX, [len(items), 1], "INT64")
        item_input.set_data_from_numpy(items.astype(np.int64).reshape(-1, 1))
        try:
            with TRITON_LATENCY.time():
                result = await self.client.infer(
                    triton.ensemble_model(version),
                    [user_input, item_input],
                    outputs=[InferRequestedOutput(triton.SCORE)],
                    client_timeout=timeout,
                )
        except InferenceServerException as error:
            raise RankingUnavailable(error.message() or str(error)) from error
        scores = result.as_numpy(triton.SCORE)
        if scores is None:
            raise RankingUnavailable(f"ensemble returned no {triton.SCORE}")
        return np.asarray(scores, dtype=np.float32).reshape(-1)

    async def close(self) -> None:
        await self.client.close()
