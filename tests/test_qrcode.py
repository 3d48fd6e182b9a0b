"""GET /wechat/qrcode: the account's parametric QR codes, through the emulator's qrcode/create."""

from __future__ import annotations

import base64
import io

import pytest
import zxingcpp
from PIL import Image

from flows import assert_error_shape

CREATE = "cgi-bin/qrcode/create"


def scanned_text(image: bytes) -> str:
    """What a phone's camera reads from the image."""
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(image)))
    assert len(results) == 1
    return results[0].text


async def qr(client, **params):
    return await client.get("/wechat/qrcode", params={k: str(v) for k, v in params.items()})


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
    resp = await client.get("/wechat/qrcode", params=params)
    assert resp.status == 400
    body = await resp.json()
    assert_error_shape(body, 400, body["name"], field)
    assert emulator.stats[CREATE] == 0


async def test_wechat_refusing_is_a_gateway_error(client, emulator):
    emulator.faults.set("errcode", errcode=45009, paths=[CREATE])
    resp = await qr(client, scene="q")
    assert_error_shape(await resp.json(), 502, "WECHAT_ERROR", "errcode")
