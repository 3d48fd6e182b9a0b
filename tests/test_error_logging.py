"""Every error answer logs one line with its id and name: the "Reference" a page shows finds
the service's log line. 4xx at INFO, 5xx at WARNING, a crash at ERROR with its traceback; never
the message or the value (a state, a code)."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from flows import authorize_at_wechat, start_sign_in
from service.errors import error_body, log_error_answer
from service.sandbox import SANDBOX_USERS

FOLLOWER = SANDBOX_USERS[0]

crashing = web.RouteTableDef()


@crashing.get("/probe/boom")
async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret internals")


@pytest.fixture(autouse=True)
def info(caplog):
    caplog.set_level(logging.INFO, logger="service.errors")


def lines_with(caplog, error_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "service.errors" and error_id in r.getMessage()]


async def test_a_4xx_answer_is_logged_once_at_info_with_its_id_and_name(client, browser, caplog):
    url = await start_sign_in(client)
    query = await authorize_at_wechat(browser, url, FOLLOWER.openid)
    assert (await client.get("/wechat/jwt", params=query)).status == 200
    replay = await (await client.get("/wechat/jwt", params=query)).json()
    (line,) = lines_with(caplog, replay["id"])
    assert line.levelno == logging.INFO
    assert line.getMessage() == (
        f"error 400 INVALID_STATE id={replay['id']} on GET /wechat/jwt field=state.usedAt"
    )
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert query["state"] not in logged and query["code"] not in logged


async def test_unrouted_and_rate_limited_answers_are_logged_too(make_client, caplog):
    client = await make_client(rate_limit_jwt=1, rate_limit_burst=1)
    missing = await (await client.get("/no/such/path")).json()
    (line,) = lines_with(caplog, missing["id"])
    assert "error 404 NOT_FOUND" in line.getMessage() and "field=path" in line.getMessage()
    await client.get("/wechat/jwt")
    limited = await client.get("/wechat/jwt")
    assert limited.status == 429
    body = await limited.json()
    (line,) = lines_with(caplog, body["id"])
    assert "error 429 RATE_LIMITED" in line.getMessage()
    assert body["details"]["fieldValue"] not in line.getMessage()  # not even the address


async def test_a_5xx_answer_is_logged_at_warning(client, browser, emulator, caplog):
    url = await start_sign_in(client)
    query = await authorize_at_wechat(browser, url, FOLLOWER.openid)
    emulator.faults.set("busy", paths=["sns/oauth2/access_token"], count=1)
    body = await (await client.get("/wechat/jwt", params=query)).json()
    (line,) = lines_with(caplog, body["id"])
    assert line.levelno == logging.WARNING
    assert line.getMessage().startswith(f"error 502 WECHAT_UNAVAILABLE id={body['id']} ")


async def test_a_crash_is_logged_at_error_with_its_name_id_and_traceback(make_client, caplog):
    client = await make_client(extra_routes=crashing)
    body = await (await client.get("/probe/boom")).json()
    (line,) = lines_with(caplog, body["id"])
    assert line.levelno == logging.ERROR
    assert line.getMessage() == f"error 500 INTERNAL_ERROR id={body['id']} on GET /probe/boom"
    assert line.exc_info and "secret internals" in str(line.exc_info[1])


def test_a_field_name_that_could_forge_a_line_is_left_out(caplog):
    request = make_mocked_request("POST", "/sandbox/_sandbox/faults")
    body = error_body(400, "INVALID_PARAMETER", "unknown field", "x\nerror 200 FORGED", 1)
    log_error_answer(request, body)
    (line,) = lines_with(caplog, body["id"])
    assert "\n" not in line.getMessage() and "FORGED" not in line.getMessage()
