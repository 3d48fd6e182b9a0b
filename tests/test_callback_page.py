"""The built-in callback page, the retry endpoint, and the sandbox demo pages' HTML."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl, urlsplit

from flows import REDIRECT_URI, assert_error_shape, authorize_at_wechat, start_sign_in
from service.sandbox import SANDBOX_USERS


async def test_callback_page_is_self_contained_html_with_strict_headers(client):
    resp = await client.get("/wechat/callback", params={"code": "abc", "state": "xyz"})
    assert resp.status == 200
    assert resp.content_type == "text/html"
    html = await resp.text()
    assert '<script src="/static/callback.js"></script>' in html
    assert "Signing you in" in html
    # Nothing from other hosts: WeChat's in-app browser may not reach CDNs.
    assert "http://" not in html and "https://" not in html
    assert "<script>" not in html  # no inline script, so the CSP can forbid it
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    # The code is read by the page's script, never written into the HTML.
    assert "abc" not in html


async def test_callback_script_and_style_are_served(client):
    for path, kind in (("/static/callback.js", "javascript"), ("/static/app.css", "text/css")):
        resp = await client.get(path)
        assert resp.status == 200
        assert kind in resp.content_type
    script = await (await client.get("/static/callback.js")).text()
    # The token goes in the fragment, never the query.
    assert '"#token="' in script
    assert "jwt?code=" in script


async def test_retry_starts_a_new_authorization_for_the_same_app(client, browser):
    url = await start_sign_in(client, "snsapi_userinfo")
    denied = await authorize_at_wechat(browser, url, SANDBOX_USERS[0].openid, action="deny")
    resp = await client.get("/wechat/authorize/retry", params={"state": denied["state"]})
    assert resp.status == 401
    new_url = (await resp.json())["details"]["fieldValue"]
    new_query = dict(parse_qsl(urlsplit(new_url).query))
    assert new_query["scope"] == "snsapi_userinfo"
    assert new_query["state"] != denied["state"]
    query = await authorize_at_wechat(browser, new_url, SANDBOX_USERS[0].openid)
    done = await client.get("/wechat/jwt", params=query)
    assert (await done.json())["redirectUri"] == REDIRECT_URI


async def test_a_state_is_remembered_for_state_retention_after_it_expires(
    make_client, browser, clock
):
    client = await make_client(state_ttl=600, state_retention=300)
    url = await start_sign_in(client)
    denied = await authorize_at_wechat(browser, url, SANDBOX_USERS[0].openid, action="deny")
    clock.advance(600 + 299)  # expired, still remembered: "try again" keeps the app's URLs
    again = await client.get("/wechat/authorize/retry", params={"state": denied["state"]})
    assert again.status == 401
    late = await authorize_at_wechat(browser, url, SANDBOX_USERS[0].openid)
    expired = await client.get("/wechat/jwt", params=late)
    assert "expired" in (await expired.json())["message"]
    clock.advance(1)  # forgotten, whether or not the TTL monitor has deleted it yet
    gone = await client.get("/wechat/authorize/retry", params={"state": denied["state"]})
    assert_error_shape(await gone.json(), 400, "INVALID_STATE", "state")
    unknown = await client.get("/wechat/jwt", params=late)
    assert "unknown state" in (await unknown.json())["message"]


async def test_retry_with_an_unknown_state_is_400(client):
    resp = await client.get("/wechat/authorize/retry", params={"state": "Unknown123"})
    assert_error_shape(await resp.json(), 400, "INVALID_STATE", "state")


async def test_demo_pages_exist_only_in_sandbox_mode(client):
    resp = await client.get("/demo/landing")
    assert resp.status == 404
    index = await client.get("/")
    assert index.content_type == "application/json"


async def test_the_demo_signs_in_through_wechat_login(sandbox_service, browser):
    """The demo's buttons are plain links (top-level navigations) to /wechat/login, so the
    demo's own sign-ins are bound to the browser; no script is needed for them."""
    async with browser.get(f"{sandbox_service}/") as resp:
        page = await resp.text()
    links = [html.unescape(href) for href in re.findall(r'href="(/wechat/login\?[^"]+)"', page)]
    queries = [dict(parse_qsl(urlsplit(link).query)) for link in links]
    # The default account's two scopes, the second Official Account's, and the website app's.
    assert {(q.get("account"), q.get("scope")) for q in queries} == {
        (None, "snsapi_base"),
        (None, "snsapi_userinfo"),
        ("second", "snsapi_userinfo"),
        ("web", None),
    }
    for link in links:
        assert dict(parse_qsl(urlsplit(link).query))["redirectUri"] == (
            f"{sandbox_service}/demo/landing"
        )
        async with browser.get(f"{sandbox_service}{link}", allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"].startswith(f"{sandbox_service}/sandbox/connect/")
            assert "HttpOnly" in resp.headers["Set-Cookie"]
    assert "/wechat/authorize" not in page
