"""Encodes a request's history and scores its candidates with a serving version's ensembles in
Triton (two calls at most: encode, then rank), within a time limit."""

from __future__ import annotations

from collections.abc import Sequence

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

    @staticmethod
    def ensembles(version: int, *, encodes: bool) -> list[str]:
        """Version ``version``'s ensembles: the encoding one (where it has encoders), then the ranking one."""
        return [*([triton.encoder_ensemble(version)] if encodes else []), triton.ensemble_model(version)]

    async def load(self, version: int, *, encodes: bool, timeout: float = 60.0) -> None:
        """Load version ``version``'s ensembles and the step model versions they pin."""
        for model in self.ensembles(version, encodes=encodes):
            try:
                await self.client.load_model(model, client_timeout=timeout)
            except InferenceServerException as error:
                raise RankingUnavailable(f"loading {model}: {error.message()}") from error

    async def unload(self, version: int, *, encodes: bool, timeout: float = 30.0) -> None:
        """Unload version ``version``'s ensembles (their pinned steps stay while other versions use them)."""
        for model in self.ensembles(version, encodes=encodes):
            try:
                await self.client.unload_model(model, client_timeout=timeout)
            except InferenceServerException:
                pass  # Triton away or the model already gone: nothing to free

    async def ready(self, version: int, *, encodes: bool, timeout: float = 1.0) -> bool:
        """Whether version ``version``'s ensembles are loaded and ready (False when Triton is away)."""
        try:
            for model in self.ensembles(version, encodes=encodes):
                if not await self.client.is_model_ready(model, client_timeout=timeout):
                    return False
        except InferenceServerException:
            return False
        return True

    async def _infer(
        self, model: str, inputs: dict[str, NDArray[np.generic]], outputs: list[str], timeout: float
    ) -> dict[str, NDArray[np.float32]]:
        """One request (a batch of one) to ``model``; each output without its batch axis."""
        feeds = []
        for name, value in inputs.items():
            array = value[None]
            feed = InferInput(name, list(array.shape), "INT64" if array.dtype == np.int64 else "FP32")
            feed.set_data_from_numpy(array)
            feeds.append(feed)
        try:
            with TRITON_LATENCY.time():
                result = await self.client.infer(model, feeds, outputs=[InferRequestedOutput(o) for o in outputs],
                                                 client_timeout=timeout)
        except InferenceServerException as error:
            raise RankingUnavailable(error.message() or str(error)) from error
        found = {}
        for name in outputs:
            value = result.as_numpy(name)
            if value is None:
                raise RankingUnavailable(f"{model} returned no {name}")
            found[name] = np.asarray(value, dtype=np.float32)[0]
        return found

    async def encode(
        self, history: NDArray[np.int64], members: Sequence[str], *, version: int, timeout: float
    ) -> dict[str, NDArray[np.float32]]:
        """Each member's user vector from ``history`` (``[L]``, item index + 1, 0 pads on the left)."""
        vectors = await self._infer(triton.encoder_ensemble(version), {triton.HISTORY: history},
                                    [triton.user_vector(m) for m in members], timeout)
        return {m: vectors[triton.user_vector(m)] for m in members}

    async def rank(
        self, history: NDArray[np.int64], items: NDArray[np.int64], vectors: dict[str, NDArray[np.float32]], *,
        version: int, timeout: float,
    ) -> NDArray[np.float32]:
        """Version ``version``'s scores of candidates ``items`` (item index + 1, 0 pads), in their order,
        for the user whose history (``[L]``) and encoded vectors (what the ensemble reads) are given."""
        inputs: dict[str, NDArray[np.generic]] = {triton.HISTORY: history, triton.ITEMS: items}
        inputs.update({triton.user_vector(member): vector for member, vector in vectors.items()})
        return (await self._infer(triton.ensemble_model(version), inputs, [triton.SCORE], timeout))[triton.SCORE]

    async def close(self) -> None:
        await self.client.close()
