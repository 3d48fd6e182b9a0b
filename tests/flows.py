"""Constants and steps shared by tests: the app's URLs, playing WeChat (signing its pushes) and
the user at WeChat, and running `python -m service` as a process."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient

from service.clock import Clock
from service.wechat.crypto import MessageCrypto
from service.wechat.signature import wechat_signature
from service.wechat.xml import build_message, parse_message

# Set to run the whole suite on a real MongoDB (one database per test, dropped after it).
MONGODB_URI = os.environ.get("MONGODB_URI", "")
APPID = "wx1234567890abcdef"
SECRET = "0123456789abcdef0123456789abcdef"
TOKEN = "testtoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # the EncodingAESKey (compatible, safe)
JWT_SECRET = "test-jwt-secret-that-is-long-enough-0123"
ADMIN_KEY = "test-admin-key-0123456789"
APP_ORIGIN = "https://app.example.com"
REDIRECT_URI = f"{APP_ORIGIN}/signed-in"
CALLBACK = f"{APP_ORIGIN}/wechat-callback"
PROJECT = Path(__file__).resolve().parent.parent


# -- WeChat's signatures (§10, §11) -------------------------------------------------------------


def signed(
    clock: Clock,
    *,
    timestamp: str | None = None,
    nonce: str | None = None,
    openid: str | None = None,
    encrypted: str | None = None,
    token: str = TOKEN,
) -> dict[str, str]:
    """The query WeChat signs a push or a server-URL check with: `signature` over (token,
    timestamp, nonce), stamped now by `clock` with a fresh decimal nonce unless they are given.
    `openid`: the push's sender, as WeChat adds it. `encrypted`: the push's Encrypt element
    (compatible and safe modes), adding encrypt_type=aes and `msg_signature` over it."""
    timestamp = str(int(clock.now())) if timestamp is None else timestamp
    nonce = str(1_000_000_000 + secrets.randbelow(9_000_000_000)) if nonce is None else nonce
    query = {
        "signature": wechat_signature(token, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
    }
    if openid is not None:
        query["openid"] = openid
    if encrypted is not None:
        query["encrypt_type"] = "aes"
        query["msg_signature"] = wechat_signature(token, timestamp, nonce, encrypted)
    return query


def sealed(
    xml: str,
    clock: Clock,
    *,
    openid: str | None = None,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> tuple[dict[str, str], str]:
    """A push as WeChat sends it in safe mode: the XML encrypted with AES_KEY into an envelope
    addressed as the XML is, and its signed query (see `signed`)."""
    encrypted = MessageCrypto(TOKEN, AES_KEY, APPID).encrypt(xml)
    query = signed(clock, timestamp=timestamp, nonce=nonce, openid=openid, encrypted=encrypted)
    to = parse_message(xml)["ToUserName"]
    return query, build_message({"ToUserName": to, "Encrypt": encrypted})


# -- the user at WeChat, and a sign-in ---------------------------------------------------------


async def authorize_at_wechat(
    browser: ClientSession,
    url: str,
    openid: str,
    action: str = "allow",
    callback: str = CALLBACK,
) -> dict[str, str]:
    """Play the user at WeChat's authorize page; the query WeChat sends to the callback."""
    target = url.split("#", 1)[0] + f"&sandbox_openid={openid}&sandbox_action={action}"
    async with browser.get(target, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        location = resp.headers["Location"]
    assert location.startswith(callback + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def start_sign_in(client: TestClient, scope: str = "snsapi_base", **params: str) -> str:
    """GET /wechat/authorize and return the WeChat URL from its 401."""
    query = {"redirectUri": REDIRECT_URI, "callback": CALLBACK, "scope": scope, **params}
    resp = await client.get("/wechat/authorize", params=query)
    assert resp.status == 401, await resp.text()
    return (await resp.json())["details"]["fieldValue"]


async def sign_in(
    client: TestClient, browser: ClientSession, openid: str, scope: str = "snsapi_base"
) -> dict:
    """The whole web authorization for one sandbox user (authorize, WeChat, /wechat/jwt);
    /wechat/jwt's answer, checked to be a 200."""
    url = await start_sign_in(client, scope)
    query = await authorize_at_wechat(browser, url, openid)
    resp = await client.get("/wechat/jwt", params=query)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def assert_error_shape(body: dict, status: int, name: str, field: str) -> None:
    assert set(body) == {"id", "status", "name", "message", "details"}
    assert re.fullmatch(r"[0-9a-f-]{36}", body["id"])
    assert body["status"] == status
    assert body["name"] == name
    assert isinstance(body["message"], str) and body["message"]
    assert set(body["details"]) == {"field", "fieldValue"}
    assert body["details"]["field"] == field


# -- ports: bound by whoever uses them, never picked first and bound later ---------------------


def listening_socket() -> socket.socket:
    """A socket listening on a port the kernel picks as it binds (127.0.0.1, port 0), for a
    server that must know its port before it is built: build it, then serve on this socket."""
    return socket.create_server(("127.0.0.1", 0))


# -- `python -m service` as a process -----------------------------------------------------------

# The line `python -m service` logs once it holds its port (JSON or text log).
LISTENING = re.compile(r"listening on (\S+):(\d+) \(public URL")


async def start_service(
    log: Path, *, cwd: Path = PROJECT, sandbox: bool = True, **env: str
) -> tuple[subprocess.Popen, str]:
    """`python -m service` on a port it binds itself (PORT=0), its log (stderr) to `log`: the
    process and its base URL, read from the log's "listening on" line, once /healthz answers.

    In sandbox mode on the embedded store unless `sandbox` is false (then `env` says where
    the store is); `env` overrides the rest. The caller stops the process; if it does not come
    up, it is killed here and the assertion shows its log."""
    process = spawn_service(log, cwd, sandbox, env)
    try:
        base = await listening_url(process, log)
        await wait_healthy(base, process, log)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, base


def spawn_service(log: Path, cwd: Path, sandbox: bool, env: dict[str, str]) -> subprocess.Popen:
    environment = {
        **os.environ,
        "PORT": "0",
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "INFO",  # the "listening on" line is INFO
        "TOKEN_UPKEEP": "0",
        "SHUTDOWN_TIMEOUT": "5",
    }
    if sandbox:
        environment["SANDBOX"] = "1"
        environment.pop("MONGODB_URI", None)  # these check the process, not the database
    else:
        environment.pop("SANDBOX", None)
    environment |= env
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=cwd,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


STARTUP = 30.0  # seconds a process may take to log that it listens


async def listening_url(process: subprocess.Popen, log: Path) -> str:
    """The base URL in the process's "listening on <host>:<port>" log line, once it is there."""
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        exited = process.poll() is not None
        text = await asyncio.to_thread(log.read_text)
        if match := LISTENING.search(text):
            host, port = match.groups()
            return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        assert not exited, f"exited ({process.returncode}) before listening:\n{text}"
        await asyncio.sleep(0.02)
    text = log.read_text()  # noqa: ASYNC240 (on failure only)
    raise AssertionError(f"no 'listening on' line within {STARTUP} s:\n{text}")


async def wait_healthy(base: str, process: subprocess.Popen, log: Path) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            assert process.poll() is None, log.read_text()  # noqa: ASYNC240 (on failure only)
            try:
                async with http.get(f"{base}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the service did not come up")


async def until(condition, attempts: int = 100) -> bool:
    """Poll a condition every 10 ms (real time: the emulator's slow fault is real)."""
    for _ in range(attempts):
        met = condition()
        if await met if inspect.isawaitable(met) else met:
            return True
        await asyncio.sleep(0.01)
    return False


async def read_state(app: Any, state: str) -> tuple[Any, dict[str, Any]]:
    """What a sign-in state carries (its MAC checked) and the redirect context it refers to."""
    from service import keys

    token = app[keys.SIGN_INS].default.states.read(state)
    assert token is not None, f"not a state of this service: {state!r}"
    context = await app[keys.STORE].get_state_context(token.context_id)
    assert context is not None
    return token, context
