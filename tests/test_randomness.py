"""The pooled random bytes behind request ids, error ids, state nonces and reply prefixes."""

from __future__ import annotations

import os

import pytest

from service.randomness import PIECE, random_bytes


def test_no_draw_repeats_across_several_blocks():
    drawn = [random_bytes() for _ in range(2000)]  # about eight blocks of the OS's bytes
    assert len(set(drawn)) == len(drawn)
    assert all(len(piece) == PIECE for piece in drawn)
    assert len(random_bytes(12)) == 12


@pytest.mark.parametrize("size", [0, 17, -1])
def test_sizes_outside_a_piece_are_refused(size):
    with pytest.raises(ValueError):
        random_bytes(size)


def test_a_forked_child_never_hands_out_its_parents_pieces():
    random_bytes()  # the pool holds a block now
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next draw, to the parent
        try:
            os.write(write_end, random_bytes())
        finally:
            os._exit(0)
    os.close(write_end)
    child_piece = os.read(read_end, PIECE)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(child_piece) == PIECE
    assert child_piece != random_bytes()  # without the reset at fork, the same piece
