"""What WeChat remembers: codes, users' web grants, base access_tokens, call counters and quotas.

Pure state and rules, no HTTP, so the pages and the API share one source of truth. Each rule
cites ../shared/wechat-api.md (§ numbers); where WeChat's documentation is silent the choice
made is the one that document lists under "Emulator choices".
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import secrets
import string
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from service.clock import Clock
from service.sandbox.faults import Faults
from service.sandbox.qrcodes import (
    ACTION_NAMES,
    DEFAULT_EXPIRE_SECONDS,
    LIMIT_SCENE_ID_MAX,
    MAX_EXPIRE_SECONDS,
    SCENE_ID_MAX,
    SCENE_STR_MAX,
    STR_SCENES,
    TEMPORARY,
    PermanentLimitReached,
    QrCodes,
    QrTicket,
)
from service.sandbox.records import PushRecord
from service.sandbox.users import (
    USERS_BY_OPENID,
    SandboxUser,
    account_openid,
    account_unionid,
    website_openid,
    website_unionid,
)
from service.sandbox.website import WEBSITE_CODE_TTL, WebsiteLogin, WebsiteLogins, back_to_site
from service.wechat.crypto import aes_key_from
from service.wechat.xml import build_message

CODE_TTL = 300  # §1: a code expires after 5 minutes if unused
WEB_ACCESS_TOKEN_TTL = 7200  # §2: expires_in 7200
REFRESH_TOKEN_TTL = 30 * 86400  # §3: 30 days, never extended
SNS_CALLS_PER_MINUTE = 50_000  # §2, §3: rate limit 50,000/min
USED_CODE_MEMORY = 3600  # how long a used code is remembered, to answer 40163 rather than 40029

BASE_TOKEN_TTL = 7200  # §6, §7: expires_in "within 7200"
BASE_TOKEN_OVERLAP = 300  # §6, §7: old and new tokens both work for 5 minutes
TOKEN_DAILY_QUOTA = 2000  # §6: cgi-bin/token, 2000 a day
STABLE_TOKEN_DAILY_QUOTA = 500_000  # §7: across both modes
STABLE_TOKEN_PER_MINUTE = 10_000  # §7: across both modes
STABLE_FORCE_PER_DAY = 20  # §7: force_refresh at most 20 times a day...
STABLE_FORCE_SPACING = 30  # ...and at least 30 s apart
USER_INFO_DAILY_QUOTA = 5_000_000  # cgi-bin/user/info
QRCODE_DAILY_QUOTA = 100_000  # §8: cgi-bin/qrcode/create, 100,000 a day
PUSH_MEMORY = 200  # pushes remembered for GET /_sandbox/api/pushes and the phone page
# What a person sends an account (接收普通消息: text, image, voice, video, shortvideo, location,
# link) and what WeChat tells it about them (event: menus, follows, popups, job reports).
MSG_TYPES = ("text", "image", "voice", "video", "shortvideo", "location", "link", "event")
# The fields WeChat itself fills in (§10): who, to whom, when, what, and a message's MsgId.
PUSH_FILLED_FIELDS = ("ToUserName", "FromUserName", "CreateTime", "MsgType", "MsgId")
MESSAGE_MODES = ("plain", "compatible", "safe")  # §11: 明文, 兼容, 安全模式
CGI_CALLS_PER_MINUTE = 50_000  # not documented for these paths: the same allowance as sns/*
BEIJING_OFFSET = 8 * 3600  # daily quotas reset at midnight Beijing time (UTC+8)

SCOPES = ("snsapi_base", "snsapi_userinfo")
WEBSITE_SCOPE = "snsapi_login"  # WeChat_Login: a website app's only scope
# The website app (WeChat_Login) of sandbox mode, with a public development secret.
DEFAULT_WEBSITE_APPID = "wx5a4db0c0ffee0003"
DEFAULT_WEBSITE_SECRET = "5a4db0c0ffee0003sandboxwebsite00"  # noqa: S105 (public, sandbox)
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
SYSTEM_ERROR = (-1, "system error")
INVALID_GRANT_TYPE = (40002, "invalid grant_type")
INVALID_OPENID = (40003, "invalid openid")
INVALID_APPID = (40013, "invalid appid")
INVALID_ACCESS_TOKEN = (40014, "invalid access_token")
INVALID_CODE = (40029, "invalid code")
INVALID_REFRESH_TOKEN = (40030, "invalid refresh_token")
INVALID_SECRET = (40125, "invalid appsecret")
CODE_USED = (40163, "code been used")
# §6: WeChat names the caller's address; the HTTP layer fills it in (errmsg_for).
IP_NOT_IN_WHITELIST = (40164, "invalid ip {ip} ipv6 ::ffff:{ip}, not in whitelist")
ACCESS_TOKEN_EXPIRED = (42001, "access_token expired")
REFRESH_TOKEN_EXPIRED = (42002, "refresh_token timeout")  # English errmsg unconfirmed (§3)
DAILY_QUOTA = (45009, "reach max api daily quota limit")  # §6, §7, §12
MINUTE_QUOTA = (45011, "api minute-quota reach limit  mustslower  retry next minute")
DATA_FORMAT_ERROR = (47001, "data format error")
EMPTY_POST_DATA = (44002, "empty post data")  # global errcode list: "POST 的数据包为空"
# §8, observed in community threads: an unknown action_name (and bodies that aren't JSON at all,
# e.g. single-quoted pseudo-JSON) answer 40052; a bad scene (scene_str too long, …) 40053.
INVALID_ACTION_NAME = (40052, "invalid action name")
INVALID_ACTION_INFO = (40053, "invalid action info, please check document")
API_UNAUTHORIZED = (48001, "api unauthorized")
USER_UNAUTHORIZED = (50001, "user unauthorized")
# developers.weixin.qq.com/doc/subscription/api/base/api_getstableaccesstoken.html, errcode table
# ("43002 require POST method 需要 POST 请求"); also in the global errcode list.
REQUIRE_POST = (43002, "require POST method")

ERRMSGS: dict[int, str] = dict(
    [
        SYSTEM_ERROR,
        INVALID_CREDENTIAL,
        INVALID_GRANT_TYPE,
        INVALID_OPENID,
        INVALID_APPID,
        INVALID_ACCESS_TOKEN,
        INVALID_CODE,
        INVALID_REFRESH_TOKEN,
        INVALID_SECRET,
        CODE_USED,
        IP_NOT_IN_WHITELIST,
        ACCESS_TOKEN_MISSING,
        APPID_MISSING,
        REFRESH_TOKEN_MISSING,
        SECRET_MISSING,
        CODE_MISSING,
        OPENID_MISSING,
        ACCESS_TOKEN_EXPIRED,
        REFRESH_TOKEN_EXPIRED,
        DAILY_QUOTA,
        MINUTE_QUOTA,
        DATA_FORMAT_ERROR,
        EMPTY_POST_DATA,
        INVALID_ACTION_NAME,
        INVALID_ACTION_INFO,
        API_UNAUTHORIZED,
        USER_UNAUTHORIZED,
        REQUIRE_POST,
    ]
)


def errmsg_for(errcode: int, ip: str = "127.0.0.1") -> str:
    """WeChat's errmsg for `errcode` (without the rid suffix), for injected errcode faults."""
    errmsg = ERRMSGS.get(errcode)
    if errmsg is None:
        return f"sandbox fault {errcode}"  # a code the emulator has no WeChat text for
    return errmsg.format(ip=ip) if errcode == IP_NOT_IN_WHITELIST[0] else errmsg


def fail(error: tuple[int, str]) -> ApiError:
    return ApiError(*error)


def random_token(length: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def web_token_value() -> str:
    """86 characters of [A-Za-z0-9_-], the shape of WeChat's web tokens."""
    return secrets.token_urlsafe(64)


def message_id() -> int:
    """A message's MsgId: a 64-bit integer, 19 digits like the ones WeChat sends."""
    return 10**18 + secrets.randbelow(2**63 - 10**18)


def beijing_day(ts: float) -> int:
    """The day number, in Beijing time, that daily quotas count in (they reset at 00:00 UTC+8)."""
    return int((ts + BEIJING_OFFSET) // 86400)


class SandboxActionError(Exception):
    """A sandbox action (scan, unfollow) that cannot happen; the HTTP layer picks the status.

    reason: "unknown_user" | "unknown_ticket" | "expired_ticket" | "not_following" |
    "already_following" | "bad_push" | "no_message_url" | "unknown_account".
    """

    def __init__(self, reason: str, message: str, field: str = "", value: Any = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.field, self.value = reason, message, field, value


def _check_server(message_mode: str, aes_key: str, message_url: str) -> None:
    """An Official Account's 服务器配置 (§10, §11), the same checks for every account."""
    if message_mode not in MESSAGE_MODES:
        raise ValueError(f"message_mode must be one of {', '.join(MESSAGE_MODES)}")
    if message_mode != "plain" or aes_key:
        aes_key_from(aes_key)  # §11: 43 characters that decode to 32 bytes
    if message_url and not message_url.startswith(("http://", "https://")):
        raise ValueError("message_url must be an http:// or https:// URL")


def _check_whitelist(addresses: tuple[str, ...]) -> None:
    for address in addresses:
        # IPv4, as 40164's errmsg names callers (an IPv6 caller is named by its v4 mapping).
        ipaddress.IPv4Address(address)  # ValueError names the bad entry


def derived_original_id(appid: str) -> str:
    """An account's 原始ID when none is given: "gh_" and 12 hex digits, the shape of WeChat's,
    derived from the appid so that every account has its own (an emulator choice)."""
    return "gh_" + hashlib.sha256(appid.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class SandboxAccount:
    """One more Official Account (公众号) beside SandboxConfig's first, on the same WeChat.

    Its appid and secret (cgi-bin/token, stable_token, the sns/* exchange), and its 服务器配置
    (§10, §11): token, aes_key, message_mode and message_url, where its pushes go (empty: none,
    and scans of its codes are refused). original_id is its 原始ID, the ToUserName of its
    pushes; empty: one derived from the appid (derived_original_id). ip_whitelist is its own
    IP白名单 for cgi-bin/token and stable_token (§6, §7; empty: none configured).
    """

    appid: str
    secret: str
    token: str = ""
    aes_key: str = ""
    message_url: str = ""
    message_mode: str = "plain"
    original_id: str = ""
    ip_whitelist: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        try:
            _check_server(self.message_mode, self.aes_key, self.message_url)
            _check_whitelist(tuple(self.ip_whitelist))
        except ValueError as exc:
            raise ValueError(f"account {self.appid}: {exc}") from None
        object.__setattr__(self, "ip_whitelist", tuple(self.ip_whitelist))
        if not self.original_id:
            object.__setattr__(self, "original_id", derived_original_id(self.appid))


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """The Official Accounts the emulator knows, their 网页授权域名 and their server settings.

    authorized_domain is the 网页授权域名 redirect_uri must be on. authorize_reached_host: the
    host the browser reached the authorize page at is authorized too (the service's sandbox
    mode without PUBLIC_URL, which takes each request's own origin as its public URL).

    token, aes_key, message_url and message_mode are the account's 服务器配置 (§10, §11):
    message_url is where pushes go (empty: no pushes, and scans are refused); original_id is
    the account's 原始ID, the ToUserName of every push; push_timeout is how long WeChat waits
    for a reply to each attempt (§10: 5 s). push_retry_delay is the pause before retrying a
    push that failed without waiting out push_timeout (an HTTP 5xx, a refused connection);
    None means push_timeout (see push.push for why).

    website_appid, website_secret and website_domain are a second app of the same Open Platform
    account: a website app (网站应用, WeChat_Login) signing people in through connect/qrconnect,
    scope snsapi_login, whose 授权回调域 is website_domain (empty: authorized_domain, and with
    authorize_reached_host the host reached too). An empty website_appid: no website app.

    ip_whitelist is the account's IP白名单 for cgi-bin/token and cgi-bin/stable_token (§6, §7):
    a caller whose address is not in it gets 40164. Empty: none configured, nobody refused.

    The fields above describe the first Official Account. more_accounts are more of them, side
    by side on the same WeChat (one API host; the appid, or the access_token issued to an
    appid, says which account a call is for), each with its own secret, server settings,
    tokens, quotas, followers, QR codes and tickets; only the people are shared. Every appid
    differs (the website app's too), and so does every 原始ID. All of them share the 网页授权域名
    authorized_domain (an emulator choice: WeChat configures one per account). official_accounts
    lists them all as SandboxAccount, the first account first.
    """

    appid: str
    secret: str
    authorized_domain: str
    token: str = ""
    aes_key: str = ""
    message_url: str = ""
    message_mode: str = "plain"
    original_id: str = "gh_5a4db0c0ffee"
    push_timeout: float = 5.0
    push_retry_delay: float | None = None
    ip_whitelist: tuple[str, ...] = ()
    authorize_reached_host: bool = False
    website_appid: str = DEFAULT_WEBSITE_APPID
    website_secret: str = DEFAULT_WEBSITE_SECRET
    website_domain: str = ""
    more_accounts: tuple[SandboxAccount, ...] = ()
    # Computed: the first account (the fields above) and more_accounts, and them by appid.
    official_accounts: tuple[SandboxAccount, ...] = field(init=False, repr=False, compare=False)
    _by_appid: dict[str, SandboxAccount] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.website_appid and self.website_appid == self.appid:
            raise ValueError("website_appid must differ from the account's appid")
        if self.website_appid and not self.website_secret:
            raise ValueError("website_secret is required with website_appid")
        _check_server(self.message_mode, self.aes_key, self.message_url)
        if not self.push_timeout > 0:
            raise ValueError("push_timeout must be above 0 seconds")
        if self.push_retry_delay is not None and not self.push_retry_delay >= 0:
            raise ValueError("push_retry_delay must be 0 seconds or more")
        _check_whitelist(self.ip_whitelist)
        more = tuple(self.more_accounts)
        if not all(isinstance(account, SandboxAccount) for account in more):
            raise TypeError("more_accounts holds SandboxAccount entries")
        for account in more:
            if not account.appid or not account.secret:
                raise ValueError("each of more_accounts needs its appid and secret")
        object.__setattr__(self, "more_accounts", more)
        first = SandboxAccount(
            appid=self.appid,
            secret=self.secret,
            token=self.token,
            aes_key=self.aes_key,
            message_url=self.message_url,
            message_mode=self.message_mode,
            original_id=self.original_id,
            ip_whitelist=self.ip_whitelist,
        )
        accounts = (first, *more)
        appids = [account.appid for account in accounts]
        if self.website_appid:
            appids.append(self.website_appid)
        for appid in appids:
            if appids.count(appid) > 1:
                raise ValueError(f"every account needs its own appid: {appid} is given twice")
        original_ids = [account.original_id for account in accounts]
        for original_id in original_ids:
            if original_ids.count(original_id) > 1:
                raise ValueError(f"every account needs its own original_id: {original_id} twice")
        object.__setattr__(self, "official_accounts", accounts)
        object.__setattr__(self, "_by_appid", {account.appid: account for account in accounts})

    def official_account(self, appid: str | None) -> SandboxAccount | None:
        """The Official Account of that appid, None for any other (the website app's too)."""
        return self._by_appid.get(appid or "")


def _expire_seconds(value: Any) -> int:
    """§8: a temporary code's lifetime; see SandboxWeChat.create_qrcode for the choices."""
    if value is None:
        return DEFAULT_EXPIRE_SECONDS
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(DATA_FORMAT_ERROR)
    if (isinstance(value, float) and not value.is_integer()) or value < 0:
        raise fail(DATA_FORMAT_ERROR)  # NaN and Infinity (which json.loads takes) too
    return min(int(value), MAX_EXPIRE_SECONDS) or DEFAULT_EXPIRE_SECONDS


def _scene(action_name: str, action_info: Any) -> int | str:
    """§8: action_info.scene.scene_id (an integer) or .scene_str (1-64 characters)."""
    scene = action_info.get("scene") if isinstance(action_info, dict) else None
    if not isinstance(scene, dict):
        raise fail(INVALID_ACTION_INFO)
    if action_name in STR_SCENES:
        value = scene.get("scene_str")
        if isinstance(value, str) and 1 <= len(value) <= SCENE_STR_MAX:
            return value
        raise fail(INVALID_ACTION_INFO)
    value = scene.get("scene_id")
    top = SCENE_ID_MAX if action_name in TEMPORARY else LIMIT_SCENE_ID_MAX
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise fail(INVALID_ACTION_INFO)
    return value


@dataclass(slots=True)
class AuthorizationCode:
    openid: str  # the sandbox user's key (their openid in the account)
    scope: str
    expires_at: float
    used: bool = False
    appid: str = ""  # the app it was issued to: only that app can exchange it


@dataclass(slots=True)
class WebGrant:
    """One user authorization: its refresh_token and the current web access_token."""

    openid: str
    scope: str
    refresh_token: str
    refresh_expires_at: float
    access_token: str
    access_expires_at: float
    appid: str = ""  # the app the user authorized; "" for grant_many's made-up users
    user_key: str = ""  # the sandbox user (their openid in the account); "" means openid

    def token_answer(self, now: float) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "expires_in": max(0, round(self.access_expires_at - now)),
            "refresh_token": self.refresh_token,
            "openid": self.openid,
            "scope": self.scope,
        }


@dataclass(slots=True)
class BaseToken:
    """A base (cgi-bin) access_token from cgi-bin/token ("token") or cgi-bin/stable_token."""

    value: str
    kind: str  # "token" | "stable"
    expires_at: float  # its natural end: 42001 from then on
    valid_until: float  # earlier when superseded or force-refreshed: 40001 in between
    appid: str = ""  # the Official Account it was issued to: cgi-bin calls act for that one


@dataclass(slots=True)
class AccountState:
    """What WeChat keeps for one Official Account: the people as it sees them (their openid
    in it, whether they follow it), its parametric QR codes and its two base-token families.

    users is keyed by the person's openid in this account; persons maps that openid to their
    sandbox openid (the first account's, USERS_BY_OPENID's key), empty for the first account,
    where the two are the same.
    """

    users: dict[str, SandboxUser]
    qrcodes: QrCodes
    persons: dict[str, str] = field(default_factory=dict)
    latest_token: BaseToken | None = None  # cgi-bin/token's newest
    stable: BaseToken | None = None  # stable_token's current
    stable_previous: BaseToken | None = None  # the one it replaced, in its overlap
    stable_forced: tuple[int, int] = (0, 0)  # (Beijing day, forced refreshes that day)
    stable_forced_at: float | None = None


@dataclass(frozen=True, slots=True)
class OutgoingPush:
    """A push WeChat is about to send: to which account's server, and its fields (§10)."""

    account: SandboxAccount
    fields: dict[str, Any]


class SandboxWeChat:
    """The emulator's state: users, codes, grants, injected faults and per-path call counts.

    One WeChat for every Official Account of the config (SandboxConfig.official_accounts): the
    people are shared, everything else is per account (AccountState). `users` and `qrcodes`
    are the first account's, as they always were; the other accounts' are made on first use
    from the cast (USERS_BY_OPENID), with each person's openid and unionid in that account.
    """

    def __init__(
        self,
        config: SandboxConfig,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.clock = clock
        self.sleep = sleep  # how push retries wait; tests pass one that moves a ManualClock
        self.users: dict[str, SandboxUser] = dict(USERS_BY_OPENID)
        self.faults = Faults()
        self.stats: Counter[str] = Counter()
        # Calls per account (appid) and WeChat path: GET /_stats?appid=.
        self.account_stats: dict[str, Counter[str]] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._grants_by_refresh: dict[str, WebGrant] = {}
        self._grants_by_access: dict[str, WebGrant] = {}
        # WeChat's quotas are per account: both counters are keyed by (appid, path or name).
        self._minute_calls: dict[tuple[str, str], tuple[int, int]] = {}
        self._daily_calls: dict[tuple[str, str], tuple[int, int]] = {}
        self._base_tokens: dict[str, BaseToken] = {}
        self.qrcodes = QrCodes(config.appid)
        self._first = AccountState(self.users, self.qrcodes)
        self._more: dict[str, AccountState] = {}
        self.website_logins = WebsiteLogins()
        self.pushes: deque[PushRecord] = deque(maxlen=PUSH_MEMORY)

    # The Official Accounts, each with its own state.

    def account(self, appid: str | None = None) -> SandboxAccount:
        """The Official Account `appid` names; the first one when None or "".

        Another appid (the website app's included) is a SandboxActionError "unknown_account".
        """
        if not appid:
            return self.config.official_accounts[0]
        account = self.config.official_account(appid)
        if account is None:
            raise SandboxActionError("unknown_account", "no such Official Account", "appid", appid)
        return account

    def _state(self, appid: str) -> AccountState:
        """That account's state; made from the cast on first use for the other accounts."""
        if appid == self.config.appid:
            first = self._first
            first.users, first.qrcodes = self.users, self.qrcodes  # whatever they are now
            return first
        state = self._more.get(appid)
        if state is None:
            users: dict[str, SandboxUser] = {}
            persons: dict[str, str] = {}
            for person in USERS_BY_OPENID.values():
                # Emulator choice: each account starts as the first one does (the same
                # people follow it, the same way), then follows and unfollows apart from it.
                openid = account_openid(person, appid, self.config)
                unionid = account_unionid(person, appid, self.config)
                users[openid] = replace(person, openid=openid, unionid=unionid)
                persons[openid] = person.openid
            state = self._more[appid] = AccountState(users, QrCodes(appid), persons)
        return state

    def _states(self) -> Iterator[AccountState]:
        for account in self.config.official_accounts:
            yield self._state(account.appid)

    def account_users(self, appid: str | None = None) -> list[SandboxUser]:
        """The people as that account sees them: their openid and unionid in it, their follow."""
        return list(self._state(self.account(appid).appid).users.values())

    def person(self, openid: str | None) -> SandboxUser:
        """The person an openid names in any app (an account's, the website app's, or the
        sandbox openid), as the first account has them: their sandbox record."""
        if openid and openid in self.users:
            return self.users[openid]
        for state in self._states():
            key = state.persons.get(openid or "")
            if key is not None and key in self.users:
                return self.users[key]
        for user in self.users.values():
            if openid and openid == website_openid(user):
                return user
        raise SandboxActionError("unknown_user", "no such sandbox user", "openid", openid)

    def account_user(self, openid: str | None, appid: str | None = None) -> SandboxUser:
        """The person as the account `appid` (default the first) sees them. `openid` is their
        openid in that account, or their sandbox openid (the first account's)."""
        account = self.account(appid)
        state = self._state(account.appid)
        user = state.users.get(openid or "")
        if user is not None:
            return user
        if openid and openid in self.users:
            return state.users[account_openid(self.users[openid], account.appid, self.config)]
        raise SandboxActionError(
            "unknown_user", "no such sandbox user in that account", "openid", openid
        )

    # The browser side: /connect/oauth2/authorize hands out codes.

    def issue_code(self, openid: str, scope: str, appid: str | None = None) -> str:
        """A new code for every authorization (§1), valid five minutes, single use.

        `openid` is the person's sandbox openid; `appid` the Official Account they authorize
        (default the first): only that account's appid and secret exchange the code.
        """
        user = self.users.get(openid)
        if user is not None and user.snapshot and scope != "snsapi_userinfo":
            raise ValueError("WeChat's snapshot page exists for snsapi_userinfo only (§1)")
        account = self.account(appid)
        return self._new_code(openid, scope, account.appid, CODE_TTL)

    def issue_website_code(self, openid: str) -> str:
        """A website app's code after 确认登录 (WeChat_Login): single use, valid ten minutes."""
        return self._new_code(openid, WEBSITE_SCOPE, self.config.website_appid, WEBSITE_CODE_TTL)

    def website_user(self, openid: str | None) -> SandboxUser:
        """Who signs in to the website app: a real person (no snapshot page here, §1 is the
        Official Account's in-WeChat browser only)."""
        user = self.person(openid)
        if user.snapshot:
            raise SandboxActionError(
                "unknown_user",
                "the snapshot page's virtual user exists in the in-WeChat browser only",
                "openid",
                openid,
            )
        return user

    def website_confirm(self, uuid: str, openid: str | None) -> WebsiteLogin:
        """确认登录 on the phone (WeChat_Login): a code, and the desktop page goes to
        redirect_uri?code=CODE&state=STATE."""
        login = self.website_logins.open_for_answer(uuid, self.clock.now())
        user = self.website_user(openid)
        login.openid = user.openid
        code = self.issue_website_code(user.openid)
        login.answer("confirmed", back_to_site(login.redirect_uri, code=code, state=login.state))
        return login

    def website_cancel(self, uuid: str) -> WebsiteLogin:
        """取消登录 (WeChat_Login: "若用户禁止授权,则重定向后不会带上code参数,仅会带上state参数"):
        the desktop page goes to redirect_uri?state=STATE."""
        login = self.website_logins.open_for_answer(uuid, self.clock.now())
        login.answer("cancelled", back_to_site(login.redirect_uri, state=login.state))
        return login

    def _new_code(self, openid: str, scope: str, appid: str, ttl: float) -> str:
        now = self.clock.now()
        self._forget_stale_codes(now)
        code = random_token(32)
        self._codes[code] = AuthorizationCode(openid, scope, now + ttl, appid=appid)
        return code

    def _forget_stale_codes(self, now: float) -> None:
        """Codes are issued in time order, so the stale ones are at the front: drop those
        (amortized O(1) a code, where rebuilding the dictionary was O(codes))."""
        cutoff = now - USED_CODE_MEMORY
        while self._codes:
            oldest = next(iter(self._codes))
            # (A website code lives 10 minutes, so an account code behind it waits a little.)
            if self._codes[oldest].expires_at > cutoff:
                break
            del self._codes[oldest]

    # The API side.

    def call_account(self, appid: str | None = None, access_token: str | None = None) -> str:
        """Which app a call counts against: the appid it names, else the one its access_token
        (base or web) was issued to; a call naming no known app counts as the first account's."""
        known = {account.appid for account in self.config.official_accounts}
        if self.config.website_appid:
            known.add(self.config.website_appid)
        if appid and appid in known:
            return appid
        if access_token:
            token = self._base_tokens.get(access_token)
            grant = self._grants_by_access.get(access_token)
            owner = token.appid if token else (grant.appid if grant else "")
            if owner in known:
                return owner
        return self.config.appid

    def note_call(self, path: str, appid: str | None = None) -> None:
        """A call received on `path` for the app `appid` (GET /_stats, and ?appid=)."""
        self.stats[path] += 1
        self.account_stats.setdefault(appid or self.config.appid, Counter())[path] += 1

    def count_call(self, path: str, per_minute: int, appid: str | None = None) -> None:
        """Count a call for an app (default the first account), and refuse it past that app's
        per-minute limit (45011, §12): WeChat's limits are per account."""
        app = appid or self.config.appid
        self.note_call(path, app)
        minute = int(self.clock.now() // 60)
        window, calls = self._minute_calls.get((app, path), (minute, 0))
        if window != minute:
            window, calls = minute, 0
        calls += 1
        self._minute_calls[(app, path)] = (window, calls)
        if calls > per_minute:
            raise fail(MINUTE_QUOTA)

    def use_daily_quota(self, name: str, limit: int, appid: str | None = None) -> None:
        """Count one call against an account's daily quota (default the first account's):
        45009 past it, until midnight Beijing time."""
        key = (appid or self.config.appid, name)
        day = beijing_day(self.clock.now())
        window, used = self._daily_calls.get(key, (day, 0))
        if window != day:
            used = 0
        if used >= limit:
            raise fail(DAILY_QUOTA)
        self._daily_calls[key] = (day, used + 1)

    def _check_app(self, appid: str | None) -> SandboxAccount:
        """cgi-bin/token and stable_token: the Official Account the appid names (41002, 40013)."""
        if not appid:
            raise fail(APPID_MISSING)
        for account in self.config.official_accounts:
            if secrets.compare_digest(appid.encode(), account.appid.encode()):
                return account
        raise fail(INVALID_APPID)

    def _check_secret(self, account: SandboxAccount, secret: str | None) -> None:
        if not secret:
            raise fail(SECRET_MISSING)
        if not secrets.compare_digest(secret.encode(), account.secret.encode()):
            raise fail(INVALID_SECRET)

    def _sns_app(self, appid: str | None) -> str:
        """sns/* answer for the Official Accounts and the website app (WeChat_Login): which
        app it is."""
        if not appid:
            raise fail(APPID_MISSING)
        known = [account.appid for account in self.config.official_accounts]
        for app in (*known, self.config.website_appid):
            if app and secrets.compare_digest(appid.encode(), app.encode()):
                return app
        raise fail(INVALID_APPID)

    def _check_sns_secret(self, appid: str, secret: str | None) -> None:
        """The secret of that app: no other app's secret opens its codes."""
        if not secret:
            raise fail(SECRET_MISSING)
        account = self.config.official_account(appid)
        expected = account.secret if account is not None else self.config.website_secret
        if not secrets.compare_digest(secret.encode(), expected.encode()):
            raise fail(INVALID_SECRET)

    # Base access_tokens: cgi-bin/token and cgi-bin/stable_token, two separate families (§6, §7),
    # per account.

    def _issue_base_token(self, kind: str, now: float, appid: str) -> BaseToken:
        if len(self._base_tokens) >= 4096:
            # Forget tokens a day past their end; they then answer 40001 rather than 42001.
            self._base_tokens = {
                v: t for v, t in self._base_tokens.items() if t.expires_at > now - 86400
            }
        # §6: reserve 512 characters; real tokens are about 140 of [A-Za-z0-9_-].
        token = BaseToken(
            value=secrets.token_urlsafe(102),
            kind=kind,
            expires_at=now + BASE_TOKEN_TTL,
            valid_until=now + BASE_TOKEN_TTL,
            appid=appid,
        )
        self._base_tokens[token.value] = token
        return token

    def check_caller_ip(self, ip: str, appid: str | None = None) -> None:
        """The account's IP whitelist (§6, §7), when one is configured: 40164 naming the caller.

        `ip` is the caller's IPv4 address as 40164's errmsg writes it (api.caller_ipv4).
        Emulator choice: checked before the appid and secret, so a caller off the list learns
        nothing about them. Each account has its own list; a call naming no known account
        meets the first account's.
        """
        account = self.config.official_account(appid) or self.config.official_accounts[0]
        allowed = account.ip_whitelist
        if not allowed:
            return
        caller = ipaddress.IPv4Address(ip)
        if not any(caller == ipaddress.IPv4Address(address) for address in allowed):
            errcode, errmsg = IP_NOT_IN_WHITELIST
            raise ApiError(errcode, errmsg.format(ip=ip))

    def set_ip_whitelist(self, addresses: tuple[str, ...], appid: str | None = None) -> None:
        """Replace an account's IP whitelist (default the first account's)."""
        account = self.account(appid)
        if account.appid == self.config.appid:
            self.config = replace(self.config, ip_whitelist=addresses)
            return
        more = tuple(
            replace(other, ip_whitelist=addresses) if other.appid == account.appid else other
            for other in self.config.more_accounts
        )
        self.config = replace(self.config, more_accounts=more)

    def fetch_token(
        self, appid: str | None, secret: str | None, grant_type: str | None
    ) -> dict[str, Any]:
        """cgi-bin/token (§6): a new token on every call; the previous one lives 5 more minutes.

        The account's own token: it supersedes only that account's previous one, and the daily
        quota is that account's. The daily quota counts the calls that get a token (the docs
        don't say whether refused ones count; counting only answered calls is the choice here).
        """
        account = self._check_app(appid)
        self._check_secret(account, secret)
        if grant_type != "client_credential":
            raise fail(INVALID_GRANT_TYPE)
        self.use_daily_quota("cgi-bin/token", TOKEN_DAILY_QUOTA, account.appid)
        state = self._state(account.appid)
        now = self.clock.now()
        previous = state.latest_token
        if previous is not None:
            previous.valid_until = min(previous.valid_until, now + BASE_TOKEN_OVERLAP)
        token = state.latest_token = self._issue_base_token("token", now, account.appid)
        return {"access_token": token.value, "expires_in": BASE_TOKEN_TTL}

    def stable_token(
        self,
        appid: str | None,
        secret: str | None,
        grant_type: str | None,
        force_refresh: bool = False,
    ) -> dict[str, Any]:
        """cgi-bin/stable_token (§7), never touching cgi-bin/token's tokens nor they it.

        Normal mode: the same token while it has more than 5 minutes left; then a new one,
        the old working on until its own end. Force mode: a new token and every earlier stable
        token invalid at once, at most 20 times a (Beijing) day and 30 s after the last forced
        refresh. Emulator choice (§7 [UNCONFIRMED]): a force call refused by those limits is
        answered as a normal-mode call, i.e. the unchanged current token ("won't refresh");
        the 30 s count from the last refresh that took place. All of it per account.
        """
        account = self._check_app(appid)
        self._check_secret(account, secret)
        if grant_type != "client_credential":
            raise fail(INVALID_GRANT_TYPE)
        self.use_daily_quota("cgi-bin/stable_token", STABLE_TOKEN_DAILY_QUOTA, account.appid)
        state = self._state(account.appid)
        now = self.clock.now()
        if force_refresh and self._may_force_refresh(state, now):
            for live in (state.stable, state.stable_previous):
                if live is not None:
                    live.valid_until = min(live.valid_until, now)
            day, forced = state.stable_forced
            today = beijing_day(now)
            state.stable_forced = (today, forced + 1 if day == today else 1)
            state.stable_forced_at = now
            state.stable_previous = state.stable
            state.stable = self._issue_base_token("stable", now, account.appid)
        else:
            current = state.stable
            if (
                current is None
                or now >= current.valid_until
                or current.expires_at - now <= BASE_TOKEN_OVERLAP
            ):
                state.stable_previous = current  # keeps working until its own end
                state.stable = self._issue_base_token("stable", now, account.appid)
        token = state.stable
        assert token is not None  # issued above when there was none
        return {"access_token": token.value, "expires_in": round(token.expires_at - now)}

    def _may_force_refresh(self, state: AccountState, now: float) -> bool:
        day, forced = state.stable_forced
        if day == beijing_day(now) and forced >= STABLE_FORCE_PER_DAY:
            return False
        last = state.stable_forced_at
        return last is None or now - last >= STABLE_FORCE_SPACING

    def check_base_token(self, access_token: str | None) -> BaseToken:
        """The access_token check of every cgi-bin API (§6, §7, §12).

        41001 missing; 40001 unknown (a web access_token included: §2 "cannot be used on
        cgi-bin APIs") or superseded ("not latest"); 42001 past its natural end. The token's
        appid is the account the call acts for: cgi-bin calls name no appid.
        """
        if not access_token:
            raise fail(ACCESS_TOKEN_MISSING)
        token = self._base_tokens.get(access_token)
        if token is None:
            raise fail(INVALID_CREDENTIAL)
        now = self.clock.now()
        if now >= token.expires_at:
            raise fail(ACCESS_TOKEN_EXPIRED)
        if now >= token.valid_until:
            raise fail(INVALID_CREDENTIAL)
        return token

    def base_token_valid(self, access_token: str) -> bool:
        """Whether WeChat would accept this base access_token on a cgi-bin API right now."""
        try:
            self.check_base_token(access_token)
        except ApiError:
            return False
        return True

    def cgi_user_info(self, access_token: str | None, openid: str | None) -> dict[str, Any]:
        """cgi-bin/user/info (§9), as answered since 2021-12-27: no nickname, no avatar.

        For the token's account: the openid must be the person's openid in it (§9: 40003 "also
        returned for another app's openid"), and subscribe, the follow's details and the
        unionid are that account's. `lang` only affects fields WeChat no longer fills, so it
        is not taken.
        """
        token = self.check_base_token(access_token)
        self.use_daily_quota("cgi-bin/user/info", USER_INFO_DAILY_QUOTA, token.appid)
        if not openid:
            raise fail(OPENID_MISSING)
        user = self._state(token.appid).users.get(openid)
        if user is None:
            raise fail(INVALID_OPENID)  # §9: also for another app's openid or a unionid
        if not user.subscribed:
            answer: dict[str, Any] = {"subscribe": 0, "openid": user.openid}
            if user.unionid:
                answer["unionid"] = user.unionid
            answer["tagid_list"] = []
            return answer
        answer = {
            "subscribe": 1,
            "openid": user.openid,
            "nickname": "",
            "sex": 0,
            "language": "",
            "city": "",
            "province": "",
            "country": "",
            "headimgurl": "",
            "subscribe_time": user.subscribe_time or 0,
        }
        if user.unionid:
            answer["unionid"] = user.unionid
        answer |= {
            "remark": user.remark,
            "groupid": 0,
            "tagid_list": list(user.tagid_list),
            "subscribe_scene": user.subscribe_scene,
            "qr_scene": user.qr_scene,
            "qr_scene_str": user.qr_scene_str,
        }
        return answer

    # Parametric QR codes (§8), per account.

    def create_qrcode(self, access_token: str | None, body: bytes) -> dict[str, Any]:
        """cgi-bin/qrcode/create (§8): a ticket and url for a scene, temporary or permanent.

        The code is the token's account's: a scan of it goes to that account. Errcodes: the
        base-token checks; 44002 for an empty body; 40052 for a body that is not a JSON object
        (observed: pseudo-JSON in single quotes gets 40052) or an action_name that isn't one
        of the four; 40053 for a missing or out-of-range scene. Emulator choices where §8 is
        silent: expire_seconds above 2592000 is clamped to it (the answer says so) rather
        than refused; absent or 0 means the default 60 s; a value that is not a whole number
        of seconds is 47001; scene_id for QR_SCENE is 1 to 2^32-1; scene_str counts
        characters; once 100,000 permanent codes exist a new permanent scene answers 40053
        (the errcode reported when that cap was suspected). The daily quota counts every call
        that passes the token check, like cgi-bin/user/info's.
        """
        token = self.check_base_token(access_token)
        self.use_daily_quota("cgi-bin/qrcode/create", QRCODE_DAILY_QUOTA, token.appid)
        if not body.strip():
            raise fail(EMPTY_POST_DATA)
        try:
            request = json.loads(body)
        except ValueError:  # bad JSON or bad UTF-8
            raise fail(INVALID_ACTION_NAME) from None
        if not isinstance(request, dict):
            raise fail(INVALID_ACTION_NAME)
        action_name = request.get("action_name")
        if action_name not in ACTION_NAMES:
            raise fail(INVALID_ACTION_NAME)
        expire_seconds: int | None = None
        if action_name in TEMPORARY:
            expire_seconds = _expire_seconds(request.get("expire_seconds"))
        # Permanent codes ignore expire_seconds (§8: "temporary codes only").
        scene = _scene(action_name, request.get("action_info"))
        qrcodes = self._state(token.appid).qrcodes
        try:
            code = qrcodes.create(action_name, scene, self.clock.now(), expire_seconds)
        except PermanentLimitReached:
            raise fail(INVALID_ACTION_INFO) from None
        if code.permanent:
            # Emulator choice (§8 [UNCONFIRMED]): permanent answers carry no expire_seconds.
            return {"ticket": code.ticket, "url": code.url}
        return {"ticket": code.ticket, "expire_seconds": expire_seconds, "url": code.url}

    def _lookup_qrcode(self, ticket: str | None, url: str | None) -> QrTicket | None:
        for state in self._states():
            code = state.qrcodes.by_ticket(ticket) if ticket else None
            if code is None and url:
                code = state.qrcodes.by_url(url)
            if code is not None:
                return code
        return None

    def find_qrcode(
        self, ticket: str | None = None, url: str | None = None, appid: str | None = None
    ) -> QrTicket:
        """The live code for a ticket or a url, any account's (or only `appid`'s when given):
        what a scan or showqrcode looks up. Its appid says whose code it is."""
        code = self._lookup_qrcode(ticket, url)
        field_, value = ("ticket", ticket) if ticket else ("url", url)
        if code is None or (appid and code.appid != appid):
            raise SandboxActionError("unknown_ticket", "no such QR code", field_, value)
        if not code.live(self.clock.now()):
            # WeChat shows "二维码已过期" in the app and pushes nothing.
            raise SandboxActionError(
                "expired_ticket", "二维码已过期: the QR code has expired", field_, value
            )
        return code

    # Following an account: users change, pushes tell the account's server (§9, §10).

    def user(self, openid: str | None) -> SandboxUser:
        """A person as the first account sees them (their sandbox record)."""
        user = self.users.get(openid or "")
        if user is None:
            raise SandboxActionError("unknown_user", "no such sandbox user", "openid", openid)
        return user

    def _set_user(self, appid: str, user: SandboxUser) -> None:
        self._state(appid).users[user.openid] = user

    def follow(
        self, openid: str, scene: str | int | None = None, appid: str | None = None
    ) -> SandboxUser:
        """The user follows the account `appid` (default the first) now: through a parametric
        QR code's scene, or (None) otherwise. Other accounts are not touched.

        §9: subscribe_time is the last follow; ADD_SCENE_QR_CODE with qr_scene (scene_id) or
        qr_scene_str (scene_str) for a QR code. Emulator choice: ADD_SCENE_OTHERS otherwise.
        """
        account = self.account(appid)
        user = self.account_user(openid, account.appid)
        qr = scene is not None
        user = replace(
            user,
            subscribed=True,
            subscribe_time=int(self.clock.now()),
            subscribe_scene="ADD_SCENE_QR_CODE" if qr else "ADD_SCENE_OTHERS",
            qr_scene=scene if isinstance(scene, int) else 0,
            qr_scene_str=scene if isinstance(scene, str) else "",
        )
        self._set_user(account.appid, user)
        return user

    def unfollow(self, openid: str, appid: str | None = None) -> SandboxUser:
        """The user stops following the account `appid` (default the first); what user/info
        told about the follow goes blank (§9)."""
        account = self.account(appid)
        user = replace(
            self.account_user(openid, account.appid),
            subscribed=False,
            subscribe_time=None,
            subscribe_scene="",
            qr_scene=0,
            qr_scene_str="",
        )
        self._set_user(account.appid, user)
        return user

    def event_fields(
        self, account: SandboxAccount, openid: str, event: str, event_key: str, **extra: str
    ) -> dict[str, Any]:
        """An event push's fields in WeChat's order (§10); CreateTime an integer."""
        return {
            "ToUserName": account.original_id,
            "FromUserName": openid,
            "CreateTime": int(self.clock.now()),
            "MsgType": "event",
            "Event": event,
            "EventKey": event_key,
            **extra,
        }

    def _pushing_account(self, appid: str | None) -> SandboxAccount:
        """The account a push goes to, which must have a message_url."""
        account = self.account(appid)
        if not account.message_url:
            raise SandboxActionError(
                "no_message_url",
                f"the account {account.appid} has no message_url: start the emulator with "
                "--message-url (or --account …:message_url) to push its events",
            )
        return account

    def scan(
        self,
        openid: str | None,
        ticket: str | None = None,
        url: str | None = None,
        appid: str | None = None,
    ) -> OutgoingPush:
        """The user scans a parametric code: the event to push (§10), the follow applied.

        The code says which account: its pushes go to that account's server, FromUserName the
        person's openid in it (`openid` may be that or their sandbox openid). `appid`, when
        given, must be the code's account. Not following: they follow through it, `subscribe`
        with EventKey qrscene_<scene>; following: `SCAN` with the bare scene. Both carry the
        Ticket. An unknown or expired code changes nothing (SandboxActionError).
        """
        if appid:
            self.account(appid)
        if not any(account.message_url for account in self.config.official_accounts):
            self._pushing_account(appid)  # nowhere to push at all: say so first
        self.person(openid)  # an unknown person before an unknown code
        code = self.find_qrcode(ticket, url, appid)
        account = self._pushing_account(code.appid or None)
        user = self.account_user(openid, account.appid)
        if user.subscribed:
            fields = self.event_fields(
                account, user.openid, "SCAN", str(code.scene), Ticket=code.ticket
            )
            return OutgoingPush(account, fields)
        self.follow(user.openid, code.scene, account.appid)
        fields = self.event_fields(
            account, user.openid, "subscribe", f"qrscene_{code.scene}", Ticket=code.ticket
        )
        return OutgoingPush(account, fields)

    def unsubscribe(self, openid: str | None, appid: str | None = None) -> OutgoingPush:
        """The user unfollows the account: the `unsubscribe` event (empty EventKey, as
        observed, §10)."""
        account = self._pushing_account(appid)
        user = self.account_user(openid, account.appid)
        if not user.subscribed:
            raise SandboxActionError(
                "not_following", "the user does not follow the account", "openid", openid
            )
        self.unfollow(user.openid, account.appid)
        return OutgoingPush(account, self.event_fields(account, user.openid, "unsubscribe", ""))

    def subscribe(self, openid: str | None, appid: str | None = None) -> OutgoingPush:
        """The user follows the account without a parametric code (search, a shared card, the
        profile page): `subscribe` with an empty EventKey (observed, §10), the follow applied
        (§9: ADD_SCENE_OTHERS, no qr_scene). Someone who follows already cannot follow again."""
        account = self._pushing_account(appid)
        user = self.account_user(openid, account.appid)
        if user.subscribed:
            raise SandboxActionError(
                "already_following", "the user follows the account already", "openid", openid
            )
        self.follow(user.openid, None, account.appid)
        return OutgoingPush(account, self.event_fields(account, user.openid, "subscribe", ""))

    def person_push(
        self,
        openid: str | None,
        msg_type: str | None,
        extra: dict[str, Any],
        appid: str | None = None,
    ) -> OutgoingPush:
        """What a person does in an account's chat or its menus: the push WeChat sends (§10).

        ToUserName, FromUserName, CreateTime and MsgType are filled in as WeChat does (the
        account's 原始ID, the person's openid in it), then `extra` in the order given (text,
        numbers, objects for nested elements, lists for repeated ones: the shapes wechat.xml
        reads and writes). Messages (every msgType but event) end with a MsgId, a 64-bit
        integer, and can only come from a follower of that account: a chat with an account
        opens once you follow it. Events: `subscribe` is a plain follow (subscribe()),
        `unsubscribe` an unfollow (unsubscribe()); the state-changing QR events (SCAN,
        subscribe with qrscene_) come from scanning a code, so they are refused here; any
        other event (CLICK, scancode_push, pic_weixin, location_select, LOCATION,
        TEMPLATESENDJOBFINISH, subscribe_msg_popup_event, …) is pushed as given.
        """
        account = self._pushing_account(appid)
        user = self.account_user(openid, account.appid)
        if msg_type not in MSG_TYPES:
            raise SandboxActionError(
                "bad_push", f"msgType is one of {', '.join(MSG_TYPES)}", "msgType", msg_type
            )
        for name in extra:
            if name in PUSH_FILLED_FIELDS:
                raise SandboxActionError(
                    "bad_push", f"{name} is filled in by WeChat", name, extra[name]
                )
        if msg_type == "event":
            event = extra.get("Event")
            if not isinstance(event, str) or not event:
                raise SandboxActionError(
                    "bad_push", "an event push names its Event", "Event", event
                )
            key = extra.get("EventKey", "")
            if event == "SCAN" or (event == "subscribe" and key):
                raise SandboxActionError(
                    "bad_push",
                    "QR code events come from scanning the code: POST /_sandbox/api/scan",
                    "Event",
                    event,
                )
            if event in ("subscribe", "unsubscribe"):
                if set(extra) - {"Event", "EventKey"}:
                    raise SandboxActionError(
                        "bad_push", f"{event} carries Event and EventKey only", "Event", event
                    )
                if event == "subscribe":
                    return self.subscribe(openid, account.appid)
                return self.unsubscribe(openid, account.appid)
        elif not user.subscribed:
            raise SandboxActionError(
                "not_following",
                "only a follower can send the account messages",
                "openid",
                openid,
            )
        elif msg_type == "text" and not isinstance(extra.get("Content"), str):
            raise SandboxActionError(
                "bad_push", "a text message has its Content", "Content", extra.get("Content")
            )
        fields: dict[str, Any] = {
            "ToUserName": account.original_id,
            "FromUserName": user.openid,
            "CreateTime": int(self.clock.now()),
            "MsgType": msg_type,
        }
        if msg_type == "event":
            fields["Event"] = extra["Event"]  # WeChat's order: Event right after MsgType
        fields |= extra
        if msg_type != "event":
            fields["MsgId"] = message_id()
        try:
            build_message(fields)  # names, value types and depth that XML can carry
        except ValueError as exc:
            raise SandboxActionError("bad_push", str(exc), "body") from None
        return OutgoingPush(account, fields)

    def record_push(self, record: PushRecord) -> None:
        self.pushes.append(record)

    # Web authorization (§2-§5).

    def exchange_code(
        self, appid: str | None, secret: str | None, code: str | None, grant_type: str | None
    ) -> dict[str, Any]:
        """sns/oauth2/access_token (§2): each Official Account's codes and the website app's,
        each with that app's appid and secret; the openid is the person's in that app."""
        app = self._sns_app(appid)
        self._check_sns_secret(app, secret)
        if grant_type != "authorization_code":
            raise fail(INVALID_GRANT_TYPE)
        if not code:
            raise fail(CODE_MISSING)
        now = self.clock.now()
        issued = self._codes.get(code)
        if issued is None or issued.appid != app:
            # Emulator choice: another app's code is unknown to this app, so 40029.
            raise fail(INVALID_CODE)
        if issued.used:
            raise fail(CODE_USED)
        if now >= issued.expires_at:
            raise fail(INVALID_CODE)  # §2 emulator choice: 40029, not 42003
        issued.used = True
        user = self.users[issued.openid]
        if self.config.official_account(app) is None:
            # WeChat_Login: the website app's own openid; the unionid its account's apps share.
            grant = self._grant(website_openid(user), issued.scope, now, app, user.openid)
            answer = grant.token_answer(now)
            answer["unionid"] = website_unionid(user)
            return answer
        if app == self.config.appid:
            grant = self._grant(issued.openid, issued.scope, now, app)
        else:
            openid = account_openid(user, app, self.config)
            grant = self._grant(openid, issued.scope, now, app, user.openid)
        answer = grant.token_answer(now)
        # §2: unionid only for snsapi_userinfo, and only for accounts bound to an Open Platform.
        # A snapshot user's is virtual, like its openid (§1).
        unionid = account_unionid(user, app, self.config)
        if issued.scope == "snsapi_userinfo" and unionid:
            answer["unionid"] = unionid
        if user.snapshot:
            answer["is_snapshotuser"] = 1  # §2: present only for virtual users, value 1
        return answer

    def _grant(
        self, openid: str, scope: str, now: float, appid: str = "", user_key: str = ""
    ) -> WebGrant:
        grant = WebGrant(
            appid=appid,
            user_key=user_key,
            openid=openid,
            scope=scope,
            refresh_token=web_token_value(),
            refresh_expires_at=now + REFRESH_TOKEN_TTL,
            access_token=web_token_value(),
            access_expires_at=now + WEB_ACCESS_TOKEN_TTL,
        )
        self._grants_by_refresh[grant.refresh_token] = grant
        self._grants_by_access[grant.access_token] = grant
        return grant

    def add_followers(self, count: int) -> list[str]:
        """`count` made-up followers of the first account (their openids): load tests scan
        sign-in codes as many different people, since WeChat's pushes of one person's events
        in one second are one event to the service (FromUserName + CreateTime, §10)."""
        now = int(self.clock.now())
        added = []
        for _ in range(count):
            openid = "oSbxLoad" + random_token(20)
            self.users[openid] = SandboxUser(
                openid=openid,
                unionid=None,
                nickname="Load test follower",
                headimgurl="",
                subscribed=True,
                subscribe_time=now,
                subscribe_scene="ADD_SCENE_QR_CODE",
            )
            added.append(openid)
        return added

    def grant_many(self, count: int, scope: str, appid: str | None = None) -> list[dict[str, Any]]:
        """`count` made-up users who just authorized an account (default the first): load
        tests and benchmarks seed with it instead of walking the browser flow a hundred
        thousand times."""
        account = self.account(appid)
        app = "" if account.appid == self.config.appid else account.appid
        now = self.clock.now()
        grants = []
        for _ in range(count):
            grant = self._grant("oSbxLoad" + random_token(20), scope, now, app)
            grants.append(grant.token_answer(now))
        return grants

    def refresh(
        self, appid: str | None, grant_type: str | None, refresh_token: str | None
    ) -> dict[str, Any]:
        """sns/oauth2/refresh_token (§3): no secret; the refresh_token keeps its deadline."""
        app = self._sns_app(appid)
        if grant_type != "refresh_token":
            raise fail(INVALID_GRANT_TYPE)
        if not refresh_token:
            raise fail(REFRESH_TOKEN_MISSING)
        grant = self._grants_by_refresh.get(refresh_token)
        if grant is None or (grant.appid or self.config.appid) != app:
            raise fail(INVALID_REFRESH_TOKEN)  # another app's refresh_token is unknown here
        now = self.clock.now()
        if now >= grant.refresh_expires_at:
            raise fail(REFRESH_TOKEN_EXPIRED)
        if now < grant.access_expires_at:
            # Still valid: the same access_token with its expiry reset.
            grant.access_expires_at = now + WEB_ACCESS_TOKEN_TTL
        else:
            del self._grants_by_access[grant.access_token]
            grant.access_token = web_token_value()
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
        """sns/userinfo (§4), as answered since October 2021: no gender, no region. The
        openid and unionid are the ones of the app the person authorized."""
        grant = self._web_grant(access_token, INVALID_CREDENTIAL)
        if not openid:
            raise fail(OPENID_MISSING)
        if openid != grant.openid:
            raise fail(INVALID_OPENID)
        if grant.scope not in ("snsapi_userinfo", WEBSITE_SCOPE):
            raise fail(API_UNAUTHORIZED)  # WeChat_Login: snsapi_login reads the profile too
        user = self.users[grant.user_key or grant.openid]
        if user.snapshot:
            raise fail(API_UNAUTHORIZED)  # §1: observed 48001 for a snapshot user's token
        answer: dict[str, Any] = {
            "openid": grant.openid,
            "nickname": user.nickname,
            "sex": 0,
            "language": "",
            "city": "",
            "province": "",
            "country": "",
            "headimgurl": user.headimgurl,
            "privilege": [],
        }
        # The website app and the other accounts always have one (users.account_unionid).
        unionid = account_unionid(user, grant.appid or self.config.appid, self.config)
        if unionid:
            answer["unionid"] = unionid
        return answer

    def check_web_token(self, access_token: str | None, openid: str | None) -> dict[str, Any]:
        """sns/auth (§5): 0 "ok" for a valid token of that openid."""
        grant = self._web_grant(access_token, INVALID_ACCESS_TOKEN)
        if openid != grant.openid:
            raise fail(INVALID_OPENID)
        return {"errcode": 0, "errmsg": "ok"}


SANDBOX_KEY = web.AppKey("sandbox_wechat", SandboxWeChat)
