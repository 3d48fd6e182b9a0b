"""The service against the framework's ceiling, measured with wrk (issue 15).

`python -m bench.ceiling` starts the bare aiohttp app (through the service's own entry point:
the same event loop, server settings and access logger) and one service process per scenario,
then runs wrk (one thread: the server gets the other core) against each in turn, round after
round, the order rotated each round so a noisy moment of this shared machine does not always
hit the same one. Each round's ratio is the scenario's requests per second over the bare app's
in that round; the figure reported is the median of the rounds' ratios. A last run at
--errors-at connections counts every answer by status (a wrk Lua hook), so "zero errors" means
no socket error, no timeout and nothing but the scenario's expected status.

Scenarios: authorize (GET /wechat/authorize: 401 with WeChat's URL), login (GET /wechat/login:
302 to WeChat with the binding cookie), healthz (the service's router and middleware around a
trivial handler), push (safe-mode POST /wechat/message: a text message decrypted, de-duplicated
and answered with an encrypted passive reply; every push unique, built before each run), and
bare-post (the same pushes sent to the bare app, which reads each body and answers a reply of
the same size without checking anything: what aiohttp alone costs a push, the bound on push).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench import load

EXPECTED = {
    "bare": 200,
    "healthz": 200,
    "authorize": 401,
    "login": 302,
    "push": 200,
    "bare-post": 200,
}
# Scenarios whose requests are the push script's.
PUSHES = ("push", "bare-post")
# Each wrk run of `push` gets this many times the unique pushes the service answered a second in
# the warm-up, per second of its duration (a push repeated would be a replay: 403).
PUSH_MARGIN = 1.6
# --production: the service as deployed, not in sandbox mode: no emulator mounted, no following
# of each request's origin, PUBLIC_URL an https origin behind a TLS proxy (so HSTS and the
# __Host- cookie), WeChat never called (authorize and pushes need no call; TOKEN_UPKEEP=0).
# Made-up values for this benchmark only, none of them a secret.
PRODUCTION_APP = "https://app.example.test"
PRODUCTION = {
    "SANDBOX": "0",
    "PUBLIC_URL": "https://auth.example.test",
    "ALLOWED_REDIRECT_ORIGINS": PRODUCTION_APP,
    "WECHAT_APPID": "wxbe0c4be0c4be0c4b",
    "WECHAT_SECRET": "bench0secret0bench0secret0bench0",
    "WECHAT_TOKEN": "benchtoken",
    "WECHAT_AES_KEY": "QmVuY2hCZW5jaEJlbmNoQmVuY2hCZW5jaEJlbmNoQmU",
    "JWT_SECRET": "bench-jwt-secret-bench-jwt-secret-bench",
}
# load.py's scenario whose server (and settings) a scenario here runs on.
SERVER_OF = {"login": "authorize", "bare-post": "bare"}
# wrk's Lua hooks: count the statuses (one table per thread, summed in done()).
STATUS_SCRIPT = """
local counts = {}
response = function(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
done = function(summary, latency, requests)
  for status, n in pairs(counts) do io.write(string.format("status %d %d\\n", status, n)) end
end
"""


def url_of(scenario: str, server: load.Server, production: bool = False) -> str:
    if scenario in PUSHES:
        return f"{server.base}/wechat/message"
    app = PRODUCTION_APP if production else server.public
    if scenario == "login":
        landing = f"{app}/landing" if production else f"{app}/demo/landing"
        return f"{server.base}/wechat/login?" + urlencode(
            {"redirectUri": landing, "scope": "snsapi_base"}
        )
    if scenario == "authorize" and production:
        return f"{server.base}/wechat/authorize?" + urlencode(
            {
                "redirectUri": f"{app}/landing",
                "callback": f"{app}/callback",
                "scope": "snsapi_userinfo",
            }
        )
    url = load.wrk_url(scenario, server)
    assert url is not None, scenario
    return url


def push_script(workdir: Path, count: int, count_statuses: bool, production: bool = False) -> Path:
    """A wrk script sending `count` safe-mode pushes as WeChat does (a text message encrypted
    with the sandbox's EncodingAESKey, signed, each with its own MsgId, timestamp and nonce, so
    neither de-duplication nor replay protection short-circuits one), made now so their
    timestamps are fresh."""
    from service.config import SANDBOX_DEFAULTS
    from service.wechat.crypto import MessageCrypto
    from service.wechat.signature import wechat_signature
    from service.wechat.xml import build_message

    if production:
        token, aes_key, appid = (
            PRODUCTION["WECHAT_TOKEN"],
            PRODUCTION["WECHAT_AES_KEY"],
            PRODUCTION["WECHAT_APPID"],
        )
    else:
        token = SANDBOX_DEFAULTS["wechat_token"]
        aes_key, appid = SANDBOX_DEFAULTS["wechat_aes_key"], SANDBOX_DEFAULTS["wechat_appid"]
    crypto = MessageCrypto(token, aes_key, appid)
    now = int(time.time())
    base_id = 10**15 + now * 10**5
    lines = ["local pushes = {"]
    for index in range(count):
        msg_id = base_id + index
        timestamp, nonce = str(now), str(msg_id)
        inner = build_message(
            {
                "ToUserName": load.ORIGINAL_ID,
                "FromUserName": load.SANDBOX_OPENID,
                "CreateTime": now,
                "MsgType": "text",
                "Content": "hello from the ceiling benchmark",
                "MsgId": msg_id,
            }
        )
        encrypted = crypto.encrypt(inner)
        body = build_message({"ToUserName": load.ORIGINAL_ID, "Encrypt": encrypted})
        query = urlencode(
            {
                "signature": wechat_signature(token, timestamp, nonce),
                "timestamp": timestamp,
                "nonce": nonce,
                "openid": load.SANDBOX_OPENID,
                "encrypt_type": "aes",
                "msg_signature": crypto.signature(timestamp, nonce, encrypted),
            }
        )
        lines.append(f"  {{{json.dumps('/wechat/message?' + query)}, {json.dumps(body)}}},")
    lines.append("}")
    lines.append(
        """
local next_push = 0
local headers = {["Content-Type"] = "text/xml"}
request = function()
  next_push = next_push + 1
  local push = pushes[(next_push - 1) % #pushes + 1]
  return wrk.format("POST", push[1], headers, push[2])
end
"""
    )
    if count_statuses:
        lines.append(STATUS_SCRIPT)
    path = workdir / f"push-{time.monotonic_ns()}.lua"
    path.write_text("\n".join(lines))
    return path


def wrk(url: str, connections: int, seconds: int, script: Path | None = None) -> dict[str, Any]:
    command = [shutil.which("wrk") or "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    command += ["--latency", "--timeout", "10s"]
    if script is not None:
        command += ["-s", str(script)]
    out = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout

    def ms(text: str) -> float:
        match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
        assert match, text
        value, unit = match.groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rate, out
    return {
        "rps": float(rate.group(1)),
        "p50": ms(latency["50"]),
        "p99": ms(latency["99"]),
        "socket_errors": sum(map(int, socket_errors.groups())) if socket_errors else 0,
        "statuses": {int(s): int(n) for s, n in re.findall(r"^status (\d+) (\d+)$", out, re.M)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["authorize", "login"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--errors-at", type=int, default=256, help="connections of the last run")
    parser.add_argument("--mongo-stub", action="store_true", help="pymongo's path (wire stub)")
    parser.add_argument(
        "--plot",
        metavar="PNG",
        help="also sweep the connections (1 to 256) for bare and the first scenario, and plot "
        "requests a second and p99 latency against them to this file",
    )
    parser.add_argument(
        "--production",
        action="store_true",
        help="the service (and the bare app) configured as deployed, not in sandbox mode",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port-base", type=int)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    load.choose_address(args.host, args.port_base)
    if args.production and args.port_base is None:
        # Outside sandbox mode a server at LOG_LEVEL=WARNING does not log the port it bound.
        load.PORTS = ProbedPorts(args.host)
    # What load.Server reads of the arguments.
    server_args = argparse.Namespace(access_log=False)
    print(f"ceiling benchmark, {load.machine_note()}")
    print(
        f"  wrk -t1 -c{args.connections}, {args.duration} s a run, {args.rounds} rounds in "
        f"rotated order; then -c{args.errors_at} once each, every status counted; "
        + ("production configuration" if args.production else "sandbox mode")
        + (", pymongo's path (wire stub)" if args.mongo_stub else ", embedded store")
    )
    with tempfile.TemporaryDirectory() as tmp, stub_if(args.mongo_stub):
        workdir = Path(tmp)
        status_script = workdir / "statuses.lua"
        status_script.write_text(STATUS_SCRIPT)
        names = ["bare", *args.scenarios]
        servers = {
            name: load.Server(scenario_of(name, args.production), server_args, workdir)
            for name in names
        }
        try:
            urls = {name: url_of(name, server, args.production) for name, server in servers.items()}
            pushes_a_second = [4000.0]  # until the warm-up measures it

            def run(
                name: str, connections: int, seconds: int, statuses: bool = False
            ) -> dict[str, Any]:
                script = None
                if name in PUSHES:  # bare-post cycles through them: it checks nothing
                    count = int(pushes_a_second[0] * PUSH_MARGIN * seconds) + 1000
                    script = push_script(workdir, count, statuses, args.production)
                elif statuses:
                    script = status_script
                return wrk(urls[name], connections, seconds, script)

            for name in names:  # warm: imports, caches, the first context stored
                warm = run(name, args.connections, 2)
                if name == "push":
                    pushes_a_second[0] = warm["rps"]
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            for round_ in range(args.rounds):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    runs[name].append(run(name, args.connections, args.duration))
                line = "  ".join(f"{n} {runs[n][-1]['rps']:8.0f}" for n in names)
                print(f"  round {round_ + 1}/{args.rounds}: {line} req/s")
            loaded = {name: run(name, args.errors_at, args.duration, True) for name in names}
            swept = sweep(names[:2], run, args.duration) if args.plot else None
            memory = {name: server.status() for name, server in servers.items()}
        finally:
            for server in servers.values():
                server.stop()
    report(args, names, runs, loaded, memory)
    if swept is not None:
        plot(swept, Path(args.plot), load.machine_note())


def scenario_of(name: str, production: bool) -> load.Scenario:
    scenario = load.SCENARIOS[SERVER_OF.get(name, name)]
    if not production:
        return scenario
    extra = dict(PRODUCTION)
    if "MONGODB_URI" not in os.environ:  # --mongo-stub sets it
        extra["MONGODB_URI"] = "memory://"
    return dataclasses.replace(scenario, env={**scenario.env, **extra})


class ProbedPorts(load.Ports):
    """Each server's port one the system found free a moment before (ports in a row from one
    free port may be some connection's local port already)."""

    def __init__(self, host: str) -> None:
        super().__init__(None)
        self._host = host

    def take(self) -> int:
        with socket.socket() as probe:
            probe.bind((self._host, 0))
            return int(probe.getsockname()[1])


SWEEP_CONNECTIONS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def sweep(names: list[str], run: Any, seconds: int) -> dict[str, list[tuple[int, float, float]]]:
    """(connections, req/s, p99 ms) for each of `names`, alternating at each step."""
    found: dict[str, list[tuple[int, float, float]]] = {name: [] for name in names}
    for step, connections in enumerate(SWEEP_CONNECTIONS):
        order = names if step % 2 == 0 else names[::-1]
        for name in order:
            result = run(name, connections, seconds)
            found[name].append((connections, result["rps"], result["p99"]))
        line = "  ".join(
            f"{n} {found[n][-1][1]:7.0f}/s p99 {found[n][-1][2]:6.1f} ms" for n in names
        )
        print(f"  {connections:>3} connections: {line}")
    return found


def plot(found: dict[str, list[tuple[int, float, float]]], path: Path, note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate, tail) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, points in found.items():
        connections = [c for c, _, _ in points]
        label = "bare aiohttp" if name == "bare" else f"service: {name}"
        rate.plot(connections, [r for _, r, _ in points], marker="o", label=label)
        tail.plot(connections, [p for _, _, p in points], marker="o", label=label)
    for axes, title, unit in (
        (rate, "throughput", "requests per second"),
        (tail, "p99 latency", "milliseconds"),
    ):
        axes.set_xscale("log", base=2)
        axes.set_xticks(list(SWEEP_CONNECTIONS), [str(c) for c in SWEEP_CONNECTIONS])
        axes.set_xlabel("connections (wrk, one thread)")
        axes.set_ylabel(unit)
        axes.set_title(title)
        axes.grid(True, alpha=0.3)
        axes.legend()
    tail.set_yscale("log")
    figure.suptitle(f"bench.ceiling: {note}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"  plot written to {path}")


class stub_if:
    """The MongoDB wire stub for the servers' lifetime (pymongo's path), when asked."""

    def __init__(self, wanted: bool) -> None:
        self.wanted = wanted
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> None:
        if self.wanted:
            self.proc = load.start_mongo_stub()

    def __exit__(self, *_: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()


def report(
    args: argparse.Namespace,
    names: list[str],
    runs: dict[str, list[dict[str, Any]]],
    loaded: dict[str, dict[str, Any]],
    memory: dict[str, dict[str, float]],
) -> None:
    width = max(34, 5 * args.rounds + 4)  # the rounds' ratios, 5 characters each
    print()
    print(
        f"{'scenario':<12}{'req/s':>9}{'ratio':>8}{'rounds ratios':>{width}}{'p50 ms':>9}"
        f"{'p99 ms':>9}"
        f"{'errors @' + str(args.errors_at):>14}{'peak RSS':>10}"
    )
    bare = runs["bare"]
    for name in names:
        own = runs[name]
        ratios = [r["rps"] / b["rps"] for r, b in zip(own, bare, strict=True)]
        heavy = loaded[name]
        unexpected = sum(n for s, n in heavy["statuses"].items() if s != EXPECTED[name])
        errors = heavy["socket_errors"] + unexpected
        print(
            f"{name:<12}{statistics.median(r['rps'] for r in own):>9.0f}"
            f"{statistics.median(ratios):>8.2f}"
            f"{' '.join(f'{x:.2f}' for x in ratios):>{width}}"
            f"{statistics.median(r['p50'] for r in own):>9.1f}"
            f"{statistics.median(r['p99'] for r in own):>9.1f}"
            f"{errors:>14}{memory[name]['VmHWM']:>9.0f}M"
        )


if __name__ == "__main__":
    main()
