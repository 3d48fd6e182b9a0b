"""`make run`'s demo wherever it is opened: http://127.0.0.1:<port>/, another host name, a port
mapped to the service's (a container's), not only http://localhost:<PORT>.

In sandbox mode without PUBLIC_URL each request's own origin is the public URL for that request
(service/pipeline/origins.py). With PUBLIC_URL set, and outside sandbox mode, nothing follows
the Host header.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer
from test_browser import CHROMIUM, dump_dom

from flows import CALLBACK, MONGODB_URI, assert_error_shape, listening_socket
from service.app import create_app
from service.config import load_settings
from service.sandbox import SANDBOX_USERS

USER = SANDBOX_USERS[1]


class Loopback(AbstractResolver):
    """Every host name resolves to 127.0.0.1, as a LAN name or an /etc/hosts entry would."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        pass


@contextlib.asynccontextmanager
async def mapped_port(target: int) -> AsyncIterator[int]:
    """Another port forwarding to `target`, as `docker run -p <other>:<PORT>` does."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(forward, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.fixture(params=["127.0.0.1", "mapped port"])
async def opened_at(request, sandbox_server) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """A browser (cookies kept per host, IP addresses included, as browsers do) and the base URL
    it opened the demo at: http://127.0.0.1:<PORT>, or http://demo.test:<another port> mapped
    to the service's."""
    jar = aiohttp.CookieJar(unsafe=True)
    if request.param == "127.0.0.1":
        async with aiohttp.ClientSession(cookie_jar=jar) as browser:
            yield browser, f"http://127.0.0.1:{sandbox_server.port}"
        return
    async with mapped_port(sandbox_server.port) as port:
        connector = aiohttp.TCPConnector(resolver=Loopback(), force_close=True)
        async with aiohttp.ClientSession(cookie_jar=jar, connector=connector) as browser:
            yield browser, f"http://demo.test:{port}"


async def follow(browser: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    resp = await browser.get(url, allow_redirects=False)
    assert resp.status in (200, 302, 303), f"{url}: {resp.status} {await resp.text()}"
    return resp


async def test_the_demos_browser_bound_sign_in_completes(opened_at):
    """The demo page's button: /wechat/login (its cookie), the emulator (pick a user, allow),
    the callback page, /wechat/jwt, the landing page; all on the host the browser opened."""
    browser, base = opened_at
    demo = await (await follow(browser, f"{base}/")).text()
    link = html.unescape(re.search(r'id="sign-in-userinfo"\s+href="([^"]+)"', demo).group(1))
    login = await follow(browser, urljoin(f"{base}/", link))
    assert login.status == 302
    at_wechat = login.headers["Location"].split("#")[0]
    assert at_wechat.startswith(f"{base}/sandbox/connect/oauth2/authorize?")

    # Nobody is signed in at "WeChat" yet: the person picks a sandbox user, then allows.
    picker = await follow(browser, at_wechat)
    assert picker.status == 302 and "/_sandbox/users" in picker.headers["Location"]
    next_url = dict(parse_qsl(urlsplit(picker.headers["Location"]).query))["next"]
    chosen = await browser.post(
        f"{base}/sandbox/_sandbox/users/select",
        data={"openid": USER.openid, "next": next_url},
        allow_redirects=False,
    )
    assert chosen.status == 303
    allowed = await follow(browser, f"{base}{chosen.headers['Location']}&sandbox_action=allow")
    assert allowed.status == 302, await allowed.text()
    callback = allowed.headers["Location"]
    assert callback.startswith(f"{base}/wechat/callback?")

    page = await follow(browser, callback)
    assert "callback.js" in await page.text()
    # callback.js asks "jwt?code=…&state=…" relative to the page, with the binding cookie.
    done = await browser.get(urljoin(callback, "jwt?" + urlsplit(callback).query))
    assert done.status == 200, await done.text()
    body = await done.json()
    assert body["redirectUri"] == f"{base}/demo/landing"
    assert body["user"]["openid"] == USER.openid
    assert "landing.js" in await (await follow(browser, body["redirectUri"])).text()


async def test_the_qr_demo_completes(opened_at):
    """qr-login.js: a session for this origin's landing page, a scan on the sandbox phone, the
    long poll's token."""
    browser, base = opened_at
    started = await browser.post(
        f"{base}/wechat/qrcode/login",
        params={"redirectUri": f"{base}/demo/landing"},
        headers={"Origin": base},  # a same-origin POST from the page
    )
    assert started.status == 201, await started.text()
    session = await started.json()
    scan = await browser.post(
        f"{base}/sandbox/_sandbox/api/scan",
        json={"openid": USER.openid, "ticket": session["ticket"]},
    )
    assert (await scan.json())["delivered"] is True
    polled = await browser.get(f"{base}{session['poll']}", params={"wait": "5"})
    body = await polled.json()
    assert body["status"] == "confirmed", body
    assert body["redirectUri"] == f"{base}/demo/landing"
    assert body["token"]


async def test_the_emulator_authorizes_the_host_it_is_reached_at_not_any_host(opened_at):
    browser, base = opened_at
    login = await follow(browser, f"{base}/wechat/login?redirectUri={base}/demo/landing")
    at_wechat = login.headers["Location"].split("#")[0]
    elsewhere = at_wechat.replace(
        "redirect_uri=http%3A%2F%2F", "redirect_uri=http%3A%2F%2Fevil.example.net.", 1
    )
    refused = await follow(browser, f"{elsewhere}&sandbox_openid={USER.openid}")
    assert refused.status == 200 and "10003" in await refused.text()
    home = await (await follow(browser, f"{base}/sandbox/")).text()
    shown = re.search(r"authorized domain <code>([^<]*)</code>", home).group(1)
    assert urlsplit(base).hostname in shown.split(", ")


async def test_a_host_header_that_is_not_a_plain_host_is_not_followed(sandbox_server, browser):
    base = f"http://127.0.0.1:{sandbox_server.port}"
    for host in ("user@evil.example.net", "evil.example.net/x", "evil example"):
        resp = await browser.get(
            f"{base}/wechat/login",
            params={"redirectUri": "http://evil.example.net/demo/landing"},
            headers={"Host": host},
            allow_redirects=False,
        )
        assert resp.status == 400, host
        assert (await resp.json())["name"] == "ORIGIN_NOT_ALLOWED"


async def test_production_never_follows_the_host_header(client):
    """Outside sandbox mode PUBLIC_URL and ALLOWED_REDIRECT_ORIGINS alone decide."""
    port = client.server.port
    for host, origin in (
        (f"127.0.0.1:{port}", f"http://127.0.0.1:{port}"),
        ("evil.example.net", "http://evil.example.net"),
    ):
        resp = await client.get(
            "/wechat/authorize",
            params={"redirectUri": f"{origin}/signed-in", "callback": CALLBACK},
            headers={"Host": host, "Origin": origin},
        )
        assert resp.status == 400
        assert_error_shape(await resp.json(), 400, "ORIGIN_NOT_ALLOWED", "redirectUri")
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_sandbox_mode_with_public_url_set_stays_on_it(make_client):
    public = "http://sandbox.example.test:3000"
    client = await make_client(
        sandbox=True, public_url=public, wechat_open_base="", wechat_api_base=""
    )
    base = f"http://127.0.0.1:{client.server.port}"
    refused = await client.get("/wechat/login", params={"redirectUri": f"{base}/demo/landing"})
    assert (await refused.json())["name"] == "ORIGIN_NOT_ALLOWED"
    login = await client.get(
        "/wechat/login", params={"redirectUri": f"{public}/demo/landing"}, allow_redirects=False
    )
    assert login.status == 302
    location: Any = login.headers["Location"]
    assert location.startswith(f"{public}/sandbox/connect/oauth2/authorize?")
    assert "redirect_uri=http%3A%2F%2Fsandbox.example.test%3A3000%2Fwechat%2Fcallback" in location


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
async def test_chromium_signs_in_at_127_0_0_1(sandbox_server, browser, tmp_path):
    """A real browser at http://127.0.0.1:<PORT>: the emulator's redirect, callback.js's call to
    /wechat/jwt, the landing page showing the JWT's claims."""
    base = f"http://127.0.0.1:{sandbox_server.port}"
    resp = await browser.get(
        f"{base}/wechat/authorize",
        params={
            "redirectUri": f"{base}/demo/landing",
            "callback": f"{base}/wechat/callback",
            "scope": "snsapi_base",
        },
    )
    assert resp.status == 401, await resp.text()
    url = (await resp.json())["details"]["fieldValue"].split("#")[0]
    assert url.startswith(f"{base}/sandbox/")
    dom = await dump_dom(f"{url}&sandbox_openid={USER.openid}", tmp_path)
    assert 'id="claims"' in dom
    assert USER.openid in dom


async def test_one_query_from_two_listed_origins_gets_each_its_own_callback(mongodb_name):
    """A query checked once is remembered (signin/routes.py: _prepared) by its text, the origins
    allowed and the public URL: with both origins listed, the allowed origins read alike from
    either, and only the public URL, which follows the request's origin, tells the built-in
    callback page of http://localhost:<port> from http://127.0.0.1:<port>'s."""
    listening = listening_socket()
    port = listening.getsockname()[1]
    env = {
        "SANDBOX": "1",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "MONGODB_DB": mongodb_name,
        "TOKEN_UPKEEP": "0",
        "ALLOWED_REDIRECT_ORIGINS": f"http://127.0.0.1:{port},http://localhost:{port}",
    }
    if MONGODB_URI:
        env["MONGODB_URI"] = MONGODB_URI
    server = TestServer(
        create_app(load_settings(env)), socket_factory=lambda host, port, family: listening
    )
    await server.start_server()
    try:
        query = {"redirectUri": f"http://localhost:{port}/demo/landing"}
        async with aiohttp.ClientSession() as browser:
            for origin in (f"http://localhost:{port}", f"http://127.0.0.1:{port}"):
                resp = await browser.get(
                    f"http://127.0.0.1:{port}/wechat/login",
                    params=query,
                    headers={"Host": urlsplit(origin).netloc},
                    allow_redirects=False,
                )
                assert resp.status == 302, await resp.text()
                at_wechat = dict(parse_qsl(urlsplit(resp.headers["Location"]).query))
                assert at_wechat["redirect_uri"] == f"{origin}/wechat/callback"
    finally:
        await server.close()
        listening.close()
