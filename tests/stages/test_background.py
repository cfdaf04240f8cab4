"""Background replacement on synthetic streams."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from remaster import host
from remaster.stages import background as bgm
from remaster.stream import from_tensor


def _stream(n=5, h=40, w=64, alpha=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(n, h, w, 3, generator=g)
    if alpha is None:
        alpha = torch.zeros(n, h, w)
        alpha[:, 10:30, 20:44] = 1.0
    return from_tensor(frames, mask=alpha), frames, alpha


@pytest.mark.parametrize("source", ["color", "blur", "image", "stream"])
def test_alpha_one_everywhere_returns_the_input_exactly(source, tmp_path):
    s, frames, _ = _stream(alpha=torch.ones(5, 40, 64))
    img = tmp_path / "bg.png"
    cv2.imwrite(str(img), np.full((30, 50, 3), 200, np.uint8))
    other, _, _ = _stream(n=2, h=20, w=20, seed=3)
    out = bgm.replace_background(s, source=source, image=str(img), background=other, blur=8, darken=0.5,
                                 decontaminate_edges=True, wrap=0.5).read()
    assert torch.equal(out.frames, frames)


def test_alpha_zero_gives_the_background_colour_and_keeps_the_mask():
    s, frames, alpha = _stream(alpha=torch.zeros(5, 40, 64))
    out = bgm.replace_background(s, source="color", color="#ff8000").read()
    want = torch.tensor([1.0, 128 / 255, 0.0])
    assert torch.allclose(out.frames, want.expand_as(out.frames))
    assert torch.equal(out.mask, alpha)
    out2 = bgm.replace_background(s, source="color", color="255,128,0", keep_mask=False)
    assert not out2.info.has_mask and out2.read().mask is None


def test_composite_of_a_square_over_blurred_darkened_original():
    s, frames, alpha = _stream()
    out = bgm.replace_background(s, source="blur", blur=4, darken=0.5, decontaminate_edges=False).read().frames
    inside, outside = alpha.bool(), ~alpha.bool()
    assert torch.equal(out[inside], frames[inside])
    assert float(out[outside].mean()) < 0.3  # darkened to half of a ~0.5 mean
    assert float(out[outside].std()) < 0.6 * float(frames[outside].std())  # blurred


def test_stream_background_loops_and_holds():
    s, frames, _ = _stream(n=7, alpha=torch.zeros(7, 40, 64))
    # background: 3 frames of flat grey levels, 20x20, fitted by cover to 40x64
    levels = torch.tensor([0.1, 0.5, 0.9])
    bg = from_tensor(levels.view(3, 1, 1, 1).expand(3, 20, 20, 3).contiguous())
    looped = bgm.replace_background(s.rechunked(2), source="stream", background=bg, loop=True).read().frames
    assert [round(float(looped[i].mean()), 3) for i in range(7)] == [0.1, 0.5, 0.9, 0.1, 0.5, 0.9, 0.1]
    held = bgm.replace_background(s, source="stream", background=bg, loop=False).read().frames
    assert [round(float(held[i].mean()), 3) for i in range(7)] == [0.1, 0.5, 0.9, 0.9, 0.9, 0.9, 0.9]


def test_fit_cover_and_contain():
    img = torch.zeros(1, 10, 40, 3)
    img[:, :, :20] = 1.0  # left half white
    cover = bgm.fit(img, 20, 20, "cover")
    assert cover.shape == (1, 20, 20, 3)
    assert float(cover[0, :, :9].mean()) > 0.99 and float(cover[0, :, 11:].mean()) < 0.01
    contain = bgm.fit(img, 20, 20, "contain")
    assert contain.shape == (1, 20, 20, 3)
    assert float(contain[0, :7].max()) == 0.0  # letterbox bars
    assert float(contain[0, 10, :9].mean()) > 0.99


def test_decontaminate_removes_old_background_colour_from_edges():
    # foreground grey 0.5 over a pure green background with a soft edge
    h, w = 32, 64
    alpha = torch.zeros(1, h, w)
    alpha[:, :, :28] = 1.0
    alpha[:, :, 28:36] = torch.linspace(0.9, 0.1, 8)
    fg = torch.full((1, h, w, 3), 0.5)
    green = torch.tensor([0.0, 1.0, 0.0]).expand(1, h, w, 3)
    frames = fg * alpha[..., None] + green * (1 - alpha[..., None])
    s = from_tensor(frames, mask=alpha)
    plain = bgm.replace_background(s, source="color", color="#000000", decontaminate_edges=False).read().frames
    clean = bgm.replace_background(s, source="color", color="#000000", decontaminate_edges=True).read().frames
    edge = (alpha > 0.2) & (alpha < 1)
    spill_plain = (plain[..., 1] - plain[..., 0])[edge].mean()
    spill_clean = (clean[..., 1] - clean[..., 0])[edge].mean()
    assert spill_clean < 0.3 * spill_plain


def test_light_wrap_and_colour_match_touch_only_what_they_should():
    alpha = torch.zeros(3, 96, 128)
    alpha[:, 10:86, 10:118] = 1.0
    s, frames, alpha = _stream(n=3, h=96, w=128, alpha=alpha)
    wrapped = bgm.replace_background(s, source="color", color="#ffffff", decontaminate_edges=False, wrap=0.8).read().frames
    plain = bgm.replace_background(s, source="color", color="#ffffff", decontaminate_edges=False).read().frames
    diff = (wrapped - plain).abs().amax(-1)
    assert float(diff[:, 48, 64].max()) == 0.0  # deep inside: untouched
    assert float(diff[:, 48, 10:13].min()) > 0.05  # at the edge: brightened by the white bg
    blue = bgm.replace_background(s, source="color", color="#2040ff", decontaminate_edges=False, match_color=1.0).read().frames
    inside = alpha.bool()
    assert float(blue[inside][:, 2].mean() - blue[inside][:, 0].mean()) > float(frames[inside][:, 2].mean() - frames[inside][:, 0].mean())


def test_bad_inputs_are_named():
    s, _, _ = _stream()
    with pytest.raises(ValueError, match="colour"):
        bgm.replace_background(s, source="color", color="teal-ish")
    with pytest.raises(ValueError, match="no image"):
        bgm.replace_background(s, source="image")
    with pytest.raises(ValueError, match="no background frames"):
        bgm.replace_background(s, source="stream")
    with pytest.raises(ValueError, match="no mask"):
        bgm.replace_background(from_tensor(torch.rand(1, 8, 8, 3)))
    with pytest.raises(FileNotFoundError, match="input folder"):
        bgm.replace_background(s, source="image", image=str(host.input_dir() / "missing.png"))


def _soft_edge_scene(n=3, h=48, w=64):
    """A dark 'person' on a bright old background, with a soft matte whose faint outer tail
    (alpha 0.05..0.4, like motion blur round a moving hand) reaches a few pixels outside."""
    frames = torch.ones(n, h, w, 3) * 0.95
    frames[:, 12:36, 20:44] = torch.tensor([0.25, 0.18, 0.15])
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    d = torch.maximum((yy - 23.5).abs() - 12, (xx - 31.5).abs() - 12)  # outside distance from the square
    alpha = (0.5 - d / 8).clamp(0, 1).expand(n, h, w).contiguous()
    inner = alpha >= 0.999
    # the true picture: person colour where alpha, old background elsewhere
    frames = torch.where(inner.unsqueeze(-1), frames, alpha.unsqueeze(-1) * torch.tensor([0.25, 0.18, 0.15])
                         + (1 - alpha.unsqueeze(-1)) * 0.95)
    return frames, alpha


def test_no_bright_fringe_outside_the_matte():
    import torch.nn.functional as F

    frames, alpha = _soft_edge_scene()
    new = torch.tensor(bgm.parse_color("#1b2a3a"))
    band = (F.max_pool2d((alpha >= 0.5).float().unsqueeze(1), 7, 1, 3).squeeze(1) > 0.5) & (alpha < 0.5)
    for wrap in (0.0, 0.3):
        out = bgm.replace_background(from_tensor(frames, mask=alpha), source="color", color="#1b2a3a",
                                     wrap=wrap).read().frames
        lw = torch.tensor([0.2126, 0.7152, 0.0722])
        bias = float(((out - new) @ lw)[band].mean())
        person = torch.tensor([0.25, 0.18, 0.15])
        ideal = float(((alpha.unsqueeze(-1) * (person - new)) @ lw)[band].mean())
        # the old white background must not shine through: the band is what the person's own
        # colour at that alpha gives, plus at most what the light wrap asked for
        assert bias <= ideal + 0.015 + 0.05 * wrap, (wrap, bias, ideal)


def test_blur_backdrop_leaves_the_person_out():
    frames, alpha = _soft_edge_scene(h=64, w=96)
    bg = bgm.blurred_backdrop(frames, alpha, sigma=8.0, darken=0.0)
    # the blurred backdrop next to and behind the person is the old bright background, no dark ghost
    assert float(bg[:, 10:40, 15:50].min()) > 0.85


def test_comfy_image_as_background_still_and_batch():
    s, frames, alpha = _stream(n=4, alpha=torch.zeros(4, 40, 64))
    still = torch.full((1, 30, 50, 3), 0.25)
    out = bgm.replace_background(s, source="color", image_tensor=still).read().frames
    assert torch.allclose(out, torch.full_like(out, 0.25))
    batch = torch.stack([torch.full((20, 20, 3), v) for v in (0.1, 0.6)])
    out = bgm.replace_background(s, source="color", image_tensor=batch).read().frames
    assert [round(float(out[i].mean()), 3) for i in range(4)] == [0.1, 0.6, 0.1, 0.6]
    from nodes.background import RemasterReplaceBackground

    (res,) = RemasterReplaceBackground().run(s, source="color", background_image=still)
    assert torch.allclose(res.read().frames, torch.full((4, 40, 64, 3), 0.25))
    with pytest.raises(ValueError, match="background_image must be an IMAGE"):
        bgm.replace_background(s, image_tensor=torch.zeros(2, 3))
