"""Desktop "scan to follow and sign in": a session per QR code, confirmed by WeChat's push.

The browser shows a temporary QR code whose scene names the session. The user scans it with
WeChat; WeChat pushes `subscribe` (with `qrscene_<scene>`, for a new follower) or `SCAN` (a
follower) to /wechat/message, which marks the session scanned at once and confirms it after
reading the profile; the browser, long-polling, then receives the app's JWT, once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
import time
from typing import Any

from .auth import JwtIssuer
from .clock import Clock
from .config import Settings
from .errors import ServiceError
from .follow import check_follow
from .oauth import app_url, signed_in
from .qrcode import obtain_ticket
from .store import Store
from .tokens import BaseTokenKeeper
from .wechat.client import WeChatClient

log = logging.getLogger(__name__)

SCENE_PREFIX = "login_"
_ALPHABET = string.ascii_letters + string.digits
MAX_WAIT = 30  # seconds a long poll may hold a request (below common proxy timeouts)
QR_LOGIN_SCOPE = "snsapi_base"  # the scan proves the openid, as silent authorization does


class QrLoginNotFound(ServiceError):
    status = 404
    name = "QR_LOGIN_NOT_FOUND"


def new_scene() -> str:
    # 24 of 62 symbols: ~143 bits, unguessable, and within scene_str's 64 characters.
    return SCENE_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def is_login_scene(scene: str) -> bool:
    return scene.startswith(SCENE_PREFIX)


class LoginWaiters:
    """Wakes this instance's long polls when a push for their session arrives here.

    A push may land on another instance; waiters also re-read the store every second.
    """

    def __init__(self) -> None:
        self._events: dict[str, tuple[asyncio.Event, int]] = {}

    def notify(self, scene: str) -> None:
        if scene in self._events:
            self._events[scene][0].set()

    async def wait(self, scene: str, seconds: float) -> None:
        event, waiting = self._events.get(scene, (asyncio.Event(), 0))
        self._events[scene] = (event, waiting + 1)
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            event, waiting = self._events[scene]
            if waiting <= 1:
                del self._events[scene]  # the last waiter leaves no trace
            else:
                self._events[scene] = (event, waiting - 1)


async def start_qr_login(
    store: Store,
    keeper: BaseTokenKeeper,
    wechat: WeChatClient,
    clock: Clock,
    settings: Settings,
    redirect_uri: str | None,
) -> dict[str, Any]:
    if redirect_uri:
        redirect_uri = app_url(settings, "redirectUri", redirect_uri)
    scene = new_scene()
    ticket = await obtain_ticket(
        store, keeper, wechat, clock, "temporary", scene, settings.qr_login_ttl, reuse=False
    )
    return await store.create_qr_login(
        scene,
        ticket=ticket["ticket"],
        url=ticket["url"],
        ttl=settings.qr_login_ttl,
        redirect_uri=redirect_uri or None,
    )


def _status(doc: dict[str, Any], now: float) -> str:
    if doc["status"] in ("pending", "scanned") and doc["expiresAt"].timestamp() <= now:
        return "expired"
    return doc["status"]


async def login_status(
    store: Store,
    issuer: JwtIssuer,
    clock: Clock,
    waiters: LoginWaiters,
    scene: str,
    wait: float,
) -> dict[str, Any]:
    """The session's state; waits up to `wait` seconds while it is pending or scanned."""
    deadline = time.monotonic() + min(wait, MAX_WAIT)
    while True:
        doc = await store.get_qr_login(scene)
        if doc is None or (doc["status"] == "confirmed" and doc["handedOut"]):
            raise QrLoginNotFound(
                "no such sign-in session, or its token was already handed out",
                field="scene",
                value=scene,
            )
        status = _status(doc, clock.now())
        if status == "confirmed":
            return await _hand_out(store, issuer, scene)
        remaining = deadline - time.monotonic()
        if status == "expired" or remaining <= 0:
            return _public(doc, status)
        await waiters.wait(scene, min(remaining, 1.0))


def _public(doc: dict[str, Any], status: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": status,
        "scene": doc["_id"],
        "expiresAt": doc["expiresAt"].isoformat(),
    }
    if status == "scanned":
        body["subscribed"] = True  # WeChat sends a scan event only for a (new) follower
        body["newFollower"] = doc.get("newFollower", False)
    return body


async def _hand_out(store: Store, issuer: JwtIssuer, scene: str) -> dict[str, Any]:
    doc = await store.hand_out_qr_login(scene)
    if doc is None:  # another poll took it a moment ago
        raise QrLoginNotFound(
            "this sign-in's token was already handed out", field="scene", value=scene
        )
    user = await store.get_user(doc["openid"]) or {"openid": doc["openid"]}
    return {"status": "confirmed", **signed_in(issuer, user, QR_LOGIN_SCOPE, doc["redirectUri"])}


async def scanned(store: Store, waiters: LoginWaiters, scene: str, openid: str, new: bool) -> bool:
    """Record the scan (fast, before WeChat gets its reply); False if no live session."""
    doc = await store.qr_login_scanned(scene, openid, new_follower=new)
    if doc is None:
        log.info("scan of an unknown, expired or already scanned sign-in code")
        return False
    waiters.notify(scene)
    return True


async def confirm(
    store: Store,
    keeper: BaseTokenKeeper,
    wechat: WeChatClient,
    waiters: LoginWaiters,
    scene: str,
    openid: str,
) -> None:
    """After the reply: read the follower's record, sign the user in, confirm the session."""
    try:
        await check_follow(keeper, wechat, store, openid)
    except ServiceError as exc:
        # The openid is proven by WeChat's signed push; the profile can come later.
        log.warning("QR sign-in continues without the follower record: %s", exc.message)
    await store.record_login(openid, None, None)
    await store.qr_login_confirmed(scene, openid)
    waiters.notify(scene)
