"""JS-SDK signatures (/wechat/jssdk/config) and the jsapi_ticket kept like the base token.

Everything goes over HTTP to the emulator, on the manual clock: the signature is checked by the
emulator's own wx.config check (and by wechatpy's signer, which nobody here wrote), the ticket
is fetched once per lifetime across instances sharing a store, and a base token WeChat rejects
(40001, 42001) is renewed once.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

import pytest
from wechatpy.client.api.jsapi import WeChatJSAPI

from flows import ADMIN_KEY, APP_ORIGIN, APPID
from service import keys
from service.sandbox.jsapi import JSAPI_KEY
from service.tokens.upkeep import Upkeep, start_scheduler

TICKET_LIFETIME = 7200
PAGE = f"{APP_ORIGIN}/share?item=7&from=timeline"


def getticket_calls(emulator) -> int:
    return emulator.stats["cgi-bin/ticket/getticket"]


async def config_for(client, url: str = PAGE) -> dict:
    resp = await client.get("/wechat/jssdk/config", params={"url": url})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    return await resp.json()


async def verify(phone, config: dict, url: str) -> dict:
    """The emulator's wx.config check, as the JS-SDK has WeChat make it."""
    resp = await phone.post("/_sandbox/jssdk/verify", json={**config, "url": url})
    assert resp.status == 200
    return await resp.json()


@pytest.fixture
async def phone(aiohttp_client, emulator_server):
    return await aiohttp_client(emulator_server)


async def test_the_signature_passes_wx_configs_check_and_a_wrong_one_does_not(client, phone):
    config = await config_for(client)
    assert config["appId"] == APPID
    assert isinstance(config["timestamp"], int) and len(config["nonceStr"]) == 16
    assert await verify(phone, config, PAGE) == {"ok": True, "errMsg": "config:ok"}
    wrong = config["signature"][:-1] + ("0" if config["signature"][-1] != "0" else "1")
    for changed, url in (
        ({"signature": wrong}, PAGE),
        ({}, PAGE + "&more=1"),  # another page
        ({"nonceStr": config["nonceStr"] + "x"}, PAGE),
        ({"timestamp": config["timestamp"] + 1}, PAGE),
        ({"appId": "wx0000000000000000"}, PAGE),
    ):
        answer = await verify(phone, {**config, **changed}, url)
        assert answer == {"ok": False, "errMsg": "config:invalid signature"}, changed
    # Nonces are new on every answer.
    assert (await config_for(client))["nonceStr"] != config["nonceStr"]


async def test_the_fragment_is_dropped_and_wechatpy_signs_alike(client, phone):
    config = await config_for(client, PAGE + "#/cart?step=2")
    ticket = await client.app[keys.ACCOUNTS].default.tickets.get()
    expected = hashlib.sha1(  # noqa: S324 - WeChat's algorithm
        f"jsapi_ticket={ticket}&noncestr={config['nonceStr']}"
        f"&timestamp={config['timestamp']}&url={PAGE}".encode()
    ).hexdigest()
    assert config["signature"] == expected
    # wechatpy's WeChatJSAPI.get_jsapi_signature: the same signature, for the URL without #.
    theirs = WeChatJSAPI.get_jsapi_signature(
        None, config["nonceStr"], ticket, config["timestamp"], PAGE
    )
    assert theirs == config["signature"]
    assert (await verify(phone, config, PAGE))["ok"] is True


async def test_the_documented_example_signature():
    """The JS-SDK doc's example (附录1): its ticket, noncestr, timestamp and url."""
    from service.jssdk.signing import jsapi_signature

    assert (
        jsapi_signature(
            "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
            "Wm3WZYTPz0wzccnW",
            1414587457,
            "http://mp.weixin.qq.com?params=value",
        )
        == "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
    )


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://evil.example.net/page", "ORIGIN_NOT_ALLOWED"),
        ("https://evil.example.net/page#https://app.example.com/", "ORIGIN_NOT_ALLOWED"),
        ("/relative/page", "INVALID_PARAMETER"),
        ("javascript:alert(1)", "INVALID_PARAMETER"),
        ("https://user:pw@app.example.com/page", "INVALID_PARAMETER"),
        ("", "MISSING_PARAMETER"),
    ],
)
async def test_a_url_of_another_origin_or_form_is_refused(client, emulator, url, name):
    resp = await client.get("/wechat/jssdk/config", params={"url": url})
    assert resp.status == 400
    body = await resp.json()
    assert (body["name"], body["details"]["field"]) == (name, "url")
    assert getticket_calls(emulator) == 0  # refused before any ticket is fetched


async def test_signatures_never_fetch_a_ticket_per_request(client, emulator):
    for _ in range(5):
        await config_for(client)
    assert getticket_calls(emulator) == 1


async def test_two_instances_fetch_the_ticket_once_per_lifetime(
    make_client, shared_mongo, emulator, clock, phone
):
    """Two instances sharing a store, each running the upkeep jobs every 60 s (with jitter),
    pages asking for signatures every 5 minutes, for a day."""
    clients = [await make_client(mongo_client=shared_mongo) for _ in range(2)]
    rng = random.Random(14)
    start = clock.now()
    next_check = [start + rng.uniform(0, 60) for _ in clients]
    next_request = start
    seen: set[str] = set()
    while clock.now() < start + 86400:
        now = min([*next_check, next_request])
        clock.advance(now - clock.now())
        for i, client in enumerate(clients):
            if next_check[i] <= now:
                await client.app[keys.ACCOUNTS].default.base_tokens.renew_if_due()
                await client.app[keys.ACCOUNTS].default.tickets.renew_if_due()
                next_check[i] = now + 60 + rng.uniform(0, 15)
        if next_request <= now:
            client = rng.choice(clients)
            config = await config_for(client)
            # Every signature handed out passes WeChat's check when the page runs it.
            assert (await verify(phone, config, PAGE))["ok"], f"at {now - start:.0f} s"
            seen.add(await client.app[keys.ACCOUNTS].default.tickets.get())
            next_request = now + 300
    assert getticket_calls(emulator) == len(seen)
    assert 12 <= getticket_calls(emulator) <= 13
    holders = {
        (await c.app[keys.STORE].get_base_token(f"jsapi_ticket:{APPID}"))["fetchedBy"]
        for c in clients
    }
    assert len(holders) == 1  # both read the one stored ticket


async def test_instances_asked_at_once_share_one_fetch(make_client, shared_mongo, emulator, clock):
    """No ticket stored and pages asking three instances at once: one getticket, under the
    lease; the ticket due and all three renewing at once: one more."""
    clients = [await make_client(mongo_client=shared_mongo) for _ in range(3)]
    keepers = [c.app[keys.ACCOUNTS].default.tickets for c in clients]
    await asyncio.gather(*(config_for(c) for c in clients for _ in range(2)))
    assert getticket_calls(emulator) == 1
    assert len({await keeper.get() for keeper in keepers}) == 1
    clock.advance(TICKET_LIFETIME - clients[0].app[keys.SETTINGS].base_token_refresh_margin)
    renewed = await asyncio.gather(*(keeper.renew_if_due() for keeper in keepers))
    assert sorted(renewed) == [False, False, True]
    assert getticket_calls(emulator) == 2


async def test_a_ticket_is_renewed_ahead_of_expiry_and_only_once_asked_for(client, emulator, clock):
    tickets = client.app[keys.ACCOUNTS].default.tickets
    assert await tickets.renew_if_due() is False  # no page ever asked: no quota spent
    assert getticket_calls(emulator) == 0
    first = await tickets.get()
    assert await tickets.renew_if_due() is False  # fresh
    clock.advance(TICKET_LIFETIME - client.app[keys.SETTINGS].base_token_refresh_margin)
    assert await tickets.renew_if_due() is True
    assert await tickets.get() != first
    assert getticket_calls(emulator) == 2


@pytest.mark.parametrize("errcode", [40001, 42001])
async def test_a_rejected_base_token_is_renewed_once_and_the_ticket_fetched(
    client, emulator, phone, errcode
):
    await client.app[keys.ACCOUNTS].default.base_tokens.get()
    emulator.faults.set("errcode", errcode=errcode, paths=["cgi-bin/ticket/getticket"], count=1)
    config = await config_for(client)
    assert (await verify(phone, config, PAGE))["ok"] is True
    assert getticket_calls(emulator) == 2  # refused once, then asked with a new base token
    # The rejected base token was dropped (compare-and-set) and fetched again, once.
    assert emulator.stats["cgi-bin/stable_token"] == 2


async def test_a_ticket_refusal_is_recorded_and_backed_off(client, emulator):
    emulator.faults.set("errcode", errcode=45009, paths=["cgi-bin/ticket/getticket"], count=1)
    resp = await client.get("/wechat/jssdk/config", params={"url": PAGE})
    assert resp.status == 502
    assert (await resp.json())["details"]["fieldValue"] == 45009
    resp = await client.get("/wechat/jssdk/config", params={"url": PAGE})
    assert resp.status == 502  # backing off: WeChat is not asked again
    assert getticket_calls(emulator) == 1
    status = await (
        await client.get("/wechat/tokens/status", headers={"X-Admin-Key": ADMIN_KEY})
    ).json()
    ticket = status["jsapiTicket"]
    assert ticket["valid"] is False
    assert ticket["lastError"]["errcode"] == 45009 and ticket["backoffUntil"]


async def test_the_status_page_shows_the_ticket_never_its_value(client):
    ticket = await client.app[keys.ACCOUNTS].default.tickets.get()
    resp = await client.get("/wechat/tokens/status", headers={"X-Admin-Key": ADMIN_KEY})
    text = await resp.text()
    assert ticket not in text
    body = await resp.json()
    assert body["jsapiTicket"]["valid"] is True
    assert body["jsapiTicket"]["remainingSeconds"] > 7000


async def test_the_scheduler_runs_the_ticket_renewal(client):
    app = client.app
    default = app[keys.ACCOUNTS].default
    upkeep = Upkeep(
        name="default",
        keeper=default.base_tokens,
        sweeper=default.web_tokens,
        tickets=default.tickets,
    )
    scheduler = start_scheduler(upkeeps=[upkeep], settings=app[keys.SETTINGS])
    try:
        assert "jsapi_ticket" in {job.id for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)


# -- the emulator's getticket ---------------------------------------------------------------------


async def test_the_emulators_getticket_answers_as_wechat_documents(phone, emulator, clock):
    resp = await phone.get(
        "/cgi-bin/token",
        params={
            "grant_type": "client_credential",
            "appid": APPID,
            "secret": emulator.config.secret,
        },
    )
    token = (await resp.json())["access_token"]

    async def getticket(**params) -> dict:
        return await (await phone.get("/cgi-bin/ticket/getticket", params=params)).json()

    first = await getticket(access_token=token, type="jsapi")
    assert (first["errcode"], first["errmsg"], first["expires_in"]) == (0, "ok", 7200)
    second = await getticket(access_token=token, type="jsapi")
    assert second["ticket"] != first["ticket"]
    live = emulator_tickets(phone).live_jsapi_tickets(clock.now())
    assert {first["ticket"], second["ticket"]} <= set(live)  # the earlier one stays valid
    assert (await getticket(access_token=token, type="wx_card"))["errcode"] == 0
    assert (await getticket(access_token=token, type="other"))["errcode"] == 40097
    assert (await getticket(access_token=token))["errcode"] == 40097
    assert (await getticket(type="jsapi"))["errcode"] == 41001
    assert (await getticket(access_token="not-a-token", type="jsapi"))["errcode"] == 40001
    clock.advance(7200)
    assert (await getticket(access_token=token, type="jsapi"))["errcode"] == 42001
    assert emulator_tickets(phone).live_jsapi_tickets(clock.now()) == []


def emulator_tickets(phone):
    return phone.server.app[JSAPI_KEY]


async def test_metrics_show_the_tickets_remaining_life(client, clock):
    text = await (await client.get("/metrics")).text()
    assert (
        'wechat_jsapi_ticket_remaining_seconds{account="default"} 0.0' in text
    )  # none asked for yet
    await client.app[keys.ACCOUNTS].default.tickets.get()
    clock.advance(100)
    text = await (await client.get("/metrics")).text()
    assert 'wechat_jsapi_ticket_remaining_seconds{account="default"} 7100.0' in text
