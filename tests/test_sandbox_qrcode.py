"""The emulator's parametric QR codes against ../shared/wechat-api.md (§8, §9, §12), over HTTP.

cgi-bin/qrcode/create (every action_name, scene ranges, expiry, errcodes, the permanent cap,
the daily quota), showqrcode (the image and its 404s) and the follow state cgi-bin/user/info
reports.
"""

from __future__ import annotations

import base64
import re
import struct
import zlib
from urllib.parse import quote

import pytest
import segno

from flows import APPID, SECRET
from service.sandbox import SANDBOX_USERS
from service.sandbox.qrcodes import PERMANENT_LIMIT
from service.sandbox.state import QRCODE_DAILY_QUOTA

FOLLOWER, VISITOR, NO_UNIONID, ANONYMOUS = SANDBOX_USERS
CREATE = "cgi-bin/qrcode/create"
URL_PATTERN = re.compile(r"http://weixin\.qq\.com/q/[A-Za-z0-9_-]{22,}")
TICKET_PATTERN = re.compile(r"[A-Za-z0-9+/]{80,}={0,2}")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
async def wechat(aiohttp_client, emulator_server):
    return await aiohttp_client(emulator_server)


@pytest.fixture
async def token(wechat) -> str:
    params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    resp = await wechat.get("/cgi-bin/token", params=params)
    return (await resp.json(content_type=None))["access_token"]


async def create(wechat, token: str | None, body: object = None, *, data: bytes | None = None):
    params = {"access_token": token} if token is not None else {}
    if data is None:
        resp = await wechat.post(f"/{CREATE}", params=params, json=body)
    else:
        resp = await wechat.post(f"/{CREATE}", params=params, data=data)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json; encoding=utf-8"
    return await resp.json(content_type=None)


def qr(action_name: str, scene: int | str, expire_seconds: object = None) -> dict:
    key = "scene_str" if isinstance(scene, str) else "scene_id"
    body: dict = {"action_name": action_name, "action_info": {"scene": {key: scene}}}
    if expire_seconds is not None:
        body["expire_seconds"] = expire_seconds
    return body


def assert_errcode(body: dict, errcode: int, errmsg: str) -> None:
    assert body["errcode"] == errcode, body
    assert re.fullmatch(
        re.escape(errmsg) + r" rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}", body["errmsg"]
    ), body


async def show(wechat, ticket: str):
    """GET showqrcode with the ticket URL-encoded, as §8 says: (status, content type, body)."""
    resp = await wechat.get(f"/cgi-bin/showqrcode?ticket={quote(ticket, safe='')}")
    return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


# cgi-bin/qrcode/create (§8)


@pytest.mark.parametrize(
    ("action_name", "scene", "permanent"),
    [
        ("QR_SCENE", 123, False),
        ("QR_STR_SCENE", "test", False),
        ("QR_LIMIT_SCENE", 123, True),
        ("QR_LIMIT_STR_SCENE", "test", True),
    ],
)
async def test_every_action_name(wechat, token, emulator, action_name, scene, permanent):
    answer = await create(wechat, token, qr(action_name, scene))
    if permanent:
        # Emulator choice (§8 [UNCONFIRMED]): no expire_seconds for permanent codes.
        assert list(answer) == ["ticket", "url"]
    else:
        assert list(answer) == ["ticket", "expire_seconds", "url"]
        assert answer["expire_seconds"] == 60  # §8: the current doc's default
    assert TICKET_PATTERN.fullmatch(answer["ticket"]), answer
    assert URL_PATTERN.fullmatch(answer["url"]), answer
    # The ticket holds the url, as WeChat's do; and a "+", so it must be URL-encoded.
    assert answer["url"].encode() + b"\0" in base64.b64decode(answer["ticket"])
    assert "+" in answer["ticket"]
    code = emulator.find_qrcode(ticket=answer["ticket"])
    assert (code.action_name, code.scene, code.url, code.permanent) == (
        action_name,
        scene,
        answer["url"],
        permanent,
    )
    assert emulator.find_qrcode(url=answer["url"]) == code
    status, _, _ = await show(wechat, answer["ticket"])
    assert status == 200
    assert (await wechat.get("/_stats")).status == 200
    assert (await (await wechat.get("/_stats")).json())["calls"][CREATE] == 1


async def test_every_code_is_new_for_temporary_scenes(wechat, token):
    first = await create(wechat, token, qr("QR_SCENE", 5))
    second = await create(wechat, token, qr("QR_SCENE", 5))
    assert first["ticket"] != second["ticket"] and first["url"] != second["url"]


async def test_a_permanent_scene_has_one_code(wechat, token, emulator):
    """Emulator choice: asking again for a permanent scene answers the same code."""
    first = await create(wechat, token, qr("QR_LIMIT_SCENE", 7))
    again = await create(wechat, token, qr("QR_LIMIT_SCENE", 7, expire_seconds=60))
    as_str = await create(wechat, token, qr("QR_LIMIT_STR_SCENE", "7"))
    assert again == first
    assert as_str["ticket"] != first["ticket"]
    assert emulator.qrcodes.permanent_count == 2


async def test_default_expiry_is_60_seconds(wechat, token, clock):
    answer = await create(wechat, token, qr("QR_STR_SCENE", "login"))
    assert answer["expire_seconds"] == 60
    clock.advance(59)
    assert (await show(wechat, answer["ticket"]))[0] == 200
    clock.advance(1)
    status, content_type, body = await show(wechat, answer["ticket"])
    assert status == 404 and content_type.startswith("text/plain")
    assert b"errcode" not in body


@pytest.mark.parametrize(
    ("asked", "answered"),
    [
        (1, 1),
        (0, 60),  # absent or 0: the default
        (604800, 604800),
        (2592000, 2592000),  # §8: 30 days at most
        (2592001, 2592000),  # emulator choice: clamped, and the answer says so
        (10**12, 2592000),
        (300.0, 300),  # a whole number written as a float
    ],
)
async def test_expire_seconds(wechat, token, clock, asked, answered):
    answer = await create(wechat, token, qr("QR_SCENE", 1, expire_seconds=asked))
    assert answer["expire_seconds"] == answered
    clock.advance(answered - 1)
    assert (await show(wechat, answer["ticket"]))[0] == 200
    clock.advance(1)
    assert (await show(wechat, answer["ticket"]))[0] == 404


async def test_permanent_codes_never_expire(wechat, token, clock):
    answer = await create(wechat, token, qr("QR_LIMIT_STR_SCENE", "poster", expire_seconds=60))
    clock.advance(10 * 365 * 86400)
    assert (await show(wechat, answer["ticket"]))[0] == 200


@pytest.mark.parametrize("expire_seconds", ["60", 1.5, -1, True, [60]])
async def test_expire_seconds_must_be_a_whole_number(wechat, token, expire_seconds):
    body = qr("QR_SCENE", 1, expire_seconds=expire_seconds)
    assert_errcode(await create(wechat, token, body), 47001, "data format error")


@pytest.mark.parametrize(
    ("action_name", "scene", "ok"),
    [
        ("QR_SCENE", 1, True),
        ("QR_SCENE", 2**32 - 1, True),  # 32-bit, non-zero
        ("QR_SCENE", 0, False),
        ("QR_SCENE", -1, False),
        ("QR_SCENE", 2**32, False),
        ("QR_SCENE", "123", False),  # QR_SCENE takes scene_id only
        ("QR_LIMIT_SCENE", 1, True),
        ("QR_LIMIT_SCENE", 100000, True),
        ("QR_LIMIT_SCENE", 100001, False),
        ("QR_LIMIT_SCENE", 0, False),
        ("QR_STR_SCENE", "a", True),
        ("QR_STR_SCENE", "x" * 64, True),
        ("QR_STR_SCENE", "扫码登录", True),
        ("QR_STR_SCENE", "", False),
        ("QR_STR_SCENE", "x" * 65, False),
        ("QR_STR_SCENE", 123, False),  # the *_STR_SCENEs take scene_str only
        ("QR_LIMIT_STR_SCENE", "x" * 64, True),
        ("QR_LIMIT_STR_SCENE", "x" * 65, False),
    ],
)
async def test_scene_ranges(wechat, token, emulator, action_name, scene, ok):
    answer = await create(wechat, token, qr(action_name, scene))
    if ok:
        assert "ticket" in answer, answer
        assert emulator.find_qrcode(ticket=answer["ticket"]).scene == scene
    else:
        assert_errcode(answer, 40053, "invalid action info, please check document")


@pytest.mark.parametrize(
    "body",
    [
        {"action_name": "QR_SCENE"},
        {"action_name": "QR_SCENE", "action_info": {}},
        {"action_name": "QR_SCENE", "action_info": {"scene": {}}},
        {"action_name": "QR_SCENE", "action_info": {"scene": 123}},
        {"action_name": "QR_LIMIT_STR_SCENE", "action_info": "scene"},
        {"action_name": "QR_SCENE", "action_info": {"scene_id": 123}},  # scene level missing
    ],
)
async def test_action_info_errors(wechat, token, body):
    assert_errcode(
        await create(wechat, token, body), 40053, "invalid action info, please check document"
    )


@pytest.mark.parametrize(
    "data",
    [
        b'{"action_info": {"scene": {"scene_id": 1}}}',
        b'{"action_name": "QR_FOO", "action_info": {"scene": {"scene_id": 1}}}',
        b'{"action_name": "qr_scene", "action_info": {"scene": {"scene_id": 1}}}',
        b'{"action_name": null}',
        # Observed on WeChat: single-quoted pseudo-JSON answers 40052.
        b"{'action_name': 'QR_LIMIT_SCENE', 'action_info': {'scene': {'scene_id': 1}}}",
        b"[]",
        b"\xff\xfe",
    ],
)
async def test_action_name_errors(wechat, token, data):
    assert_errcode(await create(wechat, token, data=data), 40052, "invalid action name")


async def test_empty_body(wechat, token):
    assert_errcode(await create(wechat, token, data=b""), 44002, "empty post data")


async def test_base_token_checks(wechat, token, clock):
    body = qr("QR_SCENE", 1)
    assert_errcode(await create(wechat, None, body), 41001, "access_token missing")
    assert_errcode(
        await create(wechat, "not-a-token", body),
        40001,
        "invalid credential, access_token is invalid or not latest",
    )
    clock.advance(7200)
    assert_errcode(await create(wechat, token, body), 42001, "access_token expired")


async def test_permanent_codes_stop_at_100000(wechat, token, emulator, clock):
    kept = await create(wechat, token, qr("QR_LIMIT_SCENE", 1))
    for n in range(PERMANENT_LIMIT - 1):
        emulator.qrcodes.create("QR_LIMIT_STR_SCENE", f"s{n}", clock.now(), None)
    assert emulator.qrcodes.permanent_count == PERMANENT_LIMIT
    refused = await create(wechat, token, qr("QR_LIMIT_SCENE", 2))
    assert_errcode(refused, 40053, "invalid action info, please check document")
    assert_errcode(
        await create(wechat, token, qr("QR_LIMIT_STR_SCENE", "one more")),
        40053,
        "invalid action info, please check document",
    )
    # An existing permanent code is still answered, and temporary codes are not capped.
    assert await create(wechat, token, qr("QR_LIMIT_SCENE", 1)) == kept
    assert "ticket" in await create(wechat, token, qr("QR_SCENE", 2))


async def test_daily_quota(wechat, token, emulator):
    for _ in range(QRCODE_DAILY_QUOTA - 1):
        emulator.use_daily_quota(CREATE, QRCODE_DAILY_QUOTA)
    assert "ticket" in await create(wechat, token, qr("QR_SCENE", 1))
    assert_errcode(
        await create(wechat, token, qr("QR_SCENE", 1)), 45009, "reach max api daily quota limit"
    )


async def test_faults_apply(wechat, token):
    """Registered like every WeChat API: injected faults and counters apply."""
    resp = await wechat.post(
        "/_sandbox/faults", json={"kind": "errcode", "errcode": 45009, "paths": [CREATE]}
    )
    assert resp.status == 201
    assert_errcode(
        await create(wechat, token, qr("QR_SCENE", 1)), 45009, "reach max api daily quota limit"
    )
    await wechat.delete("/_sandbox/faults")
    assert "ticket" in await create(wechat, token, qr("QR_SCENE", 1))
    calls = (await (await wechat.get("/_stats")).json())["calls"]
    assert calls[CREATE] == 2


# showqrcode (§8)


def png_pixels(png: bytes) -> tuple[int, int, bytes]:
    """A greyscale PNG's (width, height, one byte per pixel), with the standard library."""
    assert png.startswith(PNG_MAGIC)
    pos, idat, header = len(PNG_MAGIC), b"", None
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        assert (
            zlib.crc32(kind + data)
            == struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])[0]
        )
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", data)
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    assert header is not None
    width, height, depth, color, _, _, interlace = header
    assert color == 0 and depth in (1, 8) and interlace == 0, header
    raw = zlib.decompress(idat)
    stride = (width * depth + 7) // 8
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):
            left = line[x - 1] if x else 0
            up, corner = previous[x], previous[x - 1] if x else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[x] = (line[x] + best) & 0xFF
        rows.append(bytes(line))
        previous = line
    pixels = bytearray()
    for line in rows:
        if depth == 8:
            pixels += line
        else:
            pixels += bytes(255 if line[x // 8] >> (7 - x % 8) & 1 else 0 for x in range(width))
    return width, height, bytes(pixels)


def module_matrix(width: int, height: int, pixels: bytes) -> tuple[tuple[bool, ...], ...]:
    """The QR modules drawn in the image: dark = True, from the finder pattern's size."""
    dark = [i for i, p in enumerate(pixels) if p < 128]
    top, left = divmod(dark[0], width)
    run = 0
    while pixels[top * width + left + run] < 128:
        run += 1
    scale = run // 7  # the top-left finder pattern is 7 modules wide
    size = (width - 2 * left) // scale
    return tuple(
        tuple(
            pixels[(top + r * scale + scale // 2) * width + left + c * scale + scale // 2] < 128
            for c in range(size)
        )
        for r in range(size)
    )


async def test_showqrcode_draws_the_codes_url(wechat, token):
    answer = await create(wechat, token, qr("QR_STR_SCENE", "scan-me", expire_seconds=600))
    status, content_type, png = await show(wechat, answer["ticket"])
    # WeChat sends image/jpg; the emulator sends PNG (segno writes JPEG only with Pillow).
    assert status == 200 and content_type == "image/png"
    width, height, pixels = png_pixels(png)
    assert width == height
    drawn = module_matrix(width, height, pixels)
    candidates = [
        tuple(
            tuple(bool(m) for m in row)
            for row in segno.make_qr(answer["url"], error=e, boost_error=b).matrix
        )
        for e in "lmqh"
        for b in (True, False)
    ]
    assert drawn in candidates  # the modules of a QR code of exactly that url


async def test_showqrcode_decodes_back_to_the_url(wechat, token):
    zxingcpp = pytest.importorskip("zxingcpp")  # a real decoder, when installed
    answer = await create(wechat, token, qr("QR_LIMIT_SCENE", 42))
    status, _, png = await show(wechat, answer["ticket"])
    assert status == 200
    width, height, pixels = png_pixels(png)
    found = zxingcpp.read_barcodes(memoryview(pixels).cast("B", (height, width)))
    assert [(b.format, b.text) for b in found] == [(zxingcpp.BarcodeFormat.QRCode, answer["url"])]


async def test_showqrcode_404s(wechat, token, emulator):
    answer = await create(wechat, token, qr("QR_SCENE", 1))
    ticket = answer["ticket"]
    for path in (
        "/cgi-bin/showqrcode",
        "/cgi-bin/showqrcode?ticket=",
        "/cgi-bin/showqrcode?ticket=gQFAKE",
        # Not URL-encoded: the "+" arrives as a space (§8: URL-encode the ticket).
        f"/cgi-bin/showqrcode?ticket={ticket}",
        f"/cgi-bin/showqrcode?ticket={quote(answer['url'], safe='')}",  # the url is no ticket
    ):
        resp = await wechat.get(path)
        assert resp.status == 404, path
        assert resp.headers["Content-Type"].startswith("text/plain")
        assert "errcode" not in await resp.text()
    assert (await show(wechat, ticket))[0] == 200
    assert emulator.stats["cgi-bin/showqrcode"] == 6


# Follow state, as cgi-bin/user/info tells it (§9)


async def user_info(wechat, token: str, openid: str) -> dict:
    resp = await wechat.get("/cgi-bin/user/info", params={"access_token": token, "openid": openid})
    return await resp.json(content_type=None)


async def test_follow_through_a_code_shows_in_user_info(wechat, token, emulator, clock):
    assert (await user_info(wechat, token, VISITOR.openid))["subscribe"] == 0
    clock.advance(100)
    emulator.follow(VISITOR.openid, "promo")
    info = await user_info(wechat, token, VISITOR.openid)
    assert info["subscribe"] == 1
    assert info["subscribe_time"] == int(clock.now())
    assert (info["subscribe_scene"], info["qr_scene"], info["qr_scene_str"]) == (
        "ADD_SCENE_QR_CODE",
        0,
        "promo",
    )
    assert info["unionid"] == VISITOR.unionid

    emulator.follow(ANONYMOUS.openid, 42)
    info = await user_info(wechat, token, ANONYMOUS.openid)
    assert (info["subscribe_scene"], info["qr_scene"], info["qr_scene_str"]) == (
        "ADD_SCENE_QR_CODE",
        42,
        "",
    )
    assert "unionid" not in info

    emulator.follow(NO_UNIONID.openid, None)  # followed some other way
    info = await user_info(wechat, token, NO_UNIONID.openid)
    assert (info["subscribe_scene"], info["qr_scene"], info["qr_scene_str"]) == (
        "ADD_SCENE_OTHERS",
        0,
        "",
    )


async def test_unfollow_shows_in_user_info(wechat, token, emulator):
    assert (await user_info(wechat, token, FOLLOWER.openid))["subscribe"] == 1
    emulator.unfollow(FOLLOWER.openid)
    assert await user_info(wechat, token, FOLLOWER.openid) == {
        "subscribe": 0,
        "openid": FOLLOWER.openid,
        "unionid": FOLLOWER.unionid,
        "tagid_list": [],
    }
    users = (await (await wechat.get("/_sandbox/api/users")).json())["users"]
    assert next(u for u in users if u["openid"] == FOLLOWER.openid)["subscribed"] is False
    # The shared cast is untouched: only this emulator's state changed.
    assert FOLLOWER.subscribed is True
