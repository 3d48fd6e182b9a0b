"""/openapi.json is the contract apps are built against: a refactoring must not change it.

`golden/openapi.json` is the document as it was before the layout of issue 12 (version 0.1.0,
server http://localhost:3000 as in the test settings). The document served today must equal it,
apart from the deliberate fixes listed in FIXES and the additions listed in ADDED (new routes,
new optional members), each with its reason. Any other change fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).parent / "golden" / "openapi.json"

# (JSON pointer to a text, the words it had, the words it has now, why).
FIXES: list[tuple[str, str, str, str]] = [
    (
        "/paths/~1wechat~1message/post/responses/403/description",
        "REPLAYED_PUSH: this (timestamp, nonce) came with another body before.",
        "REPLAYED_PUSH: this (timestamp, nonce) came with another body before (a plain push: "
        "an encrypted one's msg_signature binds its body).",
        "an encrypted push's (timestamp, nonce) is no longer claimed (issue 15): its signature "
        "covers its ciphertext, and its de-duplication record answers a replay",
    ),
    (
        "/paths/~1wechat~1message/post/responses/400/description",
        "(given twice or too long)",
        "(given twice or too long, an encrypt_type other than aes)",
        "encrypt_type is declared as the enum [aes] and now held to it (400), as the document "
        "said; before, any other value was read as a plain push",
    ),
    (
        "/info/description",
        "the sandbox tag and the README",
        "the sandbox tag and docs/sandbox.md",
        "the emulator's reference moved from the README to docs/sandbox.md",
    ),
    (
        "/tags/7/description",
        'see the README\'s "The WeChat emulator" section',
        "see docs/sandbox.md in the repository",
        "the emulator's reference moved from the README to docs/sandbox.md",
    ),
    (
        "/paths/~1.well-known~1jwks.json/get/description",
        "a shared secret is never published.",
        "a shared secret is never published. Also the key that signs OpenID Connect ID tokens "
        "(OIDC_PRIVATE_KEY_FILE, or in sandbox mode one made at start), when it is not the "
        "app JWT's.",
        "the JWKS now carries the ID tokens' key too (issue 13)",
    ),
    *(
        (
            f"/paths/{path}/post/requestBody/description",
            "Parsed with defusedxml (no DTDs, no entities)",
            "Parsed with DTDs, entity declarations and external references refused (as "
            "defusedxml does)",
            "the XML is read by expat directly, with defusedxml's defences (issue 15)",
        )
        for path in ("~1wechat~1message",)
    ),
    (
        "/paths/~1wechat~1login/get/description",
        "stores a single-use state",
        "issues a single-use state",
        "a state carries its own proof now; starting a sign-in stores nothing (issue 15)",
    ),
    (
        "/paths/~1wechat~1subscribed/get/description",
        "stores the answer on the user.",
        "stores the answer on the user. The account is the token's own; with `account`, "
        "another Official Account, where the person is found by the unionid their sign-in gave "
        "(a website app's sign-in asking whether they follow the Official Account).",
        "the follow check can ask another account about the same person (issue 14)",
    ),
    (
        "/paths/~1wechat~1jwt/get/responses/400/description",
        "INVALID_STATE (malformed, unknown, expired or already used)",
        "INVALID_STATE (malformed or unknown: `details.field` `state`; already used: "
        "`state.usedAt`, expired: `state.expiresAt`, each with `fieldValue` the moment, "
        "ISO 8601 UTC)",
        "a used, an expired and an unknown state were one INVALID_STATE told apart only by "
        "the message's words; details.field now tells them apart for the callback page (and "
        "any app), which says what happened and what to do (issue 13)",
    ),
    (
        "/paths/~1wechat~1callback/get/description",
        "it explains STATE_NOT_BOUND, SNAPSHOT_USER and a damaged link.",
        "on a failure it says what happened and offers the action that helps: a denial, an "
        "expired, used or unknown link, STATE_NOT_BOUND, SNAPSHOT_USER, WeChat failing (the "
        "same request again), RATE_LIMITED (after Retry-After) and a damaged link, with the "
        "error's id as the reference. In Chinese (zh-CN) inside WeChat or when "
        "Accept-Language prefers it, else in English (Vary: Accept-Language, User-Agent).",
        "the callback page now tells every failure apart, with its action, in English and "
        "Chinese (issue 13)",
    ),
]

# (JSON pointer to a value, the value it had, the value it has now, why): changes that are not
# words of a text, such as an enum that grew.
WEBSITE_SCOPES = ["snsapi_base", "snsapi_userinfo", "snsapi_login"]
WHY_WEBSITE = "website apps (网站应用) sign in with snsapi_login (issue 14)"
SCOPE_PARAMETER_NOW = {
    "description": "An Official Account's snsapi_base (the default: silent, openid only) or "
    "snsapi_userinfo (consent page, nickname and avatar); a website app's snsapi_login (its only "
    "scope, and its default: a QR code to confirm on the phone, nickname and avatar).",
    "in": "query",
    "name": "scope",
    "required": False,
    "schema": {"enum": WEBSITE_SCOPES, "type": "string"},
}
REPLACED: list[tuple[str, Any, Any, str]] = [
    (pointer, ["snsapi_base", "snsapi_userinfo"], WEBSITE_SCOPES, WHY_WEBSITE)
    for pointer in (
        "/components/schemas/JwtClaims/properties/scope/enum",
        "/components/schemas/QrLoginStatus/oneOf/2/properties/scope/enum",
        "/components/schemas/SignedIn/properties/scope/enum",
    )
] + [
    (
        pointer,
        {
            "description": "snsapi_base: silent, openid only; snsapi_userinfo: consent page, "
            "nickname and avatar.",
            "in": "query",
            "name": "scope",
            "required": False,
            "schema": {
                "default": "snsapi_base",
                "enum": ["snsapi_base", "snsapi_userinfo"],
                "type": "string",
            },
        },
        SCOPE_PARAMETER_NOW,
        "the default scope is the account's: snsapi_base, or a website app's snsapi_login "
        "(issue 14)",
    )
    for pointer in (
        "/paths/~1wechat~1authorize/get/parameters/2",
        "/paths/~1wechat~1login/get/parameters/1",
    )
]

# (JSON pointer of something the served document has and the golden one had not, why). Each
# is taken out of the served document before the comparison, and must be there.
ADDED: list[tuple[str, str]] = [
    ("/paths/~1.well-known~1openid-configuration", "OpenID Connect discovery (issue 13)"),
    ("/paths/~1oidc~1authorize", "the OpenID Connect authorization endpoint (issue 13)"),
    ("/paths/~1oidc~1callback", "where WeChat returns an OpenID Connect sign-in (issue 13)"),
    ("/paths/~1oidc~1token", "the OpenID Connect token endpoint (issue 13)"),
    ("/paths/~1oidc~1userinfo", "the OpenID Connect userinfo endpoint, GET and POST (issue 13)"),
    (
        "/components/schemas/JwtClaims/properties/appid",
        "the app JWT names the account its openid belongs to (issue 14)",
    ),
    ("/paths/~1demo~1oidc", "sandbox mode's OpenID Connect demo page (issue 13)"),
    ("/paths/~1demo~1oidc~1backend~1start", "the demo backend client's start (issue 13)"),
    ("/paths/~1demo~1oidc~1backend", "the demo backend client's redirect_uri (issue 13)"),
    ("/tags/4", "the openid-connect tag (issue 13)"),
    (
        "/components/schemas/Error/properties/error",
        "RFC 6749's error code beside the service's name, on the OIDC endpoints (issue 13)",
    ),
    (
        "/components/schemas/Error/properties/error_description",
        "RFC 6749's error_description, the message again, on the OIDC endpoints (issue 13)",
    ),
    ("/paths/~1wechat~1access_token", "the shared access_token for other backends (issue 14)"),
    (
        "/paths/~1wechat~1access_token~1invalidate",
        "other backends report a rejected shared access_token (issue 14)",
    ),
    ("/components/schemas/SharedAccessToken", "the shared access_token's answer (issue 14)"),
    (
        "/components/schemas/SharedAccessTokenInvalidation",
        "the body reporting a rejected shared access_token (issue 14)",
    ),
    (
        "/components/schemas/SharedAccessTokenInvalidated",
        "the answer to a reported shared access_token (issue 14)",
    ),
    ("/components/securitySchemes/apiKey", "API_KEYS' X-API-Key, the other backends' (issue 14)"),
    ("/paths/~1wechat~1jssdk~1config", "wx.config signatures, JS-SDK (issue 14)"),
    ("/paths/~1demo~1jssdk", "sandbox mode's JS-SDK demo page (issue 14)"),
    ("/components/schemas/JsSdkConfig", "the answer of /wechat/jssdk/config (issue 14)"),
    (
        "/components/schemas/TokenStatus/properties/sharedToken",
        "the shared access token's hand-outs per key name (issue 14)",
    ),
    (
        "/components/schemas/TokenStatus/properties/jsapiTicket",
        "the jsapi_ticket's upkeep on the status page, optional (issue 14)",
    ),
    ("/tags/9", "the js-sdk tag (issue 14)"),
    (
        "/components/schemas/TokenStatus/properties/accounts",
        "every account's token state (issue 14)",
    ),
    ("/paths/~1wechat~1message~1{account}", "another account's server URL (issue 14)"),
    (
        "/paths/~1wechat~1subscribed/get/parameters",
        "?account= asks another Official Account, through the unionid (issue 14)",
    ),
    ("/paths/~1wechat~1subscribed/get/responses/400", "an unknown account (issue 14)"),
    ("/paths/~1wechat~1subscribed/get/responses/404", "USER_NOT_LINKED (issue 14)"),
    *(
        (f"{pointer}/parameters/{index}", "?account= names one of several accounts (issue 14)")
        for pointer, index in (
            ("/paths/~1wechat~1authorize/get", 5),
            ("/paths/~1wechat~1login/get", 2),
            ("/paths/~1wechat~1qrcode/get", 6),
            ("/paths/~1wechat~1qrcode~1login/post", 4),
            ("/paths/~1wechat~1qrcode~1login~1{scene}/get", 2),
        )
    ),
]


def without_additions(served: dict[str, Any]) -> dict[str, Any]:
    """The served document with the listed additions taken out (last first, so list
    positions stay right)."""
    for pointer, _why in reversed(ADDED):
        parent, key = _resolve(served, pointer)
        if isinstance(parent, list):
            assert int(key) < len(parent), f"nothing at {pointer}"
            del parent[int(key)]
        else:
            assert key in parent, f"nothing at {pointer}"
            del parent[key]
    return served


def _resolve(doc: Any, pointer: str) -> tuple[Any, str]:
    *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc, last


def expected_document(version: str) -> dict[str, Any]:
    doc = json.loads(GOLDEN.read_text())
    doc["info"]["version"] = version  # the version moves with each release, by design
    for pointer, before, after, _why in FIXES:
        parent, key = _resolve(doc, pointer)
        text = parent[int(key)] if isinstance(parent, list) else parent[key]
        assert before in text, f"the golden document has no {before!r} at {pointer}"
        parent[int(key) if isinstance(parent, list) else key] = text.replace(before, after)
    for pointer, old, new, _why in REPLACED:
        parent, key = _resolve(doc, pointer)
        index = int(key) if isinstance(parent, list) else key
        assert parent[index] == old, f"the golden document has not {old!r} at {pointer}"
        parent[index] = new
    return doc


def differences(before: Any, after: Any, pointer: str = "") -> list[str]:
    """The JSON pointers where two documents differ, so a failure says where."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(before.keys() | after.keys()):
            where = f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}"
            if key not in before or key not in after:
                found.append(f"{where}: {before.get(key)!r} -> {after.get(key)!r}")
            else:
                found += differences(before[key], after[key], where)
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            d
            for i, (b, a) in enumerate(zip(before, after, strict=True))
            for d in differences(b, a, f"{pointer}/{i}")
        ]
    return [] if before == after else [f"{pointer}: {before!r} -> {after!r}"]


async def test_the_served_document_is_the_golden_one_plus_the_listed_fixes(client):
    response = await client.get("/openapi.json")
    assert response.status == 200
    served = await response.json()
    expected = expected_document(served["info"]["version"])
    assert differences(expected, without_additions(served)) == []
