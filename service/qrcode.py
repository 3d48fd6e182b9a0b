"""The account's parametric QR codes: validated, created through WeChat, cached, drawn by segno.

The image is drawn here from the `url` WeChat returns, so no call to showqrcode is needed, and a
ticket is kept per (type, scene) and reused, so repeated requests do not spend WeChat's quota.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import segno

from .clock import Clock
from .errors import InvalidParameter, MissingParameter
from .store import Store
from .tokens import BaseTokenKeeper
from .upstream import upstream_error
from .wechat.client import WeChatClient, WeChatError

# wechat-api.md §8.
MAX_TEMPORARY_SCENE_ID = 2**32 - 1  # "32-bit non-zero integer"; positive here
MAX_PERMANENT_SCENE_ID = 100_000
MAX_SCENE_STR = 64
MIN_EXPIRE = 60
MAX_EXPIRE = 2_592_000  # 30 days
FORMATS = ("png", "svg", "json")
TYPES = ("temporary", "permanent")
DIGITS = re.compile(r"[0-9]{1,10}")


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
    clock: Clock,
    kind: str,
    scene: str | int,
    expire_seconds: int | None,
    *,
    reuse: bool = True,
) -> dict[str, Any]:
    if reuse:
        stored = await store.get_qr_ticket(kind, scene)
        if reusable(stored, expire_seconds, clock.now()):
            return stored
    body = create_body(kind, scene, expire_seconds)
    try:
        answer = await keeper.call(lambda token: wechat.create_qrcode(token, body))
    except WeChatError as exc:
        raise upstream_error(exc) from None
    expires_in = int(answer["expire_seconds"]) if kind == "temporary" else None
    if kind == "temporary" and "expire_seconds" not in answer:
        expires_in = expire_seconds
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
