"""The website app's QR sign-in (网站应用微信登录, service/sandbox/website.py), over HTTP:
connect/qrconnect's page and checks, the phone's confirm page, the control API, and sns/* for
the website app's codes (its own openid, the unionid shared with the account)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from flows import APPID, SECRET, assert_error_shape
from service.sandbox import SANDBOX_USERS, SNAPSHOT_USER
from service.sandbox.state import DEFAULT_WEBSITE_APPID, DEFAULT_WEBSITE_SECRET
from service.sandbox.users import website_openid
from service.sandbox.website import QRCONNECT_TTL, WEBSITE_CODE_TTL

FOLLOWER, NO_UNIONID = SANDBOX_USERS[0], SANDBOX_USERS[2]
WEB_APPID, WEB_SECRET = DEFAULT_WEBSITE_APPID, DEFAULT_WEBSITE_SECRET
SITE_CALLBACK = "https://app.example.com/wechat/website-callback"


@pytest.fixture
async def wechat(aiohttp_client, emulator_server):
    """The emulator's client: the desktop browser, the phone (cookies) and the site's server."""
    return await aiohttp_client(emulator_server)


def qrconnect_path(
    appid: str = WEB_APPID,
    redirect_uri: str = SITE_CALLBACK,
    scope: str = "snsapi_login",
    state: str = "s7ate",
) -> str:
    return (
        f"/connect/qrconnect?appid={appid}&redirect_uri={quote(redirect_uri, safe='')}"
        f"&response_type=code&scope={scope}&state={state}"
    )


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def open_page(wechat, path: str | None = None) -> tuple[str, str]:
    """(uuid, page HTML) of a fresh qrconnect page."""
    resp = await wechat.get(path or qrconnect_path())
    assert resp.status == 200
    html = await resp.text()
    uuid = re.search(r"/connect/confirm\?uuid=([A-Za-z0-9_-]+)", html)
    assert uuid, html
    return uuid.group(1), html


async def poll(wechat, uuid: str) -> dict:
    resp = await wechat.get("/_sandbox/qrconnect/poll", params={"uuid": uuid})
    assert resp.status == 200
    return await resp.json()


async def sns(wechat, path: str, /, **params: str) -> dict:
    resp = await wechat.get(f"/{path}", params=params)
    assert resp.status == 200
    return await resp.json(content_type=None)


async def exchange(wechat, code: str, appid: str = WEB_APPID, secret: str = WEB_SECRET) -> dict:
    return await sns(
        wechat,
        "sns/oauth2/access_token",
        appid=appid,
        secret=secret,
        code=code,
        grant_type="authorization_code",
    )


async def confirmed_code(wechat, user=FOLLOWER) -> str:
    uuid, _ = await open_page(wechat)
    resp = await wechat.post(
        "/_sandbox/api/qrconnect/confirm", json={"uuid": uuid, "openid": user.openid}
    )
    assert resp.status == 200, await resp.text()
    return query_of((await resp.json())["location"])["code"]


async def account_code(wechat, user=FOLLOWER) -> str:
    resp = await wechat.get(
        f"/connect/oauth2/authorize?appid={APPID}&redirect_uri="
        f"{quote('https://app.example.com/cb', safe='')}&response_type=code"
        f"&scope=snsapi_userinfo&state=x&sandbox_openid={user.openid}&sandbox_action=allow",
        allow_redirects=False,
    )
    assert resp.status == 302
    return query_of(resp.headers["Location"])["code"]


async def test_the_phone_confirms_and_the_site_gets_the_website_openid_and_shared_unionid(
    wechat, emulator
):
    uuid, html = await open_page(wechat)
    assert "使用微信扫一扫登录" in html
    assert 'src="data:image/png;base64,' in html  # the QR code itself, no external asset
    assert (await poll(wechat, uuid))["status"] == "waiting"

    # The phone: pick the user, open the scanned code's page (the scan), tap 确认登录.
    await wechat.post("/_sandbox/users/select", data={"openid": FOLLOWER.openid})
    phone = await (await wechat.get("/_sandbox/phone")).text()
    assert f"/connect/confirm?uuid={uuid}" in phone  # the pending sign-in is listed
    page = await wechat.get("/connect/confirm", params={"uuid": uuid})
    assert "确认登录" in await page.text()
    assert (await poll(wechat, uuid))["status"] == "scanned"
    done = await wechat.post("/connect/confirm", data={"uuid": uuid, "action": "allow"})
    assert "已确认登录" in await done.text()

    answer = await poll(wechat, uuid)
    assert answer["status"] == "confirmed"
    location = answer["location"]
    assert location.startswith(SITE_CALLBACK + "?")
    params = query_of(location)
    assert params["state"] == "s7ate"

    token = await exchange(wechat, params["code"])
    assert token["openid"] == website_openid(FOLLOWER) != FOLLOWER.openid
    assert token["unionid"] == FOLLOWER.unionid  # one unionid across the account's apps
    assert token["scope"] == "snsapi_login"
    info = await sns(
        wechat, "sns/userinfo", access_token=token["access_token"], openid=token["openid"]
    )
    assert info["openid"] == token["openid"]
    assert info["unionid"] == FOLLOWER.unionid
    assert info["nickname"] == FOLLOWER.nickname
    auth = await sns(wechat, "sns/auth", access_token=token["access_token"], openid=token["openid"])
    assert auth["errcode"] == 0
    refreshed = await sns(
        wechat,
        "sns/oauth2/refresh_token",
        appid=WEB_APPID,
        grant_type="refresh_token",
        refresh_token=token["refresh_token"],
    )
    assert refreshed["openid"] == token["openid"]
    # The account's refresh endpoint does not know the website app's refresh_token.
    other = await sns(
        wechat,
        "sns/oauth2/refresh_token",
        appid=APPID,
        grant_type="refresh_token",
        refresh_token=token["refresh_token"],
    )
    assert other["errcode"] == 40030


async def test_the_account_keeps_its_openid_and_shares_the_unionid(wechat):
    account = await exchange(wechat, await account_code(wechat), APPID, SECRET)
    website = await exchange(wechat, await confirmed_code(wechat))
    assert account["openid"] == FOLLOWER.openid
    assert website["openid"] != account["openid"]
    assert website["unionid"] == account["unionid"] == FOLLOWER.unionid


async def test_openids_are_distinct_per_user_and_app(wechat):
    openids = {website_openid(user) for user in SANDBOX_USERS}
    assert len(openids) == len(SANDBOX_USERS)
    assert not openids & {user.openid for user in SANDBOX_USERS}
    assert all(len(openid) == 28 for openid in openids)
    token = await exchange(wechat, await confirmed_code(wechat, NO_UNIONID))
    assert token["openid"] == website_openid(NO_UNIONID)
    assert token["unionid"]  # a website app is on an Open Platform account: always one


async def test_cancel_sends_the_site_back_with_state_only(wechat):
    uuid, _ = await open_page(wechat)
    resp = await wechat.post("/_sandbox/api/qrconnect/cancel", json={"uuid": uuid})
    assert resp.status == 200
    answer = await poll(wechat, uuid)
    assert answer["status"] == "cancelled"
    assert query_of(answer["location"]) == {"state": "s7ate"}  # no code
    again = await wechat.post(
        "/_sandbox/api/qrconnect/confirm", json={"uuid": uuid, "openid": FOLLOWER.openid}
    )
    assert again.status == 400  # answered already


async def test_the_phone_can_cancel(wechat):
    uuid, _ = await open_page(wechat)
    await wechat.post("/_sandbox/users/select", data={"openid": FOLLOWER.openid})
    done = await wechat.post("/connect/confirm", data={"uuid": uuid, "action": "cancel"})
    assert "已取消登录" in await done.text()
    assert (await poll(wechat, uuid))["status"] == "cancelled"


async def test_an_unanswered_code_expires(wechat, clock):
    uuid, _ = await open_page(wechat)
    clock.advance(QRCONNECT_TTL - 1)
    assert (await poll(wechat, uuid))["status"] == "waiting"
    pending = await (await wechat.get("/_sandbox/api/qrconnect")).json()
    assert [login["uuid"] for login in pending["logins"]] == [uuid]
    clock.advance(1)
    answer = await poll(wechat, uuid)
    assert answer == {"status": "expired", "location": None}
    resp = await wechat.post(
        "/_sandbox/api/qrconnect/confirm", json={"uuid": uuid, "openid": FOLLOWER.openid}
    )
    assert resp.status == 400
    assert_error_shape(await resp.json(), 400, "QR_CODE_EXPIRED", "uuid")
    assert (await (await wechat.get("/_sandbox/api/qrconnect")).json())["logins"] == []
    await wechat.post("/_sandbox/users/select", data={"openid": FOLLOWER.openid})
    page = await wechat.get("/connect/confirm", params={"uuid": uuid})
    assert "二维码已失效" in await page.text()


async def test_a_website_code_lives_ten_minutes_and_is_single_use(wechat, clock):
    code = await confirmed_code(wechat)
    clock.advance(WEBSITE_CODE_TTL)
    assert (await exchange(wechat, code))["errcode"] == 40029
    code = await confirmed_code(wechat)
    clock.advance(WEBSITE_CODE_TTL - 1)
    assert "access_token" in await exchange(wechat, code)
    assert (await exchange(wechat, code))["errcode"] == 40163


async def test_each_app_opens_only_its_own_codes(wechat):
    website_code = await confirmed_code(wechat)
    # The website app's appid with the account's secret, and the other way round: 40125.
    assert (await exchange(wechat, website_code, WEB_APPID, SECRET))["errcode"] == 40125
    assert (await exchange(wechat, website_code, APPID, WEB_SECRET))["errcode"] == 40125
    # The account's own credentials with the website app's code: unknown to it.
    assert (await exchange(wechat, website_code, APPID, SECRET))["errcode"] == 40029
    account = await account_code(wechat)
    assert (await exchange(wechat, account, WEB_APPID, WEB_SECRET))["errcode"] == 40029
    assert (await exchange(wechat, website_code, "wx0000000000000000"))["errcode"] == 40013
    # Still unused, each opens with its own app's credentials.
    assert "access_token" in await exchange(wechat, website_code)
    assert "access_token" in await exchange(wechat, account, APPID, SECRET)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/connect/qrconnect?redirect_uri=x&response_type=code&scope=snsapi_login", "appid"),
        (qrconnect_path(appid=APPID), "not a website app"),
        (qrconnect_path(appid="wx0000000000000000"), "not a website app"),
        (f"/connect/qrconnect?appid={WEB_APPID}&response_type=code&scope=snsapi_login", "missing"),
        (qrconnect_path(redirect_uri="https://evil.example.net/cb"), "授权回调域"),
        (qrconnect_path(redirect_uri="https://evil.example.net/cb", scope="x"), "授权回调域"),
        (qrconnect_path().replace("response_type=code", "response_type=token"), "response_type"),
        (qrconnect_path(scope="snsapi_userinfo"), "Scope"),
        (qrconnect_path(scope=""), "scope is missing"),
        (qrconnect_path(state="x" * 129), "state"),
    ],
)
async def test_bad_requests_show_wechats_page(wechat, path, reason):
    resp = await wechat.get(path)
    assert resp.status == 200  # a page, never a redirect back to the site
    html = await resp.text()
    assert "该链接无法访问" in html
    assert reason in html
    assert (await (await wechat.get("/_sandbox/api/qrconnect")).json())["logins"] == []


async def test_the_domain_can_be_the_website_apps_own(make_emulator, aiohttp_client):
    wechat = await aiohttp_client(await make_emulator(website_domain="www.example.org"))
    bad = await wechat.get(qrconnect_path())
    assert "该链接无法访问" in await bad.text()
    await open_page(wechat, qrconnect_path(redirect_uri="https://www.example.org/cb"))


async def test_without_a_website_app_qrconnect_and_its_sns_calls_are_refused(
    make_emulator, aiohttp_client
):
    wechat = await aiohttp_client(await make_emulator(website_appid=""))
    assert "该链接无法访问" in await (await wechat.get(qrconnect_path())).text()
    assert (await exchange(wechat, "x"))["errcode"] == 40013


async def test_the_snapshot_user_cannot_sign_in_to_a_website(wechat):
    uuid, _ = await open_page(wechat)
    resp = await wechat.post(
        "/_sandbox/api/qrconnect/confirm", json={"uuid": uuid, "openid": SNAPSHOT_USER.openid}
    )
    assert resp.status == 400
    assert (await poll(wechat, uuid))["status"] == "waiting"


async def test_the_phone_scans_the_code_content(wechat):
    uuid, html = await open_page(wechat)
    content = re.search(r'href="(http://[^"]+/connect/confirm\?uuid=[^"]+)"', html)
    assert content
    await wechat.post("/_sandbox/users/select", data={"openid": FOLLOWER.openid})
    resp = await wechat.post("/_sandbox/phone/scan", data={"code": content.group(1)})
    assert resp.status == 200
    assert "确认登录" in await resp.text()
    assert (await poll(wechat, uuid))["status"] == "scanned"


async def test_a_waiting_poll_answers_when_the_phone_confirms(wechat):
    import asyncio

    uuid, _ = await open_page(wechat)
    held = asyncio.ensure_future(
        wechat.get("/_sandbox/qrconnect/poll", params={"uuid": uuid, "last": "waiting"})
    )
    await asyncio.sleep(0.1)
    assert not held.done()
    await wechat.post(
        "/_sandbox/api/qrconnect/confirm", json={"uuid": uuid, "openid": FOLLOWER.openid}
    )
    answer = await (await asyncio.wait_for(held, 5)).json()
    assert answer["status"] == "confirmed"
    assert "code=" in answer["location"]


async def test_the_desktop_page_may_run_its_one_local_script(wechat):
    resp = await wechat.get(qrconnect_path())
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    html = await resp.text()
    script = re.search(r'<script src="([^"]+)"', html)
    assert script and script.group(1).endswith("/_sandbox/static/qrconnect.js")
    assert (await wechat.get(script.group(1))).status == 200


async def test_sandbox_mode_has_the_website_app_on_the_services_host(sandbox_service, browser):
    """The default website app, its 授权回调域 the host the service is reached at."""
    callback = f"{sandbox_service}/demo/landing"
    page = await browser.get(
        f"{sandbox_service}/sandbox" + qrconnect_path(redirect_uri=callback).replace("s7ate", "abc")
    )
    html = await page.text()
    assert page.status == 200 and "使用微信扫一扫登录" in html, html
    uuid = re.search(r"/sandbox/connect/confirm\?uuid=([A-Za-z0-9_-]+)", html)
    assert uuid
    resp = await browser.post(
        f"{sandbox_service}/sandbox/_sandbox/api/qrconnect/confirm",
        json={"uuid": uuid.group(1), "openid": FOLLOWER.openid},
    )
    code = query_of((await resp.json())["location"])["code"]
    token = await browser.get(
        f"{sandbox_service}/sandbox/sns/oauth2/access_token",
        params={
            "appid": WEB_APPID,
            "secret": WEB_SECRET,
            "code": code,
            "grant_type": "authorization_code",
        },
    )
    assert (await token.json(content_type=None))["openid"] == website_openid(FOLLOWER)
