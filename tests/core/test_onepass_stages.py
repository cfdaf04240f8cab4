"""The temporal stages in one pass give the numbers the old two-pass form gave (whole clip
measured first, then applied), on both paths: analysis on a cheap replayable point, and
look-ahead with frames held (spilled to disk here); range renders equal slices."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from remaster import host
from remaster.stages import colour as C
from remaster.stages import deflicker as D
from remaster.stages import film, scenes, shotstats
from remaster.stream import Temporal, from_tensor

TOL = 2e-5  # float rounding of the smoothing sums on a shorter run of numbers


def flickering_two_shots(n=100, cut=47, h=18, w=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    base_a = torch.rand(1, h, w, 3, generator=g) * 0.6 + 0.1
    base_b = torch.rand(1, h, w, 3, generator=g) * 0.4 + 0.5
    x = torch.cat([base_a.expand(cut, -1, -1, -1), base_b.expand(n - cut, -1, -1, -1)]).clone()
    gain = 1.0 + 0.05 * torch.sin(torch.arange(n) * 2.1).view(n, 1, 1, 1)
    x = x * gain * torch.tensor([1.05, 1.0, 0.92])
    return (x + 0.01 * torch.rand(x.shape, generator=g)).clamp(0, 1)


def expensive(stream, counts):
    def producer(up, size):
        for c in up.chunks(size):
            counts["n"] = counts.get("n", 0) + len(c)
            yield c

    return stream.derive("expensive", {}, producer, temporal=Temporal())


def two_pass_colour(x, s, fps=24):
    stream = from_tensor(x, fps)
    params, cuts = C.analyse(stream, s)
    return C.apply_params(x, torch.from_numpy(params).float(), s), cuts


def two_pass_deflicker(x, fps=24, **kw):
    stream = from_tensor(x, fps)
    stats, cuts = shotstats.measure_pass(stream, 16, D.measure)
    g = D.gains(stats, cuts, fps, **kw)
    return D.apply_gains(x, torch.from_numpy(g).float())


@pytest.mark.parametrize("path", ["replay", "lookahead"])
@pytest.mark.parametrize("temporal", ["smooth", "per_shot"])
def test_auto_colour_one_pass_equals_two_pass(path, temporal, tmp_path, monkeypatch):
    host.set_dirs(temp_dir=str(tmp_path))
    x = flickering_two_shots()
    s = C.AutoColourSettings(smoothing_seconds=0.25, temporal=temporal)
    ref, cuts = two_pass_colour(x, s)
    assert cuts == [47]
    counts: dict = {}
    src = from_tensor(x, 24)
    up = src if path == "replay" else expensive(src, counts)
    out = C.auto_colour(up, s)
    if path == "lookahead":
        monkeypatch.setenv("REMASTER_LOOKAHEAD_MB", "0.02")  # force spilling to disk
    got = torch.cat([c.frames for c in out.chunks(9)])
    if path == "lookahead":
        assert counts["n"] == x.shape[0]
    assert (got - ref).abs().max() < TOL
    for a, b in [(0, 5), (40, 52), (90, 100)]:
        assert (out.read(a, b).frames - got[a:b]).abs().max() < TOL, (a, b)
    assert not list((tmp_path / "remaster_spill").glob("*/*"))


@pytest.mark.parametrize("path", ["replay", "lookahead"])
def test_deflicker_one_pass_equals_two_pass(path):
    x = flickering_two_shots(120, 61)
    ref = two_pass_deflicker(x)
    counts: dict = {}
    src = from_tensor(x, 24)
    up = src if path == "replay" else expensive(src, counts)
    out = D.deflicker(up)
    got = torch.cat([c.frames for c in out.chunks(7)])
    if path == "lookahead":
        assert counts["n"] == 120
    assert (got - ref).abs().max() < TOL
    for a, b in [(3, 9), (55, 70), (110, 120)]:
        assert (out.read(a, b).frames - got[a:b]).abs().max() < TOL


def test_masked_auto_colour_measures_through_the_mask_stage_once():
    x = flickering_two_shots(60, 30)
    counts: dict = {}
    m = torch.zeros(60, 18, 24)
    m[:, 4:14, 6:18] = 1.0

    def producer(up, size):
        for c in up.chunks(size):
            counts["n"] = counts.get("n", 0) + len(c)
            yield c.with_(mask=m[c.start:c.stop])

    masked = from_tensor(x, 24).derive("mask", {}, producer, from_tensor(x, 24).info.with_(has_mask=True),
                                       frames_unchanged=True, temporal=Temporal())
    s = C.AutoColourSettings(smoothing_seconds=0.25, mask_mode="separate")
    out = C.auto_colour(masked, s)
    got = out.read().frames
    assert counts["n"] == 60
    params, _ = C.analyse(from_tensor(x, 24, mask=m), s)
    p = torch.from_numpy(params).float()
    fg, bg = C.apply_params(x, p[:, :C.N_PARAMS], s), C.apply_params(x, p[:, C.N_PARAMS:], s)
    ref = bg + (fg - bg) * m.unsqueeze(-1)
    assert (got - ref).abs().max() < TOL


def test_film_median_one_pass_and_range():
    x = flickering_two_shots(40, 20)
    counts: dict = {}
    out = film.film_look(expensive(from_tensor(x, 24), counts), grain_amount=0.02, median_radius=2,
                         motion_threshold=1.0)
    full = out.read().frames
    assert counts["n"] == 40
    for a, b in [(0, 4), (18, 23), (37, 40)]:
        assert torch.equal(out.read(a, b).frames, full[a:b])
    cuts = scenes.scene_cuts(from_tensor(x, 24))
    assert cuts == [20]


def test_shot_smoothing_radius_covers_the_dependence():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(200, 3))
    full = shotstats.smooth_per_shot(y, [90], 5.0, median_radius=2)
    R = shotstats.smoothing_radius(5.0, 2)
    for i in (10, 95, 150):
        a, b = max(90 if i >= 90 else 0, i - R), min(200 if i >= 90 else 90, i + R + 1)
        seg = shotstats.smooth_per_shot(y[a:b], [c - a for c in [90] if a < c < b], 5.0, median_radius=2)
        assert np.allclose(seg[i - a], full[i], atol=1e-12)
