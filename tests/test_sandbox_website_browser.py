"""The emulator's qrconnect desktop page in a real headless Chromium, when one is installed:
the page long-polls, the phone (the control API here) confirms or cancels, the page goes on
to the website's redirect_uri as WeChat's does (service/sandbox/website.py)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest
from aiohttp import web
from test_browser import CHROMIUM, dump_dom

from service.sandbox import SANDBOX_USERS
from service.sandbox.state import DEFAULT_WEBSITE_APPID

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


@pytest.fixture
async def site(aiohttp_server):
    """The website: its callback shows what WeChat sent it."""

    async def callback(request: web.Request) -> web.Response:
        body = "".join(f'<p id="{k}">{v}</p>' for k, v in request.query.items())
        return web.Response(
            text=f"<html><body><h1>landed</h1>{body}</body></html>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/callback", callback)
    return await aiohttp_server(app)


async def answer_when_shown(browser_client, action: str, body: dict) -> None:
    for _ in range(200):  # the page opens its session as soon as it loads
        pending = await (await browser_client.get("/_sandbox/api/qrconnect")).json()
        if pending["logins"]:
            uuid = pending["logins"][0]["uuid"]
            await asyncio.sleep(0.3)  # let the page's poll be held first
            resp = await browser_client.post(
                f"/_sandbox/api/qrconnect/{action}", json={"uuid": uuid, **body}
            )
            assert resp.status == 200, await resp.text()
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the page never opened a website login")


@pytest.mark.parametrize("action", ["confirm", "cancel"])
async def test_the_desktop_page_moves_on_after_the_phone_answers(
    make_emulator, aiohttp_client, site, tmp_path, action
):
    emulator = await make_emulator(website_domain="127.0.0.1")
    client = await aiohttp_client(emulator)
    callback = str(site.make_url("/callback"))
    url = emulator.make_url(
        f"/connect/qrconnect?appid={DEFAULT_WEBSITE_APPID}&redirect_uri={quote(callback, safe='')}"
        "&response_type=code&scope=snsapi_login&state=st4te"
    )
    page = asyncio.create_task(dump_dom(str(url) + "#wechat_redirect", tmp_path))
    body = {"openid": SANDBOX_USERS[0].openid} if action == "confirm" else {}
    await answer_when_shown(client, action, body)
    dom = await page
    assert "<h1>landed</h1>" in dom
    assert '<p id="state">st4te</p>' in dom
    assert ('<p id="code">' in dom) is (action == "confirm")
