"""The app's own JWT: issued after a WeChat sign-in, verified on later requests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, TypeGuard

import jwt

from service.app_jwt.signing_keys import KeySet
from service.clock import Clock
from service.errors import Unauthorized

REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "exp", "jti", "scope"]
# Clocks drift: a token issued by another instance a little ahead of this one is still good.
# Beyond this, an `iat` in the future means a forged or mis-issued token (or a key that leaked
# and signs tokens dated ahead to outlive a rotation), so it is refused.
IAT_LEEWAY = 60
# A user who granted snsapi_userinfo has also granted everything snsapi_base gives.
# snsapi_login (a website app's) reads the profile as snsapi_userinfo does.
SCOPE_RANK = {"snsapi_base": 1, "snsapi_userinfo": 2, "snsapi_login": 2}


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    claims: dict[str, Any]


class JwtIssuer:
    def __init__(
        self, *, keys: KeySet, issuer: str, audience: str, ttl: int, clock: Clock, appid: str = ""
    ) -> None:
        self.keys = keys
        # The account the openid (sub) belongs to: an openid means nothing without it.
        self._appid = appid
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl
        self._clock = clock

    def issue(self, *, openid: str, scope: str, unionid: str | None = None) -> IssuedToken:
        now = int(self._clock.now())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": openid,
            "iat": now,
            "exp": now + self._ttl,
            "jti": uuid.uuid4().hex,
            "scope": scope,
        }
        if self._appid:
            claims["appid"] = self._appid
        if unionid:
            claims["unionid"] = unionid
        key = self.keys.current
        token = jwt.encode(claims, key.signing, algorithm=key.algorithm, headers={"kid": key.kid})
        return IssuedToken(token=token, expires_in=self._ttl, claims=claims)

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a valid token; Unauthorized otherwise.

        PyJWT checks signature, algorithm, issuer, audience and presence of claims; expiry is
        checked against the injected clock so tests can move time, and so is `iat` (a whole
        number of seconds, at most IAT_LEEWAY ahead of now).
        """
        # A JWT is base64url and dots. Header bytes that are not UTF-8 reach us as surrogate
        # escapes, which PyJWT cannot even encode (a 500); they are just not a JWT.
        if not token.isascii():
            raise Unauthorized("invalid token: not a JWT", field="Authorization", value="Bearer …")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise Unauthorized(
                "invalid token: not a JWT", field="Authorization", value="Bearer …"
            ) from None
        key = self.keys.verifying(kid if isinstance(kid, str) else None)
        if key is None:
            raise Unauthorized(
                "invalid token: signed with a key this service does not know",
                field="Authorization",
                value="Bearer …",
            )
        try:
            # The algorithm comes from our key, never from the token's header: a token cannot
            # talk the verifier into HS256-with-the-public-key or "none".
            claims = jwt.decode(
                token,
                key.verifying,
                algorithms=[key.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": REQUIRED_CLAIMS, "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(
                f"invalid token: {exc}", field="Authorization", value="Bearer …"
            ) from None
        now = self._clock.now()
        if not _is_whole_seconds(claims.get("exp")) or claims["exp"] <= now:
            raise Unauthorized("token expired", field="Authorization", value="Bearer …")
        iat = claims.get("iat")
        if not _is_whole_seconds(iat):
            raise Unauthorized(
                "invalid token: iat must be a whole number of seconds",
                field="Authorization",
                value="Bearer …",
            )
        if iat > now + IAT_LEEWAY:
            raise Unauthorized(
                "invalid token: issued in the future (iat is more than "
                f"{IAT_LEEWAY} s ahead of this service's clock)",
                field="Authorization",
                value="Bearer …",
            )
        return claims


def _is_whole_seconds(value: object) -> TypeGuard[int]:
    # bool is an int in Python; `true` is no timestamp.
    return isinstance(value, int) and not isinstance(value, bool)


def scope_covers(granted: str, requested: str) -> bool:
    return SCOPE_RANK.get(granted, 0) >= SCOPE_RANK.get(requested, 99)


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
