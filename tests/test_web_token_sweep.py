"""The web-token sweep: users' tokens refreshed before they expire, once, within WeChat's rules."""

from __future__ import annotations

import asyncio

from flows import sign_in
from service import keys
from service.sandbox import SANDBOX_USERS

REFRESH = "sns/oauth2/refresh_token"


async def sign_in_everyone(client, browser) -> int:
    """Every sandbox user, in both scopes: eight stored web tokens."""
    for user in SANDBOX_USERS:
        for scope in ("snsapi_base", "snsapi_userinfo"):
            await sign_in(client, browser, user.openid, scope)
    return 2 * len(SANDBOX_USERS)


async def web_token(client, user=SANDBOX_USERS[0], scope="snsapi_base") -> dict:
    return await client.app[keys.STORE].get_web_token(user.openid, scope)


async def test_tokens_near_expiry_are_refreshed_and_then_left_alone(
    client, browser, clock, emulator
):
    count = await sign_in_everyone(client, browser)
    sweeper = client.app[keys.ACCOUNTS].default.web_tokens
    assert (await sweeper.sweep()).refreshed == 0  # nothing due yet
    assert emulator.stats[REFRESH] == 0

    clock.advance(7200 - 600)  # inside the 900 s margin
    before = await web_token(client)
    report = await sweeper.sweep()
    assert report.refreshed == count
    assert emulator.stats[REFRESH] == count
    after = await web_token(client)
    # WeChat keeps a still-valid token and resets its life (§3).
    assert after["accessToken"] == before["accessToken"]
    assert after["accessTokenExpiresAt"].timestamp() > before["accessTokenExpiresAt"].timestamp()
    assert after["refreshTokenExpiresAt"] == before["refreshTokenExpiresAt"]

    assert (await sweeper.sweep()).refreshed == 0
    assert emulator.stats[REFRESH] == count


async def test_an_expired_token_is_replaced_and_the_new_one_works(client, browser, clock, emulator):
    await sign_in(client, browser, SANDBOX_USERS[0].openid, "snsapi_userinfo")
    before = await web_token(client, scope="snsapi_userinfo")
    clock.advance(7300)
    assert (await client.app[keys.ACCOUNTS].default.web_tokens.sweep()).refreshed == 1
    after = await web_token(client, scope="snsapi_userinfo")
    assert after["accessToken"] != before["accessToken"]
    profile = await client.app[keys.ACCOUNTS].default.wechat.user_info(
        after["accessToken"], after["openid"]
    )
    assert profile["nickname"] == SANDBOX_USERS[0].nickname


async def test_a_refused_refresh_token_needs_reauthorization_and_is_not_retried(
    client, browser, clock, emulator
):
    await sign_in(client, browser, SANDBOX_USERS[0].openid)
    emulator.faults.set("errcode", errcode=40030, paths=[REFRESH])
    clock.advance(7000)
    report = await client.app[keys.ACCOUNTS].default.web_tokens.sweep()
    assert report.reauth_required == 1
    token = await web_token(client)
    assert token["status"] == "reauth_required"
    assert token["lastError"]["errcode"] == 40030
    emulator.faults.clear()
    clock.advance(600)
    await client.app[keys.ACCOUNTS].default.web_tokens.sweep()
    assert emulator.stats[REFRESH] == 1
    # Signing in again brings it back.
    await sign_in(client, browser, SANDBOX_USERS[0].openid)
    assert (await web_token(client))["status"] == "active"


async def test_a_transient_failure_keeps_the_token_for_the_next_sweep(
    client, browser, clock, emulator
):
    await sign_in(client, browser, SANDBOX_USERS[0].openid)
    emulator.faults.set("busy", paths=[REFRESH], count=1)
    clock.advance(7000)
    sweeper = client.app[keys.ACCOUNTS].default.web_tokens
    assert (await sweeper.sweep()).failed == 1
    assert (await web_token(client))["status"] == "active"
    assert (await sweeper.sweep()).refreshed == 1


async def test_refresh_tokens_run_out_after_thirty_days(client, browser, clock, emulator):
    await sign_in(client, browser, SANDBOX_USERS[0].openid)
    sweeper = client.app[keys.ACCOUNTS].default.web_tokens
    for _ in range(29 * 12):  # every two hours for 29 days
        clock.advance(7200 - 600)
        await sweeper.sweep()
        clock.advance(600)
    assert (await web_token(client))["status"] == "active"
    clock.advance(86400)
    report = await sweeper.sweep()
    assert report.expired == 1
    assert (await web_token(client))["status"] == "reauth_required"


async def test_two_instances_sweeping_at_once_refresh_each_token_once(
    make_client, shared_mongo, browser, clock, emulator
):
    first = await make_client(mongo_client=shared_mongo, web_token_concurrency=3)
    second = await make_client(mongo_client=shared_mongo, web_token_concurrency=3)
    count = await sign_in_everyone(first, browser)
    clock.advance(7000)
    emulator.faults.set("slow", paths=[REFRESH], delay=0.01)  # so the two overlap
    reports = await asyncio.gather(
        first.app[keys.ACCOUNTS].default.web_tokens.sweep(),
        second.app[keys.ACCOUNTS].default.web_tokens.sweep(),
    )
    assert sum(r.refreshed for r in reports) == count
    assert emulator.stats[REFRESH] == count


async def test_keep_alive_recent_skips_users_who_have_not_been_back(
    make_client, browser, clock, emulator
):
    client = await make_client(web_token_recent_days=7)
    await sign_in(client, browser, SANDBOX_USERS[0].openid)
    clock.advance(8 * 86400)
    await sign_in(client, browser, SANDBOX_USERS[1].openid)
    clock.advance(7000)
    report = await client.app[keys.ACCOUNTS].default.web_tokens.sweep()
    assert report.refreshed == 1
    assert (await web_token(client, SANDBOX_USERS[1]))["refreshedAt"] is not None
    assert "refreshedAt" not in await web_token(client, SANDBOX_USERS[0])


async def test_keep_alive_all_and_none(make_client, browser, clock, emulator):
    everyone = await make_client(web_token_keep_alive="all")
    await sign_in(everyone, browser, SANDBOX_USERS[0].openid)
    clock.advance(8 * 86400)
    assert (await everyone.app[keys.ACCOUNTS].default.web_tokens.sweep()).refreshed == 1
    nobody = await make_client(web_token_keep_alive="none")
    await sign_in(nobody, browser, SANDBOX_USERS[1].openid)
    clock.advance(7000)
    assert (await nobody.app[keys.ACCOUNTS].default.web_tokens.sweep()).refreshed == 0
    assert emulator.stats[REFRESH] == 1


async def test_batches_smaller_than_the_collection_still_reach_every_token(
    make_client, browser, clock, emulator
):
    client = await make_client(web_token_batch_size=3, web_token_concurrency=2)
    count = await sign_in_everyone(client, browser)
    clock.advance(7000)
    assert (await client.app[keys.ACCOUNTS].default.web_tokens.sweep()).refreshed == count


async def test_a_sign_in_during_a_slow_refresh_keeps_its_own_token(
    client, browser, clock, emulator, emulator_server
):
    """The sweep read the old token and is waiting for WeChat when the user signs in again;
    the refresh's late answer must not replace the new sign-in's token with the old grant."""
    openid = SANDBOX_USERS[0].openid
    await sign_in(client, browser, openid)
    clock.advance(7200 - 600)
    emulator.faults.set("slow", paths=[REFRESH], delay=0.5, count=1)
    sweep = asyncio.create_task(client.app[keys.ACCOUNTS].default.web_tokens.sweep())
    for _ in range(200):  # until the refresh is under way (claimed, waiting for WeChat)
        if (await web_token(client)).get("claimedBy"):
            break
        await asyncio.sleep(0.01)
    await sign_in(client, browser, openid)
    fresh = await web_token(client)
    report = await sweep
    assert emulator.stats[REFRESH] == 1  # the refresh did reach WeChat
    assert report.refreshed == 0 and report.superseded == 1
    kept = await web_token(client)
    assert kept["refreshToken"] == fresh["refreshToken"]
    assert kept["accessToken"] == fresh["accessToken"]
    assert kept["accessTokenExpiresAt"] == fresh["accessTokenExpiresAt"]
    check = emulator_server.make_url("/sns/auth")  # §5: WeChat says whether a token is good
    async with browser.get(
        check, params={"access_token": kept["accessToken"], "openid": openid}
    ) as r:
        assert await r.json(content_type=None) == {"errcode": 0, "errmsg": "ok"}
    # The new grant is the one refreshed from now on, until its own 30 days are up.
    clock.advance(7200 - 600)
    assert (await client.app[keys.ACCOUNTS].default.web_tokens.sweep()).refreshed == 1
    assert (await web_token(client))["refreshToken"] == fresh["refreshToken"]
