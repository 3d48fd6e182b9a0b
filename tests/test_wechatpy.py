"""wechatpy 1.8.18 (PyPI, used unchanged) on both sides of the service.

As WeChat: wechatpy's WeChatCrypto encrypts and signs a push the way WeChat's servers do, the
service reads it, and wechatpy reads the service's encrypted reply. As an SDK: wechatpy's own
WeChatClient talks to the emulator, which must answer as WeChat does for its code to work
(§6-§9 of wechat-api.md). wechatpy is synchronous (requests), so it runs in a thread while the
servers run in the test's event loop.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest
from wechatpy import parse_message as wechatpy_parse
from wechatpy.client import WeChatClient
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException, WeChatClientException
from wechatpy.utils import check_signature

from flows import AES_KEY, APPID, SECRET, TOKEN, signed
from service.sandbox import SANDBOX_USERS

FOLLOWER, VISITOR = SANDBOX_USERS[0], SANDBOX_USERS[1]


def push_xml(created: int, msg_id: int) -> str:
    return (
        "<xml><ToUserName><![CDATA[gh_5a4db0c0ffee]]></ToUserName>"
        f"<FromUserName><![CDATA[{FOLLOWER.openid}]]></FromUserName>"
        f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[hello]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )


async def test_a_push_wechatpy_encrypts_is_read_and_its_reply_reads_back(make_client, clock):
    client = await make_client(
        wechat_message_mode="safe", wechat_aes_key=AES_KEY, message_text_reply="Received"
    )
    wechat = WeChatCrypto(TOKEN, AES_KEY, APPID)
    timestamp, nonce = str(int(clock.now())), str(secrets.randbelow(10**10))
    # wechatpy's encrypt_message makes the <xml><Encrypt/><MsgSignature/>… envelope; WeChat
    # sends the Encrypt element with msg_signature in the query (§11).
    envelope = wechatpy_parse_envelope(
        wechat.encrypt_message(push_xml(int(clock.now()), 6054768590064713728), nonce, timestamp)
    )
    body = (
        "<xml><ToUserName><![CDATA[gh_5a4db0c0ffee]]></ToUserName>"
        f"<Encrypt><![CDATA[{envelope['Encrypt']}]]></Encrypt></xml>"
    )
    params = {
        "signature": "unused-in-safe-mode",
        "timestamp": timestamp,
        "nonce": nonce,
        "openid": FOLLOWER.openid,
        "encrypt_type": "aes",
        "msg_signature": envelope["MsgSignature"],
    }
    resp = await client.post("/wechat/message", params=params, data=body)
    assert resp.status == 200, await resp.text()
    reply = await resp.text()
    signature = wechatpy_parse_envelope(reply)["MsgSignature"]
    plain = wechat.decrypt_message(reply, signature, timestamp, nonce)
    message = wechatpy_parse(plain)
    assert message.type == "text"
    assert message.content == "Received"
    assert message.target == FOLLOWER.openid  # back to the sender

    # And wechatpy, told of a forged msg_signature, refuses what the service refuses too.
    with pytest.raises(InvalidSignatureException):
        wechat.decrypt_message(reply, "0" * 40, timestamp, nonce)


def wechatpy_parse_envelope(xml: str) -> dict[str, str]:
    import xmltodict  # wechatpy's own XML dependency

    return dict(xmltodict.parse(xml)["xml"])


async def test_wechatpy_checks_the_server_url_signature_as_the_service_does(client, clock):
    query = signed(clock, nonce="1514711492")
    # Raises if wechatpy disagrees.
    check_signature(TOKEN, query["signature"], query["timestamp"], query["nonce"])
    resp = await client.get("/wechat/message", params={**query, "echostr": "e1"})
    assert await resp.text() == "e1"


class EmulatedWeChatClient(WeChatClient):
    """wechatpy's client with its base URL pointed at the emulator, as one points it at a
    proxy: its request, token and error handling run unchanged."""

    def __init__(self, base: str, appid: str, secret: str) -> None:
        super().__init__(appid, secret, timeout=5)
        self.API_BASE_URL = f"{base}/cgi-bin/"
        self._base = base

    def fetch_access_token(self):
        return self._fetch_access_token(
            url=f"{self._base}/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )


@pytest.fixture
def wechatpy_client(emulator_server) -> EmulatedWeChatClient:
    return EmulatedWeChatClient(str(emulator_server.make_url("")).rstrip("/"), APPID, SECRET)


async def test_wechatpy_gets_a_token_and_reads_followers_from_the_emulator(wechatpy_client):
    follower = await asyncio.to_thread(wechatpy_client.user.get, FOLLOWER.openid)
    assert follower["subscribe"] == 1 and follower["openid"] == FOLLOWER.openid
    visitor = await asyncio.to_thread(wechatpy_client.user.get, VISITOR.openid)
    assert visitor["subscribe"] == 0
    with pytest.raises(WeChatClientException) as refused:
        await asyncio.to_thread(wechatpy_client.user.get, "oNobodyKnowsThisOpenid000000")
    assert refused.value.errcode == 40003


async def test_wechatpy_creates_parametric_qr_codes_on_the_emulator(wechatpy_client):
    created = await asyncio.to_thread(
        wechatpy_client.qrcode.create,
        {
            "expire_seconds": 600,
            "action_name": "QR_STR_SCENE",
            "action_info": {"scene": {"scene_str": "wechatpy"}},
        },
    )
    assert created["expire_seconds"] == 600
    assert created["url"].startswith("http")


async def test_a_wrong_secret_reaches_wechatpy_as_errcode_40125(emulator_server):
    client = EmulatedWeChatClient(str(emulator_server.make_url("")).rstrip("/"), APPID, "f" * 32)
    with pytest.raises(WeChatClientException) as refused:
        await asyncio.to_thread(client.fetch_access_token)
    assert refused.value.errcode == 40125
