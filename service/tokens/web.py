"""Users' web access tokens, refreshed before they expire within WeChat's rate limits.

Each refresh is claimed in MongoDB first, so several instances sweeping at once never refresh
one user's token twice; a user who must authorize again is marked, not retried.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.clock import Clock
from service.config import Settings
from service.store.queries import Store
from service.tokens.base import error_record
from service.wechat.client import (
    WeChatAPIError,
    WeChatClient,
    WeChatError,
)

log = logging.getLogger(__name__)

WEB_REAUTH_ERRCODES = frozenset({40030, 42002})


class RatePacer:
    """Spaces calls evenly at `rate` per second across all callers (no bursts)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            delay = max(0.0, self._next - now)
            self._next = max(now, self._next) + self._interval
        if delay:
            await asyncio.sleep(delay)


@dataclass
class SweepReport:
    refreshed: int = 0
    reauth_required: int = 0
    failed: int = 0
    skipped: int = 0  # claimed by another instance
    expired: int = 0  # refresh_token ran out before a sweep reached it
    superseded: int = 0  # a new sign-in stored a fresher token while the refresh was under way

    @property
    def seen(self) -> int:
        return self.refreshed + self.reauth_required + self.failed + self.skipped + self.superseded


class WebTokenSweeper:
    """Refreshes users' web access tokens before they expire, within WeChat's rate limits."""

    PROGRESS_EVERY = 1000

    def __init__(
        self,
        *,
        store: Store,
        wechat: WeChatClient,
        settings: Settings,
        clock: Clock,
        instance_id: str,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self._on_failure = on_failure or (lambda _kind: None)
        self._store = store
        self._wechat = wechat
        self._settings = settings
        self._clock = clock
        self.instance_id = instance_id
        self._pacer = RatePacer(settings.web_token_refresh_rate)
        # A claim outlives the slowest refresh call, so nobody takes a token mid-refresh.
        self._claim_ttl = max(settings.lease_ttl, settings.wechat_timeout * 3)

    async def sweep(self) -> SweepReport:
        """One pass over the tokens due: a streaming cursor, bounded concurrency, claims.

        The queue between the cursor and the workers is small, so reading never runs ahead of
        refreshing by more than a few tokens: memory is flat however many tokens are stored.
        """
        settings = self._settings
        report = SweepReport()
        if settings.web_token_keep_alive == "none":  # noqa: S105
            return report
        now = self._clock.now()
        report.expired = await self._store.mark_refresh_expired()
        used_since = None
        if settings.web_token_keep_alive == "recent":  # noqa: S105
            used_since = now - settings.web_token_recent_days * 86400
        started = time.monotonic()
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(
            maxsize=settings.web_token_concurrency * 2
        )
        workers = [
            asyncio.create_task(self._worker(queue, report))
            for _ in range(settings.web_token_concurrency)
        ]
        cursor = self._store.web_tokens_due(
            due_before=now + settings.web_token_refresh_margin,
            used_since=used_since,
            batch_size=settings.web_token_batch_size,
        )
        try:
            async for doc in cursor:
                await queue.put(doc)
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            closed = cursor.close()  # frees the server-side cursor if the sweep stopped early
            if inspect.isawaitable(closed):
                await closed
        if report.seen or report.expired:
            log.info(
                "web token sweep: %s refreshed, %s need re-authorization, %s failed, "
                "%s taken by other instances, %s superseded by a new sign-in, %s expired, "
                "in %.1f s",
                report.refreshed,
                report.reauth_required,
                report.failed,
                report.skipped,
                report.superseded,
                report.expired,
                time.monotonic() - started,
            )
        return report

    async def _worker(
        self, queue: asyncio.Queue[dict[str, Any] | None], report: SweepReport
    ) -> None:
        while (doc := await queue.get()) is not None:
            try:
                await self._refresh_one(doc, report)
            except Exception:
                # One bad document (or a MongoDB hiccup) must not stall the sweep.
                log.exception("web token sweep: refreshing one token failed")
                report.failed += 1
            if report.seen % self.PROGRESS_EVERY == 0:
                log.info("web token sweep: %s tokens so far", report.seen)

    async def _refresh_one(self, due: dict[str, Any], report: SweepReport) -> None:
        doc = await self._store.claim_web_token(due["_id"], self.instance_id, self._claim_ttl)
        if doc is None:
            report.skipped += 1
            return
        await self._pacer.wait()
        refresh_token = self._store.open_web_token(doc)["refreshToken"]
        try:
            fresh = await self._wechat.refresh_web_token(refresh_token)
        except WeChatAPIError as exc:
            reauth = exc.errcode in WEB_REAUTH_ERRCODES
            await self._store.web_token_failed(
                doc["_id"],
                self.instance_id,
                error_record(exc, self._clock.now()),
                reauth=reauth,
            )
            if reauth:
                report.reauth_required += 1
            else:
                report.failed += 1
                self._on_failure("web")
            return
        except WeChatError as exc:
            self._on_failure("web")
            await self._store.web_token_failed(
                doc["_id"], self.instance_id, error_record(exc, self._clock.now()), reauth=False
            )
            report.failed += 1
            return
        stored = await self._store.web_token_refreshed(
            doc,
            self.instance_id,
            access_token=fresh.access_token,
            refresh_token=fresh.refresh_token,
            expires_in=fresh.expires_in,
        )
        if stored:
            report.refreshed += 1
        else:
            report.superseded += 1
