"""Snapshot-page users (快照页, wechat-api.md §1): WeChat's virtual accounts are never signed in.

The emulator's SNAPSHOT_USER answers as WeChat does for one: the token exchange flags it with
is_snapshotuser 1 and a virtual unionid, sns/userinfo answers 48001; only for snsapi_userinfo.
"""

from __future__ import annotations

from flows import APPID, SECRET, assert_error_shape, authorize_at_wechat, start_sign_in
from service import keys
from service.sandbox import SANDBOX_USERS, SNAPSHOT_USER


async def test_the_emulator_flags_the_snapshot_users_token_and_refuses_its_profile(
    emulator_server, emulator, browser
):
    base = str(emulator_server.make_url("")).rstrip("/")
    code = emulator.issue_code(SNAPSHOT_USER.openid, "snsapi_userinfo")
    async with browser.get(
        f"{base}/sns/oauth2/access_token",
        params={"appid": APPID, "secret": SECRET, "code": code, "grant_type": "authorization_code"},
    ) as resp:
        token = await resp.json(content_type=None)
    assert token["is_snapshotuser"] == 1
    assert token["openid"] == SNAPSHOT_USER.openid
    assert token["unionid"] == SNAPSHOT_USER.unionid
    async with browser.get(
        f"{base}/sns/userinfo",
        params={"access_token": token["access_token"], "openid": token["openid"]},
    ) as resp:
        assert (await resp.json(content_type=None))["errcode"] == 48001

    real = emulator.issue_code(SANDBOX_USERS[0].openid, "snsapi_userinfo")
    async with browser.get(
        f"{base}/sns/oauth2/access_token",
        params={"appid": APPID, "secret": SECRET, "code": real, "grant_type": "authorization_code"},
    ) as resp:
        assert "is_snapshotuser" not in await resp.json(content_type=None)


async def test_the_user_picker_offers_the_snapshot_user(emulator_server, browser):
    async with browser.get(emulator_server.make_url("/_sandbox/users")) as resp:
        page = await resp.text()
    assert SNAPSHOT_USER.openid in page
    assert "快照页" in page


async def test_the_snapshot_page_exists_for_snsapi_userinfo_only(client, browser):
    """§1: irregular snsapi_userinfo requests open it; a silent snsapi_base authorization
    names the person's real account, so the emulator will not play a snapshot user there."""
    url = await start_sign_in(client, "snsapi_base")
    target = url.split("#", 1)[0] + f"&sandbox_openid={SNAPSHOT_USER.openid}"
    async with browser.get(target, allow_redirects=False) as resp:
        assert resp.status == 200  # a page at WeChat, no redirect with a code
        assert "No snapshot page for snsapi_base" in await resp.text()


async def test_a_snapshot_user_is_not_signed_in_nor_stored(client, browser):
    url = await start_sign_in(client, "snsapi_userinfo")
    query = await authorize_at_wechat(browser, url, SNAPSHOT_USER.openid)
    resp = await client.get("/wechat/jwt", params=query)
    assert resp.status == 403
    body = await resp.json()
    assert_error_shape(body, 403, "SNAPSHOT_USER", "is_snapshotuser")
    assert "使用完整服务" in body["message"]
    store = client.app[keys.STORE]
    assert await store.users.count_documents({}) == 0
    assert await store.web_tokens.count_documents({}) == 0


async def test_after_use_full_service_the_same_state_signs_the_real_person_in(client, browser):
    """Tapping 「使用完整服务」 reopens the authorization: the real code may finish the same
    state, which the snapshot answer did not spend."""
    url = await start_sign_in(client, "snsapi_userinfo")
    snapshot = await authorize_at_wechat(browser, url, SNAPSHOT_USER.openid)
    assert (await client.get("/wechat/jwt", params=snapshot)).status == 403
    real = await authorize_at_wechat(browser, url, SANDBOX_USERS[0].openid)
    done = await client.get("/wechat/jwt", params=real)
    assert done.status == 200, await done.text()
    user = (await done.json())["user"]
    assert user["openid"] == SANDBOX_USERS[0].openid
    assert "isSnapshotUser" not in user
