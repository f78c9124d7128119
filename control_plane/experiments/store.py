"""Experiments, exposures and feedback in Redis, so every replica routes and counts the same way.

Durability: exposures and feedback are appended to Redis streams (the log) and folded into
per-variant counters in the same pipelined round trip. The Redis the launcher starts runs with
append-only persistence (fsync every second), so a restarted Redis keeps them; the launcher warns
when it finds a Redis without it. While Redis is unreachable the control plane keeps unsent
records in a bounded in-memory queue and sends them when Redis answers again.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from control_plane.experiments.definition import Experiment

log = logging.getLogger(__name__)
EXPOSURE_TTL_S = 30 * 24 * 3600  # feedback can refer to an answer for this long
MAX_PENDING = 100_000
EVENTS = ("click", "watch")  # feedback kinds whose rates a report gives
FieldT = bytes | bytearray | memoryview | str | int | float  # what redis-py accepts as a stream field


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Exposure:
    """One answer: who got it, under which experiment and variant, from which versions."""

    request_id: str
    user_id: str
    experiment: str
    variant: str
    retrieval_version: int
    ranking_version: int
    time: float


@dataclass(frozen=True)
class Feedback:
    request_id: str
    user_id: str
    item_id: str
    kind: str  # impression | click | watch | rating
    value: float
    time: float


@dataclass(frozen=True)
class VariantCounts:
    exposures: int
    users: int
    events: dict[str, int]


class ExperimentStore:
    """Reads and writes one installation's experiments, exposures and feedback (keys under ``namespace``)."""

    def __init__(self, url: str, namespace: str) -> None:
        self.redis = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.ns = namespace
        self.pending: deque[Exposure | Feedback] = deque(maxlen=MAX_PENDING)

    def _key(self, *parts: str) -> str:
        return ":".join((self.ns, *parts))

    async def save(self, experiment: Experiment) -> None:
        await self.redis.hset(self._key("experiments"), experiment.name, json.dumps(experiment.to_json()))

    async def get(self, name: str) -> Experiment | None:
        raw = await self.redis.hget(self._key("experiments"), name)
        return Experiment.from_json(json.loads(raw)) if raw else None

    async def all(self) -> list[Experiment]:
        raw = await self.redis.hgetall(self._key("experiments"))
        return sorted((Experiment.from_json(json.loads(v)) for v in raw.values()), key=lambda e: e.name)

    async def _write(self, record: Exposure | Feedback) -> bool:
        """Append ``record`` and update the counters; False for feedback on an unknown request."""
        fields: dict[FieldT, FieldT] = {k: str(v) for k, v in asdict(record).items()}
        if isinstance(record, Exposure):
            pipe = self.redis.pipeline(transaction=False)
            pipe.xadd(self._key("exposures"), fields)
            pipe.hset(self._key("exposure", record.request_id), mapping=fields)
            pipe.expire(self._key("exposure", record.request_id), EXPOSURE_TTL_S)
            if record.experiment:
                pipe.incr(self._key("exp", record.experiment, record.variant, "exposures"))
                pipe.pfadd(self._key("exp", record.experiment, record.variant, "users"), record.user_id)
            await pipe.execute()
            return True
        exposure = await self.redis.hgetall(self._key("exposure", record.request_id))
        matched = bool(exposure)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(self._key("feedback"), {**fields, "matched": str(int(matched))})
        if not matched:
            pipe.incr(self._key("unmatched"))
        elif record.kind in EVENTS and exposure.get(b"experiment"):
            experiment, variant = _text(exposure[b"experiment"]), _text(exposure[b"variant"])
            pipe.sadd(self._key("exp", experiment, variant, record.kind), record.request_id)
        await pipe.execute()
        return matched

    async def record(self, record: Exposure | Feedback) -> bool | None:
        """Write ``record``, first whatever waits from an outage; None when Redis is away (kept for later)."""
        self.pending.append(record)
        return await self.flush()

    async def flush(self) -> bool | None:
        """Send the waiting records in order; the last one's result, None if Redis is unreachable."""
        result: bool | None = None
        while self.pending:
            try:
                result = await self._write(self.pending[0])
            except (RedisError, OSError) as error:
                log.warning("Redis unreachable, %d records wait: %s", len(self.pending), error)
                return None
            self.pending.popleft()
        return result

    async def counts(self, experiment: str, variant: str) -> VariantCounts:
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self._key("exp", experiment, variant, "exposures"))
        pipe.pfcount(self._key("exp", experiment, variant, "users"))
        for event in EVENTS:
            pipe.scard(self._key("exp", experiment, variant, event))
        exposures, users, *events = await pipe.execute()
        return VariantCounts(int(exposures or 0), int(users), dict(zip(EVENTS, map(int, events), strict=True)))

    async def unmatched(self) -> int:
        return int(await self.redis.get(self._key("unmatched")) or 0)

    async def close(self) -> None:
        await self.redis.aclose()


def now() -> float:
    return time.time()
