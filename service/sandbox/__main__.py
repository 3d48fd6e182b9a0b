"""`python -m service.sandbox`: the emulator alone, for tests and for other apps' development."""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from service.clock import ManualClock, SystemClock
from service.config import SANDBOX_DEFAULTS
from service.listening import bind_any_port, bound_port
from service.logs import AccessLogger, configure_logging
from service.sandbox.app import create_sandbox_app
from service.sandbox.state import (
    DEFAULT_WEBSITE_APPID,
    DEFAULT_WEBSITE_SECRET,
    MESSAGE_MODES,
    SandboxAccount,
    SandboxConfig,
)

log = logging.getLogger("service.sandbox")

ACCOUNT_FIELDS = ("appid", "secret", "token", "aes_key", "message_url")
ACCOUNT_KEYS = (*ACCOUNT_FIELDS, "message_mode", "original_id", "ip_whitelist")
ACCOUNT_HELP = (
    "one more Official Account (repeatable): appid:secret[:token[:aes_key[:message_url]]] "
    "(plain mode, or safe mode when an aes_key is given; its 原始ID derived from the appid), "
    "or key=value pairs separated by commas: appid=…,secret=…,token=…,aes_key=…,"
    "message_url=…,message_mode=plain|compatible|safe,original_id=gh_…,ip_whitelist=IP;IP"
)


def parse_account(value: str) -> SandboxAccount:
    """--account: appid:secret[:token[:aes_key[:message_url]]], or key=value,key=value,…

    The colon form leaves the message mode to the key: safe with an aes_key, plain without.
    """
    if value.startswith("appid="):
        fields: dict[str, str] = {}
        for pair in value.split(","):
            key, sep, item = pair.partition("=")
            if not sep or key not in ACCOUNT_KEYS:
                raise ValueError(f"--account: unknown or malformed {pair!r}")
            fields[key] = item
        whitelist = tuple(a for a in fields.pop("ip_whitelist", "").split(";") if a)
        return SandboxAccount(**fields, ip_whitelist=whitelist)
    parts = value.split(":", len(ACCOUNT_FIELDS) - 1)  # the message_url keeps its own colons
    if len(parts) < 2 or not all(parts[:2]):
        raise ValueError("--account is appid:secret[:token[:aes_key[:message_url]]]")
    named = dict(zip(ACCOUNT_FIELDS, parts, strict=False))
    mode = "safe" if named.get("aes_key") else "plain"
    return SandboxAccount(**named, message_mode=mode)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.sandbox", description="An offline WeChat for development."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3100, help="0: any free port (logged)")
    parser.add_argument("--appid", default=SANDBOX_DEFAULTS["wechat_appid"])
    parser.add_argument("--secret", default=SANDBOX_DEFAULTS["wechat_secret"])
    parser.add_argument(
        "--domain", default="localhost", help="the authorized domain redirect_uri must use"
    )
    parser.add_argument(
        "--manual-clock",
        action="store_true",
        help='time stands still until POST /_sandbox/clock {"advance": seconds} moves it',
    )
    parser.add_argument(
        "--ip-whitelist",
        default="",
        metavar="IP,IP,...",
        help="the account's IP whitelist: cgi-bin/token and stable_token answer 40164 to other "
        "callers (default: none configured, nobody refused; PUT /_sandbox/ip-whitelist changes it)",
    )
    server = parser.add_argument_group("the account's server (pushes, §10 and §11)")
    server.add_argument(
        "--message-url",
        default="",
        help="where events are pushed (scans of QR codes, unfollows); none: scans are refused",
    )
    server.add_argument("--token", default=SANDBOX_DEFAULTS["wechat_token"], help="the Token")
    server.add_argument(
        "--aes-key",
        default=SANDBOX_DEFAULTS.get("wechat_aes_key", ""),
        help="the 43-character EncodingAESKey (compatible and safe modes)",
    )
    server.add_argument("--message-mode", choices=MESSAGE_MODES, default="plain")
    server.add_argument("--original-id", default="gh_5a4db0c0ffee", help="the account's 原始ID")
    server.add_argument(
        "--push-timeout", type=float, default=5.0, help="seconds to wait for each reply"
    )
    server.add_argument(
        "--push-retry-delay",
        type=float,
        default=None,
        help="seconds before retrying a push answered 5xx or refused (default: --push-timeout)",
    )
    server.add_argument(
        "--website-appid",
        default=DEFAULT_WEBSITE_APPID,
        help="the Open Platform website app's appid (connect/qrconnect); empty: none",
    )
    server.add_argument("--website-secret", default=DEFAULT_WEBSITE_SECRET)
    server.add_argument("--website-domain", default="", help="its 授权回调域 (default: --domain)")
    more = parser.add_argument_group(
        "more Official Accounts, beside the one above (which stays the first, the default)"
    )
    more.add_argument(
        "--account", action="append", default=[], metavar="APPID:SECRET[:…]", help=ACCOUNT_HELP
    )
    args = parser.parse_args(argv)
    try:
        more_accounts = tuple(parse_account(value) for value in args.account)
        config = SandboxConfig(
            appid=args.appid,
            secret=args.secret,
            authorized_domain=args.domain,
            token=args.token,
            aes_key=args.aes_key,
            message_url=args.message_url,
            message_mode=args.message_mode,
            original_id=args.original_id,
            push_timeout=args.push_timeout,
            push_retry_delay=args.push_retry_delay,
            ip_whitelist=tuple(a.strip() for a in args.ip_whitelist.split(",") if a.strip()),
            website_appid=args.website_appid,
            website_secret=args.website_secret,
            website_domain=args.website_domain,
            more_accounts=more_accounts,
        )
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    configure_logging("INFO", "text")
    clock = ManualClock() if args.manual_clock else SystemClock()
    # --port 0: any free port, bound here so the log names the real one.
    listening = bind_any_port(args.host) if args.port == 0 else None
    port = bound_port(listening) if listening else args.port
    base = f"http://{args.host}:{port}"
    log.warning(
        "WeChat emulator for appid %s (domain %s): authorize at %s/connect/oauth2/authorize, "
        "API at %s/sns/... and %s/cgi-bin/..., users at %s/_sandbox/users, phone at "
        "%s/_sandbox/phone; pushes to %s",
        args.appid,
        args.domain,
        base,
        base,
        base,
        base,
        base,
        f"{args.message_url} ({args.message_mode} mode)" if args.message_url else "nowhere",
    )
    for account in more_accounts:
        log.warning(
            "... and for appid %s (原始ID %s): pushes to %s",
            account.appid,
            account.original_id,
            f"{account.message_url} ({account.message_mode} mode)"
            if account.message_url
            else "nowhere",
        )
    web.run_app(
        create_sandbox_app(config, clock),
        host=None if listening else args.host,
        port=None if listening else args.port,
        sock=listening,
        access_log_class=AccessLogger,
        print=lambda *_: None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
