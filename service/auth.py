"""The app's own JWT: issued after a WeChat sign-in, verified on later requests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from .clock import Clock
from .errors import Unauthorized
from .jwt_keys import KeySet

REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "exp", "jti", "scope"]
# A user who granted snsapi_userinfo has also granted everything snsapi_base gives.
SCOPE_RANK = {"snsapi_base": 1, "snsapi_userinfo": 2}


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    claims: dict[str, Any]


class JwtIssuer:
    def __init__(self, *, keys: KeySet, issuer: str, audience: str, ttl: int, clock: Clock) -> None:
        self.keys = keys
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
        if unionid:
            claims["unionid"] = unionid
        key = self.keys.current
        token = jwt.encode(claims, key.signing, algorithm=key.algorithm, headers={"kid": key.kid})
        return IssuedToken(token=token, expires_in=self._ttl, claims=claims)

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a valid token; Unauthorized otherwise.

        PyJWT checks signature, algorithm, issuer, audience and presence of claims; expiry is
        checked against the injected clock so tests can move time.
        """
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
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= self._clock.now():
            raise Unauthorized("token expired", field="Authorization", value="Bearer …")
        return claims


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
