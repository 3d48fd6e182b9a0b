"""POST /wechat/message: what WeChat pushes, checked, decrypted, de-duplicated, acted on; and
what an attacker sends, refused with nothing stored.

The happy paths of scans are driven through the emulator in test_qr_login.py; here the test
plays the sender so it can also send what WeChat never would.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct

import pytest

from flows import AES_KEY, APPID, TOKEN, assert_error_shape, sealed, signed
from service import keys
from service.wechat.crypto import MessageCrypto, aes_key_from, pkcs7_pad
from service.wechat.xml import build_message, parse_message

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


async def push(client, body: str | bytes, params: dict[str, str]):
    return await client.post("/wechat/message", params=params, data=body)


async def stored_pushes(client) -> int:
    return await client.app[keys.STORE].pushed_messages.count_documents({})


async def test_a_follow_is_acknowledged_and_recorded(client, clock):
    created = int(clock.now())
    resp = await push(client, event("subscribe", created), signed(clock, openid=OPENID))
    assert resp.status == 200
    assert await resp.text() == "success"
    user = await client.app[keys.STORE].get_user(OPENID)
    assert user["subscribed"] is True
    assert user["subscribeTime"].timestamp() == created


async def test_an_unfollow_is_recorded(client, clock):
    await push(client, event("subscribe", int(clock.now())), signed(clock, openid=OPENID))
    clock.advance(60)
    resp = await push(client, event("unsubscribe", int(clock.now())), signed(clock, openid=OPENID))
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
        resp = await push(client, body, signed(clock, openid=OPENID))
        assert resp.status == 200 and await resp.text() == "success"


async def test_text_messages_get_no_reply_unless_one_is_configured(client, make_client, clock):
    resp = await push(client, text("hi", 1, int(clock.now())), signed(clock, openid=OPENID))
    assert await resp.text() == "success"
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"

    replying = await make_client(message_text_reply="Thanks! We read every message.")
    resp = await push(replying, text("hi", 2, int(clock.now())), signed(clock, openid=OPENID))
    assert resp.headers["Content-Type"] == "application/xml; charset=utf-8"
    reply = parse_message(await resp.read())
    assert reply["MsgType"] == "text"
    assert reply["Content"] == "Thanks! We read every message."
    assert reply["ToUserName"] == OPENID  # back to the sender
    assert reply["FromUserName"] == "gh_5a4db0c0ffee"


async def test_a_retried_push_is_processed_once_and_answered_alike(make_client, clock):
    client = await make_client(message_text_reply="Got it")
    body = text("hello", 42, int(clock.now()))
    first = await (await push(client, body, signed(clock, openid=OPENID))).text()
    retry = await (await push(client, body, signed(clock, openid=OPENID))).text()
    assert first == retry and "Got it" in first
    assert await stored_pushes(client) == 1


async def test_a_retried_event_is_processed_once(client, clock):
    created = int(clock.now())
    await push(client, event("subscribe", created), signed(clock, openid=OPENID))
    await push(client, event("unsubscribe", created + 1), signed(clock, openid=OPENID))
    # WeChat retries the earlier follow (our answer was late): it must not undo the unfollow.
    resp = await push(client, event("subscribe", created), signed(clock, openid=OPENID))
    assert await resp.text() == "success"
    assert (await client.app[keys.STORE].get_user(OPENID))["subscribed"] is False


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"signature": "0" * 40}, 403, "signature"),
        ({"timestamp": "1"}, 403, "signature"),  # signed for another time
        ({"signature": None}, 400, "signature"),
        ({"nonce": None}, 400, "nonce"),
        ({"timestamp": None}, 400, "timestamp"),
    ],
)
async def test_unsigned_or_wrongly_signed_pushes_are_refused_with_nothing_stored(
    client, clock, params, status, field
):
    query = {k: v for k, v in {**signed(clock, openid=OPENID), **params}.items() if v is not None}
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
async def test_malformed_pushes_are_400_with_nothing_stored(client, clock, body):
    resp = await push(client, body, signed(clock, openid=OPENID))
    assert resp.status == 400
    assert_error_shape(
        await resp.json(), 400, "INVALID_MESSAGE", (await resp.json())["details"]["field"]
    )
    assert await stored_pushes(client) == 0


async def test_oversized_pushes_are_refused(client, clock):
    body = event("subscribe", int(clock.now()), key="k" * 70_000)
    resp = await push(client, body, signed(clock, openid=OPENID))
    assert resp.status == 413
    assert (await resp.json())["name"] == "REQUEST_ENTITY_TOO_LARGE"
    assert await stored_pushes(client) == 0


# Safe and compatible modes


async def test_safe_mode_decrypts_pushes_and_encrypts_replies(make_client, clock):
    client = await make_client(
        wechat_message_mode="safe", wechat_aes_key=AES_KEY, message_text_reply="Encrypted hi"
    )
    params, body = sealed(text("hello", 7, int(clock.now())), clock, openid=OPENID, nonce="abc")
    resp = await push(client, body, params)
    assert resp.status == 200
    reply = parse_message(await resp.read())
    crypto = MessageCrypto(TOKEN, AES_KEY, APPID)
    assert crypto.check_signature(
        reply["MsgSignature"], params["timestamp"], "abc", reply["Encrypt"]
    )
    inner = parse_message(crypto.decrypt(reply["Encrypt"]))
    assert inner["Content"] == "Encrypted hi"


async def test_safe_mode_refuses_plain_pushes_and_bad_msg_signatures(make_client, clock):
    client = await make_client(wechat_message_mode="safe", wechat_aes_key=AES_KEY)
    plain = await push(client, event("subscribe", int(clock.now())), signed(clock, openid=OPENID))
    assert_error_shape(await plain.json(), 403, "INVALID_SIGNATURE", "encrypt_type")

    params, body = sealed(event("subscribe", int(clock.now())), clock, openid=OPENID)
    forged = await push(client, body, {**params, "msg_signature": "f" * 40})
    assert_error_shape(await forged.json(), 403, "INVALID_SIGNATURE", "msg_signature")

    other = MessageCrypto(TOKEN, "B" * 43, APPID).encrypt(event("subscribe", int(clock.now())))
    wrong_key_body = build_message({"ToUserName": "gh_1", "Encrypt": other})
    signed_over_it = signed(
        clock, openid=OPENID, timestamp=params["timestamp"], nonce=params["nonce"], encrypted=other
    )
    wrong_key = await push(client, wrong_key_body, signed_over_it)
    assert_error_shape(await wrong_key.json(), 400, "INVALID_MESSAGE", "Encrypt")
    assert await stored_pushes(client) == 0


async def test_compatible_mode_takes_encrypted_pushes_and_refuses_bare_ones(make_client, clock):
    """§10: in compatible mode WeChat adds encrypt_type=aes and msg_signature to every push,
    so a push without them is not WeChat's, however well its plain signature checks out."""
    client = await make_client(wechat_message_mode="compatible", wechat_aes_key=AES_KEY)
    params, body = sealed(event("subscribe", int(clock.now())), clock, openid=OPENID)
    assert await (await push(client, body, params)).text() == "success"
    clock.advance(5)
    bare = await push(client, event("unsubscribe", int(clock.now())), signed(clock, openid=OPENID))
    assert_error_shape(await bare.json(), 403, "INVALID_SIGNATURE", "encrypt_type")
    params, body = sealed(event("unsubscribe", int(clock.now())), clock, openid=OPENID)
    del params["msg_signature"]
    unsigned = await push(client, body, params)
    assert_error_shape(await unsigned.json(), 403, "INVALID_SIGNATURE", "msg_signature")
    assert (await client.app[keys.STORE].get_user(OPENID))["subscribed"] is True


async def test_plain_mode_refuses_encrypted_pushes(client, clock):
    params, body = sealed(event("subscribe", int(clock.now())), clock, openid=OPENID)
    resp = await push(client, body, params)
    assert_error_shape(await resp.json(), 403, "INVALID_SIGNATURE", "encrypt_type")


async def test_an_encrypt_type_other_than_aes_is_refused_as_documented(client, clock):
    """WeChat sends encrypt_type=aes or none; the document declares the enum [aes], so any
    other value is a 400 naming it, never read as a plain push (nothing is stored)."""
    params = {**signed(clock, openid=OPENID), "encrypt_type": "raw"}
    resp = await push(client, event("subscribe", int(clock.now())), params)
    assert_error_shape(await resp.json(), 400, "INVALID_PARAMETER", "encrypt_type")
    assert await stored_pushes(client) == 0
    assert await client.app[keys.STORE].get_user(OPENID) is None


# Forged and replayed pushes: in plain mode the signature never covers the body (§10).


async def test_pushes_older_or_newer_than_push_max_age_are_stale(client, clock):
    now = int(clock.now())
    for timestamp in (now - 301, now + 301, 1000000000):
        resp = await push(
            client, event("subscribe", now), signed(clock, openid=OPENID, timestamp=str(timestamp))
        )
        assert_error_shape(await resp.json(), 403, "STALE_PUSH", "timestamp")
    # A timestamp that is not WeChat's seconds at all, correctly signed, is no better.
    for not_seconds in ("12e4", "²", "١٧١٤٠٣٦٥٠٤"):  # str.isdigit() takes the last two
        resp = await push(
            client, event("subscribe", now), signed(clock, openid=OPENID, timestamp=not_seconds)
        )
        assert_error_shape(await resp.json(), 403, "STALE_PUSH", "timestamp")
    assert await stored_pushes(client) == 0
    assert await client.app[keys.STORE].get_user(OPENID) is None

    for timestamp in (now - 299, now + 299):
        resp = await push(
            client, event("subscribe", now), signed(clock, openid=OPENID, timestamp=str(timestamp))
        )
        assert resp.status == 200 and await resp.text() == "success"


@pytest.mark.parametrize("mode", ["safe", "compatible"])
async def test_encrypted_pushes_must_be_fresh_too(make_client, clock, mode):
    """msg_signature covers the ciphertext, but a captured push is still a captured push."""
    client = await make_client(wechat_message_mode=mode, wechat_aes_key=AES_KEY)
    now = int(clock.now())
    for timestamp in (now - 301, now + 301):
        params, body = sealed(
            event("subscribe", now), clock, openid=OPENID, timestamp=str(timestamp)
        )
        assert_error_shape(
            await (await push(client, body, params)).json(), 403, "STALE_PUSH", "timestamp"
        )
    assert await client.app[keys.STORE].get_user(OPENID) is None
    params, body = sealed(event("subscribe", now), clock, openid=OPENID, timestamp=str(now - 299))
    assert (await push(client, body, params)).status == 200


async def test_a_used_pair_is_remembered_past_the_window_on_the_databases_clock(client, clock):
    """MongoDB expires records by its own clock (a TTL index on purgeAt). Kept only until the
    last moment the timestamp is accepted, a database clock running ahead would free the pair
    while a replay of it is still fresh here."""
    query = signed(clock, openid=OPENID)
    assert (await push(client, event("subscribe", int(clock.now())), query)).status == 200
    nonces = client.app[keys.STORE].push_nonces
    record = await nonces.find_one({"_id": f"{APPID}:{query['timestamp']}:{query['nonce']}"})
    last_accepted = int(query["timestamp"]) + 300
    assert record["purgeAt"].timestamp() >= last_accepted + 300
    ttl = [
        index
        for index in (await nonces.index_information()).values()
        if index["key"] == [("purgeAt", 1)]
    ]
    assert ttl and ttl[0]["expireAfterSeconds"] == 0


async def test_a_replayed_encrypted_push_is_answered_again_and_not_acted_on(make_client, clock):
    """An encrypted push's (timestamp, nonce) is not claimed: msg_signature binds its query to
    its ciphertext, so a replay is the same bytes, which de-duplication answers without acting
    on them again, even after the user has since unfollowed."""
    client = await make_client(wechat_message_mode="safe", wechat_aes_key=AES_KEY)
    created = int(clock.now())
    follow = sealed(event("subscribe", created), clock, openid=OPENID, nonce="n1")
    unfollow = sealed(event("unsubscribe", created + 1), clock, openid=OPENID, nonce="n2")
    assert await (await push(client, follow[1], follow[0])).text() == "success"
    assert await (await push(client, unfollow[1], unfollow[0])).text() == "success"
    clock.advance(250)  # still within PUSH_MAX_AGE of the timestamp
    replay = await push(client, follow[1], follow[0])
    assert await replay.text() == "success"
    assert (await client.app[keys.STORE].get_user(OPENID))["subscribed"] is False


@pytest.mark.parametrize("max_age", [300, 3600])
async def test_an_encrypted_pushs_record_outlives_its_replay_window(make_client, clock, max_age):
    """For an encrypted push the de-duplication record is what refuses a replay, so it is kept
    as a claimed nonce is: past the last moment its timestamp is accepted, by a margin for the
    database's clock; at PUSH_MAX_AGE=3600 that is longer than the usual hour."""
    client = await make_client(
        wechat_message_mode="safe", wechat_aes_key=AES_KEY, push_max_age=max_age
    )
    ahead = str(int(clock.now()) + max_age - 10)  # WeChat's clock ahead of ours, still accepted
    query, body = sealed(text("hi", 77, int(clock.now())), clock, openid=OPENID, timestamp=ahead)
    assert (await push(client, body, query)).status == 200
    record = await client.app[keys.STORE].pushed_messages.find_one({"_id": f"{APPID}:msg:77"})
    last_accepted = int(ahead) + max_age
    assert record["purgeAt"].timestamp() >= last_accepted + max_age
    assert record["done"] is True  # a text message: nothing left to process
    assert await client.app[keys.STORE].push_nonces.count_documents({}) == 0


async def test_push_max_age_is_a_setting(make_client, clock):
    strict = await make_client(push_max_age=60)
    old = signed(clock, openid=OPENID, timestamp=str(int(clock.now()) - 61))
    resp = await push(strict, event("subscribe", int(clock.now())), old)
    assert_error_shape(await resp.json(), 403, "STALE_PUSH", "timestamp")


async def test_a_captured_signature_cannot_carry_a_forged_body(client, clock):
    """The attack of issue 11: a (signature, timestamp, nonce) from an access log, a body of
    the attacker's choosing (a SCAN for someone's openid and the attacker's sign-in scene)."""
    captured = signed(clock, openid=OPENID)
    genuine = await push(client, text("hello", 5, int(clock.now())), captured)
    assert await genuine.text() == "success"

    forged = event("SCAN", int(clock.now()), key="login_attackersOwnScene0000000", openid="oVictim")
    resp = await push(client, forged, captured)
    assert_error_shape(await resp.json(), 403, "REPLAYED_PUSH", "nonce")
    # Once the window has passed, the same triple is simply stale.
    clock.advance(301)
    resp = await push(client, forged, captured)
    assert_error_shape(await resp.json(), 403, "STALE_PUSH", "timestamp")
    assert await client.app[keys.STORE].get_user("oVictim") is None


async def test_a_byte_identical_retry_with_the_same_nonce_gets_the_first_answer(make_client, clock):
    """WeChat's retry of one delivery may reuse its query string (the emulator's does): it
    is the same message, not a replay, and is answered as the first delivery was."""
    client = await make_client(message_text_reply="Got it")
    query, body = signed(clock, openid=OPENID), text("hello", 43, int(clock.now()))
    first = await push(client, body, query)
    clock.advance(4)
    again = await push(client, body, query)
    assert again.status == 200
    assert await again.text() == await first.text()
    assert "Got it" in await first.text()
    assert await stored_pushes(client) == 1


async def test_a_nonce_used_on_one_instance_is_refused_on_another(make_client, shared_mongo, clock):
    one = await make_client(mongo_client=shared_mongo)
    two = await make_client(mongo_client=shared_mongo)
    query = signed(clock, openid=OPENID)
    assert (await push(one, event("subscribe", int(clock.now())), query)).status == 200
    resp = await push(two, event("unsubscribe", int(clock.now())), query)
    assert_error_shape(await resp.json(), 403, "REPLAYED_PUSH", "nonce")
    assert (await one.app[keys.STORE].get_user(OPENID))["subscribed"] is True


@pytest.mark.parametrize(
    "created", ["soon", "1.5", "-1", "99999999999999999999", "", "²", "¹²³", "١٧١٤٠٣٦٥٠٤"]
)
async def test_an_event_with_a_bad_create_time_is_400_not_500(client, clock, created):
    body = event("subscribe", 0).replace(
        "<CreateTime>0</CreateTime>", f"<CreateTime>{created}</CreateTime>"
    )
    resp = await push(client, body, signed(clock, openid=OPENID))
    assert resp.status == 400
    assert (await resp.json())["name"] == "INVALID_MESSAGE"
    assert await client.app[keys.STORE].get_user(OPENID) is None


async def test_a_retry_during_processing_waits_for_the_first_deliverys_outcome(client, clock):
    """Another instance is processing the first delivery when WeChat's retry lands here: the
    retry must not answer "success" before knowing that processing succeeded."""
    store = client.app[keys.STORE]
    created = int(clock.now())
    key = f"event:{OPENID}:{created}:subscribe"
    await store.first_delivery(key, 3600)  # the first delivery, unfinished

    # The first delivery fails and is forgotten while the retry waits: the retry processes it.
    retry = asyncio.create_task(
        push(client, event("subscribe", created), signed(clock, openid=OPENID))
    )
    await asyncio.sleep(0.2)
    assert not retry.done()
    await store.forget_delivery(key)
    resp = await retry
    assert resp.status == 200 and await resp.text() == "success"
    assert (await store.get_user(OPENID))["subscribed"] is True


async def test_a_delivery_its_instance_abandoned_is_processed_by_a_later_retry(client, clock):
    """The instance processing the first delivery stopped mid-way (crashed, killed): its
    record stays unfinished, and WeChat's retries must not all be turned away until the
    record expires an hour later, losing the push."""
    store = client.app[keys.STORE]
    created = int(clock.now())
    key = f"event:{OPENID}:{created}:subscribe"
    await store.first_delivery(key, 3600)  # the dead instance's delivery, never finished
    clock.advance(9)  # WeChat's next retry: the first delivery is past any live processing
    resp = await push(client, event("subscribe", created), signed(clock, openid=OPENID))
    assert resp.status == 200 and await resp.text() == "success"
    assert (await store.get_user(OPENID))["subscribed"] is True
    # Taken over and finished: the next retry is answered, not processed again.
    again = await push(client, event("subscribe", created), signed(clock, openid=OPENID))
    assert await again.text() == "success"


async def test_a_retry_during_processing_answers_what_the_first_delivery_answered(client, clock):
    store = client.app[keys.STORE]
    created = int(clock.now())
    key = f"msg:{91}"
    await store.first_delivery(key, 3600, "<xml><Content>first</Content></xml>")
    retry = asyncio.create_task(push(client, text("hi", 91, created), signed(clock, openid=OPENID)))
    await asyncio.sleep(0.2)
    assert not retry.done()
    await store.delivery_done(key)
    resp = await retry
    assert await resp.text() == "<xml><Content>first</Content></xml>"


# The padding oracle (§11): after msg_signature, every failure must look the same.


def raw_cipher(plaintext: bytes) -> str:
    """AES-256-CBC with WeChat's key and IV, no padding added: any plaintext, even a wrong one."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = aes_key_from(AES_KEY)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plaintext) + encryptor.finalize()).decode()


def laid_out(body: bytes, appid: bytes = APPID.encode(), length: int | None = None) -> bytes:
    plain = b"r" * 16 + struct.pack(">I", len(body) if length is None else length) + body + appid
    return pkcs7_pad(plain)


def undecryptable_ciphertexts() -> dict[str, str]:
    xml = event("subscribe", 1714036504).encode()
    good = MessageCrypto(TOKEN, AES_KEY, APPID).encrypt(xml.decode())
    raw = bytearray(base64.b64decode(good))
    raw[-17] ^= 0x01  # the classic probe: flip a byte of the next-to-last block
    return {
        "not base64": "not*base64!",
        "not whole blocks": base64.b64encode(b"x" * 40).decode(),
        "bad padding": raw_cipher(b"r" * 31 + b"\x00"),
        "padding probe": base64.b64encode(bytes(raw)).decode(),
        "length past the end": raw_cipher(laid_out(xml, length=99999)),
        "another AppID": raw_cipher(laid_out(xml, appid=b"wx0000000000000000")),
        "not UTF-8": raw_cipher(laid_out(b"\xff\xfe<xml/>")),
        "not XML": raw_cipher(laid_out(b"no xml here")),
        "no sender": raw_cipher(laid_out(b"<xml><MsgType>text</MsgType></xml>")),
    }


async def test_every_undecryptable_push_gets_one_identical_answer(make_client, clock):
    client = await make_client(wechat_message_mode="safe", wechat_aes_key=AES_KEY)
    answers = {}
    for what, encrypted in undecryptable_ciphertexts().items():
        params = signed(clock, openid=OPENID, encrypted=encrypted)
        body = build_message({"ToUserName": "gh_5a4db0c0ffee", "Encrypt": encrypted})
        resp = await push(client, body, params)
        answer = await resp.json()
        del answer["id"]  # unique per answer by design
        answers[what] = (resp.status, answer)
    distinct = {json.dumps(answer, sort_keys=True) for answer in answers.values()}
    assert len(distinct) == 1, answers
    status, answer = next(iter(answers.values()))
    assert status == 400 and answer["name"] == "INVALID_MESSAGE"
    assert answer["details"] == {"field": "Encrypt", "fieldValue": None}
    assert await stored_pushes(client) == 0

    metrics = await (await client.get("/metrics")).text()
    assert f"wechat_push_unreadable_total {float(len(answers))}" in metrics
