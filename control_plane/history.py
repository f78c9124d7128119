"""Each user's recent viewing history in Redis, bounded in length and in time per call. A watch that
comes while Redis is away waits in order (in memory, mirrored to a spool file in the home) and is
appended once Redis answers again, before any later watch."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from control_plane.spool import Spool

T = TypeVar("T")
log = logging.getLogger(__name__)
SPOOL_NAME = "history-spool"
MAX_WAITING = 100_000

# Pushes ARGV[first..] onto KEYS[1] in chunks: Lua's unpack() limits how many values it returns at once.
PUSH_FROM = """
local function push_from(first)
  for i = first, #ARGV, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
end
"""

# Creates the list only where none exists, so a seed never overwrites live history.
SEED_IF_ABSENT = PUSH_FROM + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
push_from(1)
return 1
"""

# ARGV: the item, keep, then the published history to start from where the list does not exist yet.
APPEND = PUSH_FROM + """
if redis.call('EXISTS', KEYS[1]) == 0 then push_from(3) end
redis.call('LREM', KEYS[1], 0, ARGV[1])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
return 1
"""


class HistoryUnavailable(RuntimeError):
    """Redis could not be read or written in time, or refused the command (see ``refused``)."""


def refused(error: HistoryUnavailable) -> bool:
    """Whether Redis answered with a command error (WRONGTYPE, OOM, MISCONF...): not an outage, so
    trying the same write again later does not help."""
    return isinstance(error.__cause__, ResponseError)


@dataclass
class Watch:
    """A watch the live history has not taken yet: Redis was away when it came."""

    user_id: str
    key: str  # the user's history key (the version's history scope)
    item_id: str
    published: list[str] = field(default_factory=list)  # the user's published history, for a first watch


class HistoryStore:
    """Each user's recent history as a Redis list of item ids, oldest first, at most ``keep`` long."""

    def __init__(
        self, url: str, namespace: str, *, keep: int = 1000, timeout_s: float = 0.1, retry_after_s: float = 1.0,
        seed_timeout_s: float = 30.0, spool_dir: Path | None = None,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        self.ns = namespace
        self.keep = keep
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        # No retries of redis-py's own: a retry would spend the caller's time budget; the breaker retries.
        self.redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True,
            retry=Retry(NoBackoff(), 0),
        )
        # Seeding sends thousands of lists per round trip: its own connection, with a bulk-sized timeout.
        self.seed_timeout_s = seed_timeout_s
        self.bulk = aioredis.Redis.from_url(
            url, socket_timeout=seed_timeout_s, socket_connect_timeout=timeout_s, decode_responses=True,
            retry=Retry(NoBackoff(), 0),
        )
        self.waiting: deque[Watch] = deque()  # watches Redis has not taken yet, oldest first
        self._replaying = asyncio.Lock()
        self.spool = Spool.claim(spool_dir, SPOOL_NAME, {"Watch": Watch}) if spool_dir is not None else None
        if self.spool is not None:
            self.waiting.extend(self.spool.load(MAX_WAITING))  # type: ignore[arg-type]
            if self.waiting:
                log.warning("%d watches of an earlier run read from %s; added when Redis answers",
                            len(self.waiting), self.spool.path)
        self._seed_script = self.bulk.register_script(SEED_IF_ABSENT)
        self._append_script = self.redis.register_script(APPEND)
        self._down_until = 0.0  # monotonic time before which calls fail at once (the breaker is open)

    def key(self, user_id: str) -> str:
        return f"{self.ns}:history:{user_id}"

    def _marker(self, source: str) -> str:
        return f"{self.ns}:history-seeded:{source}"

    async def _call(self, what: str, make: Callable[[], Awaitable[T]], *, timeout: float | None = None) -> T:
        """Run one round trip within ``timeout`` (``timeout_s``); fail at once while the breaker is open."""
        if time.monotonic() < self._down_until:
            raise HistoryUnavailable(f"history {what}: Redis unavailable, next try in under {self.retry_after_s:g} s")
        try:
            result = await asyncio.wait_for(make(), timeout=timeout or self.timeout_s)
        except (RedisError, OSError, TimeoutError) as error:  # asyncio's TimeoutError is this one
            self._down_until = time.monotonic() + self.retry_after_s
            raise HistoryUnavailable(f"history {what}: Redis unavailable ({type(error).__name__})") from error
        self._down_until = 0.0
        return result

    async def read(self, user_id: str) -> list[str] | None:
        """The user's item ids, oldest first; None when Redis holds no list for the user."""

        async def lrange() -> list[str]:
            return cast(list[str], await self.redis.lrange(self.key(user_id), 0, -1))  # decoded: str

        items = await self._call("read", lrange)
        return items or None  # Redis deletes a list that becomes empty: empty means no list

    async def append(self, user_id: str, item_id: str, *, published: Sequence[str] = ()) -> None:
        """Record that the user watched ``item_id``: moved to the end if already there, oldest dropped.
        A user without a list yet (a watch before seeding reached them) starts from ``published``,
        their history as published, so the watch never replaces it."""

        async def script() -> Any:
            args: list[str | int] = [item_id, self.keep, *published[-self.keep :]]
            return await self._append_script(keys=[self.key(user_id)], args=args)

        await self._call("append", script)

    async def _send(self, watch: Watch) -> str:
        """Append ``watch``: "stored", "refused" (a command error, logged: trying again does not help)
        or "away" (Redis unreachable)."""
        try:
            await self.append(watch.key, watch.item_id, published=watch.published)
            return "stored"
        except HistoryUnavailable as error:
            if not refused(error):
                return "away"
            log.error("Redis refused the watch of %s by %s, dropped: %s", watch.item_id, watch.user_id,
                      error.__cause__)
            return "refused"

    async def record(self, watch: Watch) -> str:
        """Append ``watch`` now ("stored"), or queue it behind those waiting, in order, when Redis is
        away or others wait still ("queued"); "dropped" when Redis refused it or MAX_WAITING already wait."""
        watch.published = watch.published[-self.keep:]
        if not self.waiting:
            sent = await self._send(watch)
            if sent != "away":
                return "stored" if sent == "stored" else "dropped"
            log.warning("watch of %s by %s waits for Redis", watch.item_id, watch.user_id)
        if len(self.waiting) >= MAX_WAITING:
            log.error("watch of %s by %s dropped: %d watches already wait for Redis", watch.item_id, watch.user_id,
                      MAX_WAITING)
            return "dropped"
        self.waiting.append(watch)
        if self.spool is not None:
            self.spool.append(watch)
        return "queued"

    async def replay(self) -> list[str]:
        """Append the waiting watches in order, stopping at the first that Redis does not take while it
        is away (one it refuses is dropped); the users whose live history changed, in that order. A
        watch leaves the queue only after Redis took or refused it (appending one twice leaves the list
        as once: it moves the item to the end)."""
        replayed: list[str] = []
        taken = 0
        async with self._replaying:
            while self.waiting:
                sent = await self._send(self.waiting[0])
                if sent == "away":
                    break
                watch = self.waiting.popleft()
                taken += 1
                if sent == "stored":
                    replayed.append(watch.user_id)
            if taken:
                log.info("%d watches that waited for Redis added to the live history (%d wait still)",
                         len(replayed), len(self.waiting))
                if self.spool is not None:
                    self.spool.rewrite(self.waiting)
        return replayed

    async def seed(self, histories: Iterable[tuple[str, Sequence[str]]], *, source: str, batch: int = 100,
                   pause: float = 1.0) -> int:
        """Create the lists of users who have none, once per ``source``; how many were created.
        ``histories`` (user, items) is read ``batch`` users at a time, each batch one pipeline: the
        event loop is never held longer than one batch takes to encode, whatever the user count; after
        each batch it waits ``pause`` times as long as the batch took, so that requests served
        meanwhile (they read the published history of a user not seeded yet) keep at least half the time."""
        marker = self._marker(source)

        async def seeded() -> int:
            return int(await self.redis.exists(marker))

        if await self._call("seed", seeded):
            return 0
        pending = iter(histories)
        created = 0
        while taken := list(itertools.islice(pending, batch)):
            started = time.monotonic()
            chunk = [(user, items[-self.keep:]) for user, items in taken if items]

            async def send(chunk: list[tuple[str, Sequence[str]]] = chunk) -> list[Any]:
                pipe = self.bulk.pipeline(transaction=False)
                for user, items in chunk:
                    await self._seed_script(keys=[self.key(user)], args=list(items), client=pipe)
                return await pipe.execute()

            created += sum(int(n) for n in await self._call("seed", send, timeout=self.seed_timeout_s))
            await asyncio.sleep(pause * (time.monotonic() - started))

        async def mark() -> None:
            await self.redis.set(marker, "1")

        await self._call("seed", mark)
        return created

    async def close(self) -> None:
        await self.redis.aclose()
        await self.bulk.aclose()
        if self.spool is not None:
            self.spool.release()  # what still waits stays in the file for the next control plane
