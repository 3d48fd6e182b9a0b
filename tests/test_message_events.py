"""Everything WeChat pushes to POST /wechat/message, nested XML included, is acknowledged once.

WeChat's menu events (scancode_push, pic_weixin, location_select…), its mass-send report and the
subscribe-message popups nest elements; a server that refuses them answers 400, the user sees
"该公众号暂时无法提供服务" and WeChat retries (§10). The documented XML of each (tests/
wechat_samples.py, from WeChat's documentation as reproduced in wechatpy's tests) is sent
two ways: signed by hand as WeChat signs it, and pushed by the emulator playing the person
(POST /_sandbox/api/push), which also carries the service's passive and encrypted replies back.
"""

from __future__ import annotations

import logging

import pytest
from wechat_samples import FLAT_EVENTS, MESSAGES, NESTED_EVENTS, SAMPLES

from flows import AES_KEY, sealed, signed
from service import keys
from service.sandbox import SANDBOX_USERS
from service.wechat.xml import as_list, parse_message

FOLLOWER, VISITOR = SANDBOX_USERS[0], SANDBOX_USERS[1]
ALL = NESTED_EVENTS + FLAT_EVENTS + MESSAGES
FILLED_BY_WECHAT = ("ToUserName", "FromUserName", "CreateTime", "MsgType", "MsgId")
REPLY = "Thanks! We read every message."


async def deliver(client, query: dict[str, str], body: str) -> str:
    resp = await client.post("/wechat/message", params=query, data=body.encode())
    assert resp.status == 200, await resp.text()
    return await resp.text()


async def stored_pushes(client) -> int:
    return await client.app[keys.STORE].pushed_messages.count_documents({})


def person_fields(name: str) -> tuple[str, dict]:
    """The sample as the emulator's push route takes it: what the person did, without what
    WeChat fills in (ToUserName, FromUserName, CreateTime, MsgType, MsgId)."""
    fields = parse_message(SAMPLES[name])
    extra = {k: v for k, v in fields.items() if k not in FILLED_BY_WECHAT}
    return fields["MsgType"], extra


async def person_push(phone, openid: str, msg_type: str, **fields) -> dict:
    resp = await phone.post(
        "/_sandbox/api/push", json={"openid": openid, "msgType": msg_type, **fields}
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


# WeChat's documented XML, signed by hand


@pytest.mark.parametrize("name", ALL)
async def test_every_documented_push_is_acknowledged_and_a_retry_is_not_processed_again(
    client, clock, caplog, name
):
    caplog.set_level(logging.INFO, logger="service.push.handling")
    xml = SAMPLES[name]
    fields = parse_message(xml)
    query = signed(clock, openid=fields["FromUserName"])
    assert await deliver(client, query, xml) == "success"
    clock.advance(5)  # WeChat waited its 5 s for an answer that got lost, and asks again
    assert await deliver(client, query, xml) == "success"  # the same query, the same bytes
    assert await stored_pushes(client) == 1
    # Its type is logged once, when it is processed; who sent it is not.
    kind = f"event/{fields['Event']}" if fields["MsgType"] == "event" else fields["MsgType"]
    received = [r.getMessage() for r in caplog.records if "push received" in r.getMessage()]
    assert received == [f"push received: {kind!r}"]
    assert fields["FromUserName"] not in caplog.text


async def test_a_push_whose_event_fields_nest_is_acknowledged(client, clock):
    """A well-formed push of a shape no documentation shows (Event, MsgType or EventKey with
    child elements) is acknowledged, so WeChat neither retries nor tells the person the account
    cannot serve them. A nested Event or MsgType is not acted on, its meaning being unknown; a
    nested EventKey reads as no key (a subscribe is a plain follow, never a QR sign-in)."""
    openid = VISITOR.openid
    created = int(clock.now())
    head = (
        f"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
        "</FromUserName><CreateTime>{created}</CreateTime>"
    )
    store = client.app[keys.STORE]
    nested_event = "<MsgType>event</MsgType><Event><A>subscribe</A></Event></xml>"
    nested_type = "<MsgType><A>event</A></MsgType><Event>subscribe</Event></xml>"
    for n, tail in enumerate((nested_event, nested_type)):
        xml = head.format(created=created + n) + tail
        assert await deliver(client, signed(clock, openid=openid), xml) == "success"
    assert await store.get_user(openid) is None  # neither was read as a follow
    nested_key = (
        "<MsgType>event</MsgType><Event>subscribe</Event>"
        "<EventKey><A>qrscene_1</A></EventKey></xml>"
    )
    xml = head.format(created=created + 2) + nested_key
    assert await deliver(client, signed(clock, openid=openid), xml) == "success"
    user = await store.get_user(openid)
    assert user["subscribed"] is True and not user.get("subscribeScene")
    assert await stored_pushes(client) == 3


async def test_an_event_name_is_logged_bounded(client, clock, caplog):
    caplog.set_level(logging.INFO, logger="service.push.handling")
    openid = VISITOR.openid
    xml = (
        f"<xml><ToUserName>gh_1</ToUserName><FromUserName>{openid}</FromUserName>"
        f"<CreateTime>{int(clock.now())}</CreateTime><MsgType>event</MsgType>"
        f"<Event>{'x' * 5000}</Event></xml>"
    )
    assert await deliver(client, signed(clock, openid=openid), xml) == "success"
    [line] = [r.getMessage() for r in caplog.records if "push received" in r.getMessage()]
    assert len(line) < 120


@pytest.mark.parametrize("name", NESTED_EVENTS)
async def test_nested_events_are_read_after_decryption_in_safe_mode(make_client, clock, name):
    client = await make_client(wechat_message_mode="safe", wechat_aes_key=AES_KEY)
    query, body = sealed(SAMPLES[name], clock, openid="o1")
    assert await deliver(client, query, body) == "success"
    assert await deliver(client, query, body) == "success"
    assert await stored_pushes(client) == 1


async def test_a_redelivery_under_a_new_nonce_is_still_processed_once(client, clock):
    """Whether WeChat's retry reuses the nonce is not documented (§10): either way the event
    is the same FromUserName + CreateTime, so it is answered and not processed twice."""
    xml = SAMPLES["scancode_push"]
    openid = parse_message(xml)["FromUserName"]
    assert await deliver(client, signed(clock, openid=openid), xml) == "success"
    assert await deliver(client, signed(clock, openid=openid), xml) == "success"
    assert await stored_pushes(client) == 1


async def test_hostile_nesting_is_refused(client, clock):
    head = (
        "<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName>"
        f"<CreateTime>{int(clock.now())}</CreateTime>"
    )
    for body in (
        # Far deeper than WeChat's deepest (four below <xml>), or thousands of elements.
        head + "<MsgType>event</MsgType><Event>X</Event>" + "<A>" * 20 + "</A>" * 20 + "</xml>",
        head + "<MsgType>event</MsgType><Event>X</Event>" + "<A/>" * 2000 + "</xml>",
        # Who sent it, made a tree: nothing to de-duplicate or reply by.
        head.replace("<FromUserName>o1</FromUserName>", "<FromUserName><A>o1</A></FromUserName>")
        + "<MsgType>text</MsgType><Content>x</Content><MsgId>1</MsgId></xml>",
    ):
        resp = await client.post("/wechat/message", params=signed(clock, openid="o1"), data=body)
        assert resp.status == 400
        assert (await resp.json())["name"] == "INVALID_MESSAGE"
    assert await stored_pushes(client) == 0


# The same pushes made by the emulator, as the person would (sandbox)


@pytest.mark.parametrize("mode", ["plain", "safe"])
@pytest.mark.parametrize("name", NESTED_EVENTS + FLAT_EVENTS + MESSAGES)
async def test_the_emulator_pushes_each_documented_push_and_the_service_acknowledges_it(
    wired_service, emulator, name, mode
):
    client, phone = await wired_service(mode)
    msg_type, extra = person_fields(name)
    answer = await person_push(phone, FOLLOWER.openid, msg_type, **extra)
    assert (answer["delivered"], answer["attempts"], answer["reply"]) == (True, 1, "success")
    assert answer["msgType"] == msg_type
    [record] = emulator.pushes
    # What the emulator sent reads back as the documented push, nesting and all.
    assert {k: v for k, v in record.fields.items() if k not in FILLED_BY_WECHAT} == extra
    assert await stored_pushes(client) == 1


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
async def test_a_passive_text_reply_comes_back_through_the_emulator(wired_service, clock, mode):
    _, phone = await wired_service(mode, message_text_reply=REPLY)
    answer = await person_push(phone, FOLLOWER.openid, "text", Content="hello")
    assert answer["delivered"] is True, answer
    # replyFields: the reply as WeChat reads it (decrypted in safe mode).
    assert answer["replyFields"] == {
        "ToUserName": FOLLOWER.openid,
        "FromUserName": "gh_5a4db0c0ffee",
        "CreateTime": str(int(clock.now())),
        "MsgType": "text",
        "Content": REPLY,
    }
    if mode == "plain":
        assert parse_message(answer["reply"])["Content"] == REPLY
    else:
        # §11: an encrypted push gets an encrypted reply; nothing of it in the clear.
        outer = parse_message(answer["reply"])
        assert set(outer) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
        assert REPLY not in answer["reply"]


async def test_a_follow_without_a_scene_records_the_user_as_following(
    wired_service, emulator, clock
):
    client, phone = await wired_service()
    resp = await phone.post("/_sandbox/api/follow", json={"openid": VISITOR.openid})
    answer = await resp.json()
    assert (answer["event"], answer["eventKey"], answer["delivered"]) == ("subscribe", "", True)
    user = await client.app[keys.STORE].get_user(VISITOR.openid)
    assert user["subscribed"] is True
    assert user["subscribeTime"].timestamp() == int(clock.now())
    assert emulator.users[VISITOR.openid].subscribed  # and WeChat's user/info agrees (§9)

    clock.advance(60)
    answer = await person_push(phone, VISITOR.openid, "event", Event="unsubscribe")
    assert answer["delivered"] is True
    assert (await client.app[keys.STORE].get_user(VISITOR.openid))["subscribed"] is False


async def test_the_mounted_emulator_pushes_to_the_service_it_runs_in(sandbox_server, browser):
    """`make run`: the control route sits at /sandbox/_sandbox/api/push."""
    base = f"http://127.0.0.1:{sandbox_server.port}/sandbox"
    async with browser.post(
        f"{base}/_sandbox/api/push",
        json={
            "openid": FOLLOWER.openid,
            "msgType": "event",
            "Event": "scancode_waitmsg",
            "EventKey": "k",
            "ScanCodeInfo": {"ScanType": "qrcode", "ScanResult": "x"},
        },
    ) as resp:
        assert resp.status == 200
        answer = await resp.json()
    assert (answer["event"], answer["delivered"], answer["reply"]) == (
        "scancode_waitmsg",
        True,
        "success",
    )


def test_a_repeated_element_reads_as_a_list_once_or_many():
    one = parse_message(SAMPLES["pic_sysphoto"])["SendPicsInfo"]["PicList"]["item"]
    two = parse_message(SAMPLES["MASSSENDJOBFINISH"])["CopyrightCheckResult"]["ResultList"]
    assert [p["PicMd5Sum"] for p in as_list(one)] == ["1b5f7c23b5bf75682a53e7b6d163e185"]
    assert [i["OriginalArticleUrl"] for i in as_list(two["item"])] == ["Url_1", "Url_2"]
    assert as_list(None) == []
