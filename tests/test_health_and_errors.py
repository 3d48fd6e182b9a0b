"""Health endpoints, and the one error shape on routes that do not exist or methods not allowed."""

from __future__ import annotations

import json
from urllib.parse import quote

import aiohttp
import pytest
import yarl
from aiohttp import web

from flows import assert_error_shape
from service import keys
from service.errors import dumps_error, error_body


async def test_healthz(client):
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz_pings_the_store(client):
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["mongodb"] == "ok"


async def test_readyz_fails_in_the_error_shape_when_the_store_does_not_answer(client):
    store = client.app[keys.STORE]

    class Unreachable:
        async def command(self, *_args, **_kwargs):
            raise ConnectionError("no server")

    real_db = store.db
    store.db = Unreachable()
    try:
        resp = await client.get("/readyz")
    finally:
        store.db = real_db
    assert resp.status == 503
    assert_error_shape(await resp.json(), 503, "NOT_READY", "mongodb")


async def test_unknown_route_is_a_json_404(client):
    resp = await client.get("/no/such/page")
    assert resp.status == 404
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert_error_shape(body, 404, "NOT_FOUND", "path")
    assert body["details"]["fieldValue"] == "/no/such/page"


async def test_an_error_body_carries_any_path_exactly(client):
    """Error bodies are written without json.dumps (errors.dumps_error): quotes, backslashes,
    non-ASCII and line separators in what the request carried still come back as valid JSON."""
    path = '/no/"such"\\page/\u00fc\u2028/\U0001f600'
    resp = await client.get(quote(path))
    assert resp.status == 404
    body = json.loads(await resp.text())
    assert body["details"]["fieldValue"] == path


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "text",
        'a"b\\c\n\x00\u2028',
        "\u00fc\U0001f600",
        0,
        -1.5,
        True,
        [1, "a"],
        {"k": None},
    ],
)
def test_error_text_is_what_json_dumps_writes(value):
    body = error_body(401, "UNAUTHORIZED", 'msg "\u00e4"', "field\t", value)
    assert dumps_error(body) == json.dumps(body)


async def test_wrong_method_is_a_json_405_with_allow(client):
    resp = await client.post("/wechat/authorize")
    assert resp.status == 405
    assert "GET" in resp.headers["Allow"]
    assert_error_shape(await resp.json(), 405, "METHOD_NOT_ALLOWED", "path")


# Throwaway routes that exercise the middleware where no product route can yet.
probe_routes = web.RouteTableDef()


@probe_routes.post("/probe/echo")
async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


@probe_routes.get("/probe/crash")
@probe_routes.get("/probe/crash/{scene}")
async def crash(request: web.Request) -> web.Response:
    raise RuntimeError("secret internals")


async def test_oversized_body_is_a_json_413(make_client):
    client = await make_client(extra_routes=probe_routes, max_body_bytes=1024)
    resp = await client.post("/probe/echo", data=b"x" * 4096)
    assert resp.status == 413
    assert_error_shape(await resp.json(), 413, "REQUEST_ENTITY_TOO_LARGE", "")
    small = await client.post("/probe/echo", data=b"x" * 512)
    assert small.status == 200


async def test_an_unexpected_exception_is_a_generic_500_without_traceback(make_client, caplog):
    client = await make_client(extra_routes=probe_routes)
    resp = await client.get("/probe/crash")
    assert resp.status == 500
    body = await resp.json()
    assert_error_shape(body, 500, "INTERNAL_ERROR", "")
    text = await resp.text()
    assert "secret internals" not in text
    assert "Traceback" not in text
    # The id in the answer finds the traceback in the logs.
    assert body["id"] in caplog.text


async def test_a_crash_on_a_capability_url_logs_the_routes_pattern(make_client, caplog):
    """A path part may be a bearer capability (the QR sign-in scene): not even the error log
    of a crash may carry it."""
    client = await make_client(extra_routes=probe_routes)
    resp = await client.get("/probe/crash/login_capability0000000000000")
    assert resp.status == 500
    assert (await resp.json())["id"] in caplog.text
    assert "/probe/crash/{scene}" in caplog.text
    assert "login_capability" not in caplog.text


async def test_every_error_id_is_a_random_version_4_uuid(client):
    """Error ids are made without the uuid module (errors.error_id): still RFC 4122 version 4
    UUIDs, each one new."""
    import uuid

    ids = set()
    for _ in range(50):
        body = await (await client.get("/wechat/authorize")).json()
        parsed = uuid.UUID(body["id"])
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == body["id"]
        ids.add(body["id"])
    assert len(ids) == 50


# Every route's handler runs in a layer added with the route (no aiohttp middleware), and what
# no route takes meets each application's catch-all: the emulator's too, mounted or alone.
UNKNOWN_TO_THE_EMULATOR = [
    ("GET", "/nowhere", 404, "NOT_FOUND"),
    ("DELETE", "/cgi-bin/token", 405, "METHOD_NOT_ALLOWED"),
    ("POST", "/_sandbox/static/sandbox.css", 405, "METHOD_NOT_ALLOWED"),
    ("GET", "/_sandbox/static/missing.css", 404, "NOT_FOUND"),
    ("GET", "/_sandbox/static/../../pyproject.toml", 404, "NOT_FOUND"),
]


async def error_answer_of(server, prefix: str, method: str, path: str, status: int, name: str):
    """The answer to `method` `path` below `prefix`, sent as written (no ".." resolved), once
    it is checked to be that error in the one shape."""
    async with aiohttp.ClientSession() as http:
        url = f"{str(server.make_url(prefix)).rstrip('/')}{path}"
        resp = await http.request(method, yarl.URL(url, encoded=True))
        assert resp.status == status
        assert_error_shape(await resp.json(), status, name, "path")
    if status == 405:
        assert "GET" in resp.headers["Allow"]
    return resp


@pytest.mark.parametrize(("method", "path", "status", "name"), UNKNOWN_TO_THE_EMULATOR)
async def test_the_mounted_emulators_unknown_paths_get_the_services_answer(
    sandbox_server, method, path, status, name
):
    resp = await error_answer_of(sandbox_server, "/sandbox", method, path, status, name)
    assert resp.headers["X-Request-ID"]  # the service's layer, not only the emulator's
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(("method", "path", "status", "name"), UNKNOWN_TO_THE_EMULATOR)
async def test_the_emulator_alone_answers_unknown_paths_in_the_error_shape(
    emulator_server, method, path, status, name
):
    await error_answer_of(emulator_server, "", method, path, status, name)


async def test_the_mounted_emulators_static_files_are_served(sandbox_server):
    async with aiohttp.ClientSession() as http:
        css = await http.get(sandbox_server.make_url("/sandbox/_sandbox/static/sandbox.css"))
        assert css.status == 200
        assert css.content_type == "text/css"
        assert css.headers["X-Request-ID"]
