"""The website app's QR sign-in (网站应用微信登录): pure state.

"WeChat_Login" in this package cites WeChat's Open Platform document for it,
developers.weixin.qq.com/doc/oplatform/Website_App/WeChat_Login/Wechat_Login.html (its 请求CODE
and 通过code获取access_token sections), also quoted in ../shared/wechat-api.md §1 (the 10-minute
code, doc/knowledge/6da3dfc71a36950a) and §3 (Authorized_Interface_Calling_UNIONID.html).

connect/qrconnect opens a session shown as a QR code on the desktop; the phone scans it (the
session is then "scanned"), and the person confirms (确认登录: "confirmed", with a code) or
cancels ("cancelled"). An unanswered QR code expires. The pages and the control API share
this state (qrconnect.py); the desktop page polls it.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

from yarl import URL

# The website app's code lives 10 minutes (§1, doc/knowledge/6da3dfc71a36950a; the Official
# Account's lives 5: don't mix them up).
WEBSITE_CODE_TTL = 600
# [UNCONFIRMED] WeChat's documentation gives no lifetime for the qrconnect QR code; its page
# says "二维码已失效" and offers a refresh after a few minutes. Emulator choice: 5 minutes.
QRCONNECT_TTL = 300
# How long a finished or expired session is remembered (answering its status), then forgotten.
SESSION_MEMORY = 3600
STATUSES = ("waiting", "scanned", "confirmed", "cancelled", "expired")


@dataclass(slots=True)
class WebsiteLogin:
    """One qrconnect page's QR code and what the person at the phone did with it."""

    uuid: str
    redirect_uri: str
    state: str
    created_at: float
    expires_at: float
    status: str = "waiting"
    openid: str | None = None  # the sandbox user who scanned (their account openid)
    location: str | None = None  # where the desktop page goes: redirect_uri?code=…&state=…
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def current(self, now: float) -> str:
        if self.status in ("waiting", "scanned") and now >= self.expires_at:
            return "expired"
        return self.status

    def as_json(self, now: float) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "status": self.current(now),
            "redirectUri": self.redirect_uri,
            "state": self.state,
            "openid": self.openid,
            "location": self.location,
            "createdAt": self.created_at,
            "expiresAt": self.expires_at,
        }

    def notify(self) -> None:
        """Wake the polls waiting on this session; later polls wait on a fresh event."""
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def answer(self, status: str, location: str) -> None:
        self.status, self.location = status, location
        self.notify()


class WebsiteLoginError(Exception):
    """reason: "unknown" | "expired" | "answered"."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def back_to_site(redirect_uri: str, **params: str) -> str:
    return str(URL(redirect_uri).update_query(params))


class WebsiteLogins:
    """Every qrconnect session, by uuid, oldest first."""

    def __init__(self) -> None:
        self._by_uuid: dict[str, WebsiteLogin] = {}

    def open(self, redirect_uri: str, state: str, now: float) -> WebsiteLogin:
        self._forget(now)
        # WeChat's qrconnect uuid: 16 characters of [A-Za-z0-9_-] (its confirm?uuid=… links).
        uuid = secrets.token_urlsafe(12)
        login = WebsiteLogin(uuid, redirect_uri, state, now, now + QRCONNECT_TTL)
        self._by_uuid[uuid] = login
        return login

    def _forget(self, now: float) -> None:
        while self._by_uuid:
            oldest = next(iter(self._by_uuid.values()))
            if oldest.expires_at > now - SESSION_MEMORY:
                break
            del self._by_uuid[oldest.uuid]

    def get(self, uuid: str) -> WebsiteLogin | None:
        return self._by_uuid.get(uuid)

    def pending(self, now: float) -> list[WebsiteLogin]:
        return [s for s in self._by_uuid.values() if s.current(now) in ("waiting", "scanned")]

    def open_for_answer(self, uuid: str, now: float) -> WebsiteLogin:
        """The session the phone is answering: refused once expired or answered."""
        login = self._by_uuid.get(uuid)
        if login is None:
            raise WebsiteLoginError("unknown", "no such website login (uuid)")
        status = login.current(now)
        if status == "expired":
            raise WebsiteLoginError("expired", "二维码已失效: the QR code has expired")
        if status not in ("waiting", "scanned"):
            raise WebsiteLoginError("answered", f"this login was {status} already")
        return login

    def scan(self, uuid: str, openid: str, now: float) -> WebsiteLogin:
        """The phone opened the code: the desktop shows 扫描成功 and waits for the answer."""
        login = self.open_for_answer(uuid, now)
        login.status, login.openid = "scanned", openid
        login.notify()
        return login

    def close(self) -> None:
        """Shutting down: every waiting poll answers now."""
        for login in self._by_uuid.values():
            login.notify()
