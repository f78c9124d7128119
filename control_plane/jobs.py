"""The admin API's record of the training jobs it started (Redis, newest first)."""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis

MAX_JOBS = 50


class JobRegistry:
    """Job ids with their chain's task ids and request, under ``namespace``."""

    def __init__(self, redis: aioredis.Redis, namespace: str) -> None:
        self.redis = redis
        self.key = f"{namespace}:jobs"

    async def add(self, job_id: str, task_ids: list[str], request: dict[str, Any]) -> None:
        entry = json.dumps({"job_id": job_id, "task_ids": task_ids, "request": request, "created": time.time()})
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(self.key, entry)
        pipe.ltrim(self.key, 0, MAX_JOBS - 1)
        await pipe.execute()

    async def recent(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in await self.redis.lrange(self.key, 0, MAX_JOBS - 1)]
