"""Sign-in states that carry their own proof, so starting a sign-in writes nothing.

A state was a random string with a document behind it, written by every /wechat/authorize and
/wechat/login: an unauthenticated database write per request, and memory that grew with
traffic. Now the state itself holds what completing the sign-in needs, under a MAC:

    version (1) | issued at (4, seconds) | nonce (12) | context (12) | binding kind (1)
    | binding (16) | MAC (16)                                            = 62 bytes, 124 hex

- the context is a reference to the app's redirect context (account, redirectUri, callback,
  scope), stored once per context (an app sends the same few), not once per request;
- the binding is the first 16 bytes of the PKCE challenge (SHA-256 of the verifier) or of the
  SHA-256 of the browser cookie's secret;
- the MAC is HMAC-SHA256 under a key derived from the app JWT's key (every instance has it),
  cut to 16 bytes.

Hex stays within WeChat's state alphabet ([A-Za-z0-9], at most 128). Single use is kept by a
record written when the sign-in completes (the first completion inserts it; a second finds it).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from service.app_jwt.signing_keys import KeySet
from service.randomness import random_bytes

VERSION = 1
NONCE_BYTES = 12
CONTEXT_BYTES = 12
BINDING_BYTES = 16
MAC_BYTES = 16
_HEAD = struct.Struct(">BI")  # version, issued at
_BODY_BYTES = _HEAD.size + NONCE_BYTES + CONTEXT_BYTES + 1 + BINDING_BYTES
TOKEN_LENGTH = 2 * (_BODY_BYTES + MAC_BYTES)

UNBOUND, PKCE, COOKIE = 0, 1, 2
_NO_BINDING = bytes(BINDING_BYTES)
_KIND_BYTES = {kind: bytes((kind,)) for kind in (UNBOUND, PKCE, COOKIE)}
_KEY_LABEL = b"wechat-oa-auth sign-in state v1"
_SHA256_BLOCK = 64
_IPAD = bytes(byte ^ 0x36 for byte in range(256))
_OPAD = bytes(byte ^ 0x5C for byte in range(256))


@dataclass(frozen=True)
class StateToken:
    """What a state says, once its MAC held."""

    issued_at: int
    nonce: bytes
    context_id: str  # hex
    binding_kind: int
    binding: bytes


@dataclass(frozen=True)
class RedirectContext:
    """Where a sign-in goes: the same for every sign-in of one app page, so stored once."""

    account: str
    redirect_uri: str
    callback: str
    scope: str

    @property
    def id(self) -> str:
        return _context_id(self.account, self.redirect_uri, self.callback, self.scope)


@functools.lru_cache(maxsize=4096)
def _context_id(account: str, redirect_uri: str, callback: str, scope: str) -> str:
    # Asked on every authorize, for the same few contexts: hashed once each (py-spy: 2.8% of
    # an authorize's server time before).
    canonical = json.dumps([account, redirect_uri, callback, scope], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).digest()[:CONTEXT_BYTES].hex()


def binding_of_challenge(challenge: str) -> bytes:
    """A PKCE S256 challenge (BASE64URL of 32 bytes, unpadded) as the state keeps it."""
    return base64.urlsafe_b64decode(challenge + "=")[:BINDING_BYTES]


def binding_of_verifier(verifier: str) -> bytes:
    return hashlib.sha256(verifier.encode("ascii")).digest()[:BINDING_BYTES]


def binding_of_cookie(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()[:BINDING_BYTES]


def state_keys(keys: KeySet) -> list[bytes]:
    """MAC keys from the app JWT's keys, the current one first (it signs): an HS256 secret, or
    the private key's bytes. Keys being rotated out verify states still in flight when they
    are secrets; a retired private key is not kept, so its states read as unknown."""
    found = []
    for key in (keys.current, *keys.previous):
        if key.signing is None:
            continue
        material = (
            key.signing
            if isinstance(key.signing, bytes)
            else key.signing.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        found.append(hmac.new(material, _KEY_LABEL, hashlib.sha256).digest())
    return found


class StateSigner:
    """Issues states and reads them back; a state that is not ours reads as None."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a state needs a MAC key")
        self._keys = tuple(HmacSha256(key) for key in keys)

    def issue(self, *, issued_at: int, context_id: str, binding_kind: int, binding: bytes) -> str:
        body = b"".join(
            (
                _HEAD.pack(VERSION, issued_at),
                random_bytes(NONCE_BYTES),
                bytes.fromhex(context_id),
                _KIND_BYTES[binding_kind],
                binding if binding_kind != UNBOUND else _NO_BINDING,
            )
        )
        return (body + self._keys[0].mac(body)).hex()

    def read(self, state: str) -> StateToken | None:
        if len(state) != TOKEN_LENGTH:
            return None
        try:
            raw = bytes.fromhex(state)
        except ValueError:
            return None
        body, mac = raw[:_BODY_BYTES], raw[_BODY_BYTES:]
        # Every key is tried, each in constant time: which one matched is not observable.
        valid = False
        for key in self._keys:
            valid |= hmac.compare_digest(key.mac(body), mac)
        if not valid:
            return None
        version, issued_at = _HEAD.unpack_from(body)
        if version != VERSION:
            return None
        at = _HEAD.size
        nonce = body[at : at + NONCE_BYTES]
        at += NONCE_BYTES
        context_id = body[at : at + CONTEXT_BYTES].hex()
        at += CONTEXT_BYTES
        kind = body[at]
        binding = body[at + 1 : at + 1 + BINDING_BYTES]
        return StateToken(issued_at, nonce, context_id, kind, binding)


class HmacSha256:
    """HMAC-SHA256 (RFC 2104) under one key, its padded halves hashed once: each MAC then
    costs two hash copies and updates (0.6 µs) instead of hmac.digest's key set-up and
    OpenSSL digest look-up per call (1.5 µs; under load, 8% of an authorize's server time)."""

    def __init__(self, key: bytes) -> None:
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def mac(self, body: bytes) -> bytes:
        """The MAC of `body`, cut to the state's MAC_BYTES."""
        inner = self._inner.copy()
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:MAC_BYTES]


class KnownContexts:
    """The redirect contexts this process knows are stored, each re-stored (its purge moved
    later) at most once per `refresh` seconds: an app's sign-ins then write nothing. Bounded,
    so a client inventing redirect URIs cannot grow it without end."""

    def __init__(self, limit: int = 4096) -> None:
        self._contexts: OrderedDict[str, tuple[RedirectContext, float | None]] = OrderedDict()
        self._limit = limit

    def stored_since(self, context_id: str) -> float | None:
        """When this process last stored the context, if it did."""
        found = self._contexts.get(context_id)
        return found[1] if found else None

    def get(self, context_id: str) -> RedirectContext | None:
        found = self._contexts.get(context_id)
        return found[0] if found else None

    def remember(self, context: RedirectContext, stored_at: float | None = None) -> None:
        """A context this process stored at `stored_at`, or (None) read from the store."""
        if stored_at is None and context.id in self._contexts:
            return
        self._contexts[context.id] = (context, stored_at)
        self._contexts.move_to_end(context.id)
        while len(self._contexts) > self._limit:
            self._contexts.popitem(last=False)
