"""schemathesis against /openapi.json: a bounded, deterministic run on the service in sandbox mode.

The service runs as `make run` starts it (SANDBOX=1, the emulator mounted at /sandbox, the
embedded store, or MONGODB_URI's server), on a loopback port in a thread of its own: schemathesis
sends its requests synchronously. Rate limits are off here so the requests reach the handlers;
test_openapi.py covers the 429s. Checks: no 5xx, every status documented, every body, content
type and documented header as the document says; a failure prints the request as a curl command.

The schema is the exact text /openapi.json serves, loaded at import so each operation is a test
of its own (schemathesis's fixture-based loader does not work with pytest 9.2), and the live
service is checked to serve that very text. That text names the service's port (PUBLIC_URL), so
the socket the service serves on is bound at import, on a port the kernel picks as it binds.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from aiohttp import web
from schemathesis import checks

from flows import MONGODB_URI, listening_socket
from service import keys
from service.app import SERVER_LIMITS, create_app
from service.config import load_settings
from service.logs import AccessLogger

MAX_EXAMPLES = 25  # per operation, in the fuzzing phase
SEED = 20260523
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


LISTENING = listening_socket()  # the live service's, held open until it serves on it
PORT = LISTENING.getsockname()[1]
PUBLIC_URL = f"http://localhost:{PORT}"  # the default PUBLIC_URL of the service below
DATABASE = f"wechat_oa_auth_test_schemathesis_{uuid.uuid4().hex[:8]}"
ENV = {
    "SANDBOX": "1",
    "HOST": "127.0.0.1",
    "PORT": str(PORT),
    "MONGODB_DB": DATABASE,
    "TOKEN_UPKEEP": "0",
    "RATE_LIMIT_AUTHORIZE": "0",
    "RATE_LIMIT_JWT": "0",
    "RATE_LIMIT_QRCODE": "0",
    "LOG_FORMAT": "text",
    **({"MONGODB_URI": MONGODB_URI} if MONGODB_URI else {}),
}
# The document such a service serves (building an app does no I/O; the fixture runs another).
DOCUMENT = create_app(load_settings(ENV))[keys.API_DOCUMENT].text

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "request-timeout": 10,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            "no-shrink": True,
        },
        # Stateful sequences need links between operations; the document declares none.
        "phases": {"stateful": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_file(DOCUMENT, config=CONFIG)


@pytest.fixture(scope="module")
def live_service() -> Iterator[str]:
    """The service on 127.0.0.1 in a thread with its own event loop, serving on LISTENING;
    its base URL."""
    port = PORT
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="live-service", daemon=True)
    thread.start()

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    async def start() -> web.AppRunner:
        runner = web.AppRunner(create_app(load_settings(ENV)), access_log_class=AccessLogger)
        await runner.setup()
        await web.SockSite(runner, LISTENING).start()
        return runner

    runner = run(start())
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        run(runner.cleanup())
        LISTENING.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        if MONGODB_URI:
            from pymongo import MongoClient

            with MongoClient(MONGODB_URI) as client:
                client.drop_database(DATABASE)


@pytest.fixture(scope="module")
def service_url(live_service) -> str:
    """The live service, after checking it serves the document being fuzzed."""
    with urllib.request.urlopen(f"{live_service}/openapi.json", timeout=10) as resp:  # noqa: S310
        assert resp.read().decode() == DOCUMENT
    return live_service


# aiohttp's HTTP parser refuses a request line (the URL) or a header over the service's
# SERVER_LIMITS itself, with a plain-text 400, before any of the service's code runs (see README,
# API documentation). Such requests test aiohttp, not the service, so they are left out.
HTTP_LIMIT = SERVER_LIMITS["max_line_size"] - 64


def beyond_http_limits(case, base_url: str) -> bool:
    sent = case.as_transport_kwargs(base_url=base_url)
    prepared = requests.Request(
        sent["method"], sent["url"], params=sent["params"], headers=sent["headers"]
    ).prepare()
    if len(prepared.path_url.encode()) > HTTP_LIMIT:
        return True
    return any(len(f"{k}: {v}".encode()) > HTTP_LIMIT for k, v in prepared.headers.items())


@schema.parametrize()
def test_the_service_answers_as_its_openapi_document_says(case, service_url):
    if beyond_http_limits(case, service_url):
        return
    case.call_and_validate(base_url=service_url, checks=CHECKS)
