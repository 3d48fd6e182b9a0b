"""The QR area's piece of the OpenAPI document, and its query parameters declared once."""

from __future__ import annotations

from service.accounts import ACCOUNT as ACCOUNT
from service.openapi import (
    DATE_TIME,
    INTERNAL_ERROR,
    NO_STORE,
    NULLABLE_DATE_TIME,
    STRING,
    Operation,
    error,
    json_content,
    ref,
    upstream_errors,
)
from service.params import Choice, Schema, Text, Whole
from service.qr.codes import (
    BORDER_RANGE,
    FORMATS,
    MAX_EXPIRE,
    MAX_PERMANENT_SCENE_ID,
    MAX_SCENE_STR,
    MAX_TEMPORARY_SCENE_ID,
    MIN_EXPIRE,
    SCALE_RANGE,
    TYPES,
)
from service.qr.login import LOGIN_SCENE_PATTERN, MAX_WAIT
from service.signin.contract import (
    REDIRECT_URI,
    REDIRECT_URI_DESCRIPTION,
    SIGNED_IN_PROPERTIES,
    SIGNED_IN_REQUIRED,
)

# -- query parameters -------------------------------------------------------------------------

SCENE = Text(
    "scene",
    f"Digits are a scene_id (temporary 1..{MAX_TEMPORARY_SCENE_ID}, "
    f"permanent 1..{MAX_PERMANENT_SCENE_ID}); anything else a scene_str of "
    f"1..{MAX_SCENE_STR} characters.",
    required=True,
    min_length=1,
    max_length=MAX_SCENE_STR,
    invalid_message=f"a scene is at most {MAX_SCENE_STR} characters",
)
TYPE = Choice(
    "type", choices=TYPES, default="temporary", invalid_message="type is temporary or permanent"
)
EXPIRE_SECONDS = Whole(
    "expireSeconds",
    "Temporary codes only; default QRCODE_EXPIRE_SECONDS. Must be left out for permanent codes.",
    low=MIN_EXPIRE,
    high=MAX_EXPIRE,
)
FORMAT = Choice(
    "format", choices=FORMATS, default="png", invalid_message="format is png, svg or json"
)
SCALE = Whole("scale", "Module size in pixels.", low=SCALE_RANGE[0], high=SCALE_RANGE[1], default=8)
BORDER = Whole(
    "border", "Quiet zone in modules.", low=BORDER_RANGE[0], high=BORDER_RANGE[1], default=4
)
LOGIN_REDIRECT_URI = REDIRECT_URI.described(
    REDIRECT_URI_DESCRIPTION + " Optional here.", required=False
)
LOGIN_FORMAT = FORMAT.described("", default="json")
WAIT = Whole(
    "wait",
    "Seconds to wait for a change while pending or scanned.",
    low=0,
    high=MAX_WAIT,
    default=0,
    invalid_message=f"wait is a whole number of seconds from 0 to {MAX_WAIT}",
)

# -- answers ----------------------------------------------------------------------------------

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

LOGIN_SCENE: Schema = {"type": "string", "pattern": f"^{LOGIN_SCENE_PATTERN.pattern}$"}

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

QR_CACHE_HEADERS = {
    "Cache-Control": {
        "description": "private, max-age=<the ticket's remaining seconds> (a year if permanent)",
        "schema": {"type": "string", "pattern": "^private, max-age=[0-9]+$"},
        "required": True,
    },
    "Expires": {"schema": STRING, "required": True},
}


def qr_image_content(json_schema: Schema) -> Schema:
    return {
        "image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}},
        "image/svg+xml": {"schema": STRING},
        "application/json": {"schema": json_schema},
    }


# -- operations -------------------------------------------------------------------------------

QR_CODE = Operation(
    {
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
    },
    params=(SCENE, TYPE, EXPIRE_SECONDS, FORMAT, SCALE, BORDER, ACCOUNT),
    schemas={"QrTicket": QR_TICKET_SCHEMA},
    qrcode_budget=True,
)

START_QR_LOGIN = Operation(
    {
        "tags": ["qr"],
        "operationId": "startQrLogin",
        "summary": 'Start a desktop "scan to follow and sign in" session',
        "description": "A random scene and a temporary QR code living QR_LOGIN_TTL "
        "seconds (one qrcode/create call, out of QRCODE_DAILY_BUDGET). Poll the "
        "Location URL for the outcome. The scene is a bearer capability: whoever holds "
        "it receives the sign-in's JWT. No request body.",
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
    },
    params=(LOGIN_REDIRECT_URI, LOGIN_FORMAT, SCALE, BORDER, ACCOUNT),
    schemas={"QrLoginStarted": QR_LOGIN_STARTED_SCHEMA},
    qrcode_budget=True,
)

QR_LOGIN_STATUS = Operation(
    {
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
    },
    path_params=(
        {
            "name": "scene",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
        },
    ),
    params=(WAIT, ACCOUNT),
    schemas={"QrLoginStatus": QR_LOGIN_STATUS_SCHEMA},
)
