"""The upkeep scheduler: APScheduler jobs that keep each account's tokens fresh.

The jobs are plain coroutines with their dependencies injected, so tests drive them with a
manual clock; this module only puts them on the scheduler.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pymongo.errors import PyMongoError

from service.accounts import DEFAULT_ACCOUNT
from service.config import Settings
from service.errors import UpstreamError
from service.tokens.base import BaseTokenKeeper
from service.tokens.jsapi import TicketKeeper
from service.tokens.web import WebTokenSweeper
from service.wechat.client import (
    WeChatError,
)

log = logging.getLogger(__name__)


async def run_job(name: str, job: Callable[[], Awaitable[Any]]) -> None:
    """A scheduler job never dies of an exception; it logs it and tries next time. WeChat or
    MongoDB being unavailable is one line; anything else is a bug, logged with its traceback."""
    try:
        await job()
    except (WeChatError, UpstreamError, PyMongoError) as exc:
        log.warning("%s: %s: %s", name, type(exc).__name__, exc)
    except Exception:
        log.exception("%s failed unexpectedly", name)


@dataclass(frozen=True, kw_only=True)
class Upkeep:
    """One account's jobs: its users' web tokens, and an Official Account's base token and
    jsapi_ticket."""

    name: str
    sweeper: WebTokenSweeper
    keeper: BaseTokenKeeper | None = None
    tickets: TicketKeeper | None = None


def start_scheduler(*, upkeeps: Sequence[Upkeep], settings: Settings) -> AsyncIOScheduler:
    """APScheduler jobs with jitter, so instances started together do not wake in lock-step.
    The default account's jobs are named base_token, jsapi_ticket, web_tokens; another's add
    `:<name>`."""
    scheduler = AsyncIOScheduler(timezone=UTC)

    def every(
        seconds: int, job_id: str, name: str, work: Callable[[], Awaitable[Any]], **kw: Any
    ) -> None:
        scheduler.add_job(
            run_job,
            "interval",
            args=(name, work),
            seconds=seconds,
            jitter=seconds // 4,
            id=job_id,
            name=name,
            max_instances=1,  # a slow run is never overlapped by the next
            coalesce=True,
            **kw,
        )

    for upkeep in upkeeps:
        suffix = "" if upkeep.name == DEFAULT_ACCOUNT else f":{upkeep.name}"
        of = "" if upkeep.name == DEFAULT_ACCOUNT else f" of {upkeep.name}"
        if upkeep.keeper is not None:
            every(
                settings.token_check_interval,
                f"base_token{suffix}",
                f"base access_token renewal{of}",
                upkeep.keeper.renew_if_due,
                next_run_time=datetime.now(UTC) + timedelta(seconds=1),  # once the server listens
            )
        if upkeep.tickets is not None:
            # Only once a ticket was asked for (TicketKeeper.renew_if_due); then ahead of expiry.
            every(
                settings.token_check_interval,
                f"jsapi_ticket{suffix}",
                f"jsapi_ticket renewal{of}",
                upkeep.tickets.renew_if_due,
            )
        if settings.web_token_keep_alive != "none":  # noqa: S105
            every(
                settings.web_token_sweep_interval,
                f"web_tokens{suffix}",
                f"web token sweep{of}",
                upkeep.sweeper.sweep,
            )
    scheduler.start()
    return scheduler


def scheduler_status(scheduler: AsyncIOScheduler | None) -> dict[str, Any]:
    """Whether the upkeep runs here, and when each job runs next (None: TOKEN_UPKEEP=0)."""
    if scheduler is None:
        return {"running": False, "jobs": []}
    jobs = [
        {"id": job.id, "nextRunAt": job.next_run_time.isoformat() if job.next_run_time else None}
        for job in scheduler.get_jobs()
    ]
    return {"running": bool(scheduler.running), "jobs": jobs}
