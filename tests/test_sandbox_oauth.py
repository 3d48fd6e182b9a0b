"""The emulator against WeChat's documentation (../shared/wechat-api.md §0-§5), over HTTP."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from yarl import URL

from flows import APPID, SECRET, assert_error_shape
from service.clock import SystemClock
from service.sandbox import SANDBOX_USERS, SNAPSHOT_USER
from service.sandbox.state import SNS_CALLS_PER_MINUTE

FOLLOWER, VISITOR, NO_UNIONID = SANDBOX_USERS[0], SANDBOX_USERS[1], SANDBOX_USERS[2]
APP_CALLBACK = "https://app.example.com/wechat-callback"


@pytest.fixture
async def wechat(aiohttp_client, emulator_server):
    """A client of the emulator that keeps cookies, like the user's WeChat browser."""
    return await aiohttp_client(emulator_server)


def authorize_path(
    scope: str = "snsapi_base",
    state: str = "abc123",
    redirect_uri: str = APP_CALLBACK,
    appid: str = APPID,
    extra: str = "",
) -> str:
    return (
        f"/connect/oauth2/authorize?appid={appid}&redirect_uri={quote(redirect_uri, safe='')}"
        f"&response_type=code&scope={scope}&state={state}{extra}"
    )


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def get_code(wechat, user=FOLLOWER, scope="snsapi_base") -> str:
    extra = f"&sandbox_openid={user.openid}&sandbox_action=allow"
    resp = await wechat.get(authorize_path(scope, extra=extra), allow_redirects=False)
    assert resp.status == 302, await resp.text()
    return query_of(resp.headers["Location"])["code"]


async def api(wechat, path: str, /, **params: str) -> dict:
    resp = await wechat.get(f"/{path}", params=params)
    assert resp.status == 200
    # wechat-api.md §1: the sns endpoints label their JSON text/plain, the others JSON.
    expected = "text/plain" if path.startswith("sns/") else "application/json; encoding=utf-8"
    assert resp.headers["Content-Type"] == expected
    return await resp.json(content_type=None)


async def exchange(wechat, code: str, /, **overrides: str) -> dict:
    params = {"appid": APPID, "secret": SECRET, "code": code, "grant_type": "authorization_code"}
    return await api(wechat, "sns/oauth2/access_token", **{**params, **overrides})


def assert_errcode(body: dict, errcode: int, errmsg: str) -> None:
    assert body["errcode"] == errcode, body
    # §0: WeChat appends a trace id to every errmsg; clients must key on errcode.
    assert re.fullmatch(
        re.escape(errmsg) + r" rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}", body["errmsg"]
    )


# /connect/oauth2/authorize


async def test_snsapi_base_redirects_at_once_with_code_and_state(wechat):
    resp = await wechat.get(
        authorize_path(extra=f"&forcePopup=false&sandbox_openid={FOLLOWER.openid}"),
        allow_redirects=False,
    )
    assert resp.status == 302
    location = resp.headers["Location"]
    assert location.startswith(APP_CALLBACK + "?")
    query = query_of(location)
    assert query["state"] == "abc123"
    assert re.fullmatch(r"[A-Za-z0-9]{32}", query["code"])


async def test_redirect_uri_query_is_kept(wechat):
    path = authorize_path(
        redirect_uri=APP_CALLBACK + "?tenant=7", extra=f"&sandbox_openid={FOLLOWER.openid}"
    )
    resp = await wechat.get(path, allow_redirects=False)
    query = query_of(resp.headers["Location"])
    assert query["tenant"] == "7" and query["code"] and query["state"] == "abc123"


async def test_every_authorization_gets_a_new_code(wechat):
    assert await get_code(wechat) != await get_code(wechat)


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        (authorize_path(redirect_uri="https://evil.example.net/cb"), "10003"),
        (authorize_path(redirect_uri="https://app.example.com.evil.net/cb"), "10003"),
        (authorize_path(redirect_uri="javascript:alert(1)//app.example.com"), "10003"),
        (authorize_path(scope="snsapi_login"), "10005"),
        (authorize_path(scope=""), "10010"),
        (authorize_path(appid="wx0000000000000000"), "invalid appid"),
        (authorize_path(state="a" * 129), "state 参数错误"),
        (authorize_path(state="has-dash"), "state 参数错误"),
        (
            "/connect/oauth2/authorize?redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb"
            f"&appid={APPID}&response_type=code&scope=snsapi_base&state=a",
            "参数错误",
        ),
        (authorize_path(extra="&state=again"), "参数错误"),
        (authorize_path().replace("response_type=code", "response_type=token"), "参数错误"),
        (authorize_path(extra="&sandbox_openid=oNobody"), "Unknown sandbox user"),
    ],
)
async def test_refusals_are_pages_that_never_go_back_to_the_app(wechat, path, shown):
    resp = await wechat.get(path + f"&sandbox_openid={FOLLOWER.openid}", allow_redirects=False)
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    assert shown in page
    assert "app.example.com/wechat-callback?" not in page


async def test_without_a_chosen_user_the_picker_comes_first_and_returns(wechat):
    path = authorize_path()
    resp = await wechat.get(path, allow_redirects=False)
    assert resp.status == 302
    picker = resp.headers["Location"]
    assert picker.startswith("/_sandbox/users?next=")
    page = await (await wechat.get(picker)).text()
    assert VISITOR.nickname in page and 'name="next"' in page

    chosen = await wechat.post(
        "/_sandbox/users/select",
        data={"openid": VISITOR.openid, "next": query_of(picker)["next"]},
        allow_redirects=False,
    )
    assert chosen.status == 303
    # Back to the same authorize request (yarl normalizes the escaping on both sides).
    assert URL(chosen.headers["Location"]) == URL(path)
    cookie = chosen.cookies["sandbox_openid"]
    assert cookie.value == VISITOR.openid and cookie["httponly"] and cookie["samesite"] == "Lax"

    again = await wechat.get(path, allow_redirects=False)
    assert again.status == 302
    code = query_of(again.headers["Location"])["code"]
    assert (await exchange(wechat, code))["openid"] == VISITOR.openid


@pytest.mark.parametrize("target", ["https://evil.example.net/", "//evil.example.net/", "/\\evil"])
async def test_the_picker_is_not_an_open_redirect(wechat, target):
    resp = await wechat.post(
        "/_sandbox/users/select",
        data={"openid": FOLLOWER.openid, "next": target},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/_sandbox/users"


async def test_picking_an_unknown_user_is_a_400(wechat):
    resp = await wechat.post("/_sandbox/users/select", data={"openid": "oNobody"})
    assert_error_shape(await resp.json(), 400, "INVALID_PARAMETER", "openid")


async def test_snsapi_userinfo_asks_for_consent_in_a_form_that_keeps_the_order(wechat):
    resp = await wechat.get(
        authorize_path("snsapi_userinfo", extra=f"&sandbox_openid={FOLLOWER.openid}"),
        allow_redirects=False,
    )
    assert resp.status == 200
    page = await resp.text()
    assert FOLLOWER.nickname in page
    names = re.findall(r'<input type="hidden" name="([a-z_]+)"', page)
    assert names == ["appid", "redirect_uri", "response_type", "scope", "state", "sandbox_openid"]
    assert 'name="sandbox_action" value="allow"' in page
    assert 'name="sandbox_action" value="deny"' in page
    switch = re.search(r'href="([^"]+)">Use another sandbox user', page).group(1)
    back_to = URL(query_of(switch.replace("&amp;", "&"))["next"])
    assert "sandbox_openid" not in back_to.query and back_to.query["scope"] == "snsapi_userinfo"


async def test_deny_goes_back_with_state_and_no_code(wechat):
    extra = f"&sandbox_openid={FOLLOWER.openid}&sandbox_action=deny"
    resp = await wechat.get(authorize_path("snsapi_userinfo", extra=extra), allow_redirects=False)
    assert resp.status == 302
    assert query_of(resp.headers["Location"]) == {"state": "abc123"}


async def test_close_never_goes_back(wechat):
    extra = f"&sandbox_openid={FOLLOWER.openid}&sandbox_action=close"
    resp = await wechat.get(authorize_path("snsapi_userinfo", extra=extra), allow_redirects=False)
    assert resp.status == 200
    assert "closed" in await resp.text()


# sns/oauth2/access_token


async def test_code_exchange_answers_wechats_fields(wechat):
    base = await exchange(wechat, await get_code(wechat))
    assert set(base) == {"access_token", "expires_in", "refresh_token", "openid", "scope"}
    assert base["expires_in"] == 7200 and base["scope"] == "snsapi_base"
    assert base["openid"] == FOLLOWER.openid
    # unionid only for snsapi_userinfo, and only for users of a bound account.
    userinfo = await exchange(wechat, await get_code(wechat, scope="snsapi_userinfo"))
    assert userinfo["unionid"] == FOLLOWER.unionid and userinfo["scope"] == "snsapi_userinfo"
    unbound = await exchange(wechat, await get_code(wechat, NO_UNIONID, "snsapi_userinfo"))
    assert "unionid" not in unbound


@pytest.mark.parametrize(
    ("overrides", "errcode", "errmsg"),
    [
        ({"appid": "wx0000000000000000"}, 40013, "invalid appid"),
        ({"appid": ""}, 41002, "appid missing"),
        ({"secret": "f" * 32}, 40125, "invalid appsecret"),
        ({"secret": ""}, 41004, "appsecret missing"),
        ({"grant_type": "client_credential"}, 40002, "invalid grant_type"),
        ({"code": ""}, 41008, "missing code"),
        ({"code": "NoSuchCode"}, 40029, "invalid code"),
    ],
)
async def test_code_exchange_errors(wechat, overrides, errcode, errmsg):
    code = await get_code(wechat)
    assert_errcode(await exchange(wechat, code, **overrides), errcode, errmsg)
    # A refused exchange leaves the code usable.
    assert "access_token" in await exchange(wechat, code)


async def test_a_code_is_single_use(wechat):
    code = await get_code(wechat)
    assert "access_token" in await exchange(wechat, code)
    assert_errcode(await exchange(wechat, code), 40163, "code been used")


async def test_a_code_lives_five_minutes(wechat, clock):
    code, late = await get_code(wechat), await get_code(wechat)
    clock.advance(299)
    assert "access_token" in await exchange(wechat, code)
    clock.advance(1)
    assert_errcode(await exchange(wechat, late), 40029, "invalid code")


# sns/oauth2/refresh_token


async def refresh(wechat, refresh_token: str, /, **overrides: str) -> dict:
    params = {"appid": APPID, "grant_type": "refresh_token", "refresh_token": refresh_token}
    return await api(wechat, "sns/oauth2/refresh_token", **{**params, **overrides})


async def test_refresh_while_valid_keeps_the_token_and_resets_its_life(wechat, clock):
    grant = await exchange(wechat, await get_code(wechat))
    clock.advance(7000)
    renewed = await refresh(wechat, grant["refresh_token"])
    assert renewed["access_token"] == grant["access_token"]
    assert renewed["refresh_token"] == grant["refresh_token"]
    assert renewed["expires_in"] == 7200
    clock.advance(7000)  # past the original expiry, inside the renewed one
    auth = await api(wechat, "sns/auth", access_token=grant["access_token"], openid=FOLLOWER.openid)
    assert auth == {"errcode": 0, "errmsg": "ok"}


async def test_refresh_after_expiry_issues_a_new_token_and_retires_the_old(wechat, clock):
    grant = await exchange(wechat, await get_code(wechat, scope="snsapi_userinfo"))
    clock.advance(7200)
    expired = await api(
        wechat, "sns/userinfo", access_token=grant["access_token"], openid=FOLLOWER.openid
    )
    assert_errcode(expired, 42001, "access_token expired")
    renewed = await refresh(wechat, grant["refresh_token"])
    assert renewed["access_token"] != grant["access_token"]
    assert set(renewed) == {"access_token", "expires_in", "refresh_token", "openid", "scope"}
    assert renewed["scope"] == "snsapi_userinfo"
    old = await api(
        wechat, "sns/userinfo", access_token=grant["access_token"], openid=FOLLOWER.openid
    )
    assert old["errcode"] == 40001
    fresh = await api(
        wechat, "sns/userinfo", access_token=renewed["access_token"], openid=FOLLOWER.openid
    )
    assert fresh["nickname"] == FOLLOWER.nickname


async def test_the_refresh_token_dies_after_thirty_days_whatever_happens(wechat, clock):
    grant = await exchange(wechat, await get_code(wechat))
    for _ in range(14):
        clock.advance(2 * 86400)
        assert "access_token" in await refresh(wechat, grant["refresh_token"])
    clock.advance(2 * 86400)  # day 30: refreshing never extended the deadline
    assert_errcode(await refresh(wechat, grant["refresh_token"]), 42002, "refresh_token timeout")


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [
        ({"refresh_token": "NoSuchToken"}, 40030),
        ({"refresh_token": ""}, 41003),
        ({"grant_type": "authorization_code"}, 40002),
        ({"appid": "wx0000000000000000"}, 40013),
    ],
)
async def test_refresh_errors(wechat, overrides, errcode):
    grant = await exchange(wechat, await get_code(wechat))
    body = await refresh(wechat, grant["refresh_token"], **overrides)
    assert body["errcode"] == errcode


# sns/userinfo and sns/auth


async def test_userinfo_answers_the_profile_as_wechat_does_since_2021(wechat):
    grant = await exchange(wechat, await get_code(wechat, scope="snsapi_userinfo"))
    body = await api(
        wechat,
        "sns/userinfo",
        access_token=grant["access_token"],
        openid=FOLLOWER.openid,
        lang="zh_CN",
    )
    assert body["openid"] == FOLLOWER.openid
    assert body["nickname"] == FOLLOWER.nickname
    assert body["headimgurl"] == FOLLOWER.headimgurl
    assert body["unionid"] == FOLLOWER.unionid
    assert (body["sex"], body["province"], body["city"], body["country"]) == (0, "", "", "")
    assert body["privilege"] == []


async def test_userinfo_needs_a_snsapi_userinfo_token(wechat):
    grant = await exchange(wechat, await get_code(wechat))
    body = await api(
        wechat, "sns/userinfo", access_token=grant["access_token"], openid=FOLLOWER.openid
    )
    assert_errcode(body, 48001, "api unauthorized")


@pytest.mark.parametrize(
    ("path", "token", "openid", "errcode"),
    [
        ("sns/userinfo", "NoSuchToken", FOLLOWER.openid, 40001),
        ("sns/userinfo", "", FOLLOWER.openid, 41001),
        ("sns/userinfo", None, VISITOR.openid, 40003),
        ("sns/auth", "NoSuchToken", FOLLOWER.openid, 40014),
        ("sns/auth", None, VISITOR.openid, 40003),
    ],
)
async def test_token_checks(wechat, path, token, openid, errcode):
    grant = await exchange(wechat, await get_code(wechat, scope="snsapi_userinfo"))
    body = await api(
        wechat, path, access_token=grant["access_token"] if token is None else token, openid=openid
    )
    assert body["errcode"] == errcode


async def test_sns_auth_sees_expiry(wechat, clock):
    grant = await exchange(wechat, await get_code(wechat))
    clock.advance(7200)
    body = await api(wechat, "sns/auth", access_token=grant["access_token"], openid=FOLLOWER.openid)
    assert_errcode(body, 42001, "access_token expired")


# Quotas, faults, counters, clock


async def test_fifty_thousand_calls_a_minute_then_45011_until_the_next_minute(
    wechat, emulator, clock
):
    clock.advance(60 - clock.now() % 60)  # the start of a minute
    for _ in range(SNS_CALLS_PER_MINUTE - 1):
        emulator.count_call("sns/auth", SNS_CALLS_PER_MINUTE)
    last = await api(wechat, "sns/auth", access_token="x", openid="y")
    assert last["errcode"] == 40014  # the 50,000th call is still served
    over = await api(wechat, "sns/auth", access_token="x", openid="y")
    assert over["errcode"] == 45011
    # Other paths have their own allowance.
    assert (await api(wechat, "sns/userinfo", access_token="x", openid="y"))["errcode"] == 40001
    clock.advance(60)
    assert (await api(wechat, "sns/auth", access_token="x", openid="y"))["errcode"] == 40014


async def test_faults_over_http_and_the_call_counters(wechat):
    resp = await wechat.post(
        "/_sandbox/faults", json={"kind": "busy", "paths": ["sns/auth"], "count": 2}
    )
    assert resp.status == 201
    for _ in range(2):
        assert_errcode(
            await api(wechat, "sns/auth", access_token="x", openid="y"), -1, "system error"
        )
    assert (await api(wechat, "sns/auth", access_token="x", openid="y"))["errcode"] == 40014
    await wechat.post("/_sandbox/faults", json={"kind": "http_error", "status": 503})
    assert (await wechat.get("/sns/userinfo")).status == 503
    assert (await wechat.get("/sns/auth")).status == 503
    assert (await wechat.delete("/_sandbox/faults")).status == 204
    assert (await api(wechat, "sns/auth", access_token="x", openid="y"))["errcode"] == 40014

    stats = await (await wechat.get("/_stats")).json()
    assert stats == {"calls": {"sns/auth": 5, "sns/userinfo": 1}}
    assert (await wechat.delete("/_stats")).status == 204
    assert await (await wechat.get("/_stats")).json() == {"calls": {}}


async def test_a_slow_fault_delays_the_answer_but_not_the_work(wechat, emulator):
    code = await get_code(wechat)
    emulator.faults.set("slow", paths=["sns/oauth2/access_token"], count=1, delay=0.05)
    assert "access_token" in await exchange(wechat, code)
    assert (await exchange(wechat, code))["errcode"] == 40163


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "explode"}, "kind"),
        ({"kind": "busy", "count": 0}, "count"),
        ({"kind": "busy", "count": "two"}, "count"),
        ({"kind": "slow"}, "delay"),
        ({"kind": "http_error", "status": 200}, "status"),
        ({"kind": "busy", "paths": "sns/auth"}, "paths"),
        ({"kind": "busy", "path": ["sns/auth"]}, "path"),
        ([1, 2], "body"),
    ],
)
async def test_bad_fault_requests_are_400s(wechat, body, field):
    resp = await wechat.post("/_sandbox/faults", json=body)
    assert resp.status == 400
    assert_error_shape(await resp.json(), 400, "INVALID_PARAMETER", field)
    assert await (await wechat.get("/_sandbox/faults")).json() == {"faults": []}


async def test_the_clock_moves_over_http_only_when_it_is_manual(
    wechat, clock, make_emulator, aiohttp_client
):
    before = clock.now()
    resp = await wechat.post("/_sandbox/clock", json={"advance": 301})
    assert resp.status == 200 and clock.now() == before + 301
    bad = await wechat.post("/_sandbox/clock", json={"advance": -1})
    assert_error_shape(await bad.json(), 400, "INVALID_PARAMETER", "advance")

    live = await aiohttp_client(await make_emulator(clock=SystemClock()))
    refused = await live.post("/_sandbox/clock", json={"advance": 1})
    assert_error_shape(await refused.json(), 409, "CLOCK_NOT_MANUAL", "")


async def test_users_api_and_unknown_paths(wechat):
    users = (await (await wechat.get("/_sandbox/api/users")).json())["users"]
    assert [u["openid"] for u in users] == [u.openid for u in (*SANDBOX_USERS, SNAPSHOT_USER)]
    assert {u["subscribed"] for u in users} == {True, False}
    missing = await wechat.get("/cgi-bin/nothing")
    assert_error_shape(await missing.json(), 404, "NOT_FOUND", "path")
    wrong_method = await wechat.post("/sns/userinfo")
    assert_error_shape(await wrong_method.json(), 405, "METHOD_NOT_ALLOWED", "path")


async def test_the_home_page_lists_endpoints_and_users(wechat):
    page = await (await wechat.get("/")).text()
    assert "sns/oauth2/access_token" in page and APPID in page
    css = await wechat.get("/_sandbox/static/sandbox.css")
    assert css.status == 200


async def test_grants_seed_made_up_users_whose_tokens_refresh(wechat):
    resp = await wechat.post("/_sandbox/grants", json={"count": 3, "scope": "snsapi_userinfo"})
    assert resp.status == 200
    grants = (await resp.json())["grants"]
    assert len({g["openid"] for g in grants}) == 3
    assert all(g["scope"] == "snsapi_userinfo" and g["expires_in"] == 7200 for g in grants)
    renewed = await refresh(wechat, grants[0]["refresh_token"])
    assert renewed["access_token"] == grants[0]["access_token"]


@pytest.mark.parametrize(
    ("body", "field"), [({"count": 0}, "count"), ({"count": 1, "scope": "snsapi_login"}, "scope")]
)
async def test_bad_grant_requests_are_400s(wechat, body, field):
    resp = await wechat.post("/_sandbox/grants", json=body)
    assert_error_shape(await resp.json(), 400, "INVALID_PARAMETER", field)
