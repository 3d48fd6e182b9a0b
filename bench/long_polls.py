"""Thousands of waiting QR sign-ins on one instance (issue 15).

`python -m bench.long_polls` starts the service in sandbox mode (its emulator mounted, pushing
scans to it over loopback), opens --sessions "scan to sign in" sessions, and has --clients
processes long-poll them all at once (`GET /wechat/qrcode/login/{scene}?wait=30`, one
connection each). Then, with every poll waiting:

1. nothing happens for --idle seconds: the server's CPU and RSS growth are read;
2. --scans of the sessions are scanned through the emulator's phone, a few hundred a second;
   each poll answers `scanned` at once and, polling on, `confirmed` with the JWT once WeChat's
   user/info confirmed the follower. Reported: from each scan's push being acknowledged to its
   poll's confirmed answer (p50, p99), and any error or unexpected answer.

The push lands on this instance here; a second instance sharing MongoDB (the change feed,
LoginWaiters.watch) needs a MongoDB server and is covered by tests/test_qr_login.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import load

WAIT = 30


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def open_sessions(base: str, count: int) -> list[dict[str, str]]:
    sessions: list[dict[str, str]] = []
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one() -> None:
            async with http.post(f"{base}/wechat/qrcode/login") as resp:
                body = await resp.json()
                if resp.status != 201:
                    raise RuntimeError(f"qrcode/login answered {resp.status}: {body}")
                sessions.append({"scene": body["scene"], "ticket": body["ticket"]})

        for start in range(0, count, 500):
            await asyncio.gather(*(one() for _ in range(min(500, count - start))))
            print(f"  {len(sessions)}/{count} sessions open", end="\r", flush=True)
    print()
    return sessions


async def client(base: str, scenes: list[str]) -> dict[str, Any]:
    """Long-polls each scene until confirmed or WAIT passes with nothing new twice; the time
    each confirmed answer arrived, and what went wrong."""
    confirmed: dict[str, float] = {}
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=WAIT + 30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def follow(scene: str) -> None:
            quiet = 0
            while quiet < 2:
                try:
                    async with http.get(
                        f"{base}/wechat/qrcode/login/{scene}", params={"wait": str(WAIT)}
                    ) as resp:
                        body = await resp.json()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(type(exc).__name__)
                    return
                if resp.status != 200:
                    errors.append(f"{resp.status} {body.get('name')}")
                    return
                if body["status"] == "confirmed":
                    confirmed[scene] = time.time()
                    return
                if body["status"] == "pending":
                    quiet += 1  # its WAIT passed with nothing new
                elif body["status"] == "expired":
                    return

        await asyncio.gather(*(follow(scene) for scene in scenes))
    return {"confirmed": confirmed, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4, help="long-polling processes")
    parser.add_argument(
        "--settle", type=float, default=15.0, help="seconds for the polls to arrive first"
    )
    parser.add_argument("--idle", type=float, default=10.0, help="seconds with nothing new")
    parser.add_argument("--scans", type=int, default=1000, help="sessions scanned then")
    parser.add_argument("--scan-rate", type=float, default=50.0, help="scans a second")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        spec = json.load(sys.stdin)
        print(json.dumps(asyncio.run(client(spec["base"], spec["scenes"]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        scenario = load.Scenario(
            "long_polls",
            "service",
            "QR long polls",
            # A sign-in session lives long enough for the run; one code per session.
            {"QR_LOGIN_TTL": "600", "QRCODE_DAILY_BUDGET": "100000"},
        )
        server = load.Server(scenario, argparse.Namespace(access_log=False), Path(tmp))
        try:
            run(server, args)
        finally:
            server.stop()


def run(server: load.Server, args: argparse.Namespace) -> None:
    print(f"long polls, {load.machine_note()}")
    sessions = asyncio.run(open_sessions(server.base, args.sessions))
    before = rss_mib(server.pid)
    scenes = [s["scene"] for s in sessions]
    per_client = -(-len(scenes) // args.clients)
    clients = []
    for index in range(args.clients):
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.long_polls", "--client"],
            cwd=load.ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None
        chunk = scenes[index * per_client : (index + 1) * per_client]
        proc.stdin.write(json.dumps({"base": server.base, "scenes": chunk}))
        proc.stdin.close()
        clients.append(proc)
    time.sleep(args.settle)  # every poll connected, read its session once, and waiting
    cpu_before, idle_start = server.cpu_seconds(), time.monotonic()
    time.sleep(args.idle)
    idle_cpu = (server.cpu_seconds() - cpu_before) / (time.monotonic() - idle_start)
    waiting_rss = rss_mib(server.pid)
    scanned_at = asyncio.run(scan(server.base, sessions[: args.scans], args.scan_rate))
    results = []
    for proc in clients:
        assert proc.stdout is not None
        results.append(json.loads(proc.stdout.read()))
        proc.wait(timeout=10)
    after = rss_mib(server.pid)
    confirmed = {k: v for r in results for k, v in r["confirmed"].items()}
    errors = [e for r in results for e in r["errors"]]
    delays = sorted(
        (confirmed[scene] - at) * 1000 for scene, at in scanned_at.items() if scene in confirmed
    )
    missing = len(scanned_at) - len(delays)
    print(
        f"  {len(sessions)} sessions long-polled from {args.clients} processes; RSS "
        f"{before:.0f} MiB before the polls, {waiting_rss:.0f} MiB with all waiting "
        f"(+{waiting_rss - before:.0f}), {after:.0f} MiB at the end"
    )
    print(
        f"  {args.idle:g} s with nothing new ({args.settle:g} s after the polls started): "
        f"server CPU {100 * idle_cpu:.1f}% of a core"
    )
    print(
        f"  {len(scanned_at)} scanned: push acknowledged → confirmed answer p50 "
        f"{statistics.median(delays):.0f} ms, p99 {delays[int(0.99 * (len(delays) - 1))]:.0f} "
        f"ms; {missing} not confirmed; errors: {len(errors)} {sorted(set(errors))[:5]}"
    )


async def scan(base: str, sessions: list[dict[str, str]], rate: float) -> dict[str, float]:
    """Each session scanned through the emulator's phone by a follower of its own (one person's
    events in one second are one event to the service: FromUserName + CreateTime); when its
    push was acknowledged (the emulator answers after delivering it)."""
    done: dict[str, float] = {}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/sandbox/_sandbox/api/followers", json={"count": len(sessions)}
        ) as resp:
            people = iter((await resp.json())["openids"])

        async def one(session: dict[str, str], openid: str) -> None:
            async with http.post(
                f"{base}/sandbox/_sandbox/api/scan",
                json={"openid": openid, "ticket": session["ticket"]},
            ) as resp:
                if resp.status == 200:
                    done[session["scene"]] = time.time()

        begin, tasks = time.perf_counter(), []
        for n, session in enumerate(sessions):
            delay = begin + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(session, next(people))))
        await asyncio.gather(*tasks)
    return done


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
