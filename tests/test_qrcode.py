"""GET /wechat/qrcode: the account's parametric QR codes, through the emulator's qrcode/create."""

from __future__ import annotations

import asyncio
import base64
import io
from datetime import UTC, datetime

import pytest
import zxingcpp
from PIL import Image

from flows import ADMIN_KEY, assert_error_shape, until
from service import keys

CREATE = "cgi-bin/qrcode/create"
ADMIN = {"X-Admin-Key": ADMIN_KEY}
BEIJING = 8 * 3600


def scanned_text(image: bytes) -> str:
    """What a phone's camera reads from the image."""
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(image)))
    assert len(results) == 1
    return results[0].text


async def qr(client, headers=None, **params):
    # Permanent codes are for operators: the tests that ask for them are the operator.
    if headers is None and params.get("type") == "permanent":
        headers = ADMIN
    return await client.get(
        "/wechat/qrcode", params={k: str(v) for k, v in params.items()}, headers=headers
    )


async def test_a_png_scans_as_the_url_wechat_gave(client, emulator):
    resp = await qr(client, scene="campaign-7", format="json")
    assert resp.status == 200
    body = await resp.json()
    assert body["type"] == "temporary" and body["scene"] == "campaign-7"
    assert body["url"].startswith("http://weixin.qq.com/q/")
    image = base64.b64decode(body["image"].removeprefix("data:image/png;base64,"))
    assert scanned_text(image) == body["url"]

    png = await qr(client, scene="campaign-7")
    assert png.content_type == "image/png"
    assert scanned_text(await png.read()) == body["url"]
    # The image was drawn here; WeChat's showqrcode was never asked.
    assert emulator.stats["cgi-bin/showqrcode"] == 0


async def test_svg_and_drawing_options(client):
    svg = await qr(client, scene="s", format="svg", scale=2, border=1)
    assert svg.content_type == "image/svg+xml"
    assert (await svg.text()).lstrip().startswith("<?xml")
    small = await (await qr(client, scene="s", scale=2, border=0)).read()
    large = await (await qr(client, scene="s", scale=10, border=8)).read()
    assert Image.open(io.BytesIO(small)).size < Image.open(io.BytesIO(large)).size


async def test_tickets_are_reused_until_near_expiry(client, emulator, clock):
    first = await (await qr(client, scene=42, format="json", expireSeconds=3600)).json()
    second = await (await qr(client, scene=42, format="json", expireSeconds=3600)).json()
    assert second["ticket"] == first["ticket"]
    assert emulator.stats[CREATE] == 1
    clock.advance(1700)  # 1900 s left: still more than half of the hour asked for
    assert (await (await qr(client, scene=42, format="json")).json())["ticket"] == first["ticket"]
    clock.advance(200)  # 1700 s left: a new code, so no client is handed one about to die
    third = await (await qr(client, scene=42, format="json", expireSeconds=3600)).json()
    assert third["ticket"] != first["ticket"]
    assert emulator.stats[CREATE] == 2


async def test_scenes_are_kept_apart_by_type_and_value(client, emulator):
    await qr(client, scene=7)
    await qr(client, scene="7a")
    await qr(client, scene=7, type="permanent")
    assert emulator.stats[CREATE] == 3


async def test_cache_headers_follow_the_tickets_life(client, clock):
    resp = await qr(client, scene="c", expireSeconds=600)
    assert resp.headers["Cache-Control"] == "private, max-age=600"
    clock.advance(100)
    again = await qr(client, scene="c", expireSeconds=600)
    assert again.headers["Cache-Control"] == "private, max-age=500"
    permanent = await qr(client, scene="c", type="permanent")
    assert permanent.headers["Cache-Control"] == f"private, max-age={365 * 86400}"
    assert (await (await qr(client, scene="c", type="permanent", format="json")).json())[
        "expiresAt"
    ] is None


async def test_the_default_life_is_thirty_minutes(client, clock):
    resp = await qr(client, scene="d")
    assert resp.headers["Cache-Control"] == "private, max-age=1800"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "scene"),
        ({"scene": "x" * 65}, "scene"),
        ({"scene": "0"}, "scene"),
        ({"scene": str(2**32)}, "scene"),
        ({"scene": "100001", "type": "permanent"}, "scene"),
        ({"scene": "a", "type": "forever"}, "type"),
        ({"scene": "a", "expireSeconds": "59"}, "expireSeconds"),
        ({"scene": "a", "expireSeconds": "2592001"}, "expireSeconds"),
        ({"scene": "a", "expireSeconds": "ten"}, "expireSeconds"),
        ({"scene": "a", "type": "permanent", "expireSeconds": "60"}, "expireSeconds"),
        ({"scene": "a", "format": "gif"}, "format"),
        ({"scene": "a", "scale": "0"}, "scale"),
        ({"scene": "a", "border": "99"}, "border"),
    ],
)
async def test_out_of_range_input_is_400_naming_the_field(client, emulator, params, field):
    resp = await qr(client, **params)
    assert resp.status == 400
    body = await resp.json()
    assert_error_shape(body, 400, body["name"], field)
    assert emulator.stats[CREATE] == 0


async def test_wechat_refusing_is_a_gateway_error(client, emulator):
    emulator.faults.set("errcode", errcode=45009, paths=[CREATE])
    resp = await qr(client, scene="q")
    assert_error_shape(await resp.json(), 502, "WECHAT_ERROR", "errcode")


# -- quota abuse (issue 11 §4) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "headers", "status", "name"),
    [
        ({}, {}, 401, "UNAUTHORIZED"),
        ({}, {"X-Admin-Key": "wrong-key-0123456789"}, 403, "FORBIDDEN"),
        ({"admin_key": ""}, {"X-Admin-Key": ADMIN_KEY}, 403, "FORBIDDEN"),
    ],
    ids=["no key", "wrong key", "ADMIN_KEY unset"],
)
async def test_permanent_codes_need_the_admin_key(
    make_client, emulator, overrides, headers, status, name
):
    """The account may hold 100,000 permanent codes in its whole life (§8): an anonymous
    caller must not be able to spend them."""
    client = await make_client(**overrides)
    resp = await qr(client, headers=headers, scene="poster-1", type="permanent")
    assert_error_shape(await resp.json(), status, name, "X-Admin-Key")
    assert emulator.stats[CREATE] == 0
    # Temporary codes stay open to anyone.
    assert (await qr(client, headers=headers, scene="poster-1")).status == 200


async def test_the_admin_key_mints_permanent_codes(client, emulator):
    resp = await qr(client, headers=ADMIN, scene="poster-1", type="permanent", format="json")
    assert resp.status == 200
    assert (await resp.json())["expiresAt"] is None
    assert emulator.stats[CREATE] == 1


async def test_concurrent_requests_for_one_code_make_one_create_call(client, emulator):
    # WeChat answers slowly, so all the requests arrive while the first creation is in flight.
    emulator.faults.set("slow", paths=[CREATE], delay=0.3)
    answers = await asyncio.gather(*(qr(client, scene="launch", format="json") for _ in range(8)))
    assert [resp.status for resp in answers] == [200] * 8
    tickets = {(await resp.json())["ticket"] for resp in answers}
    assert len(tickets) == 1
    assert emulator.stats[CREATE] == 1


async def test_instances_sharing_a_store_make_one_create_call(make_client, shared_mongo, emulator):
    """Replicas behind a load balancer: the first claims the creation in MongoDB, the others
    wait for the ticket it stores."""
    first = await make_client(mongo_client=shared_mongo)
    second = await make_client(mongo_client=shared_mongo)
    emulator.faults.set("slow", paths=[CREATE], delay=0.4)
    answers = await asyncio.gather(
        *(
            qr(instance, scene="launch", format="json")
            for _ in range(4)
            for instance in (first, second)
        )
    )
    assert [resp.status for resp in answers] == [200] * 8
    assert len({(await resp.json())["ticket"] for resp in answers}) == 1
    assert emulator.stats[CREATE] == 1


async def test_a_claimant_whose_claim_lapsed_during_retries_does_not_create_again(
    make_client, shared_mongo, emulator, clock
):
    """WeChat answers busy and the claimant pauses before retrying; meanwhile its claim lapses
    (a long pause) and another instance takes the creation over. The first must not call
    qrcode/create again: it waits for the other's ticket."""
    slow_retry = await make_client(mongo_client=shared_mongo, wechat_retry_delay=0.5)
    other = await make_client(mongo_client=shared_mongo)
    codes = slow_retry.app[keys.ACCOUNTS].default.qr_codes
    emulator.faults.set("busy", paths=[CREATE], count=1)
    first = asyncio.create_task(qr(slow_retry, scene="lapsed", format="json"))
    assert await until(lambda: emulator.stats[CREATE] == 1)  # busy: the claimant pauses
    clock.advance(codes.claim_ttl + 1)
    second = await qr(other, scene="lapsed", format="json")
    assert second.status == 200
    answer = await first
    assert answer.status == 200
    assert (await answer.json())["ticket"] == (await second.json())["ticket"]
    assert emulator.stats[CREATE] == 2  # the busy answer and the other instance's one code


async def test_a_failed_claimant_leaves_the_code_to_the_next(make_client, shared_mongo, emulator):
    impatient = await make_client(mongo_client=shared_mongo, wechat_timeout=0.3)
    other = await make_client(mongo_client=shared_mongo)
    # The first instance's creation outlives its WECHAT_TIMEOUT; the other instance's request
    # waits for it meanwhile, then creates the code itself.
    emulator.faults.set("slow", paths=[CREATE], delay=0.6, count=1)
    failing = asyncio.create_task(qr(impatient, scene="retry", format="json"))
    await asyncio.sleep(0.1)
    waiting = asyncio.create_task(qr(other, scene="retry", format="json"))
    assert_error_shape(await (await failing).json(), 504, "WECHAT_TIMEOUT", "")
    assert not waiting.done()
    # Its own creation, not the failed one's outcome (the emulator counts the timed-out call
    # only once its slow answer is done, so the counter is not compared here).
    resp = await waiting
    assert resp.status == 200, await resp.text()


async def test_a_dead_claimants_claim_lapses(make_client, shared_mongo, emulator, clock):
    """An instance that claimed the creation and died never releases its claim: the others
    wait until it lapses, then one of them creates the code."""
    client = await make_client(mongo_client=shared_mongo)
    codes = client.app[keys.ACCOUNTS].default.qr_codes
    store = client.app[keys.STORE]
    assert await store.claim_qr_create("temporary:orphan", "a-dead-instance", codes.claim_ttl)
    waiting = asyncio.create_task(qr(client, scene="orphan", format="json"))
    await asyncio.sleep(0.3)
    assert not waiting.done() and emulator.stats[CREATE] == 0
    clock.advance(codes.claim_ttl)
    resp = await asyncio.wait_for(waiting, 5)
    assert resp.status == 200, await resp.text()
    assert emulator.stats[CREATE] == 1


def next_beijing_midnight(now: float) -> int:
    return (int(now + BEIJING) // 86400 + 1) * 86400 - BEIJING


async def status_of(client) -> dict:
    resp = await client.get("/wechat/tokens/status", headers=ADMIN)
    assert resp.status == 200
    return (await resp.json())["qrcodeBudget"]


async def test_a_daily_budget_caps_create_calls_until_midnight_in_beijing(
    make_client, emulator, clock
):
    client = await make_client(qrcode_daily_budget=2)
    assert (await qr(client, scene="a")).status == 200
    assert (await qr(client, scene="b")).status == 200
    # A stored ticket is handed out again without a call, so it spends nothing.
    assert (await qr(client, scene="a")).status == 200
    assert emulator.stats[CREATE] == 2

    reset = next_beijing_midnight(clock.now())
    over = await qr(client, scene="c")
    assert_error_shape(await over.json(), 429, "QRCODE_BUDGET_EXHAUSTED", "QRCODE_DAILY_BUDGET")
    assert int(over.headers["Retry-After"]) == reset - int(clock.now())
    # QR sign-in's codes come out of the same budget.
    login = await client.post("/wechat/qrcode/login")
    assert_error_shape(await login.json(), 429, "QRCODE_BUDGET_EXHAUSTED", "QRCODE_DAILY_BUDGET")
    assert emulator.stats[CREATE] == 2
    budget = await status_of(client)
    assert budget["used"] == 2 and budget["budget"] == 2
    metrics = await (await client.get("/metrics")).text()
    assert 'wechat_qrcode_budget_remaining{account="default"} 0.0' in metrics
    assert budget["resetsAt"] == datetime.fromtimestamp(reset, UTC).isoformat()

    clock.advance(reset - clock.now() - 1)  # 23:59:59 in Beijing: still spent
    assert (await qr(client, scene="c")).status == 429
    clock.advance(1)
    assert (await qr(client, scene="c")).status == 200
    assert (await client.post("/wechat/qrcode/login")).status == 201
    assert (await status_of(client))["used"] == 2
    assert emulator.stats[CREATE] == 4
