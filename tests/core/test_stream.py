"""The frame stream: laziness, re-iteration, per-pass state, fingerprints, chunking."""
from fractions import Fraction

import pytest
import torch

from remaster.stream import Chunk, default_chunk_size, from_tensor, rebatch


def counting_source(n=10, h=8, w=8):
    pulls = {"n": 0}
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, h, w, 3) / n
    base = from_tensor(x.contiguous(), fps=Fraction(30000, 1001))

    def producer(up, size):
        for c in up.chunks(size):
            pulls["n"] += len(c)
            yield c

    return base.derive("count", {}, producer), pulls


def test_nothing_runs_until_pulled_and_passes_repeat():
    s, pulls = counting_source()
    assert pulls["n"] == 0
    a = s.read().frames
    b = s.read().frames
    assert torch.equal(a, b) and pulls["n"] == 20
    assert s.info.fps == Fraction(30000, 1001)


def test_map_state_is_fresh_each_pass():
    s, _ = counting_source()

    def make():
        seen = {"prev": None}

        def fn(chunk):
            out = chunk.frames.clone()
            if seen["prev"] is not None:
                out[0] = seen["prev"]  # carries state across chunk borders
            seen["prev"] = chunk.frames[-1]
            return chunk.with_(frames=out)

        return fn

    m = s.map("carry", {}, make)
    one = m.read().frames
    two = m.read().frames
    assert torch.equal(one, two)
    chunks = list(m.chunks(3))
    assert [c.start for c in chunks] == [0, 3, 6, 9]
    assert torch.equal(chunks[1].frames[0], s.read().frames[2])


def test_fingerprint_is_stable_and_tracks_settings():
    x = torch.rand(4, 8, 8, 3)
    a = from_tensor(x, 24).map("gain", {"k": 2}, lambda: (lambda c: c))
    b = from_tensor(x.clone(), 24).map("gain", {"k": 2}, lambda: (lambda c: c))
    c = from_tensor(x, 24).map("gain", {"k": 3}, lambda: (lambda c: c))
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_stage_that_breaks_order_is_caught():
    s = from_tensor(torch.rand(6, 4, 4, 3), 10)
    bad = s.derive("bad", {}, lambda up, n: iter([Chunk(2, torch.rand(2, 4, 4, 3))]))
    with pytest.raises(RuntimeError, match="expected 0"):
        list(bad.chunks())


def test_rebatch_and_read_cap():
    s = from_tensor(torch.rand(10, 4, 4, 3), 10, mask=torch.rand(10, 4, 4))
    sizes = [len(c) for c in rebatch(s.chunks(3), 4)]
    assert sizes == [4, 4, 2]
    assert all(c.mask is not None for c in rebatch(s.chunks(3), 4))
    with pytest.raises(ValueError, match="cap"):
        s.read(max_frames=5)


def test_chunk_size_follows_frame_size(monkeypatch):
    monkeypatch.delenv("REMASTER_CHUNK_FRAMES", raising=False)
    small = default_chunk_size(320, 240, budget_bytes=256 * 2**20)
    big = default_chunk_size(3840, 2160, budget_bytes=256 * 2**20)
    assert small == 64 and 1 <= big < small
    monkeypatch.setenv("REMASTER_CHUNK_FRAMES", "5")
    assert default_chunk_size(3840, 2160) == 5
    s = from_tensor(torch.rand(12, 4, 4, 3), 10).rechunked(5)
    assert [len(c) for c in s.chunks()] == [5, 5, 2]
