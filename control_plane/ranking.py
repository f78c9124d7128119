"""Encodes a request's history and scores its candidates with a serving version's stage models in
Triton (two calls at most: encode, then rank), within a time limit; loads and unloads the versions'
ensembles, which pin the stage models' versions. A stage model version whose every call times out
for STALL_S (STALL_TIMEOUTS calls at least) while Triton itself is live (its python-backend stub
process died: Triton does not notice, and requests to it hang) is reloaded, which starts a new stub;
a late answer (an overloaded machine) still shows the model alive."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import tritonclient.grpc.aio as triton_aio
from numpy.typing import NDArray
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from cinesync import triton
from control_plane.metrics import MODEL_RELOADS, TRITON_LATENCY

log = logging.getLogger(__name__)
CANCEL_AFTER_S = 1.0  # beyond a call's own timeout, before a silent Triton's call is cancelled
STALL_S = 3.0  # a model whose calls all time out this long (STALL_TIMEOUTS of them at least), Triton live,
STALL_TIMEOUTS = 3  # is reloaded
RELOAD_EVERY_S = 15.0  # at most this often per model
RELOAD_PARAMETER = "cinesync_reloaded_at"  # set in the configuration a stalled model is reloaded with


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
        self._silent_since: dict[tuple[str, str], tuple[float, int]] = {}  # (model, version) -> first timeout since
        # its last answer, timeouts since
        self._reloaded_at: dict[str, float] = {}
        self._reloads: set[asyncio.Task[None]] = set()

    def _timed_out(self, target: tuple[str, str]) -> None:
        """Note a timeout of ``target`` (model, version); after STALL_TIMEOUTS of them over STALL_S and
        no answer, reload the model (in the background)."""
        now = time.monotonic()
        since, count = self._silent_since.get(target, (now, 0))
        self._silent_since[target] = (since, count + 1)
        model = target[0]
        if (now - since >= STALL_S and count + 1 >= STALL_TIMEOUTS
                and now - self._reloaded_at.get(model, -math.inf) >= RELOAD_EVERY_S):
            self._reloaded_at[model] = now
            task = asyncio.create_task(self._reload(model, now - since))
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

    def _ended(self, target: tuple[str, str], call: asyncio.Future[object]) -> None:
        """A call ended (its outcome retrieved, so an abandoned one's failure logs nothing). A result,
        however late, shows the model alive: an overloaded machine's late answers are not a stalled
        stub's silence. An error says nothing: with a dead stub Triton still answers the requests
        queued behind the hung one, with its queue's timeout."""
        if not call.cancelled() and call.exception() is None:
            self._silent_since.pop(target, None)

    async def _reload(self, model: str, silent_s: float) -> None:
        try:
            if not await self.client.is_server_live(client_timeout=1.0):
                return  # Triton itself is away: the launcher restarts it, which loads everything again
            log.warning("%s has answered nothing for %.1f s while Triton is live (its stub process may be gone): "
                        "reloading it", model, silent_s)
            # Loading a loaded model whose configuration is unchanged keeps its instances (and the dead
            # stub); its configuration with a parameter that names this reload is a change, so Triton
            # starts new instances (new stubs), serves from them, then lets the old ones go.
            config = (await self.client.get_model_config(model, as_json=True, client_timeout=1.0))["config"]
            config.setdefault("parameters", {})[RELOAD_PARAMETER] = {"string_value": f"{time.time():.3f}"}
            await self.client.load_model(model, config=json.dumps(config), client_timeout=60.0)
            MODEL_RELOADS.labels(model).inc()
            log.warning("%s reloaded", model)
        except InferenceServerException as error:
            log.warning("could not reload %s: %s", model, error.message() or error)

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
        self, target: tuple[str, str], inputs: dict[str, NDArray[np.generic]], outputs: list[str], timeout: float
    ) -> dict[str, NDArray[np.float32]]:
        """One request (a batch of one) to ``target`` (model, version); each output without its batch
        axis. Past ``timeout`` the caller is answered RankingUnavailable, but the call is not cancelled:
        Triton drops it from its queue itself once the request's own timeout passes (the stage
        models' queue policy), and a gRPC cancellation racing its answer can crash Triton (issue 7368
        of triton-inference-server/server). Only a Triton silent for CANCEL_AFTER_S more is cancelled."""
        model, version = target
        feeds = []
        for name, value in inputs.items():
            array = value[None]
            feed = InferInput(name, list(array.shape), "INT64" if array.dtype == np.int64 else "FP32")
            feed.set_data_from_numpy(array)
            feeds.append(feed)
        call = asyncio.ensure_future(self.client.infer(
            model, feeds, model_version=version, outputs=[InferRequestedOutput(o) for o in outputs],
            timeout=max(1, int(timeout * 1e6)), client_timeout=timeout + CANCEL_AFTER_S))
        call.add_done_callback(functools.partial(self._ended, target))
        try:
            with TRITON_LATENCY.time():
                result = await asyncio.wait_for(asyncio.shield(call), max(timeout, 0.0))
        except TimeoutError:
            if timeout > 0:  # a call given no time says nothing about the model
                self._timed_out(target)
            raise RankingUnavailable(f"{model} did not answer within {timeout * 1000:.0f} ms") from None
        except InferenceServerException as error:
            raise RankingUnavailable(error.message() or str(error)) from error
        self._silent_since.pop(target, None)
        found = {}
        for name in outputs:
            value = result.as_numpy(name)
            if value is None:
                raise RankingUnavailable(f"{model} returned no {name}")
            found[name] = np.asarray(value, dtype=np.float32)[0]
        return found

    async def encode(
        self, history: NDArray[np.int64], members: Sequence[str], *, target: tuple[str, str], timeout: float
    ) -> dict[str, NDArray[np.float32]]:
        """Each member's user vector from ``history`` (``[L]``, item index + 1, 0 pads on the left), by
        the encoders at ``target`` (model, version: VersionInterface.encoder_target)."""
        vectors = await self._infer(target, {triton.HISTORY: history}, [triton.user_vector(m) for m in members],
                                    timeout)
        return {m: vectors[triton.user_vector(m)] for m in members}

    async def rank(
        self, history: NDArray[np.int64], items: NDArray[np.int64], vectors: dict[str, NDArray[np.float32]], *,
        target: tuple[str, str], timeout: float,
    ) -> NDArray[np.float32]:
        """The scores of candidates ``items`` (item index + 1, 0 pads), in their order, by the ranker at
        ``target`` (VersionInterface.ranker_target), for the user whose history (``[L]``) and encoded
        vectors (what the ranker reads) are given."""
        inputs: dict[str, NDArray[np.generic]] = {triton.HISTORY: history, triton.ITEMS: items}
        inputs.update({triton.user_vector(member): vector for member, vector in vectors.items()})
        return (await self._infer(target, inputs, [triton.SCORE], timeout))[triton.SCORE]

    async def close(self) -> None:
        await self.client.close()
