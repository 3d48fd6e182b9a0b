"""Users' WeChat tokens sealed at rest: AES-256-GCM under a data key kept out of MongoDB.

A stolen database dump (or backup) then holds no usable refresh_token. Each value is sealed
with a fresh 96-bit nonce and bound to its document and field (associated data), so a sealed
value copied into another user's document does not open. Values without the prefix are
plaintext from before a key was configured and are read as they are.

DATA_KEYS = "k2:<base64 32 bytes>,k1:<…>": the first seals, all open, so a key is rotated by
putting a new one first and re-sealing (`python -m service.reseal`) before removing the old.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "sealed:v1:"


class SealingError(ValueError):
    """A data key that is malformed, or a sealed value no configured key opens."""


def parse_data_keys(entries: tuple[str, ...]) -> dict[str, bytes]:
    """`id:base64` entries in order (the first seals); a malformed one raises SealingError."""
    keys: dict[str, bytes] = {}
    for entry in entries:
        key_id, _, encoded = entry.partition(":")
        if not key_id or not key_id.isalnum() or not encoded:
            raise SealingError("each DATA_KEYS entry is id:base64key, the id letters and digits")
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise SealingError(f"data key {key_id!r} is not base64") from None
        if len(key) != 32:
            raise SealingError(f"data key {key_id!r} is {len(key)} bytes; AES-256 needs 32")
        if key_id in keys:
            raise SealingError(f"data key id {key_id!r} appears twice")
        keys[key_id] = key
    return keys


class Sealer:
    def __init__(self, keys: dict[str, bytes]) -> None:
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current = next(iter(keys), None)

    @property
    def enabled(self) -> bool:
        return self.current is not None

    def seal(self, value: str, context: str) -> str:
        if self.current is None:
            return value
        nonce = os.urandom(12)
        sealed = self._keys[self.current].encrypt(nonce, value.encode(), context.encode())
        return f"{PREFIX}{self.current}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, value: str, context: str) -> str:
        if not value.startswith(PREFIX):
            return value  # stored before sealing was turned on
        key_id, _, payload = value[len(PREFIX) :].partition(":")
        cipher = self._keys.get(key_id)
        if cipher is None:
            raise SealingError(f"a value is sealed with data key {key_id!r}, not configured")
        raw = base64.b64decode(payload)
        try:
            return cipher.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag:
            raise SealingError("a sealed value does not open: altered or moved") from None

    def needs_resealing(self, value: str) -> bool:
        if self.current is None:
            return False
        return not value.startswith(f"{PREFIX}{self.current}:")
