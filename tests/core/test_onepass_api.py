"""The one-pass stream API: declared temporal context, range renders, windows, look-ahead with
spill, scene cuts found once at the cheapest point, progress per node, interrupt."""
from __future__ import annotations

import pytest
import torch

from remaster import host, temporal
from remaster.stages import scenes
from remaster.stream import Chunk, FrameStream, Temporal, from_tensor


def two_shots(n=40, cut=22, h=12, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(1, h, w, 3, generator=g) * 0.5
    b = torch.rand(1, h, w, 3, generator=g) * 0.5 + 0.5
    x = torch.cat([a.expand(cut, -1, -1, -1), b.expand(n - cut, -1, -1, -1)]).clone()
    x += 0.02 * torch.rand(x.shape, generator=g)
    return x.clamp(0, 1)


def counted(stream: FrameStream, counts: dict, key: str) -> FrameStream:
    def producer(up, size):
        for c in up.chunks(size):
            counts[key] = counts.get(key, 0) + len(c)
            yield c

    return stream.derive(key, {}, producer, temporal=Temporal())


def gain_stage(s):
    return s.map("gain", {}, lambda: (lambda c: c.with_(frames=(c.frames * 0.9).clamp(0, 1))))


def recurrent_stage(s, cut_aware=True):
    def make():
        st = {"prev": None}
        cuts = set(scenes.scene_cuts(s)) if cut_aware else set()

        def fn(c):
            out = []
            for i in range(len(c)):
                f = c.frames[i]
                if st["prev"] is not None and c.start + i not in cuts:
                    f = 0.7 * st["prev"] + 0.3 * f
                st["prev"] = f
                out.append(f)
            return c.with_(frames=torch.stack(out))

        return fn

    return s.map("ema", {}, make, temporal=Temporal(behind=40, recurrent=True, cut_aware=cut_aware))


def median_stage(s, r=2):
    def make():
        def fn(idx, frames, masks, centre):
            return torch.stack(frames).median(0).values, None

        return fn

    return s.window("median", {"r": r}, make, r)


class MeanSmoother(temporal.LookaheadStage):
    """Each frame scaled so its mean equals the mean of the means of frames i-R..i+R (same shot)."""

    def __init__(self, up, R):
        self.R, self.n = R, up.info.frame_count
        self.cuts = scenes.scene_cuts(up)
        self.means: dict = {}
        self.known = None

    def push(self, c):
        for i in range(len(c)):
            self.means[c.start + i] = float(c.frames[i].mean())
        self.known = c.stop

    def ready(self):
        if self.known >= self.n:
            return self.n
        return max(self.known - self.R, scenes.shot_bounds(self.cuts, self.known, self.n)[0])

    def emit(self, c):
        out = []
        for i in range(len(c)):
            j = c.start + i
            s0, e0 = scenes.shot_bounds(self.cuts, j, self.n)
            ks = [k for k in range(max(s0, j - self.R), min(e0, j + self.R + 1)) if k in self.means]  # a range pass's edges
            target = sum(self.means[k] for k in ks) / len(ks)
            out.append(c.frames[i] * (target / max(self.means[j], 1e-6)))
        return c.with_(frames=torch.stack(out))


def smoother_stage(s, R=5, budget=None):
    return s.lookahead("mean_smooth", {"R": R}, lambda up: MeanSmoother(up, R), R, budget=budget)


def reference_smoother(x, cuts, R):
    n = x.shape[0]
    means = [float(x[i].mean()) for i in range(n)]
    out = []
    for j in range(n):
        s0, e0 = scenes.shot_bounds(cuts, j, n)
        ks = range(max(s0, j - R), min(e0, j + R + 1))
        out.append(x[j] * (sum(means[k] for k in ks) / len(ks) / max(means[j], 1e-6)))
    return torch.stack(out)


def test_range_of_framewise_chain_is_bit_exact_and_pulls_only_the_range():
    x = two_shots()
    counts: dict = {}
    s = gain_stage(counted(from_tensor(x, 24), counts, "up"))
    full = s.read().frames
    counts.clear()
    part = s.read(13, 19).frames
    assert torch.equal(part, full[13:19])
    assert counts["up"] == 6


def test_window_stage_one_pass_and_ranges():
    x = two_shots()
    counts: dict = {}
    up = counted(from_tensor(x, 24), counts, "up")
    s = median_stage(up, 2)
    full = torch.cat([c.frames for c in s.chunks(7)])
    assert counts["up"] == x.shape[0]  # cut analysis ran on the source, not through "up"
    cuts = scenes.scene_cuts(up)
    assert cuts == [22]
    ref = []
    for i in range(x.shape[0]):
        s0, e0 = scenes.shot_bounds(cuts, i, x.shape[0])
        ref.append(x[max(s0, i - 2):min(e0, i + 3)].median(0).values)
    assert torch.equal(full, torch.stack(ref))
    for a, b in [(0, 5), (20, 24), (21, 40), (35, 40)]:
        counts.clear()
        assert torch.equal(s.read(a, b).frames, full[a:b]), (a, b)
        assert counts["up"] <= (b - a) + 4


@pytest.mark.parametrize("budget", [None, 1])
def test_lookahead_one_pass_exact_and_spills(budget, tmp_path):
    host.set_dirs(temp_dir=str(tmp_path))
    x = two_shots(60, 31)
    counts: dict = {}
    up = counted(from_tensor(x, 24), counts, "up")
    s = smoother_stage(up, 5, budget)
    out = torch.cat([c.frames for c in s.chunks(4)])
    assert counts["up"] == 60
    assert torch.allclose(out, reference_smoother(x, [31], 5), atol=1e-6)
    assert not any((tmp_path / "remaster_spill").glob("*/*")), "spill files must be removed"
    for a, b in [(0, 3), (27, 35), (50, 60)]:
        assert torch.allclose(s.read(a, b).frames, out[a:b], atol=1e-6)


def test_spill_buffer_round_trip_is_exact(tmp_path):
    host.set_dirs(temp_dir=str(tmp_path))
    buf = temporal.SpillBuffer(budget=1)
    chunks = [Chunk(i * 3, torch.rand(3, 5, 6, 3), torch.rand(3, 5, 6)) for i in range(4)]
    for c in chunks:
        buf.put(c)
    assert buf.spilled == 3
    for c in chunks:
        d = buf.pop()
        assert d.start == c.start and torch.equal(d.frames, c.frames) and torch.equal(d.mask, c.mask)
    buf.close()


def test_recurrent_range_is_exact_after_a_cut_and_close_elsewhere():
    x = two_shots(60, 30)
    s = recurrent_stage(gain_stage(from_tensor(x, 24)))
    full = s.read().frames
    assert torch.equal(s.read(32, 40).frames, full[32:40])  # warm-up starts at the cut: exact
    late = s.read(55, 60).frames  # 40 frames of warm-up: 0.7**40 ~ 6e-7
    assert (late - full[55:60]).abs().max() < 1e-5


def test_chain_of_three_temporal_stages_each_frame_once():
    x = two_shots(50, 20)
    counts: dict = {}
    s = counted(from_tensor(x, 24), counts, "src")
    s = counted(smoother_stage(s, 4), counts, "a")
    s = counted(median_stage(s, 1), counts, "b")
    s = counted(smoother_stage(s, 6, budget=1), counts, "c")
    full = s.read().frames
    assert counts == {"src": 50, "a": 50, "b": 50, "c": 50}
    for a, b in [(0, 10), (18, 23), (44, 50)]:
        assert torch.allclose(s.read(a, b).frames, full[a:b], atol=1e-6)


def test_range_stream_reindexes_and_shifts_cuts():
    x = two_shots(40, 22)
    s = scenes.with_cuts(from_tensor(x, 24))
    r = s.range(20, 30)
    assert r.info.frame_count == 10 and r.info.scene_cuts == (2,)
    got = torch.cat([c.frames for c in r.chunks(3)])
    assert torch.equal(got, x[20:30])
    assert [c.start for c in r.chunks(4)] == [0, 4, 8]
    assert torch.equal(r.range(5, 8).read().frames, x[25:28])


def test_scene_cuts_found_once_on_the_cheapest_point():
    x = two_shots(40, 22, seed=3)
    counts: dict = {}
    src = from_tensor(x, 24)
    a = counted(src, counts, "expensive")
    b = gain_stage(a)
    assert b.cuts_source is src
    assert scenes.scene_cuts(b) == [22] and scenes.scene_cuts(a) == [22]
    assert counts == {}  # nothing above the source ran for the analysis


def test_progress_goes_to_the_node_that_built_the_stage():
    x = two_shots(20, 10)
    seen = []
    host.set_executing_node("5")
    try:
        s = from_tensor(x, 24)
        host.set_executing_node("6")

        def make():
            def fn(c):
                host.Progress(len(c), "inner").update(len(c))
                return c

            return fn

        m = s.map("work", {}, make)
    finally:
        host.set_executing_node(None)
    listener = seen.append
    host.add_progress_listener(listener)
    try:
        m.read()
    finally:
        host.remove_progress_listener(listener)
    assert m.node_id == "6"
    assert {i["node"] for i in seen if i["label"] == "inner"} == {"6"}


def test_interrupt_stops_scene_cut_analysis():
    x = two_shots(64, 30, seed=5)
    src = FrameStream(from_tensor(x, 24).info, lambda self, n: from_tensor(x, 24).chunks(4), "interrupt-test")
    pulled = []

    def listener(info):
        pulled.append(info["done"])
        if info["label"] == "Scene cuts" and info["done"] >= 8:
            host.request_interrupt()

    host.add_progress_listener(listener)
    try:
        with pytest.raises(host.Interrupted):
            scenes.detect_scene_cuts(src)
    finally:
        host.remove_progress_listener(listener)
        host.clear_interrupt()
    assert max(pulled) < 64
