"""GET /wechat/message: WeChat's server-URL check."""

from __future__ import annotations

import pytest

from flows import assert_error_shape, signed


def check_query(
    clock,
    echostr: str = "5837397758203254286",
    nonce: str = "1514711492",
    timestamp: str | None = None,
) -> dict:
    """The GET WeChat sends when the server URL is saved: stamped now unless told otherwise,
    and one nonce, so two checks at one time share their (timestamp, nonce)."""
    return {**signed(clock, timestamp=timestamp, nonce=nonce), "echostr": echostr}


async def test_valid_signature_echoes_echostr_as_plain_text(client, clock):
    resp = await client.get("/wechat/message", params=check_query(clock))
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    assert await resp.text() == "5837397758203254286"
    # WeChat asking again with the same query is answered again.
    again = await client.get("/wechat/message", params=check_query(clock))
    assert await again.text() == "5837397758203254286"


async def test_a_check_querys_signature_cannot_carry_a_push_or_be_used_late(client, clock):
    """The check's signed (timestamp, nonce), read from an access log, is claimed like a
    push's: in plain mode it would otherwise sign any body POSTed within PUSH_MAX_AGE."""
    captured = check_query(clock)
    assert (await client.get("/wechat/message", params=captured)).status == 200
    forged = (
        "<xml><ToUserName>gh_1</ToUserName><FromUserName>oVictim</FromUserName>"
        f"<CreateTime>{int(clock.now())}</CreateTime><MsgType>event</MsgType>"
        "<Event>unsubscribe</Event></xml>"
    )
    push = {k: v for k, v in captured.items() if k != "echostr"}
    resp = await client.post("/wechat/message", params=push, data=forged.encode())
    assert_error_shape(await resp.json(), 403, "REPLAYED_PUSH", "nonce")
    other_echo = await client.get("/wechat/message", params=check_query(clock, "1"))
    assert_error_shape(await other_echo.json(), 403, "REPLAYED_PUSH", "nonce")
    old = check_query(clock, nonce="77", timestamp=str(int(clock.now()) - 301))
    assert_error_shape(
        await (await client.get("/wechat/message", params=old)).json(),
        403,
        "STALE_PUSH",
        "timestamp",
    )


async def test_the_published_vector_passes_with_its_token(make_client, clock):
    clock.advance(1714036504 - clock.now())  # the vector's own time
    client = await make_client(wechat_token="AAAAA")
    resp = await client.get(
        "/wechat/message",
        params={
            "signature": "f464b24fc39322e44b38aa78f5edd27bd1441696",
            "timestamp": "1714036504",
            "nonce": "1514711492",
            "echostr": "hello",
        },
    )
    assert await resp.text() == "hello"


async def test_wrong_signature_is_403(client):
    resp = await client.get(
        "/wechat/message",
        params={
            "signature": "f464b24fc39322e44b38aa78f5edd27bd1441696",
            "timestamp": "1714036504",
            "nonce": "1514711492",
            "echostr": "hello",
        },
    )
    assert resp.status == 403
    body = await resp.json()
    assert_error_shape(body, 403, "INVALID_SIGNATURE", "signature")
    assert "hello" not in await resp.text()


@pytest.mark.parametrize("missing", ["signature", "timestamp", "nonce", "echostr"])
async def test_missing_parameter_is_400(client, missing):
    params = {"signature": "x", "timestamp": "1", "nonce": "2", "echostr": "3"}
    del params[missing]
    resp = await client.get("/wechat/message", params=params)
    assert resp.status == 400
    assert_error_shape(await resp.json(), 400, "MISSING_PARAMETER", missing)
