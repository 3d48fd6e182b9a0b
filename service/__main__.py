"""`python -m service`: load settings, configure logging, serve."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from .app import create_app
from .config import ConfigError, load_settings
from .logs import PathOnlyAccessLogger, configure_logging

log = logging.getLogger("service")


def main() -> int:
    configure_logging("INFO")
    try:
        settings = load_settings()
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        return 2
    logging.getLogger().setLevel(settings.log_level.upper())
    if settings.sandbox:
        log.warning(
            "SANDBOX mode: WeChat is the built-in emulator at %s/sandbox/. Open %s/ to sign in.",
            settings.public_url.rstrip("/"),
            settings.public_url.rstrip("/"),
        )
    log.info(
        "listening on %s:%s (public URL %s)", settings.host, settings.port, settings.public_url
    )
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log_class=PathOnlyAccessLogger,
        print=lambda *_: None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
