"""Relight on real clips made dim and cast: exposure back near the original's, detail kept inside
the person, no flicker added, identical frames in -> identical out, lights from the chosen side."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import clip, shared_model
from remaster.media.decode import open_video
from remaster.stages import matting
from remaster.stages import relight as R
from remaster.stages.lut import linear_to_srgb, srgb_to_linear
from remaster.stream import from_tensor

LW = torch.tensor(R.LUMA)
GAMMA = 1.4  # the dim room: display values to this power
CAST = torch.tensor([[1.12, 0.02, -0.02], [0.01, 1.0, 0.0], [-0.02, 0.0, 0.85]])  # warm lamp, linear light
CLIPS = ["talking_head_512_30_audio.mp4", "bedroom_540p30.mp4", "fullbody_720x1080_25_audio.mp4"]
_cache: dict = {}


def _clean(name, seconds=0.4, side=256):
    """A few real frames and their RVM matte (real weights), computed once per clip."""
    if name not in _cache:
        x = open_video(clip(name), end_time=seconds, max_side=side).read().frames.clone()
        model = str(shared_model("matting/rvm_mobilenetv3.pth"))
        m = matting.rvm_matte(from_tensor(x, 25), model, reset_at_cuts=False).read().mask
        _cache[name] = (x, m)
    return _cache[name]


def degrade(x):
    lin = srgb_to_linear(x.clamp(0, 1) ** GAMMA)
    return linear_to_srgb((lin @ CAST.T).clamp(0, 1)).clamp(0, 1)


def _run(x, m, **kw):
    s = R.preset(kw.pop("preset", "natural"), **kw)
    return R.relight(from_tensor(x, 25, mask=m), s).read().frames


def _person_luma(x, m):
    return (x @ LW)[m > 0.5]


def _laplacian(y):
    k = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
    return F.conv2d(y.unsqueeze(1), k, padding=1).squeeze(1)


@pytest.mark.parametrize("name,bound", [(CLIPS[0], 0.10), (CLIPS[1], 0.08), (CLIPS[2], 0.12)])
def test_dim_cast_clip_exposure_and_histogram_come_back(clips_dir, name, bound):
    x, m = _clean(name)
    dim = degrade(x)
    out = _run(dim, m)
    orig, before, after = (float(_person_luma(v, m).median()) for v in (x, dim, out))
    # the person's median exposure is within the bound of the original's, never further than the dim copy
    assert abs(after - orig) <= bound, (orig, before, after)
    assert abs(after - orig) <= abs(before - orig) + 1e-6
    # luminance histogram of the person: mean distance between quantiles (1-D Wasserstein)
    q = torch.linspace(0.02, 0.98, 49)

    def w1(a):
        return float((torch.quantile(_person_luma(a, m), q) - torch.quantile(_person_luma(x, m), q)).abs().mean())

    assert w1(out) <= max(bound, 0.8 * w1(dim)), (w1(dim), w1(out))


@pytest.mark.parametrize("preset", list(R.PRESETS))
@pytest.mark.parametrize("name", CLIPS[:2])
def test_reflectance_detail_kept_inside_person(clips_dir, name, preset):
    x, m = _clean(name)
    dim = degrade(x)
    out = _run(dim, m, preset=preset)
    inner = F.max_pool2d(-(m > 0.5).float().unsqueeze(1), 5, 1, 2).squeeze(1) < -0.5  # eroded: no matte edge
    # reflectance = luminance / shading: its detail is the Laplacian of log luminance (a smooth
    # shading has none); in display values a brightened area's detail grows with its gain
    a, b = (_laplacian(torch.log((v @ LW).clamp(min=1e-3)))[inner] for v in (dim, out))
    corr = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    assert corr >= 0.97, corr
    if preset != "natural":
        assert float((out - dim).abs()[m > 0.5].mean()) > 0.02  # the light did change


def test_no_flicker_added_and_identical_frames_identical_out(clips_dir):
    x, m = _clean(CLIPS[0])
    dim = degrade(x)
    out = _run(dim, m, preset="soft studio")
    # per-frame log gain of the person: changes no more than the source's own brightness does
    g = torch.stack([torch.log(_person_luma(out[i:i + 1], m[i:i + 1]).mean() / _person_luma(dim[i:i + 1], m[i:i + 1]).mean())
                     for i in range(len(x))])
    src = torch.stack([torch.log(_person_luma(dim[i:i + 1], m[i:i + 1]).mean()) for i in range(len(x))])
    assert float(g.diff().abs().max()) <= float(src.diff().abs().max()) + 0.01, (g, src)
    still = dim[:1].expand(6, -1, -1, -1).contiguous()
    still_m = m[:1].expand(6, -1, -1).contiguous()
    rep = R.relight(from_tensor(still, 25, mask=still_m).rechunked(4), R.preset("soft studio")).read().frames
    assert all(torch.equal(rep[0], rep[i]) for i in range(1, 6))


@pytest.mark.parametrize("name", CLIPS[1:])
def test_good_source_nearly_alone_with_natural(clips_dir, name):
    x, m = _clean(name)  # well-lit people (the fullbody clip is a bright studio)
    for mask in (m, None):
        out = R.relight(from_tensor(x, 25, mask=mask), R.preset("natural", target="both")).read().frames
        assert float((out - x).abs().mean()) < 0.01


def test_key_light_lands_on_the_chosen_side(clips_dir):
    x, m = _clean(CLIPS[0])
    h, w = m.shape[1:]
    cols = torch.arange(w).view(1, 1, w).float()
    cx = float(((m > 0.5) * cols).sum() / (m > 0.5).sum())

    def side_gain(azimuth):
        out = _run(x, m, preset="window key", azimuth=azimuth, temperature=6500.0)
        g = torch.log((out @ LW).clamp(min=1e-3) / (x @ LW).clamp(min=1e-3))
        left, right = (m > 0.5) & (cols < cx - 0.1 * w), (m > 0.5) & (cols > cx + 0.1 * w)
        return float(g[left].mean() - g[right].mean())

    assert side_gain(-75.0) > 0.03 and side_gain(75.0) < -0.03


def test_light_temperature_and_errors():
    warm, cool = R.light_tint(3200.0), R.light_tint(9000.0)
    assert warm[0] > 1.0 > warm[2] and cool[2] > 1.0 > cool[0]
    assert np.allclose(R.light_tint(6500.0), 1.0, atol=0.02)
    x = torch.rand(2, 32, 48, 3)
    with pytest.raises(R.RelightError, match="needs a person mask"):
        R.relight(from_tensor(x), R.preset("soft studio"))
    with pytest.raises(R.RelightError, match="unknown preset"):
        R.preset("disco")
    out = R.relight(from_tensor(x), R.preset("natural", target="both")).read().frames
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_node_runs_on_stream():
    from nodes.relight import RemasterRelight

    x = torch.rand(3, 40, 56, 3) * 0.3
    m = torch.zeros(3, 40, 56)
    m[:, 8:36, 16:40] = 1
    (out,) = RemasterRelight().run(from_tensor(x, 25, mask=m), preset="rim + fill", target="person")
    y = out.read().frames
    assert y.shape == x.shape and torch.equal(y[:, :, :4], x[:, :, :4])  # outside the mask: untouched
