"""Work that runs after the answer is sent (WeChat wants its reply within 5 s)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 10  # seconds running work may take to finish when the service stops


class Background:
    """Keeps a reference to every task (so none is garbage-collected mid-run) and logs failures."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, name: str, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            # With its traceback: nobody awaits this task, so the log is the only trace.
            log.error("background %s failed", task.get_name(), exc_info=exc)

    async def drain(self, grace: float) -> None:
        """Wait for running work (tests use it to see its effects); cancel what overruns."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
