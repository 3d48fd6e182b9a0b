"""The operators' area's piece of the OpenAPI document."""

from __future__ import annotations

from service.openapi import (
    DATE_TIME,
    INTERNAL_ERROR,
    NO_STORE,
    NULLABLE_DATE_TIME,
    NULLABLE_STRING,
    STRING,
    Operation,
    error,
    html,
    json_content,
    ref,
)
from service.params import Schema

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

# The JS-SDK's jsapi_ticket is kept as the base token is (tokens/jsapi.py): the same record.
TOKEN_STATUS_SCHEMA["properties"]["jsapiTicket"] = {
    **TOKEN_STATUS_SCHEMA["properties"]["baseToken"],
    "description": "The JS-SDK's jsapi_ticket, kept as the base token is; `source` is "
    "getticket, `appid` the account's. Fetched first when a page asks for a wx.config.",
}
# The shared access token's hand-outs (shared_token/): per API key name, on this instance.
TOKEN_STATUS_SCHEMA["properties"]["sharedToken"] = {
    "type": "object",
    "description": "GET /wechat/access_token answers this instance gave since it started, by "
    "API key name (never the key).",
    "additionalProperties": {"type": "integer", "minimum": 0},
}

# Every account's (service/accounts.py): the fields above, an Official Account's all of them.
_PER_ACCOUNT = TOKEN_STATUS_SCHEMA["properties"]
TOKEN_STATUS_SCHEMA["properties"]["accounts"] = {
    "type": "object",
    "description": "Every account by name, the default first; the fields at the top are the "
    "first Official Account's, as before there were several.",
    "additionalProperties": {
        "type": "object",
        "required": ["kind", "appid", "webTokens"],
        "additionalProperties": False,
        "properties": {
            "kind": {"type": "string", "enum": ["oa", "website"]},
            "appid": STRING,
            **{
                name: _PER_ACCOUNT[name]
                for name in ("webTokens", "baseToken", "jsapiTicket", "qrcodeBudget", "sharedToken")
            },
        },
    },
}

TOKENS_STATUS = Operation(
    {
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
    },
    schemas={"TokenStatus": TOKEN_STATUS_SCHEMA},
)

HEALTHZ = Operation(
    {
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
    },
)

READYZ = Operation(
    {
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
    },
)

METRICS = Operation(
    {
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
    },
)

OPENAPI = Operation(
    {
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
    },
)

DOCS = Operation(
    {
        "tags": ["docs"],
        "operationId": "docs",
        "summary": "This document, readable (Swagger UI, served locally)",
        "responses": {"200": html("The page."), "500": INTERNAL_ERROR},
    },
)
