"""The service's own origin for a request, and the origins an app may name (sign-in, CORS).

Production: PUBLIC_URL is the service's origin, fixed at start, and only it (in sandbox mode)
and ALLOWED_REDIRECT_ORIGINS are allowed.

Sandbox mode with PUBLIC_URL left at its default (http://localhost:<PORT>): the demo must work
wherever it is opened (http://127.0.0.1:3000/, a LAN address from a phone, a container's mapped
port), and the binding cookie, the callback and the emulator's 网页授权域名 must all be on the
host the browser uses. So the service's layer takes each request's own origin (its scheme and Host
header) as the public URL for that request, through `serving`; the sign-in logic reads it with
`public_url`, `open_base` and `redirect_origins` instead of the settings' fixed values.

Host-header trust: a Host header is whatever the client sends. That is acceptable here only
because this applies in sandbox mode alone, whose data and credentials are public development
values: a page can only get its own origin allowed by making the browser send that Host, i.e.
by being served from this service already (DNS rebinding gives such a page full same-origin
access to the service anyway). Outside sandbox mode, or with PUBLIC_URL set, nothing here
changes anything: the settings' values are used, and Host is never read.
"""

from __future__ import annotations

import functools
import re
from contextvars import ContextVar, Token

from aiohttp import web

from service.config import Settings, origin_of

# The public URL of the request being served, in sandbox mode without PUBLIC_URL; else unset.
_request_public_url: ContextVar[str | None] = ContextVar("request_public_url", default=None)

# A plain host name or IPv4 address, or a bracketed IPv6 address, and an optional port: no
# user info, path or other URL syntax a Host header could smuggle into a URL.
HOST_HEADER = re.compile(
    r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?"
)


def follows_request_origin(settings: Settings) -> bool:
    """Sandbox mode with PUBLIC_URL at its default (config.load_settings fills it in)."""
    return settings.sandbox and settings.public_url == f"http://localhost:{settings.port}"


def request_origin(request: web.BaseRequest) -> str | None:
    """scheme://host[:port] the client addressed, or None if its Host header is not plain."""
    return _origin_of_host(request.scheme, request.headers.get("Host", ""))


@functools.lru_cache(maxsize=256)
def _origin_of_host(scheme: str, host: str) -> str | None:
    # Asked on every request in sandbox mode: a browser sends the same Host each time, and the
    # bounded cache keeps clients that vary it from growing memory.
    if not HOST_HEADER.fullmatch(host):
        return None
    return origin_of(f"{scheme}://{host}") or None


def serving(request: web.BaseRequest) -> Token[str | None]:
    """The service layer's call for each request when `follows_request_origin`: the request's
    origin becomes its public URL until `done` is called with the token returned."""
    return _request_public_url.set(request_origin(request))


def done(token: Token[str | None] | None) -> None:
    if token is not None:
        _request_public_url.reset(token)


def public_url(settings: Settings) -> str:
    """The service's external base URL for the request being served."""
    own = _request_public_url.get()
    return settings.public_url if own is None else own


def open_base(settings: Settings) -> str:
    """Where browsers are sent to authorize: the mounted emulator on the request's own origin
    in sandbox mode without PUBLIC_URL (and without WECHAT_OPEN_BASE)."""
    own = _request_public_url.get()
    if own is None or settings.wechat_open_base:
        return settings.open_base
    return f"{own}/sandbox"


def redirect_origins(settings: Settings) -> frozenset[str]:
    """Origins an app may name (redirectUri, callback) and call from (CORS): the settings', plus
    the request's own in sandbox mode without PUBLIC_URL."""
    own = _request_public_url.get()
    if own is None:
        return settings.redirect_origins
    return _with_origin(settings.redirect_origins, own)


@functools.lru_cache(maxsize=64)
def _with_origin(origins: frozenset[str], own: str) -> frozenset[str]:
    # The same frozenset for the same origin, so flow's cache of checked URLs keeps working.
    return origins | {own}
