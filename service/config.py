"""Settings: one frozen dataclass, loaded once from config/default.toml plus the environment."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import ipaddress
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from service import resources
from service.accounts import (
    DEFAULT_ACCOUNT,
    OFFICIAL,
    WEBSITE,
    Account,
    AccountConfigError,
    AccountEntry,
    parse_accounts,
    secret_variable,
)
from service.app_jwt.signing_keys import (
    JwtKey,
    JwtKeyError,
    KeySet,
    is_ec_key_file,
    load_key_set,
    pem_key,
)
from service.oidc_config import ClientConfigError, OidcClient, parse_clients, sandbox_clients
from service.store.sealing import SealingError, parse_data_keys

log = logging.getLogger(__name__)

# The checkout's root (tests read its docs); the package's files come from service/resources.py.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = resources.DEFAULT_CONFIG

WECHAT_OPEN_BASE = "https://open.weixin.qq.com"
WECHAT_API_BASE = "https://api.weixin.qq.com"

# Secrets come from the environment only: a config file ends up in images and repositories.
SECRET_FIELDS = (
    "wechat_secret",
    "wechat_token",
    "wechat_aes_key",
    "jwt_secret",
    "jwt_previous_secrets",
    "admin_key",
    "data_keys",
    "api_keys",
)

# Development values filled in sandbox mode. They are public, so they are refused outside it.
SANDBOX_DEFAULTS = {
    "wechat_appid": "wx5a4db0c0ffee0001",
    "wechat_secret": "5a4db0c0ffee5a4db0c0ffee5a4db0c0",
    "wechat_token": "sandboxtoken",
    "wechat_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    "jwt_secret": "sandbox-jwt-secret-for-development-only-0000",
    "admin_key": "sandbox-admin-key",
}

# Sandbox mode's other accounts (issue 14): a second Official Account and a website app, with
# public development secrets like the ones above. The emulator knows them by these values.
SANDBOX_ACCOUNTS = (
    Account(
        "second",
        OFFICIAL,
        "wx5a4db0c0ffee0002",
        secret="5a4db0c0ffee0002sandboxsecond000",  # noqa: S106 - public, sandbox only
        token="sandboxtoken2",  # noqa: S106 - public, sandbox only
        aes_key="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg",
    ),
    Account(
        "web",
        WEBSITE,
        "wx5a4db0c0ffee0003",
        secret="5a4db0c0ffee0003sandboxwebsite00",  # noqa: S106 - public, sandbox only
    ),
)


# MONGODB_URI naming the embedded in-memory store (mongomock-motor) instead of a server.
EMBEDDED_STORE_URI = "memory://"


def uses_embedded_store(s: Settings) -> bool:
    """Sandbox mode without a URI, or MONGODB_URI=memory:// in any mode. (Settings built in
    code, as tests build them, skip _validate; there an empty URI means embedded too.)"""
    return not s.mongodb_uri or s.mongodb_uri == EMBEDDED_STORE_URI


class ConfigError(Exception):
    """A setting is missing or wrong; the message names the environment variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "0.0.0.0"  # noqa: S104 - a container service listens on all interfaces
    port: int = 3000
    # Empty: http://localhost:{port}, which suits local and sandbox use.
    public_url: str = ""
    mongodb_uri: str = ""
    mongodb_db: str = "wechat_oa_auth"
    wechat_appid: str = ""
    wechat_secret: str = field(default="", repr=False)
    wechat_token: str = field(default="", repr=False)
    wechat_aes_key: str = field(default="", repr=False)
    wechat_open_base: str = ""
    wechat_api_base: str = ""
    wechat_timeout: float = 5.0
    jwt_secret: str = field(default="", repr=False)
    jwt_ttl: int = 7200
    jwt_algorithm: str = "HS256"
    jwt_private_key_file: str = ""
    # Keys being rotated out: still accepted when verifying, never used to sign.
    jwt_previous_key_files: tuple[str, ...] = ()
    jwt_previous_secrets: tuple[str, ...] = field(default=(), repr=False)
    jwt_issuer: str = "wechat-oa-auth"
    jwt_audience: str = "wechat-oa-auth"
    allowed_redirect_origins: tuple[str, ...] = ()
    state_ttl: int = 600
    state_retention: int = 3600
    # "optional": /wechat/authorize may start unbound states (the 401 contract as before);
    # "required": it needs a PKCE codeChallenge. /wechat/login is always browser-bound.
    state_binding: str = "optional"
    max_body_bytes: int = 65536
    sandbox: bool = False
    log_level: str = "INFO"
    log_format: str = "json"
    shutdown_timeout: float = 30.0
    # Requests per minute per client IP (0 turns a limit off), and the burst allowed.
    rate_limit_authorize: int = 60
    rate_limit_jwt: int = 60
    rate_limit_qrcode: int = 60
    rate_limit_burst: int = 20
    trusted_proxies: tuple[str, ...] = ()
    # Token upkeep (see config/default.toml for what each one means).
    token_upkeep: bool = True
    base_token_source: str = "stable"  # noqa: S105 - a mode, not a secret
    base_token_refresh_margin: int = 240
    token_check_interval: int = 60
    lease_ttl: int = 30
    wechat_retry_delay: float = 0.5
    web_token_keep_alive: str = "recent"  # noqa: S105 - a mode, not a secret
    web_token_recent_days: int = 7
    web_token_refresh_margin: int = 900
    web_token_sweep_interval: int = 300
    web_token_refresh_rate: float = 50.0
    web_token_concurrency: int = 16
    web_token_batch_size: int = 500
    admin_key: str = field(default="", repr=False)
    # "name:key,…": other backends' keys for the shared access_token (service/shared_token/).
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    # "id:base64key,…" (32-byte keys; the first seals): users' WeChat tokens sealed at rest.
    data_keys: tuple[str, ...] = field(default=(), repr=False)
    # Pushed messages and QR codes.
    wechat_message_mode: str = "plain"
    message_text_reply: str = ""
    # Seconds a push's timestamp may be from now, either way; its (timestamp, nonce) is
    # remembered that long.
    push_max_age: int = 300
    qrcode_expire_seconds: int = 1800
    qr_login_ttl: int = 300
    # qrcode/create calls one instance may make per day (Beijing time), sign-in codes included.
    qrcode_daily_budget: int = 20000

    # -- OpenID Connect provider --
    # Clients: [[oidc_clients]] tables in config/ (OIDC_CLIENTS: the same as a JSON array).
    oidc_clients: tuple[OidcClient, ...] = ()
    # The ID tokens' RS256/ES256 key (PEM); empty: the app JWT's key if asymmetric, else an
    # ephemeral key in sandbox mode.
    oidc_private_key_file: str = ""
    oidc_access_token_ttl: int = 3600

    # -- more accounts --
    # Beside the one of WECHAT_APPID (named default): [[accounts]] tables in config/ or ACCOUNTS
    # (JSON), their secrets from WECHAT_<NAME>_SECRET/_TOKEN/_AES_KEY (service/accounts.py).
    accounts: tuple[Account, ...] = ()

    # -- deployment --
    # A second port serving /metrics alone, for the monitoring network (0: /metrics on PORT).
    metrics_port: int = 0
    # WeChat's domain verification files (MP_verify_<code>.txt), each served at /<its name>.
    wechat_verify_files: tuple[str, ...] = ()

    # -- branding (pages) --
    # The name the callback and QR sign-in pages show (title and heading).
    app_name: str = "wechat-oa-auth"
    # A PNG, SVG, JPEG, WebP or ICO image (at most 256 KiB) shown beside it and as the pages'
    # icon; read and checked at start. Empty: no logo.
    app_logo_file: str = ""

    @property
    def all_accounts(self) -> tuple[Account, ...]:
        """Every account, the first being the default: WECHAT_APPID's (named default), if set,
        then the configured ones in their order."""
        return _all_accounts(self)

    def for_account(self, account: Account) -> Settings:
        """The settings as one account's services see them: its appid, secrets and message mode
        in the wechat_* fields, everything else shared."""
        if account.name == DEFAULT_ACCOUNT:
            return self
        return dataclasses.replace(
            self,
            wechat_appid=account.appid,
            wechat_secret=account.secret,
            wechat_token=account.token,
            wechat_aes_key=account.aes_key,
            wechat_message_mode=account.message_mode,
        )

    @property
    def redirect_origins(self) -> frozenset[str]:
        """Origins redirectUri/callback may use; sandbox mode adds the service's own."""
        return _redirect_origins(self.allowed_redirect_origins, self.sandbox, self.public_url)

    @property
    def open_base(self) -> str:
        """Where browsers are sent to authorize (the emulator's mount point in sandbox mode)."""
        if self.wechat_open_base:
            return self.wechat_open_base.rstrip("/")
        return f"{self.public_url.rstrip('/')}/sandbox" if self.sandbox else WECHAT_OPEN_BASE

    @property
    def api_base(self) -> str:
        """Where the service calls WeChat's API; in sandbox mode its own emulator over loopback."""
        if self.wechat_api_base:
            return self.wechat_api_base.rstrip("/")
        return f"http://127.0.0.1:{self.port}/sandbox" if self.sandbox else WECHAT_API_BASE


def _all_accounts(s: Settings) -> tuple[Account, ...]:
    if not s.wechat_appid:
        return s.accounts
    default = Account(
        DEFAULT_ACCOUNT,
        OFFICIAL,
        s.wechat_appid,
        secret=s.wechat_secret,
        token=s.wechat_token,
        aes_key=s.wechat_aes_key,
        message_mode=s.wechat_message_mode,
    )
    return (default, *s.accounts)


@functools.lru_cache(maxsize=16)
def _redirect_origins(allowed: tuple[str, ...], sandbox: bool, public_url: str) -> frozenset[str]:
    # Asked on every authorize; computed once per configuration.
    origins = set(allowed)
    if sandbox:
        origins.add(origin_of(public_url))
    return frozenset(origins)


def origin_of(url: str | SplitResult) -> str:
    """scheme://host[:port] in lower case, default ports dropped; '' if the URL has none.

    Takes a URL or an already split one (each urlsplit attribute re-parses the netloc).
    """
    try:
        # urlsplit refuses a broken [ ] host and a netloc that NFKC-normalizes into URL
        # syntax (fullwidth ＃ or ＠): such a URL has no origin.
        parts = urlsplit(url) if isinstance(url, str) else url
        hostname = parts.hostname
    except ValueError:
        return ""
    if not parts.scheme or not hostname:
        return ""
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return ""
    host = hostname  # .hostname is lower-cased already
    if ":" in host:
        host = f"[{host}]"
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _coerce(name: str, value: object, target: type | str) -> object:
    kind = target if isinstance(target, str) else target.__name__
    env_name = name.upper()
    if name == "oidc_clients":
        try:
            return parse_clients(value)
        except ClientConfigError as exc:
            raise ConfigError(str(exc)) from None
    if name == "accounts":
        try:
            return parse_accounts(value)
        except AccountConfigError as exc:
            raise ConfigError(str(exc)) from None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{env_name} must be true or false, got {value!r}")
    if kind == "int":
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(f"{env_name} must be a whole number, got {value!r}") from None
    if kind == "float":
        try:
            return float(str(value).strip())
        except ValueError:
            raise ConfigError(f"{env_name} must be a number, got {value!r}") from None
    if kind.startswith("tuple"):
        items = value if isinstance(value, list | tuple) else str(value).split(",")
        return tuple(str(item).strip() for item in items if str(item).strip())
    return str(value)


def _read_config(path: Path, fields: Mapping[str, object]) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    for key in raw:
        if key in SECRET_FIELDS:
            raise ConfigError(
                f"{key} must not be set in {path}; set the {key.upper()} environment "
                "variable instead (secrets never live in config files)"
            )
        if key not in fields:
            raise ConfigError(f"unknown setting {key!r} in {path}")
    return raw


def load_settings(
    env: Mapping[str, str] | None = None, config_file: Path | None = DEFAULT_CONFIG
) -> Settings:
    """Read the TOML defaults, apply environment overrides, validate. Raises ConfigError."""
    env = os.environ if env is None else env
    raw: dict[str, object] = {}
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    # The defaults, then CONFIG_FILE (the deployment's own TOML, e.g. its [[oidc_clients]]).
    layers = [config_file] if config_file is not None and config_file.exists() else []
    if env.get("CONFIG_FILE"):
        layers.append(Path(env["CONFIG_FILE"]))
    for layer in layers:
        raw |= _read_config(layer, fields)
    for name in fields:
        if name.upper() in env:
            raw[name] = env[name.upper()]
    raw.update(_secrets_from_files(env))
    # Each value coerced to its field's type (_coerce), which mypy cannot follow by name.
    values: dict[str, Any] = {name: _coerce(name, v, fields[name].type) for name, v in raw.items()}
    if "accounts" in values:
        values["accounts"] = tuple(_with_secrets(entry, env) for entry in values["accounts"])
    settings = Settings(**values)
    if not settings.public_url:
        settings = dataclasses.replace(settings, public_url=f"http://localhost:{settings.port}")
    return _validate(_fill_sandbox(settings))


def _with_secrets(entry: AccountEntry, env: Mapping[str, str]) -> Account:
    """An [[accounts]] entry with its secrets, read from WECHAT_<NAME>_* (or their _FILE)."""
    secrets = {
        secret: _environment_secret(env, secret_variable(entry.name, secret))
        for secret in ("secret", "token", "aes_key")
    }
    return Account(entry.name, entry.kind, entry.appid, message_mode=entry.message_mode, **secrets)


def _environment_secret(env: Mapping[str, str], variable: str) -> str:
    """VARIABLE, or the file VARIABLE_FILE names (trailing newlines stripped)."""
    path = env.get(f"{variable}_FILE", "")
    if not path:
        return env.get(variable, "")
    if env.get(variable, ""):
        raise ConfigError(f"{variable} and {variable}_FILE are both set; set only one")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{variable}_FILE: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{variable}_FILE: {path} is not UTF-8 text") from None
    return text.rstrip("\r\n")


def jwt_key_set(s: Settings) -> KeySet:
    return load_key_set(
        s.jwt_algorithm,
        s.jwt_secret,
        s.jwt_private_key_file,
        s.jwt_previous_secrets,
        s.jwt_previous_key_files,
    )


def _fill_sandbox(settings: Settings) -> Settings:
    if not settings.sandbox:
        return settings
    if not settings.oidc_clients:
        settings = dataclasses.replace(settings, oidc_clients=sandbox_clients(settings.public_url))
    if not settings.accounts:
        settings = dataclasses.replace(settings, accounts=SANDBOX_ACCOUNTS)
    filled: dict[str, Any] = {k: v for k, v in SANDBOX_DEFAULTS.items() if not getattr(settings, k)}
    if filled:
        log.warning(
            "SANDBOX mode: using public development values for %s. Never use them in production.",
            ", ".join(k.upper() for k in sorted(filled)),
        )
    return dataclasses.replace(settings, **filled)


def _validate_oidc(s: Settings) -> None:
    if s.oidc_access_token_ttl <= 0:
        raise ConfigError("OIDC_ACCESS_TOKEN_TTL must be a positive number of seconds")
    asymmetric = s.oidc_private_key_file or s.jwt_algorithm in ("RS256", "ES256")
    if s.oidc_clients and not asymmetric and not s.sandbox:
        raise ConfigError(
            "OpenID Connect clients are configured but ID tokens need an RS256 or ES256 key: "
            "set OIDC_PRIVATE_KEY_FILE (or JWT_ALGORITHM=RS256/ES256 with its key file)"
        )
    if s.oidc_private_key_file:
        try:
            oidc_signing_key(s)
        except JwtKeyError as exc:
            raise ConfigError(f"OIDC_PRIVATE_KEY_FILE: {exc}") from None


def _validate_accounts(s: Settings) -> None:
    """Each configured account complete for its kind; sandbox values only in sandbox mode."""
    appids = [account.appid for account in s.all_accounts]
    if len(set(appids)) != len(appids):
        raise ConfigError("each account needs its own appid (WECHAT_APPID and [[accounts]])")
    sandbox_secrets = {
        value for account in SANDBOX_ACCOUNTS for value in (account.secret, account.token)
    }
    for account in s.accounts:
        needed = ("secret", "token") if account.official else ("secret",)
        for secret in needed:
            variable = secret_variable(account.name, secret)
            value = getattr(account, secret)
            if not value and not s.sandbox:
                raise ConfigError(
                    f"{variable} is not set: account {account.name} ({account.kind}) needs it"
                )
            if value in sandbox_secrets and not s.sandbox:
                raise ConfigError(
                    f"{variable} is a public sandbox value; set a real one outside SANDBOX mode"
                )
        if not account.official and (account.token or account.aes_key):
            raise ConfigError(
                f"account {account.name} is a website app: it has no server token or "
                f"EncodingAESKey ({secret_variable(account.name, 'token')}, "
                f"{secret_variable(account.name, 'aes_key')})"
            )
        if account.aes_key and len(account.aes_key) != 43:
            raise ConfigError(
                f"{secret_variable(account.name, 'aes_key')} must be WeChat's 43-character "
                "EncodingAESKey"
            )
        if account.message_mode != "plain" and not account.aes_key:
            raise ConfigError(
                f"account {account.name}: message_mode {account.message_mode} needs "
                f"{secret_variable(account.name, 'aes_key')}, the account's EncodingAESKey"
            )
    names = {account.name for account in s.all_accounts}
    for client in s.oidc_clients:
        if client.account and client.account not in names:
            raise ConfigError(
                f"oidc client {client.client_id!r}: account {client.account!r} is not configured"
            )


def oidc_signing_key(s: Settings) -> JwtKey | None:
    """The key ID tokens are signed with; None when none is configured (sandbox: ephemeral)."""
    if s.oidc_private_key_file:
        path = Path(s.oidc_private_key_file)
        key = pem_key(path, "ES256" if is_ec_key_file(path) else "RS256")
        if key.signing is None:
            raise JwtKeyError(f"{path} is a public key; signing needs the private key")
        return key
    current = jwt_key_set(s).current
    return current if current.algorithm in ("RS256", "ES256") else None


def _validate(s: Settings) -> Settings:
    _validate_branding(s)
    if not (0 <= s.port < 65536):
        raise ConfigError(f"PORT must be between 0 (any free port) and 65535, got {s.port}")
    if urlsplit(s.public_url).scheme not in ("http", "https") or not origin_of(s.public_url):
        raise ConfigError(f"PUBLIC_URL must be an absolute http(s) URL, got {s.public_url!r}")
    for origin in s.allowed_redirect_origins:
        if origin_of(origin) != origin.rstrip("/").lower() or urlsplit(origin).scheme not in (
            "http",
            "https",
        ):
            raise ConfigError(
                "ALLOWED_REDIRECT_ORIGINS entries must be origins like https://app.example.com "
                f"(scheme, host, optional port; no path), got {origin!r}"
            )
    if s.jwt_ttl <= 0:
        raise ConfigError(f"JWT_TTL must be a positive number of seconds, got {s.jwt_ttl}")
    _validate_accounts(s)
    _validate_oidc(s)
    if s.state_ttl <= 0:
        raise ConfigError(f"STATE_TTL must be a positive number of seconds, got {s.state_ttl}")
    if s.state_retention < 0:
        raise ConfigError(f"STATE_RETENTION must be 0 or more seconds, got {s.state_retention}")
    if s.state_binding not in ("optional", "required"):
        raise ConfigError(f"STATE_BINDING must be optional or required, got {s.state_binding!r}")
    if s.wechat_timeout <= 0:
        raise ConfigError(f"WECHAT_TIMEOUT must be positive, got {s.wechat_timeout}")
    if s.shutdown_timeout <= 0:
        # aiohttp takes 0 (or less) as "no limit": a drain that could hold a restart for ever.
        raise ConfigError(f"SHUTDOWN_TIMEOUT must be positive, got {s.shutdown_timeout}")
    if s.max_body_bytes < 1024:
        raise ConfigError(f"MAX_BODY_BYTES must be at least 1024, got {s.max_body_bytes}")
    if s.wechat_aes_key and len(s.wechat_aes_key) != 43:
        raise ConfigError("WECHAT_AES_KEY must be WeChat's 43-character EncodingAESKey")
    if s.jwt_algorithm not in ("HS256", "RS256", "ES256"):
        raise ConfigError(f"JWT_ALGORITHM must be HS256, RS256 or ES256, got {s.jwt_algorithm!r}")
    # The account of WECHAT_APPID is optional once [[accounts]] name others; half of it is not.
    single = not s.accounts or s.wechat_appid or s.wechat_secret or s.wechat_token
    required = ["wechat_appid", "wechat_secret", "wechat_token"] if single else []
    if s.jwt_algorithm == "HS256":
        required.append("jwt_secret")
    if not s.sandbox:
        for name in required:
            value = getattr(s, name)
            if not value:
                raise ConfigError(
                    f"{name.upper()} is not set. Set it in the environment, or run with "
                    "SANDBOX=1 to use the offline WeChat emulator with development values."
                )
            if value == SANDBOX_DEFAULTS[name]:
                raise ConfigError(
                    f"{name.upper()} is the public sandbox value; set a real one outside "
                    "SANDBOX mode"
                )
    # HS256 with a short key is brute-forceable offline from any issued token (RFC 7518 §3.2).
    for secret in (
        s.jwt_secret if s.jwt_algorithm == "HS256" else "x" * 32,
        *s.jwt_previous_secrets,
    ):
        if len(secret.encode()) < 32:
            raise ConfigError("JWT_SECRET and JWT_PREVIOUS_SECRETS must be at least 32 bytes long")
    try:
        parse_data_keys(s.data_keys)
    except SealingError as exc:
        raise ConfigError(f"DATA_KEYS: {exc}") from None
    try:
        jwt_key_set(s)
    except JwtKeyError as exc:
        raise ConfigError(f"JWT keys: {exc}") from None
    for name in ("rate_limit_authorize", "rate_limit_jwt", "rate_limit_qrcode"):
        if getattr(s, name) < 0:
            raise ConfigError(f"{name.upper()} must be 0 (off) or more, got {getattr(s, name)}")
    if s.rate_limit_burst < 1:
        raise ConfigError(f"RATE_LIMIT_BURST must be at least 1, got {s.rate_limit_burst}")
    for entry in s.trusted_proxies:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"TRUSTED_PROXIES has {entry!r}, which is not an IP address or network"
            ) from None
    if s.log_format not in ("json", "text"):
        raise ConfigError(f"LOG_FORMAT must be json or text, got {s.log_format!r}")
    if s.wechat_message_mode not in ("plain", "compatible", "safe"):
        raise ConfigError(
            f"WECHAT_MESSAGE_MODE must be plain, compatible or safe, got {s.wechat_message_mode!r}"
        )
    if not 30 <= s.push_max_age <= 3600:
        raise ConfigError(
            "PUSH_MAX_AGE must be between 30 and 3600 seconds (WeChat stamps each push when it "
            f"sends it and retries within about 15 s), got {s.push_max_age}"
        )
    if s.wechat_message_mode != "plain" and not s.wechat_aes_key:
        raise ConfigError(
            f"WECHAT_MESSAGE_MODE={s.wechat_message_mode} needs WECHAT_AES_KEY, the account's "
            "EncodingAESKey"
        )
    if not 60 <= s.qrcode_expire_seconds <= 2592000:
        raise ConfigError(
            "QRCODE_EXPIRE_SECONDS must be between 60 and 2592000 (WeChat's 30 days), "
            f"got {s.qrcode_expire_seconds}"
        )
    if not 60 <= s.qr_login_ttl <= 3600:
        raise ConfigError(f"QR_LOGIN_TTL must be between 60 and 3600, got {s.qr_login_ttl}")
    if not 1 <= s.qrcode_daily_budget <= 100_000:
        raise ConfigError(
            "QRCODE_DAILY_BUDGET must be between 1 and 100000 (WeChat's daily qrcode/create "
            f"quota for the whole account), got {s.qrcode_daily_budget}"
        )
    if s.base_token_source not in ("stable", "token"):
        raise ConfigError(f"BASE_TOKEN_SOURCE must be stable or token, got {s.base_token_source!r}")
    # stable_token hands out a new token only in the last 300 s of the old one's life; asking
    # earlier just returns the same token, so the margin must fall inside that window.
    if not 0 < s.base_token_refresh_margin < 300:
        raise ConfigError(
            "BASE_TOKEN_REFRESH_MARGIN must be between 1 and 299 seconds "
            f"(WeChat renews a token only in its last 300 s), got {s.base_token_refresh_margin}"
        )
    if not 0 < s.token_check_interval * 1.25 + s.lease_ttl < s.base_token_refresh_margin:
        raise ConfigError(
            "TOKEN_CHECK_INTERVAL (plus its 25% jitter) and LEASE_TTL together must stay under "
            "BASE_TOKEN_REFRESH_MARGIN, or a renewal could be missed"
        )
    if s.lease_ttl < 5:
        raise ConfigError(f"LEASE_TTL must be at least 5 seconds, got {s.lease_ttl}")
    # The base-token lease is extended before each retry of a fetch, so it must outlive one
    # WeChat call with room to spare (MongoDB round trips, instances' clocks disagreeing): a
    # lease that runs out mid-call lets a second instance fetch too, and a second cgi-bin/token
    # cuts the first token's life to 5 minutes.
    if s.lease_ttl < 3 * s.wechat_timeout:
        raise ConfigError(
            f"LEASE_TTL ({s.lease_ttl} s) must be at least 3 x WECHAT_TIMEOUT "
            f"({s.wechat_timeout:g} s): the instance fetching the base token must keep its lease "
            "for a whole WeChat call"
        )
    if s.wechat_retry_delay < 0:
        raise ConfigError(f"WECHAT_RETRY_DELAY must not be negative, got {s.wechat_retry_delay}")
    if s.web_token_keep_alive not in ("all", "recent", "none"):
        raise ConfigError(
            f"WEB_TOKEN_KEEP_ALIVE must be all, recent or none, got {s.web_token_keep_alive!r}"
        )
    for name in (
        "web_token_recent_days",
        "web_token_refresh_margin",
        "web_token_sweep_interval",
        "web_token_concurrency",
        "web_token_batch_size",
    ):
        if getattr(s, name) < 1:
            raise ConfigError(f"{name.upper()} must be at least 1, got {getattr(s, name)}")
    if s.web_token_refresh_rate <= 0:
        raise ConfigError(f"WEB_TOKEN_REFRESH_RATE must be above 0, got {s.web_token_refresh_rate}")
    if s.admin_key and len(s.admin_key) < 16 and not s.sandbox:
        raise ConfigError("ADMIN_KEY must be at least 16 characters long")
    if s.admin_key == SANDBOX_DEFAULTS["admin_key"] and not s.sandbox:
        raise ConfigError("ADMIN_KEY is the public sandbox value; set a real one")
    parse_api_keys(s.api_keys)
    # Outside sandbox mode, data that vanishes on restart must be asked for, not fallen into
    # because a variable was left out of a deployment.
    if not s.mongodb_uri and not s.sandbox:
        raise ConfigError(
            "MONGODB_URI is not set. Set it to a MongoDB server (mongodb://… or mongodb+srv://…), "
            f"or to {EMBEDDED_STORE_URI} to use the embedded in-memory store (data lost on "
            "restart, not shared between instances: development only)"
        )
    # The embedded store is a development dependency: a production image has only pymongo.
    if uses_embedded_store(s) and importlib.util.find_spec("mongomock_motor") is None:
        raise ConfigError(
            "MONGODB_URI selects the embedded development store, which is not installed "
            "(pip install '.[dev]'); set MONGODB_URI to a MongoDB server"
        )
    _validate_deployment(s)
    return s


# API_KEYS: each entry "name:key"; a name says who calls (logs, metrics), never the key.
API_KEY_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
API_KEY_MIN_LENGTH = 16


def parse_api_keys(entries: tuple[str, ...]) -> dict[str, str]:
    """API_KEYS as {name: key}. A refusal names the entry's name or position, never a key."""
    keys: dict[str, str] = {}
    for position, entry in enumerate(entries, 1):
        name, colon, key = entry.partition(":")
        name, key = name.strip(), key.strip()
        if not colon or not API_KEY_NAME.fullmatch(name):
            raise ConfigError(
                f"API_KEYS: entry {position} is not name:key with a name of 1 to 64 of "
                "A-Z a-z 0-9 . _ -"
            )
        if name in keys:
            raise ConfigError(f"API_KEYS names {name} twice")
        if len(key) < API_KEY_MIN_LENGTH:
            raise ConfigError(
                f"API_KEYS: the key of {name} must be at least {API_KEY_MIN_LENGTH} characters"
            )
        same = [other for other, known in keys.items() if known == key]
        if same:
            raise ConfigError(f"API_KEYS: {same[0]} and {name} have the same key")
        keys[name] = key
    return keys


# -- deployment --

# WeChat names its domain verification files so; anything larger than this is not one.
VERIFY_FILE_NAME = re.compile(r"MP_verify_[A-Za-z0-9]+\.txt")
VERIFY_FILE_MAX_BYTES = 4096


def _secrets_from_files(env: Mapping[str, str]) -> dict[str, str]:
    """Each secret whose NAME_FILE is set (Docker and Kubernetes secrets): the file's text,
    trailing newlines stripped. A refusal names the variable and the path, never the content."""
    return {
        name: _environment_secret(env, name.upper())
        for name in SECRET_FIELDS
        if env.get(f"{name.upper()}_FILE", "")
    }


def _validate_deployment(s: Settings) -> None:
    _validate_metrics_port(s)
    verify_files(s)


def _validate_metrics_port(s: Settings) -> None:
    if not 0 <= s.metrics_port < 65536:
        raise ConfigError(
            f"METRICS_PORT must be between 0 (metrics on PORT) and 65535, got {s.metrics_port}"
        )
    if s.metrics_port and s.metrics_port == s.port:
        raise ConfigError(
            f"METRICS_PORT must differ from PORT ({s.port}); 0 serves /metrics on PORT itself"
        )


def verify_files(s: Settings) -> dict[str, bytes]:
    """WECHAT_VERIFY_FILES read: each file's name (served at /<name>) and its content."""
    files: dict[str, bytes] = {}
    for entry in s.wechat_verify_files:
        path = Path(entry)
        if not VERIFY_FILE_NAME.fullmatch(path.name):
            raise ConfigError(
                f"WECHAT_VERIFY_FILES: {entry!r} is not named MP_verify_<letters and digits>.txt, "
                "as WeChat names its verification files"
            )
        if path.name in files:
            raise ConfigError(f"WECHAT_VERIFY_FILES names {path.name} twice")
        try:
            with path.open("rb") as fh:
                content = fh.read(VERIFY_FILE_MAX_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"WECHAT_VERIFY_FILES: cannot read {entry}: {exc.strerror}") from None
        if len(content) > VERIFY_FILE_MAX_BYTES:
            raise ConfigError(
                f"WECHAT_VERIFY_FILES: {entry} is over {VERIFY_FILE_MAX_BYTES} bytes; WeChat's "
                "verification files hold a short code"
            )
        files[path.name] = content
    return files


def _validate_branding(s: Settings) -> None:
    """APP_NAME, and APP_LOGO_FILE read now: a missing or wrong file stops the start."""
    from service.pipeline.branding import LogoError, check_app_name, load_logo

    problem = check_app_name(s.app_name)
    if problem:
        raise ConfigError(f"APP_NAME {problem}")
    if s.app_logo_file:
        try:
            load_logo(s.app_logo_file)
        except LogoError as exc:
            raise ConfigError(f"APP_LOGO_FILE: {exc}") from None
