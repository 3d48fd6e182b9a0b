"""A certified relying-party library nobody here wrote, used unchanged: panva's openid-client
(npm, tests/interop/) signs in through the service and the emulator over real HTTP.

openid-client does all a client does: discovery, PKCE, state and nonce, the token request, the
ID token's validation against the published JWKS (signature, iss, aud, exp, iat, nonce), and
userinfo with the subject checked. The test plays the person at WeChat.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flows import authorize_at_wechat, listening_socket
from service.app import create_app
from service.logs import AccessLogger
from service.oidc_config import OidcClient
from service.sandbox import SANDBOX_USERS

INTEROP = Path(__file__).parent / "interop"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None or not (INTEROP / "node_modules" / "openid-client").is_dir(),
    reason="Node.js and tests/interop/node_modules (make test runs npm ci) are needed",
)
REDIRECT = "http://127.0.0.1:9/callback"  # the RP's; the test reads the redirect, never follows
PERSON = SANDBOX_USERS[0]


def node(*args: str) -> dict:
    done = subprocess.run(  # noqa: S603 - node with this test's own script and values
        [NODE or "node", str(INTEROP / "rp.mjs"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture
async def live_provider(make_emulator, settings, clock, tmp_path):
    """The service on a real loopback address that is also its issuer (PUBLIC_URL), wired to
    an emulator that authorizes that host, with one public client and an RS256 key."""
    emulator = await make_emulator(authorized_domain="127.0.0.1")
    key = tmp_path / "rsa.pem"
    key.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    listening = listening_socket()
    port = listening.getsockname()[1]
    wechat = str(emulator.make_url("")).rstrip("/")
    configured = dataclasses.replace(
        settings,
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        wechat_open_base=wechat,
        wechat_api_base=wechat,
        oidc_clients=(OidcClient("node-rp", (REDIRECT,), public=True),),
        oidc_private_key_file=str(key),
    )
    server = TestServer(create_app(configured, clock=clock), socket_factory=lambda *_: listening)
    await server.start_server(access_log_class=AccessLogger)
    try:
        yield configured.public_url
    finally:
        await server.close()
        listening.close()


async def test_openid_client_signs_in_through_the_emulator_unchanged(live_provider):
    issuer = live_provider
    started = await asyncio.to_thread(node, "start", issuer, "node-rp", REDIRECT, "openid profile")
    assert "error" not in started, started
    assert started["metadata"]["issuer"] == issuer

    async with ClientSession() as browser:
        # The person: the client's authorization URL, WeChat, the service's callback.
        async with browser.get(started["url"], allow_redirects=False) as resp:
            assert resp.status == 302, await resp.text()
            to_wechat = resp.headers["Location"]
        at_callback = await authorize_at_wechat(
            browser, to_wechat, PERSON.openid, callback=f"{issuer}/oidc/callback"
        )
        async with browser.get(
            f"{issuer}/oidc/callback", params=at_callback, allow_redirects=False
        ) as resp:
            assert resp.status == 302, await resp.text()
            back_to_client = resp.headers["Location"]
    assert back_to_client.startswith(REDIRECT + "?")
    assert parse_qs(urlsplit(back_to_client).query)["iss"] == [issuer]

    finished = await asyncio.to_thread(
        node,
        "finish",
        issuer,
        "node-rp",
        back_to_client,
        started["verifier"],
        started["state"],
        started["nonce"],
    )
    assert "error" not in finished, finished
    claims, userinfo = finished["claims"], finished["userinfo"]
    assert claims["sub"] == PERSON.openid and claims["aud"] == "node-rp"
    assert claims["iss"] == issuer and claims["nonce"] == started["nonce"]
    assert claims["name"] == PERSON.nickname
    assert userinfo["sub"] == PERSON.openid and userinfo["picture"] == PERSON.headimgurl
    assert finished["token_type"].lower() == "bearer"


async def test_openid_client_refuses_a_callback_whose_state_is_not_its_own(live_provider):
    """The client library's own check holds: the code of another sign-in is not accepted."""
    issuer = live_provider
    mine = await asyncio.to_thread(node, "start", issuer, "node-rp", REDIRECT, "openid")
    theirs = await asyncio.to_thread(node, "start", issuer, "node-rp", REDIRECT, "openid")
    async with ClientSession() as browser:
        async with browser.get(theirs["url"], allow_redirects=False) as resp:
            to_wechat = resp.headers["Location"]
        at_callback = await authorize_at_wechat(
            browser, to_wechat, PERSON.openid, callback=f"{issuer}/oidc/callback"
        )
        async with browser.get(
            f"{issuer}/oidc/callback", params=at_callback, allow_redirects=False
        ) as resp:
            their_callback = resp.headers["Location"]
    refused = await asyncio.to_thread(
        node,
        "finish",
        issuer,
        "node-rp",
        their_callback,
        mine["verifier"],
        mine["state"],
        mine["nonce"],
    )
    assert "error" in refused, refused
