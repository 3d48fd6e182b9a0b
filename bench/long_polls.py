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

`--instances 2`: the push lands on another instance. Started, each its own process: the
shared store (bench/mongo_memory.py: mongomock behind MongoDB's wire protocol, for want of a
MongoDB server), the WeChat emulator (`python -m service.sandbox`, pushing to B), and two
service instances A and B with the same settings (sandbox mode's, rate limits off, MONGODB_URI
at the shared store, WECHAT_API_BASE and WECHAT_OPEN_BASE at the emulator). Sessions are
opened and long-polled on A; each scan's push lands on B, which confirms it (user/info) and
records the change; A learns of it from the change feed (LoginWaiters.watch, every 0.5 s) and
answers its poll. Measured as above, on A; also the CPU of B, the store and the emulator, and
each delay split at the session's confirmedAt (B's part, then A's wake-up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import load
from bench.signin_latency import cpu_seconds, start

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
    """Long-polls each scene until confirmed or three polls in a row saw nothing new; the time
    each confirmed answer arrived, and what went wrong."""
    confirmed: dict[str, float] = {}
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=WAIT + 30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def follow(scene: str) -> None:
            quiet = 0
            while quiet < 3:
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
        "--settle",
        type=float,
        default=10.0,
        help="seconds for the polls to arrive first (with --idle, ending before the first poll "
        "ends: 21 s, at POLL_SPREAD 0.3)",
    )
    parser.add_argument("--idle", type=float, default=10.0, help="seconds with nothing new")
    parser.add_argument("--scans", type=int, default=1000, help="sessions scanned then")
    parser.add_argument("--scan-rate", type=float, default=50.0, help="scans a second")
    parser.add_argument(
        "--instances",
        type=int,
        choices=(1, 2),
        default=1,
        help="2: polls on instance A, WeChat's pushes landing on instance B, a shared store",
    )
    parser.add_argument(
        "--message-mode",
        choices=("plain", "safe"),
        default="plain",
        help="how WeChat's pushes are sent (the service's WECHAT_MESSAGE_MODE)",
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        spec = json.load(sys.stdin)
        print(json.dumps(asyncio.run(client(spec["base"], spec["scenes"]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.instances == 2:
            two_instances(args, Path(tmp))
            return
        server = load.Server(
            scenario("long_polls", args), argparse.Namespace(access_log=False), Path(tmp)
        )
        try:
            run(server, args)
        finally:
            server.stop()


def scenario(name: str, args: argparse.Namespace, **env: str) -> load.Scenario:
    # A sign-in session lives long enough for the run; one code per session.
    settings = {"QR_LOGIN_TTL": "600", "QRCODE_DAILY_BUDGET": "100000", **env}
    if args.message_mode != "plain":
        settings["WECHAT_MESSAGE_MODE"] = args.message_mode
    return load.Scenario(name, "service", "QR long polls", settings)


class Others:
    """Processes besides the measured instance whose CPU is reported (name: pid), and the
    whole machine's (every process, these and the load generators included)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self._machine = (0, 0)
        self._at = 0.0

    def begin(self) -> None:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._machine = machine_jiffies()
        self._at = time.monotonic()

    def shares(self) -> str:
        """Each one's CPU since begin(), as a share of a core; the machine's busy cores."""
        wall = time.monotonic() - self._at
        (busy_now, total_now), (busy_then, total_then) = machine_jiffies(), self._machine
        busy, total = busy_now - busy_then, total_now - total_then
        cores = os.cpu_count() or 1
        return (
            ", ".join(
                f"{name} {100 * (cpu_seconds(pid) - self._start[name]) / wall:.1f}%"
                for name, pid in self.pids.items()
            )
            + f"; the machine {cores * busy / max(total, 1):.2f} of {cores} cores busy"
        )


class Sampler(threading.Thread):
    """Each process's CPU time (name: pid; a group of processes summed, name: pids), read once
    a second, for CPU shares by window."""

    def __init__(self, pids: dict[str, int], groups: dict[str, list[int]] | None = None) -> None:
        super().__init__(daemon=True)
        self.groups = {name: [pid] for name, pid in pids.items()} | (groups or {})
        self.pids = list(self.groups)
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(
                (time.time(), {name: self._cpu(pids) for name, pids in self.groups.items()})
            )
            self.stop.wait(1.0)

    @staticmethod
    def _cpu(pids: list[int]) -> float:
        total = 0.0
        for pid in pids:
            with contextlib.suppress(OSError):  # a client that finished
                total += cpu_seconds(pid)
        return total

    def shares(self, start: float, end: float) -> str:
        inside = [(at, cpu) for at, cpu in self.samples if start <= at <= end]
        if len(inside) < 2:
            return ""
        (first, before), (last, after) = inside[0], inside[-1]
        return ", ".join(
            f"{name} {100 * (after[name] - before[name]) / (last - first):.0f}%"
            for name in self.pids
        )


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def run(
    server: load.Server,
    args: argparse.Namespace,
    emulator: str = "",
    others: Others | None = None,
) -> dict[str, tuple[float, float]]:
    """Sessions opened on `server`, long-polled there, scanned through `emulator`'s phone (by
    default the emulator mounted in `server`); for each scanned session confirmed, when its
    push was acknowledged and when its poll received the confirmed answer."""
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
    polls_began = time.time()
    # The load generators too: on a small machine they compete with the instances for cores.
    pollers = {"clients": [proc.pid for proc in clients]}
    sampler = Sampler({"A": server.pid, **(others.pids if others else {})}, pollers)
    if others:
        sampler.start()
    time.sleep(args.settle)  # every poll connected, read its session once, and waiting
    cpu_before, idle_start = server.cpu_seconds(), time.monotonic()
    if others:
        others.begin()
    time.sleep(args.idle)
    idle_cpu = (server.cpu_seconds() - cpu_before) / (time.monotonic() - idle_start)
    idle_others = others.shares() if others else ""
    waiting_rss = rss_mib(server.pid)
    cpu_before, scan_start = server.cpu_seconds(), time.monotonic()
    if others:
        others.begin()
    scanned_at, undelivered = asyncio.run(
        scan(emulator or f"{server.base}/sandbox", sessions[: args.scans], args.scan_rate)
    )
    scan_seconds = time.monotonic() - scan_start
    scan_cpu = (server.cpu_seconds() - cpu_before) / scan_seconds
    scan_others = others.shares() if others else ""
    results = []
    for proc in clients:
        assert proc.stdout is not None
        results.append(json.loads(proc.stdout.read()))
        proc.wait(timeout=10)
    after = rss_mib(server.pid)
    confirmed = {k: v for r in results for k, v in r["confirmed"].items()}
    errors = [e for r in results for e in r["errors"]] + undelivered
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
        f"server CPU {100 * idle_cpu:.1f}% of a core" + (f"; {idle_others}" if others else "")
    )
    print(
        f"  {len(scanned_at)} scanned: push acknowledged → confirmed answer p50 "
        f"{percentile(delays, 0.5):.0f} ms, p99 {percentile(delays, 0.99):.0f} "
        f"ms; {missing} not confirmed; errors: {len(errors)} {sorted(set(errors))[:5]}"
    )
    if others:
        print(
            f"  while scanning ({scan_seconds:.0f} s, {args.scan_rate:g} a "
            f"second): CPU of the polled instance {100 * scan_cpu:.0f}%, {scan_others}"
        )
        sampler.stop.set()
        by_time(scanned_at, confirmed, polls_began, sampler)
    # Scanned and confirmed: (push acknowledged, confirmed answer received), by scene.
    return {s: (at, confirmed[s]) for s, at in scanned_at.items() if s in confirmed}


def by_time(
    scanned_at: dict[str, float], confirmed: dict[str, float], began: float, sampler: Sampler
) -> None:
    """The delays by when the push was acknowledged, in 5 s windows from the polls' start (the
    polls that saw nothing time out together WAIT seconds after they began, and poll again),
    with each process's CPU in that window."""
    windows: dict[int, list[float]] = {}
    for scene, at in scanned_at.items():
        if scene in confirmed:
            windows.setdefault(int((at - began) // 5) * 5, []).append(
                (confirmed[scene] - at) * 1000
            )
    parts = []
    for window in sorted(windows):
        delays = sorted(windows[window])
        cpu = sampler.shares(began + window, began + window + 5)
        parts.append(
            f"    {window}-{window + 5} s: {len(delays)} pushes, p50 {percentile(delays, 0.5):.0f} "
            f"ms, p99 {percentile(delays, 0.99):.0f} ms; CPU {cpu}"
        )
    print("  by when the push was acknowledged, from the polls' start:")
    print("\n".join(parts))


def percentile(values: list[float], share: float) -> float:
    """Of sorted values; nan if none."""
    if not values:
        return float("nan")
    if share == 0.5:
        return statistics.median(values)
    return values[int(share * (len(values) - 1))]


def two_instances(args: argparse.Namespace, workdir: Path) -> None:
    """The store, the emulator, B (where WeChat pushes) and A (where the polls wait)."""
    from service.listening import bind_any_port, bound_port

    store_log = (workdir / "mongo_memory.log").open("wb")
    store = subprocess.Popen(
        [sys.executable, "-m", "bench.mongo_memory", "--host", load.HOST, "--port", "0"],
        cwd=load.ROOT,
        stdout=subprocess.PIPE,
        stderr=store_log,
    )
    processes: list[subprocess.Popen[bytes]] = [store]
    servers: list[load.Server] = []
    try:
        assert store.stdout is not None
        uri = f"mongodb://{load.HOST}:{int(store.stdout.readline())}/?serverSelectionTimeoutMS=5000"
        # B's socket is bound first: the emulator, started before B, pushes to it.
        listening = bind_any_port(load.HOST)
        message_url = f"http://{load.HOST}:{bound_port(listening)}/wechat/message"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        emulator, emulator_port = start(
            [
                sys.executable,
                "-m",
                "service.sandbox",
                "--host",
                load.HOST,
                "--port",
                "0",
                "--message-url",
                message_url,
                "--message-mode",
                args.message_mode,
            ],
            env,
            workdir / "emulator.log",
        )
        processes.append(emulator)
        wechat = f"http://{load.HOST}:{emulator_port}"
        shared = {
            "MONGODB_URI": uri,
            "MONGODB_DB": f"bench_long_polls_{os.getpid()}",
            "WECHAT_API_BASE": wechat,
            "WECHAT_OPEN_BASE": wechat,
        }
        options = argparse.Namespace(access_log=False)
        b = load.Server(
            scenario("long_polls_b", args, **shared), options, workdir, listening=listening
        )
        servers.append(b)
        listening.close()  # B holds its own copy
        a = load.Server(scenario("long_polls_a", args, **shared), options, workdir)
        servers.insert(0, a)
        print(
            f"two instances: A {a.base} (sessions opened and polled), B {b.base} (WeChat's "
            f"pushes, {args.message_mode} mode), store bench.mongo_memory (pid {store.pid}), "
            f"emulator {wechat}"
        )
        others = Others({"B": b.pid, "store": store.pid, "emulator": emulator.pid})
        times = run(a, args, emulator=wechat, others=others)
        split_at_confirmation(uri, shared["MONGODB_DB"], times)
    finally:
        for server in servers:
            server.stop()  # A drops the shared database (the store still runs)
        for proc in reversed(processes):
            proc.terminate()
            proc.wait()
        store_log.close()
    problems = (workdir / "mongo_memory.log").read_text(errors="replace").strip()
    if problems:
        print(f"  the store's log (errors it answered):\n{problems[-2000:]}")


def split_at_confirmation(uri: str, database: str, times: dict[str, tuple[float, float]]) -> None:
    """Each delay cut at the session's confirmedAt (written by B after user/info answered): B's
    part (push acknowledged → confirmed) and A's (confirmed → the poll's answer)."""
    from pymongo import MongoClient

    with MongoClient(uri, tz_aware=True) as client:
        found = client[database].qr_logins.find({"_id": {"$in": list(times)}}, {"confirmedAt": 1})
        confirmed_at = {doc["_id"]: doc["confirmedAt"].timestamp() for doc in found}
    b_part = sorted((confirmed_at[s] - times[s][0]) * 1000 for s in times if s in confirmed_at)
    a_part = sorted((times[s][1] - confirmed_at[s]) * 1000 for s in times if s in confirmed_at)
    print(
        f"  split at confirmedAt (ms clock of the store's documents): B, push acknowledged → "
        f"confirmed p50 {percentile(b_part, 0.5):.0f} ms, p99 {percentile(b_part, 0.99):.0f} ms; "
        f"A, confirmed → answered p50 {percentile(a_part, 0.5):.0f} ms, p99 "
        f"{percentile(a_part, 0.99):.0f} ms"
    )


async def scan(
    emulator: str, sessions: list[dict[str, str]], rate: float
) -> tuple[dict[str, float], list[str]]:
    """Each session scanned through the emulator's phone by a follower of its own (one person's
    events in one second are one event to the service: FromUserName + CreateTime); when its
    push was acknowledged (the emulator answers after delivering it), and the pushes that were
    not delivered."""
    done: dict[str, float] = {}
    undelivered: list[str] = []
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{emulator}/_sandbox/api/followers", json={"count": len(sessions)}
        ) as resp:
            people = iter((await resp.json())["openids"])

        async def one(session: dict[str, str], openid: str) -> None:
            async with http.post(
                f"{emulator}/_sandbox/api/scan",
                json={"openid": openid, "ticket": session["ticket"]},
            ) as resp:
                if resp.status == 200:
                    answer = await resp.json()
                    if answer.get("delivered", True):
                        done[session["scene"]] = time.time()
                    else:
                        undelivered.append(f"push not delivered: {answer.get('error')}")

        begin, tasks = time.perf_counter(), []
        for n, session in enumerate(sessions):
            delay = begin + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(session, next(people))))
        await asyncio.gather(*tasks)
    return done, undelivered


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
