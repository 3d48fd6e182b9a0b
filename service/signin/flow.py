"""WeChat web authorization (OAuth2): start it with a stored state, finish it with the code."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, TypeGuard
from urllib.parse import quote, urlsplit

from service.accounts import Account
from service.app_jwt.issuer import JwtIssuer
from service.clock import utc
from service.config import Settings, origin_of
from service.errors import (
    CodeChallengeRequired,
    InvalidCode,
    InvalidCodeVerifier,
    InvalidParameter,
    InvalidState,
    MissingParameter,
    OriginNotAllowed,
    SnapshotUser,
    StateNotBound,
)
from service.pipeline.origins import open_base, public_url, redirect_origins
from service.randomness import random_bytes
from service.signin.state_token import (
    COOKIE,
    PKCE,
    UNBOUND,
    KnownContexts,
    RedirectContext,
    StateSigner,
    StateToken,
    binding_of_challenge,
    binding_of_cookie,
    binding_of_verifier,
)
from service.store.queries import Store
from service.wechat.client import (
    WeChatAPIError,
    WeChatClient,
    WeChatError,
)
from service.wechat.upstream import upstream_error

log = logging.getLogger(__name__)

SCOPES = ("snsapi_base", "snsapi_userinfo")
# A website app's (网站应用, WeChat_Login) one scope: the person confirms on their phone, and the
# token reads their profile as snsapi_userinfo's does.
WEBSITE_SCOPE = "snsapi_login"
PROFILE_SCOPES = ("snsapi_userinfo", WEBSITE_SCOPE)
# WeChat echoes `state` only if it is 1..128 of [a-zA-Z0-9]; 32 of 62 symbols is ~190 bits.
STATE_LENGTH = 32
STATE_PATTERN = re.compile(r"[A-Za-z0-9]{1,128}")
CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,512}")
MAX_URL_LENGTH = 2048
UNSAFE_URL_CHARACTERS = re.compile(r"[\s\x00-\x1f\x7f]")
# Codes WeChat refuses because of the code itself: the user must authorize again.
CODE_ERRCODES = {
    40029: "the code is invalid or expired (WeChat codes live 5 minutes)",
    40163: "the code was already used",
    41008: "the code is missing",
    42003: "the code expired",
}
# WeChat refused the code itself but the state may still be completed by the real code's
# holder: a forged, well-formed code must not burn someone else's state (40029 is also what an
# expired code answers, wechat-api.md §2, and then the state is near its own end anyway).
RELEASING_ERRCODES = frozenset({40029})
PROFILE_FIELDS = ("nickname", "headimgurl", "sex", "province", "city", "country")

# PKCE (RFC 7636). Only S256: its challenge is BASE64URL(SHA256(verifier)) without padding,
# always 43 characters (§4.2); "plain" would put the verifier itself in the browser's URL.
CODE_CHALLENGE_METHODS = ("S256",)
DEFAULT_SCOPE = "snsapi_base"
CODE_CHALLENGE_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
# §4.1: 43 to 128 unreserved characters.
CODE_VERIFIER_PATTERN = re.compile(r"[A-Za-z0-9._~-]{43,128}")

# /wechat/login's browser binding: a random secret in an HttpOnly cookie; the state stores
# only its SHA-256, so a leaked database cannot complete anyone's sign-in.
BINDING_COOKIE = "wechat_oa_auth_binding"
BINDING_SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
BUILTIN_CALLBACK_PATH = "/wechat/callback"
# INVALID_STATE's `details.field` for a state already used and for one expired (`fieldValue`:
# when); an unknown state's is "state", as for a malformed one.
STATE_USED_FIELD = "state.usedAt"
STATE_EXPIRED_FIELD = "state.expiresAt"


@dataclass(frozen=True)
class AuthorizationRequest:
    redirect_uri: str
    callback: str
    scope: str
    code_challenge: str | None = None


def parse_authorization_request(
    settings: Settings,
    redirect_uri: str,
    callback: str,
    scope: str,
    code_challenge: str | None = None,
    code_challenge_method: str | None = None,
) -> AuthorizationRequest:
    """/wechat/authorize's input, each parameter well-formed (signin/contract.py): the URLs
    allowed and distinct, the PKCE pair complete. Every failure names the parameter."""
    redirect_uri = app_url(settings, "redirectUri", redirect_uri)
    callback = app_url(settings, "callback", callback)
    if callback == redirect_uri:
        raise InvalidParameter(
            "callback must differ from redirectUri: WeChat returns the user to callback, "
            "which then sends them on to redirectUri",
            field="callback",
            value=callback,
        )
    challenge = _code_challenge(settings, code_challenge, code_challenge_method)
    if challenge and callback == builtin_callback(settings):
        # That page has no verifier to send: the sign-in could never finish.
        raise InvalidParameter(
            "the built-in callback page cannot send a codeVerifier: start browser-bound "
            "sign-ins for it with /wechat/login instead",
            field="codeChallenge",
            value=challenge,
        )
    return AuthorizationRequest(redirect_uri, callback, scope, challenge)


def parse_login_request(settings: Settings, redirect_uri: str, scope: str) -> AuthorizationRequest:
    """/wechat/login's input: WeChat returns the user to the built-in callback page."""
    redirect_uri = app_url(settings, "redirectUri", redirect_uri)
    callback = builtin_callback(settings)
    if redirect_uri == callback:
        raise InvalidParameter(
            "redirectUri must be the app's page, not the built-in callback page",
            field="redirectUri",
            value=redirect_uri,
        )
    return AuthorizationRequest(redirect_uri, callback, scope)


def builtin_callback(settings: Settings) -> str:
    return public_url(settings).rstrip("/") + BUILTIN_CALLBACK_PATH


def _code_challenge(settings: Settings, challenge: str | None, method: str | None) -> str | None:
    """The S256 challenge to store, or None for an unbound state (STATE_BINDING=optional).

    The method must be named: RFC 7636 makes "plain" the default, and a client that forgot it
    should hear so rather than get a binding it did not ask for."""
    if not challenge:
        if method:
            raise MissingParameter(
                "codeChallenge is required with codeChallengeMethod",
                field="codeChallenge",
                value=challenge,
            )
        if settings.state_binding == "required":
            raise CodeChallengeRequired(
                "STATE_BINDING=required: send codeChallenge (BASE64URL(SHA-256(codeVerifier)))"
                " and codeChallengeMethod=S256, or sign in through /wechat/login",
                field="codeChallenge",
                value=challenge,
            )
        return None
    if not method:
        raise MissingParameter(
            "codeChallengeMethod=S256 is required with codeChallenge (plain is refused)",
            field="codeChallengeMethod",
            value=method,
        )
    return challenge


def s256_challenge(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))), unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def binding_cookie_name(settings: Settings) -> str:
    """__Host- on https: the browser then takes it only with Secure, Path=/ and no Domain, so
    a sibling subdomain cannot plant its own binding cookie for this host."""
    return _cookie_form(public_url(settings))[0]


@functools.lru_cache(maxsize=64)
def _cookie_form(public: str) -> tuple[str, bool]:
    """The cookie's name and whether it is Secure, for the service at `public` (every
    /wechat/login asks; in sandbox mode the public URL follows the request's origin)."""
    secure = public.lower().startswith("https:")
    return (f"__Host-{BINDING_COOKIE}" if secure else BINDING_COOKIE), secure


def browser_secret(presented: str | None) -> str:
    """The browser's binding secret: the one its cookie already holds, so a sign-in started in
    a second tab does not unbind the first (whichever completes first clears the cookie; the
    other then starts again), or a fresh one."""
    if presented and BINDING_SECRET_PATTERN.fullmatch(presented):
        return presented
    # 256 bits as secrets.token_urlsafe(32) writes them, from the pooled OS randomness
    # (binascii: base64.urlsafe_b64encode's own translate table and calls cost 0.3 µs more).
    encoded = binascii.b2a_base64(random_bytes(16) + random_bytes(16), newline=False)
    return encoded.translate(_URLSAFE).rstrip(b"=").decode()


_URLSAFE = bytes.maketrans(b"+/", b"-_")


class BindingCookie(NamedTuple):
    """What the handler sets: name, value and attributes of the binding cookie. (A tuple:
    every /wechat/login makes one, and a frozen dataclass took three times as long.)"""

    name: str
    value: str
    max_age: int
    secure: bool

    def header(self) -> str:
        """The Set-Cookie value, written directly: building it through aiohttp's set_cookie
        (http.cookies' Morsel, twice: set, then output) was 6 µs of every /wechat/login.
        HttpOnly: no script reads it; SameSite=Lax: sent on WeChat's top-level redirect back
        to the callback page, never on another site's subrequests; Path=/ as __Host- demands.
        The value is a secret's URL-safe base64 (BINDING_SECRET_PATTERN), never quoted, or
        empty when cleared."""
        before, after = _cookie_frame(self.name, self.max_age, self.secure)
        return before + (self.value or '""') + after


@functools.lru_cache(maxsize=64)
def _cookie_frame(name: str, max_age: int, secure: bool) -> tuple[str, str]:
    """The Set-Cookie text around the value: the same for every cookie of one configuration."""
    return f"{name}=", f"; HttpOnly; Max-Age={max_age}; Path=/; SameSite=Lax" + (
        "; Secure" if secure else ""
    )


def binding_cookie(settings: Settings, secret: str) -> BindingCookie:
    """Lives as long as the state it binds."""
    name, secure = _cookie_form(public_url(settings))
    return BindingCookie(name, secret, settings.state_ttl, secure)


def cleared_binding_cookie(settings: Settings) -> BindingCookie:
    """Max-Age=0 after a bound sign-in completed: nothing is left for it to bind."""
    name, secure = _cookie_form(public_url(settings))
    return BindingCookie(name, "", 0, secure)


class Started(NamedTuple):
    """A new authorization: WeChat's URL, and the cookie to set if the state is browser-bound.
    (A tuple: every /wechat/login makes one.)"""

    url: AuthorizationUrl
    cookie: BindingCookie | None = None


def app_url(settings: Settings, name: str, value: str | None) -> str:
    if value is None or value == "":
        raise MissingParameter(f"{name} is required", field=name, value=value)
    if len(value) > MAX_URL_LENGTH:
        raise InvalidParameter(
            f"{name} is longer than {MAX_URL_LENGTH} characters", field=name, value=value
        )
    return _checked_app_url(name, value, redirect_origins(settings))


@functools.lru_cache(maxsize=1024)
def _checked_app_url(name: str, value: str, allowed_origins: frozenset[str]) -> str:
    """The checks are a pure function of these arguments, and an app sends the same few URLs
    with every sign-in: a valid URL's outcome is remembered (a refusal raises and is not).
    Parsing them was 9% of an authorization's server time (bench/README.md)."""
    if UNSAFE_URL_CHARACTERS.search(value):
        raise InvalidParameter(
            f"{name} must not contain spaces or control characters", field=name, value=value
        )
    try:
        # urlsplit raises for a broken [ ] host, and for a netloc whose NFKC form holds URL
        # syntax (fullwidth ＃ ＠ ／): a browser would read such a URL differently.
        parts = urlsplit(value)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises for a port that is not a number in 0..65535
    except ValueError:
        raise InvalidParameter(
            f"{name} is not a well-formed URL (its host or port cannot be parsed)",
            field=name,
            value=value,
        ) from None
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


def account_scope(account: Account, requested: str | None) -> str:
    """The scope to ask WeChat for: an Official Account's snsapi_base (default) or
    snsapi_userinfo; a website app's snsapi_login, its only one."""
    if not account.official:
        if requested not in (None, WEBSITE_SCOPE):
            raise InvalidParameter(
                f"account {account.name} is a website app: its only scope is snsapi_login",
                field="scope",
                value=requested,
            )
        return WEBSITE_SCOPE
    if requested == WEBSITE_SCOPE:
        raise InvalidParameter(
            f"snsapi_login is a website app's scope; account {account.name} is an Official "
            "Account (snsapi_base or snsapi_userinfo)",
            field="scope",
            value=requested,
        )
    return requested or DEFAULT_SCOPE


class AuthorizationUrl(NamedTuple):
    """WeChat's page for one sign-in, in the parts it is made of: `start`, everything before
    the state (the same for every sign-in of an app page, built once), the state (hex), and
    `end`, a constant. str() is the URL."""

    start: str
    state: str
    end: str

    def __str__(self) -> str:
        return self.start + self.state + self.end

    def json(self) -> str:
        """The URL as a JSON string, as json.dumps writes it: the start's encoded once per app
        page, since the state (hex) and the end (ASCII, no quote or backslash) need no escape.
        Authorize's every answer carries it, and encoding all of it was 0.6 µs a request."""
        return _json_start(self.start) + self.state + self.end + '"'


def authorization_url(settings: Settings, callback: str, scope: str, state: str) -> str:
    """WeChat's page for the account of `settings` (Settings.for_account): connect/qrconnect
    for a website app's snsapi_login, connect/oauth2/authorize for an Official Account."""
    return str(authorization_url_parts(settings, callback, scope, state))


def authorization_url_parts(
    settings: Settings, callback: str, scope: str, state: str
) -> AuthorizationUrl:
    # WeChat_Login's desktop page with the QR code has no forcePopup.
    end = _QRCONNECT_END if scope == WEBSITE_SCOPE else _AUTHORIZE_END
    start = _authorization_url_start(open_base(settings), settings.wechat_appid, callback, scope)
    return AuthorizationUrl(start, state, end)


_AUTHORIZE_END = "&forcePopup=false#wechat_redirect"
_QRCONNECT_END = "#wechat_redirect"


@functools.lru_cache(maxsize=1024)
def _authorization_url_start(open_base: str, appid: str, callback: str, scope: str) -> str:
    # Everything but the state, the same for every sign-in of an app: percent-encoded once.
    # WeChat checks the parameter order (appid first) and needs the #wechat_redirect fragment.
    page = "qrconnect" if scope == WEBSITE_SCOPE else "oauth2/authorize"
    return (
        f"{open_base}/connect/{page}"
        f"?appid={quote(appid, safe='')}"
        f"&redirect_uri={quote(callback, safe='')}"
        f"&response_type=code&scope={scope}&state="
    )


@functools.lru_cache(maxsize=1024)
def _json_start(start: str) -> str:
    """A URL start as the opening of a JSON string (its closing quote left off)."""
    return json.encoder.encode_basestring_ascii(start)[:-1]


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


@dataclass(frozen=True)
class Completed:
    """/wechat/jwt's answer, and whether the state was bound by a cookie (then cleared)."""

    answer: dict[str, Any]
    browser_bound: bool


# How long this process trusts that a redirect context it stored is still stored (its purge is
# then moved later again): an app's sign-ins write nothing in between.
CONTEXT_REFRESH = 3600


@dataclass(frozen=True)
class Prepared:
    """A sign-in request as checked, with its redirect context, the context's id, and WeChat's
    URL around the state (the same for every sign-in the request starts: in sandbox mode it
    follows the request's origin, which PreparedRequests' keys hold)."""

    request: AuthorizationRequest
    context: RedirectContext
    context_id: str
    url_start: str
    url_end: str


class PreparedRequests:
    """Sign-in requests already checked, by what they were checked from: an app page sends the
    same query with every sign-in, and reading and checking its parameters (URL parsing and
    allow-list included) was a third of authorize's own time. Only requests that passed are
    kept (a refusal raises), and at most `limit` of them, oldest out first: a client sending
    ever new queries only makes its own requests miss."""

    def __init__(self, limit: int = 1024) -> None:
        self._found: dict[tuple[object, ...], Prepared] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._found)

    def get(self, key: tuple[object, ...]) -> Prepared | None:
        return self._found.get(key)

    def put(self, key: tuple[object, ...], prepared: Prepared) -> None:
        if len(self._found) >= self._limit:
            del self._found[next(iter(self._found))]
        self._found[key] = prepared


@dataclass(frozen=True, kw_only=True)
class SignIn:
    """Web authorization for the app: a state out that carries its own proof, WeChat's code
    back in, the app's JWT issued once the state's binding holds, the state used once."""

    account: Account
    settings: Settings  # the account's (Settings.for_account)
    store: Store  # scoped to the account
    wechat: WeChatClient
    jwt: JwtIssuer
    states: StateSigner
    contexts: KnownContexts
    prepared: PreparedRequests = field(default_factory=PreparedRequests)

    def authorization_url(self, callback: str, scope: str, state: str) -> str:
        """This account's WeChat page for a state stored elsewhere (the OIDC front door)."""
        return authorization_url(self.settings, callback, scope, state)

    async def begin(
        self, request: AuthorizationRequest, *, binding_secret: str | None = None
    ) -> AuthorizationUrl:
        """A fresh single-use state and the WeChat URL to send the user to; nothing is written
        but, once an hour per app page, its redirect context.

        With a codeChallenge the state completes only with its verifier; with a binding secret
        only in the browser whose cookie holds it."""
        return await self.begin_prepared(self.prepare(request), binding_secret=binding_secret)

    def prepare(self, request: AuthorizationRequest) -> Prepared:
        context = RedirectContext(
            self.account.name, request.redirect_uri, request.callback, request.scope
        )
        url = authorization_url_parts(self.settings, request.callback, request.scope, "")
        return Prepared(request, context, context.id, url.start, url.end)

    async def begin_prepared(
        self, prepared: Prepared, *, binding_secret: str | None = None
    ) -> AuthorizationUrl:
        """begin() of a request checked earlier (PreparedRequests)."""
        request = prepared.request
        now = self.store.clock.now()
        stored = self.contexts.stored_since(prepared.context_id)
        if stored is None or now - stored >= CONTEXT_REFRESH:
            await self._keep(prepared.context, now)
        if request.code_challenge:
            kind, binding = PKCE, binding_of_challenge(request.code_challenge)
        elif binding_secret:
            kind, binding = COOKIE, binding_of_cookie(binding_secret)
        else:
            kind, binding = UNBOUND, b""
        state = self.states.issue(
            issued_at=int(now), context_id=prepared.context_id, binding_kind=kind, binding=binding
        )
        return AuthorizationUrl(prepared.url_start, state, prepared.url_end)

    async def _keep(self, context: RedirectContext, now: float) -> None:
        """The context stored for as long as any state referring to it may be read."""
        stored = self.contexts.stored_since(context.id)
        if stored is not None and now - stored < CONTEXT_REFRESH:
            return
        settings = self.settings
        await self.store.save_state_context(
            context.id,
            {
                "account": context.account,
                "redirectUri": context.redirect_uri,
                "callback": context.callback,
                "scope": context.scope,
            },
            now + settings.state_ttl + settings.state_retention + CONTEXT_REFRESH,
        )
        self.contexts.remember(context, now)

    async def begin_login(
        self, request: AuthorizationRequest | Prepared, presented: str | None
    ) -> Started:
        """/wechat/login: a state bound to this browser by the cookie returned with the URL."""
        secret = browser_secret(presented)
        prepared = request if isinstance(request, Prepared) else self.prepare(request)
        url = await self.begin_prepared(prepared, binding_secret=secret)
        return Started(url, binding_cookie(self.settings, secret))

    async def retry_found(
        self,
        token: StateToken,
        context: RedirectContext,
        presented: str | None,
        code_verifier: str | None,
    ) -> Started:
        """A new authorization for the same app URLs as an earlier (used, expired, denied) state,
        bound as that one was: the same codeChallenge, or the requesting browser's cookie (so the
        new state completes only where it was asked for).

        A PKCE state is renewed only for whoever shows its verifier: a state string is no secret
        (it travels in URLs), and a renewed challenge in anyone's hands would let them start a
        sign-in of their own that the victim's page, holding the verifier, then completes."""
        _check_verifier(token, code_verifier)
        if token.binding_kind == COOKIE:
            request = parse_login_request(self.settings, context.redirect_uri, context.scope)
            return await self.begin_login(request, presented)
        challenge = s256_challenge(code_verifier) if code_verifier else None
        request = parse_authorization_request(
            self.settings,
            context.redirect_uri,
            context.callback,
            context.scope,
            challenge,
            "S256" if challenge else None,
        )
        return Started(await self.begin(request))

    async def complete_found(
        self,
        token: StateToken,
        context: RedirectContext,
        code: str,
        *,
        code_verifier: str | None = None,
        presented_secret: str | None = None,
        cookie_name: str = BINDING_COOKIE,
    ) -> Completed:
        """Check a live state's binding, use it, exchange the code, record the user and token,
        issue the app's JWT."""
        # Before using it: a failed check leaves the state to whoever holds its binding.
        _check_binding(token, code_verifier, presented_secret, cookie_name)
        settings = self.settings
        state_id = token.nonce.hex()
        expires_at = token.issued_at + settings.state_ttl
        first, used_at = await self.store.use_state(state_id, expires_at + settings.state_retention)
        if not first:  # a concurrent request used it since the check
            raise _used(used_at)

        async def release() -> None:
            await self.store.release_state(state_id, used_at)

        user, scope = await self.sign_in_with_code(code, context.scope, release)
        return Completed(
            signed_in(self.jwt, user, scope, context.redirect_uri), token.binding_kind == COOKIE
        )

    async def sign_in_with_code(
        self, code: str, requested_scope: str, release: Callable[[], Awaitable[None]]
    ) -> tuple[dict[str, Any], str]:
        """WeChat's code exchanged, the profile fetched (snsapi_userinfo), the user and their
        web token stored: the user and the scope granted. `release` runs when the code was not
        spent (WeChat unavailable, or it refused the code as invalid), so whatever the caller
        consumed can serve the real code's holder."""
        try:
            web_token = await self.wechat.exchange_code(code)
        except WeChatAPIError as exc:
            if exc.errcode in CODE_ERRCODES:
                if exc.errcode in RELEASING_ERRCODES:
                    await release()
                reason = CODE_ERRCODES[exc.errcode]
                raise InvalidCode(
                    f"WeChat refused the code: {reason} (errcode {exc.errcode})",
                    field="code",
                    value=code,
                ) from None
            # WeChat did not take the code, so the user may retry with the same state.
            await release()
            raise upstream_error(exc) from None
        except WeChatError as exc:
            await release()
            raise upstream_error(exc) from None

        if web_token.is_snapshotuser:
            # A virtual account from WeChat's snapshot page (wechat-api.md §1): its openid and
            # unionid are not the person's (one virtual unionid has been seen on several
            # openids), so nobody is signed in or stored. The state is released: tapping
            # 使用完整服务 reopens the authorization, and its real code may then finish this
            # same sign-in.
            await release()
            raise SnapshotUser(
                "WeChat opened this page as a snapshot (快照页) with a virtual account: tap "
                "「使用完整服务」 (Use full service) at the bottom of the screen, then sign in "
                "again",
                field="is_snapshotuser",
                value=1,
            )

        scope = web_token.scope if web_token.scope in (*SCOPES, WEBSITE_SCOPE) else requested_scope
        profile = None
        if scope in PROFILE_SCOPES:
            profile = await self._fetch_profile(web_token.access_token, web_token.openid)
        unionid = web_token.unionid or (profile or {}).get("unionid") or None
        user = await self.store.record_login(web_token.openid, unionid, _profile_fields(profile))
        await self.store.save_web_token(
            openid=web_token.openid,
            scope=scope,
            access_token=web_token.access_token,
            refresh_token=web_token.refresh_token,
            expires_in=web_token.expires_in,
            unionid=unionid,
        )
        return user, scope

    async def _fetch_profile(self, access_token: str, openid: str) -> dict[str, Any] | None:
        """The user's profile, or None if WeChat would not give it now.

        The code is already spent, so failing the sign-in here would force the user to authorize
        again; signing in with the profile missing (and logging why) serves them better.
        """
        try:
            return await self.wechat.user_info(access_token, openid)
        except WeChatError as exc:
            log.warning("sign-in continues without a profile: %s", exc)
            return None


def _used(used_at: datetime) -> InvalidState:
    return InvalidState(
        "this state was already used: each sign-in link works once",
        field=STATE_USED_FIELD,
        value=_utc_instant(used_at),
    )


@dataclass(frozen=True)
class SignIns:
    """Every account's SignIn, by name, the first the default. A state refers to the redirect
    context it was started for, which names the account, so finishing or retrying a sign-in
    needs no account from the caller."""

    by_name: Mapping[str, SignIn]

    @property
    def default(self) -> SignIn:
        return next(iter(self.by_name.values()))

    async def _found(
        self, state: str, unknown: str
    ) -> tuple[StateToken, RedirectContext, SignIn, float]:
        """The state read, its context and its account's SignIn, and now; InvalidState when it
        is not ours, or past its retention (kept STATE_RETENTION after it expired, as "try
        again" needs), or its context or account is gone."""
        default = self.default
        token = default.states.read(state)
        now = default.store.clock.now()
        settings = default.settings
        if token is None or now >= token.issued_at + settings.state_ttl + settings.state_retention:
            raise InvalidState(unknown, field="state", value=state)
        context = default.contexts.get(token.context_id)
        if context is None:
            doc = await default.store.get_state_context(token.context_id)
            if doc is None:
                raise InvalidState(unknown, field="state", value=state)
            context = RedirectContext(
                doc["account"], doc["redirectUri"], doc["callback"], doc["scope"]
            )
            default.contexts.remember(context)
        sign_in = self.by_name.get(context.account)
        if sign_in is None:  # its account was removed from the configuration since
            raise InvalidState(
                "this sign-in's account is no longer served: start signing in again",
                field="state",
                value=state,
            )
        return token, context, sign_in, now

    async def complete(
        self,
        state: str,
        code: str,
        *,
        code_verifier: str | None = None,
        presented_secret: str | None = None,
        cookie_name: str = BINDING_COOKIE,
    ) -> Completed:
        """Why a state cannot complete is told apart by `details` for pages to act on (see
        EXCHANGE_CODE in signin/contract.py): unknown (`state`, the state as sent), already used
        (STATE_USED_FIELD, when: ISO 8601 UTC) or expired (STATE_EXPIRED_FIELD, when)."""
        token, context, sign_in, now = await self._found(
            state, "unknown state: start signing in again"
        )
        used_at = await sign_in.store.state_used_at(token.nonce.hex())
        if used_at is not None:
            raise _used(used_at)
        expires_at = token.issued_at + sign_in.settings.state_ttl
        if now >= expires_at:
            raise InvalidState(
                "this state expired: start signing in again",
                field=STATE_EXPIRED_FIELD,
                value=_utc_instant(utc(expires_at)),
            )
        return await sign_in.complete_found(
            token,
            context,
            code,
            code_verifier=code_verifier,
            presented_secret=presented_secret,
            cookie_name=cookie_name,
        )

    async def retry(
        self, state: str, presented: str | None, code_verifier: str | None = None
    ) -> Started:
        token, context, sign_in, _now = await self._found(
            state, "unknown state: start signing in again from the app"
        )
        return await sign_in.retry_found(token, context, presented, code_verifier)


def _check_binding(
    token: StateToken, verifier: str | None, presented: str | None, cookie_name: str
) -> None:
    """The state completes only for whoever started it: PKCE's verifier, or the cookie."""
    _check_verifier(token, verifier)
    _check_cookie(token, presented, cookie_name)


def _check_verifier(token: StateToken, verifier: str | None) -> None:
    """Constant-time, and a missing, malformed or wrong verifier gets one and the same answer
    (the value is never echoed), so answers teach an attacker nothing."""
    if token.binding_kind == PKCE:
        computed = binding_of_verifier(verifier) if _verifier_format_ok(verifier) else b""
        if not hmac.compare_digest(computed, token.binding):
            raise InvalidCodeVerifier(
                "codeVerifier is missing or does not match this sign-in's codeChallenge",
                field="codeVerifier",
                value=None,
            )
    elif verifier is not None:
        # A verifier for an unbound state means the app believes it is protected when it is
        # not (it lost the challenge on the way): say so rather than sign in unbound.
        raise InvalidCodeVerifier(
            "codeVerifier was sent, but this sign-in was started without a codeChallenge",
            field="codeVerifier",
            value=None,
        )


def _check_cookie(token: StateToken, presented: str | None, cookie_name: str) -> None:
    if token.binding_kind == COOKIE:
        computed = binding_of_cookie(presented) if presented and presented.isascii() else b""
        if not hmac.compare_digest(computed, token.binding):
            raise StateNotBound(
                "this sign-in was started in another browser: start signing in again here",
                field=cookie_name,
                value=None,
            )


def _utc_instant(moment: datetime) -> str:
    """A stored time (UTC, with or without tzinfo) as ISO 8601: 2025-01-31T08:00:00Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _verifier_format_ok(verifier: str | None) -> TypeGuard[str]:
    return verifier is not None and CODE_VERIFIER_PATTERN.fullmatch(verifier) is not None


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


def _profile_fields(profile: dict[str, Any] | None) -> dict[str, Any]:
    if not profile:
        return {}
    return {k: profile[k] for k in PROFILE_FIELDS if k in profile}


def public_user(user: dict[str, Any]) -> dict[str, Any]:
    """What a client may see of a stored user."""
    out: dict[str, Any] = {"openid": user["openid"], "unionid": user.get("unionid")}
    for key in (*PROFILE_FIELDS, "firstLoginAt", "lastLoginAt", "loginCount"):
        if key in user:
            value = user[key]
            out[key] = value.isoformat() if isinstance(value, datetime) else value
    return out
