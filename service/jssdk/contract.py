"""The JS-SDK area's piece of the OpenAPI document, and its query parameter declared once."""

from __future__ import annotations

from service.accounts import ACCOUNT as ACCOUNT
from service.openapi import (
    INTERNAL_ERROR,
    NO_STORE,
    STRING,
    Operation,
    error,
    html,
    json_content,
    rate_limited,
    ref,
    upstream_errors,
)
from service.params import Schema, Text
from service.signin.flow import MAX_URL_LENGTH

URL = Text(
    "url",
    "The page's own URL (`location.href`), absolute http(s); its #fragment is dropped before "
    "signing, as WeChat's JS-SDK does. Its origin must be in ALLOWED_REDIRECT_ORIGINS (in "
    "sandbox mode the service's own origin is allowed too), and its domain must be one of the "
    "account's JS接口安全域名 for WeChat to accept the signature.",
    required=True,
    # Room for a fragment, which is dropped; the URL signed is held to MAX_URL_LENGTH.
    max_length=2 * MAX_URL_LENGTH,
    format="uri",
    example="https://app.example.com/share?item=7#top",
)

JSSDK_CONFIG_SCHEMA: Schema = {
    "type": "object",
    "description": "Pass these to `wx.config({debug, appId, timestamp, nonceStr, signature, "
    "jsApiList})` unchanged.",
    "required": ["appId", "timestamp", "nonceStr", "signature"],
    "additionalProperties": False,
    "properties": {
        "appId": STRING,
        "timestamp": {"type": "integer", "minimum": 0, "description": "Seconds since 1970."},
        "nonceStr": {**STRING, "description": "Random, new for every answer."},
        "signature": {
            "type": "string",
            "pattern": "^[0-9a-f]{40}$",
            "description": "SHA-1 hex of `jsapi_ticket=…&noncestr=…&timestamp=…&url=…` "
            "(the URL without its fragment), as WeChat's JS-SDK doc defines it.",
        },
    },
}

JSSDK_CONFIG = Operation(
    {
        "tags": ["js-sdk"],
        "operationId": "jssdkConfig",
        "summary": "wx.config's appId, timestamp, nonceStr and signature for a page",
        "description": "Signs the page's URL with the account's jsapi_ticket. The ticket is "
        "kept in MongoDB and renewed ahead of expiry, once per lifetime across all "
        "instances: a call never asks WeChat by itself, except the first one after no "
        "ticket is stored (which fetches it, under a lease).",
        "responses": {
            "200": {
                "description": "The values for wx.config.",
                "headers": NO_STORE,
                "content": json_content(ref("JsSdkConfig")),
            },
            "400": error(
                400,
                "`MISSING_PARAMETER`, `INVALID_PARAMETER`: url is absent, given twice, too long, "
                "not an absolute http(s) URL, or carries credentials. `ORIGIN_NOT_ALLOWED`: its "
                "origin is not in ALLOWED_REDIRECT_ORIGINS. `details.field` is `url`.",
                "MISSING_PARAMETER",
                "INVALID_PARAMETER",
                "ORIGIN_NOT_ALLOWED",
            ),
            "429": rate_limited(),
            **upstream_errors(),
            "500": INTERNAL_ERROR,
        },
    },
    params=(URL, ACCOUNT),
    schemas={"JsSdkConfig": JSSDK_CONFIG_SCHEMA},
)

JSSDK_DEMO = Operation(
    {
        "tags": ["pages"],
        "operationId": "jssdkDemo",
        "summary": "Sandbox mode: a page that runs wx.config with the emulator's JS-SDK",
        "responses": {
            "200": html("The demo page (sandbox mode)."),
            "404": error(404, "Outside sandbox mode: the demo page does not exist.", "NOT_FOUND"),
            "500": INTERNAL_ERROR,
        },
    },
)
