"""`python -m service.sandbox`: the emulator alone, for tests and for other apps' development."""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from ..clock import ManualClock, SystemClock
from ..config import SANDBOX_DEFAULTS
from ..logs import PathOnlyAccessLogger, configure_logging
from .app import create_sandbox_app
from .state import SandboxConfig

log = logging.getLogger("service.sandbox")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.sandbox", description="An offline WeChat for development."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3100)
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
    args = parser.parse_args(argv)
    configure_logging("INFO")
    clock = ManualClock() if args.manual_clock else SystemClock()
    config = SandboxConfig(appid=args.appid, secret=args.secret, authorized_domain=args.domain)
    base = f"http://{args.host}:{args.port}"
    log.warning(
        "WeChat emulator for appid %s (domain %s): authorize at %s/connect/oauth2/authorize, "
        "API at %s/sns/... and %s/cgi-bin/..., users at %s/_sandbox/users",
        args.appid,
        args.domain,
        base,
        base,
        base,
        base,
    )
    web.run_app(
        create_sandbox_app(config, clock),
        host=args.host,
        port=args.port,
        access_log_class=PathOnlyAccessLogger,
        print=lambda *_: None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
