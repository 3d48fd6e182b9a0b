"""`python -m service`: load settings, configure logging, serve."""

from __future__ import annotations

import gc
import logging
import os
import socket
import sys

from aiohttp import web

from service.app import create_app
from service.config import ConfigError, load_settings
from service.listening import bind_any_port, bound_port
from service.logs import AccessLogger, configure_logging
from service.store.connection import StoreUnavailable

log = logging.getLogger("service")


async def freeze_startup_heap(app: web.Application) -> None:
    """Leave what start-up built (modules, settings, routes, templates, clients: some 70,000
    objects) out of every later garbage collection: a full collection walked all of them, a
    pause of about 20 ms that every request in flight waited out, and collections of the
    younger generations cost a little less too. Runs after the cleanup contexts started."""
    gc.collect()
    gc.freeze()


def main() -> int:
    # Until the settings are read, log as LOG_FORMAT asks (if it is valid), so even a
    # start-up refusal reaches the log collector in its format.
    configure_logging("INFO", "text" if os.environ.get("LOG_FORMAT") == "text" else "json")
    try:
        settings = load_settings()
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    listening: socket.socket | None = None
    if settings.port == 0:
        # PUBLIC_URL's default and the sandbox's push target follow the port bound.
        listening = bind_any_port(settings.host)
        env = {**os.environ, "PORT": str(bound_port(listening))}
        settings = load_settings(env)
    if settings.sandbox:
        log.warning(
            "SANDBOX mode: WeChat is the built-in emulator at %s/sandbox/. Open %s/ to sign in.",
            settings.public_url.rstrip("/"),
            settings.public_url.rstrip("/"),
        )
    log.info(
        "listening on %s:%s (public URL %s)", settings.host, settings.port, settings.public_url
    )
    if settings.metrics_port:
        log.info("metrics on %s:%s/metrics only", settings.host, settings.metrics_port)
    app = create_app(settings)
    app.on_startup.append(freeze_startup_heap)
    try:
        web.run_app(
            app,
            host=None if listening else settings.host,
            port=None if listening else settings.port,
            sock=listening,
            access_log_class=AccessLogger,
            # On SIGTERM: stop accepting, let in-flight requests finish, then run the cleanup
            # contexts (scheduler stopped, lease released, Mongo client and HTTP session closed).
            shutdown_timeout=settings.shutdown_timeout,
            print=lambda *_: None,
        )
    except StoreUnavailable as exc:
        # One line an operator can act on; the container's restart policy tries again.
        log.error("cannot start: %s", exc)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
