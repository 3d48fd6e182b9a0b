"""The OpenID Connect provider: authorization code flow with PKCE, over WeChat's web sign-in.

A client (config/: `[[oidc_clients]]`) sends the person to /oidc/authorize; the service checks
the client and its redirect_uri, remembers the request under a fresh state and sends the person
on to WeChat with the service's own callback. WeChat returns them to /oidc/callback; the code
is exchanged as /wechat/jwt exchanges it (SignIn.sign_in_with_code), and the person goes back to
the client's redirect_uri with an authorization code of ours (single use, 60 s, bound to the
client, the redirect_uri and the PKCE challenge). The client redeems it at /oidc/token for an
access token (opaque, stored hashed) and an ID token signed with RS256 or ES256.

Written here rather than with Authlib's server: its grant classes call the storage
synchronously, which does not fit an async MongoDB driver without a thread per request, and the
flow this service needs (one grant type, one response type) is small. JWTs are PyJWT's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import jwt
from yarl import URL

from service.app_jwt.signing_keys import JwtKey
from service.clock import Clock
from service.config import Settings
from service.errors import BadRequest, ServiceError
from service.oidc_config import OidcClient, sandbox_clients
from service.pipeline.origins import follows_request_origin, public_url
from service.signin.flow import SignIn, SignIns, account_scope, new_state, s256_challenge
from service.store.queries import Store

CODE_TTL = 60  # seconds an authorization code may be redeemed in
CODE_RETENTION = 3600  # a used code is remembered this long, so a replay revokes its tokens
CODE_CHALLENGE_LENGTH = 43  # BASE64URL(SHA-256(verifier)) without padding
CALLBACK_PATH = "/oidc/callback"
PROFILE_CLAIMS = ("name", "picture")


class OidcError(ServiceError):
    """An error as RFC 6749 §5.2 names it (`error`), in the service's one error shape too."""

    status = 400

    def __init__(self, error: str, description: str, *, status: int = 400, **kw: Any) -> None:
        super().__init__(description, **kw)
        self.error = error
        self.status = status
        self.name = error.upper()


class PageError(Exception):
    """A request that cannot be sent back to any client (unknown client or redirect_uri): the
    person sees a page saying so (RFC 6749 §4.1.2.1), never a redirect. `reason` names the
    page's texts (templates/i18n/oidc.json) and the parameter at fault."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class AuthorizationRefused(BadRequest):
    """PageError in the one error shape (its id is the page's reference)."""

    name = "AUTHORIZATION_REFUSED"


@dataclass(frozen=True)
class AuthorizeQuery:
    response_type: str | None
    client_id: str | None
    redirect_uri: str | None
    scope: str | None
    state: str | None
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None


@dataclass(frozen=True)
class TokenRequest:
    """/oidc/token's form and the client's credentials, as they came."""

    form: Mapping[str, str]
    basic: tuple[str, str] | None  # (client_id, secret) from Authorization: Basic
    basic_malformed: bool = False


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _digest(value: str) -> str:
    """What the store keeps of a code or an access token: never the value itself."""
    return hashlib.sha256(value.encode("ascii")).hexdigest()


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6: the left half of the SHA-256 of the token (RS256 and ES256)."""
    return _b64url(hashlib.sha256(access_token.encode("ascii")).digest()[:16])


def parse_basic(header: str | None) -> tuple[tuple[str, str] | None, bool]:
    """client_secret_basic (RFC 6749 §2.3.1): both parts form-urlencoded, then Base64."""
    if not header or header[:6].lower() != "basic ":
        return None, False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, True
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return None, True
    return (unquote_plus(client_id), unquote_plus(secret)), False


@dataclass(frozen=True, kw_only=True)
class OidcProvider:
    settings: Settings
    store: Store
    sign_ins: SignIns
    clock: Clock
    key: JwtKey | None  # signs ID tokens; None: no OpenID Connect (no key configured)

    @property
    def issuer(self) -> str:
        """PUBLIC_URL; in sandbox mode without it, the origin the request came to (so the demo
        works at 127.0.0.1 or a LAN address: service/pipeline/origins.py)."""
        return public_url(self.settings).rstrip("/")

    @property
    def clients(self) -> dict[str, OidcClient]:
        clients = self.settings.oidc_clients
        if follows_request_origin(self.settings) and clients == sandbox_clients(
            self.settings.public_url
        ):
            # The demo clients' redirect URIs follow the demo page's origin too.
            clients = sandbox_clients(self.issuer)
        return {client.client_id: client for client in clients}

    def discovery(self) -> dict[str, Any]:
        """OpenID Connect Discovery 1.0 §3 (and RFC 8414)."""
        issuer = self.issuer
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/oidc/authorize",
            "token_endpoint": f"{issuer}/oidc/token",
            "userinfo_endpoint": f"{issuer}/oidc/userinfo",
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.key.algorithm] if self.key else [],
            "scopes_supported": ["openid", "profile"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "at_hash",
                "appid",
                "unionid",
                *PROFILE_CLAIMS,
            ],
            "authorization_response_iss_parameter_supported": True,
        }

    # -- /oidc/authorize --------------------------------------------------------------------

    async def authorize(self, query: AuthorizeQuery) -> str:
        """Where to send the person: WeChat, or back to the client with an error. PageError
        when no client and redirect_uri can be trusted with an answer."""
        client = self.clients.get(query.client_id or "")
        if client is None:
            raise PageError("client_id", "This sign-in link names no known client.")
        if query.redirect_uri is None or query.redirect_uri not in client.redirect_uris:
            raise PageError(
                "redirect_uri", "This sign-in link's redirect_uri is not registered for its client."
            )
        redirect_uri = query.redirect_uri

        def back(error: str, description: str) -> str:
            return self._back(redirect_uri, query.state, error=error, error_description=description)

        if self.key is None:
            return back("server_error", "OpenID Connect has no signing key configured")
        if query.response_type != "code":
            return back("unsupported_response_type", "only response_type=code is supported")
        requested = (query.scope or "").split()
        if "openid" not in requested:
            return back("invalid_scope", "scope must contain openid")
        # Scopes this service does not offer (email, phone, …) are ignored (RFC 6749 §3.3);
        # the token answer says what was granted.
        granted = [scope for scope in client.scopes if scope in requested]
        method, challenge = query.code_challenge_method, query.code_challenge
        if challenge is None:
            if client.public:
                return back("invalid_request", "a public client must send code_challenge (PKCE)")
            if method is not None:
                return back("invalid_request", "code_challenge_method without code_challenge")
        else:
            if method != "S256":
                return back("invalid_request", "code_challenge_method must be S256")
            if len(challenge) != CODE_CHALLENGE_LENGTH or not _is_b64url(challenge):
                return back("invalid_request", "code_challenge must be 43 base64url characters")
        sign_in = self._sign_in(client)
        state = new_state()
        await self.store.create_oidc_request(
            state,
            {
                "clientId": client.client_id,
                "account": sign_in.account.name,
                "redirectUri": redirect_uri,
                "scope": granted,
                "clientState": query.state,
                "nonce": query.nonce,
                "codeChallenge": challenge,
            },
            self.settings.state_ttl,
        )
        return sign_in.authorization_url(self._callback(), _wechat_scope(sign_in, granted), state)

    def _sign_in(self, client: OidcClient) -> SignIn:
        """The client's account's (config.py checked at start that it exists)."""
        return self.sign_ins.by_name.get(client.account) or self.sign_ins.default

    def _callback(self) -> str:
        return self.issuer + CALLBACK_PATH

    def _back(self, redirect_uri: str, state: str | None, **params: str) -> str:
        """The client's redirect_uri with the answer (RFC 6749 §4.1.2) and `iss` (RFC 9207)."""
        answer = dict(params)
        if state is not None:
            answer["state"] = state
        answer["iss"] = self.issuer
        return str(URL(redirect_uri).extend_query(answer))

    # -- /oidc/callback (WeChat's return) ---------------------------------------------------

    async def callback(self, code: str | None, state: str | None) -> str:
        """The client's redirect_uri with our code, or with an error; PageError for a state that
        names no pending request (unknown, expired or already used)."""
        request = await self.store.take_oidc_request(state) if state else None
        if request is None:
            raise PageError(
                "state",
                "This sign-in link was used already, or it is too old. Go back to the "
                "application and sign in again.",
            )

        def back(**params: str) -> str:
            return self._back(request["redirectUri"], request["clientState"], **params)

        if not code:  # WeChat sends no code when the person refuses (snsapi_userinfo)
            return back(error="access_denied", error_description="the person declined at WeChat")
        sign_in = self.sign_ins.by_name.get(request.get("account") or "") or self.sign_ins.default

        async def spent() -> None:
            """Nothing to undo: the request is gone, the client starts again."""

        try:
            user, _ = await sign_in.sign_in_with_code(
                code, _wechat_scope(sign_in, request["scope"]), spent
            )
        except ServiceError as exc:
            error = "temporarily_unavailable" if exc.status in (502, 503, 504) else "access_denied"
            return back(error=error, error_description=exc.message)
        code_value = secrets.token_urlsafe(32)
        await self.store.create_oidc_code(
            _digest(code_value),
            {
                "clientId": request["clientId"],
                "redirectUri": request["redirectUri"],
                "scope": request["scope"],
                "nonce": request.get("nonce"),
                "codeChallenge": request.get("codeChallenge"),
                "openid": user["openid"],
                "appid": sign_in.account.appid,
                "unionid": user.get("unionid"),
                "name": user.get("nickname"),
                "picture": user.get("headimgurl"),
                "authTime": int(self.clock.now()),
            },
            CODE_TTL,
            CODE_RETENTION,
        )
        return back(code=code_value)

    # -- /oidc/token ------------------------------------------------------------------------

    def _authenticate(self, request: TokenRequest) -> OidcClient:
        """client_secret_basic, client_secret_post, or none (public clients, PKCE)."""
        form = request.form
        if request.basic_malformed:
            raise self._invalid_client("the Authorization: Basic header is malformed", True)
        if request.basic is not None:
            if "client_secret" in form:
                raise OidcError("invalid_request", "use one client authentication method")
            client_id, secret = request.basic
            if form.get("client_id", client_id) != client_id:
                raise OidcError("invalid_request", "client_id differs from the Basic credentials")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        client = self.clients.get(client_id)
        if client is None:
            raise self._invalid_client("unknown client", request.basic is not None)
        if client.public:
            if secret:
                raise self._invalid_client("a public client has no secret", True)
            return client
        if not secret or not client.secret_matches(secret):
            raise self._invalid_client("client authentication failed", request.basic is not None)
        return client

    @staticmethod
    def _invalid_client(description: str, basic: bool) -> OidcError:
        # RFC 6749 §5.2: 401, and the scheme the client may use when it tried Basic.
        headers = {"WWW-Authenticate": 'Basic realm="oidc"'} if basic else {}
        return OidcError("invalid_client", description, status=401, headers=headers)

    async def token(self, request: TokenRequest) -> dict[str, Any]:
        client = self._authenticate(request)
        form = request.form
        if form.get("grant_type") != "authorization_code":
            raise OidcError("unsupported_grant_type", "only authorization_code is supported")
        code, redirect_uri = form.get("code"), form.get("redirect_uri")
        if not code or not redirect_uri:
            raise OidcError("invalid_request", "code and redirect_uri are required")
        code_id = _digest(code) if code.isascii() else ""
        grant, replayed = await self.store.redeem_oidc_code(code_id)
        if replayed:
            # RFC 6749 §4.1.2: a code used twice may have been stolen; what it gave is revoked.
            await self.store.revoke_oidc_tokens(code_id)
            raise OidcError("invalid_grant", "this code was already used; its tokens are revoked")
        if grant is None:
            raise OidcError("invalid_grant", "unknown or expired code")
        if grant["clientId"] != client.client_id or grant["redirectUri"] != redirect_uri:
            raise OidcError("invalid_grant", "the code was issued to another client or redirect")
        self._check_verifier(grant.get("codeChallenge"), form.get("code_verifier"))
        return await self._issue(client, code_id, grant)

    @staticmethod
    def _check_verifier(challenge: str | None, verifier: str | None) -> None:
        if challenge is None:
            if verifier is not None:
                raise OidcError("invalid_grant", "code_verifier for a code issued without PKCE")
            return
        computed = s256_challenge(verifier) if verifier and verifier.isascii() else ""
        if not hmac.compare_digest(computed.encode(), challenge.encode()):
            raise OidcError("invalid_grant", "code_verifier does not match the code_challenge")

    async def _issue(
        self, client: OidcClient, code_id: str, grant: dict[str, Any]
    ) -> dict[str, Any]:
        assert self.key is not None  # no code is issued without one
        ttl = self.settings.oidc_access_token_ttl
        access_token = secrets.token_urlsafe(32)
        subject = {key: grant.get(key) for key in ("openid", "appid", "unionid", *PROFILE_CLAIMS)}
        await self.store.save_oidc_token(
            _digest(access_token),
            {"codeId": code_id, "clientId": client.client_id, "scope": grant["scope"], **subject},
            ttl,
        )
        claims = self._subject_claims(grant)
        now = int(self.clock.now())
        id_claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + ttl,
            "auth_time": grant["authTime"],
            "at_hash": at_hash(access_token),
            # The account the openid (sub) belongs to.
            "appid": grant.get("appid") or self.sign_ins.default.account.appid,
            **claims,
        }
        if grant.get("nonce") is not None:
            id_claims["nonce"] = grant["nonce"]
        id_token = jwt.encode(
            id_claims, self.key.signing, algorithm=self.key.algorithm, headers={"kid": self.key.kid}
        )
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "id_token": id_token,
            "scope": " ".join(grant["scope"]),
        }

    @staticmethod
    def _subject_claims(grant: Mapping[str, Any]) -> dict[str, Any]:
        """sub, and unionid when known; name and picture with the profile scope."""
        claims: dict[str, Any] = {"sub": grant["openid"]}
        if grant.get("appid"):  # the account the openid belongs to
            claims["appid"] = grant["appid"]
        if grant.get("unionid"):
            claims["unionid"] = grant["unionid"]
        if "profile" in grant["scope"]:
            for claim in PROFILE_CLAIMS:
                if grant.get(claim):
                    claims[claim] = grant[claim]
        return claims

    # -- /oidc/userinfo ---------------------------------------------------------------------

    async def userinfo(self, access_token: str | None) -> dict[str, Any]:
        """The claims the token's scope allows (OIDC Core §5.3); errors as RFC 6750 §3."""
        if not access_token:
            raise OidcError(
                "invalid_request",
                "an Authorization: Bearer <access token> header is required",
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="oidc"'},
            )
        doc = None
        if access_token.isascii():
            doc = await self.store.find_oidc_token(_digest(access_token))
        if doc is None:
            raise OidcError(
                "invalid_token",
                "the access token is unknown, expired or revoked",
                status=401,
                headers={
                    "WWW-Authenticate": 'Bearer realm="oidc", error="invalid_token", '
                    'error_description="the access token is unknown, expired or revoked"'
                },
            )
        return self._subject_claims(doc)


def _is_b64url(value: str) -> bool:
    return value.isascii() and all(c.isalnum() or c in "-_" for c in value)


def _wechat_scope(sign_in: SignIn, granted: list[str]) -> str:
    """What WeChat is asked for: profile needs snsapi_userinfo of an Official Account; a
    website app has snsapi_login alone, which always reads the profile."""
    if not sign_in.account.official:
        return account_scope(sign_in.account, None)
    return "snsapi_userinfo" if "profile" in granted else "snsapi_base"
