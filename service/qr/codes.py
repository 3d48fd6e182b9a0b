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
    MissingParameter,
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


class TicketMaker:
    """This instance's qrcode/create calls: its daily budget and the creations in flight."""

    def __init__(self, clock: Clock, budget: int, owner: str, claim_ttl: float) -> None:
        self.clock = clock
        self.budget = DailyBudget(clock, budget)
        self.owner = owner  # names this instance's claims in MongoDB
        # How long a claim holds off other instances: a create call with its token fetch fits
        # in it, and it is renewed before each retried call; a dead claimant's claim lapses.
        self.claim_ttl = claim_ttl
        self.flights: dict[str, asyncio.Future[dict[str, Any]]] = {}


@dataclass(frozen=True)
class QrRequest:
    kind: str
    scene: str | int
    expire_seconds: int | None
    format: str
    scale: int
    border: int


def _int_param(name: str, raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    if not DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise InvalidParameter(
            f"{name} must be a whole number from {low} to {high}", field=name, value=raw
        )
    return int(raw)


def parse_scene(kind: str, raw: str | None) -> str | int:
    """Digits are a scene_id (QR_SCENE / QR_LIMIT_SCENE), anything else a scene_str."""
    if raw is None or raw == "":
        raise MissingParameter("scene is required", field="scene", value=raw)
    if DIGITS.fullmatch(raw):
        limit = MAX_TEMPORARY_SCENE_ID if kind == "temporary" else MAX_PERMANENT_SCENE_ID
        if not 1 <= int(raw) <= limit:
            raise InvalidParameter(
                f"a numeric scene of a {kind} code is from 1 to {limit}", field="scene", value=raw
            )
        return int(raw)
    if len(raw) > MAX_SCENE_STR:
        raise InvalidParameter(
            f"a scene is at most {MAX_SCENE_STR} characters", field="scene", value=raw
        )
    return raw


def parse_qr_request(
    query: dict[str, str | None], default_expire: int, *, scene_required: bool = True
) -> QrRequest:
    kind = query.get("type") or "temporary"
    if kind not in TYPES:
        raise InvalidParameter("type is temporary or permanent", field="type", value=kind)
    scene = parse_scene(kind, query.get("scene")) if scene_required else ""
    expire = None
    if kind == "temporary":
        expire = _int_param(
            "expireSeconds", query.get("expireSeconds"), default_expire, MIN_EXPIRE, MAX_EXPIRE
        )
    elif query.get("expireSeconds"):
        raise InvalidParameter(
            "permanent codes do not expire; leave expireSeconds out",
            field="expireSeconds",
            value=query.get("expireSeconds"),
        )
    fmt = query.get("format") or "png"
    if fmt not in FORMATS:
        raise InvalidParameter("format is png, svg or json", field="format", value=fmt)
    return QrRequest(
        kind=kind,
        scene=scene,
        expire_seconds=expire,
        format=fmt,
        scale=_int_param("scale", query.get("scale"), 8, 1, 40),
        border=_int_param("border", query.get("border"), 4, 0, 20),
    )


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
    remaining = doc["expiresAt"].timestamp() - now
    return remaining >= max(60, (wanted or 0) / 2)


async def obtain_ticket(
    store: Store,
    keeper: BaseTokenKeeper,
    wechat: WeChatClient,
    maker: TicketMaker,
    kind: str,
    scene: str | int,
    expire_seconds: int | None,
    *,
    reuse: bool = True,
) -> dict[str, Any]:
    """The stored ticket for (kind, scene) while it is reusable, else a new one.

    `reuse=False` is for a scene nobody else can ask for (a fresh sign-in scene): it is created
    at once, without looking for a stored ticket or a claim.
    """
    if not reuse:
        return await _create(store, keeper, wechat, maker, kind, scene, expire_seconds)
    for _ in range(2):
        stored = await store.get_qr_ticket(kind, scene)
        if reusable(stored, expire_seconds, maker.clock.now()):
            assert stored is not None
            return stored
        key = f"{kind}:{scene}"
        flight = maker.flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(
                _claim_and_create(store, keeper, wechat, maker, kind, scene, expire_seconds)
            )
            maker.flights[key] = flight
            flight.add_done_callback(lambda done, key=key: _landed(maker, key, done))
        # Shielded: a caller that goes away does not cancel the others' creation.
        doc = await asyncio.shield(flight)
        if reusable(doc, expire_seconds, maker.clock.now()):
            return doc
        # Joined a flight for a shorter life than this caller asked for: one more round.
    return doc


class ClaimLost(Exception):
    """This instance's claim on a creation lapsed and another instance took it."""


def _landed(maker: TicketMaker, key: str, flight: asyncio.Future[dict[str, Any]]) -> None:
    if maker.flights.get(key) is flight:
        del maker.flights[key]
    if not flight.cancelled():
        flight.exception()  # retrieved here too, so no waiter leaving makes it "unretrieved"


async def _claim_and_create(
    store: Store,
    keeper: BaseTokenKeeper,
    wechat: WeChatClient,
    maker: TicketMaker,
    kind: str,
    scene: str | int,
    expire_seconds: int | None,
) -> dict[str, Any]:
    """Create under this instance's claim, or wait (bounded) for the claimant's ticket.

    A claimant that fails releases its claim, and a waiter then takes it; one that dies leaves
    a claim that lapses after claim_ttl, within the wait."""
    key = f"{kind}:{scene}"
    deadline = time.monotonic() + maker.claim_ttl + 1
    while True:
        if await store.claim_qr_create(key, maker.owner, maker.claim_ttl):
            try:
                # The claim may have been free because its holder just stored the ticket.
                stored = await store.get_qr_ticket(kind, scene)
                if reusable(stored, expire_seconds, maker.clock.now()):
                    assert stored is not None
                    return stored
                return await _create(
                    store, keeper, wechat, maker, kind, scene, expire_seconds, claimed=True
                )
            except ClaimLost:
                pass  # it lapsed during a retry and another instance creates it: wait for that
            finally:
                await store.release_qr_claim(key, maker.owner)
        stored = await store.get_qr_ticket(kind, scene)
        if reusable(stored, expire_seconds, maker.clock.now()):
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
    store: Store,
    keeper: BaseTokenKeeper,
    wechat: WeChatClient,
    maker: TicketMaker,
    kind: str,
    scene: str | int,
    expire_seconds: int | None,
    *,
    claimed: bool = False,
) -> dict[str, Any]:
    body = create_body(kind, scene, expire_seconds)
    key = f"{kind}:{scene}"

    async def create(token: str) -> dict[str, Any]:
        # A claim is renewed before each call, a retry's too: however long the retries take,
        # no other instance creates the same code meanwhile (if one did, this one stops).
        if claimed and not await store.extend_qr_claim(key, maker.owner, maker.claim_ttl):
            raise ClaimLost(key)
        maker.budget.spend()  # each call WeChat counts, a retry's too
        return await wechat.create_qrcode(token, body)

    try:
        answer = await keeper.call(create)
    except WeChatError as exc:
        raise upstream_error(exc) from None
    expires_in = None
    if kind == "temporary":
        expires_in = int(answer.get("expire_seconds", expire_seconds))
    return await store.save_qr_ticket(
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


def cache_seconds(doc: dict[str, Any], now: float) -> int:
    """How long a client may keep the image: the ticket's remaining life, a year if permanent."""
    expires_at: datetime | None = doc.get("expiresAt")
    if expires_at is None:
        return 365 * 86400
    return max(0, int(expires_at.timestamp() - now))


def public_ticket(doc: dict[str, Any], scale: int, border: int) -> dict[str, Any]:
    expires_at = doc.get("expiresAt")
    return {
        "ticket": doc["ticket"],
        "url": doc["url"],
        "type": doc["type"],
        "scene": doc["scene"],
        "expiresAt": expires_at.isoformat() if expires_at else None,
        "image": data_uri(doc["url"], scale, border),
    }
