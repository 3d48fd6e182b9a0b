"""CORS: the listed endpoints answer pages of ALLOWED_REDIRECT_ORIGINS (docs/api.md, "CORS").

Requests carry Origin as a browser's fetch does; the browser's own checks are what these
headers feed: an answer is readable only with Access-Control-Allow-Origin naming the page's
origin, and only the exposed headers are visible to its script.
"""

from __future__ import annotations

import logging

import pytest

from flows import ADMIN_KEY, APP_ORIGIN, CALLBACK, REDIRECT_URI, assert_error_shape
from service.pipeline.cors import CORS_ROUTES

AUTHORIZE = {"redirectUri": REDIRECT_URI, "callback": CALLBACK}
OTHER_ORIGIN = "https://evil.example.net"


def cors_headers(resp) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.lower().startswith("access-control-")}


def exposed(resp) -> set[str]:
    return {h.strip().lower() for h in resp.headers["Access-Control-Expose-Headers"].split(",")}


def preflight_headers(origin: str, method: str = "GET") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization",
    }


async def test_the_401_of_authorize_is_readable_by_an_allowed_origin(client):
    resp = await client.get("/wechat/authorize", params=AUTHORIZE, headers={"Origin": APP_ORIGIN})
    assert resp.status == 401
    assert resp.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    # The page reads the URL to send the user to from the body, and may read these headers.
    assert {"www-authenticate", "x-request-id", "retry-after", "location", "x-qr-scene"} <= (
        exposed(resp)
    )
    assert "Access-Control-Allow-Credentials" not in resp.headers
    assert resp.headers["Vary"] == "Origin"
    body = await resp.json()
    assert body["details"]["fieldValue"].startswith("http")


async def test_another_origin_gets_no_cors_headers_at_all(client):
    resp = await client.get("/wechat/authorize", params=AUTHORIZE, headers={"Origin": OTHER_ORIGIN})
    assert resp.status == 401
    assert cors_headers(resp) == {}
    assert resp.headers["Vary"] == "Origin"  # a cache must not hand this answer to APP_ORIGIN
    without = await client.get("/wechat/authorize", params=AUTHORIZE)
    assert cors_headers(without) == {}


async def test_routes_not_listed_answer_no_cors_even_to_an_allowed_origin(client):
    for path in ("/healthz", "/wechat/login?redirectUri=" + REDIRECT_URI, "/openapi.json"):
        resp = await client.get(path, headers={"Origin": APP_ORIGIN}, allow_redirects=False)
        assert resp.status in (200, 302), path
        assert cors_headers(resp) == {}, path
        assert "Origin" not in resp.headers.get("Vary", ""), path


async def test_a_preflight_from_an_allowed_origin_is_204_with_the_cors_headers(client):
    resp = await client.options("/wechat/authorize", headers=preflight_headers(APP_ORIGIN))
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert resp.headers["Access-Control-Allow-Methods"] == "GET"
    allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"authorization", "content-type", "x-request-id"}
    assert int(resp.headers["Access-Control-Max-Age"]) > 0
    assert resp.headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Credentials" not in resp.headers
    assert "*" not in resp.headers.values()
    assert resp.headers["X-Request-ID"]  # the middleware's other headers too


async def test_preflights_name_each_routes_methods_and_reach_dynamic_routes(client):
    start = await client.options(
        "/wechat/qrcode/login", headers=preflight_headers(APP_ORIGIN, "POST")
    )
    assert (start.status, start.headers["Access-Control-Allow-Methods"]) == (204, "POST")
    poll = await client.options("/wechat/qrcode/login/abc", headers=preflight_headers(APP_ORIGIN))
    assert (poll.status, poll.headers["Access-Control-Allow-Methods"]) == (204, "GET")


async def test_every_listed_route_the_app_serves_answers_preflights(client):
    """The list names routes by pattern, the OpenID Connect endpoints a browser app's library
    calls among them (discovery, JWKS, token, userinfo)."""
    served = {
        resource.canonical: resource
        for resource in client.app.router.resources()
        if resource.canonical in CORS_ROUTES
    }
    assert {"/wechat/authorize", "/wechat/jwt", "/wechat/subscribed"} <= served.keys()
    assert {
        "/oidc/token",
        "/oidc/userinfo",
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
    } <= served.keys()
    for pattern in served:
        path = pattern.replace("{scene}", "abc")
        resp = await client.options(path, headers=preflight_headers(APP_ORIGIN))
        assert resp.status == 204, pattern
        assert resp.headers["Access-Control-Allow-Origin"] == APP_ORIGIN, pattern


async def test_a_preflight_from_another_origin_is_403_in_the_error_shape_without_cors(client):
    resp = await client.options("/wechat/jwt", headers=preflight_headers(OTHER_ORIGIN))
    assert resp.status == 403
    assert cors_headers(resp) == {}
    body = await resp.json()
    assert_error_shape(body, 403, "FORBIDDEN", "Origin")
    assert body["details"]["fieldValue"] == OTHER_ORIGIN
    null = await client.options("/wechat/jwt", headers=preflight_headers("null"))
    assert null.status == 403


async def test_options_that_is_no_preflight_or_on_an_unlisted_route_is_the_routers_405(client):
    plain = await client.options("/wechat/authorize", headers={"Origin": APP_ORIGIN})
    assert plain.status == 405
    assert cors_headers(plain) == {}
    unlisted = await client.options("/wechat/login", headers=preflight_headers(APP_ORIGIN))
    assert unlisted.status == 405
    assert cors_headers(unlisted) == {}
    assert_error_shape(await unlisted.json(), 405, "METHOD_NOT_ALLOWED", "path")
    nowhere = await client.options("/no/such/route", headers=preflight_headers(APP_ORIGIN))
    assert (nowhere.status, cors_headers(nowhere)) == (404, {})


async def test_error_answers_carry_cors_for_an_allowed_origin(make_client):
    client = await make_client(rate_limit_jwt=60, rate_limit_burst=1)
    headers = {"Origin": APP_ORIGIN}
    missing = await client.get("/wechat/jwt", headers=headers)
    assert missing.status == 400
    assert missing.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    limited = await client.get("/wechat/jwt", headers=headers)
    assert limited.status == 429
    assert limited.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "retry-after" in exposed(limited)
    unknown = await client.get("/wechat/qrcode/login/no-such-scene", headers=headers)
    assert unknown.status == 404
    assert unknown.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    unauthorized = await client.get("/wechat/subscribed", headers=headers)
    assert unauthorized.status == 401
    assert unauthorized.headers["Access-Control-Allow-Origin"] == APP_ORIGIN


async def test_a_qr_sign_in_started_cross_origin_exposes_where_to_poll(client):
    resp = await client.post(
        "/wechat/qrcode/login", params={"redirectUri": REDIRECT_URI}, headers={"Origin": APP_ORIGIN}
    )
    assert resp.status == 201, await resp.text()
    assert resp.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert {"location", "x-qr-scene"} <= exposed(resp)


async def test_preflights_are_counted_and_logged_under_their_route_never_the_scene(client, caplog):
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    scene = "login_secretScene0123456789"
    await client.options(f"/wechat/qrcode/login/{scene}", headers=preflight_headers(APP_ORIGIN))
    await client.options("/wechat/authorize", headers=preflight_headers(APP_ORIGIN))
    metrics = await (await client.get("/metrics")).text()
    access = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert any("OPTIONS /wechat/qrcode/login/{scene} 204" in r.getMessage() for r in access)
    for record in caplog.records:
        assert scene not in f"{record.getMessage()} {record.args!r} {record.__dict__!r}"
    for route in ("/wechat/qrcode/login/{scene}", "/wechat/authorize"):
        assert (
            f'http_requests_total{{method="OPTIONS",route="{route}",status="204"}} 1.0' in metrics
        )


async def test_preflights_spend_no_rate_limit(make_client):
    client = await make_client(rate_limit_authorize=60, rate_limit_burst=1)
    for _ in range(3):
        resp = await client.options("/wechat/authorize", headers=preflight_headers(APP_ORIGIN))
        assert resp.status == 204
    assert (await client.get("/wechat/authorize", params=AUTHORIZE)).status == 401


@pytest.mark.parametrize("sandbox", [False, True])
async def test_the_services_own_origin_is_allowed_in_sandbox_mode_only(make_client, sandbox):
    client = await make_client(sandbox=sandbox, admin_key=ADMIN_KEY)
    own = "http://localhost:3000"  # PUBLIC_URL of the test settings
    resp = await client.get("/wechat/subscribed", headers={"Origin": own})
    assert resp.status == 401
    assert resp.headers.get("Access-Control-Allow-Origin") == (own if sandbox else None)
