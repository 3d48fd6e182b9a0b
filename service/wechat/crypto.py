"""WeChat's message encryption (安全模式), used by the service and by the emulator alike.

The scheme (../shared/wechat-api.md §11): AESKey = base64(EncodingAESKey + "="), 32 bytes;
AES-256-CBC with IV = AESKey[:16]; PKCS#7 padding to 32-byte blocks; plaintext =
random(16) ‖ len(msg) as 4 bytes big-endian ‖ msg ‖ appid; msg_signature = sha1 of the sorted
[token, timestamp, nonce, Encrypt].
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from xml.sax.saxutils import escape

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..signature import signature_matches, wechat_signature

BLOCK = 32  # WeChat pads to 32 bytes, not AES's 16
KEY_LENGTH = 43


class MessageCryptoError(ValueError):
    """A body that is not what WeChat (or its emulator) would send: bad signature or cipher."""


def aes_key_from(encoding_aes_key: str) -> bytes:
    if len(encoding_aes_key) != KEY_LENGTH:
        raise ValueError("an EncodingAESKey is 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error:
        raise ValueError("an EncodingAESKey is base64 without its padding") from None
    if len(key) != 32:
        raise ValueError("an EncodingAESKey decodes to 32 bytes")
    return key


def pkcs7_pad(data: bytes) -> bytes:
    amount = BLOCK - len(data) % BLOCK
    return data + bytes([amount]) * amount


def pkcs7_unpad(data: bytes) -> bytes:
    if not data:
        raise MessageCryptoError("empty ciphertext")
    amount = data[-1]
    if not 1 <= amount <= BLOCK or data[-amount:] != bytes([amount]) * amount:
        raise MessageCryptoError("bad padding")
    return data[:-amount]


class MessageCrypto:
    """Encrypt and decrypt one account's messages; check and make their signatures."""

    def __init__(self, token: str, encoding_aes_key: str, appid: str) -> None:
        self._token = token
        self._key = aes_key_from(encoding_aes_key)
        self._appid = appid.encode()
        # WeChat's IV is the key's first 16 bytes, so one Cipher serves every message; each
        # encryptor()/decryptor() is a fresh context.
        self._cipher = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def encrypt(self, message: str, random16: bytes | None = None) -> str:
        """The base64 `Encrypt` value for `message` (an XML document)."""
        body = message.encode()
        plain = (random16 or os.urandom(16)) + struct.pack(">I", len(body)) + body + self._appid
        encryptor = self._cipher.encryptor()
        return base64.b64encode(encryptor.update(pkcs7_pad(plain)) + encryptor.finalize()).decode()

    def decrypt(self, encrypted: str) -> str:
        """The XML inside `Encrypt`; MessageCryptoError if it is not this account's."""
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise MessageCryptoError("Encrypt is not base64") from None
        if not data or len(data) % 16:
            raise MessageCryptoError("Encrypt is not whole AES blocks")
        decryptor = self._cipher.decryptor()
        plain = pkcs7_unpad(decryptor.update(data) + decryptor.finalize())
        if len(plain) < 20:
            raise MessageCryptoError("ciphertext too short")
        (length,) = struct.unpack(">I", plain[16:20])
        body, appid = plain[20 : 20 + length], plain[20 + length :]
        if len(body) != length or not signature_matches(self._appid.decode(), appid.decode()):
            # A message for another account, or one sealed with another key.
            raise MessageCryptoError("the message is not for this AppID")
        try:
            return body.decode()
        except UnicodeDecodeError:
            raise MessageCryptoError("the message is not UTF-8") from None

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return wechat_signature(self._token, timestamp, nonce, encrypted)

    def check_signature(
        self, msg_signature: str, timestamp: str, nonce: str, encrypted: str
    ) -> bool:
        return signature_matches(self.signature(timestamp, nonce, encrypted), msg_signature)

    def encrypted_reply(self, message: str, timestamp: str, nonce: str) -> str:
        """A passive reply in safe mode: the XML WeChat expects around the ciphertext."""
        encrypted = self.encrypt(message)
        return (
            "<xml><Encrypt><![CDATA[{e}]]></Encrypt><MsgSignature><![CDATA[{s}]]></MsgSignature>"
            "<TimeStamp>{t}</TimeStamp><Nonce><![CDATA[{n}]]></Nonce></xml>"
        ).format(
            e=encrypted,
            s=self.signature(timestamp, nonce, encrypted),
            t=escape(timestamp),
            n=nonce.replace("]]>", ""),
        )
