"""Experiments, exposures and feedback in Redis, so every replica routes and counts the same way.

Durability: exposures and feedback are appended to Redis streams (the log) and folded into
per-variant counters, batched: answers queue their exposures and a background task writes what
queued in one pipelined round trip every 20 ms (and on shutdown). The Redis the launcher starts runs
with append-only persistence (fsync every second), so a restarted Redis keeps them; the launcher
warns when it finds a Redis without it. While Redis is unreachable the queue (bounded) holds the
records and the watcher sends them when Redis answers again. Every queued record is also appended
to a spool file in the home (control_plane/spool.py; one write, no fsync: the OS keeps it when the
process dies), cleared whenever the queue empties; the next control plane to start reads it back, so
a killed control plane loses no answered exposure, Redis up or away. Replayed records are sent at least once: the
per-arm figures are kept per user and count a request id once (a record sent twice counts once);
the streams and the unmatched-feedback counter may then hold it twice. A record Redis refuses (not an
outage: a command error) is logged and dropped, so it never blocks the ones behind it.

Per arm, a report reads sums, not users (control_plane/experiments/statistics.py): two Lua scripts
fold each new exposure and each new click or watch into the arm's per-user counts (one hash) and the
sums over users of the counts, their squares and cross products (another hash), atomically and once
per request id. A user's covariate, their watches in the experiment's window before their first
exposure, is read then from the watch times kept per user (a sorted set, trimmed to the longest
window).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from control_plane.experiments.definition import (
    DEFAULT_COVARIATE_WINDOW_DAYS,
    MAX_COVARIATE_WINDOW_DAYS,
    Experiment,
)
from control_plane.experiments.statistics import ArmSums
from control_plane.spool import Record, Spool

log = logging.getLogger(__name__)
EXPOSURE_TTL_S = 30 * 24 * 3600  # feedback can refer to an answer for this long
MAX_PENDING = 100_000
MAX_BATCH = 500
BATCH_DELAY_S = 0.02
EVENTS = {"click": "c", "watch": "d"}  # feedback kinds a report counts, and their letters in the sums
WATCH_TIMES_TTL_S = int(MAX_COVARIATE_WINDOW_DAYS * 24 * 3600)
MAX_WATCH_TIMES = 10_000  # per user: a covariate counts at most this many watches
SPOOL_NAME = "exposure-spool"
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)  # an outage, not a refused command
FieldT = bytes | bytearray | memoryview | str | int | float  # what redis-py accepts as a stream field

# A new exposure (once per request id) in an arm's per-user counts ('<user>|m', '|c', '|d', '|x') and sums.
# KEYS: the arm's request ids, its per-user counts, its sums, the user's watch times.
# ARGV: request id, user id, exposure time, covariate window (s).
EXPOSE = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
local user = ARGV[2]
local m = redis.call('HINCRBY', KEYS[2], user .. '|m', 1)
local x
if m == 1 then
  local at = tonumber(ARGV[3])
  x = redis.call('ZCOUNT', KEYS[4], at - tonumber(ARGV[4]), '(' .. ARGV[3])
  redis.call('HSET', KEYS[2], user .. '|x', x)
  redis.call('HINCRBY', KEYS[3], 'n', 1)
  redis.call('HINCRBY', KEYS[3], 'x', x)
  redis.call('HINCRBY', KEYS[3], 'xx', x * x)
else
  x = tonumber(redis.call('HGET', KEYS[2], user .. '|x'))
end
local c = tonumber(redis.call('HGET', KEYS[2], user .. '|c') or 0)
local d = tonumber(redis.call('HGET', KEYS[2], user .. '|d') or 0)
redis.call('HINCRBY', KEYS[3], 'm', 1)
redis.call('HINCRBY', KEYS[3], 'mm', 2 * m - 1)
redis.call('HINCRBY', KEYS[3], 'mc', c)
redis.call('HINCRBY', KEYS[3], 'md', d)
redis.call('HINCRBY', KEYS[3], 'xm', x)
return 1
"""

# A new click or watch (once per request id) of an exposed user. KEYS: the arm's request ids with
# this event, its per-user counts, its sums. ARGV: request id, user id, the event's letter (c or d).
EVENT = """
local user, e = ARGV[2], ARGV[3]
local m = tonumber(redis.call('HGET', KEYS[2], user .. '|m') or 0)
if m == 0 or redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
local x = tonumber(redis.call('HGET', KEYS[2], user .. '|x') or 0)
local v = redis.call('HINCRBY', KEYS[2], user .. '|' .. e, 1)
redis.call('HINCRBY', KEYS[3], e, 1)
redis.call('HINCRBY', KEYS[3], e .. e, 2 * v - 1)
redis.call('HINCRBY', KEYS[3], 'm' .. e, m)
redis.call('HINCRBY', KEYS[3], 'x' .. e, x)
if e == 'd' and v == 1 then
  redis.call('HINCRBY', KEYS[3], 'w', 1)
  redis.call('HINCRBY', KEYS[3], 'xw', x)
end
return 1
"""


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
    covariate_window_s: float = DEFAULT_COVARIATE_WINDOW_DAYS * 24 * 3600


@dataclass(frozen=True)
class FeedbackOutcome:
    """Whether a feedback's answer was known (None: Redis away, the record waits in the queue) and,
    when it was, that answer's experiment and variant (empty outside one) and serving version."""

    matched: bool | None
    experiment: str = ""
    variant: str = ""
    version: int = 0


WAITING = FeedbackOutcome(None)


@dataclass(frozen=True)
class Feedback:
    request_id: str
    user_id: str
    item_id: str
    kind: str  # impression | click | watch | rating
    value: float
    time: float


class ExperimentStore:
    """Reads and writes one installation's experiments, exposures and feedback (keys under ``namespace``)."""

    def __init__(self, url: str, namespace: str, *, spool_dir: Path | None = None) -> None:
        self.redis = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._expose_script = self.redis.register_script(EXPOSE)
        self._event_script = self.redis.register_script(EVENT)
        self.ns = namespace
        self.pending: deque[Exposure | Feedback] = deque()
        self.dropped = 0  # records refused: MAX_PENDING already waiting, or Redis refused them (logged)
        self.away = False  # Redis unreachable: records only queue; the watcher's flush tries again
        self._flushing = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        kinds: dict[str, type[Record]] = {"Exposure": Exposure, "Feedback": Feedback}
        self.spool = Spool.claim(spool_dir, SPOOL_NAME, kinds) if spool_dir is not None else None
        self._mirrored = True  # the spool file holds exactly the queue (none: an empty queue), no sent record
        if self.spool is not None:
            self.pending.extend(self.spool.load(MAX_PENDING))  # type: ignore[arg-type]
            if self.pending:
                log.warning("%d records of an earlier run read from %s; sent with the next flush",
                            len(self.pending), self.spool.path)

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

    async def _add_exposures(self, pipe: Any, batch: list[Exposure]) -> None:
        for record in batch:
            fields: dict[FieldT, FieldT] = {k: str(v) for k, v in asdict(record).items()}
            pipe.xadd(self._key("exposures"), fields)
            # What feedback needs of its exposure, found by request id: one SET with its expiry.
            pipe.set(self._key("exposed", record.request_id),
                     json.dumps([record.experiment, record.variant, record.user_id, record.retrieval_version]),
                     ex=EXPOSURE_TTL_S)
            if record.experiment:
                arm = (record.experiment, record.variant)
                await self._expose_script(  # queued in the pipeline
                    keys=[self._key("exp", *arm, "exposures"), self._key("exp", *arm, "per-user"),
                          self._key("exp", *arm, "sums"), self._key("watched", record.user_id)],
                    args=[record.request_id, record.user_id, repr(record.time), repr(record.covariate_window_s)],
                    client=pipe)

    async def _write_feedback(self, record: Feedback) -> FeedbackOutcome:
        """Append ``record`` and count it; what its exposure was (matched False when none has its request id)."""
        fields: dict[FieldT, FieldT] = {k: str(v) for k, v in asdict(record).items()}
        exposure = await self.redis.get(self._key("exposed", record.request_id))
        matched = exposure is not None
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(self._key("feedback"), {**fields, "matched": str(int(matched))})
        if record.kind == "watch":  # every watch, matched or not: the covariate counts them
            watched = self._key("watched", record.user_id)
            pipe.zadd(watched, {record.request_id: record.time})
            pipe.zremrangebyrank(watched, 0, -MAX_WATCH_TIMES - 1)
            pipe.expire(watched, WATCH_TIMES_TTL_S)
        # An exposure's experiment, variant, user and version (before 2026-12: only the first two).
        found: list[Any] = [*json.loads(exposure), record.user_id, 0][:4] if exposure else ["", "", "", 0]
        experiment, variant, user, version = str(found[0]), str(found[1]), str(found[2]), int(found[3])
        if not matched:
            pipe.incr(self._key("unmatched"))
        elif record.kind in EVENTS and experiment:
            arm = (experiment, variant)
            await self._event_script(  # queued in the pipeline
                keys=[self._key("exp", *arm, record.kind), self._key("exp", *arm, "per-user"), self._key("exp", *arm, "sums")],
                args=[record.request_id, user, EVENTS[record.kind]], client=pipe)
        await pipe.execute()
        return FeedbackOutcome(matched, experiment, variant, version)

    def _queue(self, record: Exposure | Feedback) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.error("%d records dropped: %d already wait for Redis", self.dropped, MAX_PENDING)
            return
        self.pending.append(record)
        if self.spool is not None:
            # Every queued record, Redis up or away: a kill before the next flush loses none. The file
            # then holds the queue plus what was sent since it was last cleared (at most sent again).
            self.spool.append(record)

    def expose(self, record: Exposure) -> None:
        """Queue an exposure; a background task writes the queue in batches every BATCH_DELAY_S (one
        round trip for many answers), so a request never waits on Redis."""
        self._queue(record)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(BATCH_DELAY_S)
        await self.flush()

    async def feedback(self, record: Feedback) -> FeedbackOutcome:
        """Store ``record`` after every queued exposure (so its own is found); whether its exposure is
        known and what it was (WAITING when Redis is away: then it waits in the queue)."""
        if not self.away:
            await self.flush()
        if self.away or self.pending:
            self._queue(record)
            return WAITING
        try:
            return await self._write_feedback(record)
        except UNREACHABLE as error:
            self._queue(record)
            self._went_away(error)
            return WAITING
        except RedisError:
            self._refused([record])
            return WAITING

    def _refused(self, records: list[Exposure] | list[Feedback]) -> None:
        self.dropped += len(records)
        log.exception("Redis refused %d record(s), dropped (request ids %s)", len(records),
                      ", ".join(r.request_id for r in records[:3]))

    def _went_away(self, error: Exception) -> None:
        """After any failed send: say so once per outage, and make the spool hold the queue again."""
        if not self.away:
            where = f"memory and {self.spool.path}" if self.spool is not None else "memory"
            log.warning("Redis unreachable, records wait in %s: %s", where, error)
        self.away = True
        if self.spool is not None and not self._mirrored:
            self.spool.rewrite(self.pending)
            self._mirrored = True

    async def flush(self) -> None:
        """Send the queued records in order, exposures in batches (one flush at a time, none twice)."""
        async with self._flushing:
            while self.pending:
                head = self.pending[0]
                if isinstance(head, Feedback):
                    try:
                        await self._write_feedback(head)
                    except UNREACHABLE as error:
                        self._went_away(error)
                        return
                    except RedisError:
                        self._refused([head])
                    self.pending.popleft()
                    self._mirrored = False
                    continue
                batch: list[Exposure] = []
                while self.pending and isinstance(self.pending[0], Exposure) and len(batch) < MAX_BATCH:
                    batch.append(self.pending.popleft())  # type: ignore[arg-type]
                self._mirrored = False  # the batch is out of the queue while it is sent
                try:
                    pipe = self.redis.pipeline(transaction=True)  # all of a batch or none of it
                    await self._add_exposures(pipe, batch)
                    await pipe.execute()
                except UNREACHABLE as error:
                    self.pending.extendleft(reversed(batch))  # back in front, in order
                    self._went_away(error)
                    return
                except RedisError:
                    self._refused(batch)
            if self.away:
                log.info("Redis answers again: the waiting records were sent")
            self.away = False
            if self.spool is not None and not self._mirrored:
                self.spool.clear()  # the queue is empty
                self._mirrored = True

    async def sums(self, experiment: str, variant: str) -> ArmSums:
        """The arm's per-user sums (all zero before its first exposure)."""
        found = await self.redis.hgetall(self._key("exp", experiment, variant, "sums"))
        return ArmSums.from_mapping({key.decode() if isinstance(key, bytes) else key: value for key, value in found.items()})

    async def unmatched(self) -> int:
        return int(await self.redis.get(self._key("unmatched")) or 0)

    async def close(self) -> None:
        await self.redis.aclose()
        if self.spool is not None:
            self.spool.release()


def now() -> float:
    return time.time()
