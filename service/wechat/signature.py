"""WeChat's request signatures: sha1 over the sorted, concatenated parts."""

from __future__ import annotations

import hashlib
import hmac


def wechat_signature(token: str, timestamp: str, nonce: str, *extra: str) -> str:
    """signature (token, timestamp, nonce) or msg_signature (… plus the Encrypt element)."""
    parts = sorted([token, timestamp, nonce, *extra])
    return hashlib.sha1("".join(parts).encode()).hexdigest()  # noqa: S324 - WeChat's scheme


def signature_matches(expected: str, given: str) -> bool:
    # Constant time, so response timing does not reveal how much of a forged signature matched.
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode())
