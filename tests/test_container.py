"""The image's contents and checks, tested without a Docker engine (none runs on our machines).

The Dockerfile's final stage copies a few directories beside the installed package; the service
reads its templates, static files and defaults from there. Starting `python -m service` from a
directory holding only those copies shows whether the image would serve every page. The
HEALTHCHECK command is run as written against a live and a dead port.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import yaml
from aiohttp.test_utils import unused_port

from flows import start_service, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
FINAL_STAGE = DOCKERFILE.rsplit("\nFROM ", 1)[1]


def copied_paths() -> list[str]:
    """What the final stage COPYs from the build context (not from the build stage)."""
    return [
        match.group(1)
        for match in re.finditer(r"^COPY (?!--from)(\S+) \./\1$", FINAL_STAGE, re.MULTILINE)
    ]


def healthcheck_command() -> str:
    """The HEALTHCHECK's CMD, with its line continuations joined."""
    joined = DOCKERFILE.replace("\\\n", " ")
    return re.search(r"^HEALTHCHECK .*? CMD (.+)$", joined, re.MULTILINE).group(1)


async def test_the_image_layout_serves_every_page_and_stops_cleanly(tmp_path):
    paths = copied_paths()
    assert "service" in paths
    for path in paths:
        shutil.copytree(ROOT / path, tmp_path / path)
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "service.log"
    process = start_service(tmp_path, port, log)
    try:
        await wait_healthy(base, process, log)
        async with aiohttp.ClientSession() as http:
            for path in (
                "/",
                "/wechat/callback?code=c&state=s",
                "/demo/qr-login",
                "/demo/landing",
                "/docs",
                "/openapi.json",
                "/static/callback.js",
                "/static/app.css",
                "/sandbox/connect/oauth2/authorize",
            ):
                async with http.get(base + path) as resp:
                    assert resp.status == 200, (path, resp.status, await resp.text())
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=30)
    assert returncode == 0, log.read_text()


async def test_the_healthcheck_command_tells_a_live_service_from_a_dead_one(sandbox_server):
    command = healthcheck_command().replace("python -c", f"{sys.executable} -c", 1)

    shell = shutil.which("sh")

    def run(port: int) -> int:
        env = {**os.environ, "PORT": str(port)}
        # The command is this repository's own Dockerfile's, as Docker would run it.
        probe = subprocess.run([shell, "-c", command], env=env, capture_output=True)  # noqa: S603
        return probe.returncode

    assert await asyncio.to_thread(run, sandbox_server.port) == 0
    assert await asyncio.to_thread(run, unused_port()) == 1


def test_the_image_runs_as_a_user_without_dev_dependencies():
    user = re.findall(r"^USER (\S+)$", FINAL_STAGE, re.MULTILINE)
    assert user and user[-1] not in ("root", "0")
    assert "[dev]" not in DOCKERFILE
    assert re.search(r'^CMD \["python", "-m", "service"\]$', FINAL_STAGE, re.MULTILINE)


def test_compose_waits_for_a_healthy_mongodb_7_and_holds_no_secrets():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mongo, service = compose["services"]["mongo"], compose["services"]["service"]
    assert mongo["image"].startswith("mongo:7")
    assert "healthcheck" in mongo and "healthcheck" in service
    assert service["depends_on"]["mongo"]["condition"] == "service_healthy"
    env = service["environment"]
    assert env["MONGODB_URI"].startswith("mongodb://mongo:")
    for secret in ("WECHAT_SECRET", "WECHAT_TOKEN", "WECHAT_AES_KEY", "JWT_SECRET"):
        assert env[secret] == "${" + secret + ":-}", secret  # from the environment only
