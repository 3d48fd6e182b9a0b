"""WeChat web authorization (OAuth2): start it with a stored state, finish it with the code."""

from __future__ import annotations

import base64
import functools
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from .auth import JwtIssuer
from .config import Settings, origin_of
from .errors import (
    InvalidCode,
    InvalidParameter,
    InvalidState,
    MissingParameter,
    OriginNotAllowed,
)
from .store import Store
from .upstream import upstream_error
from .wechat.client import (
    WeChatAPIError,
    WeChatClient,
    WeChatError,
)

log = logging.getLogger(__name__)

SCOPES = ("snsapi_base", "snsapi_userinfo")
# WeChat echoes `state` only if it is 1..128 of [a-zA-Z0-9]; 32 of 62 symbols is ~190 bits.
STATE_LENGTH = 32
STATE_PATTERN = re.compile(r"[A-Za-z0-9]{1,128}")
CODE_PATTERN = re.compile(r"[A-Za-z0-9_\-]{1,512}")
MAX_URL_LENGTH = 2048
UNSAFE_URL_CHARACTERS = re.compile(r"[\s\x00-\x1f\x7f]")
# Codes WeChat refuses because of the code itself: the user must authorize again.
CODE_ERRCODES = {
    40029: "the code is invalid or expired (WeChat codes live 5 minutes)",
    40163: "the code was already used",
    41008: "the code is missing",
    42003: "the code expired",
}
PROFILE_FIELDS = ("nickname", "headimgurl", "sex", "province", "city", "country")


@dataclass(frozen=True)
class AuthorizationRequest:
    redirect_uri: str
    callback: str
    scope: str


def parse_authorization_request(
    settings: Settings, redirect_uri: str | None, callback: str | None, scope: str | None
) -> AuthorizationRequest:
    """Validate /wechat/authorize's input; every failure names the parameter and its value."""
    redirect_uri = app_url(settings, "redirectUri", redirect_uri)
    callback = app_url(settings, "callback", callback)
    scope = "snsapi_base" if scope is None or scope == "" else scope
    if scope not in SCOPES:
        raise InvalidParameter(
            f"scope must be one of {', '.join(SCOPES)}", field="scope", value=scope
        )
    if callback == redirect_uri:
        raise InvalidParameter(
            "callback must differ from redirectUri: WeChat returns the user to callback, "
            "which then sends them on to redirectUri",
            field="callback",
            value=callback,
        )
    return AuthorizationRequest(redirect_uri, callback, scope)


def app_url(settings: Settings, name: str, value: str | None) -> str:
    if value is None or value == "":
        raise MissingParameter(f"{name} is required", field=name, value=value)
    if len(value) > MAX_URL_LENGTH:
        raise InvalidParameter(
            f"{name} is longer than {MAX_URL_LENGTH} characters", field=name, value=value
        )
    return _checked_app_url(name, value, settings.redirect_origins)


@functools.lru_cache(maxsize=1024)
def _checked_app_url(name: str, value: str, allowed_origins: frozenset[str]) -> str:
    """The checks are a pure function of these arguments, and an app sends the same few URLs
    with every sign-in: a valid URL's outcome is remembered (a refusal raises and is not).
    Parsing them was 9% of an authorization's server time (bench/README.md)."""
    if UNSAFE_URL_CHARACTERS.search(value):
        raise InvalidParameter(
            f"{name} must not contain spaces or control characters", field=name, value=value
        )
    parts = urlsplit(value)
    hostname = parts.hostname
    # Only absolute http(s) URLs: javascript:, data: and relative URLs are how open redirects
    # and script injection get in.
    if parts.scheme.lower() not in ("http", "https") or not hostname:
        raise InvalidParameter(
            f"{name} must be an absolute http or https URL", field=name, value=value
        )
    if "@" in parts.netloc:  # user or password: what .username/.password would parse out
        raise InvalidParameter(f"{name} must not carry user credentials", field=name, value=value)
    if parts.fragment or value.endswith("#"):
        raise InvalidParameter(f"{name} must not have a #fragment", field=name, value=value)
    origin = origin_of(parts)
    if not origin or origin not in allowed_origins:
        raise OriginNotAllowed(
            f"{name}'s origin {origin or '?'} is not in ALLOWED_REDIRECT_ORIGINS",
            field=name,
            value=value,
        )
    return value


def authorization_url(settings: Settings, callback: str, scope: str, state: str) -> str:
    return (
        _authorization_url_start(settings.open_base, settings.wechat_appid, callback, scope)
        + f"&state={state}&forcePopup=false#wechat_redirect"
    )


@functools.lru_cache(maxsize=1024)
def _authorization_url_start(open_base: str, appid: str, callback: str, scope: str) -> str:
    # Everything but the state, the same for every sign-in of an app: percent-encoded once.
    # WeChat checks the parameter order (appid first) and needs the #wechat_redirect fragment.
    return (
        f"{open_base}/connect/oauth2/authorize"
        f"?appid={quote(appid, safe='')}"
        f"&redirect_uri={quote(callback, safe='')}"
        f"&response_type=code&scope={scope}"
    )


def new_state() -> str:
    """32 characters of [A-Za-z0-9] from the system CSPRNG, in C rather than a Python loop.

    base64 of random bytes is uniform over 64 symbols; dropping '+' and '/' leaves it uniform
    over the 62 WeChat allows. 30 bytes give 40 symbols, about 38.75 kept: short of 32 about
    once in 10^6 draws, which simply draws again.
    """
    while True:
        symbols = base64.b64encode(secrets.token_bytes(30)).translate(None, b"+/")
        if len(symbols) >= STATE_LENGTH:
            return symbols[:STATE_LENGTH].decode()


async def begin_authorization(
    store: Store, settings: Settings, request: AuthorizationRequest
) -> str:
    """Store a fresh single-use state and return the WeChat URL to send the user to."""
    state = new_state()
    await store.create_state(
        state,
        redirect_uri=request.redirect_uri,
        callback=request.callback,
        scope=request.scope,
        ttl=settings.state_ttl,
        retention=settings.state_retention,
    )
    return authorization_url(settings, request.callback, request.scope, state)


def check_state_format(state: str | None) -> str:
    if state is None or state == "":
        raise MissingParameter("state is required", field="state", value=state)
    if not STATE_PATTERN.fullmatch(state):
        raise InvalidState("state must be 1 to 128 letters or digits", field="state", value=state)
    return state


async def retry_authorization(store: Store, settings: Settings, state: str | None) -> str:
    """A new authorization for the same app URLs as an earlier (used, expired, denied) state."""
    state = check_state_format(state)
    doc = await store.find_state(state)
    if doc is None:
        raise InvalidState(
            "unknown state: start signing in again from the app", field="state", value=state
        )
    request = parse_authorization_request(
        settings, doc["redirectUri"], doc["callback"], doc["scope"]
    )
    return await begin_authorization(store, settings, request)


async def complete_authorization(
    store: Store,
    wechat: WeChatClient,
    issuer: JwtIssuer,
    state: str | None,
    code: str | None,
) -> dict[str, Any]:
    """Consume the state, exchange the code, record the user and token, issue the app's JWT."""
    state = check_state_format(state)
    if code is None or code == "":
        raise MissingParameter(
            "code is required; WeChat sends none when the user declines authorization",
            field="code",
            value=code,
        )
    if not CODE_PATTERN.fullmatch(code):
        raise InvalidCode("code has characters WeChat never uses", field="code", value=code)

    doc = await store.consume_state(state)
    if doc is None:
        raise InvalidState(await _why_state_unusable(store, state), field="state", value=state)

    try:
        web_token = await wechat.exchange_code(code)
    except WeChatAPIError as exc:
        if exc.errcode in CODE_ERRCODES:
            raise InvalidCode(
                f"WeChat refused the code: {CODE_ERRCODES[exc.errcode]} (errcode {exc.errcode})",
                field="code",
                value=code,
            ) from None
        # WeChat did not take the code, so the user may retry with the same state.
        await store.release_state(doc)
        raise upstream_error(exc) from None
    except WeChatError as exc:
        await store.release_state(doc)
        raise upstream_error(exc) from None

    scope = web_token.scope if web_token.scope in SCOPES else doc["scope"]
    profile = None
    if scope == "snsapi_userinfo":
        profile = await _fetch_profile(wechat, web_token.access_token, web_token.openid)
    unionid = web_token.unionid or (profile or {}).get("unionid") or None
    user = await store.record_login(
        web_token.openid, unionid, _profile_fields(profile, web_token.is_snapshotuser)
    )
    await store.save_web_token(
        openid=web_token.openid,
        scope=scope,
        access_token=web_token.access_token,
        refresh_token=web_token.refresh_token,
        expires_in=web_token.expires_in,
        unionid=unionid,
    )
    return signed_in(issuer, user, scope, doc["redirectUri"])


def signed_in(
    issuer: JwtIssuer, user: dict[str, Any], scope: str, redirect_uri: str | None
) -> dict[str, Any]:
    """The app's JWT for a user, in the one shape every way of signing in answers."""
    issued = issuer.issue(openid=user["openid"], scope=scope, unionid=user.get("unionid"))
    return {
        "token": issued.token,
        "tokenType": "Bearer",
        "expiresIn": issued.expires_in,
        "redirectUri": redirect_uri,
        "openid": user["openid"],
        "scope": scope,
        "user": public_user(user),
    }


async def _why_state_unusable(store: Store, state: str) -> str:
    doc = await store.find_state(state)
    if doc is None:
        return "unknown state: start signing in again"
    if doc.get("usedAt") is not None:
        return "this state was already used: each sign-in link works once"
    return "this state expired: start signing in again"


async def _fetch_profile(wechat: WeChatClient, access_token: str, openid: str) -> dict | None:
    """The user's profile, or None if WeChat would not give it now.

    The code is already spent, so failing the sign-in here would force the user to authorize
    again; signing in with the profile missing (and logging why) serves them better.
    """
    try:
        return await wechat.user_info(access_token, openid)
    except WeChatError as exc:
        log.warning("sign-in continues without a profile: %s", exc)
        return None


def _profile_fields(profile: dict | None, snapshot: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if profile:
        fields = {k: profile[k] for k in PROFILE_FIELDS if k in profile}
    if snapshot:
        # WeChat's "snapshot page" users are virtual accounts (announcement of 2022-07-12).
        fields["isSnapshotUser"] = True
    return fields


def public_user(user: dict[str, Any]) -> dict[str, Any]:
    """What a client may see of a stored user."""
    out: dict[str, Any] = {"openid": user["openid"], "unionid": user.get("unionid")}
    for key in (*PROFILE_FIELDS, "isSnapshotUser", "firstLoginAt", "lastLoginAt", "loginCount"):
        if key in user:
            value = user[key]
            out[key] = value.isoformat() if isinstance(value, datetime) else value
    return out
