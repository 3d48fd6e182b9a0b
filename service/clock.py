"""Time as a dependency, so tests move it instead of sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to; starts at the real time so TTL indexes agree."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def utc(ts: float) -> datetime:
    """A BSON-friendly aware datetime (MongoDB keeps milliseconds)."""
    return datetime.fromtimestamp(ts, tz=UTC)
