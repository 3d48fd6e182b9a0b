"""WeChat's message encryption (安全模式), used by the service and by the emulator alike.

The scheme (../shared/wechat-api.md §11): AESKey = base64(EncodingAESKey + "="), 32 bytes;
AES-256-CBC with IV = AESKey[:16]; PKCS#7 padding to 32-byte blocks; plaintext =
random(16) ‖ len(msg) as 4 bytes big-endian ‖ msg ‖ appid; msg_signature = sha1 of the sorted
[token, timestamp, nonce, Encrypt].
"""

from __future__ import annotations

import base64
import binascii
import hmac
import struct
from xml.sax.saxutils import escape

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from service.randomness import random_bytes
from service.wechat.signature import signature_matches, wechat_signature

BLOCK = 32  # WeChat pads to 32 bytes, not AES's 16
KEY_LENGTH = 43


class MessageCryptoError(ValueError):
    """A body that is not what WeChat (or its emulator) would send: bad signature or cipher."""


# The one message of every decryption failure (see MessageCrypto.decrypt).
UNDECRYPTABLE = "the ciphertext does not decrypt to a message for this AppID"


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


# The padding of each length, made once: 1 to BLOCK bytes of that count.
_PADDING = [bytes([amount]) * amount for amount in range(BLOCK + 1)]


def pkcs7_pad(data: bytes) -> bytes:
    return data + _PADDING[BLOCK - len(data) % BLOCK]


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
        plain = (random16 or random_bytes(16)) + len(body).to_bytes(4, "big") + body + self._appid
        encryptor = self._cipher.encryptor()
        sealed = encryptor.update(pkcs7_pad(plain)) + encryptor.finalize()
        return binascii.b2a_base64(sealed, newline=False).decode("ascii")

    def decrypt(self, encrypted: str) -> str:
        """The XML inside `Encrypt`; MessageCryptoError if it is not this account's.

        Every way a ciphertext can be wrong (not base64, not whole blocks, bad padding, a
        length field past the end, another AppID, not UTF-8) raises the same error with the
        same message, after the same work: a sender who can tell bad padding from a wrong
        AppID has a padding oracle, and decrypts any captured push a block at a time
        (../shared/wechat-api.md §11).
        """
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            data = b""
        if not data or len(data) % 16:
            raise MessageCryptoError(UNDECRYPTABLE)
        decryptor = self._cipher.decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
        # No early exit between here and the verdict: each check runs whatever the others say.
        amount = plain[-1]
        padding_ok = 1 <= amount <= BLOCK and hmac.compare_digest(
            plain[-amount:], bytes([amount]) * amount
        )
        unpadded = plain[:-amount] if padding_ok else plain
        (length,) = struct.unpack(">I", unpadded[16:20].rjust(4, b"\0"))
        body, appid = unpadded[20 : 20 + length], unpadded[20 + length :]
        length_ok = len(unpadded) >= 20 and len(body) == length
        appid_ok = hmac.compare_digest(appid, self._appid)
        try:
            text = body.decode()
        except UnicodeDecodeError:
            text = None
        if not (padding_ok and length_ok and appid_ok) or text is None:
            raise MessageCryptoError(UNDECRYPTABLE)
        return text

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
            "<xml><Encrypt><![CDATA["
            + encrypted
            + "]]></Encrypt><MsgSignature><![CDATA["
            + self.signature(timestamp, nonce, encrypted)
            + "]]></MsgSignature><TimeStamp>"
            + escape(timestamp)
            + "</TimeStamp><Nonce><![CDATA["
            + nonce.replace("]]>", "")
            + "]]></Nonce></xml>"
        )
