"""nosniff on every answer; HSTS on every answer when PUBLIC_URL is https."""

from __future__ import annotations

import pytest

from flows import APPID, CALLBACK, REDIRECT_URI

HSTS = "max-age=31536000; includeSubDomains"


def sandbox_authorize_without_a_user() -> str:
    """The emulator's authorize page with nobody signed in at "WeChat": a 302 to its user list."""
    return (
        f"/sandbox/connect/oauth2/authorize?appid={APPID}"
        "&redirect_uri=https%3A%2F%2Flocalhost%2Fwechat%2Fcallback"
        "&response_type=code&scope=snsapi_base&state=abc"
    )


ANSWERS = [
    ("/healthz", 200),  # JSON
    ("/wechat/authorize?redirectUri=" + REDIRECT_URI + "&callback=" + CALLBACK, 401),  # error
    ("/no/such/route", 404),  # aiohttp's HTTPException, in the error shape
    ("/static/app.css", 200),  # a static file
    ("/wechat/callback", 200),  # an HTML page
    ("/sandbox/", 200),  # the emulator's pages (a sub-app)
    (sandbox_authorize_without_a_user(), 302),  # a redirect (HTTPFound raised)
]


@pytest.mark.parametrize(("path", "status"), ANSWERS)
async def test_https_public_url_every_answer_has_hsts_and_nosniff(make_client, path, status):
    client = await make_client(
        sandbox=True, public_url="https://localhost", wechat_open_base="", wechat_api_base=""
    )
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == status, await resp.text()
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Strict-Transport-Security"] == HSTS
    assert resp.headers.getall("X-Content-Type-Options") == ["nosniff"]  # set once


@pytest.mark.parametrize(("path", "status"), ANSWERS)
async def test_plain_http_public_url_has_nosniff_but_no_hsts(make_client, path, status):
    client = await make_client(
        sandbox=True, public_url="http://localhost", wechat_open_base="", wechat_api_base=""
    )
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == status, await resp.text()
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "Strict-Transport-Security" not in resp.headers
