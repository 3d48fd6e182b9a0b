"""The shared access_token's piece of the OpenAPI document."""

from __future__ import annotations

from service.accounts import ACCOUNT as ACCOUNT
from service.openapi import INTERNAL_ERROR, NO_STORE, STRING, Operation, error, json_content, ref
from service.params import Schema
from service.shared_token.handout import INVALIDATE_MIN_AGE

SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}]

SHARED_TOKEN_SCHEMA: Schema = {
    "type": "object",
    "required": ["accessToken", "expiresIn", "appid"],
    "additionalProperties": False,
    "properties": {
        "accessToken": {**STRING, "minLength": 1, "description": "The base access_token."},
        "expiresIn": {
            "type": "integer",
            "minimum": 0,
            "description": "Seconds until WeChat expires it. The service renews it "
            "BASE_TOKEN_REFRESH_MARGIN seconds before, and WeChat keeps the old token valid "
            "until then, so it may be cached that long.",
        },
        "appid": STRING,
    },
}

INVALIDATION_SCHEMA: Schema = {
    "type": "object",
    "required": ["accessToken"],
    "properties": {
        "accessToken": {
            **STRING,
            "minLength": 1,
            "maxLength": 512,
            "description": "The token WeChat rejected (errcode 40001), as it was handed out.",
        }
    },
}

INVALIDATED_SCHEMA: Schema = {
    "type": "object",
    "required": ["result"],
    "additionalProperties": False,
    "properties": {
        "result": {
            "enum": ["invalidated", "alreadyReplaced"],
            "description": "`invalidated`: it was the kept token and is dropped; the next read "
            "gets a new one. `alreadyReplaced`: it is not the kept token any more (replaced or "
            "dropped already); nothing was done. Either way, read the token again.",
        }
    },
}


def _auth_errors() -> dict[str, Schema]:
    return {
        "401": error(
            401,
            "No X-API-Key header.",
            "UNAUTHORIZED",
            details={"properties": {"field": {"const": "X-API-Key"}}},
        ),
        "403": error(
            403,
            "A key not in API_KEYS, or API_KEYS is unset (the endpoint is disabled).",
            "FORBIDDEN",
            details={"properties": {"field": {"const": "X-API-Key"}}},
        ),
    }


ACCOUNT_ERROR = error(
    400,
    "`account` names no account of this service (or is given twice, or malformed).",
    "INVALID_PARAMETER",
)

ACCESS_TOKEN = Operation(
    {
        "tags": ["operations"],
        "operationId": "sharedAccessToken",
        "summary": "The account's base access_token, for the team's other backends",
        "description": "WeChat wants one central server (中控服务器) to fetch the account's "
        "access_token; this service is it. Answers the token it keeps and uses itself, read "
        "from MongoDB: WeChat is never asked per request. Only when no valid token is kept "
        "(first start, after an invalidation) does the read wait, at most 5 s, while one "
        "instance fetches under the lease. Each call is logged with the key's name.",
        "security": SECURITY,
        "responses": {
            "200": {
                "description": "The token.",
                "headers": NO_STORE,
                "content": json_content(ref("SharedAccessToken")),
            },
            "400": ACCOUNT_ERROR,
            **_auth_errors(),
            "503": error(
                503,
                "No valid access_token is kept and none came within 5 s (WeChat unreachable, "
                "refusing the account, or backing off); `details.field` is base_token. Retry "
                "later.",
                "TOKEN_UNAVAILABLE",
                details={"properties": {"field": {"const": "base_token"}}},
            ),
            "500": INTERNAL_ERROR,
        },
    },
    params=(ACCOUNT,),
    schemas={"SharedAccessToken": SHARED_TOKEN_SCHEMA},
)

INVALIDATE = Operation(
    {
        "tags": ["operations"],
        "operationId": "invalidateSharedAccessToken",
        "summary": "Report that WeChat rejected the shared access_token (40001)",
        "description": "Compare-and-set: the kept token is dropped only if it is still the one "
        "reported, and the next read (or the upkeep) fetches a new one once, across all "
        "instances. A report of an older token does nothing. A kept token younger than "
        f"{INVALIDATE_MIN_AGE} s is not dropped (429), so reports cannot make the service "
        "fetch in a loop. With BASE_TOKEN_SOURCE=stable WeChat answers the same token while "
        "it is valid, so a new one comes only if WeChat really revoked it.",
        "security": SECURITY,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ref("SharedAccessTokenInvalidation")}},
        },
        "responses": {
            "200": {
                "description": "What happened.",
                "headers": NO_STORE,
                "content": json_content(ref("SharedAccessTokenInvalidated")),
            },
            "400": error(
                400,
                "`account` names no account of this service, or the body is not a JSON object "
                "with an `accessToken` string of 1 to 512 characters (`details.field` "
                "accessToken; the value is never echoed).",
                "INVALID_PARAMETER",
                "MISSING_PARAMETER",
            ),
            **_auth_errors(),
            "429": {
                **error(
                    429,
                    f"The reported token is the kept one but younger than {INVALIDATE_MIN_AGE} "
                    "s; it stays. Retry-After says when a report would drop it.",
                    "TOKEN_TOO_NEW",
                    details={"properties": {"field": {"const": "accessToken"}}},
                ),
                "headers": {
                    "Retry-After": {
                        "description": "Seconds until the token may be dropped.",
                        "schema": {"type": "integer", "minimum": 1},
                        "required": True,
                    }
                },
            },
            "500": INTERNAL_ERROR,
        },
    },
    params=(ACCOUNT,),
    schemas={
        "SharedAccessTokenInvalidation": INVALIDATION_SCHEMA,
        "SharedAccessTokenInvalidated": INVALIDATED_SCHEMA,
    },
)
