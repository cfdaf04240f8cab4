"""Mask tools on synthetic streams."""
from __future__ import annotations

import pytest
import torch

from remaster.stages import mask_tools as mt
from remaster.stream import from_tensor


def _square_masks(n=8, h=48, w=64, size=16, step=0, soft=False):
    m = torch.zeros(n, h, w)
    for i in range(n):
        x0 = 8 + i * step
        m[i, 16 : 16 + size, x0 : x0 + size] = 1.0
    if soft:
        m = mt.feather(m, 3)
    return m


def test_smoothing_leaves_a_static_mask_unchanged():
    frames = torch.rand(1, 48, 64, 3).expand(10, -1, -1, -1).contiguous()
    mask = _square_masks(10, soft=True)
    out = mt.smooth_stream(from_tensor(frames, mask=mask), strength=0.9).read()
    assert torch.equal(out.mask, mask)


def test_smoothing_follows_a_moving_mask_within_a_frame():
    # a square moving 3 px per frame over a still image: no lag at all
    frames = torch.full((10, 48, 64, 3), 0.5)
    mask = _square_masks(10, step=3)
    out = mt.smooth_stream(from_tensor(frames, mask=mask), strength=0.9).read()
    assert torch.equal(out.mask, mask)
    # the same with a soft mask moving over a moving image (the edge moves with the content)
    frames = torch.zeros(10, 48, 64, 3)
    frames[..., 0] = _square_masks(10, step=3)
    soft = _square_masks(10, step=3, soft=True)
    out = mt.smooth_stream(from_tensor(frames, mask=soft), strength=0.9).read()
    for i in range(1, 10):
        # where the square is now, the mask is foreground in that very frame; where it left,
        # nothing trails behind
        assert float(out.mask[i, 24, 8 + 3 * i + 8]) > 0.9
        behind = 8 + 3 * i - 4
        assert float(out.mask[i, 24, behind]) <= float(soft[i, 24, behind]) + 0.05
    assert float((out.mask - soft).abs().max()) < 0.15


def test_smoothing_damps_flicker_and_resets_at_cuts():
    torch.manual_seed(0)
    frames = torch.full((12, 32, 32, 3), 0.5)
    base = torch.full((12, 32, 32), 0.5)
    noisy = base + 0.05 * torch.randn(12, 32, 32)
    s = from_tensor(frames, mask=noisy)
    out = mt.smooth_stream(s, strength=0.8).read().mask
    d_in = (noisy[1:] - noisy[:-1]).abs().mean()
    d_out = (out[1:] - out[:-1]).abs().mean()
    assert d_out < 0.5 * d_in
    cut = mt.smooth_stream(s.with_info(scene_cuts=(6,)), strength=0.8).read().mask
    assert torch.equal(cut[6], noisy[6])  # memory dropped at the cut
    assert torch.equal(cut[:6], out[:6])


def test_grow_shrink_threshold_invert_feather():
    m = _square_masks(1)
    grown = mt.grow(m, 3)
    shrunk = mt.grow(m, -3)
    assert grown.sum() > m.sum() > shrunk.sum() > 0
    assert torch.equal(mt.grow(grown, -3) * 0 + (mt.grow(grown, -3) >= m).float(), torch.ones_like(m))
    assert float(grown[0, 16 + 8, 8 - 3]) == 1.0 and float(grown[0, 16 + 8, 8 - 4]) == 0.0
    soft = mt.feather(m, 6)
    assert 0 < float(soft[0, 24, 8]) < 1 and float(soft[0, 24, 16]) > 0.95
    assert torch.equal(mt.threshold(soft, 0.5), (soft >= 0.5).float())
    ramp = mt.threshold(soft, 0.2, 0.8)
    assert float(ramp.min()) == 0 and float(ramp.max()) == 1
    s = from_tensor(torch.rand(1, 48, 64, 3), mask=soft)
    assert torch.allclose(mt.invert_stream(s).read().mask, 1 - soft)
    assert mt.grow_stream(s, 2).read().mask.sum() > soft.sum()


def test_combine_modes_and_mismatch_errors():
    a = _square_masks(2)
    b = _square_masks(2, step=0).roll(8, dims=2)
    fa, fb = torch.rand(2, 48, 64, 3), torch.rand(2, 48, 64, 3)
    sa, sb = from_tensor(fa, mask=a), from_tensor(fb, mask=b)
    u = mt.combine_streams(sa, sb, "union").read()
    assert torch.equal(u.frames, fa) and torch.equal(u.mask, torch.maximum(a, b))
    assert torch.equal(mt.combine_streams(sa, sb, "intersect").read().mask, torch.minimum(a, b))
    assert torch.equal(mt.combine_streams(sa, sb, "subtract").read().mask, a * (1 - b))
    with pytest.raises(ValueError, match="combine mode"):
        mt.combine_streams(sa, sb, "xor")
    with pytest.raises(ValueError, match="frame counts"):
        mt.combine_streams(sa, from_tensor(fb[:1], mask=b[:1]), "union")
    with pytest.raises(ValueError, match="no mask"):
        mt.grow_stream(from_tensor(fa), 2)


def test_guided_refine_snaps_a_blurry_mask_to_the_image_edge():
    # image: a bright disc; mask: a heavily blurred copy. After refining, most of the mask's
    # gradient sits on the image's edge (within 1 px) instead of being spread over ~20 px.
    yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    disc = (((yy - 48) ** 2 + (xx - 48) ** 2) < 30**2).float()[None]
    frames = (0.1 + 0.8 * disc)[..., None].expand(1, 96, 96, 3).contiguous()
    rough = mt.feather(disc, 10)
    edge = mt.grow(disc, 1) - mt.grow(disc, -1)

    def on_edge(m):
        g = torch.zeros_like(m)
        g[:, :, 1:] += (m[:, :, 1:] - m[:, :, :-1]).abs()
        g[:, 1:] += (m[:, 1:] - m[:, :-1]).abs()
        return float((g * edge).sum() / g.sum())

    refined = mt.refine_stream(from_tensor(frames, mask=rough), radius=8, eps=1e-3).read().mask
    assert on_edge(refined) > 2 * on_edge(rough)


def test_mask_adjust_node_applies_steps_in_order():
    from nodes.masks import RemasterMaskAdjust

    soft = _square_masks(2, soft=True)
    s = from_tensor(torch.rand(2, 48, 64, 3), mask=soft)
    (out,) = RemasterMaskAdjust().run(s, threshold_low=0.5, grow=2, feather=0.0, invert=True)
    want = 1.0 - mt.grow(mt.threshold(soft, 0.5), 2)
    assert torch.equal(out.read().mask, want)
    (same,) = RemasterMaskAdjust().run(s)
    assert same is s
    with pytest.raises(ValueError, match="no mask"):
        RemasterMaskAdjust().run(from_tensor(torch.rand(1, 8, 8, 3)))
