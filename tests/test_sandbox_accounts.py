"""Several Official Accounts on one emulator (SandboxConfig.more_accounts), over HTTP.

WeChat serves every account from one API host: the appid a call names, or the access_token
issued to an appid, says which account it is for; each account has its own secret, tokens,
quotas, followers, QR codes, tickets and server; a person has another openid in every account
and one unionid across the Open Platform account's apps (§ numbers: ../shared/wechat-api.md).

Account A is the first (the existing SandboxConfig fields: plain pushes signed with TOKEN_A);
B is a SandboxAccount in safe mode with its own token and EncodingAESKey. Two small receivers
stand for the two accounts' servers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from flows import APPID, SECRET, assert_error_shape
from service.clock import ManualClock
from service.logs import AccessLogger
from service.sandbox import (
    SANDBOX_KEY,
    SANDBOX_USERS,
    SNAPSHOT_USER,
    SandboxAccount,
    create_sandbox_app,
)
from service.sandbox.__main__ import main as emulator_main
from service.sandbox.__main__ import parse_account
from service.sandbox.jsapi import signature_of
from service.sandbox.state import (
    DEFAULT_WEBSITE_APPID,
    TOKEN_DAILY_QUOTA,
    SandboxConfig,
    derived_original_id,
)
from service.sandbox.users import account_openid, account_unionid, website_unionid
from service.wechat.crypto import MessageCrypto
from service.wechat.signature import wechat_signature
from service.wechat.xml import parse_message

FOLLOWER, VISITOR, NO_UNIONID, ANONYMOUS = SANDBOX_USERS
APPID_B = "wx0b0b0b0b0b0b0b0b"
SECRET_B = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"
TOKEN_A, TOKEN_B = "tokenofaccounta", "tokenofaccountb"
AES_KEY_B = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
ORIGINAL_ID_A = "gh_5a4db0c0ffee"
ORIGINAL_ID_B = "gh_0b0b0b0b0b0b"
CALLBACK = "https://app.example.com/cb"
PAGE_URL = "https://app.example.com/page?x=1"


@dataclass
class Server:
    """One account's server: records each push, checked and decrypted with *its* settings."""

    token: str
    appid: str
    aes_key: str = ""
    received: list[dict[str, str]] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        raw = (await request.read()).decode()
        self.queries.append(q)
        if wechat_signature(self.token, q["timestamp"], q["nonce"]) != q["signature"]:
            self.refused.append("signature")
            return web.Response(status=403)
        fields = parse_message(raw)
        if self.aes_key:  # safe mode: msg_signature over Encrypt, then decrypt (§11)
            crypto = MessageCrypto(self.token, self.aes_key, self.appid)
            if not crypto.check_signature(
                q["msg_signature"], q["timestamp"], q["nonce"], fields["Encrypt"]
            ):
                self.refused.append("msg_signature")
                return web.Response(status=403)
            fields = parse_message(crypto.decrypt(fields["Encrypt"]))
        self.received.append(fields)
        return web.Response(text="success")


@dataclass
class World:
    wechat: TestClient  # the emulator's client: the API host, the browser and the phone
    config: SandboxConfig
    a: Server
    b: Server
    clock: ManualClock


@pytest.fixture
async def world(aiohttp_server, aiohttp_client, clock) -> World:
    a = Server(TOKEN_A, APPID)
    b = Server(TOKEN_B, APPID_B, AES_KEY_B)
    receivers = web.Application()
    receivers.router.add_post("/wechat/message", a.handle)
    receivers.router.add_post("/wechat/message/second", b.handle)
    receiving = await aiohttp_server(receivers)
    config = SandboxConfig(
        appid=APPID,
        secret=SECRET,
        authorized_domain="app.example.com",
        token=TOKEN_A,
        message_url=str(receiving.make_url("/wechat/message")),
        more_accounts=(
            SandboxAccount(
                appid=APPID_B,
                secret=SECRET_B,
                token=TOKEN_B,
                aes_key=AES_KEY_B,
                message_url=str(receiving.make_url("/wechat/message/second")),
                message_mode="safe",
                original_id=ORIGINAL_ID_B,
            ),
        ),
    )

    async def passing(seconds: float) -> None:
        clock.advance(seconds)

    server = await aiohttp_server(
        create_sandbox_app(config, clock, sleep=passing), access_log_class=AccessLogger
    )
    return World(await aiohttp_client(server), config, a, b, clock)


async def get(world: World, path: str, /, **params: str) -> dict:
    resp = await world.wechat.get(f"/{path}", params=params)
    assert resp.status == 200
    return await resp.json(content_type=None)


async def post(world: World, path: str, body: object, expect: int = 200) -> dict:
    resp = await world.wechat.post(f"/{path}", json=body)
    assert resp.status == expect, await resp.text()
    return await resp.json(content_type=None)


async def base_token(world: World, appid: str, secret: str) -> str:
    answer = await get(
        world, "cgi-bin/token", grant_type="client_credential", appid=appid, secret=secret
    )
    assert "access_token" in answer, answer
    return answer["access_token"]


async def user_info(world: World, token: str, openid: str) -> dict:
    return await get(world, "cgi-bin/user/info", access_token=token, openid=openid)


# account_openid needs only the config's appids: the first account's and the website app's.
OPENIDS = SandboxConfig(appid=APPID, secret=SECRET, authorized_domain="x")


def in_b(user) -> str:
    """The person's openid in account B."""
    return account_openid(user, APPID_B, OPENIDS)


async def authorize(world: World, appid: str, user=FOLLOWER, scope: str = "snsapi_userinfo") -> str:
    """The person allows `appid`'s authorize page: the code it redirects with."""
    path = (
        f"/connect/oauth2/authorize?appid={appid}&redirect_uri={quote(CALLBACK, safe='')}"
        f"&response_type=code&scope={scope}&state=s1"
        f"&sandbox_openid={user.openid}&sandbox_action=allow"
    )
    resp = await world.wechat.get(path, allow_redirects=False)
    assert resp.status == 302, await resp.text()
    return parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]


async def exchange(world: World, code: str, appid: str, secret: str) -> dict:
    return await get(
        world,
        "sns/oauth2/access_token",
        appid=appid,
        secret=secret,
        code=code,
        grant_type="authorization_code",
    )


# Base tokens: each account's own (§6, §7, §9)


async def test_each_account_gets_base_tokens_with_its_own_appid_and_secret(world):
    assert (await base_token(world, APPID, SECRET)) != (await base_token(world, APPID_B, SECRET_B))
    wrong = await get(
        world, "cgi-bin/token", grant_type="client_credential", appid=APPID_B, secret=SECRET
    )
    assert wrong["errcode"] == 40125  # §6: another account's secret is a wrong secret
    stable = await post(
        world,
        "cgi-bin/stable_token",
        {"grant_type": "client_credential", "appid": APPID_B, "secret": SECRET_B},
    )
    assert "access_token" in stable
    refused = await post(
        world,
        "cgi-bin/stable_token",
        {"grant_type": "client_credential", "appid": APPID, "secret": SECRET_B},
    )
    assert refused["errcode"] == 40125


async def test_a_token_of_a_acts_for_a_only(world):
    """cgi-bin calls name no appid: the token does. §9: user/info answers 40003 "invalid
    openid" for another app's openid, so A's token cannot read B's followers, nor B's A's."""
    token_a = await base_token(world, APPID, SECRET)
    token_b = await base_token(world, APPID_B, SECRET_B)
    assert (await user_info(world, token_a, FOLLOWER.openid))["openid"] == FOLLOWER.openid
    assert (await user_info(world, token_a, in_b(FOLLOWER)))["errcode"] == 40003
    assert (await user_info(world, token_b, FOLLOWER.openid))["errcode"] == 40003
    answer = await user_info(world, token_b, in_b(FOLLOWER))
    assert (answer["openid"], answer["subscribe"]) == (in_b(FOLLOWER), 1)


async def test_refetching_one_accounts_token_leaves_the_others_alone(world):
    """§6: fetching again invalidates the previous token (after a 5-minute overlap): of that
    account only."""
    first_a = await base_token(world, APPID, SECRET)
    first_b = await base_token(world, APPID_B, SECRET_B)
    await base_token(world, APPID_B, SECRET_B)  # B's refetch supersedes B's first token
    world.clock.advance(301)
    assert (await user_info(world, first_b, in_b(FOLLOWER)))["errcode"] == 40001
    assert (await user_info(world, first_a, FOLLOWER.openid))["subscribe"] == 1


async def test_quotas_are_counted_per_account(world):
    """WeChat's quotas are per account (§6: cgi-bin/token 2000 a day): A spending its own
    leaves B's untouched."""
    for _ in range(TOKEN_DAILY_QUOTA):
        await base_token(world, APPID, SECRET)
    over = await get(
        world, "cgi-bin/token", grant_type="client_credential", appid=APPID, secret=SECRET
    )
    assert over["errcode"] == 45009
    assert await base_token(world, APPID_B, SECRET_B)  # B still has its 2000
    calls_b = await get(world, "_stats", appid=APPID_B)
    assert calls_b == {"calls": {"cgi-bin/token": 1}}
    calls_a = await get(world, "_stats", appid=APPID)
    assert calls_a == {"calls": {"cgi-bin/token": TOKEN_DAILY_QUOTA + 1}}


async def test_the_minute_limit_is_counted_per_account(world):
    """§12 45011: the per-minute limit of sns/* (50,000, §2) is the app's own."""
    state = world.wechat.server.app[SANDBOX_KEY]
    for _ in range(50_000):
        state.count_call("sns/oauth2/access_token", 50_000, APPID)
    code_a = await authorize(world, APPID)
    code_b = await authorize(world, APPID_B)
    assert (await exchange(world, code_a, APPID, SECRET))["errcode"] == 45011
    assert "access_token" in await exchange(world, code_b, APPID_B, SECRET_B)


async def test_each_account_has_its_own_ip_whitelist(world):
    resp = await world.wechat.put(
        "/_sandbox/ip-whitelist", json={"appid": APPID_B, "addresses": ["203.0.113.7"]}
    )
    assert resp.status == 200
    refused = await get(
        world, "cgi-bin/token", grant_type="client_credential", appid=APPID_B, secret=SECRET_B
    )
    assert refused["errcode"] == 40164  # §6: B's whitelist leaves the caller out
    assert await base_token(world, APPID, SECRET)  # A has none configured
    assert await get(world, "_sandbox/ip-whitelist", appid=APPID_B) == {
        "addresses": ["203.0.113.7"]
    }
    assert await get(world, "_sandbox/ip-whitelist") == {"addresses": []}


# Web authorization (§1-§5): each account's codes, openids


async def test_a_code_is_exchanged_only_with_its_own_accounts_appid_and_secret(world):
    code_b = await authorize(world, APPID_B)
    assert (await exchange(world, code_b, APPID, SECRET))["errcode"] == 40029  # A: unknown
    assert (await exchange(world, code_b, APPID_B, SECRET))["errcode"] == 40125
    answer = await exchange(world, code_b, APPID_B, SECRET_B)
    assert answer["openid"] == in_b(FOLLOWER) != FOLLOWER.openid
    assert answer["unionid"] == FOLLOWER.unionid  # one unionid across the apps
    code_a = await authorize(world, APPID)
    assert (await exchange(world, code_a, APPID_B, SECRET_B))["errcode"] == 40029
    assert (await exchange(world, code_a, APPID, SECRET))["openid"] == FOLLOWER.openid


async def test_sns_calls_answer_for_the_app_the_person_authorized(world):
    answer = await exchange(world, await authorize(world, APPID_B), APPID_B, SECRET_B)
    token, openid = answer["access_token"], answer["openid"]
    info = await get(world, "sns/userinfo", access_token=token, openid=openid)
    assert (info["openid"], info["unionid"], info["nickname"]) == (
        in_b(FOLLOWER),
        FOLLOWER.unionid,
        FOLLOWER.nickname,
    )
    wrong = await get(world, "sns/userinfo", access_token=token, openid=FOLLOWER.openid)
    assert wrong["errcode"] == 40003  # §4: the openid in A is not this grant's
    assert await get(world, "sns/auth", access_token=token, openid=openid) == {
        "errcode": 0,
        "errmsg": "ok",
    }
    refresh = answer["refresh_token"]
    other = await get(
        world,
        "sns/oauth2/refresh_token",
        appid=APPID,
        grant_type="refresh_token",
        refresh_token=refresh,
    )
    assert other["errcode"] == 40030  # A does not know B's refresh_token (§3)
    renewed = await get(
        world,
        "sns/oauth2/refresh_token",
        appid=APPID_B,
        grant_type="refresh_token",
        refresh_token=refresh,
    )
    assert renewed["openid"] == openid


async def test_a_person_has_a_different_openid_in_every_app_and_one_unionid(world):
    """WeChat's UnionID mechanism: one openid per app, one unionid across the Open Platform
    account's apps. The people without a unionid in A (A not bound) get the website-only one
    in B and in the website app: linked there, unknown to A."""
    token_a = await base_token(world, APPID, SECRET)
    token_b = await base_token(world, APPID_B, SECRET_B)
    listed = await get(world, "_sandbox/api/users", appid=APPID_B)
    by_person = {user["sandbox_openid"]: user for user in listed["users"]}
    for person in (*SANDBOX_USERS, SNAPSHOT_USER):
        openid_b = account_openid(person, APPID_B, world.config)
        assert by_person[person.openid]["openid"] == openid_b  # the helper: the emulator's
        assert re.fullmatch(r"o[A-Za-z0-9_-]{27}", openid_b)
        web = account_openid(person, DEFAULT_WEBSITE_APPID, world.config)
        assert len({person.openid, openid_b, web}) == 3
    for person in SANDBOX_USERS:
        seen_a = await user_info(world, token_a, person.openid)
        seen_b = await user_info(world, token_b, in_b(person))
        assert seen_b["unionid"] == website_unionid(person)
        assert seen_b["unionid"] == account_unionid(person, APPID_B, world.config)
        if person.unionid:
            assert seen_a["unionid"] == seen_b["unionid"] == person.unionid
        else:
            assert "unionid" not in seen_a
    assert account_unionid(NO_UNIONID, APPID, world.config) is None


async def test_the_authorize_page_serves_each_account_and_no_other_app(world):
    path = (
        f"/connect/oauth2/authorize?appid={APPID_B}&redirect_uri={quote(CALLBACK, safe='')}"
        f"&response_type=code&scope=snsapi_userinfo&state=s1&sandbox_openid={VISITOR.openid}"
    )
    consent = await (await world.wechat.get(path)).text()
    assert f"<code>{APPID_B}</code>" in consent  # 应用 … 申请
    # The person as B knows them (the form keeps the sandbox openid the script gave).
    assert f"<code>{in_b(VISITOR)}</code>" in consent
    assert f"<code>{VISITOR.openid}</code>" not in consent
    website = path.replace(APPID_B, DEFAULT_WEBSITE_APPID)
    page = await (await world.wechat.get(website)).text()
    assert "40013" in page  # the website app signs in through qrconnect only


# Following: each account's own followers (§9, §10)


async def test_follows_are_kept_apart(world):
    token_a = await base_token(world, APPID, SECRET)
    token_b = await base_token(world, APPID_B, SECRET_B)
    # Emulator choice: every account starts followed as the first one is.
    assert (await user_info(world, token_b, in_b(VISITOR)))["subscribe"] == 0
    answer = await post(world, "_sandbox/api/follow", {"openid": VISITOR.openid, "appid": APPID_B})
    assert (answer["appid"], answer["openid"], answer["delivered"]) == (
        APPID_B,
        in_b(VISITOR),
        True,
    )
    assert (await user_info(world, token_b, in_b(VISITOR)))["subscribe"] == 1
    assert (await user_info(world, token_a, VISITOR.openid))["subscribe"] == 0
    await post(world, "_sandbox/api/unfollow", {"openid": FOLLOWER.openid})  # A, the default
    assert (await user_info(world, token_a, FOLLOWER.openid))["subscribe"] == 0
    assert (await user_info(world, token_b, in_b(FOLLOWER)))["subscribe"] == 1
    # B's follow went to B's server only, A's unfollow to A's only.
    assert [f["FromUserName"] for f in world.b.received] == [in_b(VISITOR)]
    assert [(f["Event"], f["FromUserName"]) for f in world.a.received] == [
        ("unsubscribe", FOLLOWER.openid)
    ]


async def test_a_scan_of_bs_code_arrives_at_bs_server_signed_with_bs_token(world):
    token_b = await base_token(world, APPID_B, SECRET_B)
    code = await post(
        world,
        f"cgi-bin/qrcode/create?access_token={token_b}",
        {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "b1"}}},
    )
    answer = await post(
        world, "_sandbox/api/scan", {"openid": VISITOR.openid, "ticket": code["ticket"]}
    )
    assert (answer["appid"], answer["event"], answer["eventKey"]) == (
        APPID_B,
        "subscribe",
        "qrscene_b1",
    )
    assert world.a.received == [] and world.b.refused == []
    [pushed] = world.b.received  # signature with TOKEN_B, msg_signature, AES with B's key
    assert (pushed["ToUserName"], pushed["FromUserName"], pushed["Ticket"]) == (
        ORIGINAL_ID_B,
        in_b(VISITOR),
        code["ticket"],
    )
    [query] = world.b.queries
    assert query["openid"] == in_b(VISITOR)
    assert query["signature"] != wechat_signature(TOKEN_A, query["timestamp"], query["nonce"])
    # user/info in B says they followed through the code; A knows nothing of it.
    seen = await user_info(world, token_b, in_b(VISITOR))
    assert (seen["subscribe"], seen["qr_scene_str"]) == (1, "b1")
    token_a = await base_token(world, APPID, SECRET)
    assert (await user_info(world, token_a, VISITOR.openid))["subscribe"] == 0
    pushes = (await get(world, "_sandbox/api/pushes"))["pushes"]
    assert [(p["appid"], p["toUserName"], p["openid"]) for p in pushes] == [
        (APPID_B, ORIGINAL_ID_B, in_b(VISITOR))
    ]
    assert (await get(world, "_sandbox/api/pushes", appid=APPID))["pushes"] == []


async def test_scans_of_each_accounts_code_go_to_that_account(world):
    token_a = await base_token(world, APPID, SECRET)
    code_a = await post(
        world,
        f"cgi-bin/qrcode/create?access_token={token_a}",
        {"action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 7}}},
    )
    # A code names its account: saying another one is refused, and nothing is pushed.
    refused = await post(
        world,
        "_sandbox/api/scan",
        {"openid": FOLLOWER.openid, "ticket": code_a["ticket"], "appid": APPID_B},
        expect=400,
    )
    assert_error_shape(refused, 400, "INVALID_PARAMETER", "ticket")
    answer = await post(
        world, "_sandbox/api/scan", {"openid": FOLLOWER.openid, "url": code_a["url"]}
    )
    assert (answer["appid"], answer["event"]) == (APPID, "SCAN")
    assert [f["ToUserName"] for f in world.a.received] == [ORIGINAL_ID_A]
    assert world.b.received == []


async def test_messages_go_to_the_account_they_are_addressed_to(world):
    answer = await post(
        world,
        "_sandbox/api/push",
        {"openid": in_b(FOLLOWER), "appid": APPID_B, "msgType": "text", "Content": "hi B"},
    )
    assert (answer["appid"], answer["delivered"]) == (APPID_B, True)
    [message] = world.b.received
    assert (message["ToUserName"], message["FromUserName"], message["Content"]) == (
        ORIGINAL_ID_B,
        in_b(FOLLOWER),
        "hi B",
    )
    # An openid of B is nobody in A; an appid that is no Official Account's is refused.
    unknown = await post(
        world,
        "_sandbox/api/push",
        {"openid": in_b(FOLLOWER), "msgType": "text", "Content": "hi A"},
        expect=400,
    )
    assert_error_shape(unknown, 400, "INVALID_PARAMETER", "openid")
    for appid in ("wx_nobody", DEFAULT_WEBSITE_APPID):
        body = {"openid": FOLLOWER.openid, "appid": appid}
        refused = await post(world, "_sandbox/api/follow", body, expect=400)
        assert_error_shape(refused, 400, "INVALID_PARAMETER", "appid")
    assert world.a.received == []


async def test_an_account_without_a_message_url_refuses_pushes_alone(
    aiohttp_server, aiohttp_client
):
    a = Server(TOKEN_A, APPID)
    receivers = web.Application()
    receivers.router.add_post("/wechat/message", a.handle)
    receiving = await aiohttp_server(receivers)
    config = SandboxConfig(
        appid=APPID,
        secret=SECRET,
        authorized_domain="app.example.com",
        token=TOKEN_A,
        message_url=str(receiving.make_url("/wechat/message")),
        more_accounts=(SandboxAccount(appid=APPID_B, secret=SECRET_B),),  # no server
    )
    wechat = await aiohttp_client(await aiohttp_server(create_sandbox_app(config, ManualClock())))
    resp = await wechat.post(
        "/_sandbox/api/follow", json={"openid": VISITOR.openid, "appid": APPID_B}
    )
    body = await resp.json()
    assert_error_shape(body, 409, "NO_MESSAGE_URL", "message_url")
    assert APPID_B in body["message"]
    resp = await wechat.post("/_sandbox/api/follow", json={"openid": VISITOR.openid})
    assert resp.status == 200 and (await resp.json())["delivered"]
    assert [f["Event"] for f in a.received] == ["subscribe"]


# JS-SDK: each account's jsapi_ticket


async def test_a_jsapi_signature_for_b_verifies_with_bs_ticket_and_not_as(world):
    tickets = {}
    for appid, secret in ((APPID, SECRET), (APPID_B, SECRET_B)):
        token = await base_token(world, appid, secret)
        answer = await get(world, "cgi-bin/ticket/getticket", access_token=token, type="jsapi")
        tickets[appid] = answer["ticket"]

    async def verify(app_id: str, ticket: str) -> bool:
        config = {"appId": app_id, "url": PAGE_URL, "timestamp": "1700000000", "nonceStr": "n1"}
        signature = signature_of(ticket, "n1", "1700000000", PAGE_URL)
        answer = await post(world, "_sandbox/jssdk/verify", config | {"signature": signature})
        return bool(answer["ok"])

    assert await verify(APPID_B, tickets[APPID_B])
    assert not await verify(APPID_B, tickets[APPID])
    assert not await verify(APPID, tickets[APPID_B])
    assert await verify(APPID, tickets[APPID])


# The phone page: the person picks the account


async def test_the_phone_lets_the_person_choose_the_account(world):
    wechat = world.wechat
    resp = await wechat.post(
        "/_sandbox/users/select", data={"openid": VISITOR.openid}, allow_redirects=False
    )
    assert resp.status == 303
    page = await (await wechat.get("/_sandbox/phone")).text()
    assert re.search(rf'<option value="{APPID}"[^>]* selected', page)
    assert f'<option value="{APPID_B}"' in page and VISITOR.openid in page
    page = await (await wechat.get(f"/_sandbox/phone?appid={APPID_B}")).text()
    assert re.search(rf'<option value="{APPID_B}"[^>]* selected', page)
    assert in_b(VISITOR) in page and ORIGINAL_ID_B in page
    assert f'name="appid" value="{APPID_B}"' in page  # its forms carry the account on
    resp = await wechat.post("/_sandbox/phone/follow", data={"appid": APPID_B})
    assert resp.status == 200
    assert [f["FromUserName"] for f in world.b.received] == [in_b(VISITOR)]
    assert world.a.received == []
    resp = await wechat.post(
        "/_sandbox/phone/push", data={"appid": APPID_B, "kind": "text", "content": "你好"}
    )
    assert resp.status == 200
    assert world.b.received[-1]["Content"] == "你好"


# Configuration


def test_original_ids_are_derived_from_the_appid_when_not_given():
    account = SandboxAccount(appid=APPID_B, secret=SECRET_B)
    assert account.original_id == derived_original_id(APPID_B)
    assert re.fullmatch(r"gh_[0-9a-f]{12}", account.original_id)
    other = SandboxAccount(appid="wx0c0c0c0c0c0c0c0c", secret=SECRET_B)
    assert other.original_id != account.original_id


@pytest.mark.parametrize(
    ("more", "website_appid"),
    [
        ((SandboxAccount(appid=APPID, secret=SECRET_B),), DEFAULT_WEBSITE_APPID),
        ((SandboxAccount(appid=DEFAULT_WEBSITE_APPID, secret=SECRET_B),), DEFAULT_WEBSITE_APPID),
        (
            (
                SandboxAccount(appid=APPID_B, secret=SECRET_B),
                SandboxAccount(appid=APPID_B, secret="other"),
            ),
            "",
        ),
        ((SandboxAccount(appid=APPID_B, secret=""),), DEFAULT_WEBSITE_APPID),
        (
            (SandboxAccount(appid=APPID_B, secret=SECRET_B, original_id=ORIGINAL_ID_A),),
            DEFAULT_WEBSITE_APPID,
        ),
    ],
    ids=["first-appid", "website-appid", "twice", "no-secret", "same-original-id"],
)
def test_every_account_needs_its_own_appid_and_original_id(more, website_appid):
    with pytest.raises(ValueError, match=r"own appid|own original_id|appid and secret"):
        SandboxConfig(
            appid=APPID,
            secret=SECRET,
            authorized_domain="x",
            website_appid=website_appid,
            more_accounts=more,
        )


@pytest.mark.parametrize(
    "settings",
    [
        {"message_mode": "loud"},
        {"message_mode": "safe"},  # no EncodingAESKey
        {"aes_key": "short"},
        {"message_url": "ftp://example.com/push"},
        {"ip_whitelist": ("1.2.3",)},
    ],
)
def test_more_accounts_are_checked_as_the_first_one_is(settings):
    with pytest.raises(ValueError, match=APPID_B):
        SandboxAccount(appid=APPID_B, secret=SECRET_B, **settings)


def test_the_command_line_takes_more_accounts():
    plain = parse_account(f"{APPID_B}:{SECRET_B}")
    assert (plain.appid, plain.secret, plain.message_mode, plain.message_url) == (
        APPID_B,
        SECRET_B,
        "plain",
        "",
    )
    full = parse_account(f"{APPID_B}:{SECRET_B}:{TOKEN_B}:{AES_KEY_B}:http://127.0.0.1:3000/m/b")
    assert (full.token, full.aes_key, full.message_url, full.message_mode) == (
        TOKEN_B,
        AES_KEY_B,
        "http://127.0.0.1:3000/m/b",  # the URL keeps its own colons
        "safe",
    )
    keyed = parse_account(
        f"appid={APPID_B},secret={SECRET_B},token={TOKEN_B},aes_key={AES_KEY_B},"
        f"message_mode=compatible,original_id={ORIGINAL_ID_B},ip_whitelist=203.0.113.7;10.0.0.1"
    )
    assert (keyed.message_mode, keyed.original_id, keyed.ip_whitelist) == (
        "compatible",
        ORIGINAL_ID_B,
        ("203.0.113.7", "10.0.0.1"),
    )
    for bad in (APPID_B, f"{APPID_B}:{SECRET_B}:t:not-a-key", f"appid={APPID_B},colour=red"):
        with pytest.raises(SystemExit):
            emulator_main(["--port", "0", "--account", bad])
    with pytest.raises(SystemExit):  # the first account's appid again
        emulator_main(["--appid", APPID, "--account", f"{APPID}:{SECRET_B}"])


async def test_made_up_followers_for_load_tests_follow_the_first_account(
    aiohttp_client, emulator_server
):
    """POST /_sandbox/api/followers: people cgi-bin/user/info knows as followers, so a load test
    can scan sign-in codes as many different people (one person's events in one second are one
    event to a server de-duplicating by FromUserName + CreateTime)."""
    phone = await aiohttp_client(emulator_server)
    resp = await phone.post("/_sandbox/api/followers", json={"count": 3})
    assert resp.status == 200
    openids = (await resp.json())["openids"]
    assert len(set(openids)) == 3 and all(len(o) == 28 for o in openids)
    listed = {
        u["openid"]: u for u in (await (await phone.get("/_sandbox/api/users")).json())["users"]
    }
    assert all(listed[o]["subscribed"] for o in openids)
    bad = await phone.post("/_sandbox/api/followers", json={"count": 0})
    assert bad.status == 400
