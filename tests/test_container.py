"""The image's contents and checks, tested without a Docker engine (none runs on our machines).

The Dockerfile installs the locked dependencies in a layer of their own, then the service's
wheel, which carries its templates, static files and default config; the final stage copies
both, and nothing from the checkout. tests/test_package.py builds that wheel from what the build
stage copies, installs it the same way and serves every page from it. The HEALTHCHECK command is
run here as written against a live and a dead port.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
_, BUILD_STAGE, FINAL_STAGE = re.split(r"^FROM ", DOCKERFILE, flags=re.MULTILINE)


def instructions(stage: str) -> list[str]:
    """The stage's instructions, line continuations joined, comments left out."""
    lines = stage.replace("\\\n", " ").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def context_sources(stage: str) -> list[str]:
    """What the stage COPYs from the build context (not from another stage)."""
    sources: list[str] = []
    for line in re.findall(r"^COPY (?!--from)(.+)$", stage, re.MULTILINE):
        *paths, _destination = shlex.split(line)
        sources += paths
    return sources


def healthcheck_command() -> str:
    """The HEALTHCHECK's CMD, with its line continuations joined."""
    joined = DOCKERFILE.replace("\\\n", " ")
    return re.search(r"^HEALTHCHECK .*? CMD (.+)$", joined, re.MULTILINE).group(1)


def test_the_dependencies_are_the_locks_in_a_layer_that_code_changes_leave_alone():
    steps = instructions(BUILD_STAGE)
    copies = [n for n, step in enumerate(steps) if step.startswith("COPY ")]
    # The lock alone comes first, and is installed, with hashes, before any code is copied.
    assert steps[copies[0]] == "COPY requirements.lock ./", steps[copies[0]]
    install = steps[copies[0] + 1]
    for flag in ("RUN pip install ", "--require-hashes", "--no-deps", "-r requirements.lock"):
        assert flag in install, install
    # Then the code, and the service's own wheel, which may not touch the dependencies.
    (service,) = [step for step in steps[copies[1] :] if step.startswith("RUN ")]
    assert "pip wheel --no-deps" in service and "pip install --no-deps" in service, service
    # The final stage copies both results, dependencies first, and nothing from the context:
    # the package is in the image once, with its templates, static files and default config.
    assert context_sources(FINAL_STAGE) == []
    prefixes = [re.search(r"--prefix=(\S+)", step).group(1) for step in (install, service)]
    assert re.findall(r"^COPY --from=build (\S+) ", FINAL_STAGE, re.MULTILINE) == prefixes


def test_the_lock_pins_every_dependency_with_hashes():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = {
        re.match(r"[A-Za-z0-9_.-]+", dependency).group(0).lower().replace("_", "-")
        for dependency in pyproject["project"]["dependencies"]
    }
    blocks = re.split(r"^(?=[a-z0-9])", (ROOT / "requirements.lock").read_text(), flags=re.M)
    pins = {}
    for block in blocks[1:]:
        name, version = re.match(r"([a-z0-9_.-]+)==(\S+) ", block).groups()
        assert "--hash=sha256:" in block, name
        pins[name] = version
    assert wanted <= pins.keys(), wanted - pins.keys()
    assert not pins.keys() & {"pytest", "ruff", "mongomock-motor", "pip-tools"}  # no dev ones


def test_the_build_context_has_what_the_build_copies_and_no_local_clutter():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env", "build", "dist", "*.egg-info"} <= ignored
    for source in context_sources(BUILD_STAGE):
        assert (ROOT / source).exists(), source
        assert source not in ignored, source


async def test_the_healthcheck_command_tells_a_live_service_from_a_dead_one(
    sandbox_server, closed_port
):
    command = healthcheck_command().replace("python -c", f"{sys.executable} -c", 1)

    shell = shutil.which("sh")

    def run(port: int) -> int:
        env = {**os.environ, "PORT": str(port)}
        # The command is this repository's own Dockerfile's, as Docker would run it.
        probe = subprocess.run([shell, "-c", command], env=env, capture_output=True)  # noqa: S603
        return probe.returncode

    assert await asyncio.to_thread(run, sandbox_server.port) == 0
    assert await asyncio.to_thread(run, closed_port) == 1


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
