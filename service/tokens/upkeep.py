"""The upkeep scheduler: APScheduler jobs that keep the base token and web tokens fresh.

The jobs are plain coroutines with their dependencies injected, so tests drive them with a
manual clock; this module only wires them to the app and to the scheduler.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pymongo.errors import PyMongoError

from service import keys
from service.config import Settings
from service.errors import UpstreamError
from service.tokens.base import BaseTokenKeeper, KeeperDependencies
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


def start_scheduler(
    *,
    keeper: BaseTokenKeeper,
    sweeper: WebTokenSweeper,
    settings: Settings,
    tickets: TicketKeeper | None = None,
) -> AsyncIOScheduler:
    """APScheduler jobs with jitter, so instances started together do not wake in lock-step."""
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

    every(
        settings.token_check_interval,
        "base_token",
        "base access_token renewal",
        keeper.renew_if_due,
        next_run_time=datetime.now(UTC) + timedelta(seconds=1),  # once the server listens
    )
    if tickets is not None:
        # Only once a ticket was asked for (TicketKeeper.renew_if_due); then ahead of expiry.
        every(
            settings.token_check_interval,
            "jsapi_ticket",
            "jsapi_ticket renewal",
            tickets.renew_if_due,
        )
    if settings.web_token_keep_alive != "none":  # noqa: S105
        every(settings.web_token_sweep_interval, "web_tokens", "web token sweep", sweeper.sweep)
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


async def token_upkeep_ctx(app: web.Application) -> AsyncIterator[None]:
    """The base token keeper and the web token sweeper, and the scheduler that runs them."""
    settings = app[keys.SETTINGS]
    failures = app[keys.METRICS].token_refresh_failures

    def count_failure(kind: str) -> None:
        failures.labels(kind).inc()

    # What every keeper and the sweeper are given (typed: mypy checks the unpacking).
    shared: KeeperDependencies = {
        "store": app[keys.STORE],
        "wechat": app[keys.WECHAT],
        "settings": settings,
        "clock": app[keys.CLOCK],
        "instance_id": app[keys.INSTANCE_ID],
        "on_failure": count_failure,
    }
    keeper = BaseTokenKeeper(**shared)
    sweeper = WebTokenSweeper(**shared)
    tickets = TicketKeeper(base_tokens=keeper, **shared)
    app[keys.BASE_TOKENS] = keeper
    app[keys.JSAPI_TICKETS] = tickets
    app[keys.WEB_TOKENS] = sweeper
    scheduler = (
        start_scheduler(keeper=keeper, sweeper=sweeper, settings=settings, tickets=tickets)
        if settings.token_upkeep
        else None
    )
    if scheduler is not None:
        app[keys.SCHEDULER] = scheduler
    yield
    if scheduler is not None:
        scheduler.shutdown(wait=False)
    await keeper.release()
    await tickets.release()
