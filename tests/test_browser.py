"""The callback and landing pages in a real headless Chromium, when one is installed.

Chromium follows WeChat's (the emulator's) redirect to the callback page, runs callback.js, which
calls /wechat/jwt and replaces itself with the landing page, whose script shows the JWT's claims.
"""

from __future__ import annotations

import asyncio
import html
import re
import shutil
from urllib.parse import quote

import pytest

from service import keys
from service.sandbox import SANDBOX_USERS, SNAPSHOT_USER
from service.sandbox.users import website_openid

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


async def dump_dom(url: str, tmp_path) -> str:
    """The DOM after the page's scripts and redirects ran (virtual time, no sleeps).

    Virtual time stands still while a request is pending, so a long-polling page is dumped
    only after its poll has answered."""
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return out.decode()


async def authorization_url(browser, base: str, scope: str) -> str:
    resp = await browser.get(
        f"{base}/wechat/authorize",
        params={
            "redirectUri": f"{base}/demo/landing",
            "callback": f"{base}/wechat/callback",
            "scope": scope,
        },
    )
    return (await resp.json())["details"]["fieldValue"].split("#")[0]


async def test_sign_in_ends_on_the_landing_page_showing_the_claims(
    sandbox_service, browser, tmp_path
):
    base = sandbox_service
    user = SANDBOX_USERS[0]
    url = await authorization_url(browser, base, "snsapi_userinfo")
    dom = await dump_dom(f"{url}&sandbox_openid={user.openid}&sandbox_action=allow", tmp_path)
    assert 'id="claims"' in dom
    assert user.openid in dom  # the sub claim, rendered by landing.js
    assert "snsapi_userinfo" in dom
    assert "Signing you in" not in dom


async def test_a_declined_authorization_shows_a_message_with_a_retry_button(
    sandbox_service, browser, tmp_path
):
    base = sandbox_service
    url = await authorization_url(browser, base, "snsapi_userinfo")
    dom = await dump_dom(
        f"{url}&sandbox_openid={SANDBOX_USERS[0].openid}&sandbox_action=deny", tmp_path
    )
    assert "You declined" in dom
    assert re.search(r'id="action" class="primary" data-action="reauthorize"', dom)


async def test_a_reused_link_says_so(sandbox_service, browser, tmp_path):
    base = sandbox_service
    url = await authorization_url(browser, base, "snsapi_base")
    at_wechat = await browser.get(
        f"{url}&sandbox_openid={SANDBOX_USERS[0].openid}", allow_redirects=False
    )
    callback = at_wechat.headers["Location"]
    first = await dump_dom(callback, tmp_path / "1")
    assert 'id="claims"' in first
    again = await dump_dom(callback, tmp_path / "2")
    assert "This sign-in link was already used" in again  # not "expired"
    assert "expired" not in again.split('id="page-strings"')[0]


async def test_the_desktop_page_signs_in_by_itself_after_a_scan(
    sandbox_server, sandbox_service, browser, tmp_path
):
    """make run's desktop demo: the page shows a code, the phone scans it, the page goes on."""
    store = sandbox_server.app[keys.STORE]
    page = asyncio.create_task(dump_dom(f"{sandbox_service}/demo/qr-login", tmp_path))
    session = None
    for _ in range(200):  # the page creates its session as soon as it loads
        session = await store.qr_logins.find_one({"status": "pending"})
        if session or page.done():
            break
        await asyncio.sleep(0.05)
    assert session, "the page never asked for a QR code"
    scan = await browser.post(
        f"{sandbox_service}/sandbox/_sandbox/api/scan",
        json={"openid": SANDBOX_USERS[1].openid, "ticket": session["ticket"]},
    )
    assert (await scan.json())["delivered"] is True
    dom = await page
    assert 'id="claims"' in dom  # the landing page, showing the JWT's claims
    assert SANDBOX_USERS[1].openid in dom


def picking_user_then(base: str, openid: str, next_path: str) -> str:
    """A data: page that picks a sandbox user, as a person does once in the user picker, and
    goes on to `next_path` on the service: the picker's form, submitted by itself."""
    form = (
        f'<form method="post" action="{base}/sandbox/_sandbox/users/select">'
        f'<input type="hidden" name="openid" value="{openid}">'
        f'<input type="hidden" name="next" value="{html.escape(next_path)}"></form>'
        "<script>document.forms[0].submit()</script>"
    )
    return "data:text/html," + quote(form)


async def demo_link(browser, base: str, element_id: str) -> str:
    """The href of one of the demo page's sign-in buttons."""
    page = await (await browser.get(f"{base}/")).text()
    match = re.search(rf'id="{element_id}"\s+href="([^"]+)"', page)
    assert match, page
    return html.unescape(match.group(1))


async def test_the_demo_button_signs_in_through_wechat_login(
    sandbox_server, sandbox_service, browser, tmp_path
):
    """The demo's button is a link to /wechat/login: its cookie binds the state to Chromium,
    which then finishes on the built-in callback page and lands with the JWT. (snsapi_base:
    the userinfo button's consent page would need a tap.)"""
    base = sandbox_service
    link = await demo_link(browser, base, "sign-in-base")
    assert link.startswith("/wechat/login?")
    user = SANDBOX_USERS[0]
    dom = await dump_dom(picking_user_then(base, user.openid, link), tmp_path)
    assert 'id="claims"' in dom, dom
    assert user.openid in dom
    # One sign-in, used once (its cookie binding: tests/test_state_binding.py).
    store = sandbox_server.app[keys.STORE]
    (used,) = [doc async for doc in store.states.find({})]
    assert used["usedAt"] is not None


async def test_a_callback_link_from_another_browser_does_not_sign_in(
    sandbox_service, browser, tmp_path
):
    """Login CSRF: the attacker's own callback link, opened in the victim's browser."""
    base = sandbox_service
    link = await demo_link(browser, base, "sign-in-base")
    at_service = await browser.get(f"{base}{link}", allow_redirects=False)
    wechat_url = at_service.headers["Location"].split("#")[0]
    at_wechat = await browser.get(
        f"{wechat_url}&sandbox_openid={SANDBOX_USERS[1].openid}", allow_redirects=False
    )
    dom = await dump_dom(at_wechat.headers["Location"], tmp_path)  # the victim's Chromium
    assert "started elsewhere" in dom
    assert SANDBOX_USERS[1].openid not in dom


@pytest.mark.parametrize("query", ["code=%E0%A4%A&state=abc", "code=abc&state=%", "state=%zz"])
async def test_a_malformed_percent_escape_shows_an_error_instead_of_spinning(
    sandbox_service, tmp_path, query
):
    dom = await dump_dom(f"{sandbox_service}/wechat/callback?{query}", tmp_path)
    assert "This link is damaged" in dom
    assert re.search(r'<section id="progress"[^>]*class="hidden"', dom)  # no spinner left


async def test_a_snapshot_page_user_is_told_to_use_the_full_service(
    sandbox_service, browser, tmp_path
):
    base = sandbox_service
    url = await authorization_url(browser, base, "snsapi_userinfo")
    dom = await dump_dom(
        f"{url}&sandbox_openid={SNAPSHOT_USER.openid}&sandbox_action=allow", tmp_path
    )
    assert "使用完整服务" in dom
    assert "Use full service" in dom
    assert 'id="claims"' not in dom


async def test_the_desktop_page_says_why_a_scan_did_not_sign_in(
    sandbox_server, sandbox_service, browser, tmp_path
):
    """WeChat fails the follow check after the scan: the page says so and offers a new code."""
    store = sandbox_server.app[keys.STORE]
    fault = {"kind": "http_error", "paths": ["cgi-bin/user/info"], "status": 503}
    resp = await browser.post(f"{sandbox_service}/sandbox/_sandbox/faults", json=fault)
    assert resp.status in (200, 201), await resp.text()
    page = asyncio.create_task(dump_dom(f"{sandbox_service}/demo/qr-login", tmp_path))
    session = None
    for _ in range(200):
        session = await store.qr_logins.find_one({"status": "pending"})
        if session or page.done():
            break
        await asyncio.sleep(0.05)
    assert session, "the page never asked for a QR code"
    scan = await browser.post(
        f"{sandbox_service}/sandbox/_sandbox/api/scan",
        json={"openid": SANDBOX_USERS[0].openid, "ticket": session["ticket"]},
    )
    assert (await scan.json())["delivered"] is True
    dom = await page
    assert "Scanned, but not signed in." in dom
    assert "WeChat could not confirm" in dom
    assert 'id="qr-renew" class=""' in dom  # the "Show a new code" button
    assert 'id="claims"' not in dom


async def test_the_website_app_button_signs_in_on_the_desktop_page(
    sandbox_service, browser, tmp_path
):
    """make run's third account: the demo's website-app button goes through /wechat/login to
    WeChat_Login's desktop page (connect/qrconnect), the phone confirms, and Chromium lands with
    a JWT of the website app: its own openid, the person's unionid."""
    base = sandbox_service
    link = await demo_link(browser, base, "sign-in-web")
    assert link.startswith("/wechat/login?") and "account=web" in link
    page = asyncio.create_task(dump_dom(f"{base}{link}", tmp_path))
    user = SANDBOX_USERS[0]
    for _ in range(200):  # the desktop page opens its session as soon as it loads
        pending = await (await browser.get(f"{base}/sandbox/_sandbox/api/qrconnect")).json()
        if pending["logins"] or page.done():
            break
        await asyncio.sleep(0.05)
    assert pending["logins"], "the desktop page never showed a code"
    await asyncio.sleep(0.3)  # its long poll is held first
    confirm = await browser.post(
        f"{base}/sandbox/_sandbox/api/qrconnect/confirm",
        json={"uuid": pending["logins"][0]["uuid"], "openid": user.openid},
    )
    assert confirm.status == 200, await confirm.text()
    dom = await page
    assert 'id="claims"' in dom, dom
    assert website_openid(user) in dom and user.unionid in dom
    assert user.openid not in dom  # the account's openid is not the website app's
