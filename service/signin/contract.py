"""The sign-in area's piece of the OpenAPI document, and its query parameters declared once."""

from __future__ import annotations

from service.accounts import ACCOUNT as ACCOUNT
from service.errors import InvalidCode, InvalidCodeVerifier, InvalidState
from service.openapi import (
    DATE_TIME,
    INTERNAL_ERROR,
    NO_STORE,
    STRING,
    TITLE,
    WWW_AUTHENTICATE,
    Operation,
    error,
    html,
    json_content,
    ref,
    upstream_errors,
)
from service.params import Choice, Schema, Text
from service.signin.flow import (
    CODE_CHALLENGE_METHODS,
    CODE_CHALLENGE_PATTERN,
    CODE_PATTERN,
    CODE_VERIFIER_PATTERN,
    MAX_URL_LENGTH,
    SCOPES,
    STATE_PATTERN,
    WEBSITE_SCOPE,
)

SCOPE_SCHEMA: Schema = {"type": "string", "enum": [*SCOPES, WEBSITE_SCOPE]}

# -- query parameters -------------------------------------------------------------------------

REDIRECT_URI_DESCRIPTION = (
    "Absolute http(s) URL of the app page where the user ends up, with the JWT in the URL "
    "fragment. Its origin must be in ALLOWED_REDIRECT_ORIGINS (in sandbox mode the service's "
    "own origin is allowed too); no credentials, no fragment."
)
REDIRECT_URI = Text(
    "redirectUri",
    REDIRECT_URI_DESCRIPTION,
    required=True,
    max_length=MAX_URL_LENGTH,
    format="uri",
    example="https://app.example.com/signed-in",
)
CALLBACK = Text(
    "callback",
    "Absolute http(s) URL WeChat returns the user to with code and state "
    "(e.g. https://auth.example.com/wechat/callback); its domain must be the "
    "account's 网页授权域名, its origin allowed like redirectUri's, and it "
    "must differ from redirectUri.",
    required=True,
    max_length=MAX_URL_LENGTH,
    format="uri",
    example="https://app.example.com/wechat-callback",
)
SCOPE = Choice(
    "scope",
    "An Official Account's snsapi_base (the default: silent, openid only) or snsapi_userinfo "
    "(consent page, nickname and avatar); a website app's snsapi_login (its only scope, and "
    "its default: a QR code to confirm on the phone, nickname and avatar).",
    choices=(*SCOPES, WEBSITE_SCOPE),
)
CODE_CHALLENGE = Text(
    "codeChallenge",
    "PKCE: BASE64URL(SHA-256(codeVerifier)) without padding. The app keeps "
    "the verifier (43 to 128 of A-Z a-z 0-9 - . _ ~) and sends it to "
    "/wechat/jwt. Required when STATE_BINDING=required.",
    max_length=43,
    pattern=CODE_CHALLENGE_PATTERN,
    invalid_message="codeChallenge must be BASE64URL(SHA-256(codeVerifier)) without padding: "
    "43 characters of A-Z, a-z, 0-9, - and _",
)
CODE_CHALLENGE_METHOD = Choice(
    "codeChallengeMethod",
    "Must be S256 and is required with codeChallenge (plain, RFC 7636's default, is refused).",
    choices=CODE_CHALLENGE_METHODS,
    invalid_message="codeChallengeMethod must be S256: plain would expose the verifier in the URL",
)
STATE = Text(
    "state",
    "The state of an earlier authorization (1 to 128 letters or digits).",
    required=True,
    pattern=STATE_PATTERN,
    error=InvalidState,
    invalid_message="state must be 1 to 128 letters or digits",
)
CODE = Text(
    "code",
    "WeChat's code (absent when the user declined).",
    required=True,
    missing_message="code is required; WeChat sends none when the user declines authorization",
    pattern=CODE_PATTERN,
    error=InvalidCode,
    invalid_message="code has characters WeChat never uses",
)
# A malformed verifier is answered as a missing or wrong one is, never echoed: the answers
# teach nothing about the challenge.
CODE_VERIFIER = Text(
    "codeVerifier",
    "PKCE: the verifier whose S256 challenge started this sign-in (RFC 7636 "
    "§4.1); only for such states.",
    max_length=128,
    pattern=CODE_VERIFIER_PATTERN,
    error=InvalidCodeVerifier,
    invalid_message="codeVerifier is missing or does not match this sign-in's codeChallenge",
    echo=False,
)
# The callback page's script reads these; the page itself answers whatever they hold.
PAGE_CODE = Text("code", "WeChat's code (read by the page's script).")
PAGE_STATE = Text("state", "The state (read by the page's script).")

BINDING_COOKIE_DESCRIPTION = (
    "The binding cookie `wechat_oa_auth_binding` (`__Host-wechat_oa_auth_binding` with Secure "
    "when PUBLIC_URL is https): a random secret, HttpOnly, SameSite=Lax, Path=/, Max-Age "
    "STATE_TTL; the state stores only its SHA-256."
)
SET_BINDING_COOKIE = {
    "description": BINDING_COOKIE_DESCRIPTION,
    "schema": {"type": "string", "pattern": "^(__Host-)?wechat_oa_auth_binding=.*HttpOnly"},
}

# -- answers ----------------------------------------------------------------------------------


def authorization_needed() -> Schema:
    """401 of /wechat/authorize and its retry: the URL to send the user to."""
    response = error(
        401,
        "The user must authorize. `details.field` is `authorization url` and "
        "`details.fieldValue` is WeChat's authorization URL to send the user to: "
        "`https://open.weixin.qq.com/connect/oauth2/authorize?appid=…&redirect_uri=<callback>"
        "&response_type=code&scope=…&state=…&forcePopup=false#wechat_redirect`. The state is "
        "32 letters and digits, usable once, for STATE_TTL seconds.",
        "UNAUTHORIZED",
        details={
            "properties": {
                "field": {"const": "authorization url"},
                "fieldValue": {
                    "type": "string",
                    "format": "uri",
                    "pattern": "/connect/oauth2/authorize\\?appid=.*#wechat_redirect$",
                    "examples": [
                        "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx5a4db0c0ffee0001"
                        "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fwechat-callback"
                        "&response_type=code&scope=snsapi_base&state=Q3xv9TBpV0cN2wLk7yHfR8mDsA4eUj1Z"
                        "&forcePopup=false#wechat_redirect"
                    ],
                },
            }
        },
    )
    response["headers"] = {"WWW-Authenticate": {**WWW_AUTHENTICATE, "required": True}}
    return response


USER_SCHEMA: Schema = {
    "type": "object",
    "description": "What a client may see of a stored user. Profile fields come with "
    "snsapi_userinfo (WeChat sends gender and region blank since 2021).",
    "required": ["openid", "unionid"],
    "additionalProperties": False,
    "properties": {
        "openid": STRING,
        "unionid": {"type": ["string", "null"]},
        "nickname": STRING,
        "headimgurl": STRING,
        "sex": {"type": "integer"},
        "province": STRING,
        "city": STRING,
        "country": STRING,
        "firstLoginAt": DATE_TIME,
        "lastLoginAt": DATE_TIME,
        "loginCount": {"type": "integer", "minimum": 1},
    },
}

SIGNED_IN_PROPERTIES: Schema = {
    "token": {"type": "string", "description": "The app's JWT (HS256, signed with JWT_SECRET)."},
    "tokenType": {"const": "Bearer"},
    "expiresIn": {"type": "integer", "description": "Seconds (JWT_TTL)."},
    "redirectUri": {"type": ["string", "null"]},
    "openid": STRING,
    "scope": SCOPE_SCHEMA,
    "user": ref("User"),
}
SIGNED_IN_REQUIRED = ["token", "tokenType", "expiresIn", "redirectUri", "openid", "scope", "user"]

SIGNED_IN_SCHEMA: Schema = {
    "type": "object",
    "required": SIGNED_IN_REQUIRED,
    "additionalProperties": False,
    "properties": SIGNED_IN_PROPERTIES,
}

CLAIMS_SCHEMA: Schema = {
    "type": "object",
    "description": "The claims of the app JWT sent in the Authorization header.",
    "required": ["iss", "aud", "sub", "iat", "exp", "jti", "scope"],
    "additionalProperties": False,
    "properties": {
        "iss": {"type": "string", "description": "JWT_ISSUER"},
        "aud": {"type": "string", "description": "JWT_AUDIENCE"},
        "sub": {"type": "string", "description": "The user's openid."},
        "iat": {"type": "integer"},
        "exp": {"type": "integer"},
        "jti": STRING,
        "scope": SCOPE_SCHEMA,
        "appid": {"type": "string", "description": "The account the openid belongs to."},
        "unionid": STRING,
    },
}

JWKS_SCHEMA: Schema = {
    "type": "object",
    "required": ["keys"],
    "additionalProperties": False,
    "properties": {
        "keys": {
            "type": "array",
            "items": {
                "type": "object",
                "description": "A public JWK: n and e for RSA, crv, x and y for EC (P-256).",
                "required": ["kty", "kid", "alg", "use"],
                "properties": {
                    "kty": {"enum": ["RSA", "EC"]},
                    "kid": STRING,
                    "alg": {"enum": ["RS256", "ES256"]},
                    "use": {"const": "sig"},
                    "n": STRING,
                    "e": STRING,
                    "crv": {"const": "P-256"},
                    "x": STRING,
                    "y": STRING,
                },
                "not": {"anyOf": [{"required": ["d"]}, {"required": ["k"]}]},
            },
        }
    },
}

SANDBOX_ONLY_404 = error(404, "Outside sandbox mode: the demo pages do not exist.", "NOT_FOUND")

# -- operations -------------------------------------------------------------------------------

AUTHORIZE = Operation(
    {
        "tags": ["sign-in"],
        "operationId": "authorize",
        "summary": "Start WeChat web authorization (or confirm an app JWT)",
        "description": "Stores a single-use state remembering redirectUri, callback and "
        "scope, and answers 401 with WeChat's authorization URL. With `codeChallenge` "
        "and `codeChallengeMethod=S256` (PKCE, RFC 7636) the state completes only when "
        "/wechat/jwt gets the matching `codeVerifier`, which protects an app with its "
        "own callback page against login CSRF; STATE_BINDING=required makes them "
        "mandatory. With an "
        "`Authorization: Bearer <app JWT>` header whose token is valid and whose scope "
        "covers the requested one (snsapi_userinfo covers snsapi_base) it answers 200 "
        "with the token's claims instead; an invalid or expired token is ignored.",
        "security": [{}, {"bearerJwt": []}],
        "responses": {
            "200": {
                "description": "The Authorization header's JWT is valid and covers the "
                "scope: no authorization needed.",
                "content": json_content(ref("JwtClaims")),
            },
            "400": error(
                400,
                "MISSING_PARAMETER (also codeChallengeMethod without codeChallenge and "
                "vice versa), INVALID_PARAMETER (not an absolute http(s) URL, a host or "
                "port that cannot be parsed, javascript:, credentials, a fragment, equal "
                "URLs, unknown scope, codeChallengeMethod not S256, a malformed "
                "codeChallenge or one for the built-in callback page, which has no "
                "verifier to send, a parameter given twice or too long), "
                "ORIGIN_NOT_ALLOWED, "
                "CODE_CHALLENGE_REQUIRED (STATE_BINDING=required and no codeChallenge).",
                "MISSING_PARAMETER",
                "INVALID_PARAMETER",
                "ORIGIN_NOT_ALLOWED",
                "CODE_CHALLENGE_REQUIRED",
            ),
            "401": authorization_needed(),
            "500": INTERNAL_ERROR,
        },
    },
    params=(REDIRECT_URI, CALLBACK, SCOPE, CODE_CHALLENGE, CODE_CHALLENGE_METHOD, ACCOUNT),
    schemas={"JwtClaims": CLAIMS_SCHEMA},
)

RETRY = Operation(
    {
        "tags": ["sign-in"],
        "operationId": "retryAuthorization",
        "summary": "Start again after a denial, an expired state or a used code",
        "description": "A new authorization for the same redirectUri, callback and "
        "scope as the earlier state (kept STATE_RETENTION, an hour by default, after "
        "it expires), bound as that one was: the same codeChallenge, or (a state from "
        "/wechat/login) the binding cookie, set on this answer for the asking browser. "
        "A PKCE state is renewed only with its codeVerifier: a state string is no "
        "secret, and a challenge renewed for anyone would let them start a sign-in "
        "that the page holding the verifier completes. Answers like /wechat/authorize.",
        "responses": {
            "400": error(
                400,
                "MISSING_PARAMETER (no state), INVALID_STATE (malformed or unknown), "
                "INVALID_PARAMETER (given twice), ORIGIN_NOT_ALLOWED (the stored URLs' "
                "origins are no longer allowed), CODE_CHALLENGE_REQUIRED "
                "(STATE_BINDING=required and the earlier state was unbound), "
                "INVALID_CODE_VERIFIER (a PKCE state without its matching codeVerifier, "
                "or a codeVerifier for a state without a challenge).",
                "MISSING_PARAMETER",
                "INVALID_STATE",
                "INVALID_PARAMETER",
                "ORIGIN_NOT_ALLOWED",
                "CODE_CHALLENGE_REQUIRED",
                "INVALID_CODE_VERIFIER",
            ),
            "401": {
                **authorization_needed(),
                "headers": {
                    **authorization_needed()["headers"],
                    "Set-Cookie": SET_BINDING_COOKIE,
                },
            },
            "500": INTERNAL_ERROR,
        },
    },
    params=(
        STATE,
        CODE_VERIFIER.described(
            "PKCE: the earlier state's verifier; required for a state started with "
            "a codeChallenge, refused for any other."
        ),
    ),
)

EXCHANGE_CODE = Operation(
    {
        "tags": ["sign-in"],
        "operationId": "exchangeCode",
        "summary": "Finish sign-in: exchange WeChat's code for the app's JWT",
        "description": "Checks the state's binding, consumes the state (a replay, or a "
        "concurrent second request, is refused), exchanges the code with WeChat, "
        "fetches the profile for snsapi_userinfo, upserts the user and web token, and "
        "answers the app's JWT. A state started with a codeChallenge needs its "
        "codeVerifier; one started by /wechat/login needs its binding cookie (sent by "
        "the built-in callback page's same-origin request). A failed binding check "
        "leaves the state usable. If WeChat is unavailable, or refuses the code as "
        "invalid (40029, e.g. a forged code), the state is kept too.",
        "responses": {
            "200": {
                "description": "Signed in. A state from /wechat/login also clears the "
                "binding cookie (Max-Age=0).",
                "headers": {
                    **NO_STORE,
                    "Set-Cookie": {
                        "description": "Clears the binding cookie (Max-Age=0).",
                        "schema": {
                            "type": "string",
                            "pattern": "^(__Host-)?wechat_oa_auth_binding=.*Max-Age=0",
                        },
                    },
                },
                "content": json_content(ref("SignedIn")),
            },
            "400": error(
                400,
                "MISSING_PARAMETER (state or code absent), INVALID_PARAMETER (given "
                "twice), INVALID_STATE (malformed or unknown: `details.field` `state`; "
                "already used: `state.usedAt`, expired: `state.expiresAt`, each with "
                "`fieldValue` the moment, ISO 8601 UTC), "
                "INVALID_CODE (WeChat refused the code: 40029 invalid or expired, 40163 "
                "already used), INVALID_CODE_VERIFIER (the state's codeChallenge needs a "
                "matching codeVerifier: missing and wrong get the same answer; or a "
                "verifier for a state without one), STATE_NOT_BOUND (a /wechat/login "
                "state, and this browser lacks its cookie: started in another browser).",
                "MISSING_PARAMETER",
                "INVALID_PARAMETER",
                "INVALID_STATE",
                "INVALID_CODE",
                "INVALID_CODE_VERIFIER",
                "STATE_NOT_BOUND",
            ),
            "403": error(
                403,
                "SNAPSHOT_USER: WeChat answered for a virtual account of its snapshot "
                "page (快照页, is_snapshotuser 1). Nobody is signed in or stored; the "
                "person must tap 「使用完整服务」 at the bottom of the screen. The "
                "state is kept for the real code that follows.",
                "SNAPSHOT_USER",
            ),
            **upstream_errors(),
            "500": INTERNAL_ERROR,
        },
    },
    params=(STATE.described("The state WeChat sent back to the callback."), CODE, CODE_VERIFIER),
    schemas={"SignedIn": SIGNED_IN_SCHEMA, "User": USER_SCHEMA},
)

LOGIN = Operation(
    {
        "tags": ["sign-in"],
        "operationId": "login",
        "summary": "Start a browser-bound sign-in that ends on the built-in callback page",
        "description": "A top-level navigation (a link or a redirect, not a fetch): "
        "issues a single-use state whose callback is PUBLIC_URL/wechat/callback, binds "
        "it to this browser with a cookie, and redirects to WeChat. The callback page "
        "completes it only in the browser holding the cookie, so a callback link from "
        "someone else's sign-in cannot sign this browser in (login CSRF). Reach it on "
        "PUBLIC_URL's host: the cookie belongs to that host. A browser's second "
        "sign-in reuses its cookie's secret.",
        "responses": {
            "302": {
                "description": "To WeChat's authorization page.",
                "headers": {
                    "Location": {
                        "description": "WeChat's authorization URL, callback "
                        "PUBLIC_URL/wechat/callback.",
                        "schema": {
                            "type": "string",
                            "pattern": "/connect/oauth2/authorize\\?appid=.*#wechat_redirect$",
                        },
                        "required": True,
                    },
                    "Set-Cookie": {**SET_BINDING_COOKIE, "required": True},
                    **NO_STORE,
                },
                "content": {"text/plain": {"schema": STRING}},
            },
            "400": error(
                400,
                "Before any redirect, in the JSON error shape: MISSING_PARAMETER, "
                "INVALID_PARAMETER (as for /wechat/authorize's redirectUri and scope; "
                "redirectUri the callback page itself), "
                "ORIGIN_NOT_ALLOWED. No cookie is set.",
                "MISSING_PARAMETER",
                "INVALID_PARAMETER",
                "ORIGIN_NOT_ALLOWED",
            ),
            "500": INTERNAL_ERROR,
        },
    },
    params=(REDIRECT_URI, SCOPE, ACCOUNT),
)

JWKS = Operation(
    {
        "tags": ["sign-in"],
        "operationId": "jwks",
        "summary": "The public keys that verify the app's JWTs",
        "description": "With JWT_ALGORITHM=RS256 or ES256: the current key and those "
        "being rotated out, each with its kid (the RFC 7638 thumbprint, also in every "
        "token's header). Empty with HS256: a shared secret is never published. Also the key "
        "that signs OpenID Connect ID tokens (OIDC_PRIVATE_KEY_FILE, or in sandbox mode one "
        "made at start), when it is not the app JWT's.",
        "responses": {
            "200": {
                "description": "A JWK Set (RFC 7517).",
                "headers": {
                    "Cache-Control": {
                        "schema": {"const": "public, max-age=300"},
                        "required": True,
                    }
                },
                "content": json_content(ref("Jwks")),
            },
            "500": INTERNAL_ERROR,
        },
    },
    schemas={"Jwks": JWKS_SCHEMA},
)

CALLBACK_PAGE = Operation(
    {
        "tags": ["sign-in", "pages"],
        "operationId": "callbackPage",
        "summary": "The built-in callback page",
        "description": "Where /wechat/login's sign-ins return (or use "
        "https://<service>/wechat/callback as /wechat/authorize's `callback` if the app "
        "has no page of its own; such states are not browser-bound). In the browser it "
        "reads code and state, calls /wechat/jwt (same-origin, so the binding cookie "
        "goes along) and replaces itself with redirectUri#token=…&tokenType=Bearer"
        "&expiresIn=…; on a failure it says what happened and offers the action that "
        "helps: a denial, an expired, used or unknown link, STATE_NOT_BOUND, SNAPSHOT_USER, "
        "WeChat failing (the same request again), RATE_LIMITED (after Retry-After) and a "
        "damaged link, with the error's id as the reference. In Chinese (zh-CN) inside "
        "WeChat or when Accept-Language prefers it, else in English (Vary: Accept-Language, "
        "User-Agent). "
        "Strict CSP, Referrer-Policy: no-referrer.",
        "responses": {"200": html("The page."), "500": INTERNAL_ERROR},
    },
    params=(PAGE_CODE, PAGE_STATE),
)

INDEX = Operation(
    {
        "tags": ["pages"],
        "operationId": "index",
        "summary": "A JSON index; the demo page in sandbox mode",
        "responses": {
            "200": {
                "description": "JSON outside sandbox mode, the demo page (HTML) in it.",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["service", "endpoints"],
                            "additionalProperties": False,
                            "properties": {
                                "service": {"const": TITLE},
                                "endpoints": {"type": "array", "items": STRING},
                            },
                        }
                    },
                    "text/html": {"schema": STRING},
                },
            },
            "500": INTERNAL_ERROR,
        },
    },
)

QR_LOGIN_DEMO = Operation(
    {
        "tags": ["pages"],
        "operationId": "qrLoginDemo",
        "summary": "Sandbox mode: the desktop QR sign-in demo",
        "responses": {
            "200": html("The demo page (sandbox mode)."),
            "404": SANDBOX_ONLY_404,
            "500": INTERNAL_ERROR,
        },
    },
)

DEMO_LANDING = Operation(
    {
        "tags": ["pages"],
        "operationId": "demoLanding",
        "summary": "Sandbox mode: where the demo's sign-in ends (decodes the JWT)",
        "responses": {
            "200": html("The landing page (sandbox mode)."),
            "404": SANDBOX_ONLY_404,
            "500": INTERNAL_ERROR,
        },
    },
)
