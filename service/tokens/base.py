"""The account's base access_token: one fetch per lifetime across all instances.

Any number of instances share one MongoDB. The stored base token is the only one anybody uses;
WeChat is asked for a new one only by the holder of a MongoDB lease, so it is asked once per
token lifetime, not once per instance, and no instance cancels another's token (the 40001 that
plagues WeChat SDKs that fetch per process). The scheduler jobs are plain coroutines with their
dependencies injected, so tests drive them with a manual clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, TypeVar

from service.clock import Clock, utc
from service.config import Settings
from service.errors import UpstreamError, UpstreamUnavailable
from service.store.queries import Store
from service.wechat.client import (
    BaseAccessToken,
    WeChatAPIError,
    WeChatClient,
    WeChatError,
    WeChatTimeout,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# errcodes that say "this base token is no good" (§12 of wechat-api.md): refetch once, retry once.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
# Refusals that more calls cannot fix soon: no retry storm, every instance waits this long.
BACKOFF_SECONDS = {
    45009: 900,  # daily quota used up (an admin may reset it with clear_quota)
    40164: 300,  # the egress IP is not in the account's whitelist
    40013: 300,  # wrong appid
    40125: 300,  # wrong secret
    40243: 300,  # AppSecret frozen
}
DEFAULT_BACKOFF = 60
BUSY_RETRIES = 2  # errcode -1: up to two more tries, with doubling delays
# Readers use a cached token until this many seconds before it expires. Renewal happens
# earlier (base_token_refresh_margin), and WeChat keeps the old token valid until its expiry.
READER_MARGIN = 30
# A reader finding no usable token waits for the lease holder at most this often per second.
WAIT_POLL = 0.2


class KeeperDependencies(TypedDict):
    """What the keepers and the web token sweeper are built from, as keywords."""

    store: Store
    wechat: WeChatClient
    settings: Settings
    clock: Clock
    instance_id: str
    on_failure: Callable[[str], None] | None


class BaseTokenUnavailable(UpstreamUnavailable):
    """No valid base token can be had right now; the message says why."""


class LeaseLost(Exception):
    """The lease ran out during a fetch and another instance holds it now: stop, let it fetch."""


def error_record(exc: Exception, at: float) -> dict[str, Any]:
    """What went wrong, for status pages; never a token or secret (errmsg carries neither)."""
    record: dict[str, Any] = {"at": utc(at), "kind": type(exc).__name__}
    if isinstance(exc, WeChatAPIError):
        record.update(path=exc.path, errcode=exc.errcode, errmsg=exc.errmsg)
    else:
        record["message"] = str(exc)
    return record


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


@dataclass
class _Cached:
    token: str
    expires_at: float


class BaseTokenKeeper:
    """The stored base access_token: read by everyone, renewed only under the lease."""

    def __init__(
        self,
        *,
        store: Store,
        wechat: WeChatClient,
        settings: Settings,
        clock: Clock,
        instance_id: str,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self._on_failure = on_failure or (lambda _kind: None)
        self._store = store
        self._wechat = wechat
        self._settings = settings
        self._clock = clock
        self._sleep = sleep
        self.instance_id = instance_id
        self.appid = settings.wechat_appid
        self.lease_name = f"base_token:{self.appid}"
        # What is kept, for subclasses keeping another credential the same way (TicketKeeper):
        # the stored document's _id, the metrics label of a failure, the name in logs.
        self.doc_key = self.appid
        self.kind = "base"
        self.label = "base access_token"
        self.source = settings.base_token_source  # how it is fetched, stored beside it
        self._cached: _Cached | None = None
        self._fetching = asyncio.Lock()  # one fetch attempt per process at a time

    # -- readers --------------------------------------------------------------------------------

    async def get(self) -> str:
        """A valid base token; fetched (under the lease) only when none is stored."""
        now = self._clock.now()
        if self._cached and self._cached.expires_at - READER_MARGIN > now:
            return self._cached.token
        doc = await self._store.get_base_token(self.doc_key)
        token = self._usable(doc, now)
        if token:
            return token
        return await self._obtain()

    def _usable(self, doc: dict[str, Any] | None, now: float) -> str | None:
        """The stored token if it has life left, caching it; None otherwise."""
        if not doc or not doc.get("accessToken"):
            return None
        expires_at = doc["expiresAt"].timestamp()
        if expires_at - READER_MARGIN <= now:
            return None
        token: str = doc["accessToken"]
        self._cached = _Cached(token, expires_at)
        return token

    async def _obtain(self) -> str:
        """No usable token is stored: fetch it under the lease, or wait for whoever holds it."""
        async with self._fetching:
            deadline = time.monotonic() + self._settings.lease_ttl + self._settings.wechat_timeout
            while True:
                now = self._clock.now()
                doc = await self._store.get_base_token(self.doc_key)
                token = self._usable(doc, now)
                if token:
                    return token
                self._raise_if_backing_off(doc, now)
                if await self._store.acquire_lease(
                    self.lease_name, self.instance_id, self._settings.lease_ttl
                ):
                    try:
                        return await self._fetch_and_store()
                    except LeaseLost:
                        pass  # the new holder fetches; wait for its token like anyone else
                    finally:
                        await self._store.release_lease(self.lease_name, self.instance_id)
                if time.monotonic() >= deadline:
                    raise BaseTokenUnavailable(
                        "another instance is fetching WeChat's access_token and has not finished",
                        field="base_token",
                        value="pending",
                    )
                await self._sleep(WAIT_POLL)

    def _raise_if_backing_off(self, doc: dict[str, Any] | None, now: float) -> None:
        if not doc:
            return
        until = _ts(doc.get("backoffUntil"))
        if until is not None and until > now:
            error = doc.get("lastError") or {}
            errcode = error.get("errcode")
            raise UpstreamError(
                f"WeChat refused an access_token (errcode {errcode}); retrying after "
                f"{utc(until).isoformat()}",
                field="errcode",
                value=errcode,
            )

    async def call(self, operation: Callable[[str], Awaitable[T]]) -> T:
        """Run a WeChat call with the base token, recovering from a token WeChat rejects.

        40001/40014/42001: drop the stored token only if it is still the one that failed
        (compare-and-set), get a fresh one under the lease, retry once. -1: retry with
        doubling delays, a bounded number of times.
        """
        token = await self.get()
        renewed = False
        busy = 0
        while True:
            try:
                return await operation(token)
            except WeChatAPIError as exc:
                if exc.errcode in TOKEN_ERRCODES and not renewed:
                    log.warning(
                        "WeChat rejected the base token on %s (errcode %s); renewing once",
                        exc.path,
                        exc.errcode,
                    )
                    await self.invalidate(token)
                    token = await self.get()
                    renewed = True
                    continue
                if exc.errcode == -1 and busy < BUSY_RETRIES:
                    await self._sleep(self._settings.wechat_retry_delay * 2**busy)
                    busy += 1
                    continue
                raise

    async def invalidate(self, token: str) -> bool:
        """Compare-and-set: True if `token` was the stored one and is now dropped."""
        if self._cached and self._cached.token == token:
            self._cached = None
        return await self._store.invalidate_base_token(self.doc_key, token)

    # -- the scheduler job ----------------------------------------------------------------------

    async def renew_if_due(self) -> bool:
        """Renew the stored token ahead of expiry; True if this instance fetched one.

        Cheap when nothing is due (one read). When it is due, only the lease holder calls
        WeChat; the others find the new token on their next read.
        """
        now = self._clock.now()
        doc = await self._store.get_base_token(self.doc_key)
        if not self._due(doc, now):
            return False
        try:
            self._raise_if_backing_off(doc, now)
        except UpstreamError:
            return False
        if not await self._store.acquire_lease(
            self.lease_name, self.instance_id, self._settings.lease_ttl
        ):
            return False
        try:
            # Re-read under the lease: the previous holder may have just renewed it.
            if not self._due(await self._store.get_base_token(self.doc_key), self._clock.now()):
                return False
            try:
                await self._fetch_and_store()
            except WeChatError:
                return False  # recorded on the token document for status and readiness
            except LeaseLost:
                return False  # the new holder renews it
            return True
        finally:
            await self._store.release_lease(self.lease_name, self.instance_id)

    def _due(self, doc: dict[str, Any] | None, now: float) -> bool:
        if not doc or not doc.get("accessToken"):
            return True
        expires_at: datetime = doc["expiresAt"]
        return expires_at.timestamp() - now <= self._settings.base_token_refresh_margin

    async def _fetch_and_store(self) -> str:
        """Fetch under the lease (the caller holds it) and store the token.

        Busy answers are retried; the whole may take (BUSY_RETRIES + 1) WeChat calls plus the
        delays between them, longer than one LEASE_TTL. So the lease is extended before each
        retry: each call then starts with a whole LEASE_TTL ahead, which start-up makes at
        least 3 x WECHAT_TIMEOUT (config._validate). Were it to run out, another instance would
        fetch as well, and with cgi-bin/token the second fetch cuts the first token's life short.
        """
        source = self.source
        busy = 0
        while True:
            try:
                fetched = await self._fetch(source)
                break
            except WeChatAPIError as exc:
                if exc.errcode == -1 and busy < BUSY_RETRIES:
                    delay = self._settings.wechat_retry_delay * 2**busy
                    await self._extend_lease(delay)  # held through the pause, however long
                    await self._sleep(delay)
                    busy += 1
                    await self._extend_lease()
                    continue
                backoff = BACKOFF_SECONDS.get(exc.errcode, DEFAULT_BACKOFF)
                if exc.errcode == -1:
                    backoff = 0  # transient: the next check tries again
                await self._record_failure(exc, backoff)
                raise
            except WeChatError as exc:
                await self._record_failure(exc, 0)
                raise
        doc = await self._store.save_base_token(
            self.doc_key,
            access_token=fetched.access_token,
            expires_in=fetched.expires_in,
            source=source,
            fetched_by=self.instance_id,
        )
        self._cached = _Cached(fetched.access_token, doc["expiresAt"].timestamp())
        log.info(
            "%s renewed by %s via %s; valid %s s",
            self.label,
            self.instance_id,
            source,
            fetched.expires_in,
        )
        return fetched.access_token

    async def _fetch(self, source: str) -> BaseAccessToken:
        """One call to WeChat for the kept credential (a subclass fetches another one)."""
        return await self._wechat.fetch_base_token(source)

    async def _extend_lease(self, pause: float = 0) -> None:
        if not await self._store.acquire_lease(
            self.lease_name, self.instance_id, self._settings.lease_ttl + pause
        ):
            log.warning(
                "the base-token lease ran out during a fetch and %s no longer holds it; "
                "leaving the fetch to the new holder",
                self.instance_id,
            )
            raise LeaseLost(self.lease_name)

    async def _record_failure(self, exc: WeChatError, backoff: float) -> None:
        self._on_failure(self.kind)
        now = self._clock.now()
        level = logging.WARNING if isinstance(exc, WeChatTimeout) or not backoff else logging.ERROR
        log.log(level, "could not renew the %s: %s", self.label, exc)
        await self._store.record_base_token_error(
            self.doc_key, error_record(exc, now), now + backoff if backoff else None
        )

    async def release(self) -> None:
        """Give the lease up at shutdown, so another instance need not wait for it to run out."""
        await self._store.release_lease(self.lease_name, self.instance_id)

    # -- status ---------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        now = self._clock.now()
        doc = await self._store.get_base_token(self.doc_key) or {}
        lease = await self._store.get_lease(self.lease_name)
        expires_at = _ts(doc.get("expiresAt"))
        fetched_at = _ts(doc.get("fetchedAt"))
        valid = bool(doc.get("accessToken")) and expires_at is not None and expires_at > now
        lease_live = lease is not None and lease["expiresAt"].timestamp() > now
        holder = lease if lease_live else None
        return {
            "appid": self.appid,
            "source": doc.get("source"),
            "valid": valid,
            "fetchedAt": _iso(doc.get("fetchedAt")),
            "fetchedBy": doc.get("fetchedBy"),
            "expiresAt": _iso(doc.get("expiresAt")),
            "ageSeconds": round(now - fetched_at) if fetched_at else None,
            "remainingSeconds": max(0, round(expires_at - now)) if valid and expires_at else 0,
            "lastRefreshAt": _iso(doc.get("lastRefreshAt")),
            "lastError": _jsonable(doc.get("lastError")),
            "backoffUntil": _iso(doc.get("backoffUntil")),
            "consecutiveFailures": doc.get("failures", 0),
            "leaseHolder": holder["owner"] if holder else None,
            "leaseExpiresAt": _iso(holder["expiresAt"]) if holder else None,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _jsonable(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if not record:
        return None
    return {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in record.items()}
