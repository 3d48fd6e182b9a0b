"""The service's own latency inside a sign-in, with a slow WeChat (issue 15).

`python -m bench.signin_latency` starts the WeChat emulator and the service as two processes
(so the emulator's work does not count as the service's), makes the emulator delay each sns
call by --delay seconds (a `slow` fault), and runs sign-ins at --rate a second for --duration
seconds: GET /wechat/authorize, the emulator's authorize page (allow), GET /wechat/jwt (which
exchanges the code and fetches the profile: two WeChat calls). Sign-ins start on schedule
whatever the earlier ones are doing (an open loop, as real users arrive).

Reported: /wechat/jwt's latency as the client saw it (p50, p99), the WeChat calls' time per
sign-in as the service measured it (`wechat_api_call_duration_seconds` in /metrics), and the
service's own share: the p50 of /wechat/jwt minus the median sign-in's WeChat time. The target
is at most 5 ms at 50 sign-ins a second with WeChat 50 ms slow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp

from bench import load

APPID = "wx0000000000be0c01"
SECRET = "bench-secret-0123456789abcdef012"
TOKEN = "benchtoken"
APP = "https://app.example.com"
OPENID = load.SANDBOX_OPENID
SNS_CALLS = ("sns/oauth2/access_token", "sns/userinfo")


def start(cmd: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A process that binds port 0 and logs it; (the process, its port)."""
    out = log.open("wb")
    proc = subprocess.Popen(cmd, cwd=load.ROOT, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(rb"(?:listening on \S+:|http://[^/\s]+:)(\d+)", log.read_bytes())
        if found:
            return proc, int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{cmd[2]} did not start:\n{log.read_text(errors='replace')[-2000:]}")


def metric_sums(base: str) -> dict[str, float]:
    """The sums and counts this benchmark reads from the service's /metrics."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:  # noqa: S310
        text = resp.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        for endpoint in SNS_CALLS:
            prefix = (
                f'wechat_api_call_duration_seconds_sum{{account="default",endpoint="{endpoint}"}}'
            )
            if line.startswith(prefix):
                found[f"wechat:{endpoint}"] = float(line.rsplit(" ", 1)[1])
        if line.startswith('http_request_duration_seconds_sum{method="GET",route="/wechat/jwt"}'):
            found["jwt_sum"] = float(line.rsplit(" ", 1)[1])
        if line.startswith('http_request_duration_seconds_count{method="GET",route="/wechat/jwt"}'):
            found["jwt_count"] = float(line.rsplit(" ", 1)[1])
    return found


async def one_sign_in(http: aiohttp.ClientSession, service: str) -> float:
    """One sign-in; the seconds /wechat/jwt took."""
    params = {"redirectUri": f"{APP}/done", "callback": f"{APP}/cb", "scope": "snsapi_userinfo"}
    async with http.get(f"{service}/wechat/authorize", params=params) as resp:
        url = (await resp.json())["details"]["fieldValue"].split("#", 1)[0]
    async with http.get(
        f"{url}&sandbox_openid={OPENID}&sandbox_action=allow", allow_redirects=False
    ) as resp:
        query = {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}
    started = time.perf_counter()
    async with http.get(f"{service}/wechat/jwt", params=query) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"/wechat/jwt answered {resp.status}: {body[:200]!r}")
    return time.perf_counter() - started


async def drive(service: str, rate: float, duration: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = 0
    async with aiohttp.ClientSession() as http:
        tasks = []
        begin = time.perf_counter()
        for n in range(int(rate * duration)):
            delay = begin + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one_sign_in(http, service)))
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, float):
                latencies.append(result)
            else:
                failures += 1
    return latencies, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="sign-ins a second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of sign-ins")
    parser.add_argument("--delay", type=float, default=0.05, help="WeChat's delay per call")
    args = parser.parse_args()
    env = {**os.environ, "LOG_LEVEL": "WARNING", "LOG_FORMAT": "text", "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        emulator, emulator_port = start(
            [
                sys.executable,
                "-m",
                "service.sandbox",
                "--port",
                "0",
                "--appid",
                APPID,
                "--secret",
                SECRET,
                "--domain",
                "app.example.com",
                "--token",
                TOKEN,
            ],
            {**env, "LOG_LEVEL": "INFO"},
            workdir / "emulator.log",
        )
        wechat = f"http://127.0.0.1:{emulator_port}"
        service, service_port = start(
            [sys.executable, "-m", "service"],
            {
                **env,
                "LOG_LEVEL": "INFO",  # for its "listening on" line; requests log nothing else
                "PORT": "0",
                "HOST": "127.0.0.1",
                "MONGODB_URI": "memory://",
                "WECHAT_APPID": APPID,
                "WECHAT_SECRET": SECRET,
                "WECHAT_TOKEN": TOKEN,
                "WECHAT_API_BASE": wechat,
                "WECHAT_OPEN_BASE": wechat,
                "JWT_SECRET": "bench-jwt-secret-0123456789abcdef0123",
                "ALLOWED_REDIRECT_ORIGINS": APP,
                "TOKEN_UPKEEP": "0",
                **dict.fromkeys(load.RATE_LIMITS, "0"),
            },
            workdir / "service.log",
        )
        base = f"http://127.0.0.1:{service_port}"
        try:
            fault = {"kind": "slow", "delay": args.delay, "paths": list(SNS_CALLS)}
            request = urllib.request.Request(  # noqa: S310 - loopback
                f"{wechat}/_sandbox/faults",
                data=json.dumps(fault).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            urllib.request.urlopen(request, timeout=5).close()  # noqa: S310
            asyncio.run(drive(base, args.rate, 2.0))  # warm-up, not counted
            before = metric_sums(base)
            cpu_before = cpu_seconds(service.pid)
            latencies, failures = asyncio.run(drive(base, args.rate, args.duration))
            cpu = cpu_seconds(service.pid) - cpu_before
            after = metric_sums(base)
        finally:
            for proc in (service, emulator):
                proc.terminate()
                proc.wait()
    report(args, latencies, failures, before, after, cpu)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(
    args: argparse.Namespace,
    latencies: list[float],
    failures: int,
    before: dict[str, float],
    after: dict[str, float],
    cpu: float,
) -> None:
    count = after["jwt_count"] - before["jwt_count"]
    wechat = sum(after[f"wechat:{e}"] - before[f"wechat:{e}"] for e in SNS_CALLS) / count
    server_mean = (after["jwt_sum"] - before["jwt_sum"]) / count
    ms = sorted(x * 1000 for x in latencies)
    p50, p99 = statistics.median(ms), ms[int(0.99 * (len(ms) - 1))]
    print(f"sign-in latency, {load.machine_note()}")
    print(
        f"  {args.rate:g} sign-ins/s for {args.duration:g} s, WeChat {args.delay * 1000:g} ms slow "
        f"on {', '.join(SNS_CALLS)}; {len(ms)} sign-ins, {failures} failed; service CPU "
        f"{100 * cpu / args.duration:.0f}%"
    )
    print(f"  /wechat/jwt as the client saw it: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"  WeChat's calls per sign-in, as the service timed them: {wechat * 1000:.1f} ms (mean)")
    print(f"  /wechat/jwt as the service timed it: {server_mean * 1000:.1f} ms (mean)")
    print(
        f"  the service's own share: p50 minus WeChat {p50 - wechat * 1000:.1f} ms; "
        f"its mean minus WeChat {(server_mean - wechat) * 1000:.1f} ms (target: at most 5)"
    )


if __name__ == "__main__":
    main()
