"""GET /wechat/subscribed (does the signed-in user follow the account?) and the token status."""

from __future__ import annotations

import pytest

from flows import ADMIN_KEY, APPID, assert_error_shape, sign_in
from service import keys
from service.sandbox import SANDBOX_USERS

FOLLOWER, VISITOR = SANDBOX_USERS[0], SANDBOX_USERS[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_follower_is_subscribed_and_the_user_record_says_so(client, browser, emulator):
    signed_in = await sign_in(client, browser, FOLLOWER.openid)
    resp = await client.get("/wechat/subscribed", headers=bearer(signed_in["token"]))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["openid"] == FOLLOWER.openid
    assert body["subscribed"] is True
    assert body["subscribeTime"].startswith("2024-01-01T00:00:00")
    assert body["subscribeScene"].startswith("ADD_SCENE_")
    user = await client.app[keys.STORE].get_user(FOLLOWER.openid)
    assert user["subscribed"] is True
    assert user["subscribeTime"].timestamp() == FOLLOWER.subscribe_time
    assert emulator.stats["cgi-bin/user/info"] == 1


async def test_a_visitor_is_not_subscribed(client, browser):
    signed_in = await sign_in(client, browser, VISITOR.openid, "snsapi_userinfo")
    resp = await client.get("/wechat/subscribed", headers=bearer(signed_in["token"]))
    body = await resp.json()
    assert body == {
        "openid": VISITOR.openid,
        "subscribed": False,
        "subscribeTime": None,
        "subscribeScene": None,
    }
    assert (await client.app[keys.STORE].get_user(VISITOR.openid))["subscribed"] is False


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
async def test_missing_or_invalid_tokens_are_401(client, headers, emulator):
    resp = await client.get("/wechat/subscribed", headers=headers)
    assert resp.status == 401
    assert_error_shape(await resp.json(), 401, "UNAUTHORIZED", "Authorization")
    assert emulator.stats["cgi-bin/user/info"] == 0


async def test_an_expired_token_is_401(client, browser, clock):
    signed_in = await sign_in(client, browser, FOLLOWER.openid)
    clock.advance(signed_in["expiresIn"])
    resp = await client.get("/wechat/subscribed", headers=bearer(signed_in["token"]))
    assert_error_shape(await resp.json(), 401, "UNAUTHORIZED", "Authorization")


async def test_wechat_failures_map_like_the_sign_in(client, browser, emulator):
    signed_in = await sign_in(client, browser, FOLLOWER.openid)
    emulator.faults.set("http_error", paths=["cgi-bin/user/info"], status=502)
    resp = await client.get("/wechat/subscribed", headers=bearer(signed_in["token"]))
    assert_error_shape(await resp.json(), 502, "WECHAT_UNAVAILABLE", "")


async def test_the_follow_check_survives_a_token_wechat_rejects(client, browser, emulator):
    signed_in = await sign_in(client, browser, FOLLOWER.openid)
    emulator.faults.set("errcode", errcode=40001, paths=["cgi-bin/user/info"], count=1)
    resp = await client.get("/wechat/subscribed", headers=bearer(signed_in["token"]))
    assert resp.status == 200
    assert (await resp.json())["subscribed"] is True


async def test_an_openid_wechat_does_not_know_is_blamed_on_the_openid(client, emulator, caplog):
    """A valid token of ours naming a user this account never had (issued under another AppID
    with the same key): WeChat answers 40003, which the operator cannot fix in the settings."""
    stranger = client.app[keys.JWT].issue(openid="oUnknownToThisAccount000000", scope="snsapi_base")
    resp = await client.get("/wechat/subscribed", headers=bearer(stranger.token))
    assert resp.status == 502
    body = await resp.json()
    assert_error_shape(body, 502, "WECHAT_ERROR", "errcode")
    assert body["details"]["fieldValue"] == 40003
    assert "does not know this openid" in body["message"]
    assert "check the service's configuration" not in body["message"]
    assert emulator.stats["cgi-bin/user/info"] == 1
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


# /wechat/tokens/status


async def test_status_needs_the_admin_key(client, make_client):
    missing = await client.get("/wechat/tokens/status")
    assert_error_shape(await missing.json(), 401, "UNAUTHORIZED", "X-Admin-Key")
    wrong = await client.get("/wechat/tokens/status", headers={"X-Admin-Key": "nope"})
    assert_error_shape(await wrong.json(), 403, "FORBIDDEN", "X-Admin-Key")
    disabled = await make_client(admin_key="")
    resp = await disabled.get("/wechat/tokens/status", headers={"X-Admin-Key": ""})
    assert_error_shape(await resp.json(), 403, "FORBIDDEN", "X-Admin-Key")


async def test_status_reports_ages_errors_and_counts_but_never_a_token(
    client, browser, clock, emulator
):
    keeper = client.app[keys.ACCOUNTS].default.base_tokens
    await keeper.renew_if_due()
    clock.advance(600)
    signed_in = await sign_in(client, browser, FOLLOWER.openid, "snsapi_userinfo")
    await sign_in(client, browser, VISITOR.openid)
    resp = await client.get("/wechat/tokens/status", headers={"X-Admin-Key": ADMIN_KEY})
    assert resp.status == 200
    text = await resp.text()
    body = await resp.json()
    base = body["baseToken"]
    assert base["appid"] == APPID
    assert base["valid"] is True
    assert base["source"] == "stable"
    assert base["ageSeconds"] == 600
    assert base["remainingSeconds"] == 7200 - 600
    assert base["fetchedBy"] == body["instance"]
    assert base["lastError"] is None
    assert body["webTokens"] == {"active": 2}
    assert body["scheduler"]["running"] is False  # the tests run the jobs themselves

    stored = await client.app[keys.STORE].get_base_token(APPID)
    web_token = await client.app[keys.STORE].get_web_token(FOLLOWER.openid, "snsapi_userinfo")
    for secret in (stored["accessToken"], web_token["accessToken"], web_token["refreshToken"]):
        assert secret not in text
    assert signed_in["token"] not in text

    emulator.faults.set("errcode", errcode=45009, paths=["cgi-bin/stable_token"])
    clock.advance(7200 - 600 - 100)
    await keeper.renew_if_due()
    after = await (
        await client.get("/wechat/tokens/status", headers={"X-Admin-Key": ADMIN_KEY})
    ).json()
    assert after["baseToken"]["lastError"]["errcode"] == 45009
    assert after["baseToken"]["backoffUntil"] is not None
    assert after["baseToken"]["consecutiveFailures"] == 1
    assert after["baseToken"]["valid"] is True  # the old token still has 100 s


async def test_the_scheduler_starts_and_stops_with_the_app(make_client):
    client = await make_client(token_upkeep=True)
    scheduler = client.app[keys.SCHEDULER]
    assert scheduler.running
    assert {job.id for job in scheduler.get_jobs()} == {"base_token", "jsapi_ticket", "web_tokens"}
    await client.close()
    assert not scheduler.running


async def test_no_sweep_job_when_web_tokens_are_not_kept_alive(make_client):
    client = await make_client(token_upkeep=True, web_token_keep_alive="none")
    jobs = {job.id for job in client.app[keys.SCHEDULER].get_jobs()}
    assert jobs == {"base_token", "jsapi_ticket"}
