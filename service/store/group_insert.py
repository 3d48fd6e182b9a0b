"""Group commit: concurrent inserts into one collection share insert_many calls.

Every MongoDB command costs the service about 200-350 µs of CPU in pymongo's async driver
(bench/README.md), four times a whole bare aiohttp request; /wechat/authorize writes one
state per request and each push one de-duplication record, so under load the driver, not the
service, set their pace. Here each caller
still returns only once its own document is written (or raises what MongoDB said about that
document), but while one batch is in flight the next gathers: an idle service writes each
document at once, a busy one pays the per-command cost once per batch.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteConcernError, WriteError

DUPLICATE_KEY = 11000


class GroupInsert:
    def __init__(self, collection: Any, max_batch: int = 1000) -> None:
        self._collection = collection
        self._max_batch = max_batch
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # insert_many calls made, for tests and curiosity

    async def insert(self, document: dict[str, Any]) -> None:
        """Write `document`; DuplicateKeyError or WriteError if MongoDB refused it."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((document, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_while_waiting())
        await future

    async def _write_while_waiting(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                try:
                    await self._write(batch)
                except BaseException:
                    # Cancelled (shutdown) or a bug: nobody may wait for ever.
                    for _, future in batch + self._waiting:
                        if not future.done():
                            future.cancel()
                    self._waiting.clear()
                    raise
        finally:
            self._writer = None

    async def _write(self, batch: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        self.batches += 1
        try:
            await self._collection.insert_many([doc for doc, _ in batch], ordered=False)
        except BulkWriteError as exc:
            refused = {error["index"]: error for error in exc.details.get("writeErrors", [])}
            concern = exc.details.get("writeConcernErrors") or []
            for index, (_, future) in enumerate(batch):
                error = refused.get(index)
                if error is None and concern:
                    # Written, but not acknowledged as the write concern asks: as insert_one.
                    first = concern[0]
                    _settle(future, WriteConcernError(first.get("errmsg", ""), first.get("code")))
                elif error is None:
                    _settle(future, None)
                else:
                    kind = DuplicateKeyError if error.get("code") == DUPLICATE_KEY else WriteError
                    _settle(future, kind(error.get("errmsg", ""), error.get("code"), error))
        except Exception as exc:
            # MongoDB unreachable, a timeout: the same answer for everyone in the batch. (So
            # would be a document BSON cannot encode; these are the service's own documents.)
            for _, future in batch:
                _settle(future, exc)
        else:
            for _, future in batch:
                _settle(future, None)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    """Resolve a caller's future unless the caller gave up waiting (cancelled)."""
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
