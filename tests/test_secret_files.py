"""<SECRET>_FILE: each secret read from a file (Docker and Kubernetes secrets) instead."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest
from test_config import PRODUCTION_ENV

from service.config import SECRET_FIELDS, ConfigError, load_settings

DATA_KEY = "k1:" + base64.b64encode(bytes(range(32))).decode()
# A valid value for each secret, as its file would hold it.
VALUES = {
    "wechat_secret": "file-secret-0123456789abcdef",
    "wechat_token": "filetoken",
    "wechat_aes_key": "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg",
    "jwt_secret": "j" * 40,
    "jwt_previous_secrets": "p" * 40 + "," + "q" * 40,
    "admin_key": "file-admin-key-0123456789",
    "data_keys": DATA_KEY,
    "api_keys": "billing:" + "b" * 20 + ",crm:" + "c" * 20,
}
PARSED = {
    "jwt_previous_secrets": ("p" * 40, "q" * 40),
    "data_keys": (DATA_KEY,),
    "api_keys": ("billing:" + "b" * 20, "crm:" + "c" * 20),
}


def test_every_secret_has_a_value_here():
    assert set(VALUES) == set(SECRET_FIELDS)


@pytest.mark.parametrize("name", SECRET_FIELDS)
def test_each_secret_comes_from_its_file_without_the_trailing_newline(tmp_path, name):
    path = tmp_path / name
    path.write_text(VALUES[name] + "\n")
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != name.upper()}
    settings = load_settings({**env, f"{name.upper()}_FILE": str(path)})
    assert getattr(settings, name) == PARSED.get(name, VALUES[name])


def test_windows_line_ends_are_stripped_too_and_inner_text_kept(tmp_path):
    path = tmp_path / "jwt"
    path.write_bytes(b"a b" + b"x" * 40 + b"\r\n")
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "JWT_SECRET"}
    assert load_settings({**env, "JWT_SECRET_FILE": str(path)}).jwt_secret == "a b" + "x" * 40


def test_both_the_variable_and_its_file_stop_start_up(tmp_path):
    path = tmp_path / "jwt"
    path.write_text("j" * 40)
    with pytest.raises(ConfigError, match="JWT_SECRET and JWT_SECRET_FILE are both set"):
        load_settings({**PRODUCTION_ENV, "JWT_SECRET_FILE": str(path)})


def test_empty_values_count_as_unset(tmp_path):
    """docker-compose.yml passes `JWT_SECRET: ""` when only the file is given, and an empty
    JWT_SECRET_FILE names no file."""
    path = tmp_path / "jwt"
    path.write_text("j" * 40)
    settings = load_settings({**PRODUCTION_ENV, "JWT_SECRET": "", "JWT_SECRET_FILE": str(path)})
    assert settings.jwt_secret == "j" * 40
    assert load_settings({**PRODUCTION_ENV, "JWT_SECRET_FILE": ""}).jwt_secret == "x" * 40


@pytest.mark.parametrize("problem", ["missing", "directory", "unreadable", "not utf-8"])
def test_a_file_that_cannot_be_read_stops_start_up_naming_the_variable_never_the_content(
    tmp_path, problem
):
    path = tmp_path / "admin_key"
    if problem == "directory":
        path.mkdir()
    elif problem == "unreadable":
        path.write_text("secret-admin-key-content")
        path.chmod(0)
        if os.access(path, os.R_OK):  # root reads anything
            pytest.skip("this user reads files whatever their mode")
    elif problem == "not utf-8":
        path.write_bytes(b"\xffsecret-admin-key-content")
    with pytest.raises(ConfigError) as refused:
        load_settings({**PRODUCTION_ENV, "ADMIN_KEY_FILE": str(path)})
    message = str(refused.value)
    assert message.startswith("ADMIN_KEY_FILE: ")
    assert str(path) in message
    assert "secret-admin-key-content" not in message and "\\xff" not in message


def test_python_m_service_refuses_to_start_with_one_line(tmp_path):
    """What an operator sees: exit code 2 and a `cannot start:` line naming the variable."""
    path = tmp_path / "jwt_secret"
    path.write_bytes(b"\xfe-jwt-secret-content-jwt-secret-content")
    env = {
        **os.environ,
        **PRODUCTION_ENV,
        "PORT": "0",
        "JWT_SECRET": "",
        "JWT_SECRET_FILE": str(path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "service"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "cannot start: JWT_SECRET_FILE" in done.stderr
    assert "jwt-secret-content" not in done.stderr
