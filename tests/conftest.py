"""Fixtures: settings, the WeChat emulator on loopback, the store, the service under test.

Set MONGODB_URI to run the same suite on a real MongoDB: each test gets its own database, named
after this run, dropped afterwards.

Every server here binds its own port: aiohttp's test servers bind port 0, and a server that must
know its port before it is built gets a socket bound first (flows.listening_socket). No port is
picked, released and bound again later, when another process may have taken it.
"""

from __future__ import annotations

import dataclasses
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer

from flows import (
    ADMIN_KEY,
    AES_KEY,
    APP_ORIGIN,
    APPID,
    JWT_SECRET,
    MONGODB_URI,
    SECRET,
    TOKEN,
    listening_socket,
)
from service import keys
from service.app import create_app
from service.clock import Clock, ManualClock
from service.config import Settings, load_settings
from service.logs import AccessLogger
from service.pipeline import routing
from service.sandbox import SANDBOX_KEY, SandboxConfig, create_sandbox_app
from service.sandbox.app import SandboxWeChat

RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture
def clock() -> ManualClock:
    # A whole second, so lifetimes built from several advance() calls land on their bounds.
    return ManualClock(float(int(time.time())))


MakeEmulator = Callable[..., Awaitable[TestServer]]


@pytest.fixture
def make_emulator(aiohttp_server, clock) -> MakeEmulator:
    """A WeChat emulator on loopback; keyword arguments override its SandboxConfig (the tests'
    account, authorizing app.example.com). `clock`: its time, the test's manual clock unless
    given. `sleep`: how it pauses between push attempts; on the manual clock, by default the
    pause passes on that clock at once, not on the wall's."""

    async def make(
        *,
        clock: Clock = clock,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        **config: Any,
    ) -> TestServer:
        if sleep is None and isinstance(clock, ManualClock):
            sleep = passing_on(clock)
        account = {"appid": APPID, "secret": SECRET, "authorized_domain": "app.example.com"}
        app = create_sandbox_app(SandboxConfig(**{**account, **config}), clock, sleep=sleep)
        return await aiohttp_server(app, access_log_class=AccessLogger)

    return make


def passing_on(clock: ManualClock) -> Callable[[float], Awaitable[None]]:
    """A pause that passes on the manual clock at once."""

    async def pause(seconds: float) -> None:
        clock.advance(seconds)

    return pause


@pytest.fixture
async def emulator_server(make_emulator) -> TestServer:
    """The test's WeChat: the service under test (make_client, client) calls it."""
    return await make_emulator()


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
def make_client(shared_mongo, aiohttp_server, aiohttp_client, settings, clock) -> MakeClient:
    """A service client; keyword arguments override settings. Instances given one
    `mongo_client` share a store, as several replicas share one MongoDB.

    shared_mongo comes first: fixtures are torn down in the reverse order, so the servers stop
    (and release their leases through it) before that client closes. The other way round,
    every test sharing a real MongoDB failed at teardown on the closed client."""

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
            routing.add_routes(app, extra_routes, app[keys.LAYER])
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


Wire = Callable[..., Awaitable[tuple[TestClient, TestClient]]]


@pytest.fixture
def wired_service(make_client, emulator, emulator_server, aiohttp_client) -> Wire:
    """A service under test wired to the emulator both ways, as 服务器配置 wires an account to
    its server: the service calls the emulator as WeChat, and the emulator pushes to the
    service's /wechat/message (scans, follows, messages), signed with TOKEN, in `mode`
    ("plain", "compatible" or "safe", the service set to the same, with AES_KEY). Keyword
    arguments override the service's settings, as make_client's do. Returns (service, phone):
    `phone` is a client of the emulator, whose /_sandbox/api/... routes play the person."""

    async def wire(mode: str = "plain", **overrides: Any) -> tuple[TestClient, TestClient]:
        if mode != "plain":
            overrides = {"wechat_message_mode": mode, "wechat_aes_key": AES_KEY, **overrides}
        service = await make_client(**overrides)
        emulator.config = dataclasses.replace(
            emulator.config,
            message_url=str(service.make_url("/wechat/message")),
            token=TOKEN,
            aes_key=AES_KEY,
            message_mode=mode,
        )
        return service, await aiohttp_client(emulator_server)

    return wire


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on, held for the test: bound without listening, so
    connections to it are refused, and no other server can take it meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@pytest.fixture
async def sandbox_server(mongodb_name) -> AsyncIterator[TestServer]:
    """The service as `make run` starts it (SANDBOX=1, emulator mounted). Its settings name
    its own port (the mounted emulator pushes to it), so the socket is bound first and the
    server serves on that very socket."""
    listening = listening_socket()
    env = {
        "SANDBOX": "1",
        "PORT": str(listening.getsockname()[1]),
        "HOST": "127.0.0.1",
        "MONGODB_DB": mongodb_name,
        "TOKEN_UPKEEP": "0",
    }
    if MONGODB_URI:
        env["MONGODB_URI"] = MONGODB_URI
    # pytest-aiohttp's aiohttp_server cannot pass socket_factory to TestServer, so this one is
    # started and closed here.
    server = TestServer(
        create_app(load_settings(env)), socket_factory=lambda host, port, family: listening
    )
    try:
        await server.start_server(access_log_class=AccessLogger)
        yield server
    finally:
        await server.close()
        listening.close()


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
