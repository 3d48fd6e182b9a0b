"""`make run`'s configuration: SANDBOX=1, the emulator mounted under /sandbox, one port."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from service.config import load_settings
from service.sandbox import SANDBOX_USERS


async def test_demo_sign_in_runs_on_the_mounted_emulator(sandbox_service, browser):
    base = sandbox_service
    demo = await browser.get(f"{base}/")
    assert demo.status == 200
    assert "Sign in with WeChat" in await demo.text()

    resp = await browser.get(
        f"{base}/wechat/authorize",
        params={
            "redirectUri": f"{base}/demo/landing",
            "callback": f"{base}/wechat/callback",
            "scope": "snsapi_userinfo",
        },
    )
    assert resp.status == 401
    url = (await resp.json())["details"]["fieldValue"]
    assert url.startswith(f"{base}/sandbox/connect/oauth2/authorize?")

    user = SANDBOX_USERS[1]
    at_wechat = await browser.get(
        url.split("#")[0] + f"&sandbox_openid={user.openid}&sandbox_action=allow",
        allow_redirects=False,
    )
    assert at_wechat.status == 302
    location = at_wechat.headers["Location"]
    assert location.startswith(f"{base}/wechat/callback?")
    query = dict(parse_qsl(urlsplit(location).query))

    page = await browser.get(location)
    assert page.status == 200 and "callback.js" in await page.text()

    done = await browser.get(f"{base}/wechat/jwt", params=query)
    assert done.status == 200, await done.text()
    body = await done.json()
    assert body["redirectUri"] == f"{base}/demo/landing"
    assert body["user"]["nickname"] == user.nickname

    landing = await browser.get(f"{base}/demo/landing")
    assert "landing.js" in await landing.text()


async def test_emulator_refuses_a_callback_outside_the_service_domain(sandbox_service, browser):
    base = sandbox_service
    url = (
        f"{base}/sandbox/connect/oauth2/authorize?appid="
        f"{load_settings({'SANDBOX': '1'}).wechat_appid}"
        "&redirect_uri=https%3A%2F%2Fevil.example.net%2Fcb&response_type=code"
        f"&scope=snsapi_base&state=abc&sandbox_openid={SANDBOX_USERS[0].openid}"
    )
    resp = await browser.get(url, allow_redirects=False)
    assert resp.status == 200
    assert "10003" in await resp.text()


async def test_the_demo_page_leads_to_every_flow_and_each_answers(sandbox_service, browser):
    """A newcomer clicks through every flow from / (make run): /wechat/login's two scopes, the
    QR sign-in, the OpenID Connect demo and the JS-SDK demo."""
    async with browser.get(sandbox_service + "/") as resp:
        page = await resp.text()
    links = re.findall(r'href="(/demo/[\w/-]+)"', page)
    assert {"/demo/qr-login", "/demo/oidc", "/demo/jssdk"} <= set(links), links
    for link in links:
        async with browser.get(sandbox_service + link) as resp:
            assert resp.status == 200, link
