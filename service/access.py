"""Who may call: operators with the admin key, apps with the JWT the service issued."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from service import keys
from service.app_jwt.issuer import bearer_token
from service.errors import Forbidden, Unauthorized


def signed_in_claims(request: web.Request) -> dict[str, Any]:
    """The claims of the app JWT in `Authorization: Bearer …` (its openid is `sub`, of the
    account `appid`); 401 without a valid one."""
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise Unauthorized(
            "an Authorization: Bearer <token> header with the app's JWT is required",
            field="Authorization",
            value=None,
            headers={"WWW-Authenticate": 'Bearer realm="wechat"'},
        )
    return request.app[keys.JWT].verify(token)


def require_admin(request: web.Request, what: str = "the status endpoint") -> None:
    """X-Admin-Key must equal ADMIN_KEY: 401 without it, 403 if wrong or ADMIN_KEY is unset
    (then `what` is disabled)."""
    expected = request.app[keys.SETTINGS].admin_key
    given = request.headers.get("X-Admin-Key")
    if not expected:
        raise Forbidden(f"{what} is disabled: set ADMIN_KEY to enable it", field="X-Admin-Key")
    if not given:
        raise Unauthorized("the X-Admin-Key header is required", field="X-Admin-Key")
    # aiohttp hands header bytes that are not UTF-8 over as surrogate escapes; encoding them
    # back the same way compares the bytes that were sent (str.encode() would raise: a 500).
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode()):
        raise Forbidden("wrong admin key", field="X-Admin-Key", value="…")
