"""SIGTERM, as an orchestrator sends it on a rolling restart: stop accepting, let in-flight
requests finish (long polls answer their current state at once), then stop cleanly (exit
code 0, nothing logged as an error)."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp

from flows import start_service

SLOW_CALL = 2  # seconds the in-flight request holds on


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
    log = tmp_path / "service.log"
    process, base = await start_service(log, SHUTDOWN_TIMEOUT="10", TOKEN_UPKEEP="1")
    try:
        async with aiohttp.ClientSession() as http:
            # The emulator (WeChat) takes SLOW_CALL seconds to create a QR code, so the
            # request for one is in flight when the signal comes.
            fault = {"kind": "slow", "paths": ["cgi-bin/qrcode/create"], "delay": SLOW_CALL}
            async with http.post(f"{base}/sandbox/_sandbox/faults", json=fault) as resp:
                assert resp.status in (200, 201), await resp.text()

            async def slow_request() -> tuple[int, bytes]:
                async with http.get(f"{base}/wechat/qrcode?scene=door") as resp:
                    return resp.status, await resp.read()

            started = time.monotonic()
            in_flight = asyncio.create_task(slow_request())
            # No signal tells a client its request has reached the handler; a quarter of the
            # call is ample on loopback, and the request's length is checked below.
            await asyncio.sleep(SLOW_CALL / 4)
            process.send_signal(signal.SIGTERM)

            assert await refuses_connections(base, within=1.0), "still accepting after SIGTERM"
            status, body = await in_flight
            assert status == 200 and body.startswith(b"\x89PNG")
            assert time.monotonic() - started >= SLOW_CALL * 0.9  # ran its course, not cut off
        returncode = await asyncio.to_thread(process.wait, 30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert returncode == 0, text
    assert "Traceback" not in text and '"level": "ERROR"' not in text, text


async def test_sigterm_answers_long_polls_with_their_state_before_closing(tmp_path):
    """A long poll may hold a request 30 s, longer than SHUTDOWN_TIMEOUT: on SIGTERM each one
    answers its session's current state at once, so the browser polls again elsewhere
    instead of seeing its connection cut."""
    log = tmp_path / "service.log"
    process, base = await start_service(log, SHUTDOWN_TIMEOUT="1")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/wechat/qrcode/login") as resp:
                assert resp.status == 201, await resp.text()
                scene = (await resp.json())["scene"]

            async def long_poll() -> tuple[int, dict]:
                async with http.get(f"{base}/wechat/qrcode/login/{scene}?wait=30") as resp:
                    return resp.status, await resp.json()

            polls = [asyncio.create_task(long_poll()) for _ in range(3)]
            await asyncio.sleep(0.5)  # the polls are waiting
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            answers = await asyncio.wait_for(asyncio.gather(*polls), 10)
            assert answers == [(200, answers[0][1])] * 3
            assert answers[0][1]["status"] == "pending"
            assert time.monotonic() - signalled < 1.0  # answered, not cut by SHUTDOWN_TIMEOUT
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
    log = tmp_path / "service.log"
    process, _ = asyncio.run(start_service(log, SHUTDOWN_TIMEOUT="20"))
    try:
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=30)
        assert time.monotonic() - started < 10, "waited for SHUTDOWN_TIMEOUT with nothing to do"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert returncode == 0, log.read_text()
