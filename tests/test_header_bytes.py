"""Header bytes that are not UTF-8 get a 4xx in the error shape, never a 500.

aiohttp's client refuses to send such bytes, so these requests are written on a socket by hand,
as an attacker's tool would.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from flows import ADMIN_KEY, assert_error_shape

NOT_UTF8 = b"\xff\xfe\xc3\x28"


async def raw_get(client, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict]:
    """One HTTP/1.1 GET with the headers' exact bytes; the status and the JSON body."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        lines = [f"GET {path} HTTP/1.1".encode(), f"Host: {client.host}".encode()]
        lines += [name + b": " + value for name, value in headers]
        lines += [b"Connection: close", b"", b""]
        writer.write(b"\r\n".join(lines))
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else {}


@pytest.mark.parametrize(
    "value",
    [
        b"Bearer " + NOT_UTF8,
        b"Bearer eyJhbGciOiJIUzI1NiJ9." + NOT_UTF8 + b".sig",
        NOT_UTF8 + b" token",
    ],
)
async def test_a_non_utf8_authorization_header_is_401(client, emulator, value):
    status, body = await raw_get(client, "/wechat/subscribed", [(b"Authorization", value)])
    assert status == 401
    assert_error_shape(body, 401, "UNAUTHORIZED", "Authorization")
    assert emulator.stats["cgi-bin/user/info"] == 0


@pytest.mark.parametrize("value", [NOT_UTF8, ADMIN_KEY.encode() + NOT_UTF8, "ключ".encode()])
async def test_a_non_utf8_or_non_ascii_admin_key_is_403(client, value):
    status, body = await raw_get(client, "/wechat/tokens/status", [(b"X-Admin-Key", value)])
    assert status == 403
    assert_error_shape(body, 403, "FORBIDDEN", "X-Admin-Key")


async def test_the_right_admin_key_still_works_on_a_raw_request(client):
    status, body = await raw_get(
        client, "/wechat/tokens/status", [(b"X-Admin-Key", ADMIN_KEY.encode())]
    )
    assert status == 200
    assert "baseToken" in body


@pytest.mark.parametrize(
    "header", [b"X-Forwarded-For", b"X-Request-ID", b"Cookie", b"Origin", b"Referer"]
)
async def test_other_headers_with_non_utf8_bytes_do_not_break_the_answer(make_client, header):
    client = await make_client(trusted_proxies=("127.0.0.0/8",))
    status, body = await raw_get(
        client, "/wechat/authorize?redirectUri=x", [(header, b"1.2.3.4" + NOT_UTF8)]
    )
    assert status == 400
    assert_error_shape(body, 400, body["name"], body["details"]["field"])
