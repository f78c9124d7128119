"""A local file that mirrors the records waiting for Redis (exposures and feedback from the moment
they queue, live-history watches during an outage), so a control plane that dies before sending them
loses none: the next one to start reads them back and sends them.

Replicas may share a home: each holds one spool slot (``<name>-<slot>.jsonl``) under a file lock
for its lifetime, and a starting replica takes the first free slot, with what a dead replica left.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)
SLOTS = 64


class Record(Protocol):
    """A dataclass record (an exposure, a feedback, a watch) the spool can write by its fields."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


class Spool:
    """One slot's file: records appended as they queue, rewritten whole when the queue changed
    otherwise, removed once everything is sent. Write errors are logged once and switch it off."""

    def __init__(self, path: Path, lock: FileLock, kinds: dict[str, type[Record]]) -> None:
        self.path = path
        self._lock = lock  # held while this process lives; the OS frees it when the process dies
        self._kinds = kinds
        self.broken = False

    @classmethod
    def claim(cls, folder: Path, name: str, kinds: dict[str, type[Record]]) -> Spool | None:
        """The first slot under ``folder`` no other live process holds; None (logged) if none is free."""
        folder.mkdir(parents=True, exist_ok=True)
        for slot in range(SLOTS):
            lock = FileLock(folder / f"{name}-{slot}.lock")
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            return cls(folder / f"{name}-{slot}.jsonl", lock, kinds)
        log.error("all %d spool slots under %s are taken: queued records live in memory only", SLOTS, folder)
        return None

    def load(self, limit: int) -> list[Record]:
        """The records a dead process left, oldest first (at most ``limit``: the newest beyond it are
        dropped, logged); damaged lines (a write cut short) are skipped and the file is rewritten clean."""
        if not self.path.is_file():
            return []
        records: list[Record] = []
        for line in self.path.read_text().splitlines():
            try:
                fields = json.loads(line)
                records.append(self._kinds[fields.pop("type")](**fields))
            except (ValueError, KeyError, TypeError, AttributeError):
                log.warning("skipped a damaged line of %s", self.path)
        if len(records) > limit:
            log.error("%s holds %d records; the newest %d are dropped", self.path, len(records), len(records) - limit)
            records = records[:limit]
        self.rewrite(records)
        return records

    def append(self, record: Record) -> None:
        self._write([record], mode="a")

    def rewrite(self, records: Iterable[Record]) -> None:
        """The file holds exactly ``records`` (written beside it and renamed: never half of them);
        no file when there are none."""
        records = list(records)
        if not records:
            self.clear()
            return
        scratch = self.path.with_suffix(".tmp")
        if self._write(records, mode="w", path=scratch):
            os.replace(scratch, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        """Give the slot back (a clean stop); what the file holds waits for the next claimant."""
        self._lock.release()

    def _write(self, records: list[Record], *, mode: Literal["a", "w"], path: Path | None = None) -> bool:
        if self.broken:
            return False
        try:
            with (path or self.path).open(mode) as spool:
                spool.writelines(json.dumps({"type": type(r).__name__, **asdict(r)}) + "\n" for r in records)
            return True
        except OSError as error:
            self.broken = True
            log.error("could not write the spool %s; queued records now live in memory only: %s", self.path, error)
            return False
