"""The OpenID Connect area's piece of the OpenAPI document, and its query parameters."""

from __future__ import annotations

from service.openapi import INTERNAL_ERROR, NO_STORE, STRING, Operation, error, html, json_content
from service.params import Schema, Text

# -- query parameters (RFC 6749 §4.1.1, OIDC Core §3.1.2.1) ------------------------------------

RESPONSE_TYPE = Text("response_type", "`code` (the authorization code flow).")
CLIENT_ID = Text("client_id", "A client registered in config/ (`[[oidc_clients]]`).")
REDIRECT_URI = Text(
    "redirect_uri", "Exactly one of the client's registered redirect URIs.", format="uri"
)
SCOPE = Text(
    "scope",
    "Space-separated; must contain `openid`. `profile` asks WeChat for snsapi_userinfo "
    "(nickname and avatar: the `name` and `picture` claims); without it, snsapi_base.",
)
STATE = Text("state", "The client's own value, returned unchanged with the answer.")
NONCE = Text("nonce", "Copied into the ID token.")
CODE_CHALLENGE = Text(
    "code_challenge",
    "PKCE (RFC 7636): BASE64URL(SHA-256(code_verifier)); required for public clients.",
)
CODE_CHALLENGE_METHOD = Text("code_challenge_method", "`S256` (plain is refused).")
WECHAT_CODE = Text("code", "WeChat's code (absent when the person declined).")
WECHAT_STATE = Text("state", "The state the service sent to WeChat.")

# -- answers ----------------------------------------------------------------------------------

ERROR_PAGE = error(
    400,
    "`AUTHORIZATION_REFUSED`: the request names no known client or a redirect_uri not "
    "registered for it, or a parameter is repeated or too long, so no answer can go back to "
    "an application (RFC 6749 §4.1.2.1); at the callback, the state is unknown, expired or "
    "used. A browser (Accept: text/html) gets this as a page, its reference the error's id.",
    "AUTHORIZATION_REFUSED",
)
ERROR_PAGE["content"]["text/html"] = {"schema": STRING}
REDIRECT = {
    "description": "To WeChat's authorization page, or back to the client's redirect_uri with "
    "`code` or `error` (`invalid_request`, `invalid_scope`, `unsupported_response_type`, "
    "`access_denied`, `temporarily_unavailable`, `server_error`), `state` and `iss`.",
    "headers": {"Location": {"schema": {"type": "string", "format": "uri"}, "required": True}},
    "content": {"text/plain": {"schema": STRING}},
}


def oauth_error(status: int, description: str, *names: str) -> Schema:
    """The service's error shape with RFC 6749's `error` and `error_description` beside it."""
    response = error(status, description, *names)
    schema = response["content"]["application/json"]["schema"]
    schema["allOf"].append({"required": ["error", "error_description"]})
    return response


DISCOVERY_SCHEMA: Schema = {
    "type": "object",
    "required": [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    ],
    "properties": {
        "issuer": {"type": "string", "format": "uri"},
        "authorization_endpoint": {"type": "string", "format": "uri"},
        "token_endpoint": {"type": "string", "format": "uri"},
        "userinfo_endpoint": {"type": "string", "format": "uri"},
        "jwks_uri": {"type": "string", "format": "uri"},
    },
}
TOKEN_SCHEMA: Schema = {
    "type": "object",
    "required": ["access_token", "token_type", "expires_in", "id_token", "scope"],
    "additionalProperties": False,
    "properties": {
        "access_token": STRING,
        "token_type": {"const": "Bearer"},
        "expires_in": {"type": "integer", "minimum": 1},
        "id_token": {"type": "string", "description": "A JWT signed with RS256 or ES256."},
        "scope": STRING,
    },
}
USERINFO_SCHEMA: Schema = {
    "type": "object",
    "required": ["sub"],
    "additionalProperties": False,
    "properties": {
        "sub": {"type": "string", "description": "The person's openid for this account."},
        "appid": {"type": "string", "description": "The account the openid belongs to."},
        "unionid": STRING,
        "name": {"type": "string", "description": "WeChat's nickname (profile scope)."},
        "picture": {"type": "string", "description": "WeChat's headimgurl (profile scope)."},
    },
}
TOKEN_FORM: Schema = {
    "type": "object",
    "required": ["grant_type", "code", "redirect_uri"],
    "properties": {
        "grant_type": {"const": "authorization_code"},
        "code": STRING,
        "redirect_uri": STRING,
        "code_verifier": STRING,
        "client_id": STRING,
        "client_secret": STRING,
    },
}
UNAUTHORIZED_BEARER = oauth_error(
    401,
    "No access token (`invalid_request`), or one unknown, expired or revoked "
    "(`invalid_token`); `WWW-Authenticate` says which, as RFC 6750 §3 does.",
    "INVALID_REQUEST",
    "INVALID_TOKEN",
)
UNAUTHORIZED_BEARER["headers"] = {"WWW-Authenticate": {"schema": STRING, "required": True}}

# -- operations -------------------------------------------------------------------------------

DISCOVERY = Operation(
    {
        "tags": ["openid-connect"],
        "operationId": "openidConfiguration",
        "summary": "OpenID Connect discovery",
        "description": "The provider's metadata (OpenID Connect Discovery 1.0, RFC 8414); the "
        "issuer is PUBLIC_URL.",
        "responses": {
            "200": {
                "description": "The metadata.",
                "content": json_content(DISCOVERY_SCHEMA),
            },
            "500": INTERNAL_ERROR,
        },
    }
)

AUTHORIZE = Operation(
    {
        "tags": ["openid-connect"],
        "operationId": "oidcAuthorize",
        "summary": "OpenID Connect authorization endpoint (code flow, PKCE)",
        "description": "Checks the client and its redirect_uri, then sends the person to "
        "WeChat with the service's own callback; WeChat returns them to /oidc/callback, and "
        "they go back to redirect_uri with a code (single use, 60 s).",
        "responses": {"302": REDIRECT, "400": ERROR_PAGE, "500": INTERNAL_ERROR},
    },
    params=(
        RESPONSE_TYPE,
        CLIENT_ID,
        REDIRECT_URI,
        SCOPE,
        STATE,
        NONCE,
        CODE_CHALLENGE,
        CODE_CHALLENGE_METHOD,
    ),
)

CALLBACK = Operation(
    {
        "tags": ["openid-connect"],
        "operationId": "oidcCallback",
        "summary": "Where WeChat returns the person during an OpenID Connect sign-in",
        "responses": {"302": REDIRECT, "400": ERROR_PAGE, "500": INTERNAL_ERROR},
    },
    params=(WECHAT_CODE, WECHAT_STATE),
)

TOKEN = Operation(
    {
        "tags": ["openid-connect"],
        "operationId": "oidcToken",
        "summary": "OpenID Connect token endpoint",
        "description": "grant_type=authorization_code. Clients authenticate with "
        "client_secret_basic or client_secret_post; public clients send only client_id and "
        "the PKCE code_verifier. A code used twice revokes the tokens it gave.",
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": TOKEN_FORM}},
        },
        "responses": {
            "200": {
                "description": "The tokens.",
                "headers": NO_STORE,
                "content": json_content(TOKEN_SCHEMA),
            },
            "400": oauth_error(
                400,
                "RFC 6749 §5.2: `invalid_request`, `invalid_grant` (unknown, expired or used "
                "code, another client's or redirect's, a wrong code_verifier), "
                "`unsupported_grant_type`.",
                "INVALID_REQUEST",
                "INVALID_GRANT",
                "UNSUPPORTED_GRANT_TYPE",
            ),
            "401": oauth_error(
                401, "`invalid_client`: client authentication failed.", "INVALID_CLIENT"
            ),
            "500": INTERNAL_ERROR,
        },
    }
)

USERINFO_SPEC: Schema = {
    "tags": ["openid-connect"],
    "summary": "OpenID Connect userinfo endpoint",
    "description": "`Authorization: Bearer <access token>`: the claims the token's scope allows.",
    "responses": {
        "200": {"description": "The claims.", "content": json_content(USERINFO_SCHEMA)},
        "401": UNAUTHORIZED_BEARER,
        "500": INTERNAL_ERROR,
    },
}
USERINFO_GET = Operation({**USERINFO_SPEC, "operationId": "oidcUserinfo"})
USERINFO_POST = Operation({**USERINFO_SPEC, "operationId": "oidcUserinfoPost"})

# -- the sandbox's demo -----------------------------------------------------------------------

DEMO_SCOPE = Text("scope", "`openid profile` or `openid`.")
DEMO_CODE = Text("code", "The provider's code.")
DEMO_STATE = Text("state", "The backend's state, checked against its cookie.")
DEMO_ERROR = Text("error", "The provider's error, when the sign-in failed.")
SANDBOX_ONLY_404 = error(404, "Outside sandbox mode: the demo does not exist.", "NOT_FOUND")
DEMO_PARAMETER = error(
    400, "INVALID_PARAMETER: a parameter given twice or too long.", "INVALID_PARAMETER"
)

DEMO = Operation(
    {
        "tags": ["pages"],
        "operationId": "oidcDemo",
        "summary": "Sandbox mode: sign in through the demo OpenID Connect clients",
        "description": "The browser app demo-spa signs in from this page (PKCE in its script) "
        "and is also its redirect_uri; demo-backend starts at /demo/oidc/backend/start.",
        "responses": {
            "200": html("The demo page."),
            "404": SANDBOX_ONLY_404,
            "500": INTERNAL_ERROR,
        },
    }
)

DEMO_BACKEND_START = Operation(
    {
        "tags": ["pages"],
        "operationId": "oidcDemoBackendStart",
        "summary": "Sandbox mode: the demo backend starts a sign-in",
        "responses": {
            "302": REDIRECT,
            "400": DEMO_PARAMETER,
            "404": SANDBOX_ONLY_404,
            "500": INTERNAL_ERROR,
        },
    },
    params=(DEMO_SCOPE,),
)

DEMO_BACKEND = Operation(
    {
        "tags": ["pages"],
        "operationId": "oidcDemoBackend",
        "summary": "Sandbox mode: the demo backend's redirect_uri",
        "description": "Checks its state, redeems the code with client_secret_basic, verifies "
        "the ID token and asks userinfo; shows the result.",
        "responses": {
            "200": html("The result."),
            "400": DEMO_PARAMETER,
            "404": SANDBOX_ONLY_404,
            "500": INTERNAL_ERROR,
        },
    },
    params=(DEMO_CODE, DEMO_STATE, DEMO_ERROR),
)
