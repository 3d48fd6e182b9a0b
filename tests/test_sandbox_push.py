"""The emulator's event pushes against ../shared/wechat-api.md (§10, §11), over HTTP.

A receiver app stands for the account's server: it checks `signature` and `msg_signature`,
decrypts with MessageCrypto and answers as each test tells it. Scans (subscribe with
qrscene_, SCAN), unsubscribe, the three message modes, retries, which replies count as
delivered, the scripted API's errors and the phone page.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from flows import APPID, SECRET, assert_error_shape
from service.sandbox import SANDBOX_KEY, SANDBOX_USERS, SandboxConfig
from service.sandbox.push import PushRecord
from service.sandbox.state import PUSH_MEMORY
from service.wechat.crypto import MessageCrypto
from service.wechat.signature import wechat_signature
from service.wechat.xml import as_list, build_message, parse_message

FOLLOWER, VISITOR, NO_UNIONID, ANONYMOUS = SANDBOX_USERS
TOKEN = "pushtoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OTHER_AES_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
ORIGINAL_ID = "gh_5a4db0c0ffee"
EVENT_ORDER = ["ToUserName", "FromUserName", "CreateTime", "MsgType", "Event", "EventKey"]
HANG = 0.5  # how long a "hang" reply keeps the request open: well past the push timeout
SHORT_TIMEOUT = 0.05


@dataclass
class Received:
    query: dict[str, str]
    query_keys: list[str]
    body: str
    content_type: str
    fields: dict[str, str]  # the event: parsed, decrypted when encrypted
    outer: dict[str, str]  # the body's own elements


@dataclass
class Receiver:
    """The account's server. `replies` is consumed one per request: a str body, an int HTTP
    status, "hang" (no answer within the push timeout) or a callable(Received) -> str."""

    mode: str = "plain"
    url: str = ""
    token: str = TOKEN
    replies: list[Any] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        q = request.query
        raw = (await request.read()).decode()
        if wechat_signature(self.token, q["timestamp"], q["nonce"]) != q["signature"]:
            self.refused.append("signature")
            return web.Response(status=403, text="bad signature")
        outer = parse_message(raw)
        fields = outer
        if self.mode == "plain":
            assert "encrypt_type" not in q and "msg_signature" not in q
        else:
            assert q["encrypt_type"] == "aes"
            crypto = MessageCrypto(self.token, AES_KEY, APPID)
            if not crypto.check_signature(
                q["msg_signature"], q["timestamp"], q["nonce"], outer["Encrypt"]
            ):
                self.refused.append("msg_signature")
                return web.Response(status=403, text="bad msg_signature")
            fields = parse_message(crypto.decrypt(outer["Encrypt"]))
        entry = Received(
            query=dict(q),
            query_keys=list(q.keys()),
            body=raw,
            content_type=request.headers.get("Content-Type", ""),
            fields=fields,
            outer=outer,
        )
        self.received.append(entry)
        reply = self.replies.pop(0) if self.replies else "success"
        if reply == "hang":
            await asyncio.sleep(HANG)
            return web.Response(text="success")
        if isinstance(reply, int):
            return web.Response(status=reply, text="server error")
        if callable(reply):
            reply = reply(entry)
        return web.Response(text=reply, content_type="text/xml")


@pytest.fixture
async def receiver(aiohttp_server) -> Receiver:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/wechat/message", receiver.handle)
    server = await aiohttp_server(app)
    receiver.url = str(server.make_url("/wechat/message"))
    return receiver


class Pauses(list):
    """The pauses the emulator took between push attempts: taken on the manual clock, at once."""

    def __init__(self, clock) -> None:
        super().__init__()
        self.clock = clock

    async def sleep(self, seconds: float) -> None:
        self.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def pauses(clock) -> Pauses:
    return Pauses(clock)


@pytest.fixture
def make_wechat(make_emulator, aiohttp_client, receiver, pauses) -> Callable:
    """An emulator whose message_url is the receiver: (client, state).

    Not conftest's wired_service, which points the emulator at the service under test: here the
    emulator itself is under test, so it pushes to a receiver that records exactly what arrives
    and answers as each test scripts it, with the account's server settings the test chooses."""

    async def make(
        mode: str = "plain",
        push_timeout: float = 5.0,
        message_url: str | None = None,
        push_retry_delay: float | None = None,
    ):
        receiver.mode = mode
        server = await make_emulator(
            sleep=pauses.sleep,
            token=TOKEN,
            aes_key=AES_KEY,
            message_url=receiver.url if message_url is None else message_url,
            message_mode=mode,
            original_id=ORIGINAL_ID,
            push_timeout=push_timeout,
            push_retry_delay=push_retry_delay,
        )
        return await aiohttp_client(server), server.app[SANDBOX_KEY]

    return make


async def base_token(wechat) -> str:
    params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    resp = await wechat.get("/cgi-bin/token", params=params)
    return (await resp.json(content_type=None))["access_token"]


async def new_code(wechat, action_name: str = "QR_SCENE", scene: int | str = 123) -> dict:
    key = "scene_str" if isinstance(scene, str) else "scene_id"
    body = {"action_name": action_name, "action_info": {"scene": {key: scene}}}
    resp = await wechat.post(
        "/cgi-bin/qrcode/create", params={"access_token": await base_token(wechat)}, json=body
    )
    answer = await resp.json(content_type=None)
    assert "ticket" in answer, answer
    return answer


async def scan(wechat, openid: str, expect: int = 200, **code: str) -> dict:
    resp = await wechat.post("/_sandbox/api/scan", json={"openid": openid, **code})
    assert resp.status == expect, await resp.text()
    return await resp.json()


async def unfollow(wechat, openid: str, expect: int = 200) -> dict:
    resp = await wechat.post("/_sandbox/api/unfollow", json={"openid": openid})
    assert resp.status == expect, await resp.text()
    return await resp.json()


async def user_info(wechat, openid: str) -> dict:
    params = {"access_token": await base_token(wechat), "openid": openid}
    resp = await wechat.get("/cgi-bin/user/info", params=params)
    return await resp.json(content_type=None)


def expected_event(openid: str, created: float, event: str, key: str, **extra: str) -> list:
    return [
        ("ToUserName", ORIGINAL_ID),
        ("FromUserName", openid),
        ("CreateTime", str(int(created))),
        ("MsgType", "event"),
        ("Event", event),
        ("EventKey", key),
        *extra.items(),
    ]


# Scans and unfollows (§10), plain mode


async def test_a_visitor_subscribes_through_the_code_then_scans_it(make_wechat, receiver, clock):
    wechat, emulator = await make_wechat()
    code = await new_code(wechat, "QR_SCENE", 123)
    clock.advance(5)
    answer = await scan(wechat, VISITOR.openid, ticket=code["ticket"])
    assert answer == {
        "appid": APPID,  # the account the push went to, and the person's openid in it
        "openid": VISITOR.openid,
        "event": "subscribe",
        "eventKey": "qrscene_123",
        "delivered": True,
        "attempts": 1,
        "reply": "success",
        "replyFields": None,
        "status": 200,
        "error": "",
    }
    [push] = receiver.received
    assert list(push.fields.items()) == expected_event(
        VISITOR.openid, clock.now(), "subscribe", "qrscene_123", Ticket=code["ticket"]
    )
    assert push.query_keys == ["signature", "timestamp", "nonce", "openid"]
    assert push.query["openid"] == VISITOR.openid
    assert push.query["timestamp"] == str(int(clock.now()))
    assert re.fullmatch(r"[0-9]+", push.query["nonce"])
    assert push.content_type.startswith("text/xml")
    # WeChat's XML: text in CDATA, CreateTime a bare integer.
    assert push.body.startswith(
        f"<xml><ToUserName><![CDATA[{ORIGINAL_ID}]]></ToUserName>"
        f"<FromUserName><![CDATA[{VISITOR.openid}]]></FromUserName>"
        f"<CreateTime>{int(clock.now())}</CreateTime>"
    )
    subscribed_at = int(clock.now())
    info = await user_info(wechat, VISITOR.openid)
    assert info["subscribe"] == 1 and info["subscribe_time"] == subscribed_at
    assert (info["subscribe_scene"], info["qr_scene"], info["qr_scene_str"]) == (
        "ADD_SCENE_QR_CODE",
        123,
        "",
    )

    clock.advance(30)
    again = await scan(wechat, VISITOR.openid, url=code["url"])  # by url this time
    assert (again["event"], again["eventKey"], again["delivered"]) == ("SCAN", "123", True)
    assert list(receiver.received[1].fields.items()) == expected_event(
        VISITOR.openid, clock.now(), "SCAN", "123", Ticket=code["ticket"]
    )
    info = await user_info(wechat, VISITOR.openid)
    assert info["subscribe_time"] == subscribed_at  # a SCAN is not a new follow
    assert len(emulator.pushes) == 2


async def test_string_scenes(make_wechat, receiver):
    wechat, _ = await make_wechat()
    code = await new_code(wechat, "QR_LIMIT_STR_SCENE", "poster_2024")
    answer = await scan(wechat, ANONYMOUS.openid, ticket=code["ticket"])
    assert (answer["event"], answer["eventKey"]) == ("subscribe", "qrscene_poster_2024")
    info = await user_info(wechat, ANONYMOUS.openid)
    assert (info["qr_scene"], info["qr_scene_str"]) == (0, "poster_2024")
    answer = await scan(wechat, ANONYMOUS.openid, ticket=code["ticket"])
    assert (answer["event"], answer["eventKey"]) == ("SCAN", "poster_2024")
    assert [r.fields["Ticket"] for r in receiver.received] == [code["ticket"]] * 2


async def test_a_follower_scanning_gets_scan(make_wechat, receiver):
    wechat, _ = await make_wechat()
    before = await user_info(wechat, FOLLOWER.openid)
    code = await new_code(wechat, "QR_STR_SCENE", "login_abc")
    answer = await scan(wechat, FOLLOWER.openid, ticket=code["ticket"])
    assert (answer["event"], answer["eventKey"]) == ("SCAN", "login_abc")
    assert receiver.received[0].fields["Event"] == "SCAN"
    assert await user_info(wechat, FOLLOWER.openid) == before


async def test_unsubscribe(make_wechat, receiver, clock):
    wechat, _ = await make_wechat()
    answer = await unfollow(wechat, FOLLOWER.openid)
    assert (answer["event"], answer["eventKey"], answer["delivered"]) == ("unsubscribe", "", True)
    [push] = receiver.received
    # §10: observed with an empty EventKey, and no Ticket.
    assert list(push.fields.items()) == expected_event(
        FOLLOWER.openid, clock.now(), "unsubscribe", ""
    )
    assert "<EventKey><![CDATA[]]></EventKey>" in push.body
    assert (await user_info(wechat, FOLLOWER.openid))["subscribe"] == 0
    body = await unfollow(wechat, FOLLOWER.openid, expect=400)
    assert_error_shape(body, 400, "INVALID_PARAMETER", "openid")
    assert len(receiver.received) == 1

    code = await new_code(wechat, "QR_SCENE", 9)
    assert (await scan(wechat, FOLLOWER.openid, ticket=code["ticket"]))["event"] == "subscribe"
    assert (await user_info(wechat, FOLLOWER.openid))["qr_scene"] == 9


async def test_an_expired_or_unknown_code_pushes_nothing(make_wechat, receiver, clock):
    wechat, _ = await make_wechat()
    code = await new_code(wechat)  # 60 s
    clock.advance(60)
    body = await scan(wechat, VISITOR.openid, expect=400, ticket=code["ticket"])
    assert_error_shape(body, 400, "QR_CODE_EXPIRED", "ticket")
    assert "二维码已过期" in body["message"]
    body = await scan(wechat, VISITOR.openid, expect=400, url=code["url"])
    assert_error_shape(body, 400, "QR_CODE_EXPIRED", "url")
    body = await scan(wechat, VISITOR.openid, expect=400, ticket="gQFAKE")
    assert_error_shape(body, 400, "INVALID_PARAMETER", "ticket")
    body = await scan(wechat, VISITOR.openid, expect=400, url="http://weixin.qq.com/q/02nope")
    assert_error_shape(body, 400, "INVALID_PARAMETER", "url")
    assert receiver.received == []
    assert (await user_info(wechat, VISITOR.openid))["subscribe"] == 0


async def test_a_url_encoded_ticket_is_accepted(make_wechat, receiver):
    wechat, _ = await make_wechat()
    code = await new_code(wechat)
    encoded = code["ticket"].replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    assert (await scan(wechat, VISITOR.openid, ticket=encoded))["delivered"] is True


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("scan", None, "body"),
        ("scan", [], "body"),
        ("scan", {"ticket": "x"}, "openid"),
        ("scan", {"openid": "oSbxNobody", "ticket": "x"}, "openid"),
        ("scan", {"openid": VISITOR.openid}, "ticket"),
        ("scan", {"openid": VISITOR.openid, "ticket": "x", "url": "y"}, "ticket"),
        ("scan", {"openid": VISITOR.openid, "ticket": 5}, "ticket"),
        ("scan", {"openid": VISITOR.openid, "ticket": ""}, "ticket"),
        ("scan", {"openid": VISITOR.openid, "ticket": "x", "extra": 1}, "extra"),
        ("unfollow", {}, "openid"),
        ("unfollow", {"openid": ["x"]}, "openid"),
        ("unfollow", {"openid": "oSbxNobody"}, "openid"),
        ("unfollow", {"openid": VISITOR.openid}, "openid"),  # doesn't follow
    ],
)
async def test_scripted_api_400s(make_wechat, receiver, path, body, field):
    wechat, emulator = await make_wechat()
    if body is None:
        resp = await wechat.post(f"/_sandbox/api/{path}", data=b"not json")
    else:
        resp = await wechat.post(f"/_sandbox/api/{path}", json=body)
    assert resp.status == 400
    assert_error_shape(await resp.json(), 400, "INVALID_PARAMETER", field)
    assert receiver.received == [] and len(emulator.pushes) == 0


async def test_without_message_url_scans_are_refused(aiohttp_client, emulator_server, emulator):
    wechat = await aiohttp_client(emulator_server)
    code = await new_code(wechat)
    body = await scan(wechat, VISITOR.openid, expect=409, ticket=code["ticket"])
    assert_error_shape(body, 409, "NO_MESSAGE_URL", "message_url")
    body = await unfollow(wechat, FOLLOWER.openid, expect=409)
    assert_error_shape(body, 409, "NO_MESSAGE_URL", "message_url")
    assert not emulator.users[VISITOR.openid].subscribed
    assert emulator.users[FOLLOWER.openid].subscribed


# The three message modes (§11)


async def test_compatible_mode_sends_plain_fields_and_ciphertext(make_wechat, receiver, clock):
    wechat, _ = await make_wechat("compatible")
    code = await new_code(wechat, "QR_SCENE", 77)
    answer = await scan(wechat, VISITOR.openid, ticket=code["ticket"])
    assert answer["delivered"] is True
    [push] = receiver.received
    assert push.query_keys == [
        "signature",
        "timestamp",
        "nonce",
        "openid",
        "encrypt_type",
        "msg_signature",
    ]
    event = expected_event(
        VISITOR.openid, clock.now(), "subscribe", "qrscene_77", Ticket=code["ticket"]
    )
    assert list(push.fields.items()) == event  # decrypted
    assert list(push.outer.items())[:-1] == event  # and in the clear beside it
    assert list(push.outer)[-1] == "Encrypt"


async def test_safe_mode_sends_only_ciphertext(make_wechat, receiver, clock):
    wechat, _ = await make_wechat("safe")
    answer = await unfollow(wechat, FOLLOWER.openid)
    assert answer["delivered"] is True
    [push] = receiver.received
    assert list(push.outer) == ["ToUserName", "Encrypt"]
    assert push.body == build_message({"ToUserName": ORIGINAL_ID, "Encrypt": push.outer["Encrypt"]})
    assert push.query["encrypt_type"] == "aes"
    assert list(push.fields.items()) == expected_event(
        FOLLOWER.openid, clock.now(), "unsubscribe", ""
    )
    # The plain signature is still there (§10), alongside msg_signature.
    assert push.query["signature"] == wechat_signature(
        TOKEN, push.query["timestamp"], push.query["nonce"]
    )


async def test_pushes_are_signed_with_the_configured_token(make_wechat, receiver):
    """A server holding another token refuses the push: nothing is delivered."""
    wechat, _ = await make_wechat("safe")
    receiver.token = "another-token"
    answer = await unfollow(wechat, FOLLOWER.openid)
    assert receiver.refused == ["signature"]
    assert (answer["delivered"], answer["attempts"], answer["status"]) == (False, 1, 403)


# Retries (§10)


async def test_no_reply_is_retried_to_four_attempts(make_wechat, receiver):
    wechat, emulator = await make_wechat(push_timeout=SHORT_TIMEOUT)
    receiver.replies = ["hang"] * 4
    code = await new_code(wechat)
    answer = await scan(wechat, VISITOR.openid, ticket=code["ticket"])
    assert (answer["delivered"], answer["attempts"], answer["status"]) == (False, 4, None)
    assert "no reply" in answer["error"]
    assert len(receiver.received) == 4
    # The same request each time: same body (so the same CreateTime), same query string.
    assert len({r.body for r in receiver.received}) == 1
    assert len({tuple(r.query.items()) for r in receiver.received}) == 1
    assert len({r.fields["CreateTime"] for r in receiver.received}) == 1
    # The user followed in the app all the same.
    assert emulator.users[VISITOR.openid].subscribed
    [record] = emulator.pushes
    assert (record.attempts, record.delivered) == (4, False)


async def test_a_late_reply_is_retried_until_one_comes_in_time(make_wechat, receiver, pauses):
    wechat, _ = await make_wechat(push_timeout=SHORT_TIMEOUT)
    receiver.replies = ["hang", "hang", "success"]
    answer = await unfollow(wechat, FOLLOWER.openid)
    assert (answer["delivered"], answer["attempts"], answer["reply"]) == (True, 3, "success")
    assert len(receiver.received) == 3
    # §10: WeChat drops the connection after its 5 s and asks again: the wait was the spacing.
    assert pauses == []


async def test_server_errors_are_retried_at_wechats_pace(make_wechat, receiver, pauses, clock):
    """A 5xx comes back at once; the retry waits what WeChat waits for a reply (push_timeout),
    so attempts come 5 s apart whichever way they fail; and each one is the same request."""
    wechat, _ = await make_wechat()
    started = clock.now()
    receiver.replies = [500, 502, 503, "success"]
    answer = await unfollow(wechat, FOLLOWER.openid)
    assert (answer["delivered"], answer["attempts"]) == (True, 4)
    assert pauses == [5.0, 5.0, 5.0]
    assert clock.now() - started == 15
    first = receiver.received[0]
    assert all((r.query, r.body) == (first.query, first.body) for r in receiver.received)
    assert first.fields["CreateTime"] == str(int(started))  # stamped once, when it happened


async def test_the_retry_delay_can_be_set(make_wechat, receiver, pauses):
    wechat, _ = await make_wechat(push_retry_delay=1.5)
    receiver.replies = [500, "success"]
    assert (await unfollow(wechat, FOLLOWER.openid))["attempts"] == 2
    assert pauses == [1.5]
    wechat, _ = await make_wechat(push_retry_delay=0)
    receiver.replies = [500, "success"]
    assert (await unfollow(wechat, NO_UNIONID.openid))["attempts"] == 2
    assert pauses == [1.5]  # 0: at once, no pause at all


async def test_server_errors_are_retried(make_wechat, receiver):
    wechat, _ = await make_wechat()
    receiver.replies = [500, 503, "success"]
    answer = await unfollow(wechat, FOLLOWER.openid)
    assert (answer["delivered"], answer["attempts"], answer["status"]) == (True, 3, 200)
    receiver.replies = [500] * 4
    answer = await unfollow(wechat, NO_UNIONID.openid)
    assert (answer["delivered"], answer["attempts"], answer["status"]) == (False, 4, 500)
    assert answer["error"] == "HTTP 500"
    assert len(receiver.received) == 7


async def test_a_client_error_is_not_retried(make_wechat, receiver):
    wechat, _ = await make_wechat()
    receiver.replies = [404]
    answer = await unfollow(wechat, FOLLOWER.openid)
    assert (answer["delivered"], answer["attempts"], answer["status"]) == (False, 1, 404)


async def test_an_unreachable_server_is_tried_four_times(make_wechat, closed_port):
    wechat, emulator = await make_wechat(
        message_url=f"http://127.0.0.1:{closed_port}/wechat/message"
    )
    answer = await unfollow(wechat, FOLLOWER.openid)
    assert (answer["delivered"], answer["attempts"], answer["status"]) == (False, 4, None)
    assert "could not reach" in answer["error"]
    assert not emulator.users[FOLLOWER.openid].subscribed


# Which replies count (§10, §11)


def passive_reply(push: Received) -> str:
    """A passive text reply, as a service answers a message."""
    return build_message(
        {
            "ToUserName": push.fields["FromUserName"],
            "FromUserName": push.fields["ToUserName"],
            "CreateTime": int(push.fields["CreateTime"]),
            "MsgType": "text",
            "Content": "欢迎关注",
        }
    )


def encrypted(key: str = AES_KEY, token: str | None = None) -> Callable[[Received], str]:
    def reply(push: Received) -> str:
        return MessageCrypto(token or TOKEN, key, APPID).encrypted_reply(
            passive_reply(push), "1714036504", "1514711492"
        )

    return reply


@pytest.mark.parametrize(
    ("mode", "reply", "delivered"),
    [
        ("plain", "success", True),
        ("plain", "", True),
        ("plain", "success\n", True),
        ("plain", passive_reply, True),
        ("plain", '{"errcode": 0}', False),  # §10: JSON is "malformed"
        ("plain", "ok", False),
        ("plain", "<xml><Content>unclosed</xml>", False),
        ("plain", "<html><body>hello</body></html>", False),
        ("compatible", passive_reply, True),
        ("compatible", encrypted(), True),
        ("compatible", encrypted(OTHER_AES_KEY), False),
        ("safe", "success", True),  # emulator choice: a plain success is accepted in every mode
        ("safe", "", True),
        ("safe", encrypted(), True),
        ("safe", passive_reply, False),  # safe mode: the reply must be encrypted
        ("safe", encrypted(OTHER_AES_KEY), False),  # signed right, but not our key
        ("safe", encrypted(token="wrong"), False),  # MsgSignature does not check out
    ],
)
async def test_which_replies_are_accepted(make_wechat, receiver, mode, reply, delivered):
    wechat, emulator = await make_wechat(mode)
    receiver.replies = [reply]
    answer = await unfollow(wechat, FOLLOWER.openid)
    assert (answer["delivered"], answer["attempts"]) == (delivered, 1), answer
    assert answer["error"] == ("" if delivered else answer["error"]) and (
        delivered or answer["error"]
    )
    if reply in (passive_reply, "success", ""):
        assert answer["reply"] == (
            passive_reply(receiver.received[0]) if callable(reply) else reply
        )
    if delivered and callable(reply):
        # The reply's own fields, decrypted when encrypted.
        assert answer["replyFields"]["MsgType"] == "text"
        assert answer["replyFields"]["Content"] == "欢迎关注"
        assert answer["replyFields"]["ToUserName"] == FOLLOWER.openid
    [record] = emulator.pushes
    assert record.delivered is delivered


# Recorded pushes


async def test_pushes_are_listed(make_wechat, receiver, clock):
    wechat, _ = await make_wechat()
    code = await new_code(wechat, "QR_LIMIT_SCENE", 3)
    scanned_at = clock.now()
    await scan(wechat, VISITOR.openid, ticket=code["ticket"])
    receiver.replies = [500, "success"]
    await unfollow(wechat, VISITOR.openid)
    pushes = (await (await wechat.get("/_sandbox/api/pushes")).json())["pushes"]
    assert [(p["event"], p["eventKey"], p["openid"], p["attempts"]) for p in pushes] == [
        ("subscribe", "qrscene_3", VISITOR.openid, 1),
        ("unsubscribe", "", VISITOR.openid, 2),
    ]
    assert pushes[0]["fields"] == dict(
        expected_event(VISITOR.openid, scanned_at, "subscribe", "qrscene_3", Ticket=code["ticket"])
    ) | {"CreateTime": int(scanned_at)}
    assert [p["msgType"] for p in pushes] == ["event", "event"]
    assert all(p["delivered"] and p["mode"] == "plain" for p in pushes)
    assert (await wechat.delete("/_sandbox/api/pushes")).status == 204
    assert (await (await wechat.get("/_sandbox/api/pushes")).json())["pushes"] == []


async def test_the_push_log_is_bounded(emulator):
    for n in range(PUSH_MEMORY + 5):
        emulator.record_push(
            PushRecord(
                at=n,
                mode="plain",
                fields={"Event": "SCAN", "EventKey": str(n)},
                attempts=1,
                delivered=True,
                status=200,
                reply="success",
                reply_fields=None,
                error="",
            )
        )
    assert len(emulator.pushes) == PUSH_MEMORY
    assert emulator.pushes[0].fields["EventKey"] == "5"


def test_config_checks():
    base = {"appid": APPID, "secret": SECRET, "authorized_domain": "app.example.com"}
    assert SandboxConfig(**base).message_mode == "plain"  # existing callers keep working
    for bad in (
        {"message_mode": "secure"},
        {"message_mode": "safe"},  # no EncodingAESKey
        {"message_mode": "safe", "aes_key": "short"},
        {"push_timeout": 0},
        {"message_url": "ftp://example.com/"},
        {"push_retry_delay": -1},
        {"ip_whitelist": ("203.0.113.7", "not an address")},
        {"ip_whitelist": ("::1",)},  # 40164 names callers by IPv4
    ):
        with pytest.raises(ValueError):
            SandboxConfig(**base, **bad)


# The phone page


def as_user(openid: str) -> dict[str, str]:
    return {"Cookie": f"sandbox_openid={openid}"}


async def test_the_phone_page(make_wechat, receiver):
    wechat, _ = await make_wechat()
    home = await (await wechat.get("/")).text()
    assert 'href="/_sandbox/phone"' in home

    resp = await wechat.get("/_sandbox/phone")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    assert "<script" not in page
    assert 'href="/_sandbox/users?next=/_sandbox/phone"' in page  # pick a user, then come back

    code = await new_code(wechat, "QR_STR_SCENE", "phone")
    page = await (
        await wechat.get(
            "/_sandbox/phone", params={"url": code["url"]}, headers=as_user(VISITOR.openid)
        )
    ).text()
    assert VISITOR.nickname in page and VISITOR.openid in page
    assert f'value="{code["url"]}"' in page
    assert "does not follow" in page
    assert 'action="/_sandbox/phone/unfollow"' not in page

    resp = await wechat.post(
        "/_sandbox/phone/scan", data={"code": code["url"]}, headers=as_user(VISITOR.openid)
    )
    assert resp.status == 200
    page = await resp.text()
    assert re.search(r"<strong>subscribe</strong>\s*<code>qrscene_phone</code>", page)
    assert "Delivered" in page and "1 attempt " in page and "<pre>success</pre>" in page
    assert re.search(r'id="follow-state"><span class="tag ok">follows', page)
    assert 'action="/_sandbox/phone/unfollow"' in page
    assert [r.fields["Event"] for r in receiver.received] == ["subscribe"]
    assert receiver.received[0].fields["FromUserName"] == VISITOR.openid

    # A showqrcode link works too; the user now follows, so it is a SCAN.
    link = f"http://127.0.0.1/cgi-bin/showqrcode?ticket={code['ticket'].replace('+', '%2B')}"
    resp = await wechat.post(
        "/_sandbox/phone/scan", data={"code": link}, headers=as_user(VISITOR.openid)
    )
    assert re.search(r"<strong>SCAN</strong>\s*<code>phone</code>", await resp.text())

    resp = await wechat.post("/_sandbox/phone/unfollow", headers=as_user(VISITOR.openid))
    page = await resp.text()
    assert resp.status == 200 and "<strong>unsubscribe</strong>" in page
    assert "does not follow" in page
    assert [r.fields["Event"] for r in receiver.received] == ["subscribe", "SCAN", "unsubscribe"]


async def test_the_phone_page_refusals(make_wechat, receiver, clock):
    wechat, _ = await make_wechat()
    code = await new_code(wechat)
    resp = await wechat.post("/_sandbox/phone/scan", data={"code": code["url"]})
    assert resp.status == 400 and "Pick a sandbox user first" in await resp.text()
    resp = await wechat.post(
        "/_sandbox/phone/scan", data={"code": "  "}, headers=as_user(VISITOR.openid)
    )
    assert resp.status == 400
    resp = await wechat.post(
        "/_sandbox/phone/scan", data={"code": "gQFAKE"}, headers=as_user(VISITOR.openid)
    )
    assert resp.status == 400 and "no such QR code" in await resp.text()
    clock.advance(60)
    resp = await wechat.post(
        "/_sandbox/phone/scan", data={"code": code["ticket"]}, headers=as_user(VISITOR.openid)
    )
    assert resp.status == 400 and "二维码已过期" in await resp.text()
    resp = await wechat.post("/_sandbox/phone/unfollow", headers=as_user(VISITOR.openid))
    assert resp.status == 400 and "does not follow" in await resp.text()
    assert receiver.received == []


async def test_the_phone_page_without_message_url(aiohttp_client, emulator_server):
    wechat = await aiohttp_client(emulator_server)
    page = await (await wechat.get("/_sandbox/phone", headers=as_user(VISITOR.openid))).text()
    assert "--message-url" in page
    code = await new_code(wechat)
    resp = await wechat.post(
        "/_sandbox/phone/scan", data={"code": code["url"]}, headers=as_user(VISITOR.openid)
    )
    assert resp.status == 409


# What a person does besides scanning: POST /_sandbox/api/push and /_sandbox/api/follow (§10)


async def person_push(wechat, openid: str, expect: int = 200, **body) -> dict:
    resp = await wechat.post("/_sandbox/api/push", json={"openid": openid, **body})
    assert resp.status == expect, await resp.text()
    return await resp.json()


async def test_a_text_message_is_pushed_as_wechat_sends_it(make_wechat, receiver, clock):
    wechat, _ = await make_wechat()
    answer = await person_push(wechat, FOLLOWER.openid, msgType="text", Content="  hi ]]> <&>\n")
    [push] = receiver.received
    assert list(push.fields) == [
        "ToUserName",
        "FromUserName",
        "CreateTime",
        "MsgType",
        "Content",
        "MsgId",
    ]
    assert push.fields["Content"] == "  hi ]]> <&>\n"  # as typed
    assert (push.fields["FromUserName"], push.fields["CreateTime"]) == (
        FOLLOWER.openid,
        str(int(clock.now())),
    )
    msg_id = push.fields["MsgId"]
    assert re.fullmatch(r"[1-9][0-9]{18}", msg_id) and int(msg_id) < 2**63
    assert re.search(rf"<MsgId>{msg_id}</MsgId>", push.body)  # an integer, bare
    assert answer == {
        "appid": APPID,
        "openid": FOLLOWER.openid,
        "msgType": "text",
        "msgId": msg_id,
        "delivered": True,
        "attempts": 1,
        "reply": "success",
        "replyFields": None,
        "status": 200,
        "error": "",
    }
    again = await person_push(wechat, FOLLOWER.openid, msgType="text", Content="hi")
    assert again["msgId"] != msg_id  # every message its own MsgId


@pytest.mark.parametrize("mode", ["plain", "safe"])
async def test_nested_events_are_pushed_nested(make_wechat, receiver, mode):
    wechat, _ = await make_wechat(mode)
    pictures = [{"PicMd5Sum": "1b5f7c23b5bf75682a53e7b6d163e185"}, {"PicMd5Sum": "5a75aa"}]
    answer = await person_push(
        wechat,
        FOLLOWER.openid,
        msgType="event",
        EventKey="6",
        Event="pic_weixin",  # put back right after MsgType, where WeChat writes it
        SendPicsInfo={"Count": 2, "PicList": {"item": pictures}},
    )
    assert (answer["msgType"], answer["event"], answer["eventKey"]) == ("event", "pic_weixin", "6")
    assert "msgId" not in answer  # events have none
    [push] = receiver.received
    assert list(push.fields)[3:6] == ["MsgType", "Event", "EventKey"]
    assert push.fields["SendPicsInfo"] == {"Count": "2", "PicList": {"item": pictures}}
    plain = (
        push.body
        if mode == "plain"
        else MessageCrypto(TOKEN, AES_KEY, APPID).decrypt(push.outer["Encrypt"])
    )
    assert "<SendPicsInfo><Count>2</Count><PicList><item><PicMd5Sum>" in plain


async def test_a_plain_follow_pushes_subscribe_without_a_scene(make_wechat, receiver, clock):
    wechat, emulator = await make_wechat()
    resp = await wechat.post("/_sandbox/api/follow", json={"openid": VISITOR.openid})
    assert resp.status == 200
    assert (await resp.json())["event"] == "subscribe"
    [push] = receiver.received
    assert list(push.fields.items()) == expected_event(VISITOR.openid, clock.now(), "subscribe", "")
    assert "<EventKey><![CDATA[]]></EventKey>" in push.body  # present and empty, as observed
    info = await user_info(wechat, VISITOR.openid)
    assert (info["subscribe"], info["subscribe_scene"], info["qr_scene_str"]) == (
        1,
        "ADD_SCENE_OTHERS",
        "",
    )
    assert info["subscribe_time"] == int(clock.now())
    # Following twice is not a thing; the push route's subscribe is the same follow.
    resp = await wechat.post("/_sandbox/api/follow", json={"openid": VISITOR.openid})
    assert_error_shape(await resp.json(), 400, "INVALID_PARAMETER", "openid")
    await unfollow(wechat, VISITOR.openid)
    answer = await person_push(wechat, VISITOR.openid, msgType="event", Event="subscribe")
    assert (answer["event"], answer["eventKey"], answer["delivered"]) == ("subscribe", "", True)
    assert emulator.users[VISITOR.openid].subscribed


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"openid": "oSbxNobody", "msgType": "text", "Content": "hi"}, "openid"),
        ({"msgType": "text", "Content": "hi"}, "openid"),
        ({"openid": FOLLOWER.openid, "Content": "hi"}, "msgType"),
        ({"openid": FOLLOWER.openid, "msgType": "fax"}, "msgType"),
        ({"openid": FOLLOWER.openid, "msgType": "text"}, "Content"),
        ({"openid": FOLLOWER.openid, "msgType": "event"}, "Event"),
        ({"openid": FOLLOWER.openid, "msgType": "text", "Content": "x", "MsgId": 1}, "MsgId"),
        (
            {"openid": FOLLOWER.openid, "msgType": "text", "Content": "x", "ToUserName": "gh"},
            "ToUserName",
        ),
        ({"openid": FOLLOWER.openid, "msgType": "event", "Event": "SCAN"}, "Event"),
        (
            {
                "openid": VISITOR.openid,
                "msgType": "event",
                "Event": "subscribe",
                "EventKey": "qrscene_1",
            },
            "Event",
        ),
        ({"openid": VISITOR.openid, "msgType": "event", "Event": "unsubscribe"}, "openid"),
        ({"openid": VISITOR.openid, "msgType": "text", "Content": "hi"}, "openid"),  # no follow
        ({"openid": FOLLOWER.openid, "msgType": "event", "Event": "X", "<a>": "1"}, "body"),
        ({"openid": FOLLOWER.openid, "msgType": "event", "Event": "X", "A": None}, "body"),
        ({"openid": FOLLOWER.openid, "msgType": "event", "Event": "X", "A": True}, "body"),
        ({"openid": FOLLOWER.openid, "msgType": "event", "Event": "X", "A": [[1]]}, "body"),
    ],
)
async def test_pushes_a_person_cannot_make_are_refused(make_wechat, receiver, body, field):
    wechat, _ = await make_wechat()
    resp = await wechat.post("/_sandbox/api/push", json=body)
    assert_error_shape(await resp.json(), 400, "INVALID_PARAMETER", field)
    assert receiver.received == []


@pytest.mark.parametrize(
    "raw",
    [b"[]", b"not json", b"\xff", b"[" * 30_000 + b"]" * 30_000],
    ids=["array", "text", "bytes", "deep"],
)
async def test_push_bodies_that_are_not_json_objects_are_400s(make_wechat, receiver, raw):
    wechat, _ = await make_wechat()
    resp = await wechat.post("/_sandbox/api/push", data=raw)
    assert_error_shape(await resp.json(), 400, "INVALID_PARAMETER", "body")


async def test_a_push_nested_too_deep_is_refused(make_wechat, receiver):
    wechat, _ = await make_wechat()
    deep: dict = {"Leaf": "x"}
    for _ in range(8):
        deep = {"A": deep}
    resp = await wechat.post(
        "/_sandbox/api/push",
        json={"openid": FOLLOWER.openid, "msgType": "event", "Event": "X", **deep},
    )
    assert_error_shape(await resp.json(), 400, "INVALID_PARAMETER", "body")
    assert receiver.received == []


async def test_the_phone_follows_chats_and_uses_the_menu(make_wechat, receiver):
    wechat, emulator = await make_wechat()
    me = as_user(VISITOR.openid)
    page = await (await wechat.get("/_sandbox/phone", headers=me)).text()
    assert 'action="/_sandbox/phone/follow"' in page  # a visitor can follow, not chat
    assert 'name="kind" value="text"' not in page
    resp = await wechat.post("/_sandbox/phone/follow", headers=me)
    page = await resp.text()
    assert re.search(r"<strong>subscribe</strong> pushed", page)
    assert 'name="kind" value="text"' in page and emulator.users[VISITOR.openid].subscribed

    forms = [
        {"kind": "text", "content": "你好 "},
        {"kind": "scancode_push", "result": "https://example.com/x", "key": ""},
        {"kind": "location_select", "latitude": "23.1", "longitude": "113.3", "label": "广州"},
        {"kind": "pic_photo_or_album", "count": "2"},
        {"kind": "json", "json": '{"msgType": "event", "Event": "CLICK", "EventKey": "k"}'},
    ]
    for form in forms:
        resp = await wechat.post("/_sandbox/phone/push", data=form, headers=me)
        assert resp.status == 200, await resp.text()
        assert "Delivered" in await resp.text()
    text, scanned, located, photos, clicked = (r.fields for r in receiver.received[1:])
    assert (text["MsgType"], text["Content"]) == ("text", "你好 ")
    assert scanned["ScanCodeInfo"] == {"ScanType": "qrcode", "ScanResult": "https://example.com/x"}
    assert located["SendLocationInfo"]["Label"] == "广州"
    assert photos["SendPicsInfo"]["Count"] == "2"
    assert [len(p["PicMd5Sum"]) for p in as_list(photos["SendPicsInfo"]["PicList"]["item"])] == [
        32,
        32,
    ]
    assert (clicked["Event"], clicked["EventKey"]) == ("CLICK", "k")

    for form in (
        {"kind": "text", "content": "  "},
        {"kind": "pic_photo_or_album", "count": "10"},
        {"kind": "location_select", "latitude": "north"},
        {"kind": "json", "json": "[1]"},
        {"kind": "json", "json": '{"msgType": "text", "openid": "x", "Content": "hi"}'},
        {"kind": "json", "json": '{"msgType": "event", "Event": "SCAN"}'},
        {"kind": "fax"},
    ):
        resp = await wechat.post("/_sandbox/phone/push", data=form, headers=me)
        assert resp.status == 400, form
        assert 'role="alert"' in await resp.text()
    assert len(receiver.received) == 6


async def test_a_news_reply_with_nested_articles_is_accepted(make_wechat, receiver):
    """被动回复图文消息: <Articles><item>…</item></Articles> is XML WeChat takes (nested)."""
    wechat, _ = await make_wechat()

    def news(push: Received) -> str:
        article = {
            "Title": "t",
            "Description": "d",
            "PicUrl": "https://x/p.png",
            "Url": "https://x",
        }
        return build_message(
            {
                "ToUserName": push.fields["FromUserName"],
                "FromUserName": push.fields["ToUserName"],
                "CreateTime": int(push.fields["CreateTime"]),
                "MsgType": "news",
                "ArticleCount": 2,
                "Articles": {"item": [article, article | {"Title": "u"}]},
            }
        )

    receiver.replies = [news]
    answer = await person_push(wechat, FOLLOWER.openid, msgType="text", Content="news?")
    assert answer["delivered"] is True, answer
    assert [a["Title"] for a in answer["replyFields"]["Articles"]["item"]] == ["t", "u"]
