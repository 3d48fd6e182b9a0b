"""Request ids, JSON logs, /metrics, and logs that never carry a token, code or secret."""

from __future__ import annotations

import json
import logging

import pytest

from flows import APPID, JWT_SECRET, SECRET, TOKEN, authorize_at_wechat, sign_in, start_sign_in
from service import keys
from service.logs import JsonFormatter, QueryRedactingFilter, RequestIdFilter
from service.sandbox import SANDBOX_USERS

FOLLOWER = SANDBOX_USERS[0]


async def test_a_request_id_is_honoured_or_made_and_always_returned(client):
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = await client.get("/healthz")
    assert len(made.headers["X-Request-ID"]) == 32
    forged = await client.get("/healthz", headers={"X-Request-ID": "x\\n{evil}"})
    assert forged.headers["X-Request-ID"] != "x\\n{evil}"
    missing = await client.get("/nowhere", headers={"X-Request-ID": "req-404"})
    assert missing.status == 404 and missing.headers["X-Request-ID"] == "req-404"


def json_lines(caplog) -> list[dict]:
    formatter, stamp = JsonFormatter(), RequestIdFilter()
    lines = []
    for record in caplog.records:
        stamp.filter(record)
        lines.append(json.loads(formatter.format(record)))
    return lines


async def test_one_json_access_line_per_request_with_route_status_latency_and_id(client, caplog):
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    await client.get("/wechat/qrcode/login/login_abc?wait=0", headers={"X-Request-ID": "r-1"})
    access = [line for line in json_lines(caplog) if line["logger"] == "aiohttp.access"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == "r-1"
    assert line["route"] == "/wechat/qrcode/login/{scene}"  # the pattern, not the scene
    assert line["status"] == 404
    assert line["method"] == "GET" and line["path"] == "/wechat/qrcode/login/{scene}"
    assert isinstance(line["latency_ms"], float)
    assert "wait=" not in json.dumps(line)  # never the query string


async def test_metrics_count_requests_wechat_calls_and_token_state(client, browser):
    await sign_in(client, browser, FOLLOWER.openid)
    await client.app[keys.ACCOUNTS].default.base_tokens.renew_if_due()
    await client.get("/nowhere")
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    assert 'http_requests_total{method="GET",route="/wechat/jwt",status="200"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert (
        'http_request_duration_seconds_bucket{le="0.005",method="GET",route="/wechat/jwt"}' in text
    )
    calls = 'wechat_api_calls_total{account="default",'
    assert calls + 'endpoint="sns/oauth2/access_token",errcode="0"} 1.0' in text
    assert calls + 'endpoint="cgi-bin/stable_token",errcode="0"} 1.0' in text
    assert 'wechat_base_token_remaining_seconds{account="default"} 7200.0' in text
    assert 'wechat_web_tokens{account="default",state="active"} 1.0' in text
    assert 'wechat_web_tokens{account="default",state="reauth_required"} 0.0' in text


async def test_metrics_see_wechat_errors_and_failed_renewals(client, emulator):
    emulator.faults.set("errcode", errcode=40164, paths=["cgi-bin/stable_token"])
    await client.app[keys.ACCOUNTS].default.base_tokens.renew_if_due()
    text = await (await client.get("/metrics")).text()
    calls = 'wechat_api_calls_total{account="default",'
    assert calls + 'endpoint="cgi-bin/stable_token",errcode="40164"} 1.0' in text
    assert 'wechat_token_refresh_failures_total{account="default",kind="base"} 1.0' in text
    assert 'wechat_base_token_remaining_seconds{account="default"} 0.0' in text


async def test_the_mongodb_drivers_command_log_stays_out_at_debug(client, caplog):
    """pymongo logs each command and reply, documents and their tokens included, at DEBUG;
    with a MongoDB server (MONGODB_URI) the whole suite showed tokens in the log before."""
    caplog.set_level(logging.DEBUG)
    assert (await client.get("/healthz")).status == 200  # the store is open
    for name in ("pymongo.command", "pymongo.connection", "pymongo.serverSelection"):
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
        assert logging.getLogger(name).isEnabledFor(logging.INFO), name


async def test_no_token_code_or_secret_ever_reaches_the_logs(
    make_client, browser, caplog, emulator
):
    """A whole sign-in, a follow check, a QR sign-in and WeChat's errors, logged at DEBUG."""
    caplog.set_level(logging.DEBUG)
    client = await make_client(admin_key="admin-key-that-is-secret-0001")
    url = await start_sign_in(client, "snsapi_userinfo")
    query = await authorize_at_wechat(browser, url, FOLLOWER.openid)
    signed_in = await (await client.get("/wechat/jwt", params=query)).json()
    await client.get(
        "/wechat/subscribed", headers={"Authorization": f"Bearer {signed_in['token']}"}
    )
    await client.get(
        "/wechat/tokens/status", headers={"X-Admin-Key": "admin-key-that-is-secret-0001"}
    )
    await client.get("/wechat/jwt", params=query)  # a replay, refused
    emulator.faults.set("errcode", errcode=40001, paths=["cgi-bin/user/info"], count=1)
    await client.get(
        "/wechat/subscribed", headers={"Authorization": f"Bearer {signed_in['token']}"}
    )
    await client.app[keys.ACCOUNTS].default.web_tokens.sweep()

    store = client.app[keys.STORE]
    web_token = await store.get_web_token(FOLLOWER.openid, "snsapi_userinfo")
    base = await store.get_base_token(APPID)
    secrets = {
        "code": query["code"],
        "state": query["state"],
        "jwt": signed_in["token"],
        "web access_token": web_token["accessToken"],
        "refresh_token": web_token["refreshToken"],
        "base access_token": base["accessToken"],
        "AppSecret": SECRET,
        "JWT secret": JWT_SECRET,
        "server token": TOKEN,
        "admin key": "admin-key-that-is-secret-0001",
    }
    logged = "\n".join(
        f"{r.getMessage()} {r.args!r} {getattr(r, 'exc_text', '')}" for r in caplog.records
    )
    assert len(caplog.records) > 10
    leaked = {
        name: sorted({r.name for r in caplog.records if value in f"{r.getMessage()} {r.args!r}"})
        for name, value in secrets.items()
        if value and value in logged
    }
    assert leaked == {}


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_log_format_setting(fmt):
    from service.config import load_settings

    env = {
        "WECHAT_APPID": "wxabcdef0123456789",
        "WECHAT_SECRET": "s",
        "WECHAT_TOKEN": "t",
        "JWT_SECRET": "x" * 32,
        "LOG_FORMAT": fmt,
        "MONGODB_URI": "memory://",
    }
    assert load_settings(env).log_format == fmt


async def test_access_lines_cannot_be_forged_through_the_path(client, caplog):
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    await client.get("/nowhere/x%0A2026-01-01%20INFO%20forged")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert "\n" not in line and "x%0A2026" in line


def test_aiohttp_errors_quoting_a_request_line_lose_its_query():
    record = logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        __file__,
        1,
        "Error handling request %s",
        ("GET /wechat/jwt?code=SECRETCODE&state=S1 HTTP/1.1",),
        None,
    )
    QueryRedactingFilter().filter(record)
    assert "SECRETCODE" not in record.getMessage() and "/wechat/jwt?" in record.getMessage()


async def test_over_long_input_is_answered_in_the_error_shape(client):
    resp = await client.get("/wechat/jwt", params={"state": "a" * 9000, "code": "c"})
    assert resp.status == 400
    body = await resp.json()
    assert body["details"]["field"] == "state"
    assert resp.headers["X-Request-ID"]


async def test_redirects_through_the_mounted_emulator_carry_the_id_and_are_counted(
    sandbox_service, browser
):
    """A 302 propagates through the service's middleware as an exception, not a response."""
    authorize = await browser.get(
        f"{sandbox_service}/wechat/authorize",
        params={
            "redirectUri": f"{sandbox_service}/",
            "callback": f"{sandbox_service}/wechat/callback",
        },
    )
    url = (await authorize.json())["details"]["fieldValue"]
    target = url.split("#", 1)[0] + f"&sandbox_openid={FOLLOWER.openid}&sandbox_action=allow"
    async with browser.get(
        target, allow_redirects=False, headers={"X-Request-ID": "redirect-1"}
    ) as resp:
        assert resp.status == 302
        assert resp.headers["X-Request-ID"] == "redirect-1"
    text = await (await browser.get(f"{sandbox_service}/metrics")).text()
    assert 'route="/sandbox/connect/oauth2/authorize",status="302"} 1.0' in text


async def test_made_up_methods_share_one_metrics_label(client):
    """HTTP has dozens of methods (WebDAV's among them); the routes answer a few."""
    for method in ("PROPFIND", "MKCOL", "LOCK"):
        resp = await client.request(method, "/healthz")
        assert resp.status == 405
    await client.get("/healthz")
    await client.get("/healthz")
    text = await (await client.get("/metrics")).text()
    assert 'http_requests_total{method="OTHER",route="unmatched",status="405"} 3.0' in text
    assert 'http_requests_total{method="GET",route="/healthz",status="200"} 2.0' in text
    assert "PROPFIND" not in text and "MKCOL" not in text


async def test_a_sign_in_scene_never_reaches_the_logs(client, caplog):
    """The QR sign-in scene is a bearer capability (whoever polls it gets the JWT): access
    lines name its route's pattern; unrouted paths are still logged as sent, for debugging."""
    caplog.set_level(logging.DEBUG)
    started = await client.post("/wechat/qrcode/login")
    scene = (await started.json())["scene"]
    assert (await client.get(f"/wechat/qrcode/login/{scene}")).status == 200
    assert (await client.get("/wechat/qrcode/login/login_unknownScene00000000000")).status == 404
    assert (await client.get("/no/such/page-42")).status == 404
    access = [line for line in json_lines(caplog) if line["logger"] == "aiohttp.access"]
    paths = [line["path"] for line in access]
    assert paths.count("/wechat/qrcode/login/{scene}") == 2
    assert "/no/such/page-42" in paths
    for record in caplog.records:
        text = f"{record.getMessage()} {record.args!r} {record.__dict__!r}"
        assert scene not in text and "unknownScene" not in text, record.name


async def test_metrics_time_each_wechat_call(client, browser, emulator):
    """How long WeChat takes, by endpoint: a slow WeChat shows in the histogram's buckets."""
    emulator.faults.set("slow", delay=0.06, paths=["sns/oauth2/access_token"], count=1)
    await sign_in(client, browser, "oSbx01FollowerWithUnionid0A1")
    text = await (await client.get("/metrics")).text()
    series = 'wechat_api_call_duration_seconds_bucket{account="default",'
    series += 'endpoint="sns/oauth2/access_token",'
    assert series + 'le="0.05"} 0.0' in text  # it took over 50 ms...
    assert series + 'le="+Inf"} 1.0' in text  # one call


def test_request_metrics_read_as_prometheus_clients_own_counter_and_histogram():
    """The requests' series are counted without prometheus_client's locks (RequestSeries): a
    scrape still reads what its Counter and Histogram would write for the same requests, so
    dashboards and alerts see no difference."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from service.pipeline.metrics import LATENCY_BUCKETS, RequestSeries

    reference = CollectorRegistry()
    counter = Counter(
        "http_requests_total",
        "HTTP requests answered, by route pattern, method and status",
        ("route", "method", "status"),
        registry=reference,
    )
    histogram = Histogram(
        "http_request_duration_seconds",
        "Time to answer, by route pattern and method",
        ("route", "method"),
        buckets=LATENCY_BUCKETS,
        registry=reference,
    )
    ours = CollectorRegistry()
    series = RequestSeries()
    ours.register(series)
    # Every bound exactly (le is inclusive), between bounds, past the last, and zero.
    seconds = [*LATENCY_BUCKETS, 0.0, 0.003, 0.2, 0.75, 45.0]
    requests = [
        ("/wechat/authorize", "GET", 401),
        ("/wechat/qrcode/login/{scene}", "GET", 200),
        ("/wechat/authorize", "POST", 405),
        ("unmatched", "OTHER", 404),
    ]
    for n, (route, method, status) in enumerate(requests):
        for value in seconds[n:]:
            counter.labels(route, method, str(status)).inc()
            histogram.labels(route, method).observe(value)
            series.observe(route, method, status, value)

    def lines(registry: CollectorRegistry) -> list[str]:
        # Creation times differ by when each was made; sums only by the order of additions.
        text = generate_latest(registry).decode()
        return sorted(
            line.rsplit(" ", 1)[0] if "_created" in line else line for line in text.splitlines()
        )

    assert lines(ours) == lines(reference)
