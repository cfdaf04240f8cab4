"""Film look: deterministic luminance-dependent grain, temporal median, overlay of the original."""
import pytest
import torch

from conftest import clip
from remaster.media.decode import open_video
from remaster.stages import film as Fm
from remaster.stream import from_tensor


def _flat(values, h=64, w=96):
    return torch.stack([torch.full((h, w, 3), float(v)) for v in values])


def test_grain_is_seeded_and_independent_of_chunking():
    x = _flat([0.5] * 7)
    a = Fm.film_look(from_tensor(x), grain_amount=0.05, seed=3).read().frames
    b = Fm.film_look(from_tensor(x).rechunked(2), grain_amount=0.05, seed=3).read().frames
    c = Fm.film_look(from_tensor(x), grain_amount=0.05, seed=4).read().frames
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # grain moves from frame to frame
    assert abs(float((a - x).std()) - 0.05) < 0.01


def test_grain_follows_luminance_and_size():
    x = _flat([0.03, 0.5, 0.97])
    g = Fm.grain(x, 0, amount=0.04, size=1.0) - x
    dark, mid, bright = (float(g[i].std()) for i in range(3))
    assert mid > 1.8 * dark and mid > 1.8 * bright

    def lag1(noise):  # correlation of neighbouring pixels: bigger grain, higher correlation
        n = noise[..., 0]
        return float(torch.corrcoef(torch.stack([n[:, :-1].flatten(), n[:, 1:].flatten()]))[0, 1])

    fine = Fm.grain(_flat([0.5]), 0, 0.04, size=1.0) - 0.5
    coarse = Fm.grain(_flat([0.5]), 0, 0.04, size=4.0) - 0.5
    assert lag1(coarse) > lag1(fine) + 0.3
    mono = Fm.grain(_flat([0.5]), 0, 0.04, colour=0.0) - 0.5
    assert torch.allclose(mono[..., 0], mono[..., 2])
    col = Fm.grain(_flat([0.5]), 0, 0.04, colour=1.0) - 0.5
    assert not torch.allclose(col[..., 0], col[..., 2])


def test_temporal_median_removes_a_one_frame_blip_but_not_motion_or_cuts():
    x = _flat([0.4] * 6 + [0.8] * 6)  # a cut at frame 6
    x[3] += 0.02  # one-frame brightness blip inside the first shot
    x[8, :16, :16] = 0.0  # a real change (motion) in the second shot
    stream = from_tensor(x).with_info(scene_cuts=(6,))
    out = Fm.film_look(stream, grain_amount=0.0, median_radius=1, motion_threshold=0.05).read().frames
    assert torch.allclose(out[3], x[2])  # blip removed
    assert torch.equal(out[8, :16, :16], x[8, :16, :16])  # motion left alone
    assert torch.equal(out[5], x[5]) and torch.equal(out[6], x[6])  # no mixing across the cut
    assert out.shape == x.shape


def test_overlay_of_the_original(clips_dir):
    src = open_video(clip("juggle_720p24.mp4"), end_time=0.25, max_side=128)
    orig = src.read().frames
    graded = from_tensor(orig * 0.5, fps=24)
    out = Fm.film_look(graded, grain_amount=0.0, original=src, original_opacity=0.2).read().frames
    assert torch.allclose(out, orig * 0.5 * 0.8 + orig * 0.2, atol=1e-6)
    big = from_tensor(torch.nn.functional.interpolate(orig.permute(0, 3, 1, 2), scale_factor=2).permute(0, 2, 3, 1))
    up = Fm.film_look(big, grain_amount=0.0, original=src, original_opacity=0.1).read().frames
    assert up.shape == big.read().frames.shape
    with pytest.raises(Fm.FilmError, match="frames"):
        Fm.film_look(from_tensor(orig[:2]), original=src, original_opacity=0.2)
    with pytest.raises(Fm.FilmError, match="'original' input"):
        Fm.film_look(graded, original_opacity=0.2)


def test_node_wires_the_optional_original():
    from nodes.colour import NODE_CLASS_MAPPINGS

    cls = NODE_CLASS_MAPPINGS["RemasterFilmLook"]
    assert "original" in cls.INPUT_TYPES()["optional"]
    x = torch.rand(4, 16, 16, 3)
    (out,) = cls().run(from_tensor(x), grain_amount=0.02, seed=1)
    assert out.read().frames.shape == x.shape
