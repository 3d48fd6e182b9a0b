"""SIGTERM, as an orchestrator sends it on a rolling restart: stop accepting, let in-flight
requests finish, then stop cleanly (exit code 0, nothing logged as an error)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
from aiohttp.test_utils import unused_port

from flows import start_service, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
LONG_POLL = 2  # seconds the in-flight request holds on


async def refuses_connections(base: str, within: float) -> bool:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
        while time.monotonic() < deadline:
            try:
                async with fresh.get(f"{base}/healthz"):
                    pass
            except aiohttp.ClientConnectionError:
                return True
            await asyncio.sleep(0.05)
    return False


async def test_sigterm_lets_an_in_flight_request_finish_and_refuses_new_ones(tmp_path):
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "service.log"
    process = start_service(ROOT, port, log, SHUTDOWN_TIMEOUT="10", TOKEN_UPKEEP="1")
    try:
        await wait_healthy(base, process, log)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/wechat/qrcode/login") as resp:
                assert resp.status == 201, await resp.text()
                scene = (await resp.json())["scene"]

            async def long_poll() -> tuple[int, dict]:
                url = f"{base}/wechat/qrcode/login/{scene}?wait={LONG_POLL}"
                async with http.get(url) as resp:
                    return resp.status, await resp.json()

            started = time.monotonic()
            in_flight = asyncio.create_task(long_poll())
            # No signal tells a client its request has reached the handler; a quarter of the
            # long poll is ample on loopback, and the poll's length is checked below.
            await asyncio.sleep(LONG_POLL / 4)
            process.send_signal(signal.SIGTERM)

            assert await refuses_connections(base, within=1.0), "still accepting after SIGTERM"
            status, body = await in_flight
            assert status == 200 and body["status"] == "pending"
            assert time.monotonic() - started >= LONG_POLL * 0.9  # ran its course, not cut off
        returncode = await asyncio.to_thread(process.wait, 30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert returncode == 0, text
    assert "Traceback" not in text and '"level": "ERROR"' not in text, text


def test_sigterm_on_an_idle_service_exits_at_once(tmp_path):
    """Nothing in flight: no waiting out SHUTDOWN_TIMEOUT."""
    port = unused_port()
    log = tmp_path / "service.log"
    process = start_service(ROOT, port, log, SHUTDOWN_TIMEOUT="20")
    try:
        asyncio.run(wait_healthy(f"http://127.0.0.1:{port}", process, log))
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=30)
        assert time.monotonic() - started < 10, "waited for SHUTDOWN_TIMEOUT with nothing to do"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert returncode == 0, log.read_text()
