"""The copy engine's hashing helper thread (targets/copy.py `_HashThread`): large blobs are
hashed beside the transfer. What a pull relies on: the digest is of exactly the bytes given,
in their order, whatever mix of pieces arrives (large bytes handed over as they are, small
or mutable ones copied into batches); a helper that fails makes the transfer fail instead
of hanging it; memory stays bounded."""

from __future__ import annotations

import hashlib
import random

import pytest

from ocimodel.targets import copy as engine

SIZES = [0, 1, 100, 65_536, engine.HAND_OVER_BYTES - 1, engine.HAND_OVER_BYTES, 1 << 20, (1 << 20) + 7, 3 << 20]


def test_mixed_pieces_hash_in_their_order():
    rng = random.Random(5)
    for _ in range(12):
        expected = hashlib.sha256()
        hasher = engine._HashThread("sha256:" + "0" * 64)
        for _ in range(rng.randrange(1, 40)):
            data = rng.randbytes(rng.choice(SIZES))
            kind = rng.choice([bytes, bytearray, memoryview])
            hasher.update(data if kind is bytes else kind(data))
            expected.update(data)
        assert hasher.hexdigest() == expected.hexdigest()
        hasher.close()


def test_a_mutable_piece_is_copied_before_the_caller_reuses_it():
    """A source may refill one buffer for every piece: what is hashed is what was given."""
    rng = random.Random(6)
    buffer = bytearray(1 << 20)
    expected = hashlib.sha256()
    hasher = engine._HashThread("sha256:" + "0" * 64)
    for _ in range(10):
        buffer[:] = rng.randbytes(len(buffer))
        expected.update(buffer)
        hasher.update(buffer)
    assert hasher.hexdigest() == expected.hexdigest()


def test_a_failing_helper_fails_the_transfer(monkeypatch):
    class Failing:
        calls = 0

        def update(self, data) -> None:
            Failing.calls += 1
            if Failing.calls == 3:
                raise MemoryError("hashing failed")

        def hexdigest(self) -> str:  # pragma: no cover - never reached
            return ""

    monkeypatch.setattr(engine, "new_hasher", lambda digest: Failing())
    hasher = engine._HashThread("sha256:" + "0" * 64)
    piece = bytes(1 << 20)
    with pytest.raises(MemoryError, match="hashing failed"):
        for _ in range(50):  # more than the helper may fall behind: the worker meets its failure
            hasher.update(piece)
        hasher.hexdigest()
    hasher.close()
