"""The OpenAPI document against the service itself.

- Every route the app registers is documented, and every documented operation is registered.
- Each documented operation is called with valid and invalid requests on the real emulator;
  every answer's status must be documented and its body and headers must match the documented
  schemas (jsonschema, draft 2020-12, as OpenAPI 3.1 uses). Each operation's test also reaches
  every status documented for it (500 aside), so the document claims nothing the service never
  answers.
- /docs is served with local assets only, and they load.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import tomllib
from collections.abc import Callable
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
from aiohttp import ClientResponse, web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flows import (
    ADMIN_KEY,
    APPID,
    CALLBACK,
    REDIRECT_URI,
    TOKEN,
    authorize_at_wechat,
    sign_in,
    signed,
    start_sign_in,
)
from service import keys
from service.accounts import Account
from service.app import create_app
from service.oidc_config import OidcClient
from service.openapi import build_openapi
from service.pipeline import routing
from service.pipeline.ratelimit import ROUTE_GROUPS
from service.sandbox import SANDBOX_USERS, SNAPSHOT_USER
from service.wechat.xml import build_message

FOLLOWER, VISITOR = SANDBOX_USERS[0], SANDBOX_USERS[1]
EXCLUDED_PREFIXES = ("/static", "/sandbox")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Answers no representative request can produce without breaking the service on purpose.
NOT_PROVOKED = frozenset({"500"})


# -- the document and the routes ----------------------------------------------------------------


def registered_operations(app: web.Application) -> set[tuple[str, str]]:
    operations = set()
    for route in app.router.routes():
        if route.method == "HEAD" or routing.is_unmatched(route.resource):
            continue  # the catch-all is the router's "no route", not an operation
        path = route.resource.canonical
        if path.startswith(EXCLUDED_PREFIXES):
            continue
        operations.add((route.method.lower(), path))
    return operations


def documented_operations(doc: dict) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }


def label(operation: tuple[str, str]) -> str:
    return f"{operation[0].upper()} {operation[1]}"


async def test_every_route_is_documented_and_every_documented_route_exists(client, sandbox_server):
    doc = await (await client.get("/openapi.json")).json()
    documented = documented_operations(doc)
    for app in (client.app, sandbox_server.app):  # sandbox mode registers the same routes
        routes = registered_operations(app)
        assert sorted(map(label, routes - documented)) == [], "registered but not documented"
        assert sorted(map(label, documented - routes)) == [], "documented but not registered"
    # The emulator is one tag-level note, not documented route by route.
    assert not any(path.startswith("/sandbox") for _, path in documented)
    assert "/sandbox" in {tag["name"]: tag for tag in doc["tags"]}["sandbox"]["description"]


async def test_the_document_names_the_service_its_server_and_its_security(client):
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    doc = await resp.json()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] == "wechat-oa-auth"
    # The version has one home, pyproject.toml; the document reads it from the package.
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert doc["info"]["version"] == pyproject["project"]["version"]
    assert doc["servers"] == [{"url": "http://localhost:3000", "description": "PUBLIC_URL"}]
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerJwt"] == {**schemes["bearerJwt"], "type": "http", "scheme": "bearer"}
    assert (schemes["adminKey"]["in"], schemes["adminKey"]["name"]) == ("header", "X-Admin-Key")


def error_schemas(doc: dict) -> list[dict]:
    found = []
    for item in doc["paths"].values():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            for status, response in operation["responses"].items():
                if int(status) >= 400 and "$ref" not in response:
                    found.append(response["content"]["application/json"]["schema"])
    return found


def the_document(settings) -> dict:
    """What the service built with these settings documents (building an app does no I/O)."""
    return build_openapi(settings.public_url, create_app(settings).router.routes())


def test_every_error_answer_references_the_one_error_schema(settings):
    doc = the_document(settings)
    schemas = error_schemas(doc)
    assert len(schemas) > 30
    for schema in schemas:
        assert schema["allOf"][0] == {"$ref": "#/components/schemas/Error"}
    internal = doc["components"]["responses"]["InternalError"]
    assert internal["content"]["application/json"]["schema"]["allOf"][0]["$ref"].endswith("/Error")


# -- checking answers against the document ------------------------------------------------------


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True  # formats apply to strings only; the type says whether null may stand
    if "T" not in value:
        return False
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def _uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


FORMATS = jsonschema.FormatChecker()  # uuid among others; date-time and uri checked here:
FORMATS.checks("date-time")(_date_time)
FORMATS.checks("uri")(_uri)


class Contract:
    """Checks answers against the document and remembers which statuses each operation gave."""

    def __init__(self, doc: dict) -> None:
        self.doc = doc
        self.seen: dict[tuple[str, str], set[str]] = {}

    def _resolve(self, obj: dict) -> dict:
        while "$ref" in obj:
            node: Any = self.doc
            for part in obj["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            obj = node
        return obj

    def validate(self, instance: Any, schema: dict, where: str) -> None:
        validator = jsonschema.Draft202012Validator(
            {**schema, "components": self.doc["components"]}, format_checker=FORMATS
        )
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        details = "\n".join(f"  {list(e.absolute_path)}: {e.message}" for e in errors)
        assert not errors, f"{where} does not match the documented schema:\n{details}"

    async def check(self, resp: ClientResponse, method: str, path: str) -> Any:
        """The answer's body (JSON, text or bytes), after checking it against the document."""
        operation = self.doc["paths"][path][method]
        where = f"{method.upper()} {path} -> {resp.status}"
        status = str(resp.status)
        assert status in operation["responses"], f"{where} is undocumented: {await resp.text()}"
        response = self._resolve(operation["responses"][status])
        content = response.get("content", {})
        assert resp.content_type in content, (
            f"{where}: {resp.content_type} is not among {sorted(content)}"
        )
        for name, header in response.get("headers", {}).items():
            value = resp.headers.get(name)
            if value is None:
                assert not header.get("required"), f"{where}: header {name} is missing"
                continue
            schema = header["schema"]
            self.validate(int(value) if schema.get("type") == "integer" else value, schema, name)
        schema = content[resp.content_type]["schema"]
        if resp.content_type == "application/json":
            body: Any = await resp.json()
        elif resp.content_type.startswith("text/") or resp.content_type.endswith("xml"):
            body = await resp.text()
        else:
            body = await resp.read()
            assert body, f"{where}: empty {resp.content_type} body"
        if not isinstance(body, bytes):
            self.validate(body, schema, where)
        self.seen.setdefault((method, path), set()).add(status)
        return body

    def assert_all_answers_seen(self, method: str, path: str, skip: set[str] | None = None):
        documented = set(self.doc["paths"][path][method]["responses"])
        missing = documented - NOT_PROVOKED - {"429"} - (skip or set())
        missing -= self.seen.get((method, path), set())
        assert not missing, f"{method.upper()} {path}: documented {sorted(missing)} never seen"


@pytest.fixture
async def contract(client) -> Contract:
    return Contract(await (await client.get("/openapi.json")).json())


# Which test exercises which operation; checked against the document below.
EXERCISED: dict[str, str] = {}


def exercises(*operations: str) -> Callable:
    def mark(test: Callable) -> Callable:
        for operation in operations:
            EXERCISED[operation] = test.__name__
        return test

    return mark


def test_every_documented_operation_is_exercised_below(settings):
    doc = the_document(settings)
    assert sorted(map(label, documented_operations(doc))) == sorted(EXERCISED)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- sign-in ------------------------------------------------------------------------------------

AUTHORIZE = ("get", "/wechat/authorize")
JWT = ("get", "/wechat/jwt")


@exercises("GET /wechat/authorize", "GET /wechat/authorize/retry")
async def test_authorize_answers_as_documented(client, browser, contract):
    params = {"redirectUri": REDIRECT_URI, "callback": CALLBACK}
    body = await contract.check(await client.get("/wechat/authorize", params=params), *AUTHORIZE)
    state = parse_qs(urlsplit(body["details"]["fieldValue"]).query)["state"][0]
    for bad in (
        {},
        {"redirectUri": "javascript:alert(1)", "callback": CALLBACK},
        {"redirectUri": "https://evil.example/x", "callback": CALLBACK},
        {"redirectUri": REDIRECT_URI, "callback": CALLBACK, "scope": "snsapi_login"},
        [("redirectUri", REDIRECT_URI), ("redirectUri", REDIRECT_URI), ("callback", CALLBACK)],
    ):
        resp = await client.get("/wechat/authorize", params=bad)
        assert (await contract.check(resp, *AUTHORIZE))["status"] == 400
    signed_in = await sign_in(client, browser, FOLLOWER.openid)
    resp = await client.get("/wechat/authorize", params=params, headers=bearer(signed_in["token"]))
    assert (await contract.check(resp, *AUTHORIZE))["sub"] == FOLLOWER.openid
    resp = await client.get("/wechat/authorize", params=params, headers=bearer("not.a.jwt"))
    assert (await contract.check(resp, *AUTHORIZE))["status"] == 401

    for query, status in (({"state": state}, 401), ({"state": "x" * 32}, 400), ({}, 400)):
        resp = await client.get("/wechat/authorize/retry", params=query)
        assert (await contract.check(resp, "get", "/wechat/authorize/retry"))["status"] == status
    contract.assert_all_answers_seen(*AUTHORIZE)
    contract.assert_all_answers_seen("get", "/wechat/authorize/retry")


@exercises("GET /wechat/jwt")
async def test_jwt_answers_as_documented(client, make_client, browser, emulator, contract):
    url = await start_sign_in(client, "snsapi_userinfo")
    query = await authorize_at_wechat(browser, url, FOLLOWER.openid)
    body = await contract.check(await client.get("/wechat/jwt", params=query), *JWT)
    assert body["user"]["nickname"]  # the profile came with snsapi_userinfo
    replay = await contract.check(await client.get("/wechat/jwt", params=query), *JWT)
    assert replay["name"] == "INVALID_STATE"
    assert (await contract.check(await client.get("/wechat/jwt"), *JWT))["status"] == 400

    query = await authorize_at_wechat(browser, await start_sign_in(client), VISITOR.openid)
    wrong_code = {**query, "code": "0" * 32}
    resp = await client.get("/wechat/jwt", params=wrong_code)
    assert (await contract.check(resp, *JWT))["name"] == "INVALID_CODE"
    with_verifier = {**query, "codeVerifier": "v" * 43}  # the state has no challenge
    resp = await client.get("/wechat/jwt", params=with_verifier)
    assert (await contract.check(resp, *JWT))["name"] == "INVALID_CODE_VERIFIER"

    query = await authorize_at_wechat(
        browser, await start_sign_in(client, "snsapi_userinfo"), SNAPSHOT_USER.openid
    )
    resp = await client.get("/wechat/jwt", params=query)
    assert (await contract.check(resp, *JWT))["name"] == "SNAPSHOT_USER"

    query = await authorize_at_wechat(browser, await start_sign_in(client), VISITOR.openid)
    for kind, errcode, name in (
        ("busy", None, "WECHAT_UNAVAILABLE"),
        ("errcode", 40164, "WECHAT_ERROR"),
    ):
        emulator.faults.set(kind, errcode=errcode, paths=["sns/oauth2/access_token"], count=1)
        resp = await client.get("/wechat/jwt", params=query)
        assert (await contract.check(resp, *JWT))["name"] == name  # the state is kept

    impatient = await make_client(wechat_timeout=0.2)
    query = await authorize_at_wechat(browser, await start_sign_in(impatient), VISITOR.openid)
    emulator.faults.set("slow", delay=0.5, paths=["sns/oauth2/access_token"], count=1)
    resp = await impatient.get("/wechat/jwt", params=query)
    assert (await contract.check(resp, *JWT))["name"] == "WECHAT_TIMEOUT"
    contract.assert_all_answers_seen(*JWT)


@exercises("GET /wechat/login")
async def test_login_answers_as_documented(make_client, browser, contract):
    # The emulator's authorized domain is app.example.com: the built-in callback lives there.
    client = await make_client(public_url="https://app.example.com")
    login = ("get", "/wechat/login")
    resp = await client.get(
        "/wechat/login", params={"redirectUri": REDIRECT_URI}, allow_redirects=False
    )
    assert (await contract.check(resp, *login)).startswith("Continue")
    for bad in ({}, {"redirectUri": "https://evil.example/x"}):
        resp = await client.get("/wechat/login", params=bad, allow_redirects=False)
        assert (await contract.check(resp, *login))["status"] == 400
    contract.assert_all_answers_seen(*login)

    # Finishing it: /wechat/jwt's 200 then clears the cookie.
    resp = await client.get(
        "/wechat/login", params={"redirectUri": REDIRECT_URI}, allow_redirects=False
    )
    url, secret = resp.headers["Location"], resp.cookies["__Host-wechat_oa_auth_binding"].value
    target = url.split("#")[0] + f"&sandbox_openid={FOLLOWER.openid}"
    async with browser.get(target, allow_redirects=False) as at_wechat:
        query = dict(parse_qs(urlsplit(at_wechat.headers["Location"]).query))
    params = {k: v[0] for k, v in query.items()}
    client.session.cookie_jar.clear()
    resp = await client.get("/wechat/jwt", params=params)
    assert (await contract.check(resp, *JWT))["name"] == "STATE_NOT_BOUND"
    cookie = {"Cookie": f"__Host-wechat_oa_auth_binding={secret}"}
    resp = await client.get("/wechat/jwt", params=params, headers=cookie)
    assert (await contract.check(resp, *JWT))["openid"] == FOLLOWER.openid
    assert "Max-Age=0" in resp.headers["Set-Cookie"]


@exercises("GET /.well-known/jwks.json")
async def test_jwks_answers_as_documented(client, make_client, tmp_path, contract):
    path = "/.well-known/jwks.json"
    assert await contract.check(await client.get(path), "get", path) == {"keys": []}  # HS256
    key_file = tmp_path / "es256.pem"
    key_file.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    es256 = await make_client(jwt_algorithm="ES256", jwt_private_key_file=str(key_file))
    (key,) = (await contract.check(await es256.get(path), "get", path))["keys"]
    assert (key["kty"], key["alg"]) == ("EC", "ES256")
    contract.assert_all_answers_seen("get", path)


@exercises("GET /wechat/callback")
async def test_callback_page_is_documented(client, contract):
    resp = await client.get("/wechat/callback", params={"code": "abc", "state": "def"})
    assert "<html" in await contract.check(resp, "get", "/wechat/callback")
    contract.assert_all_answers_seen("get", "/wechat/callback")


# -- messages -----------------------------------------------------------------------------------


def message(msg_type: str, created: int, **fields: Any) -> str:
    return build_message(
        {
            "ToUserName": "gh_5a4db0c0ffee",
            "FromUserName": VISITOR.openid,
            "CreateTime": created,
            "MsgType": msg_type,
            **fields,
        }
    )


VERIFY = ("get", "/wechat/message")
PUSH = ("post", "/wechat/message")
XML = {"Content-Type": "text/xml"}


# Another Official Account (issue 14), pushing to /wechat/message/second; the same server token
# as the default's, so one signed() serves both.
SECOND_APPID = "wx5ec0d0000000beef"
SECOND = Account(
    "second", "oa", SECOND_APPID, secret="second-secret-0123456789abcdef01", token=TOKEN
)
MESSAGE_PATHS = {None: "/wechat/message", "second": "/wechat/message/second"}


def message_operation(method: str, account: str | None) -> tuple[str, str]:
    return (method, "/wechat/message" if account is None else "/wechat/message/{account}")


async def unknown_account_seen(client, method, contract, **kw) -> None:
    resp = await client.request(method.upper(), "/wechat/message/nobody", **kw)
    assert (await contract.check(resp, *message_operation(method, "nobody")))["name"] == (
        "NOT_FOUND"
    )


@exercises("GET /wechat/message", "GET /wechat/message/{account}")
@pytest.mark.parametrize("account", MESSAGE_PATHS)
async def test_server_url_check_answers_as_documented(account, make_client, clock, contract):
    client = await make_client(accounts=(SECOND,))
    path, verify = MESSAGE_PATHS[account], message_operation("get", account)
    good = {**signed(clock), "echostr": "4611686018427387904"}
    resp = await client.get(path, params=good)
    assert await contract.check(resp, *verify) == "4611686018427387904"
    resp = await client.get(path, params={**good, "signature": "0" * 40})
    assert (await contract.check(resp, *verify))["name"] == "INVALID_SIGNATURE"
    resp = await client.get(path, params={"echostr": "1"})
    assert (await contract.check(resp, *verify))["name"] == "MISSING_PARAMETER"
    if account is not None:
        await unknown_account_seen(client, "get", contract, params=good)
    contract.assert_all_answers_seen(*verify)


@exercises("POST /wechat/message", "POST /wechat/message/{account}")
@pytest.mark.parametrize("account", MESSAGE_PATHS)
async def test_pushes_answer_as_documented(account, make_client, clock, contract):
    client = await make_client(accounts=(SECOND,))
    path, push_op = MESSAGE_PATHS[account], message_operation("post", account)
    created = int(clock.now())
    event = message("event", created, Event="subscribe", EventKey="")
    resp = await client.post(path, params=signed(clock), data=event, headers=XML)
    assert await contract.check(resp, *push_op) == "success"

    replying = await make_client(message_text_reply="Thanks!", accounts=(SECOND,))
    text = message("text", created, Content="hello", MsgId=1234567890123456)
    resp = await replying.post(path, params=signed(clock), data=text, headers=XML)
    assert "Thanks!" in await contract.check(resp, *push_op)  # application/xml

    for params, body, name in (
        ({**signed(clock), "signature": "0" * 40}, event, "INVALID_SIGNATURE"),
        (
            {**signed(clock), "encrypt_type": "aes", "msg_signature": "0" * 40},
            event,
            "INVALID_SIGNATURE",
        ),
        ({"nonce": "1", "signature": "2"}, event, "MISSING_PARAMETER"),
        (signed(clock), "<xml><ToUserName>", "INVALID_MESSAGE"),
        (signed(clock), '<!DOCTYPE x [<!ENTITY a "b">]><xml>&a;</xml>', "INVALID_MESSAGE"),
        (signed(clock, timestamp="1000000000"), event, "STALE_PUSH"),
    ):
        resp = await client.post(path, params=params, data=body, headers=XML)
        assert (await contract.check(resp, *push_op))["name"] == name

    used = signed(clock)
    await client.post(path, params=used, data=event, headers=XML)
    forged = message("event", created, Event="unsubscribe", EventKey="")
    resp = await client.post(path, params=used, data=forged, headers=XML)
    assert (await contract.check(resp, *push_op))["name"] == "REPLAYED_PUSH"

    # A retry while another instance still processes the first delivery (it never finishes).
    store = client.app[keys.STORE].for_account(SECOND_APPID if account else APPID)
    await store.first_delivery(f"msg:{77}", 3600)
    stuck = message("text", created, Content="hi", MsgId=77)
    resp = await client.post(path, params=signed(clock), data=stuck, headers=XML)
    assert (await contract.check(resp, *push_op))["name"] == "PUSH_IN_PROGRESS"

    small = await make_client(max_body_bytes=1024, accounts=(SECOND,))
    resp = await small.post(path, params=signed(clock), data="x" * 4096, headers=XML)
    assert (await contract.check(resp, *push_op))["name"] == "REQUEST_ENTITY_TOO_LARGE"
    if account is not None:
        await unknown_account_seen(client, "post", contract, params=signed(clock), data=event)
    contract.assert_all_answers_seen(*push_op)


# -- QR codes -----------------------------------------------------------------------------------

QR = ("get", "/wechat/qrcode")
QR_LOGIN = ("post", "/wechat/qrcode/login")
QR_STATUS = ("get", "/wechat/qrcode/login/{scene}")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@exercises("GET /wechat/qrcode")
async def test_qr_codes_answer_as_documented(client, make_client, emulator, contract):
    body = await contract.check(await client.get("/wechat/qrcode", params={"scene": "7"}), *QR)
    assert body.startswith(PNG_MAGIC)
    resp = await client.get("/wechat/qrcode", params={"scene": "door", "format": "svg"})
    assert "<svg" in await contract.check(resp, *QR)
    params = {"scene": "42", "type": "permanent", "format": "json", "scale": "2"}
    admin = {"X-Admin-Key": ADMIN_KEY}
    resp = await client.get("/wechat/qrcode", params=params, headers=admin)
    body = await contract.check(resp, *QR)
    assert (body["type"], body["scene"], body["expiresAt"]) == ("permanent", 42, None)
    resp = await client.get("/wechat/qrcode", params=params)
    assert (await contract.check(resp, *QR))["name"] == "UNAUTHORIZED"
    resp = await client.get("/wechat/qrcode", params=params, headers={"X-Admin-Key": "w" * 20})
    assert (await contract.check(resp, *QR))["name"] == "FORBIDDEN"
    frugal = await make_client(qrcode_daily_budget=1)
    assert await contract.check(await frugal.get("/wechat/qrcode", params={"scene": "a"}), *QR)
    resp = await frugal.get("/wechat/qrcode", params={"scene": "b"})
    assert (await contract.check(resp, *QR))["name"] == "QRCODE_BUDGET_EXHAUSTED"
    resp = await frugal.post("/wechat/qrcode/login")
    assert (await contract.check(resp, *QR_LOGIN))["name"] == "QRCODE_BUDGET_EXHAUSTED"
    for params in ({}, {"scene": "1", "format": "gif"}, {"scene": "1", "expireSeconds": "5"}):
        resp = await client.get("/wechat/qrcode", params=params)
        assert (await contract.check(resp, *QR))["status"] == 400

    emulator.faults.set("errcode", errcode=45009, paths=["cgi-bin/qrcode/create"], count=1)
    resp = await client.get("/wechat/qrcode", params={"scene": "quota"})
    assert (await contract.check(resp, *QR))["name"] == "WECHAT_ERROR"
    impatient = await make_client(wechat_timeout=0.2)
    emulator.faults.set("slow", delay=0.5, paths=["cgi-bin/qrcode/create"], count=1)
    resp = await impatient.get("/wechat/qrcode", params={"scene": "late"})
    assert (await contract.check(resp, *QR))["name"] == "WECHAT_TIMEOUT"
    contract.assert_all_answers_seen(*QR)


@exercises("POST /wechat/qrcode/login", "GET /wechat/qrcode/login/{scene}")
async def test_qr_sign_in_answers_as_documented(
    wired_service, make_client, emulator, clock, contract
):
    client, handset = await wired_service()
    session = await contract.check(await client.post("/wechat/qrcode/login"), *QR_LOGIN)
    scene = session["scene"]
    status_path = f"/wechat/qrcode/login/{scene}"
    resp = await client.post("/wechat/qrcode/login", params={"format": "png"})
    assert (await contract.check(resp, *QR_LOGIN)).startswith(PNG_MAGIC)
    for params in ({"format": "gif"}, {"redirectUri": "https://evil.example/"}):
        resp = await client.post("/wechat/qrcode/login", params=params)
        assert (await contract.check(resp, *QR_LOGIN))["status"] == 400
    emulator.faults.set("busy", paths=["cgi-bin/qrcode/create"], count=3)  # outlasts the retries
    resp = await client.post("/wechat/qrcode/login")
    assert (await contract.check(resp, *QR_LOGIN))["name"] == "WECHAT_UNAVAILABLE"
    impatient = await make_client(wechat_timeout=0.2)
    emulator.faults.set("slow", delay=0.5, paths=["cgi-bin/qrcode/create"], count=1)
    resp = await impatient.post("/wechat/qrcode/login")
    assert (await contract.check(resp, *QR_LOGIN))["name"] == "WECHAT_TIMEOUT"

    assert (await contract.check(await client.get(status_path), *QR_STATUS))["status"] == "pending"
    resp = await client.get(status_path, params={"wait": "31"})
    assert (await contract.check(resp, *QR_STATUS))["name"] == "INVALID_PARAMETER"
    resp = await client.get("/wechat/qrcode/login/login_unknown")
    assert (await contract.check(resp, *QR_STATUS))["name"] == "QR_LOGIN_NOT_FOUND"

    # The follower lookup after the scan is slowed, so the session is seen scanned first.
    emulator.faults.set("slow", delay=0.5, paths=["cgi-bin/user/info"], count=1)
    scan = {"openid": VISITOR.openid, "ticket": session["ticket"]}
    assert (await handset.post("/_sandbox/api/scan", json=scan)).status == 200
    assert (await contract.check(await client.get(status_path), *QR_STATUS))["status"] == "scanned"
    await client.app[keys.BACKGROUND].drain(5)
    body = await contract.check(await client.get(status_path), *QR_STATUS)
    assert (body["status"], body["openid"]) == ("confirmed", VISITOR.openid)
    resp = await client.get(status_path)  # handed out once
    assert (await contract.check(resp, *QR_STATUS))["name"] == "QR_LOGIN_NOT_FOUND"

    # WeChat failing the follow check leaves the session scanned, saying why.
    failed = await contract.check(await client.post("/wechat/qrcode/login"), *QR_LOGIN)
    emulator.faults.set("http_error", paths=["cgi-bin/user/info"], status=503, count=1)
    scan = {"openid": FOLLOWER.openid, "ticket": failed["ticket"]}
    assert (await handset.post("/_sandbox/api/scan", json=scan)).status == 200
    await client.app[keys.BACKGROUND].drain(5)
    resp = await client.get(f"/wechat/qrcode/login/{failed['scene']}")
    assert (await contract.check(resp, *QR_STATUS))["problem"]["code"] == "FOLLOW_CHECK_FAILED"

    later = await contract.check(await client.post("/wechat/qrcode/login"), *QR_LOGIN)
    clock.advance(client.app[keys.SETTINGS].qr_login_ttl + 1)
    resp = await client.get(f"/wechat/qrcode/login/{later['scene']}")
    assert (await contract.check(resp, *QR_STATUS))["status"] == "expired"
    contract.assert_all_answers_seen(*QR_LOGIN)
    contract.assert_all_answers_seen(*QR_STATUS)


# -- follow check, operators, health -------------------------------------------------------------

SUBSCRIBED = ("get", "/wechat/subscribed")
STATUS = ("get", "/wechat/tokens/status")


@exercises("GET /wechat/subscribed")
async def test_follow_check_answers_as_documented(client, make_client, browser, emulator, contract):
    token = (await sign_in(client, browser, FOLLOWER.openid))["token"]
    resp = await client.get("/wechat/subscribed", headers=bearer(token))
    assert (await contract.check(resp, *SUBSCRIBED))["subscribed"] is True
    for headers in ({}, bearer("not.a.jwt"), {"Authorization": "Basic dXNlcjpwYXNz"}):
        resp = await client.get("/wechat/subscribed", headers=headers)
        assert (await contract.check(resp, *SUBSCRIBED))["status"] == 401
    resp = await client.get(
        "/wechat/subscribed", params={"account": "nobody"}, headers=bearer(token)
    )
    assert (await contract.check(resp, *SUBSCRIBED))["name"] == "INVALID_PARAMETER"
    # Another account that knows nobody by this token's unionid (snsapi_base gave none).
    two = await make_client(accounts=(SECOND,))
    token = (await sign_in(two, browser, FOLLOWER.openid))["token"]
    resp = await two.get("/wechat/subscribed", params={"account": "second"}, headers=bearer(token))
    assert (await contract.check(resp, *SUBSCRIBED))["name"] == "USER_NOT_LINKED"
    emulator.faults.set("http_error", paths=["cgi-bin/user/info"], status=503, count=1)
    resp = await client.get("/wechat/subscribed", headers=bearer(token))
    assert (await contract.check(resp, *SUBSCRIBED))["name"] == "WECHAT_UNAVAILABLE"
    impatient = await make_client(wechat_timeout=0.2)
    emulator.faults.set("slow", delay=0.5, paths=["cgi-bin/user/info"], count=1)
    resp = await impatient.get("/wechat/subscribed", headers=bearer(token))
    assert (await contract.check(resp, *SUBSCRIBED))["name"] == "WECHAT_TIMEOUT"
    contract.assert_all_answers_seen(*SUBSCRIBED)


@exercises("GET /wechat/tokens/status")
async def test_token_status_answers_as_documented(client, make_client, emulator, contract):
    emulator.faults.set("errcode", errcode=45009, paths=["cgi-bin/stable_token"], count=1)
    assert (await client.get("/readyz")).status == 503  # leaves an error and a back-off to show
    resp = await client.get("/wechat/tokens/status", headers={"X-Admin-Key": ADMIN_KEY})
    body = await contract.check(resp, *STATUS)
    assert body["baseToken"]["lastError"]["errcode"] == 45009
    assert body["qrcodeBudget"]["used"] == 0
    resp = await client.get("/wechat/tokens/status")
    assert (await contract.check(resp, *STATUS))["name"] == "UNAUTHORIZED"
    resp = await client.get("/wechat/tokens/status", headers={"X-Admin-Key": "wrong" * 4})
    assert (await contract.check(resp, *STATUS))["name"] == "FORBIDDEN"
    disabled = await make_client(admin_key="")
    resp = await disabled.get("/wechat/tokens/status", headers={"X-Admin-Key": ADMIN_KEY})
    assert (await contract.check(resp, *STATUS))["name"] == "FORBIDDEN"
    contract.assert_all_answers_seen(*STATUS)


SHARED_TOKEN = ("get", "/wechat/access_token")
SHARED_TOKEN_INVALIDATE = ("post", "/wechat/access_token/invalidate")


@exercises("GET /wechat/access_token", "POST /wechat/access_token/invalidate")
async def test_the_shared_access_token_answers_as_documented(
    make_client, emulator, clock, contract
):
    key = "backend-key-0123456789"
    client = await make_client(api_keys=(f"backend:{key}",), base_token_source="token")
    given = {"X-API-Key": key}
    emulator.faults.set("errcode", errcode=45009, paths=["cgi-bin/token"], count=1)
    resp = await client.get("/wechat/access_token", headers=given)
    assert (await contract.check(resp, *SHARED_TOKEN))["name"] == "TOKEN_UNAVAILABLE"
    clock.advance(900)  # past the back-off
    resp = await client.get("/wechat/access_token", headers=given, params={"account": "default"})
    token = (await contract.check(resp, *SHARED_TOKEN))["accessToken"]
    post = "/wechat/access_token/invalidate"
    resp = await client.post(post, headers=given, json={"accessToken": token})
    assert (await contract.check(resp, *SHARED_TOKEN_INVALIDATE))["name"] == "TOKEN_TOO_NEW"
    clock.advance(60)
    for result in ("invalidated", "alreadyReplaced"):
        resp = await client.post(post, headers=given, json={"accessToken": token})
        assert (await contract.check(resp, *SHARED_TOKEN_INVALIDATE))["result"] == result
    resp = await client.post(post, headers=given, json={})
    assert (await contract.check(resp, *SHARED_TOKEN_INVALIDATE))["status"] == 400
    disabled = await make_client()
    for method, path in (SHARED_TOKEN, SHARED_TOKEN_INVALIDATE):
        for headers, status in (({}, 401), ({"X-API-Key": "wrong" * 4}, 403)):
            resp = await client.request(method, path, headers=headers, json={})
            assert (await contract.check(resp, method, path))["status"] == status
        resp = await disabled.request(method, path, headers=given, json={})
        assert (await contract.check(resp, method, path))["status"] == 403
        resp = await client.request(method, path, headers=given, params={"account": "x"}, json={})
        assert (await contract.check(resp, method, path))["details"]["field"] == "account"
        contract.assert_all_answers_seen(method, path)


@exercises("GET /healthz", "GET /readyz", "GET /metrics")
async def test_health_readiness_and_metrics_answer_as_documented(client, make_client, contract):
    assert (await contract.check(await client.get("/healthz"), "get", "/healthz")) == {
        "status": "ok"
    }
    assert (await contract.check(await client.get("/readyz"), "get", "/readyz"))["status"] == (
        "ready"
    )
    # WeChat refuses an unknown appid (40013): no base token, not ready.
    stranger = await make_client(wechat_appid="wx0000000000000000")
    body = await contract.check(await stranger.get("/readyz"), "get", "/readyz")
    assert (body["name"], body["details"]["field"]) == ("NOT_READY", "base_token")
    text = await contract.check(await client.get("/metrics"), "get", "/metrics")
    assert "http_requests_total" in text
    for path in ("/healthz", "/readyz", "/metrics"):
        contract.assert_all_answers_seen("get", path)


# -- pages and docs -----------------------------------------------------------------------------


@exercises("GET /", "GET /demo/qr-login", "GET /demo/landing")
async def test_index_and_demo_pages_answer_as_documented(
    client, browser, sandbox_service, contract
):
    body = await contract.check(await client.get("/"), "get", "/")
    assert body["service"] == "wechat-oa-auth"
    for path in ("/demo/qr-login", "/demo/landing"):
        assert (await contract.check(await client.get(path), "get", path))["status"] == 404
    for path in ("/", "/demo/qr-login", "/demo/landing"):  # sandbox mode: pages
        async with browser.get(sandbox_service + path) as resp:
            assert "<html" in await contract.check(resp, "get", path)
        contract.assert_all_answers_seen("get", path)


@exercises("GET /demo/oidc", "GET /demo/oidc/backend/start", "GET /demo/oidc/backend")
async def test_the_openid_connect_demo_answers_as_documented(
    client, browser, sandbox_service, contract
):
    paths = ("/demo/oidc", "/demo/oidc/backend/start", "/demo/oidc/backend")
    for path in paths:  # outside sandbox mode: nothing
        assert (await contract.check(await client.get(path), "get", path))["status"] == 404
    async with browser.get(sandbox_service + "/demo/oidc") as resp:
        assert "<html" in await contract.check(resp, "get", "/demo/oidc")
    async with browser.get(
        sandbox_service + "/demo/oidc/backend/start", allow_redirects=False
    ) as resp:
        await contract.check(resp, "get", "/demo/oidc/backend/start")
        assert "/oidc/authorize?" in resp.headers["Location"]
    async with browser.get(sandbox_service + "/demo/oidc/backend?code=x&state=y") as resp:
        assert 'id="oidc-failure"' in await contract.check(resp, "get", "/demo/oidc/backend")
    for path in paths[1:]:  # a parameter given twice
        async with browser.get(sandbox_service + path + "?scope=a&scope=b&code=a&code=b") as resp:
            assert (await contract.check(resp, "get", path))["name"] == "INVALID_PARAMETER"
    for path in paths:
        contract.assert_all_answers_seen("get", path)


class Assets(HTMLParser):
    """The page's script and stylesheet URLs, and any inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_script = False
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self._in_script = True
            if attributes.get("src"):
                self.urls.append(attributes["src"] or "")
            else:
                self.inline_script = True
        elif tag == "link" and attributes.get("rel") == "stylesheet":
            self.urls.append(attributes.get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_script = True


@exercises("GET /openapi.json", "GET /docs")
async def test_docs_page_loads_only_local_assets(client, contract):
    doc = await contract.check(await client.get("/openapi.json"), "get", "/openapi.json")
    assert doc == contract.doc
    resp = await client.get("/docs")
    page = await contract.check(resp, "get", "/docs")
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assets = Assets()
    assets.feed(page)
    assert not assets.inline_script
    assert 'data-spec-url="/openapi.json"' in page
    scripts = [url for url in assets.urls if url.endswith(".js")]
    styles = [url for url in assets.urls if url.endswith(".css")]
    assert scripts == ["/static/docs/swagger-ui-bundle.js", "/static/docs/docs.js"]
    assert styles == ["/static/docs/swagger-ui.css"]
    for url in assets.urls:
        assert re.fullmatch(r"/static/[\w./-]+", url) and ".." not in url, url  # no host, no CDN
        asset = await client.get(url)
        assert asset.status == 200, url
        assert asset.content_type in ("text/css", "application/javascript", "text/javascript")
        assert len(await asset.read()) > 100, url
    licence = await client.get("/static/docs/LICENSE")
    assert licence.status == 200
    assert "Apache License" in await licence.text()
    for path in ("/openapi.json", "/docs"):
        contract.assert_all_answers_seen("get", path)


# -- OpenID Connect -----------------------------------------------------------------------------

OIDC_ISSUER = "http://app.example.com"  # the emulator authorizes app.example.com
OIDC_REDIRECT = "https://spa.example.com/cb"


@exercises(
    "GET /.well-known/openid-configuration",
    "GET /oidc/authorize",
    "GET /oidc/callback",
    "POST /oidc/token",
    "GET /oidc/userinfo",
    "POST /oidc/userinfo",
)
async def test_the_openid_connect_endpoints_answer_as_documented(
    make_client, browser, contract, tmp_path
):
    key = tmp_path / "oidc.pem"
    key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    provider = await make_client(
        public_url=OIDC_ISSUER,
        oidc_clients=(OidcClient("spa", (OIDC_REDIRECT,), public=True),),
        oidc_private_key_file=str(key),
    )
    await contract.check(
        await provider.get("/.well-known/openid-configuration"),
        "get",
        "/.well-known/openid-configuration",
    )
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    params = {
        "response_type": "code",
        "client_id": "spa",
        "redirect_uri": OIDC_REDIRECT,
        "scope": "openid profile",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    authorize = ("get", "/oidc/authorize")
    refused = await provider.get("/oidc/authorize", params={**params, "client_id": "nobody"})
    await contract.check(refused, *authorize)
    as_page = await provider.get(
        "/oidc/authorize", params={**params, "client_id": "x"}, headers={"Accept": "text/html"}
    )
    await contract.check(as_page, *authorize)
    resp = await provider.get("/oidc/authorize", params=params, allow_redirects=False)
    await contract.check(resp, *authorize)
    at_callback = await authorize_at_wechat(
        browser, resp.headers["Location"], FOLLOWER.openid, callback=f"{OIDC_ISSUER}/oidc/callback"
    )
    callback = ("get", "/oidc/callback")
    back = await provider.get("/oidc/callback", params=at_callback, allow_redirects=False)
    await contract.check(back, *callback)
    await contract.check(
        await provider.get("/oidc/callback", params=at_callback, allow_redirects=False), *callback
    )
    code = parse_qs(urlsplit(back.headers["Location"]).query)["code"][0]

    token = ("post", "/oidc/token")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": OIDC_REDIRECT,
        "client_id": "spa",
        "code_verifier": verifier,
    }
    unknown_client = await provider.post("/oidc/token", data={**form, "client_id": "nobody"})
    await contract.check(unknown_client, *token)
    wrong_grant = await provider.post("/oidc/token", data={**form, "grant_type": "password"})
    await contract.check(wrong_grant, *token)
    tokens = await contract.check(await provider.post("/oidc/token", data=form), *token)

    for method in ("get", "post"):
        userinfo = (method, "/oidc/userinfo")
        ok = await provider.request(
            method.upper(), "/oidc/userinfo", headers=bearer(tokens["access_token"])
        )
        await contract.check(ok, *userinfo)
        await contract.check(
            await provider.request(method.upper(), "/oidc/userinfo", headers=bearer("nope")),
            *userinfo,
        )
        contract.assert_all_answers_seen(*userinfo)
    for operation in (authorize, callback, token, ("get", "/.well-known/openid-configuration")):
        contract.assert_all_answers_seen(*operation)


# -- JS-SDK -------------------------------------------------------------------------------------

JSSDK_CONFIG = ("get", "/wechat/jssdk/config")


@exercises("GET /wechat/jssdk/config", "GET /demo/jssdk")
async def test_jssdk_config_answers_as_documented(
    client, make_client, emulator, browser, sandbox_service, contract
):
    page = "https://app.example.com/share?item=7#top"
    # No ticket stored yet: the first call fetches one, and WeChat's failures show.
    impatient = await make_client(wechat_timeout=0.2)
    emulator.faults.set("slow", delay=0.5, paths=["cgi-bin/ticket/getticket"], count=1)
    resp = await impatient.get("/wechat/jssdk/config", params={"url": page})
    assert (await contract.check(resp, *JSSDK_CONFIG))["name"] == "WECHAT_TIMEOUT"
    emulator.faults.set("http_error", paths=["cgi-bin/ticket/getticket"], status=503, count=1)
    resp = await client.get("/wechat/jssdk/config", params={"url": page})
    assert (await contract.check(resp, *JSSDK_CONFIG))["name"] == "WECHAT_UNAVAILABLE"
    resp = await client.get("/wechat/jssdk/config", params={"url": page})
    assert (await contract.check(resp, *JSSDK_CONFIG))["appId"] == emulator.config.appid
    for params, name in (
        ({}, "MISSING_PARAMETER"),
        ({"url": "/relative"}, "INVALID_PARAMETER"),
        ({"url": "https://evil.example.net/"}, "ORIGIN_NOT_ALLOWED"),
    ):
        resp = await client.get("/wechat/jssdk/config", params=params)
        assert (await contract.check(resp, *JSSDK_CONFIG))["name"] == name
    contract.assert_all_answers_seen(*JSSDK_CONFIG)
    assert (await contract.check(await client.get("/demo/jssdk"), "get", "/demo/jssdk"))[
        "status"
    ] == 404
    async with browser.get(sandbox_service + "/demo/jssdk") as resp:
        assert "<html" in await contract.check(resp, "get", "/demo/jssdk")
    contract.assert_all_answers_seen("get", "/demo/jssdk")


# -- rate limits --------------------------------------------------------------------------------


async def test_rate_limited_routes_answer_429_as_documented(make_client, contract):
    limited = await make_client(
        rate_limit_authorize=1, rate_limit_jwt=1, rate_limit_qrcode=1, rate_limit_burst=1
    )
    documented_429 = {
        path
        for path, item in contract.doc["paths"].items()
        for method, operation in item.items()
        if method in METHODS and "429" in operation["responses"]
    }
    # Besides the per-client limits, a per-token one: TOKEN_TOO_NEW (its own test above).
    assert documented_429 == set(ROUTE_GROUPS) | {"/wechat/access_token/invalidate"}
    for path in sorted(ROUTE_GROUPS):
        (method,) = (m for m in contract.doc["paths"][path] if m in METHODS)
        url = path.replace("{scene}", "login_unknown")
        for _ in range(2):  # the first may pass; the bucket of one is then empty
            resp = await limited.request(method.upper(), url)
            body = await contract.check(resp, method, path)
        assert body["name"] == "RATE_LIMITED", path
        assert int(resp.headers["Retry-After"]) >= 1
