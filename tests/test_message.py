"""GET /wechat/message: WeChat's server-URL check."""

from __future__ import annotations

import pytest

from flows import TOKEN, assert_error_shape
from service.signature import wechat_signature


def test_signature_matches_wechats_published_vectors():
    # ../shared/wechat-api.md §10: the official test vectors for token AAAAA.
    assert wechat_signature("AAAAA", "1714036504", "1514711492") == (
        "f464b24fc39322e44b38aa78f5edd27bd1441696"
    )
    assert wechat_signature("AAAAA", "1714037059", "486452656") == (
        "899cf89e464efb63f54ddac96b0a0a235f53aa78"
    )


async def test_valid_signature_echoes_echostr_as_plain_text(client):
    params = {"timestamp": "1714036504", "nonce": "1514711492", "echostr": "5837397758203254286"}
    params["signature"] = wechat_signature(TOKEN, params["timestamp"], params["nonce"])
    resp = await client.get("/wechat/message", params=params)
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    assert await resp.text() == "5837397758203254286"


async def test_the_published_vector_passes_with_its_token(make_client):
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
