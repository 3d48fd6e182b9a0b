"""MongoDB: the collections, their indexes, and every query the service makes.

The same code runs on pymongo's AsyncMongoClient (a real server) and on mongomock-motor (the
embedded store), so it keeps to operations both implement as MongoDB documents them.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from .clock import Clock, utc
from .config import Settings

log = logging.getLogger(__name__)

# WeChat: a web refresh_token lives 30 days from the authorization and cannot be extended.
REFRESH_TOKEN_LIFETIME = 30 * 24 * 3600
# A used or expired state is kept this long after its expiry so the callback page can offer
# "try again" with the app's redirectUri; then MongoDB's TTL monitor removes it.
STATE_RETENTION = 3600


class Store:
    def __init__(self, db: Any, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self.states = db["oauth_states"]
        self.users = db["users"]
        self.web_tokens = db["web_tokens"]

    async def ensure_indexes(self) -> None:
        # The state string is the _id, so it is unique without a second index.
        await self.states.create_index("purgeAt", expireAfterSeconds=0, name="purge_ttl")
        await self.users.create_index("openid", unique=True, name="openid_unique")
        await self.users.create_index(
            "unionid",
            name="unionid",
            partialFilterExpression={"unionid": {"$type": "string"}},
        )
        await self.web_tokens.create_index(
            [("openid", ASCENDING), ("scope", ASCENDING)], unique=True, name="openid_scope_unique"
        )
        await self.web_tokens.create_index(
            [("status", ASCENDING), ("accessTokenExpiresAt", ASCENDING)], name="refresh_due"
        )

    async def ping(self) -> None:
        await self.db.command("ping")

    # -- authorization states ---------------------------------------------------------------

    async def create_state(
        self, state: str, *, redirect_uri: str, callback: str, scope: str, ttl: int
    ) -> None:
        now = self.clock.now()
        await self.states.insert_one(
            {
                "_id": state,
                "redirectUri": redirect_uri,
                "callback": callback,
                "scope": scope,
                "createdAt": utc(now),
                "expiresAt": utc(now + ttl),
                "purgeAt": utc(now + ttl + STATE_RETENTION),
                "usedAt": None,
            }
        )

    async def consume_state(self, state: str) -> dict[str, Any] | None:
        """Mark a live, unused state used and return it; None if unknown, expired or used.

        One findAndModify, so two requests racing with the same state cannot both win.
        """
        now = utc(self.clock.now())
        return await self.states.find_one_and_update(
            {"_id": state, "usedAt": None, "expiresAt": {"$gt": now}},
            {"$set": {"usedAt": now}},
            return_document=ReturnDocument.AFTER,
        )

    async def release_state(self, doc: dict[str, Any]) -> None:
        """Undo consume_state after a failure that left the code unused (WeChat unreachable)."""
        await self.states.update_one(
            {"_id": doc["_id"], "usedAt": doc["usedAt"]}, {"$set": {"usedAt": None}}
        )

    async def find_state(self, state: str) -> dict[str, Any] | None:
        """A state whatever its condition, until it is purged: for 'try again'."""
        return await self.states.find_one({"_id": state})

    # -- users ----------------------------------------------------------------------------

    async def record_login(
        self, openid: str, unionid: str | None, profile: dict[str, Any] | None
    ) -> dict[str, Any]:
        now = utc(self.clock.now())
        fields: dict[str, Any] = {"lastLoginAt": now, "updatedAt": now}
        if unionid:
            fields["unionid"] = unionid
        if profile:
            fields.update(profile)
        update = {
            "$set": fields,
            # The filter's openid is copied into an inserted document; only the rest goes here.
            "$setOnInsert": {"firstLoginAt": now},
            "$inc": {"loginCount": 1},
        }
        for attempt in range(2):
            try:
                return await self.users.find_one_and_update(
                    {"openid": openid}, update, upsert=True, return_document=ReturnDocument.AFTER
                )
            except DuplicateKeyError:
                # Two first logins raced on the unique index; the second is now a plain update.
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def get_user(self, openid: str) -> dict[str, Any] | None:
        return await self.users.find_one({"openid": openid})

    # -- web (per-user) access tokens ---------------------------------------------------------

    async def save_web_token(
        self,
        *,
        openid: str,
        scope: str,
        access_token: str,
        refresh_token: str,
        expires_in: int,
        unionid: str | None,
    ) -> None:
        now = self.clock.now()
        fields: dict[str, Any] = {
            "accessToken": access_token,
            "refreshToken": refresh_token,
            "accessTokenExpiresAt": utc(now + expires_in),
            "refreshTokenExpiresAt": utc(now + REFRESH_TOKEN_LIFETIME),
            "status": "active",
            "obtainedAt": utc(now),
            "updatedAt": utc(now),
            "lastUsedAt": utc(now),
        }
        if unionid:
            fields["unionid"] = unionid
        update = {"$set": fields}  # an upsert takes openid and scope from the filter
        for attempt in range(2):
            try:
                await self.web_tokens.update_one(
                    {"openid": openid, "scope": scope}, update, upsert=True
                )
                return
            except DuplicateKeyError:
                if attempt:
                    raise

    async def get_web_token(self, openid: str, scope: str) -> dict[str, Any] | None:
        return await self.web_tokens.find_one({"openid": openid, "scope": scope})


@asynccontextmanager
async def open_database(settings: Settings, client: Any = None) -> AsyncIterator[Any]:
    """The configured database; an injected client is shared and left open."""
    own = client is None
    if client is None:
        if settings.mongodb_uri:
            from pymongo import AsyncMongoClient

            client = AsyncMongoClient(
                settings.mongodb_uri,
                tz_aware=True,
                appname="wechat-oa-auth",
                serverSelectionTimeoutMS=5000,
            )
        else:
            client = embedded_client()
            log.warning(
                "MONGODB_URI is not set: using the EMBEDDED IN-MEMORY store. "
                "All states, users and tokens are LOST ON RESTART and not shared between "
                "instances. Set MONGODB_URI for anything but development."
            )
    try:
        yield client[settings.mongodb_db]
    finally:
        if own:
            result = client.close()
            if inspect.isawaitable(result):
                await result


def embedded_client() -> Any:
    from mongomock_motor import AsyncMongoMockClient

    return AsyncMongoMockClient(tz_aware=True)
