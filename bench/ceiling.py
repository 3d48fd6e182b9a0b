"""The service against the framework's ceiling, measured with wrk (issue 15).

`python -m bench.ceiling` starts the bare aiohttp app (through the service's own entry point:
the same event loop, server settings and access logger) and one service process per scenario,
then runs wrk (one thread: the server gets the other core) against each in turn, round after
round, the order rotated each round so a noisy moment of this shared machine does not always
hit the same one. Each round's ratio is the scenario's requests per second over the bare app's
in that round; the figure reported is the median of the rounds' ratios. A last run at
--errors-at connections counts every answer by status (a wrk Lua hook), so "zero errors" means
no socket error, no timeout and nothing but the scenario's expected status.

Scenarios: authorize (GET /wechat/authorize: 401 with WeChat's URL, a state stored), login
(GET /wechat/login: 302 to WeChat with the binding cookie), healthz (the service's router and
middleware around a trivial handler).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench import load

EXPECTED = {"bare": 200, "healthz": 200, "authorize": 401, "login": 302}
# load.py's scenario whose server (and settings) a scenario here runs on.
SERVER_OF = {"login": "authorize"}
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


def url_of(scenario: str, server: load.Server) -> str:
    if scenario == "login":
        return f"{server.base}/wechat/login?" + urlencode(
            {"redirectUri": f"{server.public}/demo/landing", "scope": "snsapi_base"}
        )
    url = load.wrk_url(scenario, server)
    assert url is not None, scenario
    return url


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
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port-base", type=int)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    load.choose_address(args.host, args.port_base)
    # What load.Server reads of the arguments.
    server_args = argparse.Namespace(access_log=False)
    print(f"ceiling benchmark, {load.machine_note()}")
    print(
        f"  wrk -t1 -c{args.connections}, {args.duration} s a run, {args.rounds} rounds in "
        f"rotated order; then -c{args.errors_at} once each, every status counted"
    )
    with tempfile.TemporaryDirectory() as tmp, stub_if(args.mongo_stub):
        workdir = Path(tmp)
        script = workdir / "statuses.lua"
        script.write_text(STATUS_SCRIPT)
        names = ["bare", *args.scenarios]
        servers = {
            name: load.Server(load.SCENARIOS[SERVER_OF.get(name, name)], server_args, workdir)
            for name in names
        }
        try:
            urls = {name: url_of(name, server) for name, server in servers.items()}
            for url in urls.values():  # warm: imports, caches, the first state written
                wrk(url, args.connections, 1)
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            for round_ in range(args.rounds):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    runs[name].append(wrk(urls[name], args.connections, args.duration))
                line = "  ".join(f"{n} {runs[n][-1]['rps']:8.0f}" for n in names)
                print(f"  round {round_ + 1}/{args.rounds}: {line} req/s")
            loaded = {
                name: wrk(urls[name], args.errors_at, args.duration, script) for name in names
            }
            memory = {name: server.status() for name, server in servers.items()}
        finally:
            for server in servers.values():
                server.stop()
    report(args, names, runs, loaded, memory)


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
    print()
    print(
        f"{'scenario':<12}{'req/s':>9}{'ratio':>8}{'rounds ratios':>34}{'p50 ms':>9}{'p99 ms':>9}"
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
            f"{' '.join(f'{x:.2f}' for x in ratios):>34}"
            f"{statistics.median(r['p50'] for r in own):>9.1f}"
            f"{statistics.median(r['p99'] for r in own):>9.1f}"
            f"{errors:>14}{memory[name]['VmHWM']:>9.0f}M"
        )


if __name__ == "__main__":
    main()
