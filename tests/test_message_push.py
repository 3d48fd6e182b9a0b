"""POST /wechat/message: what WeChat pushes, checked, decrypted, de-duplicated, acted on; and
what an attacker sends, refused with nothing stored.

The happy paths of scans are driven through the emulator in test_qr_login.py; here the test
plays the sender so it can also send what WeChat never would.
"""

from __future__ import annotations

import pytest

from flows import APPID, TOKEN, assert_error_shape
from service import keys
from service.signature import wechat_signature
from service.wechat.crypto import MessageCrypto
from service.wechat.xml import build_message, parse_message

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OPENID = "oSbx02NotFollowingUnionid0B2"


def event(name: str, created: int, key: str = "", openid: str = OPENID) -> str:
    return build_message(
        {
            "ToUserName": "gh_5a4db0c0ffee",
            "FromUserName": openid,
            "CreateTime": created,
            "MsgType": "event",
            "Event": name,
            "EventKey": key,
        }
    )


def text(content: str, msg_id: int, created: int) -> str:
    return build_message(
        {
            "ToUserName": "gh_5a4db0c0ffee",
            "FromUserName": OPENID,
            "CreateTime": created,
            "MsgType": "text",
            "Content": content,
            "MsgId": msg_id,
        }
    )


def signed(timestamp: str = "1714036504", nonce: str = "1514711492") -> dict[str, str]:
    return {
        "signature": wechat_signature(TOKEN, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "openid": OPENID,
    }


def sealed(xml: str, timestamp: str = "1714036504", nonce: str = "1514711492"):
    """A push as WeChat sends it in safe mode: query and body."""
    crypto = MessageCrypto(TOKEN, AES_KEY, APPID)
    encrypted = crypto.encrypt(xml)
    body = build_message({"ToUserName": "gh_5a4db0c0ffee", "Encrypt": encrypted})
    params = {
        **signed(timestamp, nonce),
        "encrypt_type": "aes",
        "msg_signature": crypto.signature(timestamp, nonce, encrypted),
    }
    return params, body


async def push(client, body: str | bytes, params: dict[str, str]):
    return await client.post("/wechat/message", params=params, data=body)


async def stored_pushes(client) -> int:
    return await client.app[keys.STORE].pushed_messages.count_documents({})


async def test_a_follow_is_acknowledged_and_recorded(client, clock):
    created = int(clock.now())
    resp = await push(client, event("subscribe", created), signed())
    assert resp.status == 200
    assert await resp.text() == "success"
    user = await client.app[keys.STORE].get_user(OPENID)
    assert user["subscribed"] is True
    assert user["subscribeTime"].timestamp() == created


async def test_an_unfollow_is_recorded(client, clock):
    await push(client, event("subscribe", int(clock.now())), signed())
    clock.advance(60)
    resp = await push(client, event("unsubscribe", int(clock.now())), signed())
    assert await resp.text() == "success"
    assert (await client.app[keys.STORE].get_user(OPENID))["subscribed"] is False


async def test_unknown_events_and_message_types_are_acknowledged(client, clock):
    for body in (
        event("LOCATION", int(clock.now())),
        build_message(
            {
                "ToUserName": "gh_1",
                "FromUserName": OPENID,
                "CreateTime": int(clock.now()),
                "MsgType": "image",
                "MsgId": 77,
            }
        ),
    ):
        resp = await push(client, body, signed())
        assert resp.status == 200 and await resp.text() == "success"


async def test_text_messages_get_no_reply_unless_one_is_configured(client, make_client, clock):
    resp = await push(client, text("hi", 1, int(clock.now())), signed())
    assert await resp.text() == "success"

    replying = await make_client(message_text_reply="Thanks! We read every message.")
    resp = await push(replying, text("hi", 2, int(clock.now())), signed())
    reply = parse_message(await resp.read())
    assert reply["MsgType"] == "text"
    assert reply["Content"] == "Thanks! We read every message."
    assert reply["ToUserName"] == OPENID  # back to the sender
    assert reply["FromUserName"] == "gh_5a4db0c0ffee"


async def test_a_retried_push_is_processed_once_and_answered_alike(make_client, clock):
    client = await make_client(message_text_reply="Got it")
    body = text("hello", 42, int(clock.now()))
    first = await (await push(client, body, signed())).text()
    retry = await (await push(client, body, signed("1714036509", "99"))).text()
    assert first == retry and "Got it" in first
    assert await stored_pushes(client) == 1


async def test_a_retried_event_is_processed_once(client, clock):
    created = int(clock.now())
    await push(client, event("subscribe", created), signed())
    await push(client, event("unsubscribe", created + 1), signed())
    # WeChat retries the earlier follow (our answer was late): it must not undo the unfollow.
    resp = await push(client, event("subscribe", created), signed())
    assert await resp.text() == "success"
    assert (await client.app[keys.STORE].get_user(OPENID))["subscribed"] is False


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"signature": "0" * 40}, 403, "signature"),
        ({"timestamp": "1714036505"}, 403, "signature"),  # signed for another time
        ({"signature": None}, 400, "signature"),
        ({"nonce": None}, 400, "nonce"),
        ({"timestamp": None}, 400, "timestamp"),
    ],
)
async def test_unsigned_or_wrongly_signed_pushes_are_refused_with_nothing_stored(
    client, clock, params, status, field
):
    query = {k: v for k, v in {**signed(), **params}.items() if v is not None}
    resp = await push(client, event("subscribe", int(clock.now())), query)
    assert resp.status == status
    body = await resp.json()
    assert body["status"] == status and body["details"]["field"] == field
    assert await stored_pushes(client) == 0
    assert await client.app[keys.STORE].get_user(OPENID) is None


@pytest.mark.parametrize(
    "body",
    [
        b"<xml><ToUserName>unclosed</xml>",
        b'<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
        b"<xml><A>&b;</A></xml>",
        b"<xml><FromUserName><![CDATA[o1]]></FromUserName></xml>",  # no CreateTime: no event
        b"not xml at all",
    ],
)
async def test_malformed_pushes_are_400_with_nothing_stored(client, body):
    resp = await push(client, body, signed())
    assert resp.status == 400
    assert_error_shape(
        await resp.json(), 400, "INVALID_MESSAGE", (await resp.json())["details"]["field"]
    )
    assert await stored_pushes(client) == 0


async def test_oversized_pushes_are_refused(client, clock):
    body = event("subscribe", int(clock.now()), key="k" * 70_000)
    resp = await push(client, body, signed())
    assert resp.status == 413
    assert (await resp.json())["name"] == "REQUEST_ENTITY_TOO_LARGE"
    assert await stored_pushes(client) == 0


# Safe and compatible modes


async def test_safe_mode_decrypts_pushes_and_encrypts_replies(make_client, clock):
    client = await make_client(
        wechat_message_mode="safe", wechat_aes_key=AES_KEY, message_text_reply="Encrypted hi"
    )
    params, body = sealed(text("hello", 7, int(clock.now())), "1714036600", "abc")
    resp = await push(client, body, params)
    assert resp.status == 200
    reply = parse_message(await resp.read())
    crypto = MessageCrypto(TOKEN, AES_KEY, APPID)
    assert crypto.check_signature(reply["MsgSignature"], "1714036600", "abc", reply["Encrypt"])
    inner = parse_message(crypto.decrypt(reply["Encrypt"]))
    assert inner["Content"] == "Encrypted hi"


async def test_safe_mode_refuses_plain_pushes_and_bad_msg_signatures(make_client, clock):
    client = await make_client(wechat_message_mode="safe", wechat_aes_key=AES_KEY)
    plain = await push(client, event("subscribe", int(clock.now())), signed())
    assert_error_shape(await plain.json(), 403, "INVALID_SIGNATURE", "encrypt_type")

    params, body = sealed(event("subscribe", int(clock.now())))
    forged = await push(client, body, {**params, "msg_signature": "f" * 40})
    assert_error_shape(await forged.json(), 403, "INVALID_SIGNATURE", "msg_signature")

    other = MessageCrypto(TOKEN, "B" * 43, APPID).encrypt(event("subscribe", int(clock.now())))
    wrong_key_body = build_message({"ToUserName": "gh_1", "Encrypt": other})
    wrong_key = await push(
        client,
        wrong_key_body,
        {**params, "msg_signature": wechat_signature(TOKEN, "1714036504", "1514711492", other)},
    )
    assert_error_shape(await wrong_key.json(), 400, "INVALID_MESSAGE", "Encrypt")
    assert await stored_pushes(client) == 0


async def test_compatible_mode_takes_both(make_client, clock):
    client = await make_client(wechat_message_mode="compatible", wechat_aes_key=AES_KEY)
    params, body = sealed(event("subscribe", int(clock.now())))
    assert await (await push(client, body, params)).text() == "success"
    clock.advance(5)
    plain = await push(client, event("unsubscribe", int(clock.now())), signed())
    assert await plain.text() == "success"
    assert (await client.app[keys.STORE].get_user(OPENID))["subscribed"] is False


async def test_plain_mode_refuses_encrypted_pushes(client, clock):
    params, body = sealed(event("subscribe", int(clock.now())))
    resp = await push(client, body, params)
    assert_error_shape(await resp.json(), 403, "INVALID_SIGNATURE", "encrypt_type")
