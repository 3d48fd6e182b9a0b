"""The OpenAPI 3.1 document of every route the service registers, served at /openapi.json.

Built in Python rather than kept as YAML so the repeated parts (the one error shape, the QR
parameters, the signed-in answer) are written once, and the constants it states come from the
code that enforces them. tests/test_openapi.py checks it against the routes and the answers;
tests/test_schemathesis.py fuzzes the service with it.
"""

from __future__ import annotations

import copy
import functools
import json
import tomllib
from importlib import metadata
from typing import Any

from service.config import PROJECT_ROOT
from service.logs import REQUEST_ID_HEADER, REQUEST_ID_PATTERN
from service.params import MAX_PARAM_LENGTH
from service.pipeline.ratelimit import ROUTE_GROUPS
from service.qr.codes import (
    FORMATS,
    MAX_EXPIRE,
    MAX_PERMANENT_SCENE_ID,
    MAX_SCENE_STR,
    MAX_TEMPORARY_SCENE_ID,
    MIN_EXPIRE,
    TYPES,
)
from service.qr.login import MAX_WAIT
from service.signin.flow import MAX_URL_LENGTH, SCOPES

TITLE = "wechat-oa-auth"
PACKAGE = "wechat-oa-auth"

Schema = dict[str, Any]


def _version() -> str:
    """pyproject.toml's version in a checkout; the installed package's (the Docker image)."""
    pyproject = PROJECT_ROOT / "pyproject.toml"
    if pyproject.is_file():
        return tomllib.loads(pyproject.read_text())["project"]["version"]
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "0.0.0"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


STRING: Schema = {"type": "string"}
DATE_TIME: Schema = {"type": "string", "format": "date-time"}
NULLABLE_DATE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
SCOPE: Schema = {"type": "string", "enum": list(SCOPES)}

# -- errors -----------------------------------------------------------------------------------

ERROR_SCHEMA: Schema = {
    "type": "object",
    "description": "The one shape of every error answer of every route.",
    "required": ["id", "status", "name", "message", "details"],
    "additionalProperties": False,
    "properties": {
        "id": {
            "type": "string",
            "format": "uuid",
            "description": "Unique per answer; a 500's id is logged beside the traceback.",
        },
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "name": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
        "message": {"type": "string", "minLength": 1},
        "details": {
            "type": "object",
            "required": ["field", "fieldValue"],
            "additionalProperties": False,
            "properties": {
                "field": {
                    "type": "string",
                    "description": "The parameter, header or resource at fault; empty if none.",
                },
                "fieldValue": {"description": "Its value as received (any JSON type), or null."},
            },
        },
    },
}


def error(status: int, description: str, *names: str, details: Schema | None = None) -> Schema:
    """A response in the shared error shape, narrowed to its status and the names it may carry."""
    narrowed: Schema = {"properties": {"status": {"const": status}, "name": {"enum": list(names)}}}
    if details is not None:
        narrowed["properties"]["details"] = details
    return {
        "description": description,
        "content": {"application/json": {"schema": {"allOf": [ref("Error"), narrowed]}}},
    }


INTERNAL_ERROR = {"$ref": "#/components/responses/InternalError"}
WWW_AUTHENTICATE = {
    "description": 'Bearer realm="wechat"',
    "schema": {"type": "string"},
}


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


def upstream_errors() -> dict[str, Schema]:
    """What a route that calls WeChat answers when WeChat fails."""
    return {
        "502": error(
            502,
            "`WECHAT_UNAVAILABLE`: WeChat unreachable, an HTTP error, errcode -1 (busy) or 45011 "
            "(per-minute quota), or no base access_token to be had yet; retrying may work. "
            "`WECHAT_ERROR`: WeChat refused the service itself (40013 appid, 40125 secret, "
            "40164 IP whitelist, 45009 daily quota, …); `details.fieldValue` is the errcode.",
            "WECHAT_UNAVAILABLE",
            "WECHAT_ERROR",
        ),
        "504": error(504, "WeChat did not answer within WECHAT_TIMEOUT seconds.", "WECHAT_TIMEOUT"),
    }


# -- parameters -------------------------------------------------------------------------------


def query(name: str, description: str, schema: Schema, *, required: bool = False) -> Schema:
    parameter: Schema = {"name": name, "in": "query", "required": required, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


def text_param(maximum: int = MAX_PARAM_LENGTH, **extra: Any) -> Schema:
    return {"type": "string", "maxLength": maximum, **extra}


def int_param(low: int, high: int, default: int | None = None) -> Schema:
    # Query values are text: the service reads whole numbers written in digits.
    schema: Schema = {"type": "integer", "minimum": low, "maximum": high}
    if default is not None:
        schema["default"] = default
    return schema


REDIRECT_URI_DESCRIPTION = (
    "Absolute http(s) URL of the app page where the user ends up, with the JWT in the URL "
    "fragment. Its origin must be in ALLOWED_REDIRECT_ORIGINS (in sandbox mode the service's "
    "own origin is allowed too); no credentials, no fragment."
)
APP_URL = text_param(MAX_URL_LENGTH, format="uri", example="https://app.example.com/signed-in")
SCALE = query("scale", "Module size in pixels.", int_param(1, 40, 8))
BORDER = query("border", "Quiet zone in modules.", int_param(0, 20, 4))
STATE_PARAM = query(
    "state",
    "The state of an earlier authorization (1 to 128 letters or digits).",
    text_param(pattern="^[A-Za-z0-9]{1,128}$"),
    required=True,
)
SCOPE_PARAM = query(
    "scope",
    "snsapi_base: silent, openid only; snsapi_userinfo: consent page, nickname and avatar.",
    {**SCOPE, "default": "snsapi_base"},
)
BINDING_COOKIE_DESCRIPTION = (
    "The binding cookie `wechat_oa_auth_binding` (`__Host-wechat_oa_auth_binding` with Secure "
    "when PUBLIC_URL is https): a random secret, HttpOnly, SameSite=Lax, Path=/, Max-Age "
    "STATE_TTL; the state stores only its SHA-256."
)
SET_BINDING_COOKIE = {
    "description": BINDING_COOKIE_DESCRIPTION,
    "schema": {"type": "string", "pattern": "^(__Host-)?wechat_oa_auth_binding=.*HttpOnly"},
}

# -- success bodies ---------------------------------------------------------------------------

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
    "scope": SCOPE,
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
        "scope": SCOPE,
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

QR_TICKET_SCHEMA: Schema = {
    "type": "object",
    "required": ["ticket", "url", "type", "scene", "expiresAt", "image"],
    "additionalProperties": False,
    "properties": {
        "ticket": STRING,
        "url": {"type": "string", "description": "What the QR code encodes (weixin.qq.com/q/…)."},
        "type": {"type": "string", "enum": list(TYPES)},
        "scene": {"type": ["string", "integer"]},
        "expiresAt": {**NULLABLE_DATE_TIME, "description": "null for a permanent code."},
        "image": {"type": "string", "pattern": "^data:image/png;base64,"},
    },
}

LOGIN_SCENE: Schema = {"type": "string", "pattern": "^login_[A-Za-z0-9]{24}$"}

QR_LOGIN_STARTED_SCHEMA: Schema = {
    "type": "object",
    "required": ["scene", "status", "ticket", "url", "expiresAt", "poll", "image"],
    "additionalProperties": False,
    "properties": {
        "scene": LOGIN_SCENE,
        "status": {"const": "pending"},
        "ticket": STRING,
        "url": STRING,
        "expiresAt": DATE_TIME,
        "poll": {"type": "string", "description": "The status URL (also in Location)."},
        "image": {"type": "string", "pattern": "^data:image/png;base64,"},
    },
}

QR_LOGIN_STATUS_SCHEMA: Schema = {
    "oneOf": [
        {
            "title": "pending or expired",
            "type": "object",
            "required": ["status", "scene", "expiresAt"],
            "additionalProperties": False,
            "properties": {
                "status": {"enum": ["pending", "expired"]},
                "scene": STRING,
                "expiresAt": DATE_TIME,
            },
        },
        {
            "title": "scanned",
            "type": "object",
            "required": ["status", "scene", "expiresAt", "subscribed", "newFollower", "problem"],
            "additionalProperties": False,
            "properties": {
                "status": {"const": "scanned"},
                "scene": STRING,
                "expiresAt": DATE_TIME,
                "subscribed": {
                    "type": "boolean",
                    "description": "false only when WeChat said the scanner does not follow.",
                },
                "newFollower": {"type": "boolean"},
                "problem": {
                    "description": "null while the follow check runs (or passed); otherwise "
                    "why the sign-in was not confirmed: NOT_FOLLOWING (user/info said "
                    "subscribe 0), UNKNOWN_OPENID (errcode 40003: not this account's user, "
                    "e.g. a forged push), FOLLOW_CHECK_FAILED (WeChat failed or timed out). "
                    "The session then stays scanned until it expires: show a new code.",
                    "oneOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "required": ["code", "message"],
                            "additionalProperties": False,
                            "properties": {
                                "code": {
                                    "enum": [
                                        "NOT_FOLLOWING",
                                        "UNKNOWN_OPENID",
                                        "FOLLOW_CHECK_FAILED",
                                    ]
                                },
                                "message": STRING,
                            },
                        },
                    ],
                },
            },
        },
        {
            "title": "confirmed",
            "description": "The same shape /wechat/jwt answers, scope snsapi_base; handed out "
            "once.",
            "type": "object",
            "required": ["status", *SIGNED_IN_REQUIRED],
            "additionalProperties": False,
            "properties": {"status": {"const": "confirmed"}, **SIGNED_IN_PROPERTIES},
        },
    ]
}

SUBSCRIPTION_SCHEMA: Schema = {
    "type": "object",
    "required": ["openid", "subscribed", "subscribeTime", "subscribeScene"],
    "additionalProperties": False,
    "properties": {
        "openid": STRING,
        "subscribed": {"type": "boolean"},
        "subscribeTime": {**NULLABLE_DATE_TIME, "description": "null for a non-follower."},
        "subscribeScene": {
            "type": ["string", "null"],
            "description": "e.g. ADD_SCENE_QR_CODE; null for a non-follower.",
        },
    },
}

NULLABLE_STRING: Schema = {"type": ["string", "null"]}

TOKEN_STATUS_SCHEMA: Schema = {
    "type": "object",
    "description": "Never a token value.",
    "required": ["instance", "baseToken", "webTokens", "scheduler", "qrcodeBudget"],
    "additionalProperties": False,
    "properties": {
        "instance": STRING,
        "baseToken": {
            "type": "object",
            "required": [
                "appid",
                "source",
                "valid",
                "fetchedAt",
                "fetchedBy",
                "expiresAt",
                "ageSeconds",
                "remainingSeconds",
                "lastRefreshAt",
                "lastError",
                "backoffUntil",
                "consecutiveFailures",
                "leaseHolder",
                "leaseExpiresAt",
            ],
            "additionalProperties": False,
            "properties": {
                "appid": STRING,
                "source": NULLABLE_STRING,
                "valid": {"type": "boolean"},
                "fetchedAt": NULLABLE_DATE_TIME,
                "fetchedBy": NULLABLE_STRING,
                "expiresAt": NULLABLE_DATE_TIME,
                "ageSeconds": {"type": ["integer", "null"]},
                "remainingSeconds": {"type": "integer", "minimum": 0},
                "lastRefreshAt": NULLABLE_DATE_TIME,
                "lastError": {
                    "type": ["object", "null"],
                    "description": "When and how the last fetch failed: at, kind, and path, "
                    "errcode, errmsg (WeChat's refusals) or message.",
                    "properties": {
                        "at": DATE_TIME,
                        "kind": STRING,
                        "errcode": {"type": "integer"},
                    },
                },
                "backoffUntil": NULLABLE_DATE_TIME,
                "consecutiveFailures": {"type": "integer", "minimum": 0},
                "leaseHolder": NULLABLE_STRING,
                "leaseExpiresAt": NULLABLE_DATE_TIME,
            },
        },
        "webTokens": {
            "type": "object",
            "description": "Users' web tokens counted by status (active, reauth_required).",
            "additionalProperties": {"type": "integer", "minimum": 0},
        },
        "scheduler": {
            "type": "object",
            "required": ["running", "jobs"],
            "additionalProperties": False,
            "properties": {
                "running": {"type": "boolean"},
                "jobs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "nextRunAt"],
                        "additionalProperties": False,
                        "properties": {"id": STRING, "nextRunAt": NULLABLE_DATE_TIME},
                    },
                },
            },
        },
        "qrcodeBudget": {
            "type": "object",
            "description": "This instance's qrcode/create calls today (QRCODE_DAILY_BUDGET; the "
            "day ends at 00:00 Beijing time, as WeChat's quotas do).",
            "required": ["used", "budget", "resetsAt"],
            "additionalProperties": False,
            "properties": {
                "used": {"type": "integer", "minimum": 0},
                "budget": {"type": "integer", "minimum": 1},
                "resetsAt": DATE_TIME,
            },
        },
    },
}

PUSH_SCHEMA: Schema = {
    "type": "object",
    "description": "WeChat's message XML (`<xml>` with one element per field). Plain pushes carry "
    "the message fields; in safe mode only ToUserName and Encrypt; in compatible mode both.",
    "xml": {"name": "xml"},
    "required": ["ToUserName"],
    "properties": {
        "ToUserName": STRING,
        "FromUserName": {"type": "string", "description": "The sender's openid."},
        "CreateTime": {"type": "integer"},
        "MsgType": {"type": "string", "examples": ["event", "text"]},
        "Event": {"type": "string", "examples": ["subscribe", "unsubscribe", "SCAN"]},
        "EventKey": {"type": "string", "examples": ["qrscene_login_…"]},
        "Ticket": STRING,
        "Content": STRING,
        "MsgId": {"type": "integer"},
        "Encrypt": {"type": "string", "description": "Base64 AES-256-CBC ciphertext."},
    },
}


def json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def html(description: str) -> Schema:
    return {"description": description, "content": {"text/html": {"schema": STRING}}}


NO_STORE = {"Cache-Control": {"schema": {"const": "no-store"}, "required": True}}
QR_CACHE_HEADERS = {
    "Cache-Control": {
        "description": "private, max-age=<the ticket's remaining seconds> (a year if permanent)",
        "schema": {"type": "string", "pattern": "^private, max-age=[0-9]+$"},
        "required": True,
    },
    "Expires": {"schema": STRING, "required": True},
}
SANDBOX_ONLY_404 = error(404, "Outside sandbox mode: the demo pages do not exist.", "NOT_FOUND")

# -- paths ------------------------------------------------------------------------------------


def qr_image_content(json_schema: Schema) -> Schema:
    return {
        "image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}},
        "image/svg+xml": {"schema": STRING},
        "application/json": {"schema": json_schema},
    }


def paths() -> Schema:
    return {
        "/wechat/authorize": {
            "get": {
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
                "parameters": [
                    query("redirectUri", REDIRECT_URI_DESCRIPTION, APP_URL, required=True),
                    query(
                        "callback",
                        "Absolute http(s) URL WeChat returns the user to with code and state "
                        "(e.g. https://auth.example.com/wechat/callback); its domain must be the "
                        "account's 网页授权域名, its origin allowed like redirectUri's, and it "
                        "must differ from redirectUri.",
                        {**APP_URL, "example": "https://app.example.com/wechat-callback"},
                        required=True,
                    ),
                    SCOPE_PARAM,
                    query(
                        "codeChallenge",
                        "PKCE: BASE64URL(SHA-256(codeVerifier)) without padding. The app keeps "
                        "the verifier (43 to 128 of A-Z a-z 0-9 - . _ ~) and sends it to "
                        "/wechat/jwt. Required when STATE_BINDING=required.",
                        text_param(43, pattern="^[A-Za-z0-9_-]{43}$"),
                    ),
                    query(
                        "codeChallengeMethod",
                        "Must be S256 and is required with codeChallenge (plain, RFC 7636's "
                        "default, is refused).",
                        {"type": "string", "enum": ["S256"]},
                    ),
                ],
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
            }
        },
        "/wechat/authorize/retry": {
            "get": {
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
                "parameters": [
                    STATE_PARAM,
                    query(
                        "codeVerifier",
                        "PKCE: the earlier state's verifier; required for a state started with "
                        "a codeChallenge, refused for any other.",
                        text_param(128, pattern="^[A-Za-z0-9._~-]{43,128}$"),
                    ),
                ],
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
            }
        },
        "/wechat/jwt": {
            "get": {
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
                "parameters": [
                    {**STATE_PARAM, "description": "The state WeChat sent back to the callback."},
                    query(
                        "code",
                        "WeChat's code (absent when the user declined).",
                        text_param(pattern="^[A-Za-z0-9_-]{1,512}$"),
                        required=True,
                    ),
                    query(
                        "codeVerifier",
                        "PKCE: the verifier whose S256 challenge started this sign-in (RFC 7636 "
                        "§4.1); only for such states.",
                        text_param(128, pattern="^[A-Za-z0-9._~-]{43,128}$"),
                    ),
                ],
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
                        "twice), INVALID_STATE (malformed, unknown, expired or already used), "
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
            }
        },
        "/wechat/login": {
            "get": {
                "tags": ["sign-in"],
                "operationId": "login",
                "summary": "Start a browser-bound sign-in that ends on the built-in callback page",
                "description": "A top-level navigation (a link or a redirect, not a fetch): "
                "stores a single-use state whose callback is PUBLIC_URL/wechat/callback, binds "
                "it to this browser with a cookie, and redirects to WeChat. The callback page "
                "completes it only in the browser holding the cookie, so a callback link from "
                "someone else's sign-in cannot sign this browser in (login CSRF). Reach it on "
                "PUBLIC_URL's host: the cookie belongs to that host. A browser's second "
                "sign-in reuses its cookie's secret.",
                "parameters": [
                    query("redirectUri", REDIRECT_URI_DESCRIPTION, APP_URL, required=True),
                    SCOPE_PARAM,
                ],
                "responses": {
                    "302": {
                        "description": "To WeChat's authorization page.",
                        "headers": {
                            "Location": {
                                "description": "WeChat's authorization URL, callback "
                                "PUBLIC_URL/wechat/callback.",
                                "schema": {
                                    "type": "string",
                                    "pattern": "/connect/oauth2/authorize\\?appid=.*"
                                    "#wechat_redirect$",
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
            }
        },
        "/.well-known/jwks.json": {
            "get": {
                "tags": ["sign-in"],
                "operationId": "jwks",
                "summary": "The public keys that verify the app's JWTs",
                "description": "With JWT_ALGORITHM=RS256 or ES256: the current key and those "
                "being rotated out, each with its kid (the RFC 7638 thumbprint, also in every "
                "token's header). Empty with HS256: a shared secret is never published.",
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
            }
        },
        "/wechat/callback": {
            "get": {
                "tags": ["sign-in", "pages"],
                "operationId": "callbackPage",
                "summary": "The built-in callback page",
                "description": "Where /wechat/login's sign-ins return (or use "
                "https://<service>/wechat/callback as /wechat/authorize's `callback` if the app "
                "has no page of its own; such states are not browser-bound). In the browser it "
                "reads code and state, calls /wechat/jwt (same-origin, so the binding cookie "
                "goes along) and replaces itself with redirectUri#token=…&tokenType=Bearer"
                "&expiresIn=…; it explains STATE_NOT_BOUND, SNAPSHOT_USER and a damaged link. "
                "Strict CSP, Referrer-Policy: no-referrer.",
                "parameters": [
                    query("code", "WeChat's code (read by the page's script).", text_param()),
                    query("state", "The state (read by the page's script).", text_param()),
                ],
                "responses": {"200": html("The page."), "500": INTERNAL_ERROR},
            }
        },
        "/wechat/message": {
            "get": {
                "tags": ["messages"],
                "operationId": "verifyServerUrl",
                "summary": "WeChat's server-URL check (服务器配置)",
                "description": "The timestamp must lie within PUSH_MAX_AGE of the server's "
                "clock, and its (timestamp, nonce) is claimed like a push's: a second check "
                "with the same pair and echostr is answered again, anything else with that "
                "pair (another echostr, a push) is a replay.",
                "parameters": [
                    query(
                        "signature",
                        "SHA-1 of the sorted WECHAT_TOKEN, timestamp and nonce.",
                        text_param(),
                        required=True,
                    ),
                    query("timestamp", "", text_param(), required=True),
                    query("nonce", "", text_param(), required=True),
                    query(
                        "echostr",
                        "Echoed back when the signature matches.",
                        text_param(),
                        required=True,
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "The signature matches: echostr.",
                        "content": {"text/plain": {"schema": STRING}},
                    },
                    "400": error(
                        400,
                        "MISSING_PARAMETER, or INVALID_PARAMETER (given twice or too long).",
                        "MISSING_PARAMETER",
                        "INVALID_PARAMETER",
                    ),
                    "403": error(
                        403,
                        "INVALID_SIGNATURE (the signature does not match), STALE_PUSH (the "
                        "timestamp is not within PUSH_MAX_AGE of now), REPLAYED_PUSH (the "
                        "timestamp and nonce were used by another request).",
                        "INVALID_SIGNATURE",
                        "STALE_PUSH",
                        "REPLAYED_PUSH",
                    ),
                    "500": INTERNAL_ERROR,
                },
            },
            "post": {
                "tags": ["messages"],
                "operationId": "receivePush",
                "summary": "WeChat's pushed messages and events",
                "description": "Set this URL as the account's 服务器地址. WECHAT_MESSAGE_MODE "
                "plain: `signature` must match, encrypted pushes are refused; safe: only "
                "`encrypt_type=aes` pushes, `msg_signature` (over token, timestamp, nonce and "
                "Encrypt) checked before decrypting, replies encrypted; compatible: encrypted "
                "pushes only too (WeChat adds encrypt_type and msg_signature to every push), "
                "plaintext fields ignored. The timestamp must lie within PUSH_MAX_AGE of the "
                "server's clock, and each (timestamp, nonce) is accepted once: the plain signature "
                "never covers the body. A push WeChat retries is answered as the first "
                "delivery was, not processed again. Nothing is stored for a refused push.",
                "parameters": [
                    query(
                        "signature",
                        "SHA-1 of the sorted WECHAT_TOKEN, timestamp and nonce.",
                        text_param(),
                        required=True,
                    ),
                    query("timestamp", "", text_param(), required=True),
                    query("nonce", "", text_param(), required=True),
                    query("openid", "The sender's openid.", text_param()),
                    query(
                        "encrypt_type",
                        "`aes` for an encrypted push (compatible and safe modes).",
                        {"type": "string", "enum": ["aes"]},
                    ),
                    query(
                        "msg_signature",
                        "Required with encrypt_type=aes (403 without).",
                        text_param(),
                    ),
                ],
                "requestBody": {
                    "required": True,
                    "description": "Parsed with defusedxml (no DTDs, no entities); at most "
                    "MAX_BODY_BYTES.",
                    "content": {
                        "text/xml": {"schema": ref("WeChatPush")},
                        "application/xml": {"schema": ref("WeChatPush")},
                    },
                },
                "responses": {
                    "200": {
                        "description": "`success`, or the passive reply (MESSAGE_TEXT_REPLY to "
                        "a user's text message) as message XML, encrypted when the push was.",
                        "content": {
                            "text/plain": {"schema": {"const": "success"}},
                            "application/xml": {"schema": STRING},
                        },
                    },
                    "400": error(
                        400,
                        "MISSING_PARAMETER (timestamp, nonce, signature), INVALID_PARAMETER "
                        "(given twice or too long), INVALID_MESSAGE (malformed XML, no Encrypt "
                        "element, no sender or time, a CreateTime that is not whole seconds; an "
                        "encrypted push that cannot be read gets one answer whatever is wrong "
                        "with it: field Encrypt, the same message).",
                        "MISSING_PARAMETER",
                        "INVALID_PARAMETER",
                        "INVALID_MESSAGE",
                    ),
                    "403": error(
                        403,
                        "INVALID_SIGNATURE: wrong or missing signature or msg_signature; an "
                        "encrypted push in plain mode, or a plain one in safe or compatible "
                        "mode. STALE_PUSH: timestamp more than PUSH_MAX_AGE from now. "
                        "REPLAYED_PUSH: this (timestamp, nonce) came with another body before.",
                        "INVALID_SIGNATURE",
                        "STALE_PUSH",
                        "REPLAYED_PUSH",
                    ),
                    "413": error(
                        413, "The body is over MAX_BODY_BYTES.", "REQUEST_ENTITY_TOO_LARGE"
                    ),
                    "500": INTERNAL_ERROR,
                    "503": error(
                        503,
                        "A retry of a push whose first delivery is still being processed (here "
                        "or on another instance) after a 3 s wait: WeChat delivers it again.",
                        "PUSH_IN_PROGRESS",
                    ),
                },
            },
        },
        "/wechat/qrcode": {
            "get": {
                "tags": ["qr"],
                "operationId": "qrCode",
                "summary": "The account's parametric QR code (生成带参数的二维码)",
                "description": "Created with cgi-bin/qrcode/create and drawn locally from the "
                "url WeChat returns. Tickets are kept per (type, scene) and reused while they "
                "have at least half the asked-for life (and a minute) left; concurrent requests "
                "for one (type, scene) share one qrcode/create call, across instances too. "
                "Temporary codes are open to anyone; `type=permanent` needs `X-Admin-Key` "
                "(the account may hold only 100,000 permanent codes in its life). Each "
                "instance makes at most QRCODE_DAILY_BUDGET qrcode/create calls a day.",
                "security": [{}, {"adminKey": []}],
                "parameters": [
                    query(
                        "scene",
                        f"Digits are a scene_id (temporary 1..{MAX_TEMPORARY_SCENE_ID}, "
                        f"permanent 1..{MAX_PERMANENT_SCENE_ID}); anything else a scene_str of "
                        f"1..{MAX_SCENE_STR} characters.",
                        {"type": "string", "minLength": 1, "maxLength": MAX_SCENE_STR},
                        required=True,
                    ),
                    query(
                        "type", "", {"type": "string", "enum": list(TYPES), "default": "temporary"}
                    ),
                    query(
                        "expireSeconds",
                        "Temporary codes only; default QRCODE_EXPIRE_SECONDS. Must be left out "
                        "for permanent codes.",
                        int_param(MIN_EXPIRE, MAX_EXPIRE),
                    ),
                    query(
                        "format", "", {"type": "string", "enum": list(FORMATS), "default": "png"}
                    ),
                    SCALE,
                    BORDER,
                ],
                "responses": {
                    "200": {
                        "description": "The code as PNG, SVG, or JSON with the PNG as a data URI.",
                        "headers": QR_CACHE_HEADERS,
                        "content": qr_image_content(ref("QrTicket")),
                    },
                    "400": error(
                        400,
                        "MISSING_PARAMETER (scene), INVALID_PARAMETER (out of range, unknown "
                        "type or format, expireSeconds for a permanent code, given twice), "
                        "naming the field.",
                        "MISSING_PARAMETER",
                        "INVALID_PARAMETER",
                    ),
                    "401": error(
                        401,
                        "`type=permanent` without an X-Admin-Key header.",
                        "UNAUTHORIZED",
                        details={"properties": {"field": {"const": "X-Admin-Key"}}},
                    ),
                    "403": error(
                        403,
                        "`type=permanent` with a wrong X-Admin-Key, or ADMIN_KEY is unset "
                        "(permanent codes are then disabled).",
                        "FORBIDDEN",
                        details={"properties": {"field": {"const": "X-Admin-Key"}}},
                    ),
                    **upstream_errors(),
                    "500": INTERNAL_ERROR,
                },
            }
        },
        "/wechat/qrcode/login": {
            "post": {
                "tags": ["qr"],
                "operationId": "startQrLogin",
                "summary": 'Start a desktop "scan to follow and sign in" session',
                "description": "A random scene and a temporary QR code living QR_LOGIN_TTL "
                "seconds (one qrcode/create call, out of QRCODE_DAILY_BUDGET). Poll the "
                "Location URL for the outcome. The scene is a bearer capability: whoever holds "
                "it receives the sign-in's JWT. No request body.",
                "parameters": [
                    query("redirectUri", REDIRECT_URI_DESCRIPTION + " Optional here.", APP_URL),
                    query(
                        "format", "", {"type": "string", "enum": list(FORMATS), "default": "json"}
                    ),
                    SCALE,
                    BORDER,
                ],
                "responses": {
                    "201": {
                        "description": "The session, pending.",
                        "headers": {
                            **NO_STORE,
                            "Location": {
                                "description": "The status URL: /wechat/qrcode/login/{scene}",
                                "schema": STRING,
                                "required": True,
                            },
                            "X-QR-Scene": {"schema": LOGIN_SCENE, "required": True},
                        },
                        "content": qr_image_content(ref("QrLoginStarted")),
                    },
                    "400": error(
                        400,
                        "INVALID_PARAMETER (format, scale, border, a malformed redirectUri, "
                        "given twice), ORIGIN_NOT_ALLOWED (redirectUri).",
                        "INVALID_PARAMETER",
                        "ORIGIN_NOT_ALLOWED",
                    ),
                    **upstream_errors(),
                    "500": INTERNAL_ERROR,
                },
            }
        },
        "/wechat/qrcode/login/{scene}": {
            "get": {
                "tags": ["qr"],
                "operationId": "qrLoginStatus",
                "summary": "A sign-in session's state; long-polls with wait",
                "description": "pending, scanned, expired, or confirmed with the app's JWT "
                "(handed out once; afterwards 404). A scan is confirmed only once WeChat's "
                "cgi-bin/user/info answers `subscribe: 1` for the openid that scanned; if it "
                "does not (not a follower, an openid WeChat does not know, WeChat failing), "
                "the session stays scanned, with `problem` saying why, until it expires. A "
                "long poll answers at once, with the current state, when the service shuts "
                "down.",
                "parameters": [
                    {
                        "name": "scene",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1},
                    },
                    query(
                        "wait",
                        "Seconds to wait for a change while pending or scanned.",
                        int_param(0, MAX_WAIT, 0),
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "The session's state.",
                        "headers": NO_STORE,
                        "content": json_content(ref("QrLoginStatus")),
                    },
                    "400": error(
                        400,
                        "INVALID_PARAMETER: wait is not 0..30 or given twice.",
                        "INVALID_PARAMETER",
                    ),
                    "404": error(
                        404,
                        "Unknown scene, or the token was already handed out.",
                        "QR_LOGIN_NOT_FOUND",
                    ),
                    "500": INTERNAL_ERROR,
                },
            }
        },
        "/wechat/subscribed": {
            "get": {
                "tags": ["follow"],
                "operationId": "subscribed",
                "summary": "Does the signed-in user follow the account?",
                "description": "Asks WeChat's cgi-bin/user/info with the account's base "
                "access_token and stores the answer on the user.",
                "security": [{"bearerJwt": []}],
                "responses": {
                    "200": {
                        "description": "The follow state.",
                        "headers": NO_STORE,
                        "content": json_content(ref("Subscription")),
                    },
                    "401": {
                        **error(
                            401,
                            "A missing, invalid or expired JWT; `details.field` is Authorization.",
                            "UNAUTHORIZED",
                            details={"properties": {"field": {"const": "Authorization"}}},
                        ),
                        "headers": {"WWW-Authenticate": WWW_AUTHENTICATE},
                    },
                    **upstream_errors(),
                    "500": INTERNAL_ERROR,
                },
            }
        },
        "/wechat/tokens/status": {
            "get": {
                "tags": ["operations"],
                "operationId": "tokensStatus",
                "summary": "Token upkeep status, for operators",
                "description": "The base token's source, age, remaining life, who fetched it "
                "and when, the last error and any back-off, the lease holder, web tokens by "
                "state, the scheduler's jobs, this instance's qrcode/create budget "
                "(QRCODE_DAILY_BUDGET). Never a token value.",
                "security": [{"adminKey": []}],
                "responses": {
                    "200": {
                        "description": "The status.",
                        "headers": NO_STORE,
                        "content": json_content(ref("TokenStatus")),
                    },
                    "401": error(401, "No X-Admin-Key header.", "UNAUTHORIZED"),
                    "403": error(
                        403,
                        "A wrong key, or ADMIN_KEY is unset (the endpoint is disabled).",
                        "FORBIDDEN",
                    ),
                    "500": INTERNAL_ERROR,
                },
            }
        },
        "/healthz": {
            "get": {
                "tags": ["operations"],
                "operationId": "healthz",
                "summary": "Liveness: the process serves",
                "responses": {
                    "200": {
                        "description": "Alive.",
                        "content": json_content(
                            {
                                "type": "object",
                                "required": ["status"],
                                "additionalProperties": False,
                                "properties": {"status": {"const": "ok"}},
                            }
                        ),
                    },
                    "500": INTERNAL_ERROR,
                },
            }
        },
        "/readyz": {
            "get": {
                "tags": ["operations"],
                "operationId": "readyz",
                "summary": "Readiness: MongoDB answers and a base access_token is at hand",
                "responses": {
                    "200": {
                        "description": "Ready.",
                        "content": json_content(
                            {
                                "type": "object",
                                "required": ["status", "mongodb", "baseToken"],
                                "additionalProperties": False,
                                "properties": {
                                    "status": {"const": "ready"},
                                    "mongodb": {"const": "ok"},
                                    "baseToken": {"const": "ok"},
                                },
                            }
                        ),
                    },
                    "503": error(
                        503,
                        "MongoDB did not answer a ping within 2 s (`details.field` mongodb), "
                        "or no valid base access_token within 5 s (base_token), e.g. while "
                        "WeChat refuses the account's token with 45009 or 40164.",
                        "NOT_READY",
                        details={"properties": {"field": {"enum": ["mongodb", "base_token"]}}},
                    ),
                    "500": INTERNAL_ERROR,
                },
            }
        },
        "/metrics": {
            "get": {
                "tags": ["operations"],
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "description": "Requests and latency by route pattern, WeChat calls by endpoint "
                "and errcode, token refresh failures, the base token's remaining life, whether "
                "this instance holds the lease, web tokens by state (read from MongoDB at scrape "
                "time).",
                "responses": {
                    "200": {
                        "description": "Prometheus' text exposition format.",
                        "headers": NO_STORE,
                        "content": {"text/plain": {"schema": STRING}},
                    },
                    "500": INTERNAL_ERROR,
                },
            }
        },
        "/": {
            "get": {
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
            }
        },
        "/demo/qr-login": {
            "get": {
                "tags": ["pages"],
                "operationId": "qrLoginDemo",
                "summary": "Sandbox mode: the desktop QR sign-in demo",
                "responses": {
                    "200": html("The demo page (sandbox mode)."),
                    "404": SANDBOX_ONLY_404,
                    "500": INTERNAL_ERROR,
                },
            }
        },
        "/demo/landing": {
            "get": {
                "tags": ["pages"],
                "operationId": "demoLanding",
                "summary": "Sandbox mode: where the demo's sign-in ends (decodes the JWT)",
                "responses": {
                    "200": html("The landing page (sandbox mode)."),
                    "404": SANDBOX_ONLY_404,
                    "500": INTERNAL_ERROR,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "tags": ["docs"],
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1.",
                        "content": json_content(
                            {"type": "object", "required": ["openapi", "info", "paths"]}
                        ),
                    },
                    "500": INTERNAL_ERROR,
                },
            }
        },
        "/docs": {
            "get": {
                "tags": ["docs"],
                "operationId": "docs",
                "summary": "This document, readable (Swagger UI, served locally)",
                "responses": {"200": html("The page."), "500": INTERNAL_ERROR},
            }
        },
    }


TAGS = [
    {"name": "sign-in", "description": "WeChat web authorization (OAuth2) and the app's JWT."},
    {"name": "qr", "description": "Parametric QR codes and desktop scan-to-sign-in."},
    {"name": "messages", "description": "WeChat's server-URL check and pushed messages."},
    {"name": "follow", "description": "Does a user follow the Official Account?"},
    {"name": "operations", "description": "Health, readiness and token upkeep."},
    {"name": "pages", "description": "HTML pages (no external assets, no inline script)."},
    {"name": "docs", "description": "This document and its page."},
    {
        "name": "sandbox",
        "description": "In sandbox mode (SANDBOX=1) the offline WeChat emulator is mounted at "
        "`/sandbox`: WeChat's own paths below it (`/sandbox/connect/oauth2/authorize`, "
        "`/sandbox/sns/oauth2/access_token`, `/sandbox/cgi-bin/stable_token`, …) answer as "
        "WeChat's documented endpoints do, in WeChat's shapes (errcode/errmsg), not in this "
        "service's error shape; `/sandbox/_sandbox/…` holds its controls (users, faults, clock, "
        "the phone that scans QR codes). It is not documented route by route here: see the "
        'README\'s "The WeChat emulator" section. Outside sandbox mode it does not exist.',
    },
]


REQUEST_ID_PARAMETER: Schema = {
    "name": REQUEST_ID_HEADER,
    "in": "header",
    "required": False,
    "description": "Your id for this request, kept when it is 1 to 128 of "
    "`A-Z a-z 0-9 . _ : -`; otherwise the service makes one. Sent back on every answer and "
    "carried by every log line of the request.",
    "schema": {"type": "string", "pattern": f"^{REQUEST_ID_PATTERN.pattern}$"},
}
REQUEST_ID_RESPONSE_HEADER: Schema = {
    "description": "The request's id (yours if acceptable, else a new one).",
    "schema": {"type": "string", "minLength": 1},
    "required": True,
}


# Routes that call qrcode/create, and so answer 429 QRCODE_BUDGET_EXHAUSTED too.
QRCODE_BUDGET_ROUTES = ("/wechat/qrcode", "/wechat/qrcode/login")


def rate_limited(qrcode_budget: bool = False) -> Schema:
    if qrcode_budget:
        response = error(
            429,
            "`RATE_LIMITED`: too many requests from this client address to this group of "
            "endpoints (RATE_LIMIT_QRCODE per minute, bursts of RATE_LIMIT_BURST); "
            "`details.field` is `client`, `details.fieldValue` the client address. "
            "`QRCODE_BUDGET_EXHAUSTED`: this instance has made its QRCODE_DAILY_BUDGET "
            "qrcode/create calls today (the day ends at 00:00 Beijing time, as WeChat's "
            "quotas do); stored, reusable tickets are still served. `details.field` is "
            "`QRCODE_DAILY_BUDGET`, `details.fieldValue` the budget; Retry-After runs to the "
            "reset.",
            "RATE_LIMITED",
            "QRCODE_BUDGET_EXHAUSTED",
            details={"properties": {"field": {"enum": ["client", "QRCODE_DAILY_BUDGET"]}}},
        )
    else:
        response = error(
            429,
            "Too many requests from this client address to this group of endpoints "
            "(RATE_LIMIT_AUTHORIZE, RATE_LIMIT_JWT, RATE_LIMIT_QRCODE per minute, bursts of "
            "RATE_LIMIT_BURST). `details.fieldValue` is the client address.",
            "RATE_LIMITED",
            details={"properties": {"field": {"const": "client"}}},
        )
    response["headers"] = {
        "Retry-After": {
            "description": "Seconds until the next request is accepted.",
            "schema": {"type": "integer", "minimum": 1},
            "required": True,
        }
    }
    return response


def finished_paths() -> Schema:
    """paths() plus what every operation shares: the request id, and 429 where rate limited."""
    result = copy.deepcopy(paths())
    for template, item in result.items():
        # Inline: Swagger UI 5 does not resolve a path-level $ref to components/parameters.
        item["parameters"] = [REQUEST_ID_PARAMETER]
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            if template in ROUTE_GROUPS:
                responses["429"] = rate_limited(template in QRCODE_BUDGET_ROUTES)
            for response in responses.values():
                if "$ref" not in response:
                    response.setdefault("headers", {})[REQUEST_ID_HEADER] = (
                        REQUEST_ID_RESPONSE_HEADER
                    )
            operation["responses"] = dict(sorted(responses.items()))
    return result


def build_openapi(public_url: str) -> dict[str, Any]:
    """The document; `public_url` (PUBLIC_URL) is its server."""
    internal_error = error(
        500,
        "An unexpected error; the id appears in the service's log beside the traceback, which "
        "is never sent.",
        "INTERNAL_ERROR",
    )
    internal_error["headers"] = {REQUEST_ID_HEADER: REQUEST_ID_RESPONSE_HEADER}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": _version(),
            "summary": "Sign users in through a WeChat Official Account.",
            "description": "WeChat web authorization (OAuth2) run for your app, which gets its "
            "own JWT; QR-code sign-in for desktops; follow checks; WeChat's pushed messages; "
            "token upkeep. Every error of every route has one JSON shape, "
            "`#/components/schemas/Error`. In sandbox mode (SANDBOX=1) an offline WeChat emulator "
            "is mounted at `/sandbox`; it is not documented here route by route (see the sandbox "
            "tag and the README). A request line or header over 64 KiB is refused by the "
            "HTTP server itself with a plain-text 400, before the service sees it.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": public_url, "description": "PUBLIC_URL"}],
        "tags": TAGS,
        "paths": finished_paths(),
        "components": {
            "schemas": {
                "Error": ERROR_SCHEMA,
                "JwtClaims": CLAIMS_SCHEMA,
                "Jwks": JWKS_SCHEMA,
                "SignedIn": SIGNED_IN_SCHEMA,
                "User": USER_SCHEMA,
                "QrTicket": QR_TICKET_SCHEMA,
                "QrLoginStarted": QR_LOGIN_STARTED_SCHEMA,
                "QrLoginStatus": QR_LOGIN_STATUS_SCHEMA,
                "Subscription": SUBSCRIPTION_SCHEMA,
                "TokenStatus": TOKEN_STATUS_SCHEMA,
                "WeChatPush": PUSH_SCHEMA,
            },
            "responses": {"InternalError": internal_error},
            "securitySchemes": {
                "bearerJwt": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "The app JWT from /wechat/jwt (or a confirmed QR sign-in), "
                    "as `Authorization: Bearer <token>`.",
                },
                "adminKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Admin-Key",
                    "description": "ADMIN_KEY; the status endpoint and permanent QR codes are "
                    "disabled while it is unset.",
                },
            },
        },
    }


@functools.lru_cache(maxsize=8)
def openapi_json(public_url: str) -> str:
    """The document serialized once per server URL."""
    return json.dumps(build_openapi(public_url), ensure_ascii=False)
