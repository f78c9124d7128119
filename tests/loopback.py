"""Bounded concurrent Recommend traffic on loopback for the tests that change the stack under load."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Self

import grpc

from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from launcher.client import channel as channel_to

CLIENTS = 4
MAX_SECONDS = 90.0


class Load:
    """CLIENTS threads calling Recommend until stopped (or MAX_SECONDS pass), each ``pause``
    seconds after its previous answer (0: back to back)."""

    def __init__(self, address: str, users: list[str], *, pause: float = 0.0) -> None:
        self.address, self.users, self.pause = address, users, pause
        self.answers: list[tuple[float, str, int]] = []  # (time, model_version, ranked_by)
        self.degraded: list[tuple[float, str]] = []  # (time, degraded_reason) of the degraded answers
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(CLIENTS)]

    def _run(self, n: int) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        with channel_to(self.address) as channel:
            stub = pb_grpc.RecommendationServiceStub(channel)
            count = 0
            while not self.stop.is_set() and time.monotonic() < deadline:
                user = self.users[(n * 7919 + count) % len(self.users)]
                count += 1
                try:
                    response = stub.Recommend(pb.RecommendRequest(user_id=user, k=10), timeout=5)
                    self.answers.append((time.monotonic(), response.model_version, response.ranked_by))
                    if response.degraded:
                        self.degraded.append((self.answers[-1][0], response.degraded_reason))
                except grpc.RpcError as error:
                    self.failures.append(f"{error.code().name}: {error.details()}")
                if self.pause:
                    self.stop.wait(self.pause)

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def first(self, accept: Callable[[str, int], bool], *, timeout: float = 30.0) -> float:
        """The time of the first answer from now on whose (model_version, ranked_by) ``accept`` takes."""
        since = time.monotonic()
        while time.monotonic() < since + timeout:
            seen = [t for t, v, r in list(self.answers) if t >= since and accept(v, r)]
            if seen:
                return seen[0]
            time.sleep(0.05)
        raise TimeoutError(f"no such answer within {timeout} s")

    def wait_for(self, version: str, timeout: float = 30.0) -> float:
        """The time the first answer from ``version`` arrived after now."""
        return self.first(lambda v, _: v == version, timeout=timeout)
