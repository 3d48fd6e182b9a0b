"""A MongoDB wire-protocol stub for the load benchmark: it acknowledges every command at once.

    python -m bench.mongo_stub --port 27099

Not a database: it stores nothing, every write answers "done" (n = documents sent), every
query an empty result. It lets `bench/load.py --mongo-stub` run the service on its production
code path (pymongo's AsyncMongoClient encoding each command, sending it over a socket and
decoding the reply) when no MongoDB server can run on the machine, so the server's CPU per
request can be read for that path. The database's own work is left out (in production it is
another machine's), so the figures are the service's side only, and an upper bound on speed.
Endpoints that read what they wrote (sign-in's consume_state) cannot work against it;
`bench/mongo_memory.py` (the same framing, mongomock behind it) can.

Speaks what pymongo 4 sends: OP_MSG (MongoDB 3.6+) for commands, and OP_QUERY for the first
handshake, answered with OP_REPLY (the MongoDB Wire Protocol reference, "Legacy Opcodes").
`serve_wire` and `run_server` are that framing, shared with bench/mongo_memory.py.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import struct
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import bson
from bson.int64 import Int64

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
CHECKSUM_PRESENT, MORE_TO_COME = 1 << 0, 1 << 1
HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode
MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024

# A command's answer: (the command with its document sequences merged in, the connection's id).
Handler = Callable[[dict[str, Any], int], dict[str, Any]]

_request_ids = itertools.count(1)
_connection_ids = itertools.count(1)


def hello(connection_id: int) -> dict[str, Any]:
    """A standalone MongoDB 7.0 (wire version 21), primary and writable."""
    return {
        "helloOk": True,
        "ismaster": True,
        "isWritablePrimary": True,
        "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
        "maxMessageSizeBytes": 48_000_000,
        "maxWriteBatchSize": 100_000,
        "localTime": datetime.now(UTC),
        "logicalSessionTimeoutMinutes": 30,
        "connectionId": connection_id,
        "minWireVersion": 0,
        "maxWireVersion": 21,
        "readOnly": False,
        "ok": 1.0,
    }


def answer(command: dict[str, Any], connection_id: int) -> dict[str, Any]:
    name = next(iter(command), "")
    lowered = name.lower()
    if lowered in ("hello", "ismaster"):
        return hello(connection_id)
    if name in ("insert", "delete", "update"):
        field = {"insert": "documents", "delete": "deletes", "update": "updates"}[name]
        documents = len(command.get(field) or ())
        if name == "update":
            return {"n": documents, "nModified": documents, "ok": 1.0}
        return {"n": documents, "ok": 1.0}
    if name == "findAndModify":
        return {"lastErrorObject": {"n": 0, "updatedExisting": False}, "value": None, "ok": 1.0}
    if name in ("find", "aggregate", "listIndexes", "listCollections"):
        namespace = f"{command.get('$db', 'db')}.{command[name]}"
        return {"cursor": {"id": Int64(0), "ns": namespace, "firstBatch": []}, "ok": 1.0}
    return {"ok": 1.0}  # createIndexes, ping, endSessions, dropDatabase, ...


def parse_msg(body: bytes) -> tuple[int, dict[str, Any]]:
    """(flagBits, the command document with its document sequences merged in: an insert's
    `documents`, an update's `updates`, a delete's `deletes`, as pymongo sends them)."""
    (flags,) = struct.unpack_from("<I", body)
    end = len(body) - (4 if flags & CHECKSUM_PRESENT else 0)
    position = 4
    command: dict[str, Any] = {}
    sequences: dict[str, list[Any]] = {}
    while position < end:
        kind = body[position]
        (size,) = struct.unpack_from("<i", body, position + 1)
        if kind == 0:
            command = bson.decode(body[position + 1 : position + 1 + size])
        else:  # a document sequence: size, identifier (a C string), documents
            name_end = body.index(b"\x00", position + 5)
            identifier = body[position + 5 : name_end].decode()
            documents = bson.decode_all(body[name_end + 1 : position + 1 + size])
            sequences.setdefault(identifier, []).extend(documents)
        position += 1 + size
    command.update(sequences)
    return flags, command


def parse_query(body: bytes) -> dict[str, Any]:
    """OP_QUERY: flags, fullCollectionName, numberToSkip, numberToReturn, query."""
    name_end = body.index(b"\x00", 4)
    position = name_end + 1 + 8
    (size,) = struct.unpack_from("<i", body, position)
    return bson.decode(body[position : position + size])


def serve_wire(
    handler: Handler,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A connection handler for asyncio.start_server: reads each message, has `handler` answer
    its command (synchronously: one command at a time in the whole process), writes the reply."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection_id = next(_connection_ids)
        try:
            while True:
                length, request_id, _, opcode = HEADER.unpack(await reader.readexactly(16))
                body = await reader.readexactly(length - 16)
                if opcode == OP_MSG:
                    flags, command = parse_msg(body)
                    reply = handler(command, connection_id)
                    if flags & MORE_TO_COME:
                        continue  # an unacknowledged write: no answer is expected
                    payload = struct.pack("<I", 0) + b"\x00" + bson.encode(reply)
                    out_code = OP_MSG
                elif opcode == OP_QUERY:
                    reply = handler(parse_query(body), connection_id)
                    payload = struct.pack("<iqii", 0, 0, 0, 1) + bson.encode(reply)
                    out_code = OP_REPLY
                else:
                    break  # nothing pymongo 4 sends
                header = HEADER.pack(16 + len(payload), next(_request_ids), request_id, out_code)
                writer.write(header + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return serve


async def run_server(handler: Handler, host: str, port: int) -> None:
    """Serve `handler` on host:port until cancelled; first prints the port bound (port 0:
    whichever the kernel picked) on stdout, for whoever started the process."""
    server = await asyncio.start_server(serve_wire(handler), host, port)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def arguments(description: str, default_port: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port, help="0: any free port (printed)")
    return parser.parse_args()


if __name__ == "__main__":
    args = arguments(__doc__.splitlines()[0], 27099)
    asyncio.run(run_server(answer, args.host, args.port))
