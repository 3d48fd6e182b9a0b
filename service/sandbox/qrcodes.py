"""Parametric QR codes (§8 of ../shared/wechat-api.md): tickets, their urls and scenes.

Pure state, no HTTP: SandboxWeChat.create_qrcode checks the request and its errcodes, the API
module draws the image for showqrcode.
"""

from __future__ import annotations

import base64
import io
import secrets
import string
import struct
from dataclasses import dataclass
from typing import Any

import segno

TEMPORARY = ("QR_SCENE", "QR_STR_SCENE")
PERMANENT = ("QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE")
ACTION_NAMES = TEMPORARY + PERMANENT
STR_SCENES = ("QR_STR_SCENE", "QR_LIMIT_STR_SCENE")
DEFAULT_EXPIRE_SECONDS = 60  # §8: the current doc's default (older copies said 30)
MAX_EXPIRE_SECONDS = 2_592_000  # §8: 30 days
PERMANENT_LIMIT = 100_000  # §8: at most 100,000 permanent codes
SCENE_ID_MAX = 2**32 - 1  # §8: QR_SCENE's scene_id is a 32-bit non-zero integer
LIMIT_SCENE_ID_MAX = 100_000  # §8: QR_LIMIT_SCENE's scene_id is 1-100000
SCENE_STR_MAX = 64  # §8: scene_str is 1-64 characters
URL_PREFIX = "http://weixin.qq.com/q/"
_ALNUM = string.ascii_letters + string.digits
_SWEEP_AT = 4096


class PermanentLimitReached(Exception):
    """The account already has PERMANENT_LIMIT permanent codes."""


@dataclass(frozen=True, slots=True)
class QrTicket:
    """One code: the same for every user who scans it (nothing in it names an openid)."""

    ticket: str
    action_name: str
    scene: int | str  # scene_id for QR_SCENE / QR_LIMIT_SCENE, scene_str otherwise
    url: str
    created_at: float
    expires_at: float | None  # None: permanent
    appid: str = ""  # the Official Account whose code it is: a scan goes to that account

    @property
    def permanent(self) -> bool:
        return self.expires_at is None

    def live(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at

    def as_json(self) -> dict[str, Any]:
        return {
            "ticket": self.ticket,
            "action_name": self.action_name,
            "scene": self.scene,
            "url": self.url,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "appid": self.appid,
        }


def _ticket(url: str, created_at: int, expire_seconds: int) -> str:
    """A ticket shaped like WeChat's: base64 of a small binary record that holds the url, the
    creation time and the lifetime (decoded from real tickets: 0x81 0x01 + 3 bytes, zeros,
    then tag 1 = the NUL-terminated url, tag 2 = created (LE u32), tag 3 = expire (LE u32)).

    §8 says to URL-encode the ticket. The third byte is chosen so that every emulator ticket
    starts "gQF+", "gQG+" or "gQH+" (real ones start gQF, gQG, gQH): an unencoded "+" turns
    into a space in a query string, so a client that forgets to encode gets the 404 every
    time, not just for the real tickets that happen to hold a "+".
    """
    body = url.encode() + b"\0"
    record = (
        b"\x81\x01"
        + bytes([(1 + secrets.randbelow(3)) << 6 | 62])
        + secrets.token_bytes(2)
        + bytes(7)
        + b"\x01"
        + bytes([len(body)])
        + body
        + b"\x02\x04"
        + struct.pack("<I", created_at & 0xFFFFFFFF)
        + b"\x03\x04"
        + struct.pack("<I", expire_seconds)
    )
    return base64.b64encode(record).decode()


def _url() -> str:
    """§8: http://weixin.qq.com/q/ and 22 characters ("02" and 20 more in current codes)."""
    return URL_PREFIX + "02" + "".join(_ALNUM[b % len(_ALNUM)] for b in secrets.token_bytes(20))


class QrCodes:
    """One account's tickets, by ticket and by url; permanent codes also by scene."""

    def __init__(self, appid: str = "") -> None:
        self.appid = appid
        self._by_ticket: dict[str, QrTicket] = {}
        self._by_url: dict[str, QrTicket] = {}
        self._permanent: dict[tuple[str, int | str], QrTicket] = {}

    @property
    def permanent_count(self) -> int:
        return len(self._permanent)

    def create(
        self, action_name: str, scene: int | str, now: float, expire_seconds: int | None
    ) -> QrTicket:
        """A new code, or for a permanent scene that already has one, that same code.

        Emulator choice (§8 is silent): a permanent code is one per scene value, so asking
        again for the same QR_LIMIT_(STR_)SCENE answers the same ticket and url and does not
        count twice against the 100,000 (QR_LIMIT_SCENE's 1-100000 range is that cap).
        """
        if action_name in PERMANENT:
            existing = self._permanent.get((action_name, scene))
            if existing is not None:
                return existing
            if len(self._permanent) >= PERMANENT_LIMIT:
                raise PermanentLimitReached
        elif len(self._by_ticket) >= _SWEEP_AT:
            self._sweep(now)
        created = int(now)
        url = _url()
        while url in self._by_url:
            url = _url()
        ticket = _ticket(url, created, expire_seconds or 0)
        code = QrTicket(
            ticket=ticket,
            action_name=action_name,
            scene=scene,
            url=url,
            created_at=now,
            expires_at=None if action_name in PERMANENT else now + (expire_seconds or 0),
            appid=self.appid,
        )
        self._by_ticket[ticket] = code
        self._by_url[url] = code
        if code.permanent:
            self._permanent[(action_name, scene)] = code
        return code

    def by_ticket(self, ticket: str) -> QrTicket | None:
        return self._by_ticket.get(ticket)

    def by_url(self, url: str) -> QrTicket | None:
        if url.startswith("https://"):  # the same code whichever scheme the scanner saw
            url = "http://" + url.removeprefix("https://")
        return self._by_url.get(url)

    def _sweep(self, now: float) -> None:
        """Forget temporary codes a day past their end; they then count as unknown."""
        cutoff = now - 86400
        stale = [
            c
            for c in self._by_ticket.values()
            if c.expires_at is not None and c.expires_at < cutoff
        ]
        for code in stale:
            del self._by_ticket[code.ticket]
            del self._by_url[code.url]


def qr_png(url: str) -> bytes:
    """The code's image. WeChat's showqrcode sends a JPEG (`image/jpg`, §8); segno writes PNG
    (JPEG would need Pillow), and either is an image of the same code."""
    buffer = io.BytesIO()
    segno.make_qr(url, error="m").save(buffer, kind="png", scale=8, border=4)
    return buffer.getvalue()
