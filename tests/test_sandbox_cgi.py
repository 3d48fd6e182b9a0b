"""The emulator's cgi-bin side against ../shared/wechat-api.md (§6, §7, §9, §12), over HTTP.

cgi-bin/token, cgi-bin/stable_token, the base access_token checks (on cgi-bin/user/info),
errcode faults and the call counters.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from flows import ADMIN_KEY, APPID, SECRET, assert_error_shape
from service.sandbox import SANDBOX_USERS
from service.sandbox.state import (
    STABLE_FORCE_PER_DAY,
    STABLE_TOKEN_DAILY_QUOTA,
    STABLE_TOKEN_PER_MINUTE,
    TOKEN_DAILY_QUOTA,
)

FOLLOWER, VISITOR, NO_UNIONID, ANONYMOUS = SANDBOX_USERS
BEIJING = timezone(timedelta(hours=8))
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{100,512}")


@pytest.fixture
async def wechat(aiohttp_client, emulator_server):
    return await aiohttp_client(emulator_server)


async def api(wechat, path: str, /, **params: str) -> dict:
    resp = await wechat.get(f"/{path}", params=params)
    assert resp.status == 200
    # wechat-api.md §1: the sns endpoints label their JSON text/plain, the others JSON.
    expected = "text/plain" if path.startswith("sns/") else "application/json; encoding=utf-8"
    assert resp.headers["Content-Type"] == expected
    return await resp.json(content_type=None)


async def post(wechat, path: str, body: object = None, /, *, data: bytes | None = None) -> dict:
    resp = (
        await wechat.post(f"/{path}", json=body)
        if data is None
        else await wechat.post(f"/{path}", data=data)
    )
    assert resp.status == 200
    # wechat-api.md §1: the sns endpoints label their JSON text/plain, the others JSON.
    expected = "text/plain" if path.startswith("sns/") else "application/json; encoding=utf-8"
    assert resp.headers["Content-Type"] == expected
    return await resp.json(content_type=None)


def assert_errcode(body: dict, errcode: int, errmsg: str) -> None:
    assert body["errcode"] == errcode, body
    assert re.fullmatch(
        re.escape(errmsg) + r" rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}", body["errmsg"]
    ), body


async def token(wechat, **overrides: str) -> dict:
    params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    return await api(wechat, "cgi-bin/token", **{**params, **overrides})


async def stable(wechat, force: bool | None = None, **overrides: object) -> dict:
    body: dict[str, object] = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    if force is not None:
        body["force_refresh"] = force
    return await post(wechat, "cgi-bin/stable_token", {**body, **overrides})


async def verdict(wechat, access_token: str) -> int:
    """What WeChat says to this base token on a cgi-bin API: 0 when it is accepted."""
    body = await api(wechat, "cgi-bin/user/info", access_token=access_token, openid=FOLLOWER.openid)
    return body.get("errcode", 0)


def to_next_beijing_midnight(clock, before: float) -> None:
    """Move the clock to `before` seconds ahead of the next 00:00 in Beijing (UTC+8)."""
    now = datetime.fromtimestamp(clock.now(), tz=BEIJING)
    midnight = datetime(now.year, now.month, now.day, tzinfo=BEIJING) + timedelta(days=1)
    clock.advance(midnight.timestamp() - before - clock.now())


# cgi-bin/token (§6)


async def test_token_is_long_and_new_on_every_call(wechat, emulator):
    first, second = await token(wechat), await token(wechat)
    for answer in (first, second):
        assert set(answer) == {"access_token", "expires_in"}
        assert answer["expires_in"] == 7200
        assert TOKEN_PATTERN.fullmatch(answer["access_token"])
    assert first["access_token"] != second["access_token"]
    assert emulator.base_token_valid(first["access_token"])
    assert emulator.base_token_valid(second["access_token"])


async def test_token_lives_7200_seconds(wechat, emulator, clock):
    issued = (await token(wechat))["access_token"]
    clock.advance(7199)
    assert await verdict(wechat, issued) == 0
    clock.advance(1)
    assert await verdict(wechat, issued) == 42001
    assert not emulator.base_token_valid(issued)


async def test_a_new_token_leaves_the_previous_five_minutes(wechat, emulator, clock):
    first = (await token(wechat))["access_token"]
    clock.advance(1000)
    second = (await token(wechat))["access_token"]
    clock.advance(100)
    third = (await token(wechat))["access_token"]  # doesn't give `first` a new five minutes
    clock.advance(199)  # 299 s after `second` was fetched
    assert [await verdict(wechat, t) for t in (first, second, third)] == [0, 0, 0]
    clock.advance(1)
    # §12: superseded, "not latest"; `second` got its 5 minutes from `third`.
    body = await api(wechat, "cgi-bin/user/info", access_token=first, openid=FOLLOWER.openid)
    assert_errcode(body, 40001, "invalid credential, access_token is invalid or not latest")
    assert await verdict(wechat, second) == 0
    clock.advance(100)
    assert await verdict(wechat, second) == 40001
    assert await verdict(wechat, third) == 0
    assert not emulator.base_token_valid(first) and emulator.base_token_valid(third)


async def test_a_new_token_never_extends_the_previous_one(wechat, clock):
    first = (await token(wechat))["access_token"]
    clock.advance(7000)
    await token(wechat)  # min(old expiry, now + 300): the old expiry, 200 s away
    clock.advance(200)
    assert await verdict(wechat, first) == 42001


@pytest.mark.parametrize(
    ("overrides", "errcode", "errmsg"),
    [
        ({"appid": ""}, 41002, "appid missing"),
        ({"appid": "wx0000000000000000"}, 40013, "invalid appid"),
        ({"secret": ""}, 41004, "appsecret missing"),
        ({"secret": "f" * 32}, 40125, "invalid appsecret"),
        ({"grant_type": "authorization_code"}, 40002, "invalid grant_type"),
        ({"grant_type": ""}, 40002, "invalid grant_type"),
    ],
)
async def test_token_errors(wechat, emulator, clock, overrides, errcode, errmsg):
    issued = (await token(wechat))["access_token"]
    assert_errcode(await token(wechat, **overrides), errcode, errmsg)
    clock.advance(300)  # a refused call supersedes nothing
    assert emulator.base_token_valid(issued)


async def test_token_daily_quota_resets_at_midnight_beijing_time(wechat, emulator, clock):
    to_next_beijing_midnight(clock, before=10)
    for _ in range(TOKEN_DAILY_QUOTA - 1):
        emulator.fetch_token(APPID, SECRET, "client_credential")
    last = await token(wechat)  # the 2000th of the day is served
    assert "access_token" in last
    assert_errcode(await token(wechat), 45009, "reach max api daily quota limit")
    assert emulator.base_token_valid(last["access_token"])  # a refusal supersedes nothing
    # stable_token has its own quota (§6: "separate from stable_token").
    assert "access_token" in await stable(wechat)
    clock.advance(9)  # 23:59:59 in Beijing
    assert (await token(wechat))["errcode"] == 45009
    clock.advance(2)  # 00:00:01 in Beijing, 16:00:01 UTC
    assert datetime.fromtimestamp(clock.now(), tz=UTC).hour == 16
    assert "access_token" in await token(wechat)

    for _ in range(TOKEN_DAILY_QUOTA - 1):
        emulator.fetch_token(APPID, SECRET, "client_credential")
    assert (await token(wechat))["errcode"] == 45009
    clock.advance(8 * 3600)  # midnight UTC is not WeChat's day boundary
    assert datetime.fromtimestamp(clock.now(), tz=UTC).hour == 0
    assert (await token(wechat))["errcode"] == 45009
    clock.advance(16 * 3600)
    assert "access_token" in await token(wechat)


# cgi-bin/stable_token (§7)


async def test_stable_token_is_the_same_while_valid(wechat, emulator, clock):
    first = await stable(wechat)
    assert set(first) == {"access_token", "expires_in"}
    assert TOKEN_PATTERN.fullmatch(first["access_token"]) and first["expires_in"] == 7200
    clock.advance(1000)
    again = await stable(wechat, force=False)
    assert again == {"access_token": first["access_token"], "expires_in": 6200}
    assert emulator.base_token_valid(first["access_token"])


async def test_stable_token_renews_in_its_last_five_minutes_and_both_work(wechat, emulator, clock):
    old = await stable(wechat)
    clock.advance(6899)
    assert await stable(wechat) == {"access_token": old["access_token"], "expires_in": 301}
    clock.advance(2)  # 299 s left: a new token
    new = await stable(wechat)
    assert new["access_token"] != old["access_token"] and new["expires_in"] == 7200
    clock.advance(298)  # the old one works until its own end
    assert await verdict(wechat, old["access_token"]) == 0
    assert await stable(wechat) == {"access_token": new["access_token"], "expires_in": 6902}
    clock.advance(1)
    assert await verdict(wechat, old["access_token"]) == 42001
    assert await verdict(wechat, new["access_token"]) == 0


async def test_stable_token_expires_in_is_never_below_300(wechat, emulator, clock):
    seen = []
    for _ in range(3 * 72):
        answer = await stable(wechat)
        assert answer["expires_in"] >= 300
        assert emulator.base_token_valid(answer["access_token"])
        if not seen or seen[-1] != answer["access_token"]:
            seen.append(answer["access_token"])
        clock.advance(100)
    # One token per 6900-7200 s of calls every 100 s over 21,600 s.
    assert len(seen) == 4 and len(set(seen)) == 4


async def test_an_unused_stable_token_expires_and_the_next_call_gets_a_new_one(wechat, clock):
    old = (await stable(wechat))["access_token"]
    clock.advance(8000)
    assert await verdict(wechat, old) == 42001
    new = await stable(wechat)
    assert new["access_token"] != old and new["expires_in"] == 7200


async def test_force_refresh_invalidates_the_previous_token_at_once(wechat, emulator, clock):
    old = (await stable(wechat))["access_token"]
    clock.advance(60)
    forced = await stable(wechat, force=True)
    assert forced["access_token"] != old and forced["expires_in"] == 7200
    assert await verdict(wechat, old) == 40001
    assert not emulator.base_token_valid(old)
    assert (await stable(wechat))["access_token"] == forced["access_token"]


async def test_force_refresh_in_the_overlap_invalidates_both_live_tokens(wechat, clock):
    first = (await stable(wechat))["access_token"]
    clock.advance(7000)
    second = (await stable(wechat))["access_token"]
    assert second != first and await verdict(wechat, first) == 0
    forced = (await stable(wechat, force=True))["access_token"]
    assert [await verdict(wechat, t) for t in (first, second, forced)] == [40001, 40001, 0]


async def test_force_refresh_needs_30_seconds_between_refreshes(wechat, emulator, clock):
    first = await stable(wechat, force=True)
    clock.advance(29)
    # Emulator choice (§7): too early "won't refresh": the unchanged current token.
    assert await stable(wechat, force=True) == {
        "access_token": first["access_token"],
        "expires_in": 7171,
    }
    assert emulator.base_token_valid(first["access_token"])
    clock.advance(1)
    second = await stable(wechat, force=True)
    assert second["access_token"] != first["access_token"]
    assert not emulator.base_token_valid(first["access_token"])


async def test_force_refresh_20_times_a_day(wechat, emulator, clock):
    to_next_beijing_midnight(clock, before=-3600)  # 01:00 in Beijing
    tokens = []
    for _ in range(STABLE_FORCE_PER_DAY):
        tokens.append((await stable(wechat, force=True))["access_token"])
        clock.advance(30)
    assert len(set(tokens)) == STABLE_FORCE_PER_DAY
    refused = await stable(wechat, force=True)
    assert refused["access_token"] == tokens[-1]
    assert emulator.base_token_valid(tokens[-1])
    to_next_beijing_midnight(clock, before=-1)
    renewed = (await stable(wechat, force=True))["access_token"]
    assert renewed != tokens[-1] and not emulator.base_token_valid(tokens[-1])


@pytest.mark.parametrize(
    ("body", "errcode", "errmsg"),
    [
        ({"appid": ""}, 41002, "appid missing"),
        ({"appid": "wx0000000000000000"}, 40013, "invalid appid"),
        ({"secret": None}, 41004, "appsecret missing"),
        ({"secret": "f" * 32}, 40125, "invalid appsecret"),
        ({"grant_type": "authorization_code"}, 40002, "invalid grant_type"),
        ({"force_refresh": "true"}, 47001, "data format error"),
        ({"appid": 123}, 47001, "data format error"),
    ],
)
async def test_stable_token_errors(wechat, body, errcode, errmsg):
    assert_errcode(await stable(wechat, **body), errcode, errmsg)


@pytest.mark.parametrize("raw", [b"grant_type=client_credential", b"[1, 2]", b"", b"\xff{"])
async def test_stable_token_wants_a_json_object(wechat, raw):
    assert_errcode(await post(wechat, "cgi-bin/stable_token", data=raw), 47001, "data format error")


async def test_stable_token_is_post_only_and_says_so_in_errcode_json(wechat, emulator):
    # WeChat's stable_token errcode table: 43002 require POST method; never an HTTP 405.
    params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    for method in ("GET", "PUT"):
        resp = await wechat.request(method, "/cgi-bin/stable_token", params=params)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json; encoding=utf-8"
        assert_errcode(await resp.json(content_type=None), 43002, "require POST method")
    assert emulator.stats["cgi-bin/stable_token"] == 2
    assert "access_token" in await stable(wechat)  # POST still works


async def test_stable_token_daily_quota_covers_both_modes(wechat, emulator, clock):
    to_next_beijing_midnight(clock, before=3600)
    for _ in range(STABLE_TOKEN_DAILY_QUOTA - 2):
        emulator.use_daily_quota("cgi-bin/stable_token", STABLE_TOKEN_DAILY_QUOTA)
    assert "access_token" in await stable(wechat)
    assert "access_token" in await stable(wechat, force=True)  # the 500,000th
    assert_errcode(await stable(wechat), 45009, "reach max api daily quota limit")
    assert (await stable(wechat, force=True))["errcode"] == 45009
    assert "access_token" in await token(wechat)  # cgi-bin/token counts apart
    clock.advance(3600)
    assert "access_token" in await stable(wechat)


async def test_stable_token_allows_10000_calls_a_minute(wechat, emulator, clock):
    clock.advance(60 - clock.now() % 60 + 1)
    for _ in range(STABLE_TOKEN_PER_MINUTE - 1):
        emulator.count_call("cgi-bin/stable_token", STABLE_TOKEN_PER_MINUTE)
    assert "access_token" in await stable(wechat)
    over = await stable(wechat, force=True)
    assert over["errcode"] == 45011
    assert "access_token" in await token(wechat)
    clock.advance(60)
    assert "access_token" in await stable(wechat)


async def test_the_two_kinds_of_token_never_touch_each_other(wechat, emulator, clock):
    plain = (await token(wechat))["access_token"]
    stable_one = (await stable(wechat))["access_token"]
    newer_plain = (await token(wechat))["access_token"]
    assert (await stable(wechat))["access_token"] == stable_one  # token didn't renew it
    clock.advance(300)
    assert await verdict(wechat, plain) == 40001  # superseded by newer_plain only
    assert await verdict(wechat, stable_one) == 0
    clock.advance(30)
    forced = (await stable(wechat, force=True))["access_token"]
    assert await verdict(wechat, newer_plain) == 0  # force refresh leaves cgi-bin/token's alone
    assert await verdict(wechat, forced) == 0
    assert await verdict(wechat, stable_one) == 40001
    assert emulator.base_token_valid(newer_plain) and emulator.base_token_valid(forced)


# The base access_token checks, seen on cgi-bin/user/info (§9, §12)


async def web_access_token(wechat) -> str:
    query = (
        f"appid={APPID}&redirect_uri={quote('https://app.example.com/cb', safe='')}"
        f"&response_type=code&scope=snsapi_userinfo&state=s"
        f"&sandbox_openid={FOLLOWER.openid}&sandbox_action=allow"
    )
    resp = await wechat.get(f"/connect/oauth2/authorize?{query}", allow_redirects=False)
    code = re.search(r"code=(\w+)", resp.headers["Location"]).group(1)
    grant = await api(
        wechat,
        "sns/oauth2/access_token",
        appid=APPID,
        secret=SECRET,
        code=code,
        grant_type="authorization_code",
    )
    return grant["access_token"]


async def test_base_token_checks(wechat, emulator, clock):
    async def user_info(access_token: str) -> dict:
        return await api(
            wechat, "cgi-bin/user/info", access_token=access_token, openid=FOLLOWER.openid
        )

    assert_errcode(await user_info(""), 41001, "access_token missing")
    invalid = "invalid credential, access_token is invalid or not latest"
    assert_errcode(await user_info("NoSuchToken"), 40001, invalid)
    # §2: a web access_token "cannot be used on cgi-bin APIs".
    web_token = await web_access_token(wechat)
    assert_errcode(await user_info(web_token), 40001, invalid)
    assert not emulator.base_token_valid(web_token)
    # ...nor a base token on sns/* (it is no user's web grant).
    base = (await token(wechat))["access_token"]
    sns = await api(wechat, "sns/userinfo", access_token=base, openid=FOLLOWER.openid)
    assert sns["errcode"] == 40001
    assert (await user_info(base))["subscribe"] == 1
    clock.advance(7200)
    assert_errcode(await user_info(base), 42001, "access_token expired")


# cgi-bin/user/info (§9)


async def user_info(wechat, openid: str | None) -> dict:
    access_token = (await stable(wechat))["access_token"]
    params = {"access_token": access_token, "lang": "zh_CN"}
    if openid is not None:
        params["openid"] = openid
    return await api(wechat, "cgi-bin/user/info", **params)


async def test_user_info_of_followers_without_nickname_or_avatar(wechat):
    body = await user_info(wechat, FOLLOWER.openid)
    assert body == {
        "subscribe": 1,
        "openid": FOLLOWER.openid,
        "nickname": "",
        "sex": 0,
        "language": "",
        "city": "",
        "province": "",
        "country": "",
        "headimgurl": "",
        "subscribe_time": 1704067200,
        "unionid": FOLLOWER.unionid,
        "remark": "",
        "groupid": 0,
        "tagid_list": [],
        "subscribe_scene": "ADD_SCENE_QR_CODE",
        "qr_scene": 0,
        "qr_scene_str": "",
    }
    unbound = await user_info(wechat, NO_UNIONID.openid)
    assert "unionid" not in unbound
    assert unbound["subscribe"] == 1 and unbound["subscribe_scene"] == "ADD_SCENE_SEARCH"
    assert unbound["subscribe_time"] == NO_UNIONID.subscribe_time


async def test_user_info_of_users_who_do_not_follow(wechat):
    assert await user_info(wechat, VISITOR.openid) == {
        "subscribe": 0,
        "openid": VISITOR.openid,
        "unionid": VISITOR.unionid,
        "tagid_list": [],
    }
    assert await user_info(wechat, ANONYMOUS.openid) == {
        "subscribe": 0,
        "openid": ANONYMOUS.openid,
        "tagid_list": [],
    }


@pytest.mark.parametrize(
    ("openid", "errcode", "errmsg"),
    [
        ("oSbxNobodyWithThisOpenid0000", 40003, "invalid openid"),
        (FOLLOWER.unionid, 40003, "invalid openid"),  # §9: a unionid is no openid
        ("", 41009, "missing openid"),
        (None, 41009, "missing openid"),
    ],
)
async def test_user_info_errors(wechat, openid, errcode, errmsg):
    assert_errcode(await user_info(wechat, openid), errcode, errmsg)


# Faults and counters


async def test_errcode_faults_answer_wechats_errmsg(wechat, emulator, clock):
    issued = (await token(wechat))["access_token"]
    resp = await wechat.post(
        "/_sandbox/faults",
        json={"kind": "errcode", "errcode": 40164, "paths": ["/cgi-bin/token"], "count": 1},
    )
    assert resp.status == 201
    assert await resp.json() == {
        "kind": "errcode",
        "paths": ["cgi-bin/token"],
        "count": 1,
        "delay": 0.0,
        "status": 500,
        "errcode": 40164,
    }
    assert_errcode(
        await token(wechat), 40164, "invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1, not in whitelist"
    )
    clock.advance(300)  # the faulted call issued nothing, so it superseded nothing
    assert emulator.base_token_valid(issued)
    assert "access_token" in await token(wechat)  # count 1: used up

    await wechat.post(
        "/_sandbox/faults",
        json={"kind": "errcode", "errcode": 45009, "paths": ["cgi-bin/stable_token"]},
    )
    for _ in range(2):
        assert_errcode(await stable(wechat), 45009, "reach max api daily quota limit")
    emulator.faults.clear()
    emulator.faults.set("errcode", errcode=40001, paths=["cgi-bin/user/info"], count=1)
    emulator.faults.set("busy", paths=["cgi-bin/user/info"], count=1)
    body = await user_info(wechat, FOLLOWER.openid)
    assert_errcode(body, 40001, "invalid credential, access_token is invalid or not latest")
    assert_errcode(await user_info(wechat, FOLLOWER.openid), -1, "system error")
    assert (await user_info(wechat, FOLLOWER.openid))["subscribe"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "errcode"},
        {"kind": "errcode", "errcode": 0},
        {"kind": "errcode", "errcode": "40001"},
        {"kind": "errcode", "errcode": True},
        {"kind": "errcode", "errcode": 40001.0},
        {"kind": "busy", "errcode": 40001},
    ],
)
async def test_bad_errcode_faults_are_400s(wechat, body):
    resp = await wechat.post("/_sandbox/faults", json=body)
    assert_error_shape(await resp.json(), 400, "INVALID_PARAMETER", "errcode")
    assert await (await wechat.get("/_sandbox/faults")).json() == {"faults": []}


async def test_stats_count_every_call_received(wechat, emulator):
    await token(wechat)
    await token(wechat, secret="wrong")
    await stable(wechat)
    await post(wechat, "cgi-bin/stable_token", data=b"not json")
    emulator.faults.set("errcode", errcode=-1, paths=["cgi-bin/stable_token"], count=1)
    emulator.faults.set("http_error", paths=["cgi-bin/user/info"], count=1)
    assert (await stable(wechat))["errcode"] == -1
    assert (await wechat.get("/cgi-bin/user/info")).status == 500
    await api(wechat, "cgi-bin/user/info", access_token="x", openid=FOLLOWER.openid)
    await wechat.get("/cgi-bin/stable_token")  # 43002: WeChat received it, so it counts
    stats = await (await wechat.get("/_stats")).json()
    assert stats == {
        "calls": {"cgi-bin/token": 2, "cgi-bin/stable_token": 4, "cgi-bin/user/info": 2}
    }


async def test_the_home_page_lists_the_cgi_bin_endpoints(wechat):
    page = await (await wechat.get("/")).text()
    for endpoint in ("cgi-bin/token", "cgi-bin/stable_token", "cgi-bin/user/info", "errcode"):
        assert endpoint in page


# The account's IP whitelist (§6, §7)


async def set_whitelist(wechat, addresses, expect: int = 200) -> dict:
    resp = await wechat.put("/_sandbox/ip-whitelist", json={"addresses": addresses})
    assert resp.status == expect, await resp.text()
    return await resp.json()


async def test_a_configured_whitelist_refuses_other_callers_on_both_token_paths(wechat, emulator):
    assert await (await wechat.get("/_sandbox/ip-whitelist")).json() == {"addresses": []}
    assert "access_token" in await token(wechat)  # none configured: nobody refused
    await set_whitelist(wechat, ["203.0.113.7"])
    refused = "invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1, not in whitelist"
    assert_errcode(await token(wechat), 40164, refused)
    assert_errcode(await stable(wechat), 40164, refused)
    assert_errcode(await token(wechat, secret="wrong"), 40164, refused)  # before the secret
    await set_whitelist(wechat, ["203.0.113.7", "127.0.0.1"])  # the caller listed: let through
    assert "access_token" in await token(wechat)
    assert "access_token" in await stable(wechat)
    assert await (await wechat.get("/_sandbox/ip-whitelist")).json() == {
        "addresses": ["203.0.113.7", "127.0.0.1"]
    }
    await set_whitelist(wechat, [])
    assert emulator.config.ip_whitelist == ()


async def test_the_whitelist_is_not_checked_on_apis_that_take_a_token(wechat):
    issued = (await token(wechat))["access_token"]
    await set_whitelist(wechat, ["203.0.113.7"])
    answer = await api(wechat, "cgi-bin/user/info", access_token=issued, openid=FOLLOWER.openid)
    assert answer["subscribe"] == 1


@pytest.mark.parametrize(
    "body",
    [{"addresses": ["1.2.3"]}, {"addresses": "1.2.3.4"}, {"addresses": [1]}, {"other": []}],
)
async def test_a_bad_whitelist_is_refused_in_the_error_shape(wechat, emulator, body):
    resp = await wechat.put("/_sandbox/ip-whitelist", json=body)
    field = "other" if "other" in body else "addresses"
    assert_error_shape(await resp.json(), 400, "INVALID_PARAMETER", field)
    assert emulator.config.ip_whitelist == ()


def test_the_command_line_takes_a_whitelist():
    from service.sandbox.__main__ import main

    with pytest.raises(SystemExit):
        main(["--ip-whitelist", "203.0.113.7,1.2.3"])  # a bad entry stops it at once


def spawn_emulator(log: Path) -> subprocess.Popen:
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "service.sandbox", "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


async def test_the_emulator_alone_binds_any_free_port_and_logs_the_real_one(tmp_path):
    """`python -m service.sandbox --port 0`: the log names the port the kernel gave, and it
    answers there (another program's tests start it this way, beside their own servers)."""
    log = tmp_path / "emulator.log"
    process = spawn_emulator(log)
    try:
        for _ in range(600):
            text = await asyncio.to_thread(log.read_text)
            found = re.search(r"authorize at (http://127\.0\.0\.1:(\d+))/", text)
            if found or process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        assert found, text
        assert int(found.group(2)) != 0
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{found.group(1)}/_sandbox/users") as resp,
        ):
            assert resp.status == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_the_service_reports_a_whitelist_refusal_and_recovers_once_listed(
    client, wechat, clock
):
    """What an operator sees when the account's whitelist leaves the service's address out."""
    await set_whitelist(wechat, ["203.0.113.7"])
    ready = await client.get("/readyz")
    assert ready.status == 503
    body = await ready.json()
    assert body["details"]["field"] == "base_token"
    assert "40164" in body["message"]
    status = await client.get("/wechat/tokens/status", headers={"X-Admin-Key": ADMIN_KEY})
    last_error = (await status.json())["baseToken"]["lastError"]
    assert last_error["errcode"] == 40164
    assert "127.0.0.1" in last_error["errmsg"]

    await set_whitelist(wechat, ["203.0.113.7", "127.0.0.1"])  # the operator adds it
    clock.advance(301)  # past the back-off a configuration refusal earns
    assert (await client.get("/readyz")).status == 200
