"""The WeChat accounts the service serves: Official Accounts and Open Platform website apps.

WeChat's documentation asks every account to have one central token server (中控服务器), and a
team usually has several accounts: one service serves them all, each by a name. The
single-account settings (WECHAT_APPID, WECHAT_SECRET, …) are the account named `default`;
more come as tables in the deployment's TOML file (CONFIG_FILE):

    [[accounts]]
    name = "second"          # a-z, 0-9, _ ; names its secrets: WECHAT_SECOND_SECRET, …
    kind = "oa"              # an Official Account (公众号); "website": a website app (网站应用)
    appid = "wx…"
    message_mode = "safe"    # oa only: how WeChat pushes to /wechat/message/second

Secrets never live there: an account's AppSecret is WECHAT_<NAME>_SECRET, an Official
Account's server token and EncodingAESKey WECHAT_<NAME>_TOKEN and WECHAT_<NAME>_AES_KEY (each
also as <VARIABLE>_FILE). ACCOUNTS takes the same tables as a JSON array.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from service.config_tables import table_list
from service.params import Text

DEFAULT_ACCOUNT = "default"
OFFICIAL = "oa"
WEBSITE = "website"
KINDS = (OFFICIAL, WEBSITE)
MESSAGE_MODES = ("plain", "compatible", "safe")
# Lower case, so WECHAT_<NAME>_SECRET is one unambiguous environment variable.
ACCOUNT_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
APPID = re.compile(r"wx[0-9a-f]{16}")
# The secrets of one account, and the environment variables they come from.
SECRET_SUFFIXES = {"secret": "SECRET", "token": "TOKEN", "aes_key": "AES_KEY"}

ACCOUNT = Text(
    "account",
    "Which account: its name in the service's configuration (`default` is the one of "
    "WECHAT_APPID) or its appid. Left out: the first account configured.",
    pattern=re.compile(r"[A-Za-z0-9_-]{1,64}"),
    max_length=64,
    example="default",
)


class AccountConfigError(ValueError):
    """An account entry that cannot serve; the message names the account and the field."""


@dataclass(frozen=True, slots=True)
class Account:
    """One WeChat app: who it is, what kind, and its secrets (never shown by repr)."""

    name: str
    kind: str
    appid: str
    secret: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    aes_key: str = field(default="", repr=False)
    message_mode: str = "plain"

    @property
    def official(self) -> bool:
        """An Official Account: base token, QR codes, pushes, JS-SDK. A website app signs in
        only (WeChat_Login)."""
        return self.kind == OFFICIAL


@dataclass(frozen=True, slots=True)
class AccountEntry:
    """An account as config/ describes it, before its secrets are read from the environment."""

    name: str
    kind: str
    appid: str
    message_mode: str = "plain"


def secret_variable(name: str, secret: str) -> str:
    """WECHAT_<NAME>_SECRET and its siblings for the account `name`."""
    return f"WECHAT_{name.upper()}_{SECRET_SUFFIXES[secret]}"


def parse_accounts(value: object) -> tuple[AccountEntry, ...]:
    """[[accounts]] tables from TOML, or ACCOUNTS as a JSON array of the same objects."""
    items = table_list(value, "accounts", AccountConfigError)
    entries = tuple(_entry(item, index) for index, item in enumerate(items))
    for attribute in ("name", "appid"):
        seen = [getattr(entry, attribute) for entry in entries]
        if len(set(seen)) != len(seen):
            raise AccountConfigError(f"accounts: each {attribute} must be unique")
    return entries


def _entry(item: object, index: int) -> AccountEntry:
    if isinstance(item, AccountEntry):
        return item
    if not isinstance(item, Mapping):
        raise AccountConfigError(f"accounts[{index}] must be a table")
    unknown = set(item) - {"name", "kind", "appid", "message_mode"}
    if unknown & {"secret", "token", "aes_key"}:
        raise AccountConfigError(
            f"accounts[{index}]: secrets never live in config files; set "
            "WECHAT_<NAME>_SECRET, WECHAT_<NAME>_TOKEN, WECHAT_<NAME>_AES_KEY instead"
        )
    if unknown:
        raise AccountConfigError(f"accounts[{index}]: unknown keys {sorted(unknown)}")
    name = item.get("name")
    if not isinstance(name, str) or not ACCOUNT_NAME.fullmatch(name):
        raise AccountConfigError(
            f"accounts[{index}].name must be 1 to 32 of a-z 0-9 _, starting with a letter"
        )
    if name == DEFAULT_ACCOUNT:
        raise AccountConfigError(
            "accounts: the name default belongs to the account of WECHAT_APPID; name this one "
            "otherwise"
        )
    kind = item.get("kind", OFFICIAL)
    if kind not in KINDS:
        raise AccountConfigError(f"account {name}: kind must be oa or website, got {kind!r}")
    appid = item.get("appid")
    if not isinstance(appid, str) or not APPID.fullmatch(appid):
        raise AccountConfigError(
            f"account {name}: appid must be WeChat's wx and 16 hexadecimal digits"
        )
    mode = item.get("message_mode", "plain")
    if mode not in MESSAGE_MODES:
        raise AccountConfigError(
            f"account {name}: message_mode must be plain, compatible or safe, got {mode!r}"
        )
    if kind == WEBSITE and "message_mode" in item:
        raise AccountConfigError(f"account {name}: a website app receives no pushes")
    return AccountEntry(name, kind, appid, mode)
