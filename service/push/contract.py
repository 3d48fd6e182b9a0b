"""The push area's piece of the OpenAPI document, and its query parameters declared once."""

from __future__ import annotations

import copy
import dataclasses

from service.openapi import INTERNAL_ERROR, STRING, Operation, error, ref
from service.params import Choice, Schema, Text

# -- query parameters -------------------------------------------------------------------------

SIGNATURE = Text(
    "signature", "SHA-1 of the sorted WECHAT_TOKEN, timestamp and nonce.", required=True
)
TIMESTAMP = Text("timestamp", required=True)
NONCE = Text("nonce", required=True)
ECHOSTR = Text("echostr", "Echoed back when the signature matches.", required=True)
OPENID = Text("openid", "The sender's openid.")
ENCRYPT_TYPE = Choice(
    "encrypt_type", "`aes` for an encrypted push (compatible and safe modes).", choices=("aes",)
)
MSG_SIGNATURE = Text("msg_signature", "Required with encrypt_type=aes (403 without).")

# -- answers ----------------------------------------------------------------------------------

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


# -- operations -------------------------------------------------------------------------------

VERIFY_SERVER_URL = Operation(
    {
        "tags": ["messages"],
        "operationId": "verifyServerUrl",
        "summary": "WeChat's server-URL check (服务器配置)",
        "description": "The timestamp must lie within PUSH_MAX_AGE of the server's "
        "clock, and its (timestamp, nonce) is claimed like a push's: a second check "
        "with the same pair and echostr is answered again, anything else with that "
        "pair (another echostr, a push) is a replay.",
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
    params=(SIGNATURE, TIMESTAMP, NONCE, ECHOSTR),
)

RECEIVE_PUSH = Operation(
    {
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
        "requestBody": {
            "required": True,
            "description": "Parsed with DTDs, entity declarations and external references "
            "refused (as defusedxml does); at most MAX_BODY_BYTES.",
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
                "(given twice or too long, an encrypt_type other than aes), INVALID_MESSAGE "
                "(malformed XML, no Encrypt element, no sender or time, a CreateTime that is "
                "not whole seconds; an encrypted push that cannot be read gets one answer "
                "whatever is wrong with it: field Encrypt, the same message).",
                "MISSING_PARAMETER",
                "INVALID_PARAMETER",
                "INVALID_MESSAGE",
            ),
            "403": error(
                403,
                "INVALID_SIGNATURE: wrong or missing signature or msg_signature; an "
                "encrypted push in plain mode, or a plain one in safe or compatible "
                "mode. STALE_PUSH: timestamp more than PUSH_MAX_AGE from now. "
                "REPLAYED_PUSH: this (timestamp, nonce) came with another body before "
                "(a plain push: an encrypted one's msg_signature binds its body).",
                "INVALID_SIGNATURE",
                "STALE_PUSH",
                "REPLAYED_PUSH",
            ),
            "413": error(413, "The body is over MAX_BODY_BYTES.", "REQUEST_ENTITY_TOO_LARGE"),
            "500": INTERNAL_ERROR,
            "503": error(
                503,
                "A retry of a push whose first delivery is still being processed (here "
                "or on another instance) after a 3 s wait: WeChat delivers it again.",
                "PUSH_IN_PROGRESS",
            ),
        },
    },
    params=(SIGNATURE, TIMESTAMP, NONCE, OPENID, ENCRYPT_TYPE, MSG_SIGNATURE),
    schemas={"WeChatPush": PUSH_SCHEMA},
)


# /wechat/message/{account}: another account's server URL, the same contract.
ACCOUNT_PATH: Schema = {
    "name": "account",
    "in": "path",
    "required": True,
    "description": "The account's name in the service's configuration (or its appid): an "
    "Official Account's server URL (服务器配置) is /wechat/message/<name>; /wechat/message is "
    "the default account's.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
}
UNKNOWN_ACCOUNT = error(404, "The path names no Official Account of this service.", "NOT_FOUND")


def _of_account(operation: Operation, operation_id: str) -> Operation:
    spec = copy.deepcopy(operation.spec)
    spec["operationId"] = operation_id
    spec["summary"] = spec["summary"] + ", for another account"
    spec["responses"]["404"] = UNKNOWN_ACCOUNT
    return dataclasses.replace(operation, spec=spec, path_params=(ACCOUNT_PATH,))


VERIFY_ACCOUNT_SERVER_URL = _of_account(VERIFY_SERVER_URL, "verifyAccountServerUrl")
RECEIVE_ACCOUNT_PUSH = _of_account(RECEIVE_PUSH, "receiveAccountPush")
