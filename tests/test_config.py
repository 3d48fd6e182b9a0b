"""Settings: defaults from config/default.toml, environment overrides, start-up refusals."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys

import pytest

from flows import start_service
from service.config import SANDBOX_DEFAULTS, ConfigError, load_settings

PRODUCTION_ENV = {
    "WECHAT_APPID": "wxabcdef0123456789",
    "WECHAT_SECRET": "a-real-secret",
    "WECHAT_TOKEN": "a-real-token",
    "JWT_SECRET": "x" * 40,
    # Outside sandbox mode the embedded store must be asked for by name.
    "MONGODB_URI": "memory://",
}


def test_defaults_come_from_the_toml_file():
    settings = load_settings(PRODUCTION_ENV)
    assert settings.port == 3000
    assert settings.public_url == "http://localhost:3000"
    assert settings.jwt_ttl == 7200
    assert settings.state_ttl == 600
    assert settings.open_base == "https://open.weixin.qq.com"
    assert settings.api_base == "https://api.weixin.qq.com"
    assert settings.redirect_origins == frozenset()


def test_environment_overrides_and_types():
    settings = load_settings(
        {
            **PRODUCTION_ENV,
            "PORT": "8080",
            "JWT_TTL": "60",
            "SANDBOX": "false",
            "ALLOWED_REDIRECT_ORIGINS": "https://a.example.com, https://b.example.com:8443",
            "PUBLIC_URL": "https://auth.example.com",
        }
    )
    assert settings.port == 8080
    assert settings.jwt_ttl == 60
    assert settings.allowed_redirect_origins == (
        "https://a.example.com",
        "https://b.example.com:8443",
    )
    assert settings.public_url == "https://auth.example.com"


@pytest.mark.parametrize("missing", ["WECHAT_APPID", "WECHAT_SECRET", "WECHAT_TOKEN", "JWT_SECRET"])
def test_missing_credentials_stop_start_up_naming_the_variable(missing):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        load_settings(env)


def test_sandbox_values_are_refused_outside_sandbox_mode():
    env = {**PRODUCTION_ENV, "JWT_SECRET": SANDBOX_DEFAULTS["jwt_secret"]}
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load_settings(env)


def test_short_jwt_secret_is_refused():
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load_settings({**PRODUCTION_ENV, "JWT_SECRET": "short"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("SANDBOX", "maybe"),
        ("PUBLIC_URL", "localhost:3000"),
        ("ALLOWED_REDIRECT_ORIGINS", "https://a.example.com/path"),
        ("JWT_TTL", "0"),
        ("WECHAT_AES_KEY", "too-short"),
        # aiohttp would wait for in-flight requests without limit.
        ("SHUTDOWN_TIMEOUT", "0"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({**PRODUCTION_ENV, name: value})


def test_sandbox_mode_fills_development_values_and_says_so(caplog):
    with caplog.at_level(logging.WARNING):
        settings = load_settings({"SANDBOX": "1", "PORT": "3999"})
    assert settings.wechat_appid == SANDBOX_DEFAULTS["wechat_appid"]
    assert settings.public_url == "http://localhost:3999"
    assert settings.open_base == "http://localhost:3999/sandbox"
    assert settings.api_base == "http://127.0.0.1:3999/sandbox"
    assert "http://localhost:3999" in settings.redirect_origins
    assert "JWT_SECRET" in caplog.text and "WECHAT_SECRET" in caplog.text
    # The values themselves are not logged.
    assert SANDBOX_DEFAULTS["wechat_secret"] not in caplog.text


def test_secrets_are_refused_in_the_config_file(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('jwt_secret = "in-a-file-is-wrong-000000000000000000"\n')
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load_settings(PRODUCTION_ENV, config)


def test_secrets_do_not_show_in_the_settings_repr():
    settings = load_settings(PRODUCTION_ENV)
    assert "a-real-secret" not in repr(settings)
    assert PRODUCTION_ENV["JWT_SECRET"] not in repr(settings)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"BASE_TOKEN_SOURCE": "cache"}, "BASE_TOKEN_SOURCE"),
        # stable_token renews only in a token's last 300 s; an earlier margin would never renew.
        ({"BASE_TOKEN_REFRESH_MARGIN": "300"}, "BASE_TOKEN_REFRESH_MARGIN"),
        ({"TOKEN_CHECK_INTERVAL": "200"}, "TOKEN_CHECK_INTERVAL"),
        ({"LEASE_TTL": "2"}, "LEASE_TTL"),
        ({"WEB_TOKEN_KEEP_ALIVE": "some"}, "WEB_TOKEN_KEEP_ALIVE"),
        ({"WEB_TOKEN_REFRESH_RATE": "0"}, "WEB_TOKEN_REFRESH_RATE"),
        ({"WEB_TOKEN_CONCURRENCY": "0"}, "WEB_TOKEN_CONCURRENCY"),
        ({"ADMIN_KEY": "short"}, "ADMIN_KEY"),
        ({"ADMIN_KEY": SANDBOX_DEFAULTS["admin_key"]}, "ADMIN_KEY"),
        ({"WECHAT_MESSAGE_MODE": "secret"}, "WECHAT_MESSAGE_MODE"),
        # Safe mode cannot decrypt anything without the account's EncodingAESKey.
        ({"WECHAT_MESSAGE_MODE": "safe"}, "WECHAT_AES_KEY"),
        ({"QRCODE_EXPIRE_SECONDS": "2592001"}, "QRCODE_EXPIRE_SECONDS"),
        ({"QR_LOGIN_TTL": "30"}, "QR_LOGIN_TTL"),
        ({"TRUSTED_PROXIES": "10.0.0.0/8, proxy.example.com"}, "TRUSTED_PROXIES"),
        ({"RATE_LIMIT_JWT": "-1"}, "RATE_LIMIT_JWT"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
    ],
)
def test_upkeep_message_and_qr_settings_are_checked_at_start_up(override, named):
    with pytest.raises(ConfigError, match=named):
        load_settings({**PRODUCTION_ENV, **override})


@pytest.mark.parametrize(
    ("lease_ttl", "wechat_timeout"), [("14", "5"), ("29", "10"), ("30", "10.5")]
)
def test_a_lease_shorter_than_three_wechat_timeouts_stops_start_up(lease_ttl, wechat_timeout):
    """The base-token fetcher must hold its lease through a whole WeChat call, or a second
    instance fetches too (and a second cgi-bin/token cuts the first token short)."""
    env = {**PRODUCTION_ENV, "LEASE_TTL": lease_ttl, "WECHAT_TIMEOUT": wechat_timeout}
    with pytest.raises(ConfigError, match=r"LEASE_TTL.*WECHAT_TIMEOUT"):
        load_settings(env)


def test_the_default_lease_and_timeout_fit_and_so_does_exactly_three_times():
    defaults = load_settings(PRODUCTION_ENV)
    assert (defaults.lease_ttl, defaults.wechat_timeout) == (30, 5.0)
    assert load_settings({**PRODUCTION_ENV, "WECHAT_TIMEOUT": "10"}).lease_ttl == 30


def test_outside_sandbox_mode_an_unset_mongodb_uri_stops_start_up_naming_memory():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "MONGODB_URI"}
    with pytest.raises(ConfigError, match="MONGODB_URI") as refused:
        load_settings(env)
    assert "memory://" in str(refused.value)
    with pytest.raises(ConfigError, match="MONGODB_URI"):
        load_settings({**env, "MONGODB_URI": ""})


def test_sandbox_mode_without_a_uri_keeps_the_embedded_store():
    assert load_settings({"SANDBOX": "1"}).mongodb_uri == ""


def test_the_embedded_store_asked_for_by_name_starts_and_warns_loudly(tmp_path):
    """`python -m service` outside sandbox mode: no URI is a refusal naming memory://; with
    MONGODB_URI=memory:// it serves, on the embedded store, and says so."""
    import os

    base = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "SANDBOX")}
    env = {**base, **PRODUCTION_ENV, "PORT": "0", "HOST": "127.0.0.1"}
    del env["MONGODB_URI"]
    refused = subprocess.run(
        [sys.executable, "-m", "service"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert "MONGODB_URI" in refused.stderr and "memory://" in refused.stderr

    log = tmp_path / "service.log"
    env = {**PRODUCTION_ENV, "MONGODB_URI": "memory://"}
    process, _ = asyncio.run(start_service(log, sandbox=False, **env))
    process.terminate()
    process.wait(timeout=30)
    assert "EMBEDDED IN-MEMORY store" in log.read_text()


def test_token_upkeep_defaults():
    settings = load_settings(PRODUCTION_ENV)
    assert settings.token_upkeep is True
    assert settings.base_token_source == "stable"
    assert settings.web_token_keep_alive == "recent"
    assert settings.admin_key == ""  # the status endpoint stays shut until one is set


def test_admin_key_is_a_secret_not_a_file_setting(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('admin_key = "from-a-file-0123456789"\n')
    with pytest.raises(ConfigError, match="ADMIN_KEY"):
        load_settings(PRODUCTION_ENV, config)


def test_every_setting_is_documented():
    """Each setting has a row in docs/settings.md's table, and each non-secret one is in
    default.toml."""
    import dataclasses

    from service.config import DEFAULT_CONFIG, PROJECT_ROOT, SECRET_FIELDS, Settings

    reference = (PROJECT_ROOT / "docs" / "settings.md").read_text()
    # The table's first column names the settings (one row may name several).
    named = " ".join(
        line.split("|")[1] for line in reference.splitlines() if line.startswith("| `")
    )
    toml = DEFAULT_CONFIG.read_text()
    undocumented = [
        f.name.upper() for f in dataclasses.fields(Settings) if f"`{f.name.upper()}`" not in named
    ]
    missing_defaults = [
        f.name
        for f in dataclasses.fields(Settings)
        if f.name not in SECRET_FIELDS and f"\n{f.name} = " not in toml
    ]
    assert undocumented == []
    assert missing_defaults == []


def test_an_unreachable_mongodb_stops_start_up_with_one_line_not_a_traceback(closed_port):
    """What an operator sees when MongoDB is down or the URI is wrong (`python -m service`)."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        **PRODUCTION_ENV,
        "PORT": "0",
        "MONGODB_URI": f"mongodb://app:hunter2@127.0.0.1:{closed_port}/?serverSelectionTimeoutMS=300",
    }
    done = subprocess.run(
        [sys.executable, "-m", "service"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if '"level": "ERROR"' in line]
    assert len(errors) == 1
    assert "cannot start: MongoDB did not answer" in errors[0]
    assert f"127.0.0.1:{closed_port}" in errors[0]
    assert "hunter2" not in done.stderr
