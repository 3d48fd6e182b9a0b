"""The offline WeChat emulator: WeChat's OAuth and cgi-bin endpoints, as documented."""

from service.sandbox.app import SANDBOX_KEY, SandboxConfig, SandboxWeChat, create_sandbox_app
from service.sandbox.state import SandboxAccount
from service.sandbox.users import (
    SANDBOX_USERS,
    SNAPSHOT_USER,
    SandboxUser,
    account_openid,
    account_unionid,
)

__all__ = [
    "SANDBOX_KEY",
    "SANDBOX_USERS",
    "SNAPSHOT_USER",
    "SandboxAccount",
    "SandboxConfig",
    "SandboxUser",
    "SandboxWeChat",
    "account_openid",
    "account_unionid",
    "create_sandbox_app",
]
