"""The embedded in-memory store (mongomock-motor), and the one place that knows how it differs.

Used when MONGODB_URI is unset in sandbox mode, or is memory:// (development, tests). Where
mongomock-motor and pymongo's AsyncMongoClient answer differently, `settled` hides it; the
patch below makes mongomock's costs MongoDB's.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

log = logging.getLogger(__name__)


async def settled(result: Any) -> Any:
    """pymongo's async aggregate() and close() are coroutines; Motor's (the embedded store's)
    answer at once. Awaiting only what is awaitable serves both."""
    if inspect.isawaitable(result):
        return await result
    return result


def embedded_client() -> Any:
    """A fresh embedded store, its costs made MongoDB's (see below)."""
    from mongomock_motor import AsyncMongoMockClient

    make_embedded_store_scale()
    return AsyncMongoMockClient(tz_aware=True)


TTL_MONITOR_PERIOD = 60.0  # seconds, as MongoDB's TTL monitor


def make_embedded_store_scale() -> None:
    """Two changes that make mongomock cost what MongoDB costs, not O(documents) per request.

    mongomock removes expired TTL documents by scanning the collection before every operation
    (an insert included), and answers a filter on _id by testing every document. Here expiry
    runs at most once a minute, as MongoDB's TTL monitor does (nothing here relies on sooner:
    every expiry is also checked against timestamps), and a filter naming one _id looks it up
    by key, then applies the whole filter as before. Measured with bench/load.py: authorize went
    from 404 to about 3,400 requests a second and stopped slowing down as states accumulate.
    Both touch mongomock internals; if a release renames them, the store is just slower.
    """
    from bson import ObjectId
    from mongomock.collection import Collection
    from mongomock.filtering import filter_applies
    from mongomock.store import CollectionStore

    if getattr(CollectionStore, "_wechat_oa_auth_scaled", False):
        return
    expire = getattr(CollectionStore, "_remove_expired_documents", None)
    iterate = getattr(Collection, "_iter_documents", None)
    if expire is None or iterate is None:
        log.warning("mongomock changed: the embedded store keeps its O(documents) costs")
        return

    def expire_like_mongodb(self: Any) -> None:
        now = time.monotonic()
        if now - getattr(self, "_expired_at", -TTL_MONITOR_PERIOD) >= TTL_MONITOR_PERIOD:
            self._expired_at = now
            expire(self)

    def by_id(self: Any, filter: Any) -> Any:
        if isinstance(filter, dict) and "_id" in filter:
            key = filter["_id"]
            if isinstance(key, str | int | ObjectId) and not isinstance(key, bool):
                doc = self._store[key] if key in self._store else None  # noqa: SIM401
                found = doc is not None and filter_applies(filter, doc)  # type: ignore[no-untyped-call]
                return iter([doc] if found else [])
        return iterate(self, filter)

    # The patch itself: replacing methods is the point, so mypy is told it is meant.
    CollectionStore._remove_expired_documents = expire_like_mongodb  # type: ignore[method-assign]
    Collection._iter_documents = by_id  # type: ignore[method-assign]
    CollectionStore._wechat_oa_auth_scaled = True  # type: ignore[attr-defined]
