"""The built wheel runs outside the checkout.

The wheel is built from exactly what the Dockerfile's build stage copies, installed into a fresh
virtual environment the way the image installs it (requirements.lock with hashes, then the wheel
with --no-deps), and `python -m service` is started from an empty directory. Every page, the
static files, the default config and the version must then come from the installed package.

The one addition to the image's contents is mongomock-motor, the embedded development store
(a dev dependency), so that sandbox mode runs without a MongoDB server.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest

from service.config import SANDBOX_DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
BUILD_STAGE = re.split(r"^FROM ", DOCKERFILE, flags=re.MULTILINE)[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# What .dockerignore keeps out of the build context.
IGNORED = shutil.ignore_patterns("__pycache__", "*.py[cod]")
LISTENING = re.compile(r"listening on [^\s:]+:(\d+) \(public URL ([^\s)]+)\)")


def build_stage_sources() -> list[str]:
    """The paths the build stage COPYs from the build context (`COPY a b ./` or `COPY a ./a`)."""
    sources: list[str] = []
    for line in re.findall(r"^COPY (?!--from)(.+)$", BUILD_STAGE, re.MULTILINE):
        *paths, _destination = shlex.split(line)
        sources += paths
    return sources


def run(*command: str | Path, timeout: float = 120, **kwargs) -> str:
    done = subprocess.run(  # noqa: S603 (this test's own commands)
        [str(part) for part in command], capture_output=True, text=True, timeout=timeout, **kwargs
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding the lock's dependencies and the wheel; its python."""
    tmp = tmp_path_factory.mktemp("package")
    source = tmp / "source"
    sources = build_stage_sources()
    assert "service" in sources and "requirements.lock" in sources, sources
    for path in sources:
        if (ROOT / path).is_dir():
            shutil.copytree(ROOT / path, source / path, ignore=IGNORED)
        else:
            (source / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / path, source / path)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp / "dist", source)
    (wheel,) = (tmp / "dist").glob("wechat_oa_auth-*.whl")

    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    pip = (sys.executable, "-m", "pip", "--python", python, "install", "--quiet")
    lock = source / "requirements.lock"
    run(*pip, "--require-hashes", "--no-deps", "-r", lock)
    run(*pip, "--no-deps", wheel)
    # The lock holds everything the wheel asks for, as the image's --no-deps installs need.
    run(sys.executable, "-m", "pip", "--python", python, "check")
    run(*pip, f"mongomock-motor=={metadata.version('mongomock-motor')}")
    return python


# Straight to loopback, whatever proxy the environment names.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> tuple[int, str]:
    try:
        with OPENER.open(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def answer_or_none(url: str) -> tuple[int, str] | None:
    try:
        return get(url)
    except (urllib.error.URLError, ConnectionError):
        return None


def test_the_installed_wheel_serves_every_page_from_any_directory(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"  # not the checkout: nothing to find beside the process
    elsewhere.mkdir()

    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV", "MONGODB_URI")
    }
    env |= {
        "SANDBOX": "1",
        "PORT": "0",
        "HOST": "127.0.0.1",
        "TOKEN_UPKEEP": "0",
        "SHUTDOWN_TIMEOUT": "5",
        "LOG_FORMAT": "text",
    }
    log = tmp_path / "service.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(  # noqa: S603
            [installed, "-m", "service"],
            cwd=elsewhere,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 30
        while not (found := LISTENING.search(log.read_text())):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        base = f"http://127.0.0.1:{found.group(1)}"
        # The port is bound before the app is built: a failed start shows as a process gone.
        while (answer := answer_or_none(base + "/healthz")) is None:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert answer[0] == 200, answer
        status, page = get(base + "/")
        assert status == 200 and "wechat-oa-auth sandbox demo" in page, (status, page)
        for path in (
            "/wechat/callback?code=c&state=s",
            "/demo/qr-login",
            "/demo/landing",
            "/docs",
            "/static/app.css",
            "/static/callback.js",
            "/static/docs/swagger-ui.css",
            "/sandbox/",
            "/sandbox/_sandbox/static/sandbox.css",
        ):
            status, body = get(base + path)
            assert status == 200, (path, status, body)
        status, body = get(base + "/openapi.json")
        assert status == 200 and json.loads(body)["info"]["version"] == VERSION, body

        # WeChat's authorize page in the emulator, for a redirect to the public URL's host: with
        # no user chosen yet, its user picker.
        query = urllib.parse.urlencode(
            {
                "appid": SANDBOX_DEFAULTS["wechat_appid"],
                "redirect_uri": found.group(2) + "/wechat/callback",
                "response_type": "code",
                "scope": "snsapi_userinfo",
                "state": "s",
            }
        )
        status, page = get(f"{base}/sandbox/connect/oauth2/authorize?{query}")
        assert status == 200 and "Who is using WeChat?" in page, (status, page)
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=30)
    assert returncode == 0, log.read_text()

    # The package and its default config are the venv's (a missing config would go unnoticed:
    # the service starts on its built-in defaults).
    where = "import service, service.config as c; print(service.__file__, c.DEFAULT_CONFIG)"
    package, config = map(Path, run(installed, "-c", where, cwd=elsewhere, env=env).split())
    venv = installed.parent.parent
    assert package.is_relative_to(venv) and config.is_relative_to(package.parent), config
    assert config.read_text() == (ROOT / "config" / "default.toml").read_text()
