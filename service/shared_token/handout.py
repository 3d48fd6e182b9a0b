"""The shared access_token: the token this service keeps, handed to the team's other backends.

WeChat asks every account to run one central token server (中控服务器) that alone fetches and
refreshes the access_token, since each fetch by a second party cuts the first party's token
short. The service already is that server for itself (service/tokens/base.py); this hands the
same kept token to other backends that present an API key (API_KEYS). A read never fetches:
it reads the stored token, and only when none is kept (first start, after an invalidation) does
it wait, briefly, for the keeper, which fetches once across all instances under its lease.

A caller whose WeChat call met 40001 reports the token it was given; the keeper's own
compare-and-set drops it only if it is still the stored one. A token younger than
INVALIDATE_MIN_AGE is not dropped (429), so no caller can make the service fetch in a loop.

One SharedToken per Official Account (service/wiring.py); `?account=` chooses it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from service.clock import Clock
from service.config import parse_api_keys
from service.errors import Forbidden, ServiceError, Unauthorized
from service.store.queries import Store
from service.tokens.base import READER_MARGIN, BaseTokenKeeper
from service.wechat.client import WeChatError

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
# A kept token is not dropped on a caller's word before it is this old (seconds): at most one
# caller-caused fetch per this long, whatever callers report.
INVALIDATE_MIN_AGE = 60
# How long a read waits for the keeper when no valid token is kept (as /readyz waits).
HANDOUT_WAIT = 5


class TokenUnavailable(ServiceError):
    status = 503
    name = "TOKEN_UNAVAILABLE"


class TokenTooNew(ServiceError):
    status = 429
    name = "TOKEN_TOO_NEW"


def _kept(doc: dict[str, Any] | None, now: float) -> tuple[str, float] | None:
    """The stored token and its expiry, if it has life left beyond the readers' margin."""
    if not doc or not doc.get("accessToken"):
        return None
    expires_at: float = doc["expiresAt"].timestamp()
    if expires_at - READER_MARGIN <= now:
        return None
    return str(doc["accessToken"]), expires_at


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A fetch outlives a reader that stopped waiting; its failure is the keeper's to record."""
    if not task.cancelled():
        task.exception()


class SharedToken:
    """Who may read the shared token, the reading, and callers' reports of a rejected token."""

    def __init__(
        self,
        *,
        api_keys: tuple[str, ...],
        keeper: BaseTokenKeeper,
        store: Store,
        clock: Clock,
        on_handout: Callable[[str], None] | None = None,
    ) -> None:
        self._keys = [(name, key.encode()) for name, key in parse_api_keys(api_keys).items()]
        self._keeper = keeper
        self._store = store
        self._clock = clock
        self._on_handout = on_handout or (lambda _name: None)
        self.appid = keeper.appid
        # Tokens handed out by this instance since it started, by key name.
        self.handed_out: Counter[str] = Counter()

    # -- who calls ------------------------------------------------------------------------------

    def caller(self, given: str | None) -> str:
        """The name of the API key given: 401 without one, 403 if unknown or API_KEYS is unset."""
        if not self._keys:
            raise Forbidden(
                "the shared access_token is disabled: set API_KEYS to enable it",
                field=API_KEY_HEADER,
            )
        if not given:
            raise Unauthorized(f"the {API_KEY_HEADER} header is required", field=API_KEY_HEADER)
        # Bytes as sent (see access.require_admin); every key compared, in constant time each.
        sent = given.encode("utf-8", "surrogateescape")
        found = None
        for name, key in self._keys:
            if hmac.compare_digest(sent, key):
                found = name
        if found is None:
            raise Forbidden("wrong API key", field=API_KEY_HEADER, value="…")
        return found

    # -- reading --------------------------------------------------------------------------------

    async def hand_out(self, caller: str) -> dict[str, Any]:
        """The kept token and its remaining life; WeChat is never asked on a caller's behalf
        while a valid token is kept."""
        kept = _kept(await self._store.get_base_token(self.appid), self._clock.now())
        for _ in range(2):
            if kept is not None:
                break
            token = await self._wait_for_keeper()
            kept = _kept(await self._store.get_base_token(self.appid), self._clock.now())
            if kept is None:
                # The keeper's process cache held a token the store no longer does (another
                # instance dropped it): forget it (a no-op on the store) and ask once more.
                await self._keeper.invalidate(token)
        if kept is None:
            raise TokenUnavailable(
                "no valid WeChat access_token is kept right now; retry shortly",
                field="base_token",
                value="unavailable",
            )
        token, expires_at = kept
        self.handed_out[caller] += 1
        self._on_handout(caller)
        log.info("base access_token of %s handed out to %s", self.appid, caller)
        return {
            "accessToken": token,
            "expiresIn": max(0, math.floor(expires_at - self._clock.now())),
            "appid": self.appid,
        }

    async def _wait_for_keeper(self) -> str:
        """The keeper's token, fetched under its lease if need be; waited for HANDOUT_WAIT s at
        most. The fetch is shielded: a reader giving up never cuts a fetch short."""
        task = asyncio.ensure_future(self._keeper.get())
        task.add_done_callback(_retrieve)
        try:
            async with asyncio.timeout(HANDOUT_WAIT):
                return await asyncio.shield(task)
        except (ServiceError, WeChatError, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, ServiceError) else str(exc) or "timed out"
            log.warning("no base access_token to hand out: %s", reason)
            raise TokenUnavailable(
                f"no valid WeChat access_token: {reason}", field="base_token", value="unavailable"
            ) from None

    # -- a caller's 40001 -----------------------------------------------------------------------

    async def invalidate(self, caller: str, token: str) -> dict[str, str]:
        """Drop the kept token if it is still `token` (compare-and-set); the next read or the
        upkeep fetches a new one. A token younger than INVALIDATE_MIN_AGE stays (429)."""
        now = self._clock.now()
        doc = await self._store.get_base_token(self.appid) or {}
        stored = doc.get("accessToken")
        if stored and hmac.compare_digest(str(stored).encode(), token.encode()):
            age = now - doc["fetchedAt"].timestamp()
            if age < INVALIDATE_MIN_AGE:
                log.info(
                    "%s reported the base access_token of %s rejected; it is too new to drop",
                    caller,
                    self.appid,
                )
                raise TokenTooNew(
                    f"this access_token was fetched {max(0, math.floor(age))} s ago; a token is "
                    f"dropped on a caller's report only after {INVALIDATE_MIN_AGE} s",
                    field="accessToken",
                    headers={"Retry-After": str(max(1, math.ceil(INVALIDATE_MIN_AGE - age)))},
                )
        result = "invalidated" if await self._keeper.invalidate(token) else "alreadyReplaced"
        log.info("%s reported the base access_token of %s rejected: %s", caller, self.appid, result)
        return {"result": result}

    def status(self) -> dict[str, int]:
        """Tokens handed out by this instance, by key name."""
        return dict(self.handed_out)
