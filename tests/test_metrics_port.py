"""/metrics: process_* metrics in each app's own registry; METRICS_PORT serves it apart."""

from __future__ import annotations

import dataclasses
import sys

import aiohttp
import pytest
from test_config import PRODUCTION_ENV

from flows import assert_error_shape, listening_socket
from service.app import create_app
from service.config import ConfigError, load_settings

PROCESS_METRICS = ("process_cpu_seconds_total", "process_start_time_seconds", "python_info")
if sys.platform.startswith("linux"):  # read from /proc
    PROCESS_METRICS += ("process_resident_memory_bytes", "process_open_fds")


def has_metric(text: str, name: str) -> bool:
    return any(line.startswith(name) for line in text.splitlines())


async def test_metrics_include_the_process_and_the_platform(client, make_client):
    text = await (await client.get("/metrics")).text()
    for name in PROCESS_METRICS:
        assert has_metric(text, name), name
    # Every app has its own registry, collectors included: a second one builds and serves too.
    other = await make_client()
    assert has_metric(await (await other.get("/metrics")).text(), "process_cpu_seconds_total")


@pytest.fixture
async def apart(aiohttp_client, settings, clock):
    """The service with METRICS_PORT, its listener on a socket bound already."""
    held = listening_socket()
    port = held.getsockname()[1]
    app = create_app(
        dataclasses.replace(settings, metrics_port=port), clock=clock, metrics_socket=held
    )
    # The listener serves on `held` and closes it when the service stops.
    return await aiohttp_client(app), f"http://127.0.0.1:{port}"


async def test_with_a_metrics_port_metrics_are_served_there_alone(apart):
    service, metrics_base = apart
    assert (await service.get("/healthz")).status == 200  # counted, as before
    async with aiohttp.ClientSession() as monitoring:
        scraped = await monitoring.get(f"{metrics_base}/metrics")
        assert scraped.status == 200
        text = await scraped.text()
        assert has_metric(text, "wechat_base_token_remaining_seconds")
        assert has_metric(text, "process_cpu_seconds_total")
        assert 'http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
        # Nothing else of the service is on that port.
        for path in ("/healthz", "/wechat/authorize", "/openapi.json"):
            elsewhere = await monitoring.get(f"{metrics_base}{path}")
            assert elsewhere.status == 404, path
            assert_error_shape(await elsewhere.json(), 404, "NOT_FOUND", "path")

    main = await service.get("/metrics")
    assert main.status == 404
    assert_error_shape(await main.json(), 404, "NOT_FOUND", "path")
    assert (await service.get("/healthz")).status == 200
    # The document describes the routes the service serves on its own port.
    assert "/metrics" not in (await (await service.get("/openapi.json")).json())["paths"]


async def test_the_metrics_port_closes_with_the_service(aiohttp_server, settings, clock):
    held = listening_socket()
    port = held.getsockname()[1]
    app = create_app(
        dataclasses.replace(settings, metrics_port=port), clock=clock, metrics_socket=held
    )
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as monitoring:
        assert (await monitoring.get(f"http://127.0.0.1:{port}/metrics")).status == 200
        await server.close()
        with pytest.raises(aiohttp.ClientConnectionError):
            await monitoring.get(f"http://127.0.0.1:{port}/metrics")
    held.close()


@pytest.mark.parametrize(("value", "named"), [("3000", "PORT"), ("70000", "65535"), ("-1", "0")])
def test_a_metrics_port_on_the_main_port_or_out_of_range_stops_start_up(value, named):
    with pytest.raises(ConfigError, match=rf"METRICS_PORT.*{named}"):
        load_settings({**PRODUCTION_ENV, "PORT": "3000", "METRICS_PORT": value})


def test_metrics_port_defaults_to_the_main_port():
    assert load_settings(PRODUCTION_ENV).metrics_port == 0
    assert load_settings({**PRODUCTION_ENV, "METRICS_PORT": "9464"}).metrics_port == 9464
