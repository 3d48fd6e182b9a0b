"""GET /wechat/jwt: the code exchange against the emulator, the store, the JWT, every failure."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime

import jwt as pyjwt
import pytest

from flows import (
    APPID,
    JWT_SECRET,
    REDIRECT_URI,
    assert_error_shape,
    authorize_at_wechat,
    sign_in,
    signed,
    start_sign_in,
)
from service import keys
from service.app_jwt.signing_keys import secret_key
from service.sandbox import SANDBOX_USERS
from service.wechat.xml import build_message

FOLLOWER = SANDBOX_USERS[0]


def decode(token: str) -> dict:
    return pyjwt.decode(
        token, JWT_SECRET, algorithms=["HS256"], audience="wechat-oa-auth", issuer="wechat-oa-auth"
    )


async def test_base_sign_in_returns_the_jwt_and_the_remembered_redirect_uri(client, browser):
    url = await start_sign_in(client)
    query = await authorize_at_wechat(browser, url, FOLLOWER.openid)
    resp = await client.get("/wechat/jwt", params=query)
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert set(body) == {
        "token",
        "tokenType",
        "expiresIn",
        "redirectUri",
        "openid",
        "scope",
        "user",
    }
    assert body["tokenType"] == "Bearer"
    assert body["expiresIn"] == 3600
    assert body["redirectUri"] == REDIRECT_URI
    assert body["openid"] == FOLLOWER.openid
    assert body["scope"] == "snsapi_base"
    assert body["user"]["openid"] == FOLLOWER.openid
    # snsapi_base gives WeChat no right to the profile.
    assert "nickname" not in body["user"]


async def test_jwt_claims(client, browser, clock):
    body = await sign_in(client, browser, FOLLOWER.openid, "snsapi_userinfo")
    claims = decode(body["token"])
    assert claims["iss"] == "wechat-oa-auth"
    assert claims["aud"] == "wechat-oa-auth"
    assert claims["sub"] == FOLLOWER.openid
    assert claims["scope"] == "snsapi_userinfo"
    assert claims["unionid"] == FOLLOWER.unionid
    assert claims["appid"] == APPID  # the account the openid belongs to
    assert claims["iat"] == int(clock.now())
    assert claims["exp"] == claims["iat"] + 3600
    assert len(claims["jti"]) >= 16
    assert pyjwt.get_unverified_header(body["token"])["alg"] == "HS256"
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(
            body["token"],
            "another-secret-of-thirty-two-bytes-xx",
            algorithms=["HS256"],
            audience="wechat-oa-auth",
        )


async def test_each_sign_in_has_its_own_jti(client, browser):
    first = await sign_in(client, browser, FOLLOWER.openid)
    second = await sign_in(client, browser, FOLLOWER.openid)
    assert decode(first["token"])["jti"] != decode(second["token"])["jti"]


async def test_userinfo_sign_in_fetches_and_stores_the_profile(client, browser, clock):
    body = await sign_in(client, browser, FOLLOWER.openid, "snsapi_userinfo")
    assert body["user"]["nickname"] == FOLLOWER.nickname
    assert body["user"]["headimgurl"] == FOLLOWER.headimgurl
    assert body["user"]["unionid"] == FOLLOWER.unionid
    store = client.app[keys.STORE]
    user = await store.get_user(FOLLOWER.openid)
    assert user["nickname"] == FOLLOWER.nickname
    assert user["firstLoginAt"].timestamp() == pytest.approx(clock.now(), abs=0.01)
    token = await store.get_web_token(FOLLOWER.openid, "snsapi_userinfo")
    assert token["status"] == "active"
    assert token["accessToken"] and token["refreshToken"]
    assert token["accessTokenExpiresAt"].timestamp() == pytest.approx(clock.now() + 7200, abs=1)
    assert token["refreshTokenExpiresAt"].timestamp() == pytest.approx(
        clock.now() + 30 * 86400, abs=1
    )


async def test_second_login_keeps_first_login_and_moves_last_login(client, browser, clock):
    await sign_in(client, browser, FOLLOWER.openid, "snsapi_userinfo")
    first_time = clock.now()
    clock.advance(3600)
    await sign_in(client, browser, FOLLOWER.openid, "snsapi_base")
    user = await client.app[keys.STORE].get_user(FOLLOWER.openid)
    assert user["firstLoginAt"].timestamp() == pytest.approx(first_time, abs=0.01)
    assert user["lastLoginAt"].timestamp() == pytest.approx(clock.now(), abs=0.01)
    assert user["loginCount"] == 2
    # The profile from the userinfo sign-in is kept by a later silent one.
    assert user["nickname"] == FOLLOWER.nickname


async def test_a_replayed_state_is_refused(client, browser):
    url = await start_sign_in(client)
    query = await authorize_at_wechat(browser, url, FOLLOWER.openid)
    assert (await client.get("/wechat/jwt", params=query)).status == 200
    replay = await client.get("/wechat/jwt", params=query)
    assert replay.status == 400
    body = await replay.json()
    # Told apart from an expired or unknown state by details.field, its fieldValue when.
    assert_error_shape(body, 400, "INVALID_STATE", "state.usedAt")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["details"]["fieldValue"])
    assert "already used" in body["message"]


async def test_concurrent_requests_with_one_state_let_exactly_one_through(client, browser):
    url = await start_sign_in(client)
    query = await authorize_at_wechat(browser, url, FOLLOWER.openid)
    answers = await asyncio.gather(*(client.get("/wechat/jwt", params=query) for _ in range(5)))
    assert sorted(r.status for r in answers) == [200, 400, 400, 400, 400]


async def test_an_expired_state_is_refused(client, browser, clock):
    url = await start_sign_in(client)
    query = await authorize_at_wechat(browser, url, FOLLOWER.openid)
    clock.advance(601)
    resp = await client.get("/wechat/jwt", params=query)
    body = await resp.json()
    assert_error_shape(body, 400, "INVALID_STATE", "state.expiresAt")
    expires_at = datetime.fromisoformat(body["details"]["fieldValue"].replace("Z", "+00:00"))
    assert expires_at.timestamp() == pytest.approx(clock.now() - 1, abs=1)
    assert "expired" in body["message"]


async def test_an_unknown_state_is_refused(client, browser):
    url = await start_sign_in(client)
    query = await authorize_at_wechat(browser, url, FOLLOWER.openid)
    resp = await client.get("/wechat/jwt", params={**query, "state": "NoSuchState123"})
    body = await resp.json()
    assert_error_shape(body, 400, "INVALID_STATE", "state")
    assert body["details"]["fieldValue"] == "NoSuchState123"


@pytest.mark.parametrize(
    ("params", "name", "field"),
    [
        ({"code": "abc"}, "MISSING_PARAMETER", "state"),
        ({"state": "abc"}, "MISSING_PARAMETER", "code"),
        ({"code": "abc", "state": "not valid!"}, "INVALID_STATE", "state"),
        ({"code": "abc", "state": "a" * 129}, "INVALID_STATE", "state"),
        ({"code": "<script>", "state": "abc"}, "INVALID_CODE", "code"),
    ],
)
async def test_malformed_input_is_refused(client, params, name, field):
    resp = await client.get("/wechat/jwt", params=params)
    assert resp.status == 400
    assert_error_shape(await resp.json(), 400, name, field)


async def test_a_used_code_is_refused_naming_code(client, browser):
    first_url = await start_sign_in(client)
    query = await authorize_at_wechat(browser, first_url, FOLLOWER.openid)
    assert (await client.get("/wechat/jwt", params=query)).status == 200
    # A second state, but WeChat's code from the first authorization again.
    second_url = await start_sign_in(client)
    second = await authorize_at_wechat(browser, second_url, FOLLOWER.openid)
    resp = await client.get("/wechat/jwt", params={"state": second["state"], "code": query["code"]})
    body = await resp.json()
    assert_error_shape(body, 400, "INVALID_CODE", "code")
    assert "40163" in body["message"]


async def test_an_unknown_or_expired_code_is_refused_naming_code(client, browser, clock):
    url = await start_sign_in(client)
    query = await authorize_at_wechat(browser, url, FOLLOWER.openid)
    clock.advance(301)  # WeChat codes live five minutes
    resp = await client.get("/wechat/jwt", params=query)
    body = await resp.json()
    assert_error_shape(body, 400, "INVALID_CODE", "code")
    assert "40029" in body["message"]


async def test_user_refusal_gives_no_code_and_no_sign_in(client, browser):
    url = await start_sign_in(client, "snsapi_userinfo")
    query = await authorize_at_wechat(browser, url, FOLLOWER.openid, action="deny")
    assert "code" not in query
    resp = await client.get("/wechat/jwt", params=query)
    assert_error_shape(await resp.json(), 400, "MISSING_PARAMETER", "code")
    assert await client.app[keys.STORE].get_user(FOLLOWER.openid) is None


@pytest.mark.parametrize(
    ("fault", "status", "name"),
    [
        ({"kind": "busy"}, 502, "WECHAT_UNAVAILABLE"),
        ({"kind": "http_error", "status": 503}, 502, "WECHAT_UNAVAILABLE"),
        ({"kind": "slow", "delay": 1.0}, 504, "WECHAT_TIMEOUT"),
    ],
)
async def test_wechat_faults_map_to_gateway_errors_and_keep_the_state(
    make_client, browser, emulator, fault, status, name
):
    client = await make_client(wechat_timeout=0.3)
    url = await start_sign_in(client)
    query = await authorize_at_wechat(browser, url, FOLLOWER.openid)
    kind = fault.pop("kind")
    emulator.faults.set(kind, paths=["sns/oauth2/access_token"], count=1, **fault)
    resp = await client.get("/wechat/jwt", params=query)
    assert resp.status == status
    assert_error_shape(await resp.json(), status, name, "errcode" if kind == "busy" else "")
    # WeChat did not take the code, so the same callback can try again and succeed.
    if kind != "slow":
        retry = await client.get("/wechat/jwt", params=query)
        assert retry.status == 200, await retry.text()


async def test_unreachable_wechat_is_502(make_client, browser, closed_port):
    # The browser still reaches the emulator; the service's API calls go to a closed port.
    client = await make_client(wechat_api_base=f"http://127.0.0.1:{closed_port}")
    url = await start_sign_in(client)
    query = await authorize_at_wechat(browser, url, FOLLOWER.openid)
    resp = await client.get("/wechat/jwt", params=query)
    assert resp.status == 502
    assert_error_shape(await resp.json(), 502, "WECHAT_UNAVAILABLE", "")


async def test_a_wrong_secret_is_a_502_that_names_the_errcode(make_client, browser):
    client = await make_client(wechat_secret="ffffffffffffffffffffffffffffffff")
    url = await start_sign_in(client)
    query = await authorize_at_wechat(browser, url, FOLLOWER.openid)
    resp = await client.get("/wechat/jwt", params=query)
    body = await resp.json()
    assert_error_shape(body, 502, "WECHAT_ERROR", "errcode")
    assert body["details"]["fieldValue"] == 40125
    assert "ffffffff" not in await resp.text()


async def test_profile_failure_still_signs_in(client, browser, emulator):
    url = await start_sign_in(client, "snsapi_userinfo")
    query = await authorize_at_wechat(browser, url, FOLLOWER.openid)
    emulator.faults.set("busy", paths=["sns/userinfo"], count=1)
    resp = await client.get("/wechat/jwt", params=query)
    assert resp.status == 200
    body = await resp.json()
    assert body["scope"] == "snsapi_userinfo"
    assert "nickname" not in body["user"]


async def test_the_appid_in_the_url_is_the_configured_one(client):
    url = await start_sign_in(client)
    assert f"appid={APPID}&" in url


def signed_by_us(clock, **claims) -> str:
    """A token signed with the service's own key, with whatever claims a forger chooses."""
    now = int(clock.now())
    base = {
        "iss": "wechat-oa-auth",
        "aud": "wechat-oa-auth",
        "sub": FOLLOWER.openid,
        "iat": now,
        "exp": now + 3600,
        "jti": "f" * 32,
        "scope": "snsapi_base",
    }
    kid = secret_key(JWT_SECRET).kid
    return pyjwt.encode({**base, **claims}, JWT_SECRET, algorithm="HS256", headers={"kid": kid})


async def subscribed_with(client, token: str):
    return await client.get("/wechat/subscribed", headers={"Authorization": f"Bearer {token}"})


async def test_a_token_issued_in_the_future_beyond_a_minute_is_refused(client, clock, emulator):
    ahead = signed_by_us(clock, iat=int(clock.now()) + 120)
    resp = await subscribed_with(client, ahead)
    assert resp.status == 401
    body = await resp.json()
    assert_error_shape(body, 401, "UNAUTHORIZED", "Authorization")
    assert "future" in body["message"]
    assert emulator.stats["cgi-bin/user/info"] == 0
    # Within the minute's leeway (another instance's clock a little ahead) it is fine.
    slightly_ahead = signed_by_us(clock, iat=int(clock.now()) + 30)
    assert (await subscribed_with(client, slightly_ahead)).status == 200
    # And once this clock catches up, the first token is good too.
    clock.advance(61)
    assert (await subscribed_with(client, ahead)).status == 200


@pytest.mark.parametrize("iat", ["1700000000", 1700000000.5, True])
async def test_a_token_whose_iat_is_not_whole_seconds_is_refused(client, clock, emulator, iat):
    resp = await subscribed_with(client, signed_by_us(clock, iat=iat))
    assert resp.status == 401
    assert_error_shape(await resp.json(), 401, "UNAUTHORIZED", "Authorization")
    assert emulator.stats["cgi-bin/user/info"] == 0


async def follow_push(client, clock, openid: str) -> None:
    """WeChat's push of a plain follow (no scene), signed as WeChat signs it in plain mode."""
    xml = build_message(
        {
            "ToUserName": "gh_5a4db0c0ffee",
            "FromUserName": openid,
            "CreateTime": int(clock.now()),
            "MsgType": "event",
            "Event": "subscribe",
        }
    )
    resp = await client.post("/wechat/message", params=signed(clock, openid=openid), data=xml)
    assert resp.status == 200, await resp.text()


async def test_a_follower_first_seen_in_a_push_gets_first_login_at_on_signing_in(
    client, browser, clock
):
    user = SANDBOX_USERS[1]
    await follow_push(client, clock, user.openid)
    store = client.app[keys.STORE]
    followed = await store.get_user(user.openid)
    assert followed["subscribed"] is True
    # Following is not signing in.
    assert "firstLoginAt" not in followed and "loginCount" not in followed
    assert followed["firstSeenAt"].timestamp() == pytest.approx(clock.now(), abs=0.01)
    seen_at = clock.now()

    clock.advance(3600)
    answered = (await sign_in(client, browser, user.openid))["user"]
    assert answered["loginCount"] == 1
    assert answered["firstLoginAt"] == answered["lastLoginAt"]
    stored = await store.get_user(user.openid)
    assert stored["firstLoginAt"].timestamp() == pytest.approx(clock.now(), abs=0.01)
    assert stored["firstSeenAt"].timestamp() == pytest.approx(seen_at, abs=0.01)
    assert stored["loginCount"] == 1
    # A later sign-in keeps the first one.
    first = stored["firstLoginAt"]
    clock.advance(60)
    await sign_in(client, browser, user.openid)
    again = await store.get_user(user.openid)
    assert again["firstLoginAt"] == first
    assert again["loginCount"] == 2
