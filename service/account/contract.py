"""The account area's piece of the OpenAPI document."""

from __future__ import annotations

from service.accounts import ACCOUNT as ACCOUNT
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
        "access_token and stores the answer on the user. The account is the token's own; with "
        "`account`, another Official Account, where the person is found by the unionid their "
        "sign-in gave (a website app's sign-in asking whether they follow the Official "
        "Account).",
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
            "400": error(
                400,
                "`account` names no Official Account of this service (or is malformed).",
                "INVALID_PARAMETER",
            ),
            "404": error(
                404,
                "USER_NOT_LINKED: `account` has no record of the person with the token's "
                "unionid (they never signed in through it nor were asked about there), or the "
                "token has no unionid. `details.field` is unionid.",
                "USER_NOT_LINKED",
            ),
            **upstream_errors(),
            "500": INTERNAL_ERROR,
        },
    },
    params=(ACCOUNT,),
    schemas={"Subscription": SUBSCRIPTION_SCHEMA},
)
