"""MongoDB: the collections, their indexes, and every query the service makes.

The same code runs on pymongo's AsyncMongoClient (a real server) and on mongomock-motor (the
embedded store), so it keeps to operations both implement as MongoDB documents them.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from service.clock import Clock, utc
from service.store.connection import StoreUnavailable
from service.store.embedded import settled
from service.store.group_insert import GroupInsert
from service.store.sealing import Sealer

log = logging.getLogger(__name__)

T = TypeVar("T")

# WeChat: a web refresh_token lives 30 days from the authorization and cannot be extended.
REFRESH_TOKEN_LIFETIME = 30 * 24 * 3600


def _context(field: str, openid: str, scope: str) -> str:
    """What a sealed token is bound to: its field and its (openid, scope) document."""
    return f"web_tokens/{field}/{openid}/{scope}"


SEALED_FIELDS = ("accessToken", "refreshToken")


# An Open Platform binds a handful of accounts: the cap only bounds linked_users' answer.
LINKED_USERS_LIMIT = 50

# Indexes of the version before accounts, replaced by ones that lead with the appid.
UNSCOPED_INDEXES = {
    "users": ("openid_unique",),
    "web_tokens": ("openid_scope_unique", "refresh_due"),
}

# MongoDB's IndexNotFound: dropIndexes of a name that is not (or no longer) there.
INDEX_NOT_FOUND = 27


def scoped_key(appid: str, key: str) -> str:
    """An account's key in a collection all accounts share (QR codes and their claims, push
    de-duplication). The unnamed account ("") keeps the keys of the version before accounts,
    so a one-account deployment's records stay where they are."""
    return f"{appid}:{key}" if appid else key


# A finished or expired "scan to sign in" session is kept this long, so a late poll still
# learns what became of it; then MongoDB's TTL monitor removes it.
QR_LOGIN_RETENTION = 3600
# A session's change is readable this long by the other instances' watchers (qr/login.py),
# which read every half second: minutes of room for a slow instance or a clock running behind.
QR_CHANGE_RETENTION = 300


# Fields of a sign-in session a poll's answer never carries (get_qr_login leaves them out).
QR_LOGIN_UNSHOWN = {"ticket": 0, "url": 0, "redirectUri": 0, "createdAt": 0, "purgeAt": 0}


def upserted(doc: dict[str, Any] | None) -> dict[str, Any]:
    """find_one_and_update(upsert=True, return_document=AFTER) always answers a document."""
    assert doc is not None, "an upsert that returns the document after it returns one"
    return doc


async def upsert_retrying_once(upsert: Callable[[], Awaitable[T]]) -> T:
    """An upsert, run once more if it lost a race on a unique index.

    Two concurrent upserts of one key may both try to insert; MongoDB refuses the second with
    E11000 (DuplicateKeyError), and the same upsert run again now matches the first's document
    and updates it. A second refusal is a real conflict and is raised."""
    try:
        return await upsert()
    except DuplicateKeyError:
        return await upsert()


# pymongo's typed collection: documents are dicts, so every query below is type-checked as
# pymongo's AsyncMongoClient answers (the embedded store answers alike; see embedded.py).
Collection = AsyncCollection[dict[str, Any]]


class Store:
    """The queries of one WeChat account (its appid): users, web tokens, QR codes and pushes
    are kept per account, since an openid means a person only within the account that issued
    it. for_account() gives another account's view of the same collections."""

    def __init__(
        self, db: Any, *, clock: Clock, sealer: Sealer | None = None, appid: str = ""
    ) -> None:
        self.db = db
        self.appid = appid
        self.clock = clock
        self.sealer = sealer or Sealer({})
        # Sign-in states used (single use), and the redirect contexts states refer to.
        self.states: Collection = db["oauth_states"]
        self.state_contexts: Collection = db["state_contexts"]
        self.users: Collection = db["users"]
        self.web_tokens: Collection = db["web_tokens"]
        self.base_tokens: Collection = db["base_tokens"]
        self.leases: Collection = db["leases"]
        self.qr_tickets: Collection = db["qr_tickets"]
        self.qr_logins: Collection = db["qr_logins"]
        self.qr_claims: Collection = db["qr_claims"]
        # Sign-in sessions' changes, for the long polls of every instance (qr/login.py).
        self.qr_changes: Collection = db["qr_changes"]
        self.pushed_messages: Collection = db["pushed_messages"]
        self.delivery_writer = GroupInsert(self.pushed_messages)
        self.push_nonces: Collection = db["push_nonces"]
        self.nonce_writer = GroupInsert(self.push_nonces)
        self.oidc_requests: Collection = db["oidc_requests"]
        self.oidc_codes: Collection = db["oidc_codes"]
        self.oidc_tokens: Collection = db["oidc_tokens"]

    def for_account(self, appid: str) -> Store:
        """The same store scoped to another account: one database, one set of collections and
        group-insert writers for every account, so an account costs nothing more."""
        view = copy.copy(self)
        view.appid = appid
        return view

    def _scoped(self, key: str) -> str:
        return scoped_key(self.appid, key)

    async def ensure_indexes(self, default_appid: str = "") -> None:
        """The first command at start-up, so it is where an unreachable MongoDB shows.

        Records of the version before accounts (no appid) become `default_appid`'s first; it
        runs at every start, on every instance, and finds nothing to do once they are moved."""
        try:
            await self._adopt_unscoped_records(default_appid)
            await self._drop_unscoped_indexes()
            await self._create_indexes()
        except PyMongoError as exc:
            # pymongo's message names hosts, never the URI's credentials.
            raise StoreUnavailable(
                f"MongoDB did not answer or refused the service: {type(exc).__name__}: {exc}"
            ) from exc

    async def _adopt_unscoped_records(self, default_appid: str) -> None:
        """Give the previous version's records (no appid) to `default_appid`.

        Once the appid-led unique indexes exist, `$exists: false` is looked up in them (a
        missing field is indexed as null): later starts do not scan users or web_tokens."""
        unscoped = {"appid": {"$exists": False}}
        for collection in (self.users, self.web_tokens):
            await self._adopt(collection, default_appid)
        # A sign-in begun before the upgrade still finishes after it.
        await self.qr_logins.update_many(unscoped, {"$set": {"appid": default_appid}})
        # A ticket moves to its scoped _id (a copy, then the old one deleted) rather than being
        # created again: WeChat caps an account's permanent codes at 100,000, for ever.
        while batch := [doc async for doc in self.qr_tickets.find(unscoped).limit(500)]:
            for doc in batch:
                old_id = doc["_id"]
                new_id = scoped_key(default_appid, str(old_id))
                if new_id == old_id:
                    await self.qr_tickets.update_one(
                        {"_id": old_id, **unscoped}, {"$set": {"appid": default_appid}}
                    )
                    continue
                # Another instance starting at once may have copied it first; then its copy (or
                # a ticket the account made since) is the one kept.
                with contextlib.suppress(DuplicateKeyError):
                    await self.qr_tickets.insert_one({**doc, "_id": new_id, "appid": default_appid})
                await self.qr_tickets.delete_one({"_id": old_id, **unscoped})

    @staticmethod
    async def _adopt(collection: Collection, default_appid: str) -> None:
        """Set appid on one collection's unscoped records, in one update_many.

        During a rolling upgrade, an instance of the previous version may write a new user's
        record (no appid) that a new instance writes too, scoped; moving the older then breaks
        the (appid, ...) unique index. The scoped record is kept, the older left unread, and
        the start goes on rather than failing at every attempt."""
        unscoped = {"appid": {"$exists": False}}
        adopt = {"$set": {"appid": default_appid}}
        try:
            await collection.update_many(unscoped, adopt)
            return
        except DuplicateKeyError:
            pass
        left = 0
        async for doc in collection.find(unscoped, {"_id": 1}):
            try:
                await collection.update_one({"_id": doc["_id"], **unscoped}, adopt)
            except DuplicateKeyError:
                left += 1
        if left:
            log.warning(
                "%d record(s) in %s without an appid duplicate a record of account %r; left "
                "as they are",
                left,
                collection.name,
                default_appid,
            )

    async def _drop_unscoped_indexes(self) -> None:
        """The previous version's unique indexes would refuse one openid in two accounts."""
        for collection in (self.users, self.web_tokens):
            # Looked up first: on MongoDB, dropping a missing index is an error.
            present = await collection.index_information()
            for name in UNSCOPED_INDEXES[collection.name]:
                if name not in present:
                    continue
                try:
                    await collection.drop_index(name)
                except OperationFailure as exc:
                    # Dropped meanwhile by another instance starting at the same time.
                    if exc.code != INDEX_NOT_FOUND and "index not found" not in str(exc):
                        raise

    async def _create_indexes(self) -> None:
        # The state string is the _id, so it is unique without a second index.
        await self.states.create_index("purgeAt", expireAfterSeconds=0, name="purge_ttl")
        await self.state_contexts.create_index("purgeAt", expireAfterSeconds=0, name="purge_ttl")
        await self.users.create_index(
            [("appid", ASCENDING), ("openid", ASCENDING)], unique=True, name="appid_openid_unique"
        )
        await self.users.create_index(
            "unionid",
            name="unionid",
            partialFilterExpression={"unionid": {"$type": "string"}},
        )
        await self.web_tokens.create_index(
            [("appid", ASCENDING), ("openid", ASCENDING), ("scope", ASCENDING)],
            unique=True,
            name="appid_openid_scope_unique",
        )
        # Each account sweeps its own tokens (a refresh needs that account's secret).
        await self.web_tokens.create_index(
            [
                ("appid", ASCENDING),
                ("status", ASCENDING),
                ("accessTokenExpiresAt", ASCENDING),
                ("_id", ASCENDING),
            ],
            name="refresh_due_by_app",
        )

        # Expired temporary tickets, finished sign-in sessions and the push de-duplication
        # memory are removed by MongoDB's TTL monitor.
        await self.qr_tickets.create_index("purgeAt", expireAfterSeconds=0, name="purge_ttl")
        await self.qr_logins.create_index("purgeAt", expireAfterSeconds=0, name="purge_ttl")
        await self.qr_claims.create_index("purgeAt", expireAfterSeconds=0, name="purge_ttl")
        await self.qr_changes.create_index("purgeAt", expireAfterSeconds=0, name="purge_ttl")
        await self.qr_changes.create_index("at", name="at")
        await self.pushed_messages.create_index("purgeAt", expireAfterSeconds=0, name="purge_ttl")
        await self.push_nonces.create_index("purgeAt", expireAfterSeconds=0, name="purge_ttl")
        # OpenID Connect: requests waiting at WeChat, authorization codes, access tokens.
        await self.oidc_requests.create_index("purgeAt", expireAfterSeconds=0, name="purge_ttl")
        await self.oidc_codes.create_index("purgeAt", expireAfterSeconds=0, name="purge_ttl")
        await self.oidc_tokens.create_index("purgeAt", expireAfterSeconds=0, name="purge_ttl")
        await self.oidc_tokens.create_index("codeId", name="code")

    # -- OpenID Connect ------------------------------------------------------------------------

    async def create_oidc_request(self, state: str, request: dict[str, Any], ttl: int) -> None:
        """A client's authorization request while the person is at WeChat, keyed by the state
        sent there; usable once, for `ttl` seconds."""
        expires = utc(self.clock.now() + ttl)
        await self.oidc_requests.insert_one(
            {"_id": state, **request, "expiresAt": expires, "purgeAt": expires}
        )

    async def take_oidc_request(self, state: str) -> dict[str, Any] | None:
        """The request of a live state, deleted as it is read: a second callback finds none."""
        now = utc(self.clock.now())
        return await self.oidc_requests.find_one_and_delete(
            {"_id": state, "expiresAt": {"$gt": now}}
        )

    async def create_oidc_code(
        self, code_id: str, grant: dict[str, Any], ttl: int, retention: int
    ) -> None:
        """An authorization code (`code_id`: its hash), redeemable once within `ttl` seconds,
        remembered `retention` longer so a second redemption is recognised as a replay."""
        now = self.clock.now()
        await self.oidc_codes.insert_one(
            {
                "_id": code_id,
                **grant,
                "usedAt": None,
                "expiresAt": utc(now + ttl),
                "purgeAt": utc(now + ttl + retention),
            }
        )

    async def redeem_oidc_code(self, code_id: str) -> tuple[dict[str, Any] | None, bool]:
        """(the grant, False) for a live unused code, now marked used; (None, True) if it was
        used before (a replay); (None, False) if unknown or expired. One findAndModify, so two
        redemptions racing cannot both win."""
        now = utc(self.clock.now())
        doc = await self.oidc_codes.find_one_and_update(
            {"_id": code_id, "usedAt": None, "expiresAt": {"$gt": now}},
            {"$set": {"usedAt": now}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            return doc, False
        earlier = await self.oidc_codes.find_one({"_id": code_id})
        return None, earlier is not None and earlier.get("usedAt") is not None

    async def save_oidc_token(self, token_id: str, grant: dict[str, Any], ttl: int) -> None:
        expires = utc(self.clock.now() + ttl)
        await self.oidc_tokens.insert_one(
            {"_id": token_id, **grant, "expiresAt": expires, "purgeAt": expires}
        )

    async def find_oidc_token(self, token_id: str) -> dict[str, Any] | None:
        now = utc(self.clock.now())
        return await self.oidc_tokens.find_one({"_id": token_id, "expiresAt": {"$gt": now}})

    async def revoke_oidc_tokens(self, code_id: str) -> int:
        """Every access token issued for one authorization code (RFC 6749 §4.1.2: a code used
        twice revokes what it issued)."""
        result = await self.oidc_tokens.delete_many({"codeId": code_id})
        return result.deleted_count

    async def ping(self) -> None:
        await self.db.command("ping")

    # -- sign-in states (service/signin/state_token.py) -----------------------------------------

    async def save_state_context(
        self, context_id: str, fields: dict[str, Any], purge_at: float
    ) -> None:
        """A redirect context that states refer to, kept until `purge_at` (moved later, never
        earlier, by each sign-in that stores it again)."""
        await upsert_retrying_once(
            lambda: self.state_contexts.update_one(
                {"_id": context_id},
                {"$setOnInsert": fields, "$max": {"purgeAt": utc(purge_at)}},
                upsert=True,
            )
        )

    async def get_state_context(self, context_id: str) -> dict[str, Any] | None:
        return await self.state_contexts.find_one(
            {"_id": context_id, "purgeAt": {"$gt": utc(self.clock.now())}}
        )

    async def use_state(self, state_id: str, purge_at: float) -> tuple[bool, datetime]:
        """Record a state's use: (True, now) for its first, else (False, when it was used).
        The state's id is the record's _id, so two completions racing cannot both be first."""
        now = utc(self.clock.now())
        try:
            await self.states.insert_one({"_id": state_id, "usedAt": now, "purgeAt": utc(purge_at)})
        except DuplicateKeyError:
            earlier = await self.states.find_one({"_id": state_id})
            return False, earlier["usedAt"] if earlier else now
        return True, now

    async def state_used_at(self, state_id: str) -> datetime | None:
        doc = await self.states.find_one({"_id": state_id})
        return doc["usedAt"] if doc else None

    async def release_state(self, state_id: str, used_at: datetime) -> None:
        """Undo use_state after a failure that left the state to the real code's holder
        (WeChat unreachable, or it refused the code as invalid: 40029)."""
        await self.states.delete_one({"_id": state_id, "usedAt": used_at})

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
            # Not $setOnInsert: a user first seen through a follow push or a follow check
            # already has a document, and their first sign-in must still set it. $min sets a
            # missing field and never moves an existing one later.
            "$min": {"firstLoginAt": now},
            # The filter's appid and openid are copied into an inserted document.
            "$setOnInsert": {"firstSeenAt": now},
            "$inc": {"loginCount": 1},
        }
        user = await upsert_retrying_once(
            lambda: self.users.find_one_and_update(
                self._user(openid), update, upsert=True, return_document=ReturnDocument.AFTER
            )
        )
        return upserted(user)

    async def record_follow_state(
        self,
        openid: str,
        *,
        subscribed: bool,
        subscribe_time: int | None,
        subscribe_scene: str | None,
        unionid: str | None,
    ) -> None:
        now = utc(self.clock.now())
        fields: dict[str, Any] = {
            "subscribed": subscribed,
            "subscribeTime": utc(subscribe_time) if subscribe_time else None,
            "subscribeScene": subscribe_scene,
            "followCheckedAt": now,
            "updatedAt": now,
        }
        if unionid:
            fields["unionid"] = unionid
        # No firstLoginAt and no loginCount: this user has not signed in (yet), only followed or
        # been asked about. firstSeenAt says when the record began, whichever way.
        update = {"$set": fields, "$setOnInsert": {"firstSeenAt": now}}
        await upsert_retrying_once(
            lambda: self.users.update_one(self._user(openid), update, upsert=True)
        )

    async def get_user(self, openid: str) -> dict[str, Any] | None:
        return await self.users.find_one(self._user(openid))

    def _user(self, openid: str) -> dict[str, Any]:
        """A user's record: an openid names a person within one account only."""
        return {"appid": self.appid, "openid": openid}

    async def find_linked_user(self, unionid: str) -> dict[str, Any] | None:
        """This account's record of the person whose unionid another account's sign-in gave."""
        # $type repeats the partial index's filter, so MongoDB knows the index holds them all.
        return await self.users.find_one(
            {"appid": self.appid, "unionid": {"$eq": unionid, "$type": "string"}}
        )

    async def linked_users(self, unionid: str) -> list[dict[str, Any]]:
        """One person's records in every account, by appid: unscoped, since the unionid (one per
        person across an Open Platform's accounts) is what links them."""
        # $type repeats the partial index's filter, so MongoDB knows the index holds them all.
        cursor = (
            self.users.find({"unionid": {"$eq": unionid, "$type": "string"}})
            .sort([("appid", ASCENDING), ("_id", ASCENDING)])
            .limit(LINKED_USERS_LIMIT)
        )
        return [doc async for doc in cursor]

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
            "accessToken": self.sealer.seal(access_token, _context("accessToken", openid, scope)),
            "refreshToken": self.sealer.seal(
                refresh_token, _context("refreshToken", openid, scope)
            ),
            "accessTokenExpiresAt": utc(now + expires_in),
            "refreshTokenExpiresAt": utc(now + REFRESH_TOKEN_LIFETIME),
            "status": "active",
            "obtainedAt": utc(now),
            "updatedAt": utc(now),
            "lastUsedAt": utc(now),
        }
        if unionid:
            fields["unionid"] = unionid
        update = {
            "$set": fields,  # an upsert takes appid, openid and scope from the filter
            # A sweep refreshing the token this sign-in replaces must not write its (older)
            # answer over this one: its update and failure record match on its claim only.
            "$unset": {"claimUntil": "", "claimedBy": ""},
        }
        await upsert_retrying_once(
            lambda: self.web_tokens.update_one(
                {"appid": self.appid, "openid": openid, "scope": scope}, update, upsert=True
            )
        )

    async def get_web_token(self, openid: str, scope: str) -> dict[str, Any] | None:
        """The stored token with its access and refresh tokens opened."""
        doc = await self.web_tokens.find_one(
            {"appid": self.appid, "openid": openid, "scope": scope}
        )
        return self.open_web_token(doc) if doc else None

    def open_web_token(self, doc: dict[str, Any]) -> dict[str, Any]:
        opened = dict(doc)
        for field in SEALED_FIELDS:
            if field in doc:
                opened[field] = self.sealer.open(
                    doc[field], _context(field, doc["openid"], doc["scope"])
                )
        return opened

    async def reseal_web_tokens(self) -> int:
        """Re-seal every stored token not sealed with the current data key (rotation, or
        sealing turned on); one document at a time, so memory stays flat. Returns the count.

        Every account's: the data keys are the deployment's, and a sealed token's context
        does not name its account."""
        if not self.sealer.enabled:
            return 0
        count = 0
        async for doc in self.web_tokens.find(
            {}, {"openid": 1, "scope": 1, **dict.fromkeys(SEALED_FIELDS, 1)}
        ):
            stale = [f for f in SEALED_FIELDS if f in doc and self.sealer.needs_resealing(doc[f])]
            if not stale:
                continue
            opened = self.open_web_token(doc)
            fields = {
                f: self.sealer.seal(opened[f], _context(f, doc["openid"], doc["scope"]))
                for f in stale
            }
            # Only if unchanged meanwhile: a refresh in between has already sealed anew.
            result = await self.web_tokens.update_one(
                {"_id": doc["_id"], **{f: doc[f] for f in stale}}, {"$set": fields}
            )
            count += result.modified_count
        return count

    def web_tokens_due(
        self, *, due_before: float, used_since: float | None, batch_size: int
    ) -> AsyncCursor[dict[str, Any]]:
        """This account's active tokens expiring before `due_before`, most urgent first,
        streamed in batches; each account sweeps its own, since a refresh needs its secret.

        One cursor over the (appid, status, accessTokenExpiresAt, _id) index: the server sends
        `batch_size` documents at a time, so memory stays at one batch whatever the collection's
        size. A refreshed token's new expiry lies beyond `due_before`, so it is not met again.
        """
        now = utc(self.clock.now())
        query: dict[str, Any] = {
            "appid": self.appid,
            "status": "active",
            "accessTokenExpiresAt": {"$lte": utc(due_before)},
            "refreshTokenExpiresAt": {"$gt": now},
            "$or": [{"claimUntil": None}, {"claimUntil": {"$lte": now}}],
        }
        if used_since is not None:
            query["lastUsedAt"] = {"$gte": utc(used_since)}
        projection = {"openid": 1, "scope": 1, "refreshToken": 1}
        return (
            self.web_tokens.find(query, projection)
            .sort([("accessTokenExpiresAt", ASCENDING), ("_id", ASCENDING)])
            .batch_size(batch_size)
        )

    async def claim_web_token(self, token_id: Any, owner: str, ttl: float) -> dict[str, Any] | None:
        """Claim one token for refreshing, so two instances never refresh the same one.

        The claimed document (openid, scope, refreshToken, still sealed), or None. Its
        refreshToken is the one to use, not the cursor's: a sign-in may have stored a new one
        between the sweep's read and its claim.
        """
        now = self.clock.now()
        return await self.web_tokens.find_one_and_update(
            {
                "_id": token_id,
                "status": "active",
                "$or": [{"claimUntil": None}, {"claimUntil": {"$lte": utc(now)}}],
            },
            {"$set": {"claimUntil": utc(now + ttl), "claimedBy": owner}},
            projection={"openid": 1, "scope": 1, "refreshToken": 1},
            return_document=ReturnDocument.AFTER,
        )

    async def web_token_refreshed(
        self,
        doc: dict[str, Any],
        owner: str,
        *,
        access_token: str,
        refresh_token: str,
        expires_in: int,
    ) -> bool:
        """Store a refresh's answer; False if the claim was lost meanwhile (a new sign-in
        stored a fresher token, which is kept, or the claim ran out and another took it)."""
        now = self.clock.now()
        openid, scope = doc["openid"], doc["scope"]
        result = await self.web_tokens.update_one(
            {"_id": doc["_id"], "claimedBy": owner},
            {
                "$set": {
                    "accessToken": self.sealer.seal(
                        access_token, _context("accessToken", openid, scope)
                    ),
                    "refreshToken": self.sealer.seal(
                        refresh_token, _context("refreshToken", openid, scope)
                    ),
                    "accessTokenExpiresAt": utc(now + expires_in),
                    "refreshedAt": utc(now),
                    "updatedAt": utc(now),
                    "lastError": None,
                },
                "$unset": {"claimUntil": "", "claimedBy": ""},
            },
        )
        return result.modified_count == 1

    async def web_token_failed(
        self, token_id: Any, owner: str, error: dict[str, Any], *, reauth: bool
    ) -> None:
        """Record why a refresh failed; reauth means WeChat will never refresh this one again."""
        fields: dict[str, Any] = {"lastError": error, "updatedAt": utc(self.clock.now())}
        if reauth:
            fields["status"] = "reauth_required"
        await self.web_tokens.update_one(
            {"_id": token_id, "claimedBy": owner},
            {"$set": fields, "$unset": {"claimUntil": "", "claimedBy": ""}},
        )

    async def mark_refresh_expired(self) -> int:
        """This account's tokens whose refresh_token ran out: only a new sign-in brings them
        back. Per account, as the sweep that runs it."""
        now = utc(self.clock.now())
        result = await self.web_tokens.update_many(
            {"appid": self.appid, "status": "active", "refreshTokenExpiresAt": {"$lte": now}},
            {
                "$set": {
                    "status": "reauth_required",
                    "lastError": {"at": now, "kind": "RefreshTokenExpired"},
                    "updatedAt": now,
                }
            },
        )
        return result.modified_count

    async def count_web_tokens_by_status(self) -> dict[str, int]:
        """This account's tokens by status."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"appid": self.appid}},
            {"$group": {"_id": "$status", "count": {"$sum": 1}}},
        ]
        cursor = await settled(self.web_tokens.aggregate(pipeline))
        return {str(row["_id"]): int(row["count"]) async for row in cursor}

    # -- the account's base access_token --------------------------------------------------------

    async def get_base_token(self, appid: str) -> dict[str, Any] | None:
        return await self.base_tokens.find_one({"_id": appid})

    async def save_base_token(
        self, appid: str, *, access_token: str, expires_in: int, source: str, fetched_by: str
    ) -> dict[str, Any]:
        now = self.clock.now()
        doc = await self.base_tokens.find_one_and_update(
            {"_id": appid},
            {
                "$set": {
                    "accessToken": access_token,
                    "expiresAt": utc(now + expires_in),
                    "fetchedAt": utc(now),
                    "fetchedBy": fetched_by,
                    "source": source,
                    "lastRefreshAt": utc(now),
                    "lastError": None,
                    "backoffUntil": None,
                    "failures": 0,
                }
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return upserted(doc)

    async def invalidate_base_token(self, appid: str, access_token: str) -> bool:
        """Compare-and-set: drop the stored token only if it is still the one that failed.

        A late 40001 for an old token must never discard the newer token another instance
        stored in the meantime.
        """
        result = await self.base_tokens.update_one(
            {"_id": appid, "accessToken": access_token},
            {"$set": {"accessToken": None, "invalidatedAt": utc(self.clock.now())}},
        )
        return result.modified_count == 1

    async def record_base_token_error(
        self, appid: str, error: dict[str, Any], backoff_until: float | None
    ) -> None:
        await self.base_tokens.update_one(
            {"_id": appid},
            {
                "$set": {
                    "lastError": error,
                    "backoffUntil": utc(backoff_until) if backoff_until else None,
                },
                "$inc": {"failures": 1},
            },
            upsert=True,
        )

    # -- QR codes ---------------------------------------------------------------------------

    async def get_qr_ticket(self, kind: str, scene: str | int) -> dict[str, Any] | None:
        return await self.qr_tickets.find_one({"_id": self._scoped(f"{kind}:{scene}")})

    async def save_qr_ticket(
        self, kind: str, scene: str | int, *, ticket: str, url: str, expires_in: int | None
    ) -> dict[str, Any]:
        now = self.clock.now()
        expires_at = utc(now + expires_in) if expires_in else None
        # Each account's codes are its own: a scene's number means something per account.
        doc = await self.qr_tickets.find_one_and_update(
            {"_id": self._scoped(f"{kind}:{scene}")},
            {
                "$set": {
                    "appid": self.appid,
                    "type": kind,
                    "scene": scene,
                    "ticket": ticket,
                    "url": url,
                    "createdAt": utc(now),
                    "expiresAt": expires_at,
                    "purgeAt": expires_at,
                }
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return upserted(doc)

    async def claim_qr_create(self, key: str, owner: str, ttl: float) -> bool:
        """Claim the right to call qrcode/create for `key` (type:scene, in this account) for
        `ttl` seconds; False while another instance holds a live claim. As acquire_lease: the
        filter matches a free (expired) claim or our own, else the upsert's insert hits the
        _id: taken."""
        now = self.clock.now()
        key = self._scoped(key)
        try:
            await self.qr_claims.find_one_and_update(
                {"_id": key, "$or": [{"owner": owner}, {"expiresAt": {"$lte": utc(now)}}]},
                {
                    "$set": {
                        "owner": owner,
                        "expiresAt": utc(now + ttl),
                        # A dead claimant's claim is gone a minute after it lapsed.
                        "purgeAt": utc(now + ttl + 60),
                    }
                },
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    async def extend_qr_claim(self, key: str, owner: str, ttl: float) -> bool:
        """Hold our claim `ttl` seconds more; False once it is not ours: it lapsed and another
        instance took it (and may have finished and released it since)."""
        now = self.clock.now()
        result = await self.qr_claims.update_one(
            {"_id": self._scoped(key), "owner": owner},
            {"$set": {"expiresAt": utc(now + ttl), "purgeAt": utc(now + ttl + 60)}},
        )
        return result.matched_count == 1

    async def release_qr_claim(self, key: str, owner: str) -> None:
        await self.qr_claims.delete_one({"_id": self._scoped(key), "owner": owner})

    # -- "scan to sign in" sessions -----------------------------------------------------------

    async def create_qr_login(
        self, scene: str, *, ticket: str, url: str, ttl: int, redirect_uri: str | None
    ) -> dict[str, Any]:
        now = self.clock.now()
        doc = {
            "_id": scene,
            "appid": self.appid,
            "status": "pending",
            "ticket": ticket,
            "url": url,
            "redirectUri": redirect_uri,
            "createdAt": utc(now),
            "expiresAt": utc(now + ttl),
            "purgeAt": utc(now + ttl + QR_LOGIN_RETENTION),
            "handedOut": False,
        }
        await self.qr_logins.insert_one(doc)
        return doc

    async def get_qr_login(self, scene: str) -> dict[str, Any] | None:
        """The session's state, without what a poll never shows (the code's ticket and URL, the
        app's redirect URI, the bookkeeping): each waiting poll holds one, 10,000 at a time."""
        return await self.qr_logins.find_one(self._qr_login(scene), QR_LOGIN_UNSHOWN)

    def _qr_login(self, scene: str) -> dict[str, Any]:
        """A session of this account only: a scan pushed to another account's message URL (whose
        scene may be the same string) never moves it."""
        return {"_id": scene, "appid": self.appid}

    async def qr_login_scanned(
        self, scene: str, openid: str, *, new_follower: bool
    ) -> dict[str, Any] | None:
        """The scan event for a live, unscanned session; None if there is none (or it expired)."""
        now = utc(self.clock.now())
        return await self.qr_logins.find_one_and_update(
            {**self._qr_login(scene), "status": "pending", "expiresAt": {"$gt": now}},
            {
                "$set": {
                    "status": "scanned",
                    "openid": openid,
                    "newFollower": new_follower,
                    "scannedAt": now,
                }
            },
            return_document=ReturnDocument.AFTER,
        )

    async def qr_login_confirmed(self, scene: str, openid: str) -> None:
        now = utc(self.clock.now())
        await self.qr_logins.update_one(
            {**self._qr_login(scene), "status": "scanned", "openid": openid},
            {"$set": {"status": "confirmed", "confirmedAt": now}},
        )

    async def qr_login_problem(self, scene: str, openid: str, problem: dict[str, str]) -> None:
        """Why a scanned session was not confirmed; it stays scanned (and expires so)."""
        await self.qr_logins.update_one(
            {**self._qr_login(scene), "status": "scanned", "openid": openid},
            {"$set": {"problem": problem, "problemAt": utc(self.clock.now())}},
        )

    async def record_qr_change(self, scene: str) -> None:
        """A session changed (scanned, confirmed, a problem found): written for the other
        instances, whose long polls on it learn so from recent_qr_changes (each instance reads
        them once per interval, not once per waiting poll)."""
        now = self.clock.now()
        await self.qr_changes.insert_one(
            {"scene": scene, "at": utc(now), "purgeAt": utc(now + QR_CHANGE_RETENTION)}
        )

    async def recent_qr_changes(self, since: float, limit: int = 10_000) -> list[dict[str, Any]]:
        """Changes recorded at or after `since`, oldest first (by the `at` index)."""
        cursor = (
            self.qr_changes.find({"at": {"$gte": utc(since)}}, {"scene": 1, "at": 1})
            .sort("at", ASCENDING)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def hand_out_qr_login(self, scene: str) -> dict[str, Any] | None:
        """Mark a confirmed session's token handed out; only the first caller gets the session."""
        return await self.qr_logins.find_one_and_update(
            {**self._qr_login(scene), "status": "confirmed", "handedOut": False},
            {"$set": {"handedOut": True, "handedOutAt": utc(self.clock.now())}},
            return_document=ReturnDocument.AFTER,
        )

    # -- pushed messages ------------------------------------------------------------------------

    async def first_delivery(
        self,
        key: str,
        retention: int,
        reply: str | None = None,
        abandoned_after: float = 30,
        *,
        done: bool = False,
    ) -> dict[str, Any] | None:
        """None when the push is ours to process: seen for the first time (recorded unfinished,
        with our reply, if any; recorded `done` already when there is nothing to process), or
        taken over from a delivery left unfinished for `abandoned_after` seconds (its instance
        died mid-way). Otherwise the earlier delivery's record (`done` False while it is
        processed). Per account: two accounts' MsgIds are unrelated."""
        now = self.clock.now()
        key = self._scoped(key)
        record = {
            "_id": key,
            "receivedAt": utc(now),
            "purgeAt": utc(now + retention),
            "done": done,
        }
        if reply is not None:
            record["reply"] = reply
        try:
            await self.delivery_writer.insert(record)
        except DuplicateKeyError:
            earlier = await self.pushed_messages.find_one({"_id": key})
            if earlier is None:
                # Gone meanwhile: the first delivery failed and was forgotten; try to take it.
                return {"done": False}
            if earlier.get("done", True) or earlier["receivedAt"] > utc(now - abandoned_after):
                return earlier
            # Matching the receivedAt we read: of several retries, one takes it over.
            taken = await self.pushed_messages.update_one(
                {"_id": key, "done": False, "receivedAt": earlier["receivedAt"]},
                {"$set": {"receivedAt": utc(now), "purgeAt": utc(now + retention), "done": done}},
            )
            return None if taken.modified_count == 1 else {"done": False}
        return None

    async def delivery_done(self, key: str) -> None:
        await self.pushed_messages.update_one({"_id": self._scoped(key)}, {"$set": {"done": True}})

    async def forget_delivery(self, key: str) -> None:
        await self.pushed_messages.delete_one({"_id": self._scoped(key)})

    async def claim_push_nonce(
        self, timestamp: str, nonce: str, body_hash: str, purge_at: float
    ) -> str | None:
        """Record a push's (timestamp, nonce); None if new, else the body hash it came with.

        The pair (in this account) is the _id, so two instances racing with one replay cannot
        both claim it.
        """
        key = self._scoped(f"{timestamp}:{nonce}")
        try:
            await self.nonce_writer.insert(
                {"_id": key, "bodyHash": body_hash, "purgeAt": utc(purge_at)}
            )
        except DuplicateKeyError:
            earlier = await self.push_nonces.find_one({"_id": key})
            return str(earlier.get("bodyHash", "")) if earlier is not None else None
        return None

    # -- leases -------------------------------------------------------------------------------

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        """Take or extend the lease `name` for `ttl` seconds; False while another holds it.

        The filter matches a free (expired) lease or our own; when it matches nothing the
        upsert tries to insert the same _id and fails with a duplicate key: someone else
        holds it. One round trip, atomic on the server.
        """
        now = self.clock.now()
        try:
            await self.leases.find_one_and_update(
                {"_id": name, "$or": [{"owner": owner}, {"expiresAt": {"$lte": utc(now)}}]},
                {"$set": {"owner": owner, "expiresAt": utc(now + ttl), "acquiredAt": utc(now)}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    async def release_lease(self, name: str, owner: str) -> None:
        await self.leases.delete_one({"_id": name, "owner": owner})

    async def get_lease(self, name: str) -> dict[str, Any] | None:
        return await self.leases.find_one({"_id": name})
