"""Fixtures: settings, the WeChat emulator on loopback, the store, the service under test.

Set MONGODB_URI to run the same suite on a real MongoDB: each test gets its own database, named
after this run, dropped afterwards.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer, unused_port

from flows import ADMIN_KEY, APP_ORIGIN, APPID, JWT_SECRET, MONGODB_URI, SECRET, TOKEN
from service.app import create_app
from service.clock import ManualClock
from service.config import Settings, load_settings
from service.logs import AccessLogger
from service.sandbox import SANDBOX_KEY, SandboxConfig, create_sandbox_app
from service.sandbox.app import SandboxWeChat

RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture
def clock() -> ManualClock:
    # A whole second, so lifetimes built from several advance() calls land on their bounds.
    return ManualClock(float(int(time.time())))


@pytest.fixture
async def emulator_server(aiohttp_server, clock) -> TestServer:
    config = SandboxConfig(appid=APPID, secret=SECRET, authorized_domain="app.example.com")

    async def pause(seconds: float) -> None:
        # WeChat's pause between push attempts passes on the manual clock, not the wall's.
        clock.advance(seconds)

    return await aiohttp_server(
        create_sandbox_app(config, clock, sleep=pause), access_log_class=AccessLogger
    )


@pytest.fixture
def emulator(emulator_server) -> SandboxWeChat:
    """The emulator's state: users, faults, call counters."""
    return emulator_server.app[SANDBOX_KEY]


@pytest.fixture
async def mongodb_name() -> AsyncIterator[str]:
    name = f"wechat_oa_auth_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    yield name
    if MONGODB_URI:
        from pymongo import AsyncMongoClient

        client: Any = AsyncMongoClient(MONGODB_URI)
        try:
            await client.drop_database(name)
        finally:
            await client.close()


@pytest.fixture
def settings(emulator_server, mongodb_name) -> Settings:
    base = str(emulator_server.make_url("")).rstrip("/")
    return Settings(
        host="127.0.0.1",
        port=3000,
        public_url="http://localhost:3000",
        mongodb_uri=MONGODB_URI,
        mongodb_db=mongodb_name,
        wechat_appid=APPID,
        wechat_secret=SECRET,
        wechat_token=TOKEN,
        wechat_open_base=base,
        wechat_api_base=base,
        wechat_timeout=2.0,
        jwt_secret=JWT_SECRET,
        jwt_ttl=3600,
        allowed_redirect_origins=(APP_ORIGIN,),
        # Tests run the token jobs themselves, on the manual clock; one test starts the scheduler.
        token_upkeep=False,
        wechat_retry_delay=0.0,
        web_token_refresh_rate=100_000.0,
        admin_key=ADMIN_KEY,
    )


MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_client(aiohttp_server, aiohttp_client, settings, clock) -> MakeClient:
    """A service client; keyword arguments override settings. Instances given one
    `mongo_client` share a store, as several replicas share one MongoDB."""

    async def make(
        *,
        extra_routes: web.RouteTableDef | None = None,
        mongo_client: Any = None,
        **overrides: Any,
    ) -> TestClient:
        app = create_app(
            dataclasses.replace(settings, **overrides), clock=clock, mongo_client=mongo_client
        )
        if extra_routes is not None:
            app.add_routes(extra_routes)
        # The service's own access log, as in production: never a query string.
        server = await aiohttp_server(app, access_log_class=AccessLogger)
        return await aiohttp_client(server)

    return make


@pytest.fixture
async def client(make_client) -> TestClient:
    return await make_client()


@pytest.fixture
async def browser() -> AsyncIterator[ClientSession]:
    """Stands for the user's browser at WeChat: never follows redirects by itself."""
    async with ClientSession() as session:
        yield session


@pytest.fixture
async def sandbox_server(aiohttp_server, mongodb_name) -> TestServer:
    """The service as `make run` starts it (SANDBOX=1, emulator mounted)."""
    port = unused_port()
    env = {
        "SANDBOX": "1",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "MONGODB_DB": mongodb_name,
        "TOKEN_UPKEEP": "0",
    }
    if MONGODB_URI:
        env["MONGODB_URI"] = MONGODB_URI
    return await aiohttp_server(
        create_app(load_settings(env)), port=port, access_log_class=AccessLogger
    )


@pytest.fixture
def sandbox_service(sandbox_server) -> str:
    """That service's base URL, on the host name its sandbox authorizes (localhost)."""
    return f"http://localhost:{sandbox_server.port}"


@pytest.fixture
async def shared_mongo() -> AsyncIterator[Any]:
    """One MongoDB client for several service instances (the real server when MONGODB_URI)."""
    if MONGODB_URI:
        from pymongo import AsyncMongoClient

        client: Any = AsyncMongoClient(MONGODB_URI, tz_aware=True)
        yield client
        await client.close()
    else:
        from service.store.embedded import embedded_client

        yield embedded_client()
