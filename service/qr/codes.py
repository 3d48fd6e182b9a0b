"""The account's parametric QR codes: validated, created through WeChat, cached, drawn by segno.

The image is drawn here from the `url` WeChat returns, so no call to showqrcode is needed, and a
ticket is kept per (type, scene) and reused, so repeated requests do not spend WeChat's quota.
Concurrent requests for one (type, scene) share one qrcode/create call: in this instance through
an in-process flight, across instances through a claim in MongoDB. Each instance also keeps a
daily budget of qrcode/create calls (QRCODE_DAILY_BUDGET), so a flood of distinct scenes cannot
use up the account's 100,000 a day (§8), which QR sign-in shares.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import logging
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import segno

from service.clock import Clock, utc
from service.errors import (
    InvalidParameter,
    QrCodeBudgetExhausted,
    UpstreamTimeout,
)
from service.store.queries import Store
from service.tokens.base import BaseTokenKeeper
from service.wechat.client import WeChatClient, WeChatError
from service.wechat.upstream import upstream_error

# wechat-api.md §8.
MAX_TEMPORARY_SCENE_ID = 2**32 - 1  # "32-bit non-zero integer"; positive here
MAX_PERMANENT_SCENE_ID = 100_000
MAX_SCENE_STR = 64
MIN_EXPIRE = 60
MAX_EXPIRE = 2_592_000  # 30 days
FORMATS = ("png", "svg", "json")
SCALE_RANGE = (1, 40)  # pixels per module
BORDER_RANGE = (0, 20)  # quiet zone, in modules
TYPES = ("temporary", "permanent")
DIGITS = re.compile(r"[0-9]{1,10}")
# WeChat's daily quotas reset at 00:00 Beijing time (UTC+8); the budget does the same.
BEIJING_OFFSET = 8 * 3600
DAY = 86400
CLAIM_POLL = 0.1  # seconds between looks at the store while another instance creates a code

log = logging.getLogger(__name__)


class DailyBudget:
    """qrcode/create calls this instance may make per Beijing day; each call is counted as it
    is made (retries and QR sign-in's codes included), never a stored ticket handed out."""

    def __init__(self, clock: Clock, budget: int) -> None:
        self.clock = clock
        self.budget = budget
        self._day = self._day_of(clock.now())
        self._used = 0

    @staticmethod
    def _day_of(now: float) -> int:
        return int((now + BEIJING_OFFSET) // DAY)

    def _roll(self) -> None:
        day = self._day_of(self.clock.now())
        if day != self._day:
            self._day, self._used = day, 0

    def resets_at(self) -> float:
        self._roll()
        return (self._day + 1) * DAY - BEIJING_OFFSET

    def spend(self) -> None:
        """Count one call, or raise QrCodeBudgetExhausted (429, Retry-After: the reset)."""
        self._roll()
        if self._used >= self.budget:
            retry_after = max(1, math.ceil(self.resets_at() - self.clock.now()))
            raise QrCodeBudgetExhausted(
                f"this instance has made its {self.budget} qrcode/create calls for today "
                f"(QRCODE_DAILY_BUDGET); stored codes are still served; new ones from "
                f"{utc(self.resets_at()).isoformat()} (00:00 Beijing time)",
                field="QRCODE_DAILY_BUDGET",
                value=self.budget,
                headers={"Retry-After": str(retry_after)},
            )
        self._used += 1

    def status(self) -> dict[str, Any]:
        self._roll()
        return {
            "used": self._used,
            "budget": self.budget,
            "resetsAt": utc(self.resets_at()).isoformat(),
        }


def scene_of(kind: str, raw: str) -> str | int:
    """Digits are a scene_id (QR_SCENE / QR_LIMIT_SCENE) in the range of its type, anything
    else a scene_str (its length is the contract's rule)."""
    if DIGITS.fullmatch(raw):
        limit = MAX_TEMPORARY_SCENE_ID if kind == "temporary" else MAX_PERMANENT_SCENE_ID
        if not 1 <= int(raw) <= limit:
            raise InvalidParameter(
                f"a numeric scene of a {kind} code is from 1 to {limit}", field="scene", value=raw
            )
        return int(raw)
    return raw


def expiry_of(kind: str, given: int | None, default: int) -> int | None:
    """A temporary code's lifetime in seconds; permanent codes have none."""
    if kind == "temporary":
        return default if given is None else given
    if given is not None:
        raise InvalidParameter(
            "permanent codes do not expire; leave expireSeconds out",
            field="expireSeconds",
            value=str(given),
        )
    return None


def create_body(kind: str, scene: str | int, expire_seconds: int | None) -> dict[str, Any]:
    """WeChat's request body for the four action names (§8)."""
    key = "scene_id" if isinstance(scene, int) else "scene_str"
    if kind == "temporary":
        action = "QR_SCENE" if isinstance(scene, int) else "QR_STR_SCENE"
        return {
            "expire_seconds": expire_seconds,
            "action_name": action,
            "action_info": {"scene": {key: scene}},
        }
    action = "QR_LIMIT_SCENE" if isinstance(scene, int) else "QR_LIMIT_STR_SCENE"
    return {"action_name": action, "action_info": {"scene": {key: scene}}}


def reusable(doc: dict[str, Any] | None, wanted: int | None, now: float) -> bool:
    """A stored ticket serves while it has at least half the wanted life (and a minute) left."""
    if doc is None:
        return False
    if doc.get("expiresAt") is None:
        return True  # permanent
    expires_at: datetime = doc["expiresAt"]
    return expires_at.timestamp() - now >= max(60, (wanted or 0) / 2)


class ClaimLost(Exception):
    """This instance's claim on a creation lapsed and another instance took it."""


@dataclass(frozen=True)
class Ticket:
    """A QR code's ticket as clients see it, never the stored document."""

    ticket: str
    url: str  # what the code encodes (weixin.qq.com/q/…)
    kind: str
    scene: str | int
    expires_at: datetime | None  # None: permanent

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Ticket:
        return cls(doc["ticket"], doc["url"], doc["type"], doc["scene"], doc.get("expiresAt"))

    def cache_seconds(self, now: float) -> int:
        """How long a client may keep the image: the remaining life, a year if permanent."""
        if self.expires_at is None:
            return 365 * 86400
        return max(0, int(self.expires_at.timestamp() - now))

    def public(self, scale: int, border: int) -> dict[str, Any]:
        return {
            "ticket": self.ticket,
            "url": self.url,
            "type": self.kind,
            "scene": self.scene,
            "expiresAt": self.expires_at.isoformat() if self.expires_at else None,
            "image": data_uri(self.url, scale, border),
        }


class QrCodes:
    """This instance's QR codes: tickets reused from the store, created through WeChat under
    a daily budget, one creation per (type, scene) in flight here and claimed across instances."""

    def __init__(
        self,
        *,
        store: Store,
        base_tokens: BaseTokenKeeper,
        wechat: WeChatClient,
        clock: Clock,
        daily_budget: int,
        owner: str,
        claim_ttl: float,
    ) -> None:
        self.store = store
        self.base_tokens = base_tokens
        self.wechat = wechat
        self.clock = clock
        self.budget = DailyBudget(clock, daily_budget)
        self.owner = owner  # names this instance's claims in MongoDB
        # How long a claim holds off other instances: a create call with its token fetch fits
        # in it, and it is renewed before each retried call; a dead claimant's claim lapses.
        self.claim_ttl = claim_ttl
        self.flights: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def obtain(
        self, kind: str, scene: str | int, expire_seconds: int | None, *, reuse: bool = True
    ) -> Ticket:
        """The stored ticket for (kind, scene) while it is reusable, else a new one.

        `reuse=False` is for a scene nobody else can ask for (a fresh sign-in scene): it is created
        at once, without looking for a stored ticket or a claim.
        """
        if not reuse:
            return Ticket.of(await self._create(kind, scene, expire_seconds))
        return Ticket.of(await self._reused_or_created(kind, scene, expire_seconds))

    async def _reused_or_created(
        self, kind: str, scene: str | int, expire_seconds: int | None
    ) -> dict[str, Any]:
        for _ in range(2):
            stored = await self.store.get_qr_ticket(kind, scene)
            if reusable(stored, expire_seconds, self.clock.now()):
                assert stored is not None
                return stored
            key = f"{kind}:{scene}"
            flight = self.flights.get(key)
            if flight is None:
                flight = asyncio.ensure_future(self._claim_and_create(kind, scene, expire_seconds))
                self.flights[key] = flight
                flight.add_done_callback(functools.partial(self._landed, key))
            # Shielded: a caller that goes away does not cancel the others' creation.
            doc = await asyncio.shield(flight)
            if reusable(doc, expire_seconds, self.clock.now()):
                return doc
            # Joined a flight for a shorter life than this caller asked for: one more round.
        return doc

    def _landed(self, key: str, flight: asyncio.Future[dict[str, Any]]) -> None:
        if self.flights.get(key) is flight:
            del self.flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved here too, so no waiter leaving makes it "unretrieved"

    async def _claim_and_create(
        self, kind: str, scene: str | int, expire_seconds: int | None
    ) -> dict[str, Any]:
        """Create under this instance's claim, or wait (bounded) for the claimant's ticket.

        A claimant that fails releases its claim, and a waiter then takes it; one that dies leaves
        a claim that lapses after claim_ttl, within the wait."""
        key = f"{kind}:{scene}"
        deadline = time.monotonic() + self.claim_ttl + 1
        while True:
            if await self.store.claim_qr_create(key, self.owner, self.claim_ttl):
                try:
                    # The claim may have been free because its holder just stored the ticket.
                    stored = await self.store.get_qr_ticket(kind, scene)
                    if reusable(stored, expire_seconds, self.clock.now()):
                        assert stored is not None
                        return stored
                    return await self._create(kind, scene, expire_seconds, claimed=True)
                except ClaimLost:
                    pass  # it lapsed during a retry and another instance creates it: wait for that
                finally:
                    await self.store.release_qr_claim(key, self.owner)
            stored = await self.store.get_qr_ticket(kind, scene)
            if reusable(stored, expire_seconds, self.clock.now()):
                assert stored is not None
                return stored
            if time.monotonic() >= deadline:
                raise UpstreamTimeout(
                    "another instance is creating this QR code and WeChat has not answered it in "
                    "time; try again",
                    field="scene",
                    value=scene,
                )
            await asyncio.sleep(CLAIM_POLL)

    async def _create(
        self, kind: str, scene: str | int, expire_seconds: int | None, *, claimed: bool = False
    ) -> dict[str, Any]:
        body = create_body(kind, scene, expire_seconds)
        key = f"{kind}:{scene}"

        async def create(token: str) -> dict[str, Any]:
            # A claim is renewed before each call, a retry's too: however long the retries take,
            # no other instance creates the same code meanwhile (if one did, this one stops).
            if claimed and not await self.store.extend_qr_claim(key, self.owner, self.claim_ttl):
                raise ClaimLost(key)
            self.budget.spend()  # each call WeChat counts, a retry's too
            return await self.wechat.create_qrcode(token, body)

        try:
            answer = await self.base_tokens.call(create)
        except WeChatError as exc:
            raise upstream_error(exc) from None
        expires_in = None
        if kind == "temporary":
            assert expire_seconds is not None  # expiry_of() gives every temporary code one
            expires_in = int(answer.get("expire_seconds", expire_seconds))
        return await self.store.save_qr_ticket(
            kind, scene, ticket=str(answer["ticket"]), url=str(answer["url"]), expires_in=expires_in
        )


def render(url: str, fmt: str, scale: int, border: int) -> bytes:
    code = segno.make(url, error="m", micro=False)
    out = io.BytesIO()
    code.save(out, kind=fmt, scale=scale, border=border)
    return out.getvalue()


def data_uri(url: str, scale: int, border: int) -> str:
    png = render(url, "png", scale, border)
    return "data:image/png;base64," + base64.b64encode(png).decode()
