"""A shared in-memory MongoDB over the wire, for benchmarks and tests: mongomock behind it.

    python -m bench.mongo_memory --host 127.0.0.1 --port 0    # prints the port it bound

What for: several processes reaching one store through pymongo where no MongoDB server can
run: two service instances (`python -m bench.long_polls --instances 2`), or the test suite
(`MONGODB_URI=mongodb://127.0.0.1:PORT/ pytest`). The embedded store (mongomock-motor) lives
inside one process; this one is shared.

What it is: the framing of bench/mongo_stub.py (OP_MSG, and OP_QUERY/OP_REPLY for the first
handshake) with each command run against one synchronous `mongomock.MongoClient`, one command
at a time in the whole process, so every command is atomic. The commands pymongo 4 sends for
the service: hello/isMaster, ping, buildInfo, endSessions, listDatabases; find (filter,
projection, sort, skip, limit, batchSize, singleBatch) with real cursors (getMore,
killCursors; idle ones dropped after 10 minutes, as MongoDB does); insert (ordered; refusals
as writeErrors, duplicates with code 11000); update (replacements, operators, pipelines as far
as mongomock goes, upsert with its `upserted` array, multi; operators touching one path twice
refused, 40, as MongoDB does, where mongomock would apply them); delete (limit 0 or 1);
findAndModify (query, sort, update, remove, new, upsert, fields; lastErrorObject); aggregate;
count; distinct; createIndexes (unique, sparse, expireAfterSeconds, partialFilterExpression,
with MongoDB's conflict and option checks), listIndexes, dropIndexes; listCollections, create,
drop, dropDatabase. Anything else answers `{"ok": 0, "errmsg", "code", "codeName"}`: 59
CommandNotFound for a command not served here, 238 NotImplemented for what mongomock cannot
do (collation, arrayFilters, `let`, text and geo indexes, some stages), 20 IllegalOperation
for transactions (as a standalone server answers); those are also written to stderr.

What it is not: a database. Nothing reaches a disk, there are no transactions, change streams,
authentication or replica set. mongomock has no index structures: queries scan the collection
(a filter naming one `_id` is looked up by key, with the patch the embedded store applies,
service/store/embedded.py, which also runs TTL expiry at most once a minute per collection, as
MongoDB's TTL monitor does); indexes exist for their constraints (unique, and TTL), and a hint
is checked against them, then ignored. A cursor is a snapshot of its results taken when it
opens (mongomock materializes them). Query and update semantics are mongomock 4's, which
differ from MongoDB's in corners; duplicate-key messages do not name the index.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import bson
import mongomock
from bson.int64 import Int64
from bson.raw_bson import RawBSONDocument
from mongomock.filtering import filter_applies
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from bench.mongo_stub import MAX_BSON_OBJECT_SIZE, arguments, hello, run_server
from service.store.embedded import make_embedded_store_scale

VERSION = "7.0.0"  # what buildInfo says; hello's maxWireVersion 21 is 7.0's
DEFAULT_BATCH = 101  # a find's or aggregate's first batch without batchSize, as MongoDB's
BATCH_BYTES = MAX_BSON_OBJECT_SIZE - 64 * 1024  # a batch's documents, leaving room for the rest
CURSOR_TIMEOUT = 600.0  # seconds an idle cursor is kept (MongoDB's cursorTimeoutMillis)

CODE_NAMES = {
    1: "InternalError",
    2: "BadValue",
    9: "FailedToParse",
    14: "TypeMismatch",
    20: "IllegalOperation",
    26: "NamespaceNotFound",
    27: "IndexNotFound",
    40: "ConflictingUpdateOperators",
    43: "CursorNotFound",
    48: "NamespaceExists",
    59: "CommandNotFound",
    66: "ImmutableField",
    67: "CannotCreateIndex",
    72: "InvalidOptions",
    73: "InvalidNamespace",
    85: "IndexOptionsConflict",
    86: "IndexKeySpecsConflict",
    197: "InvalidIndexSpecificationOption",
    238: "NotImplemented",
    11000: "DuplicateKey",
}
# Failures that are this server's (or mongomock's) limits, not the client's doing: logged.
OWN_LIMITS = {1, 59, 238}

# Index options, as listIndexes shows them; the rest of an index specification.
INDEX_OPTIONS = ("unique", "sparse", "expireAfterSeconds", "partialFilterExpression")
IGNORED_INDEX_FIELDS = {"key", "name", "v", "ns", "background", "hidden", "storageEngine"}
UNSUPPORTED_INDEX_FIELDS = {
    "collation",
    "weights",
    "default_language",
    "language_override",
    "textIndexVersion",
    "2dsphereIndexVersion",
    "bits",
    "min",
    "max",
    "wildcardProjection",
    "clustered",
    "prepareUnique",
}
# What a partial index's filter may use (MongoDB 7.0: "Partial Indexes", Filter expressions).
PARTIAL_OPERATORS = {"$eq", "$exists", "$gt", "$gte", "$lt", "$lte", "$type", "$in"}


class CommandError(Exception):
    """A command refused, with MongoDB's code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def not_implemented(what: str) -> CommandError:
    return CommandError(238, f"bench.mongo_memory (mongomock) does not implement {what}")


def failure(code: int, message: str) -> dict[str, Any]:
    return {
        "ok": 0.0,
        "errmsg": message,
        "code": code,
        "codeName": CODE_NAMES.get(code, "UnknownError"),
    }


def describe(exc: BaseException, namespace: str = "") -> tuple[int, str]:
    """MongoDB's (code, message) for what a command raised."""
    if isinstance(exc, CommandError):
        return exc.code, str(exc)
    if isinstance(exc, DuplicateKeyError):
        return 11000, f"E11000 duplicate key error collection: {namespace} ({exc})"
    if isinstance(exc, OperationFailure):
        return exc.code or 2, str(exc)
    if isinstance(exc, NotImplementedError):
        return 238, f"bench.mongo_memory (mongomock) does not implement this: {exc}"
    if isinstance(exc, PyMongoError | ValueError | TypeError | KeyError):
        return 2, f"{type(exc).__name__}: {exc}"
    return 1, f"bench.mongo_memory failed: {type(exc).__name__}: {exc}"


def integer(command: dict[str, Any], name: str, default: int = 0) -> int:
    value = command.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandError(14, f"BSON field '{name}' is the wrong type '{type(value).__name__}'")
    return int(value)


def key_list(spec: Any) -> list[tuple[str, Any]]:
    """An index key or sort, {field: direction}, as a list; 1.0 and Int64(1) read as 1."""
    if not isinstance(spec, dict):
        raise CommandError(14, f"expected an object, got {spec!r}")
    return [(k, int(v) if isinstance(v, int | float) else v) for k, v in spec.items()]


@dataclass
class OpenCursor:
    namespace: str
    documents: Any  # an iterator over the results
    left: int | None  # how many more may be returned (a limit), None: any number
    used: float = field(default_factory=time.monotonic)
    pending: list[Any] = field(default_factory=list)  # one document read ahead

    def next(self) -> Any:
        if self.pending:
            return self.pending.pop()
        return next(self.documents, _END)


_END = object()


class MemoryMongo:
    """The commands, run against one mongomock client (naive UTC datetimes, as BSON's)."""

    def __init__(self) -> None:
        # The embedded store's patches: _id lookups by key, TTL expiry once a minute.
        make_embedded_store_scale()
        self.client = mongomock.MongoClient()
        self.cursors: dict[int, OpenCursor] = {}
        self._swept = time.monotonic()
        self.commands = {
            "ping": self.ping,
            "buildInfo": self.build_info,
            "buildinfo": self.build_info,
            "endSessions": self.ping,
            "listDatabases": self.list_databases,
            "find": self.find,
            "getMore": self.get_more,
            "killCursors": self.kill_cursors,
            "insert": self.insert,
            "update": self.update,
            "delete": self.delete,
            "findAndModify": self.find_and_modify,
            "findandmodify": self.find_and_modify,
            "aggregate": self.aggregate,
            "count": self.count,
            "distinct": self.distinct,
            "createIndexes": self.create_indexes,
            "listIndexes": self.list_indexes,
            "dropIndexes": self.drop_indexes,
            "deleteIndexes": self.drop_indexes,
            "listCollections": self.list_collections,
            "create": self.create,
            "drop": self.drop,
            "dropDatabase": self.drop_database,
        }

    # -- dispatch -------------------------------------------------------------------------------

    def __call__(self, command: dict[str, Any], connection_id: int) -> dict[str, Any]:
        name = next(iter(command), "")
        if name.lower() in ("hello", "ismaster"):
            return hello(connection_id)
        try:
            if "txnNumber" in command or "startTransaction" in command or "autocommit" in command:
                raise CommandError(
                    20, "Transaction numbers are only allowed on a replica set member or mongos"
                )
            handler = self.commands.get(name)
            if handler is None:
                raise CommandError(59, f"no such command: '{name}' (bench.mongo_memory)")
            if "collation" in command:
                raise not_implemented("collation")
            return handler(command)
        except Exception as exc:
            code, message = describe(exc, self._namespace_of(command, name))
            if code in OWN_LIMITS:
                print(f"mongo_memory: {name}: {code} {message}", file=sys.stderr, flush=True)
                if code == 1:
                    traceback.print_exc(file=sys.stderr)
            return failure(code, message)

    @staticmethod
    def _namespace_of(command: dict[str, Any], name: str) -> str:
        return f"{command.get('$db', '')}.{command.get(name, '')}"

    def _database(self, command: dict[str, Any]) -> Any:
        name = command.get("$db")
        if not isinstance(name, str) or not name:
            raise CommandError(73, "no $db in the command")
        return self.client[name]

    def _collection(self, command: dict[str, Any], name: str) -> tuple[Any, str]:
        """(the mongomock collection, its namespace) the command names."""
        database = self._database(command)
        collection = command.get(name)
        if not isinstance(collection, str) or not collection:
            raise CommandError(73, f"collection name must be a string, not {collection!r}")
        return database[collection], f"{database.name}.{collection}"

    @staticmethod
    def _exists(collection: Any) -> bool:
        return bool(collection.database._store[collection.name].is_created)

    # -- the server -----------------------------------------------------------------------------

    @staticmethod
    def ping(command: dict[str, Any]) -> dict[str, Any]:
        return {"ok": 1.0}

    @staticmethod
    def build_info(command: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": VERSION,
            "versionArray": [int(p) for p in VERSION.split(".")] + [0],
            "gitVersion": f"bench.mongo_memory (mongomock {mongomock.__version__})",
            "bits": 64,
            "debug": False,
            "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
            "ok": 1.0,
        }

    def list_databases(self, command: dict[str, Any]) -> dict[str, Any]:
        names = self.client.list_database_names()
        if command.get("nameOnly"):
            return {"databases": [{"name": n} for n in names], "ok": 1.0}
        databases = [{"name": n, "sizeOnDisk": 0, "empty": False} for n in names]
        return {"databases": databases, "totalSize": 0, "ok": 1.0}

    # -- reads ----------------------------------------------------------------------------------

    def find(self, command: dict[str, Any]) -> dict[str, Any]:
        collection, namespace = self._collection(command, "find")
        for option in ("tailable", "awaitData", "min", "max", "returnKey", "showRecordId", "let"):
            if command.get(option):
                raise not_implemented(f"find's {option}")
        skip, limit = integer(command, "skip"), integer(command, "limit")
        if skip < 0 or limit < 0:
            raise CommandError(2, "skip and limit must be non-negative")
        self._check_hint(collection, command.get("hint"))
        sort = key_list(command["sort"]) if command.get("sort") else None
        cursor = collection.find(
            command.get("filter") or {},
            command.get("projection"),
            skip=skip,
            limit=limit,
            sort=sort,
        )
        opened = OpenCursor(namespace, iter(cursor), limit or None)
        return self._first_batch(opened, command.get("batchSize"), command.get("singleBatch"))

    def aggregate(self, command: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(command.get("aggregate"), str):
            raise not_implemented("an aggregate without a collection")
        if command.get("explain"):
            raise not_implemented("explain")
        if command.get("let"):
            raise not_implemented("aggregate's let")
        options = command.get("cursor")
        if not isinstance(options, dict):
            raise CommandError(
                9, "The 'cursor' option is required, except for aggregate with the explain argument"
            )
        pipeline = command.get("pipeline")
        if not isinstance(pipeline, list):
            raise CommandError(14, "'pipeline' option must be specified as an array")
        collection, namespace = self._collection(command, "aggregate")
        self._check_hint(collection, command.get("hint"))
        results = collection.aggregate(pipeline)
        return self._first_batch(
            OpenCursor(namespace, iter(results), None), options.get("batchSize")
        )

    def count(self, command: dict[str, Any]) -> dict[str, Any]:
        collection, _ = self._collection(command, "count")
        self._check_hint(collection, command.get("hint"))
        skip, limit = integer(command, "skip"), abs(integer(command, "limit"))
        found = sum(1 for _ in collection.find(command.get("query") or {}))
        found = max(found - skip, 0)
        return {"n": min(found, limit) if limit else found, "ok": 1.0}

    def distinct(self, command: dict[str, Any]) -> dict[str, Any]:
        collection, _ = self._collection(command, "distinct")
        key = command.get("key")
        if not isinstance(key, str):
            raise CommandError(14, "'key' must be a string")
        return {"values": collection.distinct(key, command.get("query") or None), "ok": 1.0}

    def _check_hint(self, collection: Any, hint: Any) -> None:
        """A hint naming no index fails as on MongoDB; results never depend on it here."""
        if not hint or not self._exists(collection):
            return
        indexes = collection.index_information()
        if isinstance(hint, str):
            found = hint in indexes
        else:
            wanted = key_list(hint)
            found = wanted[0][0] == "$natural" or any(
                key_list(dict(info["key"])) == wanted for info in indexes.values()
            )
        if not found:
            raise CommandError(
                2,
                "error processing query: planner returned error :: caused by :: hint provided "
                "does not correspond to an existing index",
            )

    # -- cursors --------------------------------------------------------------------------------

    def _first_batch(
        self, cursor: OpenCursor, batch_size: Any, single_batch: Any = False
    ) -> dict[str, Any]:
        size = DEFAULT_BATCH if batch_size is None else int(batch_size)
        if size < 0:
            raise CommandError(2, "batchSize must be non-negative")
        batch, exhausted = self._batch(cursor, size)
        cursor_id = 0
        if not exhausted and not single_batch:
            self._sweep_cursors()
            cursor_id = secrets.randbits(62) + 1
            self.cursors[cursor_id] = cursor
        return {
            "cursor": {"firstBatch": batch, "id": Int64(cursor_id), "ns": cursor.namespace},
            "ok": 1.0,
        }

    def get_more(self, command: dict[str, Any]) -> dict[str, Any]:
        cursor_id = command.get("getMore")
        database = self._database(command)
        namespace = f"{database.name}.{command.get('collection')}"
        cursor = self.cursors.get(int(cursor_id)) if isinstance(cursor_id, int) else None
        if cursor is None or cursor.namespace != namespace:
            raise CommandError(43, f"cursor id {cursor_id} not found")
        size = command.get("batchSize")
        batch, exhausted = self._batch(cursor, int(size) if size else None)
        cursor.used = time.monotonic()
        if exhausted:
            del self.cursors[int(cursor_id)]
            cursor_id = 0
        return {
            "cursor": {"nextBatch": batch, "id": Int64(cursor_id), "ns": namespace},
            "ok": 1.0,
        }

    def kill_cursors(self, command: dict[str, Any]) -> dict[str, Any]:
        killed, not_found = [], []
        for cursor_id in command.get("cursors") or ():
            if self.cursors.pop(int(cursor_id), None) is not None:
                killed.append(Int64(cursor_id))
            else:
                not_found.append(Int64(cursor_id))
        return {
            "cursorsKilled": killed,
            "cursorsNotFound": not_found,
            "cursorsAlive": [],
            "cursorsUnknown": [],
            "ok": 1.0,
        }

    @staticmethod
    def _batch(cursor: OpenCursor, size: int | None) -> tuple[list[RawBSONDocument], bool]:
        """Up to `size` documents (any number when None) within BATCH_BYTES, each encoded once;
        and whether the cursor is exhausted."""
        batch: list[RawBSONDocument] = []
        total = 0
        while size is None or len(batch) < size:
            if cursor.left == 0:
                return batch, True
            doc = cursor.next()
            if doc is _END:
                return batch, True
            raw = RawBSONDocument(bson.encode(doc))
            if batch and total + len(raw.raw) > BATCH_BYTES:
                cursor.pending.append(doc)
                return batch, False
            batch.append(raw)
            total += len(raw.raw)
            if cursor.left is not None:
                cursor.left -= 1
        if cursor.left == 0:
            return batch, True
        ahead = cursor.next()
        if ahead is _END:
            return batch, True
        cursor.pending.append(ahead)
        return batch, False

    def _sweep_cursors(self) -> None:
        now = time.monotonic()
        if now - self._swept < 10:
            return
        self._swept = now
        for cursor_id in [k for k, c in self.cursors.items() if now - c.used > CURSOR_TIMEOUT]:
            del self.cursors[cursor_id]

    # -- writes ---------------------------------------------------------------------------------

    @staticmethod
    def _write_reply(n: int, errors: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        reply: dict[str, Any] = {"n": n, **extra, "ok": 1.0}
        if errors:
            reply["writeErrors"] = errors
        return reply

    @staticmethod
    def _write_error(index: int, exc: Exception, namespace: str) -> dict[str, Any]:
        code, message = describe(exc, namespace)
        if code in OWN_LIMITS:
            print(f"mongo_memory: write: {code} {message}", file=sys.stderr, flush=True)
        return {"index": index, "code": code, "errmsg": message}

    def insert(self, command: dict[str, Any]) -> dict[str, Any]:
        collection, namespace = self._collection(command, "insert")
        documents = command.get("documents") or []
        ordered = command.get("ordered", True)
        inserted, errors = 0, []
        for index, document in enumerate(documents):
            try:
                collection.insert_one(document)
                inserted += 1
            except Exception as exc:
                errors.append(self._write_error(index, exc, namespace))
                if ordered:
                    break
        return self._write_reply(inserted, errors)

    def update(self, command: dict[str, Any]) -> dict[str, Any]:
        collection, namespace = self._collection(command, "update")
        ordered = command.get("ordered", True)
        matched = modified = 0
        upserted: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for index, spec in enumerate(command.get("updates") or []):
            try:
                raw = self._update_one_spec(collection, spec)
            except Exception as exc:
                errors.append(self._write_error(index, exc, namespace))
                if ordered:
                    break
                continue
            matched += raw["n"]
            modified += raw.get("nModified") or 0
            if raw.get("upserted") is not None:
                upserted.append({"index": index, "_id": raw["upserted"]})
        extra: dict[str, Any] = {"nModified": modified}
        if upserted:
            extra["upserted"] = upserted
        return self._write_reply(matched, errors, **extra)

    def _update_one_spec(self, collection: Any, spec: dict[str, Any]) -> dict[str, Any]:
        """One statement of an update command: mongomock's raw result (n, nModified, upserted)."""
        if spec.get("collation"):
            raise not_implemented("collation")
        if spec.get("c"):
            raise not_implemented("update's let constants (c)")
        self._check_hint(collection, spec.get("hint"))
        query, update = spec.get("q") or {}, spec.get("u")
        upsert, multi = bool(spec.get("upsert")), bool(spec.get("multi"))
        array_filters = spec.get("arrayFilters")
        check_update_paths(update)
        if replacement(update):
            if multi:
                raise CommandError(9, "multi update is not supported for replacement-style update")
            return collection.replace_one(query, update, upsert=upsert).raw_result
        method = collection.update_many if multi else collection.update_one
        return method(query, update, upsert=upsert, array_filters=array_filters).raw_result

    def delete(self, command: dict[str, Any]) -> dict[str, Any]:
        collection, namespace = self._collection(command, "delete")
        ordered = command.get("ordered", True)
        deleted, errors = 0, []
        for index, spec in enumerate(command.get("deletes") or []):
            try:
                if spec.get("collation"):
                    raise not_implemented("collation")
                self._check_hint(collection, spec.get("hint"))
                limit = integer(spec, "limit")
                if limit not in (0, 1):
                    raise CommandError(
                        9, f"The limit field in delete objects must be 0 or 1. Got {limit}"
                    )
                method = collection.delete_one if limit == 1 else collection.delete_many
                deleted += method(spec.get("q") or {}).deleted_count
            except Exception as exc:
                errors.append(self._write_error(index, exc, namespace))
                if ordered:
                    break
        return self._write_reply(deleted, errors)

    def find_and_modify(self, command: dict[str, Any]) -> dict[str, Any]:
        name = "findAndModify" if "findAndModify" in command else "findandmodify"
        collection, _ = self._collection(command, name)
        query = command.get("query") or {}
        update, remove = command.get("update"), bool(command.get("remove"))
        new, upsert = bool(command.get("new")), bool(command.get("upsert"))
        fields = command.get("fields") or None
        if command.get("arrayFilters"):
            raise not_implemented("arrayFilters")
        if command.get("let"):
            raise not_implemented("findAndModify's let")
        if remove and update is not None:
            raise CommandError(9, "Cannot specify both an update and remove=true")
        if remove and (new or upsert):
            raise CommandError(9, "Cannot specify both upsert=true/new=true and remove=true")
        if not remove and update is None:
            raise CommandError(9, "Either an update or remove=true must be specified")
        self._check_hint(collection, command.get("hint"))
        check_update_paths(update)
        sort = key_list(command["sort"]) if command.get("sort") else None
        existing = collection.find_one(query, sort=sort)
        if remove:
            value = None
            if existing is not None:
                value = collection.find_one({"_id": existing["_id"]}, fields)
                collection.delete_one({"_id": existing["_id"]})
            return {"lastErrorObject": {"n": int(value is not None)}, "value": value, "ok": 1.0}
        write = collection.replace_one if replacement(update) else collection.update_one
        if existing is not None:
            before = None if new else collection.find_one({"_id": existing["_id"]}, fields)
            # The query stays (a positional $ update needs it), narrowed to the document found.
            write({**query, "_id": existing["_id"]}, update)
            value = collection.find_one({"_id": existing["_id"]}, fields) if new else before
            last = {"n": 1, "updatedExisting": True}
        elif upsert:
            upserted_id = write(query, update, upsert=True).raw_result["upserted"]
            value = collection.find_one({"_id": upserted_id}, fields) if new else None
            last = {"n": 1, "updatedExisting": False, "upserted": upserted_id}
        else:
            value, last = None, {"n": 0, "updatedExisting": False}
        return {"lastErrorObject": last, "value": value, "ok": 1.0}

    # -- indexes --------------------------------------------------------------------------------

    def create_indexes(self, command: dict[str, Any]) -> dict[str, Any]:
        collection, _ = self._collection(command, "createIndexes")
        specs = command.get("indexes")
        if not isinstance(specs, list) or not specs:
            raise CommandError(2, "Must specify at least one index to create")
        existed = self._exists(collection)
        before = len(collection.index_information()) if existed else 1
        created = 0
        for spec in specs:
            key, name, options = self._index_spec(spec)
            if self._index_exists(collection, key, name, options):
                continue
            collection.create_index(key, name=name, **options)
            created += 1
        reply: dict[str, Any] = {
            "createdCollectionAutomatically": not existed,
            "numIndexesBefore": before,
            "numIndexesAfter": len(collection.index_information()),
            "ok": 1.0,
        }
        if not created:
            reply["note"] = "all indexes already exist"
        return reply

    @staticmethod
    def _index_spec(spec: Any) -> tuple[list[tuple[str, Any]], str, dict[str, Any]]:
        """(key, name, options) of one createIndexes specification, checked as MongoDB does."""
        if not isinstance(spec, dict):
            raise CommandError(14, "an index specification must be an object")
        key = key_list(spec.get("key"))
        if not key:
            raise CommandError(67, "Index keys cannot be empty.")
        for field_name, direction in key:
            if isinstance(direction, str):
                if direction != "hashed":
                    raise not_implemented(f"{direction!r} indexes")
            elif not direction:
                raise CommandError(67, f"Values in the index key pattern can't be 0: {field_name}")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise CommandError(
                9, "The 'name' field is a required property of an index specification"
            )
        for option in spec:
            if option in UNSUPPORTED_INDEX_FIELDS:
                raise not_implemented(f"the index option {option!r}")
            if option not in IGNORED_INDEX_FIELDS and option not in INDEX_OPTIONS:
                raise CommandError(
                    197, f"The field '{option}' is not valid for an index specification"
                )
        options = index_options(spec)
        if "expireAfterSeconds" in options:
            ttl = options["expireAfterSeconds"]
            if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl < 0:
                raise CommandError(67, "TTL index 'expireAfterSeconds' option must be >= 0")
            if len(key) > 1:
                raise CommandError(
                    67, "TTL indexes are single-field indexes, compound indexes do not support TTL"
                )
            options["expireAfterSeconds"] = int(ttl)
        if "partialFilterExpression" in options:
            if "sparse" in options:
                raise CommandError(67, 'cannot mix "partialFilterExpression" and "sparse" options')
            check_partial_filter(options["partialFilterExpression"], top=True)
        return key, name, options

    @staticmethod
    def _index_exists(
        collection: Any, key: list[tuple[str, Any]], name: str, options: dict[str, Any]
    ) -> bool:
        """True if this very index exists; MongoDB's conflicts raised (same name, another key
        or options; same key and options, another name)."""
        for other_name, info in collection.index_information().items():
            other_key = key_list(dict(info["key"]))
            other_options = index_options(info)
            requested = {"key": dict(key), "name": name, **options}
            existing = {"key": dict(other_key), "name": other_name, **other_options}
            if other_name == name:
                if other_key != key:
                    raise CommandError(
                        86,
                        "An existing index has the same name as the requested index. When "
                        "index names are not specified, they are auto generated and can cause "
                        "conflicts. Please refer to our documentation. Requested index: "
                        f"{requested}, existing index: {existing}",
                    )
                if other_options != options:
                    raise CommandError(
                        85,
                        "An equivalent index already exists with the same name but different "
                        f"options. Requested index: {requested}, existing index: {existing}",
                    )
                return True
            same_partial = other_options.get("partialFilterExpression") == options.get(
                "partialFilterExpression"
            )
            if other_key == key and same_partial:
                if other_options == options:
                    raise CommandError(
                        85, f"Index already exists with a different name: {other_name}"
                    )
                raise CommandError(
                    85,
                    "An equivalent index already exists with a different name and options. "
                    f"Requested index: {requested}, existing index: {existing}",
                )
        return False

    def list_indexes(self, command: dict[str, Any]) -> dict[str, Any]:
        collection, namespace = self._collection(command, "listIndexes")
        if not self._exists(collection):
            raise CommandError(26, f"ns does not exist: {namespace}")
        indexes = iter(list(collection.list_indexes()))
        cursor = OpenCursor(namespace, indexes, None)
        return self._first_batch(cursor, (command.get("cursor") or {}).get("batchSize"))

    def drop_indexes(self, command: dict[str, Any]) -> dict[str, Any]:
        name = "dropIndexes" if "dropIndexes" in command else "deleteIndexes"
        collection, namespace = self._collection(command, name)
        if not self._exists(collection):
            raise CommandError(26, f"ns not found {namespace}")
        indexes = collection.index_information()
        wanted = command.get("index")
        if wanted == "*":
            names = [n for n in indexes if n != "_id_"]
        elif isinstance(wanted, str):
            names = [wanted]
        elif isinstance(wanted, list):
            names = list(wanted)
        elif isinstance(wanted, dict):
            key = key_list(wanted)
            found = [n for n, i in indexes.items() if key_list(dict(i["key"])) == key]
            if not found:
                raise CommandError(27, f"can't find index with key: {dict(key)}")
            names = found[:1]
        else:
            raise CommandError(14, "'index' must be a string, an array of names or an object")
        for index_name in names:
            if index_name == "_id_":
                raise CommandError(72, "cannot drop _id index")
            if index_name not in indexes:
                raise CommandError(27, f"index not found with name [{index_name}]")
        for index_name in names:
            collection.drop_index(index_name)
        return {"nIndexesWas": len(indexes), "ok": 1.0}

    # -- collections and databases --------------------------------------------------------------

    def list_collections(self, command: dict[str, Any]) -> dict[str, Any]:
        database = self._database(command)
        wanted = command.get("filter") or {}
        found = []
        for name in sorted(database.list_collection_names()):
            info: dict[str, Any] = {"name": name, "type": "collection"}
            if not command.get("nameOnly"):
                info.update(
                    options={},
                    info={"readOnly": False},
                    idIndex={"v": 2, "key": {"_id": 1}, "name": "_id_"},
                )
            if filter_applies(wanted, info):
                found.append(info)
        namespace = f"{database.name}.$cmd.listCollections"
        cursor = OpenCursor(namespace, iter(found), None)
        return self._first_batch(cursor, (command.get("cursor") or {}).get("batchSize"))

    def create(self, command: dict[str, Any]) -> dict[str, Any]:
        collection, namespace = self._collection(command, "create")
        generic = {"create", "$db", "lsid", "$clusterTime", "$readPreference", "writeConcern"}
        for option, value in command.items():
            if option not in generic and option != "comment" and value:
                raise not_implemented(f"create's option {option!r}")
        if self._exists(collection):
            raise CommandError(48, f"Collection {namespace} already exists.")
        collection.database.create_collection(collection.name)
        return {"ok": 1.0}

    def drop(self, command: dict[str, Any]) -> dict[str, Any]:
        collection, namespace = self._collection(command, "drop")
        if not self._exists(collection):
            return {"ok": 1.0}  # MongoDB 7.0: dropping a missing collection is no error
        indexes = len(collection.index_information())
        collection.drop()
        return {"nIndexesWas": indexes, "ns": namespace, "ok": 1.0}

    def drop_database(self, command: dict[str, Any]) -> dict[str, Any]:
        database = self._database(command)
        self.client.drop_database(database.name)
        # mongomock keeps a dropped database's (empty) objects; a test suite drops thousands.
        self.client._store._databases.pop(database.name, None)
        self.client._database_accesses.pop(database.name, None)
        return {"dropped": database.name, "ok": 1.0}


def index_options(spec: dict[str, Any]) -> dict[str, Any]:
    """The options of an index specification that are set (expireAfterSeconds 0 is)."""
    return {o: spec[o] for o in INDEX_OPTIONS if spec.get(o) is not None and spec[o] is not False}


def replacement(update: Any) -> bool:
    """A replacement document (no update operators); an update pipeline or operators: False."""
    if isinstance(update, list):
        return False
    if not isinstance(update, dict):
        raise CommandError(14, "the update must be an object or a pipeline (an array)")
    operators = [k.startswith("$") for k in update]
    if any(operators) and not all(operators):
        raise CommandError(9, "an update document mixes operators and plain fields")
    return not any(operators)


def check_update_paths(update: Any) -> None:
    """MongoDB refuses an update whose operators touch one path twice, or a path and a part of
    it ({"$set": {"a": 1}, "$unset": {"a.b": ""}}): 40 ConflictingUpdateOperators. mongomock
    applies them one after the other."""
    if not isinstance(update, dict):
        return
    paths: list[str] = []
    for operator, fields in update.items():
        if operator.startswith("$") and isinstance(fields, dict):
            paths.extend(fields)
            if operator == "$rename":
                paths.extend(v for v in fields.values() if isinstance(v, str))
    for index, path in enumerate(paths):
        for other in paths[index + 1 :]:
            shorter, longer = sorted((path, other), key=len)
            if longer == shorter or longer.startswith(shorter + "."):
                raise CommandError(
                    40, f"Updating the path '{longer}' would create a conflict at '{shorter}'"
                )


def check_partial_filter(expression: Any, top: bool = False) -> None:
    """MongoDB's restriction on partialFilterExpression (7.0: equality, $exists: true,
    $gt/$gte/$lt/$lte, $type, $in, and $and/$or at the top level)."""
    if not isinstance(expression, dict):
        raise CommandError(67, f"Expression not supported in partial index: {expression!r}")
    for key, value in expression.items():
        if key in ("$and", "$or"):
            if not top or not isinstance(value, list):
                raise CommandError(
                    67, f"Expression not supported in partial index: {key} below the top level"
                )
            for part in value:
                check_partial_filter(part)
        elif key.startswith("$"):
            raise CommandError(67, f"Expression not supported in partial index: {key}")
        elif isinstance(value, dict) and any(k.startswith("$") for k in value):
            for operator, argument in value.items():
                if operator not in PARTIAL_OPERATORS or (operator == "$exists" and not argument):
                    raise CommandError(
                        67,
                        f"Expression not supported in partial index: {key} {operator} {argument!r}",
                    )


def main() -> None:
    args = arguments(__doc__.splitlines()[0], 27017)
    store = MemoryMongo()
    asyncio.run(run_server(store, args.host, args.port))


if __name__ == "__main__":
    main()
