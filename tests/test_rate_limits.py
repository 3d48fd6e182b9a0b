"""Per-client-IP rate limits: 429 with Retry-After, per group, behind trusted proxies only."""

from __future__ import annotations

from flows import CALLBACK, REDIRECT_URI, assert_error_shape

AUTHORIZE = {"redirectUri": REDIRECT_URI, "callback": CALLBACK}


async def authorize(client, headers=None):
    return await client.get("/wechat/authorize", params=AUTHORIZE, headers=headers or {})


async def test_a_burst_then_429_with_retry_after_then_a_steady_rate(make_client, clock):
    client = await make_client(rate_limit_authorize=60, rate_limit_burst=5)
    for _ in range(5):
        assert (await authorize(client)).status == 401
    refused = await authorize(client)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "1"
    body = await refused.json()
    assert_error_shape(body, 429, "RATE_LIMITED", "client")
    assert body["details"]["fieldValue"] == "127.0.0.1"
    clock.advance(1)  # 60 a minute: one more each second
    assert (await authorize(client)).status == 401
    assert (await authorize(client)).status == 429


async def test_groups_have_their_own_buckets(make_client):
    client = await make_client(rate_limit_authorize=60, rate_limit_burst=2)
    for _ in range(2):
        await authorize(client)
    assert (await authorize(client)).status == 429
    # /wechat/jwt is counted apart: a client that started sign-ins can still finish them.
    resp = await client.get("/wechat/jwt", params={"code": "c", "state": "s"})
    assert resp.status == 400
    # Other endpoints are not limited at all.
    assert (await client.get("/healthz")).status == 200


async def test_qr_codes_are_limited(make_client):
    client = await make_client(rate_limit_qrcode=30, rate_limit_burst=1)
    assert (await client.get("/wechat/qrcode", params={"scene": "a"})).status == 200
    limited = await client.get("/wechat/qrcode", params={"scene": "a"})
    assert limited.status == 429
    assert limited.headers["Retry-After"] == "2"  # 30 a minute: one every two seconds


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(make_client):
    client = await make_client(rate_limit_burst=1)
    await authorize(client, {"X-Forwarded-For": "203.0.113.1"})
    # Claiming another address does not give an untrusted client a fresh bucket.
    spoofed = await authorize(client, {"X-Forwarded-For": "203.0.113.2"})
    assert spoofed.status == 429


async def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(make_client):
    client = await make_client(rate_limit_burst=1, trusted_proxies=("127.0.0.0/8",))
    assert (await authorize(client, {"X-Forwarded-For": "203.0.113.1"})).status == 401
    assert (await authorize(client, {"X-Forwarded-For": "203.0.113.2"})).status == 401
    again = await authorize(client, {"X-Forwarded-For": "203.0.113.1"})
    assert again.status == 429
    # The nearest untrusted hop counts: prepending addresses does not escape the limit.
    prepended = await authorize(client, {"X-Forwarded-For": "198.51.100.9, 203.0.113.1"})
    assert prepended.status == 429
    assert (await prepended.json())["details"]["fieldValue"] == "203.0.113.1"


async def test_zero_turns_a_limit_off(make_client):
    client = await make_client(rate_limit_authorize=0, rate_limit_burst=1)
    for _ in range(5):
        assert (await authorize(client)).status == 401
