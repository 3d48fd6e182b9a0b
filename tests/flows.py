"""Constants and steps shared by tests: the app's URLs, playing the user at WeChat, and
running `python -m service` as a process."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient

# Set to run the whole suite on a real MongoDB (one database per test, dropped after it).
MONGODB_URI = os.environ.get("MONGODB_URI", "")
APPID = "wx1234567890abcdef"
SECRET = "0123456789abcdef0123456789abcdef"
TOKEN = "testtoken"
JWT_SECRET = "test-jwt-secret-that-is-long-enough-0123"
ADMIN_KEY = "test-admin-key-0123456789"
APP_ORIGIN = "https://app.example.com"
REDIRECT_URI = f"{APP_ORIGIN}/signed-in"
CALLBACK = f"{APP_ORIGIN}/wechat-callback"


async def authorize_at_wechat(
    browser: ClientSession, url: str, openid: str, action: str = "allow"
) -> dict[str, str]:
    """Play the user at WeChat's authorize page; the query WeChat sends to the callback."""
    target = url.split("#", 1)[0] + f"&sandbox_openid={openid}&sandbox_action={action}"
    async with browser.get(target, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        location = resp.headers["Location"]
    assert location.startswith(CALLBACK), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def start_sign_in(client: TestClient, scope: str = "snsapi_base", **params: str) -> str:
    """GET /wechat/authorize and return the WeChat URL from its 401."""
    query = {"redirectUri": REDIRECT_URI, "callback": CALLBACK, "scope": scope, **params}
    resp = await client.get("/wechat/authorize", params=query)
    assert resp.status == 401, await resp.text()
    return (await resp.json())["details"]["fieldValue"]


def assert_error_shape(body: dict, status: int, name: str, field: str) -> None:
    assert set(body) == {"id", "status", "name", "message", "details"}
    assert re.fullmatch(r"[0-9a-f-]{36}", body["id"])
    assert body["status"] == status
    assert body["name"] == name
    assert isinstance(body["message"], str) and body["message"]
    assert set(body["details"]) == {"field", "fieldValue"}
    assert body["details"]["field"] == field


async def sign_in(
    client: TestClient, browser: ClientSession, openid: str, scope: str = "snsapi_base"
) -> dict:
    """The whole web authorization for one sandbox user; /wechat/jwt's answer."""
    url = await start_sign_in(client, scope)
    query = await authorize_at_wechat(browser, url, openid)
    resp = await client.get("/wechat/jwt", params=query)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def start_service(directory: Path, port: int, log: Path, **env: str) -> subprocess.Popen:
    """`python -m service` in sandbox mode on the embedded store, its log to `log`."""
    environment = {
        **os.environ,
        "SANDBOX": "1",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "TOKEN_UPKEEP": "0",
        "SHUTDOWN_TIMEOUT": "5",
        **env,
    }
    environment.pop("MONGODB_URI", None)  # these check the process, not the database
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=directory,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


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
