"""Load benchmark: the service in sandbox mode, driven over loopback, beside a bare aiohttp app.

    python -m bench.load [--scenarios NAME ...] [--concurrency 256] [--duration 10]
                         [--warmup 2] [--repeat 3] [--generators 1] [--access-log]
                         [--long SECONDS] [--wrk] [--profile SCENARIO [--profiler py-spy|cprofile]]

Scenarios (each one operation, counted when it completes inside the measured window):

  bare       GET /hello on a minimal aiohttp app answering {"status": "ok"}: the ceiling. Same
             Python, one process, run_app with the service's AccessLogger and the same
             logging set-up and LOG_LEVEL, so the per-request access-log call costs both alike.
  healthz    GET /healthz on the service (not in the default set): the service's router and
             middleware (request id, rate limit, errors, metrics) around a trivial handler.
  authorize  GET /wechat/authorize?redirectUri=&callback=&scope=snsapi_userinfo: a state is
             written to the store; 401 with the URL is success.
  signin     the whole sign-in as one operation: authorize (401) -> the emulator's
             /sandbox/connect/oauth2/authorize?...&sandbox_openid=&sandbox_action=allow (302 with
             a code) -> GET /wechat/jwt?code=&state= (200 with a token). The service exchanges
             the code and fetches the profile from its own emulator over loopback.
  verify     GET /wechat/message?signature=&timestamp=&nonce=&echostr= (200 echoing echostr).
  push       safe-mode POST /wechat/message: a signed, encrypted text message (a new MsgId every
             time, so de-duplication never short-circuits) with MESSAGE_TEXT_REPLY set: the
             service verifies msg_signature, decrypts, parses, records the delivery, and answers
             an encrypted reply (200 with <xml><Encrypt>...).

Every run of every scenario gets a fresh server process (`SANDBOX=1 TOKEN_UPKEEP=0 python -m
service` on --host (127.0.0.1) and a port it binds itself, or the bare app), started, waited
for on /healthz, loaded for the warm-up and then the measured window, read (VmHWM, CPU time
from /proc) and stopped: so peak RSS is that run's own and the embedded store starts empty
each time. Runs are interleaved (run 1 of every scenario, then run 2, ...) and the table shows
medians.

The load comes from `--generators` separate processes (asyncio + aiohttp client), sharing
`--concurrency` keep-alive connections between them, each connection one worker looping
operations back to back. The machine has few cores and the generator shares them with the
server: the table prints the server's and the generators' CPU use, so a scenario whose server
is not near 100% of a core was limited by the generator, not the server. `--wrk` also runs
wrk (if installed) against the GET scenarios as a cross-check of the generator's ceiling.

LOG_LEVEL is WARNING by default: access lines are still produced by the logger call and
dropped by the level check, in both servers alike. `--access-log` runs both at INFO, writing
one access line per request to a log file, to show what access logging costs.

`--long SECONDS` runs each chosen scenario once for that long, sampling the server's VmRSS
every second, and prints start/end/peak RSS and the peak of each half: is memory flat under
sustained load? What the embedded store keeps is the server's memory, so for authorize set
STATE_TTL and STATE_RETENTION in the environment (they reach the server) to see it plateau.

`--profile SCENARIO` loads that scenario once with the server sampled by py-spy (in the
project's .venv or on PATH; `pip install py-spy`) or, with `--profiler cprofile`, run under
cProfile for the measured window only, and prints the top functions by own time and by
inclusive time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SANDBOX_OPENID = "oSbx01FollowerWithUnionid0A1"
REPLY_TEXT = "Thanks, received."  # MESSAGE_TEXT_REPLY for the push scenario
ORIGINAL_ID = "gh_bench0000001"
REQUEST_TIMEOUT = 30.0
# A run during which other processes used more than this share of a core is flagged noisy.
NOISY_OTHER_CPU = 25.0
RATE_LIMITS = ("RATE_LIMIT_AUTHORIZE", "RATE_LIMIT_JWT", "RATE_LIMIT_QRCODE")


@dataclass(frozen=True)
class Scenario:
    name: str
    server: str  # "bare" or "service"
    title: str
    env: dict[str, str] = field(default_factory=dict)


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("bare", "bare", "bare aiohttp GET (ceiling)"),
        Scenario("healthz", "service", "GET /healthz"),
        Scenario("authorize", "service", "GET /wechat/authorize"),
        Scenario("signin", "service", "sign-in: authorize+allow+jwt"),
        Scenario("verify", "service", "GET /wechat/message (check)"),
        Scenario(
            "push",
            "service",
            "POST /wechat/message (safe)",
            {"WECHAT_MESSAGE_MODE": "safe", "MESSAGE_TEXT_REPLY": REPLY_TEXT},
        ),
    )
}
DEFAULT_SCENARIOS = ["bare", "authorize", "signin", "verify", "push"]


# -- servers -----------------------------------------------------------------------------------


class Ports:
    """Where servers listen: --port-base and the ports after it, one per server started; without
    it, port 0: each server binds a free port itself (the service's PORT=0) and logs it, so
    nothing can take the port between choosing and binding it, beside other servers."""

    def __init__(self, base: int | None) -> None:
        self._next = base

    def take(self) -> int:
        if self._next is None:
            return 0
        port, self._next = self._next, self._next + 1
        return port


PORTS = Ports(None)
# What the service logs once it listens: its SANDBOX line names the public URL (WARNING, so it
# is written at LOG_LEVEL=WARNING too), and its "listening on" line (INFO).
LISTENING = re.compile(rb"(?:listening on \S+:|http://localhost:)(\d+)")


def bare_app(settings: Any = None) -> Any:
    """The ceiling: one tiny handler, no middleware, no store."""
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def push(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=BARE_PUSH_REPLY, headers={"Content-Type": BARE_PUSH_TYPE})

    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_get("/healthz", hello)
    # What aiohttp itself costs a push (bench.ceiling's bare-post): the body read, an answer
    # the size of the service's encrypted reply, nothing checked.
    app.router.add_post("/wechat/message", push)
    return app


# The shape and size of the service's encrypted passive reply to the push scenario's message
# (REPLY_TEXT): 428 characters of ciphertext, a signature, the timestamp and the nonce.
BARE_PUSH_REPLY = (
    b"<xml><Encrypt><![CDATA["
    + b"A" * 428
    + b"]]></Encrypt><MsgSignature><![CDATA["
    + b"0" * 40
    + b"]]></MsgSignature><TimeStamp>1700000000</TimeStamp><Nonce><![CDATA["
    + b"1" * 20
    + b"]]></Nonce></xml>"
)
BARE_PUSH_TYPE = "application/xml; charset=utf-8"


def serve_bare() -> None:
    """The service's own entry point (its logging set-up, access logger class and run_app
    arguments, whatever they are today) with create_app swapped for the bare app."""
    import service.__main__ as entry

    entry.create_app = bare_app
    sys.exit(entry.main())


def serve_on_fd(fd: int) -> None:
    """`python -m service` on a listening socket its starter bound and passed down (PORT=0's
    path, with that socket for the one the service would bind): for a server whose port must
    be known before it starts (bench.long_polls: the emulator pushes to it), with nothing
    picked, released and bound again."""
    import service.__main__ as entry

    listening = socket.socket(fileno=fd)
    entry.bind_any_port = lambda host: listening
    sys.exit(entry.main())


def serve_profiled(out: str, bare: bool = False) -> None:
    """`python -m service` (or the bare app) under cProfile, enabled by SIGUSR1 and disabled
    by SIGUSR2."""
    import cProfile

    import service.__main__ as entry

    if bare:
        entry.create_app = bare_app
    main = entry.main
    profiler = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())

    def stop(*_: Any) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR2, stop)
    sys.exit(main())


class Server:
    """One server process on a free loopback port; stderr (its log) goes to a file."""

    def __init__(
        self,
        scenario: Scenario,
        args: argparse.Namespace,
        workdir: Path,
        profile_to: str = "",
        listening: socket.socket | None = None,
    ):
        """`listening`: a socket bound already, passed to the service (its port known first)."""
        self.port = listening.getsockname()[1] if listening else PORTS.take()
        env = {
            **os.environ,
            "LOG_LEVEL": "INFO" if args.access_log else "WARNING",
            "PYTHONUNBUFFERED": "0",
        }
        # The bare app goes through the service's entry point too, so it gets the same env.
        env.update(
            SANDBOX="1",
            HOST=HOST,
            PORT="0" if listening else str(self.port),
            TOKEN_UPKEEP="0",
            # This measures the service, not its per-client-IP limiter (one client here).
            **dict.fromkeys(RATE_LIMITS, "0"),
        )
        env.update(scenario.env)  # may override the above (bench.ceiling --production)
        for name in ("WECHAT_MESSAGE_MODE", "MESSAGE_TEXT_REPLY"):
            if name not in scenario.env:
                env.pop(name, None)
        # On MongoDB each run gets a database of its own, dropped when it stops, so every run
        # starts empty as the embedded store does; servers sharing one name it (MONGODB_DB).
        uri = env.get("MONGODB_URI", "")
        self.mongodb_uri = uri if uri.startswith("mongodb") else ""  # not memory://
        self.mongodb_db = scenario.env.get(
            "MONGODB_DB", f"bench_load_{os.getpid()}_{time.monotonic_ns()}"
        )
        if self.mongodb_uri:
            env["MONGODB_DB"] = self.mongodb_db
        if profile_to:  # cProfile; py-spy attaches to whichever process runs
            cmd = [sys.executable, "-m", "bench.load", "--serve-profiled", profile_to]
            if scenario.server == "bare":
                cmd.append("--serve-bare")
        elif scenario.server == "bare":
            cmd = [sys.executable, "-m", "bench.load", "--serve-bare"]
        elif listening:
            cmd = [sys.executable, "-m", "bench.load", "--serve-on-fd", str(listening.fileno())]
        else:
            cmd = [sys.executable, "-m", "service"]
        self.log_path = workdir / f"{scenario.name}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            pass_fds=(listening.fileno(),) if listening else (),
        )
        self.pid = self.proc.pid
        self._wait_healthy()

    def _listening_port(self) -> int | None:
        """The port the server says it bound (PORT=0), once it has said it."""
        found = LISTENING.search(self.log_path.read_bytes())
        return int(found.group(1)) if found else None

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if not self.port:
                self.port = self._listening_port() or 0
                if not self.port:
                    time.sleep(0.05)
                    continue
            self.base = f"http://{HOST}:{self.port}"
            # PUBLIC_URL at its default (localhost), which sandbox mode widens to the origin
            # each request reaches it at: on another --host, that one.
            loopback = HOST in ("127.0.0.1", "0.0.0.0", "localhost")  # noqa: S104
            self.public = f"http://localhost:{self.port}" if loopback else self.base
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=1) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise SystemExit(f"the server did not become healthy; its log:\n{tail}")

    def status(self) -> dict[str, float]:
        """VmRSS and VmHWM in MiB."""
        out = {}
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0]) / 1024
        return out

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.mongodb_uri:
            from pymongo import MongoClient

            with MongoClient(self.mongodb_uri, serverSelectionTimeoutMS=5000) as client:
                client.drop_database(self.mongodb_db)
        self._log.close()


# -- the load generator (runs in its own processes) ----------------------------------------------


class Unexpected(Exception):
    """The answer was not the one this scenario expects."""


def unexpected(step: str, status: int, body: bytes = b"") -> Unexpected:
    return Unexpected(f"{step}: {status} {body[:160].decode(errors='replace')}")


def make_operation(scenario: str, base: str, public: str, index: int) -> Any:
    """An async callable(session) -> None performing one operation; raises Unexpected."""
    if scenario == "bare":

        async def bare(http: Any) -> None:
            async with http.get(f"{base}/hello") as resp:
                body = await resp.read()
                if resp.status != 200 or body != b'{"status": "ok"}':
                    raise unexpected("bare", resp.status, body)

        return bare

    if scenario == "healthz":

        async def healthz(http: Any) -> None:
            async with http.get(f"{base}/healthz") as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise unexpected("healthz", resp.status, body)

        return healthz

    authorize_url = f"{base}/wechat/authorize?" + urlencode(
        {
            "redirectUri": f"{public}/demo/landing",
            "callback": f"{public}/wechat/callback",
            "scope": "snsapi_userinfo",
        }
    )

    async def authorize_once(http: Any) -> str:
        async with http.get(authorize_url) as resp:
            body = await resp.read()
            if resp.status != 401:
                raise unexpected("authorize", resp.status, body)
        url = json.loads(body)["details"]["fieldValue"]
        if "&state=" not in url:
            raise Unexpected("no state in the authorization URL")
        return url

    if scenario == "authorize":

        async def authorize(http: Any) -> None:
            await authorize_once(http)

        return authorize

    if scenario == "signin":

        async def signin(http: Any) -> None:
            url = await authorize_once(http)
            # The service's open base is PUBLIC_URL/sandbox (localhost); talk to 127.0.0.1.
            parts = urlsplit(url)
            emulator = (
                f"{base}{parts.path}?{parts.query}"
                f"&sandbox_openid={SANDBOX_OPENID}&sandbox_action=allow"
            )
            async with http.get(emulator, allow_redirects=False) as resp:
                body = await resp.read()
                location = resp.headers.get("Location", "")
                if resp.status != 302 or "code=" not in location:
                    raise unexpected("emulator", resp.status, body)
            params = parse_qs(urlsplit(location).query)
            query = {"code": params["code"][0], "state": params["state"][0]}
            async with http.get(f"{base}/wechat/jwt", params=query) as resp:
                body = await resp.read()
                if resp.status != 200 or b'"token"' not in body:
                    raise unexpected("jwt", resp.status, body)

        return signin

    from service.config import SANDBOX_DEFAULTS
    from service.wechat.signature import wechat_signature

    token = SANDBOX_DEFAULTS["wechat_token"]
    timestamp = str(int(time.time()))
    nonce = f"bench{index}"

    if scenario == "verify":
        echostr = f"echo{index}x{os.getpid()}"
        verify_url = f"{base}/wechat/message?" + urlencode(
            {
                "signature": wechat_signature(token, timestamp, nonce),
                "timestamp": timestamp,
                "nonce": nonce,
                "echostr": echostr,
            }
        )
        expected = echostr.encode()

        async def verify(http: Any) -> None:
            async with http.get(verify_url) as resp:
                body = await resp.read()
                if resp.status != 200 or body != expected:
                    raise unexpected("verify", resp.status, body)

        return verify

    if scenario == "push":
        from service.wechat.crypto import MessageCrypto
        from service.wechat.xml import build_message

        crypto = MessageCrypto(
            token, SANDBOX_DEFAULTS["wechat_aes_key"], SANDBOX_DEFAULTS["wechat_appid"]
        )
        # MsgIds unique across generator processes (and large, as WeChat's are).
        msg_ids = iter(range(index * 10**12 + 10**15, (index + 1) * 10**12 + 10**15))
        headers = {"Content-Type": "text/xml"}

        async def push(http: Any) -> None:
            # A fresh (timestamp, nonce) per push: the service refuses stale and reused ones.
            msg_id = next(msg_ids)
            timestamp, nonce = str(int(time.time())), str(msg_id)
            inner = build_message(
                {
                    "ToUserName": ORIGINAL_ID,
                    "FromUserName": SANDBOX_OPENID,
                    "CreateTime": int(time.time()),
                    "MsgType": "text",
                    "Content": "hello from the load benchmark",
                    "MsgId": msg_id,
                }
            )
            encrypted = crypto.encrypt(inner)
            body = build_message({"ToUserName": ORIGINAL_ID, "Encrypt": encrypted})
            params = {
                "signature": wechat_signature(token, timestamp, nonce),
                "timestamp": timestamp,
                "nonce": nonce,
                "openid": SANDBOX_OPENID,
                "encrypt_type": "aes",
                "msg_signature": crypto.signature(timestamp, nonce, encrypted),
            }
            async with http.post(
                f"{base}/wechat/message", params=params, data=body, headers=headers
            ) as resp:
                reply = await resp.read()
                if resp.status != 200 or not reply.startswith(b"<xml><Encrypt>"):
                    raise unexpected("push", resp.status, reply)

        return push

    raise SystemExit(f"unknown scenario {scenario!r}")


async def generate(spec: dict[str, Any]) -> dict[str, Any]:
    """Open `connections` workers, wait for the common start, loop operations until the end."""
    import aiohttp

    op = make_operation(spec["scenario"], spec["base"], spec["public"], spec["index"])
    loop = asyncio.get_running_loop()
    # The parent gives wall-clock instants (shared by every generator); work in loop time.
    offset = time.time() - loop.time()
    start, measure_from, end = (spec[k] - offset for k in ("start", "measure_from", "end"))
    latencies: list[float] = []
    timeline = [0] * (int(spec["end"] - spec["measure_from"]) + 1)
    errors = {"unexpected": 0, "connection": 0}
    samples: dict[str, str] = {}

    async def worker(http: aiohttp.ClientSession) -> None:
        while (now := loop.time()) < end:
            started = time.perf_counter()
            kind = None
            try:
                await op(http)
            except Unexpected as exc:
                kind, detail = "unexpected", str(exc)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                kind, detail = "connection", f"{type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - started
            now = loop.time()
            if now < measure_from or now > end:
                if kind == "connection":
                    await asyncio.sleep(0.01)
                continue
            if kind:
                errors[kind] += 1
                samples.setdefault(kind, detail[:200])
                if kind == "connection":
                    await asyncio.sleep(0.01)
                continue
            latencies.append(elapsed)
            timeline[int(now - measure_from)] += 1

    connector = aiohttp.TCPConnector(
        limit=spec["connections"], limit_per_host=0, ttl_dns_cache=None
    )
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await asyncio.sleep(max(0.0, start - loop.time()))
        tasks = [asyncio.create_task(worker(http)) for _ in range(spec["connections"])]
        await asyncio.sleep(max(0.0, measure_from - loop.time()))
        cpu_before = time.process_time()
        await asyncio.gather(*tasks)
        cpu = time.process_time() - cpu_before
    return {
        "latencies": latencies,
        "timeline": timeline,
        "errors": errors,
        "samples": samples,
        "cpu": cpu,
    }


def run_generators(
    scenario: str, server: Server, connections: int, generators: int, warmup: float, duration: float
) -> tuple[dict[str, Any], float, float, float]:
    """Start the generators, time the window; (merged result, t_measure, t_end, server CPU s)."""
    now = time.time()
    start = now + 1.0  # time for the generators to import and connect
    measure_from = start + warmup
    end = measure_from + duration
    procs = []
    for index in range(generators):
        share = connections // generators + (1 if index < connections % generators else 0)
        spec = {
            "scenario": scenario,
            "base": server.base,
            "public": server.public,
            "index": index,
            "connections": share,
            "start": start,
            "measure_from": measure_from,
            "end": end,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.load", "--generate"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        proc.stdin.write(json.dumps(spec))
        proc.stdin.close()
        procs.append(proc)
    time.sleep(max(0.0, measure_from - time.time()))
    cpu_before, busy_before = server.cpu_seconds(), machine_busy_seconds()
    time.sleep(max(0.0, end - time.time()))
    server_cpu = server.cpu_seconds() - cpu_before
    busy = machine_busy_seconds() - busy_before
    merged: dict[str, Any] = {
        "latencies": [],
        "timeline": None,
        "errors": {"unexpected": 0, "connection": 0},
        "samples": {},
        "cpu": 0.0,
    }
    for proc in procs:
        out = proc.stdout.read()
        if proc.wait() != 0:
            raise SystemExit(f"a load generator failed (exit {proc.returncode})")
        result = json.loads(out)
        merged["latencies"] += result["latencies"]
        merged["timeline"] = (
            result["timeline"]
            if merged["timeline"] is None
            else [a + b for a, b in zip(merged["timeline"], result["timeline"], strict=True)]
        )
        for kind in merged["errors"]:
            merged["errors"][kind] += result["errors"][kind]
        merged["samples"].update(result["samples"])
        merged["cpu"] += result["cpu"]
    # What else ran meanwhile (other people's work on a shared machine, this script, the OS).
    merged["other_cpu"] = max(0.0, busy - server_cpu - merged["cpu"])
    return merged, measure_from, end, server_cpu


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def measure(scenario: Scenario, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    server = Server(scenario, args, workdir)
    try:
        result, _, _, server_cpu = run_generators(
            scenario.name, server, args.concurrency, args.generators, args.warmup, args.duration
        )
        memory = server.status()
    finally:
        server.stop()
    latencies = sorted(result["latencies"])
    timeline = result["timeline"][: int(args.duration)]
    head = statistics.mean(timeline[:2]) if timeline else 0
    tail = statistics.mean(timeline[-2:]) if timeline else 0
    return {
        "ops": len(latencies) / args.duration,
        "p50": percentile(latencies, 0.50) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
        "unexpected": result["errors"]["unexpected"],
        "connection": result["errors"]["connection"],
        "samples": result["samples"],
        "hwm": memory["VmHWM"],
        "rss": memory["VmRSS"],
        "server_cpu": 100 * server_cpu / args.duration,
        "gen_cpu": 100 * result["cpu"] / args.duration,
        "other_cpu": 100 * result["other_cpu"] / args.duration,
        "trend": tail / head if head else float("nan"),
    }


# -- wrk cross-check ------------------------------------------------------------------------------


def wrk_url(scenario: str, server: Server) -> str | None:
    from service.config import SANDBOX_DEFAULTS
    from service.wechat.signature import wechat_signature

    if scenario == "bare":
        return f"{server.base}/hello"
    if scenario == "healthz":
        return f"{server.base}/healthz"
    if scenario == "authorize":
        return f"{server.base}/wechat/authorize?" + urlencode(
            {
                "redirectUri": f"{server.public}/demo/landing",
                "callback": f"{server.public}/wechat/callback",
                "scope": "snsapi_userinfo",
            }
        )
    if scenario == "verify":
        token, ts, nonce = SANDBOX_DEFAULTS["wechat_token"], str(int(time.time())), "wrk"
        return f"{server.base}/wechat/message?" + urlencode(
            {
                "signature": wechat_signature(token, ts, nonce),
                "timestamp": ts,
                "nonce": nonce,
                "echostr": "wrk",
            }
        )
    return None


def run_wrk(scenario: Scenario, args: argparse.Namespace, workdir: Path) -> dict[str, Any] | None:
    wrk = shutil.which("wrk")
    server = Server(scenario, args, workdir)
    try:
        url = wrk_url(scenario.name, server)
        if url is None or wrk is None:
            return None
        subprocess.run(
            [wrk, "-t1", f"-c{args.concurrency}", f"-d{max(1, int(args.warmup))}s", url],
            check=True,
            capture_output=True,
        )
        cpu_before = server.cpu_seconds()
        out = subprocess.run(
            [wrk, "-t1", f"-c{args.concurrency}", f"-d{int(args.duration)}s", "--latency", url],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        server_cpu = server.cpu_seconds() - cpu_before
        memory = server.status()
    finally:
        server.stop()

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    latency = dict(re.findall(r"^\s+(50|99)\.000%\s+(\S+)", out, re.M))
    latency = latency or dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "ops": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": ms(latency["50"]),
        "p99": ms(latency["99"]),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "requests": requests,
        "socket_errors": sum(map(int, socket_errors.groups())) if socket_errors else 0,
        "hwm": memory["VmHWM"],
        "server_cpu": 100 * server_cpu / args.duration,
    }


# -- long run: is memory flat? ---------------------------------------------------------------------


def long_run(scenario: Scenario, args: argparse.Namespace, workdir: Path) -> None:
    server = Server(scenario, args, workdir)
    samples: list[tuple[float, float]] = []
    try:
        import threading

        box: dict[str, Any] = {}

        def load() -> None:
            box["result"] = run_generators(
                scenario.name, server, args.concurrency, args.generators, args.warmup, args.long
            )

        thread = threading.Thread(target=load)
        began = time.time()
        thread.start()
        while thread.is_alive():
            samples.append((time.time() - began, server.status()["VmRSS"]))
            thread.join(1.0)
        result, measure_from, end, _ = box["result"]
        memory = server.status()
    finally:
        server.stop()
    offset = measure_from - began
    window = [(t - offset, rss) for t, rss in samples if offset <= t <= end - began]
    ops = len(result["latencies"])
    start_rss, end_rss = window[0][1], window[-1][1]
    errors = result["errors"]
    timeline = result["timeline"][: int(args.long)]
    tenth = max(1, len(timeline) // 10)
    first, last = statistics.mean(timeline[:tenth]), statistics.mean(timeline[-tenth:])
    print(
        f"  {scenario.name:<10} {ops / args.long:>8.0f} ops/s (first {tenth} s {first:.0f}, "
        f"last {tenth} s {last:.0f})  RSS start {start_rss:6.1f} MiB  "
        f"end {end_rss:6.1f} MiB  peak {memory['VmHWM']:6.1f} MiB  "
        f"growth {end_rss - start_rss:+6.1f} MiB "
        f"({1024 * (end_rss - start_rss) / max(ops, 1) * 1000:.2f} KiB per 1,000 ops)  "
        f"errors {errors['unexpected']}/{errors['connection']}"
        + (f"  e.g. {result['samples']}" if result["samples"] else "")
    )
    step = max(1, len(window) // 12)
    print(
        "             RSS every "
        f"{step} s: " + " ".join(f"{rss:.0f}" for _, rss in window[::step]) + f" {end_rss:.0f}"
    )
    # Flat means the second half never needs more than the first did: a store that keeps
    # things for a while grows, then plateaus once it removes as much as it adds.
    half = len(window) // 2
    first_peak = max(rss for _, rss in window[:half])
    second_peak = max(rss for _, rss in window[half:])
    print(
        f"             peak RSS first half {first_peak:.0f} MiB, second half {second_peak:.0f} "
        f"MiB ({second_peak / first_peak:.2f}x)"
    )


# -- profiling ------------------------------------------------------------------------------


def find_py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def profile(scenario: Scenario, args: argparse.Namespace, workdir: Path) -> None:
    py_spy = find_py_spy() if args.profiler == "py-spy" else None
    if args.profiler == "py-spy" and py_spy is None:
        print("py-spy is not installed (pip install py-spy); using cProfile")
    stats_file = str(workdir / "profile.pstats")
    server = Server(scenario, args, workdir, "" if py_spy else stats_file)
    raw = workdir / "profile.txt"
    try:
        spy: dict[str, subprocess.Popen] = {}
        if py_spy:
            # Sample the server for the measured window only (after the 1 s start + warm-up).
            # --nonblocking: never pause the server (pausing it slows it down and skews the
            # shares); --idle: keep the samples spent waiting in epoll, shown as such.
            command = [
                py_spy, "record", "--pid", str(server.pid), "--format", "raw", "--rate", "250",
                "--duration", str(int(args.duration)), "--output", str(raw),
                "--nonblocking", "--idle",
            ]  # fmt: skip

            def start_spy() -> None:
                spy["proc"] = subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
                )

            threading_timer(1.0 + args.warmup, start_spy)
        else:
            threading_timer(1.0 + args.warmup, lambda: server.signal(signal.SIGUSR1))
            threading_timer(
                1.0 + args.warmup + args.duration, lambda: server.signal(signal.SIGUSR2)
            )
        result, _, _, server_cpu = run_generators(
            scenario.name, server, args.concurrency, args.generators, args.warmup, args.duration
        )
        if spy:
            _, err = spy["proc"].communicate(timeout=60)
            if spy["proc"].returncode != 0:
                raise SystemExit(f"py-spy failed: {err.strip()}")
        else:
            time.sleep(1.0)
    finally:
        server.stop()
    ops = len(result["latencies"]) / args.duration
    print(
        f"profile of {scenario.name} ({scenario.title}) under {args.concurrency} connections, "
        f"{args.duration:.0f} s: {ops:.0f} ops/s while profiled, server CPU "
        f"{100 * server_cpu / args.duration:.0f}%, errors {result['errors']} {result['samples']}"
    )
    if py_spy:
        summarize_py_spy(raw, args.top)
    else:
        summarize_cprofile(stats_file, args.top, len(result["latencies"]))


def threading_timer(delay: float, fn: Any) -> None:
    import threading

    timer = threading.Timer(delay, fn)
    timer.daemon = True
    timer.start()


def short_frame(frame: str) -> str:
    """'name (path/to/file.py:123)' -> 'name (file.py)', paths shortened to the package."""
    match = re.fullmatch(r"(.*) \((.*?)(?::\d+)?\)", frame)
    if not match:
        return frame
    name, path = match.groups()
    for marker in ("site-packages/", "lib/python3.11/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


AREAS = (
    ("service/", "service"),
    ("mongomock", "embedded store (mongomock, mongomock_motor)"),
    ("bson/", "embedded store (mongomock, mongomock_motor)"),
    ("aiohttp/", "aiohttp"),
    ("yarl/", "aiohttp"),
    ("multidict/", "aiohttp"),
    ("asyncio/", "asyncio + selectors"),
    ("selectors.py", "asyncio + selectors"),
    ("prometheus_client/", "prometheus_client"),
    ("jwt/", "PyJWT"),
    ("cryptography/", "cryptography"),
)


def area_of(frame: str) -> str:
    path = frame.rpartition(" (")[2]
    for prefix, name in AREAS:
        if path.startswith(prefix):
            return name
    return "stdlib and other"


def summarize_py_spy(raw: Path, top: int) -> None:
    """Own and inclusive shares of the samples in which the server was not waiting in epoll."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        # The first frames name the process and thread; keep the code frames.
        frames = [short_frame(f) for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        if frames[-1].startswith("EpollSelector.select ("):
            idle += count
            continue
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    print(
        f"  {total + idle} samples, {100 * idle / max(total + idle, 1):.0f}% waiting in epoll; "
        f"shares below are of the other {total} (the server's busy time)"
    )
    areas: dict[str, int] = {}
    for frame, count in own.items():
        areas[area_of(frame)] = areas.get(area_of(frame), 0) + count
    print(
        "  own time by area: "
        + ", ".join(
            f"{name} {100 * count / total:.0f}%"
            for name, count in sorted(areas.items(), key=lambda kv: -kv[1])
        )
    )
    print("  by own time:")
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {100 * count / total:5.1f}%  {frame}")
    print("  by inclusive time:")
    # Leave out the frames every sample has (the interpreter, the loop, run_app, main).
    plumbing = ("<frozen runpy>", "asyncio/base_events.py", "asyncio/events.py", "aiohttp/web.py",
                "service/__main__.py", "bench/load.py")  # fmt: skip
    interesting = [
        (frame, count)
        for frame, count in inclusive.items()
        if not frame.endswith(tuple(f"({name})" for name in plumbing))
    ]
    for frame, count in sorted(interesting, key=lambda kv: -kv[1])[: top * 2]:
        print(f"    {100 * count / total:5.1f}%  {frame}")


def summarize_cprofile(stats_file: str, top: int, operations: int) -> None:
    import io
    import pstats

    buffer = io.StringIO()
    stats = pstats.Stats(stats_file, stream=buffer).strip_dirs()
    if operations:
        # The profiled window and the counted one are the same seconds, give or take the
        # signal's delivery: a few operations either way.
        print(f"  about {stats.total_calls / operations:.0f} Python function calls per operation")
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top * 2)
    # Call counts do not drift with the machine's speed: divided by the operations they are
    # the one figure of a profile that compares across runs and commits.
    stats.sort_stats("ncalls").print_stats(top)
    print(buffer.getvalue())


# -- main -----------------------------------------------------------------------------------


def machine_note() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    import aiohttp

    return (
        f"{date.today()}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"aiohttp {aiohttp.__version__}"
    )


def start_mongo_stub() -> subprocess.Popen[bytes]:
    """bench/mongo_stub.py on --host, and MONGODB_URI pointing the servers started next at it."""
    stub = subprocess.Popen(
        [sys.executable, "-m", "bench.mongo_stub", "--host", HOST, "--port", str(PORTS.take())],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert stub.stdout is not None
    # The stub prints the port it bound (0: any free one) before it serves.
    stub_port = int(stub.stdout.readline())
    os.environ["MONGODB_URI"] = f"mongodb://{HOST}:{stub_port}/?serverSelectionTimeoutMS=5000"
    return stub


def choose_address(host: str, port_base: int | None) -> None:
    """The servers' address and ports, chosen once for the whole run."""
    global HOST, PORTS
    HOST, PORTS = host, Ports(port_base)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenarios", nargs="+", choices=list(SCENARIOS), default=DEFAULT_SCENARIOS
    )
    parser.add_argument("--concurrency", type=int, default=256, help="connections (default 256)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the servers' address, the generators' target (127.0.0.1)",
    )
    parser.add_argument(
        "--port-base",
        type=int,
        help="the first server's port, the next ones after it (default: each binds a free one)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario (median)")
    parser.add_argument(
        "--generators", type=int, default=1, help="load generator processes (default 1)"
    )
    parser.add_argument(
        "--access-log", action="store_true", help="LOG_LEVEL=INFO: write access lines to a file"
    )
    parser.add_argument("--long", type=float, help="one run of SECONDS per scenario, RSS sampled")
    parser.add_argument("--wrk", action="store_true", help="cross-check GET scenarios with wrk")
    parser.add_argument("--profile", choices=list(SCENARIOS), help="profile this scenario's server")
    parser.add_argument("--profiler", choices=["py-spy", "cprofile"], default="py-spy")
    parser.add_argument("--top", type=int, default=15, help="rows of the profile")
    parser.add_argument(
        "--mongo-stub",
        action="store_true",
        help="the service on pymongo against bench/mongo_stub.py (acknowledges, stores nothing)",
    )
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-profiled", help=argparse.SUPPRESS)
    parser.add_argument("--serve-on-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve_profiled:
        serve_profiled(args.serve_profiled, bare=args.serve_bare)
        return
    if args.serve_bare:
        serve_bare()
        return
    if args.serve_on_fd is not None:
        serve_on_fd(args.serve_on_fd)
        return
    if args.generate:
        print(json.dumps(asyncio.run(generate(json.load(sys.stdin)))))
        return
    choose_address(args.host, args.port_base)

    scenarios = [SCENARIOS[name] for name in args.scenarios]
    logging_note = (
        "LOG_LEVEL=INFO, one access line per request written to a file"
        if args.access_log
        else "LOG_LEVEL=WARNING (the access logger is called, its line dropped)"
    )
    print(f"load benchmark, {machine_note()}")
    print(
        f"  {args.concurrency} connections from {args.generators} generator process(es), "
        f"{args.warmup:g} s warm-up + {args.long or args.duration:g} s measured, {logging_note}"
    )
    stub = None
    if args.mongo_stub:
        if args.profile == "signin":
            raise SystemExit("signin reads back the state it wrote: not with --mongo-stub")
        if "signin" in args.scenarios:
            print("  signin left out: it reads back the state it wrote, which the stub forgets")
            scenarios = [s for s in scenarios if s.name != "signin"]
        stub = start_mongo_stub()
        store = "MongoDB wire stub (bench/mongo_stub.py: pymongo's path, no database work)"
    elif os.environ.get("MONGODB_URI"):
        store = "MongoDB at MONGODB_URI (a database per run, dropped after it)"
    else:
        store = "embedded (mongomock)"
    print(f"  store: {store}")
    try:
        run_all(args, scenarios)
    finally:
        if stub is not None:
            stub.terminate()
            stub.wait()


def run_all(args: argparse.Namespace, scenarios: list[Scenario]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        workdir = Path(tmp)
        if args.profile:
            profile(SCENARIOS[args.profile], args, workdir)
            return
        if args.long:
            print(f"long run: {args.long:g} s per scenario, server VmRSS sampled every second")
            for scenario in scenarios:
                long_run(scenario, args, workdir)
            return

        results: dict[str, list[dict[str, Any]]] = {s.name: [] for s in scenarios}
        # Interleaved, so a noisy moment on a shared machine hits every scenario alike.
        for run in range(args.repeat):
            for scenario in scenarios:
                r = measure(scenario, args, workdir)
                results[scenario.name].append(r)
                print(
                    f"  run {run + 1}/{args.repeat} {scenario.name:<10} {r['ops']:8.0f} ops/s  "
                    f"p50 {r['p50']:7.1f} ms  p99 {r['p99']:7.1f} ms  "
                    f"errors {r['unexpected']}/{r['connection']}  peak RSS {r['hwm']:6.1f} MiB  "
                    f"CPU server {r['server_cpu']:3.0f}% generator {r['gen_cpu']:3.0f}% "
                    f"other {r['other_cpu']:3.0f}%"
                    + ("  NOISY" if r["other_cpu"] > NOISY_OTHER_CPU else "")
                    + (f"  e.g. {r['samples']}" if r["samples"] else ""),
                    flush=True,
                )
        wrk_results = {}
        if args.wrk:
            if shutil.which("wrk") is None:
                print("  wrk is not installed (apt-get install wrk): no cross-check")
            else:
                for scenario in scenarios:
                    w = run_wrk(scenario, args, workdir)
                    if w:
                        wrk_results[scenario.name] = w

    medians = {
        name: {
            key: statistics.median(r[key] for r in runs)
            for key in ("ops", "p50", "p99", "hwm", "server_cpu", "gen_cpu", "other_cpu", "trend")
        }
        for name, runs in results.items()
    }
    for name, runs in results.items():
        medians[name]["unexpected"] = sum(r["unexpected"] for r in runs)
        medians[name]["connection"] = sum(r["connection"] for r in runs)
        medians[name]["noisy"] = sum(r["other_cpu"] > NOISY_OTHER_CPU for r in runs)
    ceiling = medians.get("bare", {}).get("ops")
    print()
    print(
        f"median of {args.repeat} runs; errors are totals over the runs "
        "(non-expected status / connection); trend = ops/s of the last 2 s over the first 2 s;\n"
        f"other = CPU used by other processes meanwhile (noisy: runs above {NOISY_OTHER_CPU:g}%)"
    )
    print(
        f"{'scenario':<30} {'ops/s':>8} {'vs bare':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>9} {'peak RSS MiB':>13} {'srv CPU':>8} {'gen CPU':>8} {'other':>6} "
        f"{'trend':>6} {'noisy':>6}"
    )
    for scenario in scenarios:
        m = medians[scenario.name]
        ratio = f"{m['ops'] / ceiling:.2f}" if ceiling else "-"
        print(
            f"{scenario.title:<30} {m['ops']:>8.0f} {ratio:>8} {m['p50']:>8.1f} {m['p99']:>8.1f} "
            f"{m['unexpected']:>4}/{m['connection']:<4} {m['hwm']:>13.1f} "
            f"{m['server_cpu']:>7.0f}% {m['gen_cpu']:>7.0f}% {m['other_cpu']:>5.0f}% "
            f"{m['trend']:>6.2f} {m['noisy']:>4}/{args.repeat}"
        )
    bare = medians.get("bare")
    if bare and bare["gen_cpu"] > 90 and bare["server_cpu"] < 95:
        print(
            f"NOTE: on bare the generator used {bare['gen_cpu']:.0f}% of a core and the server "
            f"{bare['server_cpu']:.0f}%: the ceiling measured is the generator's, not the "
            "server's (see --wrk). Scenarios whose server is near 100% are not affected."
        )
    if wrk_results:
        print()
        wrk_bare = wrk_results.get("bare", {}).get("ops")
        print(
            "wrk cross-check (one wrk thread, same connections and duration, one run; vs gen = "
            "wrk over the generator's median, vs bare = over wrk's bare ceiling; wrk counts the "
            "expected 401s of authorize as non-2xx):"
        )
        print(
            f"{'scenario':<30} {'req/s':>8} {'vs gen':>7} {'vs bare':>8} {'p50 ms':>8} "
            f"{'p99 ms':>8} {'non-2xx':>8} {'sock err':>8} {'peak RSS MiB':>13} {'srv CPU':>8}"
        )
        for name, w in wrk_results.items():
            print(
                f"{SCENARIOS[name].title:<30} {w['ops']:>8.0f} "
                f"{w['ops'] / medians[name]['ops']:>7.2f} "
                + (f"{w['ops'] / wrk_bare:>8.2f} " if wrk_bare else f"{'-':>8} ")
                + f"{w['p50']:>8.1f} {w['p99']:>8.1f} "
                f"{w['non2xx']:>8} {w['socket_errors']:>8} {w['hwm']:>13.1f} "
                f"{w['server_cpu']:>7.0f}%"
            )


if __name__ == "__main__":
    main()
