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


async def limited_as(client, forwarded_for: str) -> tuple[int, str | None]:
    """The status behind a trusted proxy, and the bucket a 429 names."""
    resp = await authorize(client, {"X-Forwarded-For": forwarded_for})
    body = await resp.json()
    return resp.status, body["details"]["fieldValue"] if resp.status == 429 else None


async def test_a_port_in_forwarded_for_does_not_make_a_new_bucket(make_client):
    client = await make_client(rate_limit_burst=1, trusted_proxies=("127.0.0.1",))
    assert (await limited_as(client, "203.0.113.7:4711"))[0] == 401
    assert await limited_as(client, "203.0.113.7:4712") == (429, "203.0.113.7")
    assert await limited_as(client, "203.0.113.7") == (429, "203.0.113.7")


async def test_ipv6_clients_share_a_bucket_per_64(make_client):
    client = await make_client(rate_limit_burst=1, trusted_proxies=("127.0.0.1",))
    assert (await limited_as(client, "[2001:db8:1:2::1]:4711"))[0] == 401
    # Another address of the same /64, written without brackets or port: the same client.
    assert await limited_as(client, "2001:db8:1:2:ffff::9") == (429, "2001:db8:1:2::/64")
    assert await limited_as(client, "[2001:DB8:1:2::77]") == (429, "2001:db8:1:2::/64")
    # The next /64 is someone else.
    assert (await limited_as(client, "2001:db8:1:3::1"))[0] == 401


async def test_an_ipv4_mapped_address_is_the_ipv4_client(make_client):
    client = await make_client(rate_limit_burst=1, trusted_proxies=("127.0.0.1",))
    assert (await limited_as(client, "::ffff:203.0.113.9"))[0] == 401
    assert await limited_as(client, "203.0.113.9") == (429, "203.0.113.9")
    assert await limited_as(client, "[::ffff:203.0.113.9]:80") == (429, "203.0.113.9")


async def test_trusted_proxies_written_with_ports_are_still_skipped(make_client):
    client = await make_client(
        rate_limit_burst=1, trusted_proxies=("127.0.0.1", "10.0.0.0/8", "fd00::/8")
    )
    assert (await limited_as(client, "203.0.113.5, 10.1.2.3:8080, [fd00::5]:443"))[0] == 401
    # The same client through other proxy hops, and with made-up entries prepended.
    assert await limited_as(client, "198.51.100.1, 203.0.113.5:1, 10.9.9.9") == (
        429,
        "203.0.113.5",
    )
