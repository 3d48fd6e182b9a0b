"""Random bytes for the per-request identifiers, read from the OS a block at a time.

Every authorize needed three draws (its request id, its 401's error id, its state's nonce), and
on this kind of VM each os.urandom call is a getrandom(2) system call that cost more than the
bytes: 15% of an authorize's server time under py-spy (bench/README.md). One call of 4 KiB
serves 256 draws. The bytes are the kernel's CSPRNG output all the same, each handed out once:
a block is split into 16-byte pieces that a deque gives away (its pop is atomic in CPython, so
two threads can never receive the same piece), and a forked child drops what its parent read.

Keys and AEAD nonces (service/store/sealing.py) still read os.urandom directly: they are rare,
and nothing there is worth holding in memory ahead of use.
"""

from __future__ import annotations

import os
from collections import deque

PIECE = 16
_BLOCK_PIECES = 256

_pieces: deque[bytes] = deque()


def random_bytes(n: int = PIECE) -> bytes:
    """n (at most 16) bytes from the OS's CSPRNG, never handed out before."""
    if n != PIECE and not 0 < n < PIECE:
        raise ValueError(f"random_bytes gives 1 to {PIECE} bytes, not {n}")
    try:
        piece = _pieces.pop()
    except IndexError:
        block = os.urandom(PIECE * _BLOCK_PIECES)
        _pieces.extend([block[at : at + PIECE] for at in range(PIECE, len(block), PIECE)])
        piece = block[:PIECE]
    return piece if n == PIECE else piece[:n]


# A child process must not hand out the pieces its parent also holds.
os.register_at_fork(after_in_child=_pieces.clear)
