"""The account area's piece of the OpenAPI document."""

from __future__ import annotations

from service.openapi import (
    INTERNAL_ERROR,
    NO_STORE,
    NULLABLE_DATE_TIME,
    STRING,
    WWW_AUTHENTICATE,
    Operation,
    error,
    json_content,
    ref,
    upstream_errors,
)
from service.params import Schema

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

SUBSCRIBED = Operation(
    {
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
    },
    schemas={"Subscription": SUBSCRIPTION_SCHEMA},
)
