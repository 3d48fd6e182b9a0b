"""docker-compose.yml passes every setting through, and PORT moves everything with it.

No Docker engine runs here, so compose's interpolation is done as the Compose specification
says: `${NAME:-default}` is NAME's value where compose runs, or default when unset or empty; an
environment entry without a value (`NAME:`) takes NAME from where compose runs, and is left out
of the container when it is not set there (the service's default then applies).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.config import SECRET_FIELDS, Settings, load_settings

COMPOSE = yaml.safe_load((Path(__file__).resolve().parents[1] / "docker-compose.yml").read_text())
SERVICE = COMPOSE["services"]["service"]
SETTINGS = [f.name.upper() for f in dataclasses.fields(Settings)]
SECRET_FILES = [f"{name.upper()}_FILE" for name in SECRET_FIELDS]
VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str, shell: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if default is None:
            return shell.get(name, "")
        return shell.get(name) or default

    return VARIABLE.sub(value, text)


def container_env(shell: Mapping[str, str]) -> dict[str, str]:
    """The service container's environment, when compose runs with `shell`."""
    env: dict[str, str] = {}
    for name, value in SERVICE["environment"].items():
        if value is None:
            if name in shell:
                env[name] = shell[name]
        else:
            env[name] = interpolate(str(value), shell)
    return env


def interpolated(node: Any, shell: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, shell)
    if isinstance(node, list):
        return [interpolated(item, shell) for item in node]
    return node


# The one setting compose decides: the MongoDB it runs beside the service.
FIXED = {"MONGODB_URI": "mongodb://mongo:27017"}


@pytest.mark.parametrize("name", SETTINGS + SECRET_FILES)
def test_every_setting_set_where_compose_runs_reaches_the_service(name):
    assert name in SERVICE["environment"], f"docker-compose.yml drops {name}"
    expected = FIXED.get(name, "value-from-the-shell")
    assert container_env({name: "value-from-the-shell"})[name] == expected


def test_left_unset_compose_adds_nothing_but_the_port_and_its_mongodb():
    """So the service's own defaults (and CONFIG_FILE's) hold, none duplicated here."""
    env = container_env({})
    assert {k: v for k, v in env.items() if v} == {
        "PORT": "3000",
        "MONGODB_URI": "mongodb://mongo:27017",
    }
    assert set(env) == {"PORT", "MONGODB_URI", *(name.upper() for name in SECRET_FIELDS)}
    sandbox = load_settings({**env, "SANDBOX": "1"})
    assert sandbox == load_settings({"SANDBOX": "1", "MONGODB_URI": "mongodb://mongo:27017"})


@pytest.mark.parametrize("port", ["3000", "8080"])
def test_port_moves_the_listener_the_published_port_the_public_url_and_the_healthcheck(port):
    shell = {"PORT": port, "SANDBOX": "1"}
    env = container_env(shell)
    settings = load_settings(env)
    assert settings.port == int(port)
    assert settings.public_url == f"http://localhost:{port}"
    assert interpolated(SERVICE["ports"], shell) == [f"{port}:{port}"]
    healthcheck = " ".join(interpolated(SERVICE["healthcheck"]["test"], shell))
    assert f"http://127.0.0.1:{port}/healthz" in healthcheck


def test_an_explicit_public_url_is_passed_as_given():
    env = container_env({"PORT": "8080", "PUBLIC_URL": "https://auth.example.com"})
    assert env["PUBLIC_URL"] == "https://auth.example.com"


def test_the_interpolation_here_reads_compose_as_compose_does():
    shell = {"A": "a", "E": ""}
    assert interpolate("${A:-x}/${B:-y}/${E:-z}/${A}/${B}/$$A", shell) == "a/y/z/a//$A"
