"""What WeChat remembers: authorization codes, users' web grants, call counters and quotas.

Pure state and rules, no HTTP, so the pages and the API share one source of truth. Each rule
cites ../shared/wechat-api.md (§ numbers); where WeChat's documentation is silent the choice
made is the one that document lists under "Emulator choices".
"""

from __future__ import annotations

import secrets
import string
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..clock import Clock
from .faults import Faults
from .users import USERS_BY_OPENID, SandboxUser

CODE_TTL = 300  # §1: a code expires after 5 minutes if unused
WEB_ACCESS_TOKEN_TTL = 7200  # §2: expires_in 7200
REFRESH_TOKEN_TTL = 30 * 86400  # §3: 30 days, never extended
SNS_CALLS_PER_MINUTE = 50_000  # §2, §3: rate limit 50,000/min
USED_CODE_MEMORY = 3600  # how long a used code is remembered, to answer 40163 rather than 40029

SCOPES = ("snsapi_base", "snsapi_userinfo")
_ALNUM = string.ascii_letters + string.digits


class ApiError(Exception):
    """An answer of {"errcode", "errmsg"}; the HTTP layer adds WeChat's rid suffix."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


# errcode, errmsg as WeChat sends them (§2-§5, §12; the global errcode list for the 4100x).
ACCESS_TOKEN_MISSING = (41001, "access_token missing")
APPID_MISSING = (41002, "appid missing")
REFRESH_TOKEN_MISSING = (41003, "refresh_token missing")
SECRET_MISSING = (41004, "appsecret missing")
CODE_MISSING = (41008, "missing code")
OPENID_MISSING = (41009, "missing openid")
INVALID_CREDENTIAL = (40001, "invalid credential, access_token is invalid or not latest")
INVALID_GRANT_TYPE = (40002, "invalid grant_type")
INVALID_OPENID = (40003, "invalid openid")
INVALID_APPID = (40013, "invalid appid")
INVALID_ACCESS_TOKEN = (40014, "invalid access_token")
INVALID_CODE = (40029, "invalid code")
INVALID_REFRESH_TOKEN = (40030, "invalid refresh_token")
INVALID_SECRET = (40125, "invalid appsecret")
CODE_USED = (40163, "code been used")
ACCESS_TOKEN_EXPIRED = (42001, "access_token expired")
REFRESH_TOKEN_EXPIRED = (42002, "refresh_token timeout")  # English errmsg unconfirmed (§3)
MINUTE_QUOTA = (45011, "api minute-quota reach limit  mustslower  retry next minute")
API_UNAUTHORIZED = (48001, "api unauthorized")


def fail(error: tuple[int, str]) -> ApiError:
    return ApiError(*error)


def random_token(length: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """The one Official Account the emulator knows, and its 网页授权域名."""

    appid: str
    secret: str
    authorized_domain: str


@dataclass(slots=True)
class AuthorizationCode:
    openid: str
    scope: str
    expires_at: float
    used: bool = False


@dataclass(slots=True)
class WebGrant:
    """One user authorization: its refresh_token and the current web access_token."""

    openid: str
    scope: str
    refresh_token: str
    refresh_expires_at: float
    access_token: str
    access_expires_at: float

    def token_answer(self, now: float) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "expires_in": max(0, round(self.access_expires_at - now)),
            "refresh_token": self.refresh_token,
            "openid": self.openid,
            "scope": self.scope,
        }


class SandboxWeChat:
    """The emulator's state: users, codes, grants, injected faults and per-path call counts."""

    def __init__(self, config: SandboxConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.users: dict[str, SandboxUser] = dict(USERS_BY_OPENID)
        self.faults = Faults()
        self.stats: Counter[str] = Counter()
        self._codes: dict[str, AuthorizationCode] = {}
        self._grants_by_refresh: dict[str, WebGrant] = {}
        self._grants_by_access: dict[str, WebGrant] = {}
        self._minute_calls: dict[str, tuple[int, int]] = {}

    # The browser side: /connect/oauth2/authorize hands out codes.

    def issue_code(self, openid: str, scope: str) -> str:
        """A new code for every authorization (§1), valid five minutes, single use."""
        now = self.clock.now()
        self._forget_stale_codes(now)
        code = random_token(32)
        self._codes[code] = AuthorizationCode(openid, scope, now + CODE_TTL)
        return code

    def _forget_stale_codes(self, now: float) -> None:
        if len(self._codes) < 1024:
            return
        cutoff = now - USED_CODE_MEMORY
        self._codes = {c: v for c, v in self._codes.items() if v.expires_at > cutoff}

    # The API side.

    def count_call(self, path: str, per_minute: int) -> None:
        """Count a call, and refuse it past the per-minute limit (45011, §12)."""
        self.stats[path] += 1
        minute = int(self.clock.now() // 60)
        window, calls = self._minute_calls.get(path, (minute, 0))
        if window != minute:
            window, calls = minute, 0
        calls += 1
        self._minute_calls[path] = (window, calls)
        if calls > per_minute:
            raise fail(MINUTE_QUOTA)

    def _check_app(self, appid: str | None) -> None:
        if not appid:
            raise fail(APPID_MISSING)
        if not secrets.compare_digest(appid.encode(), self.config.appid.encode()):
            raise fail(INVALID_APPID)

    def exchange_code(
        self, appid: str | None, secret: str | None, code: str | None, grant_type: str | None
    ) -> dict[str, Any]:
        """sns/oauth2/access_token (§2)."""
        self._check_app(appid)
        if not secret:
            raise fail(SECRET_MISSING)
        if not secrets.compare_digest(secret.encode(), self.config.secret.encode()):
            raise fail(INVALID_SECRET)
        if grant_type != "authorization_code":
            raise fail(INVALID_GRANT_TYPE)
        if not code:
            raise fail(CODE_MISSING)
        now = self.clock.now()
        issued = self._codes.get(code)
        if issued is None:
            raise fail(INVALID_CODE)
        if issued.used:
            raise fail(CODE_USED)
        if now >= issued.expires_at:
            raise fail(INVALID_CODE)  # §2 emulator choice: 40029, not 42003
        issued.used = True
        grant = WebGrant(
            openid=issued.openid,
            scope=issued.scope,
            refresh_token=random_token(86, _ALNUM + "-_"),
            refresh_expires_at=now + REFRESH_TOKEN_TTL,
            access_token=random_token(86, _ALNUM + "-_"),
            access_expires_at=now + WEB_ACCESS_TOKEN_TTL,
        )
        self._grants_by_refresh[grant.refresh_token] = grant
        self._grants_by_access[grant.access_token] = grant
        answer = grant.token_answer(now)
        user = self.users[issued.openid]
        # §2: unionid only for snsapi_userinfo, and only for accounts bound to an Open Platform.
        if issued.scope == "snsapi_userinfo" and user.unionid:
            answer["unionid"] = user.unionid
        return answer

    def refresh(
        self, appid: str | None, grant_type: str | None, refresh_token: str | None
    ) -> dict[str, Any]:
        """sns/oauth2/refresh_token (§3): no secret; the refresh_token keeps its deadline."""
        self._check_app(appid)
        if grant_type != "refresh_token":
            raise fail(INVALID_GRANT_TYPE)
        if not refresh_token:
            raise fail(REFRESH_TOKEN_MISSING)
        grant = self._grants_by_refresh.get(refresh_token)
        if grant is None:
            raise fail(INVALID_REFRESH_TOKEN)
        now = self.clock.now()
        if now >= grant.refresh_expires_at:
            raise fail(REFRESH_TOKEN_EXPIRED)
        if now < grant.access_expires_at:
            # Still valid: the same access_token with its expiry reset.
            grant.access_expires_at = now + WEB_ACCESS_TOKEN_TTL
        else:
            del self._grants_by_access[grant.access_token]
            grant.access_token = random_token(86, _ALNUM + "-_")
            grant.access_expires_at = now + WEB_ACCESS_TOKEN_TTL
            self._grants_by_access[grant.access_token] = grant
        return grant.token_answer(now)

    def _web_grant(self, access_token: str | None, unknown: tuple[int, str]) -> WebGrant:
        if not access_token:
            raise fail(ACCESS_TOKEN_MISSING)
        grant = self._grants_by_access.get(access_token)
        if grant is None:
            raise fail(unknown)
        if self.clock.now() >= grant.access_expires_at:
            raise fail(ACCESS_TOKEN_EXPIRED)
        return grant

    def user_info(self, access_token: str | None, openid: str | None) -> dict[str, Any]:
        """sns/userinfo (§4), as answered since October 2021: no gender, no region."""
        grant = self._web_grant(access_token, INVALID_CREDENTIAL)
        if not openid:
            raise fail(OPENID_MISSING)
        if openid != grant.openid:
            raise fail(INVALID_OPENID)
        if grant.scope != "snsapi_userinfo":
            raise fail(API_UNAUTHORIZED)
        user = self.users[grant.openid]
        answer: dict[str, Any] = {
            "openid": user.openid,
            "nickname": user.nickname,
            "sex": 0,
            "language": "",
            "city": "",
            "province": "",
            "country": "",
            "headimgurl": user.headimgurl,
            "privilege": [],
        }
        if user.unionid:
            answer["unionid"] = user.unionid
        return answer

    def check_web_token(self, access_token: str | None, openid: str | None) -> dict[str, Any]:
        """sns/auth (§5): 0 "ok" for a valid token of that openid."""
        grant = self._web_grant(access_token, INVALID_ACCESS_TOKEN)
        if openid != grant.openid:
            raise fail(INVALID_OPENID)
        return {"errcode": 0, "errmsg": "ok"}


SANDBOX_KEY = web.AppKey("sandbox_wechat", SandboxWeChat)
