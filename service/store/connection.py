"""The connection to MongoDB: a server from MONGODB_URI, or the embedded in-memory store."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from service.config import Settings, uses_embedded_store
from service.store.embedded import embedded_client, settled

log = logging.getLogger(__name__)

# How long start-up waits for MongoDB unless MONGODB_URI says (serverSelectionTimeoutMS=...).
SERVER_SELECTION_TIMEOUT_MS = 5000
# pymongo logs every command and reply at DEBUG, documents included ("only sensitive
# authentication command contents are redacted", pymongo's logging docs): the stored access
# tokens, refresh tokens and sign-in scenes would reach the log at LOG_LEVEL=DEBUG.
PYMONGO_LOGGERS = "pymongo"
PYMONGO_LEAST_LEVEL = logging.INFO


def quiet_driver_logs() -> None:
    """pymongo's loggers no lower than INFO, whatever LOG_LEVEL (or a test) sets the root to."""
    driver = logging.getLogger(PYMONGO_LOGGERS)
    # Its own level, not the effective one: the root's may be lowered later (caplog does).
    driver.setLevel(max(driver.level, PYMONGO_LEAST_LEVEL))


class StoreUnavailable(Exception):
    """MongoDB did not answer at start-up, or refused the service (authentication, rights)."""


@asynccontextmanager
async def open_database(settings: Settings, client: Any = None) -> AsyncIterator[Any]:
    """The configured database; an injected client is shared and left open."""
    quiet_driver_logs()
    own = client is None
    if client is None:
        if not uses_embedded_store(settings):
            from pymongo import AsyncMongoClient

            # Keyword options would override the URI's; this one only applies if it is absent.
            timeout: dict[str, Any] = (
                {}
                if "serverselectiontimeoutms" in settings.mongodb_uri.lower()
                else {"serverSelectionTimeoutMS": SERVER_SELECTION_TIMEOUT_MS}
            )
            client = AsyncMongoClient(
                settings.mongodb_uri, tz_aware=True, appname="wechat-oa-auth", **timeout
            )
        else:
            client = embedded_client()
            log.warning(
                "Using the EMBEDDED IN-MEMORY store (MONGODB_URI=memory://, or unset in sandbox "
                "mode). All states, users and tokens are LOST ON RESTART and not shared between "
                "instances. Set MONGODB_URI to a MongoDB server for anything but development."
            )
    try:
        yield client[settings.mongodb_db]
    finally:
        if own:
            await settled(client.close())
