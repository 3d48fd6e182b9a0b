"""Desktop "scan to follow and sign in": a session per QR code, scanned by WeChat's push,
confirmed by WeChat's cgi-bin/user/info.

The browser shows a temporary QR code whose scene names the session. The user scans it with
WeChat; WeChat pushes `subscribe` (with `qrscene_<scene>`, for a new follower) or `SCAN` (a
follower) to /wechat/message, which marks the session scanned at once and, after the reply,
confirms it only if user/info says that openid follows the account (else the session stays
scanned, with the reason); the browser, long-polling, then receives the app's JWT, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import secrets
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.account.follow import FollowCheck
from service.app_jwt.issuer import JwtIssuer
from service.clock import Clock
from service.config import Settings
from service.errors import ServiceError
from service.qr.codes import QrCodes
from service.signin.flow import app_url, signed_in
from service.store.queries import Store
from service.wechat.client import WeChatAPIError, WeChatError
from service.wechat.upstream import upstream_error

log = logging.getLogger(__name__)

SCENE_PREFIX = "login_"
_ALPHABET = string.ascii_letters + string.digits
# 24 of 62 symbols: ~143 bits, unguessable, and within scene_str's 64 characters.
SCENE_RANDOM_LENGTH = 24
LOGIN_SCENE_PATTERN = re.compile(rf"{SCENE_PREFIX}[A-Za-z0-9]{{{SCENE_RANDOM_LENGTH}}}")
MAX_WAIT = 30  # seconds a long poll may hold a request (below common proxy timeouts)
# How often an instance reads the sessions' changes made on other instances (while polls wait
# here), and how far back each read looks. A quarter second: with the push on another instance
# and 10,000 polls waiting, p99 from push to answer 1.07-1.18 s at 0.5 s, 0.66 s at 0.25 s,
# for 0.2% of a core more while nothing changes (one indexed range query a read).
WATCH_INTERVAL = 0.25
WATCH_OVERLAP = 2.0
# A poll that ended with nothing new leaves the session as it read it for the client's next
# poll, this long: that poll then reads nothing (10,000 polls renewed together were 20,000
# reads in a burst on pymongo's path, bench/README.md). Any change notified drops it.
QUIET_KEEP = 5.0
# A poll with nothing new answers somewhere in the last 30% of its wait: 10,000 polls started
# together (a restart, a benchmark) otherwise come back together every 30 s, 20,000 HTTP
# exchanges in a burst that delayed the sign-ins confirmed meanwhile by seconds when the push
# landed on another instance (p99 3.1 s over a tenth, 0.92 s over 30%: bench/README.md). It
# costs a sixth more idle polls (one every 25.5 s on average instead of 30).
POLL_SPREAD = 0.3
# Store reads of polls at once: pymongo keeps the buffers of its peak of operations in flight
# (10,000 reads at once: +108 MiB, kept; 100: +1 MiB).
POLL_READS = 100
QR_LOGIN_SCOPE = "snsapi_base"  # the scan proves the openid, as silent authorization does

# Why a scanned session was not confirmed (`problem.code` of its status answer). A push names
# its openid in plain text and, in plain mode, its signature does not cover the body, so only
# WeChat's own cgi-bin/user/info answering subscribe 1 for that openid confirms a sign-in.
NOT_FOLLOWING = "NOT_FOLLOWING"  # subscribe 0: not (or no longer) a follower
UNKNOWN_OPENID = "UNKNOWN_OPENID"  # errcode 40003: not one of this account's users
FOLLOW_CHECK_FAILED = "FOLLOW_CHECK_FAILED"  # WeChat failed or did not answer


class QrLoginNotFound(ServiceError):
    status = 404
    name = "QR_LOGIN_NOT_FOUND"


def new_scene() -> str:
    return SCENE_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(SCENE_RANDOM_LENGTH))


def is_login_scene(scene: str) -> bool:
    return scene.startswith(SCENE_PREFIX)


class LoginWaiters:
    """Wakes this instance's long polls when their session changes.

    Each wait has its own future, resolved once by `notify` and then forgotten, so a woken
    poll that finds nothing new waits again instead of returning at once forever (a shared
    event left set made several polls on one scanned session spin). A push landing here
    notifies at once; one landing on another instance is learnt by `watch`, which reads the
    sessions' recent changes once per WATCH_INTERVAL for all of this instance's polls (they
    re-read the store each second themselves before: 10,000 waiting polls were 10,000 reads
    a second while nothing happened).
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._waiting: dict[str, set[asyncio.Future[bool]]] = {}
        self._closing = False
        # scene -> (the account's store it was read from, the session as read, when)
        self._quiet: dict[str, tuple[str, dict[str, Any], float]] = {}
        self.reads = asyncio.Semaphore(POLL_READS)

    @property
    def closing(self) -> bool:
        """True once the service shuts down: polls answer their current state at once."""
        return self._closing

    def notify(self, scene: str) -> None:
        self._quiet.pop(scene, None)
        for future in self._waiting.pop(scene, ()):
            if not future.done():
                future.set_result(True)

    def keep_quiet(self, scene: str, owner: str, doc: dict[str, Any]) -> None:
        """`doc` is the session as far as this instance knows (no change notified since it was
        read, its listener registered before): the next poll may take it instead of a read."""
        self._quiet[scene] = (owner, doc, self._clock.now())

    def take_quiet(self, scene: str, owner: str) -> dict[str, Any] | None:
        found = self._quiet.pop(scene, None)
        if found is None or found[0] != owner or self._clock.now() - found[2] > QUIET_KEEP:
            return None
        return found[1]

    def _forget_quiet(self) -> None:
        limit = self._clock.now() - QUIET_KEEP
        for scene in [scene for scene, (_, _, at) in self._quiet.items() if at < limit]:
            del self._quiet[scene]

    def close(self) -> None:
        """Wake every poll for good, before the server waits out SHUTDOWN_TIMEOUT."""
        self._closing = True
        for scene in list(self._waiting):
            self.notify(scene)

    async def watch(self, store: Store, clock: Clock, interval: float = WATCH_INTERVAL) -> None:
        """Until cancelled: notify the polls waiting here of changes recorded by any instance
        (Store.record_qr_change), read once per `interval` while any poll waits, nothing read
        while none does. Each read starts where the last one that succeeded did (a busy or
        failing instance reads late, and then further back, never past a change), WATCH_OVERLAP
        seconds earlier so a writer whose clock lags a little is not missed; changes are told
        apart by their ids. After a pause the read goes back far enough for any poll or
        left-over read before the pause (MAX_WAIT + QUIET_KEEP)."""
        seen: dict[Any, float] = {}
        last_read: float | None = None
        while True:
            await asyncio.sleep(interval)
            self._forget_quiet()
            if not self._waiting:
                continue
            now = clock.now()
            start = now if last_read is None else max(last_read, now - MAX_WAIT - QUIET_KEEP)
            since = start - WATCH_OVERLAP
            try:
                changes = await store.recent_qr_changes(since)
            except Exception as exc:  # MongoDB away: the polls still answer at their deadline
                log.warning("reading the sign-in sessions' changes failed: %s", exc)
                continue
            last_read = now
            for change in changes:
                if change["_id"] not in seen:
                    seen[change["_id"]] = since
                    self.notify(change["scene"])
            for key in [key for key, at in seen.items() if at < since - WATCH_OVERLAP]:
                del seen[key]

    @contextlib.contextmanager
    def listening(self, scene: str) -> Iterator[asyncio.Future[bool]]:
        """A future resolved True by the next `notify(scene)` or `close()` (False: `until`'s
        time was up). Registered before the poll reads its session, so a change notified while
        the read is under way (the watcher may read the change feed meanwhile) wakes the poll
        instead of being missed."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._closing:
            future.set_result(True)
        waiting = self._waiting.setdefault(scene, set())
        waiting.add(future)
        try:
            yield future
        finally:
            waiting.discard(future)
            if not waiting and self._waiting.get(scene) is waiting:
                del self._waiting[scene]  # the last waiter leaves no trace


async def until(change: asyncio.Future[bool], seconds: float) -> None:
    """`change` resolved, or False after `seconds`: one timer, where asyncio.wait's set, waiter
    and callbacks per poll were 9 MiB of what 10,000 waiting polls held."""
    timer = asyncio.get_running_loop().call_later(seconds, _time_up, change)
    try:
        await change
    finally:
        timer.cancel()


def _time_up(change: asyncio.Future[bool]) -> None:
    if not change.done():
        change.set_result(False)


@dataclass(frozen=True)
class Started:
    """A new sign-in session as its starter sees it, never the stored document."""

    scene: str
    ticket: str
    url: str
    expires_at: datetime


@dataclass(frozen=True, kw_only=True)
class QrSignIn:
    """Desktop sign-in sessions: started with a fresh code, scanned by a push, confirmed by
    WeChat's follow check, handed out once to the long poll."""

    settings: Settings
    store: Store
    codes: QrCodes
    follow: FollowCheck
    jwt: JwtIssuer
    clock: Clock
    waiters: LoginWaiters

    async def start(self, redirect_uri: str | None) -> Started:
        """A new session and its temporary code, living QR_LOGIN_TTL seconds."""
        if redirect_uri:
            redirect_uri = app_url(self.settings, "redirectUri", redirect_uri)
        scene = new_scene()
        ticket = await self.codes.obtain(
            "temporary", scene, self.settings.qr_login_ttl, reuse=False
        )
        doc = await self.store.create_qr_login(
            scene,
            ticket=ticket.ticket,
            url=ticket.url,
            ttl=self.settings.qr_login_ttl,
            redirect_uri=redirect_uri or None,
        )
        return Started(scene, ticket.ticket, ticket.url, doc["expiresAt"])

    @staticmethod
    def _state_of(doc: dict[str, Any], now: float) -> str:
        if doc["status"] in ("pending", "scanned") and doc["expiresAt"].timestamp() <= now:
            return "expired"
        status: str = doc["status"]
        return status

    async def status(self, scene: str, wait: float) -> dict[str, Any]:
        """The session's state; waits up to `wait` seconds for it to change (pending to scanned,
        a problem found, confirmed, expired), answering at once when the service shuts down."""
        spread = 1 - POLL_SPREAD * random.random()  # noqa: S311 - timing, not a secret
        deadline = time.monotonic() + min(wait, MAX_WAIT) * spread
        first: dict[str, Any] | None = None
        owner = self.store.appid
        doc = self.waiters.take_quiet(scene, owner)
        # A left-over is used by one poll only: that poll reads the session before it answers
        # at its deadline, so a change this instance never heard of (a change feed read that
        # failed) is answered one poll late at worst, never passed from poll to poll.
        left_over = doc is not None
        while True:
            with self.waiters.listening(scene) as change:
                if doc is None:
                    async with self.waiters.reads:
                        doc = await self.store.get_qr_login(scene)
                if doc is None or (doc["status"] == "confirmed" and doc["handedOut"]):
                    raise QrLoginNotFound(
                        "no such sign-in session, or its token was already handed out",
                        field="scene",
                        value=scene,
                    )
                status = self._state_of(doc, self.clock.now())
                if status == "confirmed":
                    return await self._hand_out(scene)
                answer = self._public(doc, status)
                if first is None:
                    first = answer
                if status == "expired" or answer != first or change.done():
                    return answer
                # Woken by a change (here, or read by LoginWaiters.watch), or at the deadline
                # or the session's end.
                remaining = deadline - time.monotonic()
                until_expiry = doc["expiresAt"].timestamp() - self.clock.now()
                if remaining > 0:
                    await until(change, max(0.0, min(remaining, until_expiry)))
                if not (change.done() and change.result()):  # not woken: the time is up
                    if not left_over:
                        # Nothing changed that this instance heard of: the session as read,
                        # expired perhaps, and left for the client's next poll.
                        self.waiters.keep_quiet(scene, owner, doc)
                        return self._public(doc, self._state_of(doc, self.clock.now()))
                    left_over = False  # read it once, then answer
            if self.waiters.closing:
                return answer
            doc = None  # woken, or a left-over at its deadline: read again

    @staticmethod
    def _public(doc: dict[str, Any], status: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": status,
            "scene": doc["_id"],
            "expiresAt": doc["expiresAt"].isoformat(),
        }
        if status == "scanned":
            problem = doc.get("problem")
            # WeChat sends a scan event only for a (new) follower; user/info may say otherwise.
            body["subscribed"] = not problem or problem["code"] != NOT_FOLLOWING
            body["newFollower"] = doc.get("newFollower", False)
            body["problem"] = problem or None
        return body

    async def _hand_out(self, scene: str) -> dict[str, Any]:
        doc = await self.store.hand_out_qr_login(scene)
        if doc is None:  # another poll took it a moment ago
            raise QrLoginNotFound(
                "this sign-in's token was already handed out", field="scene", value=scene
            )
        user = await self.store.get_user(doc["openid"]) or {"openid": doc["openid"]}
        return {
            "status": "confirmed",
            **signed_in(self.jwt, user, QR_LOGIN_SCOPE, doc["redirectUri"]),
        }

    async def scanned(self, scene: str, openid: str, new: bool) -> bool:
        """Record the scan (fast, before WeChat gets its reply); False if no live session."""
        doc = await self.store.qr_login_scanned(scene, openid, new_follower=new)
        if doc is None:
            log.info("scan of an unknown, expired or already scanned sign-in code")
            return False
        self.waiters.notify(scene)
        await self.store.record_qr_change(scene)
        return True

    async def confirm(self, scene: str, openid: str) -> None:
        """After the reply: confirm the session only once WeChat's cgi-bin/user/info says this
        openid follows the account (subscribe 1); otherwise leave it scanned, saying why.

        The push alone proves nothing about the openid: in plain mode its signature covers no
        body, so anyone holding one signed query could name any openid. WeChat's own answer does.
        """
        try:
            problem = await self._follow_problem(openid)
        except Exception:  # a fault of ours: the waiting page must still learn why, not hang
            log.exception("QR sign-in follow check failed unexpectedly")
            problem = _check_failed(ServiceError("an internal error; see the service's log"))
        if problem is not None:
            log.warning("QR sign-in not confirmed: %s", problem["code"])
            await self.store.qr_login_problem(scene, openid, problem)
        else:
            await self.store.record_login(openid, None, None)
            await self.store.qr_login_confirmed(scene, openid)
        self.waiters.notify(scene)
        await self.store.record_qr_change(scene)

    async def _follow_problem(self, openid: str) -> dict[str, str] | None:
        """None if WeChat says `openid` follows the account, else the code and message to show."""
        try:
            follow = await self.follow.read(openid)
        except WeChatAPIError as exc:
            if exc.errcode == 40003:
                return {
                    "code": UNKNOWN_OPENID,
                    "message": "WeChat does not know the account that scanned for this Official "
                    "Account (errcode 40003); the sign-in was not confirmed",
                }
            return _check_failed(upstream_error(exc))
        except WeChatError as exc:
            return _check_failed(upstream_error(exc))
        except ServiceError as exc:  # no base token to be had
            return _check_failed(exc)
        if not follow["subscribed"]:
            return {
                "code": NOT_FOLLOWING,
                "message": "WeChat says the account that scanned does not follow the Official "
                "Account; follow it and scan a new code",
            }
        return None


def _check_failed(reason: ServiceError) -> dict[str, str]:
    return {
        "code": FOLLOW_CHECK_FAILED,
        "message": "WeChat could not confirm that the account that scanned follows the Official "
        f"Account ({reason.message}); scan a new code",
    }
