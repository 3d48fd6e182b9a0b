"""Web-token sweep benchmark: N stored tokens refreshed against the emulator, for several N.

    python -m bench.sweep [--sizes N ...] [--repeat 3]

The emulator runs in its own process (its memory is not ours). Each (size, run) is measured in
a fresh child process, so peak RSS is that run's own; the table shows medians and each size's
ratio to the smallest, so growth shows as a ratio rather than as absolute figures that depend
on this machine's load. The rate ceiling is lifted: this measures the sweep, not the ceiling.

With MONGODB_URI set the tokens live in a throwaway database on that server (dropped after)
and the default sizes are 10,000 and 100,000. Without it they live in the embedded store
(mongomock), which has no indexes: every find, claim and update scans the whole collection,
so a sweep there is quadratic and the default sizes shrink to 250, 500 and 1,000. Those
figures measure mongomock, not the sweep; they are printed so the benchmark runs anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
APPID = "wxbenchbenchbench01"
SECRET = "bench0123456789abcdef0123456789ab"
SEED_CHUNK = 20_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def seed(store: Any, emulator: str, size: int) -> None:
    """`size` users who authorized a while ago: every access token expires in 10 minutes."""
    now = datetime.now(UTC)
    async with aiohttp.ClientSession() as http:
        left = size
        while left:
            count = min(SEED_CHUNK, left)
            async with http.post(f"{emulator}/_sandbox/grants", json={"count": count}) as resp:
                resp.raise_for_status()
                grants = (await resp.json())["grants"]
            await store.web_tokens.insert_many(
                [
                    {
                        "appid": store.appid,  # each account's sweep sees its own tokens
                        "openid": g["openid"],
                        "scope": g["scope"],
                        "accessToken": g["access_token"],
                        "refreshToken": g["refresh_token"],
                        "accessTokenExpiresAt": now + timedelta(seconds=600 + i % 300),
                        "refreshTokenExpiresAt": now + timedelta(days=29),
                        "status": "active",
                        "lastUsedAt": now,
                    }
                    for i, g in enumerate(grants)
                ]
            )
            left -= count
            del grants


async def child(size: int, emulator: str) -> dict[str, Any]:
    from service.clock import SystemClock
    from service.config import Settings
    from service.store.connection import open_database
    from service.store.queries import Store
    from service.tokens.web import WebTokenSweeper
    from service.wechat.client import WeChatClient

    mongodb_uri = os.environ.get("MONGODB_URI", "")
    settings = Settings(
        mongodb_uri=mongodb_uri,
        mongodb_db=f"wechat_oa_auth_bench_{uuid.uuid4().hex[:8]}",
        wechat_appid=APPID,
        wechat_secret=SECRET,
        wechat_api_base=emulator,
        jwt_secret="x" * 32,
        web_token_keep_alive="all",
        web_token_refresh_rate=1e9,
        token_upkeep=False,
    )
    logging_off()
    async with open_database(settings) as db:
        store = Store(db, clock=SystemClock(), appid=APPID)
        await store.ensure_indexes(default_appid=APPID)
        await seed(store, emulator, size)
        gc.collect()
        async with aiohttp.ClientSession() as http:
            wechat = WeChatClient(http, api_base=emulator, appid=APPID, secret=SECRET, timeout=10)
            sweeper = WebTokenSweeper(
                store=store,
                wechat=wechat,
                settings=settings,
                clock=SystemClock(),
                instance_id="bench",
            )
            rss_before = rss_mib()
            tracemalloc.start()
            baseline = tracemalloc.get_traced_memory()[0]
            started = time.perf_counter()
            report = await sweeper.sweep()
            elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1] - baseline
            tracemalloc.stop()
        if mongodb_uri:
            await db.client.drop_database(settings.mongodb_db)
    assert report.refreshed == size, report
    return {
        "size": size,
        "seconds": elapsed,
        "tokens_per_second": size / elapsed,
        "peak_traced_mib": peak / 2**20,
        "rss_growth_mib": rss_mib() - rss_before,
    }


def logging_off() -> None:
    import logging

    logging.disable(logging.INFO)


def run_child(size: int, emulator: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.sweep", "--child", str(size), "--emulator", emulator],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_emulator() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.sandbox",
            "--port",
            str(port),
            "--appid",
            APPID,
            "--secret",
            SECRET,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the emulator did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--emulator", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.child, args.emulator))))
        return

    on_mongodb = bool(os.environ.get("MONGODB_URI"))
    args.sizes = args.sizes or ([10_000, 100_000] if on_mongodb else [250, 500, 1_000])
    store = "MongoDB at MONGODB_URI" if on_mongodb else "the embedded store"
    print(f"web-token sweep against the emulator, on {store}, median of {args.repeat} runs")
    if not on_mongodb:
        print(
            "  NOTE: the embedded store (mongomock) scans the whole collection on every "
            "operation,\n  so these figures measure it, not the sweep. Set MONGODB_URI for "
            "the 10k/100k figures."
        )
    proc, emulator = start_emulator()
    try:
        results: dict[int, list[dict[str, Any]]] = {size: [] for size in args.sizes}
        # Interleave sizes, so a noisy moment on a shared machine hits all of them alike.
        for run in range(args.repeat):
            for size in args.sizes:
                result = run_child(size, emulator)
                results[size].append(result)
                print(
                    f"  run {run + 1}/{args.repeat} {size:>8} tokens: "
                    f"{result['tokens_per_second']:8.0f} tokens/s, "
                    f"peak {result['peak_traced_mib']:7.1f} MiB traced",
                    flush=True,
                )
    finally:
        proc.terminate()
        proc.wait()

    medians = {
        size: {key: statistics.median(r[key] for r in runs) for key in runs[0] if key != "size"}
        for size, runs in results.items()
    }
    first = medians[args.sizes[0]]
    print()
    print(
        f"{'tokens':>8} {'tokens/s':>9} {'seconds':>8} {'peak traced MiB':>16} "
        f"{'RSS growth MiB':>15} {'speed ratio':>12} {'memory ratio':>13}"
    )
    for size in args.sizes:
        m = medians[size]
        print(
            f"{size:>8} {m['tokens_per_second']:>9.0f} {m['seconds']:>8.1f} "
            f"{m['peak_traced_mib']:>16.1f} {m['rss_growth_mib']:>15.1f} "
            f"{m['tokens_per_second'] / first['tokens_per_second']:>12.2f} "
            f"{m['peak_traced_mib'] / max(first['peak_traced_mib'], 1e-9):>13.2f}"
        )


if __name__ == "__main__":
    main()
