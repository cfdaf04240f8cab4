"""Film and tape: the damage simulator and the restoration stages, on real clips damaged by it."""
from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch
from conftest import clip

from remaster.media.decode import open_video
from remaster.stages import denoise_regrain as DN
from remaster.stages import dust_scratches as DS
from remaster.stages import fade_restore as FR
from remaster.stages import film_damage as D
from remaster.analysis import flow as FL
from remaster.analysis.repair import to_ycc
from remaster.stages import stabilise as SB
from remaster.stages import tape_fixes as TF
from remaster.stream import AudioRef, FrameStream, from_tensor


def _real(name="juggle_720p24.mp4", frames=12, side=480, start=0.0):
    s = open_video(clip(name), start_time=start, end_time=start + frames / 20.0, max_side=side)
    return s.read().frames[:frames]


def _damage(x, st):
    out = [D.damage_frame(x[i].numpy(), i, st) for i in range(len(x))]
    return torch.stack([torch.from_numpy(o[0]) for o in out]), [o[1] for o in out]


def _psnr(a, b):
    return float(10 * np.log10(1.0 / float(((a - b) ** 2).mean())))


# ---- simulator ----------------------------------------------------------------------------------
def test_damage_is_deterministic_per_frame_index_and_chunking():
    x = torch.rand(6, 48, 64, 3)
    st = D.DamageSettings(preset="8mm", seed=5, dust=3.0, scratches=4.0)
    a = D.film_damage(from_tensor(x), st).read().frames
    b = D.film_damage(from_tensor(x).rechunked(4), st).read().frames
    assert torch.equal(a, b)
    one, _ = D.damage_frame(x[4].numpy(), 4, st)  # a single frame rendered alone
    assert np.array_equal(one, a[4].numpy())
    c = D.film_damage(from_tensor(x), D.DamageSettings(preset="8mm", seed=6)).read().frames
    assert not torch.equal(a, c)


def test_scratches_persist_and_dust_lasts_one_frame():
    x = np.full((144, 192, 3), 0.4, np.float32)
    st = D.DamageSettings(preset="16mm", seed=1, scratches=4.0, dust=4.0, grain=0, weave=0, flicker=0, fading=0)
    masks = [D.damage_frame(x, i, st)[1] for i in range(30)]
    sc = np.stack([m["scratch"] for m in masks])
    dust = np.stack([m["dust"] for m in masks])
    cols = sc.any(1)  # [frames, W]: columns touched by a scratch
    assert cols.any()
    # a scratch stays (within a couple of pixels) in the next frame most of the time
    stay = [(cv2.dilate(cols[i].astype(np.uint8)[None], np.ones((1, 5), np.uint8))[0] > 0)[cols[i + 1]].mean()
            for i in range(29) if cols[i].any() and cols[i + 1].any()]
    assert np.mean(stay) > 0.8
    assert dust.any()
    assert (dust[:-1] & dust[1:]).sum() < 0.05 * dust.sum()


def test_fading_and_tape_presets_change_the_picture_the_physical_way():
    x = _real(frames=1, side=320)[0].numpy()
    faded = D.fade(x, "eastmancolor", 1.0)
    # the cyan layer fades most: red rises most
    assert (faded - x).mean((0, 1))[0] > (faded - x).mean((0, 1))[1] + 0.02
    vhs, m = D.damage_frame(x, 0, D.DamageSettings(preset="vhs", seed=0))
    assert m["tape"][-3:].all()  # head-switching lines at the bottom
    assert not np.allclose(vhs, x)


# ---- Dust & Scratches ---------------------------------------------------------------------------
def _recall(masks, det, kind, frames, change):
    """Found / total visible defects: a defect is visible when it changes its pixels by more than
    1.5 grain sigmas on average, found when at least half of its pixels are flagged."""
    found = total = 0
    for i in frames:
        n, lab = cv2.connectedComponents(masks[i][kind].astype(np.uint8))
        for c in range(1, n):
            px = lab == c
            if px.sum() < 3 or change[i][px].mean() < 0.06:
                continue
            total += 1
            found += det[i][px].mean() >= 0.5
    return found, total


@pytest.mark.parametrize("name", ["juggle_720p24.mp4", "dog_720p30_audio.mp4"])
def test_dust_and_scratches_found_and_repaired_on_real_clips(name):
    x = _real(name, frames=12, side=480)
    st = D.DamageSettings(preset="16mm", seed=3, scratches=4.0, dust=2.5, fading=0.0, blotches=0.0)
    dmg, masks = _damage(x, st)
    out = DS.dust_scratches(from_tensor(dmg, 24), DS.DustSettings(), mask_output=True).read()
    det = out.mask.numpy() > 0.5
    inner = range(1, len(x) - 1)  # the first and last frame of a shot only have neighbours on one side
    change = np.abs(dmg.numpy() - x.numpy()).mean(-1)
    fd, td = _recall(masks, det, "dust", inner, change)
    fs, ts = _recall(masks, det, "scratch", inner, change)
    assert td >= 20 and ts >= 3
    assert fd / td >= 0.9, (fd, td)
    assert fs / ts >= 0.9, (fs, ts)
    # the repair: the damaged pixels move back toward the clean ones
    dam = np.stack([m["dust"] | m["scratch"] for m in masks])
    ref = D.film_damage(from_tensor(x, 24), D.DamageSettings(preset="16mm", seed=3, scratches=0, dust=0, hairs=0,
                                                            fading=0.0, blotches=0.0)).read().frames.numpy()
    e_before = np.abs(dmg.numpy() - ref)[dam].mean()
    e_after = np.abs(out.frames.numpy() - ref)[dam].mean()
    assert e_after < 0.5 * e_before


@pytest.mark.parametrize("name", ["juggle_720p24.mp4", "bedroom_540p30.mp4"])
def test_few_false_detections_on_moving_real_content(name):
    x = _real(name, frames=10, side=480)
    xn = x.numpy()
    # where the real picture moves (frame difference), grown a little: moving edges and their wake
    diff = np.abs(np.diff(xn, axis=0)).max(-1) > 0.04
    moving = np.concatenate([diff[:1], diff])
    moving = np.stack([cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0 for m in moving])
    assert moving.mean() > 0.03  # the clips really move
    grainy = D.film_damage(from_tensor(x, 24), D.DamageSettings(
        preset="16mm", seed=2, scratches=0, dust=0, hairs=0, blotches=0, fading=0, weave=0, flicker=0))
    for src in (grainy, from_tensor(x, 24)):
        det = DS.dust_scratches(src, DS.DustSettings(), mask_output=True).read().mask.numpy() > 0.5
        assert (det & moving).mean() <= 0.01, (det & moving).mean()
        # a static thin full-height line (a door frame) looks exactly like a scratch: allowed, but bounded
        assert det.mean() <= 0.02, det.mean()


# ---- Stabilise ----------------------------------------------------------------------------------
def _jitter(clean, frames):
    offs = []
    for a, b in zip(clean, frames):
        (dx, dy), _ = cv2.phaseCorrelate(FL.to_gray_u8(a).astype(np.float32), FL.to_gray_u8(b).astype(np.float32))
        offs.append((dx, dy))
    offs = np.array(offs)
    k = 9
    pad = np.pad(offs, ((k // 2, k // 2), (0, 0)), mode="edge")
    slow = np.stack([pad[i:i + len(offs)] for i in range(k)]).mean(0)
    return float(np.sqrt(((offs - slow) ** 2).sum(1).mean()))


def test_stabilise_removes_most_of_the_weave():
    x = _real("dog_720p30_audio.mp4", frames=30, side=480)
    st = D.DamageSettings(preset="8mm", seed=2, fading=0, scratches=0, dust=0, hairs=0, blotches=0, flicker=0,
                          vignette=0, softness=0, grain=0.5, weave=2.0)
    dmg, _ = _damage(x, st)
    out = SB.stabilise(from_tensor(dmg, 30), SB.StabiliseSettings(radius=10)).read().frames
    before, after = _jitter(x, dmg), _jitter(x, out)
    assert before > 0.5
    assert after <= 0.2 * before, (before, after)


# ---- colour, tape, denoise ----------------------------------------------------------------------
def test_restore_faded_colour_auto_and_stock():
    x = _real(frames=6, side=320)
    faded = torch.stack([torch.from_numpy(D.fade(f.numpy(), "eastmancolor", 1.0)) for f in x])
    auto = FR.restore_fade(from_tensor(faded), FR.FadeSettings()).read().frames
    stock = FR.restore_fade(from_tensor(faded), FR.FadeSettings(mode="eastmancolor")).read().frames
    assert _psnr(auto, x) > _psnr(faded, x) + 3
    assert _psnr(stock, x) > _psnr(faded, x) + 8


def test_tape_fixes_improve_a_vhs_copy():
    x = _real("dog_720p30_audio.mp4", frames=6, side=480)
    dmg, _ = _damage(x, D.DamageSettings(preset="vhs", seed=2, noise_bands=3.0))
    out = TF.tape_fixes(from_tensor(dmg, 30)).read().frames
    assert _psnr(out, x) > _psnr(dmg, x) + 2
    # the delay the simulator added, over the source's own chroma alignment (how its 4:2:0 was sited)
    added = TF.chroma_delay(to_ycc(dmg[0].numpy())) - TF.chroma_delay(to_ycc(x[0].numpy()))
    assert abs(added - 2.5 * 270 / 720) < 0.6, added


def test_denoise_removes_grain_and_regrain_puts_matched_grain_back():
    x = _real("dog_720p30_audio.mp4", frames=7, side=400)
    st = D.DamageSettings(preset="16mm", seed=4, severity=1.5, fading=0, scratches=0, dust=0, hairs=0, blotches=0,
                          weave=0, flicker=0, vignette=0, softness=0)
    dmg, _ = _damage(x, st)
    clean = DN.denoise_regrain(from_tensor(dmg), DN.DenoiseSettings(regrain=0.0)).read().frames
    assert _psnr(clean, x) > _psnr(dmg, x) + 3
    back = DN.denoise_regrain(from_tensor(dmg), DN.DenoiseSettings(regrain=1.0)).read().frames
    n_src, n_back = float((dmg - x)[2:5].std()), float((back - clean)[2:5].std())
    assert 0.5 * n_src < n_back < 1.5 * n_src


# ---- every node: shape, count, fps, audio; bad companions ---------------------------------------
def _src(n=6, h=72, w=96):
    audio = AudioRef(path="a.m4a", duration=n / 24, sample_rate=48000, channels=2)
    return from_tensor(torch.rand(n, h, w, 3) * 0.6 + 0.2, fps=Fraction(24000, 1001), audio=audio)


def test_every_node_keeps_size_count_fps_and_audio():
    from nodes import film_restore as N

    src = _src()
    outs = [
        N.RemasterFilmDamage().run(src, preset="8mm", mask_output=True)[0],
        N.RemasterFilmDamage().run(src, preset="vhs")[0],
        N.RemasterDustScratches().run(src, mask_output=True)[0],
        N.RemasterStabilise().run(src, radius=3)[0],
        N.RemasterStabilise().run(src, radius=3, edge="crop")[0],
        N.RemasterRestoreFadedColour().run(src)[0],
        N.RemasterRestoreFadedColour().run(src, mode="ektachrome")[0],
        N.RemasterTapeFixes().run(src)[0],
        N.RemasterTapeFixes().run(src, head_switch="crop")[0],
        N.RemasterDenoiseRegrain().run(src)[0],
    ]
    for o in outs:
        assert o.info.fps == src.info.fps and o.info.audio == src.info.audio
        got = o.read()
        assert tuple(got.frames.shape) == (6, 72, 96, 3), o.label
        assert got.frames.min() >= 0 and got.frames.max() <= 1
        assert o.info.frame_count == 6


def _untouchable(like: FrameStream, h: int, w: int, n: int) -> FrameStream:
    def producer(_s, _n):
        raise AssertionError("iterated before the inputs were checked")
        yield  # pragma: no cover

    info = like.info.with_(width=w, height=h, frame_count=n)
    return FrameStream(info, producer, "x", label="untouchable")


def test_companions_of_another_size_or_length_fail_before_any_work():
    from nodes import film_restore as N

    src = _src()
    with pytest.raises(ValueError, match="protect mask is 64x72 .* 96x72"):
        N.RemasterDustScratches().run(src, protect=_untouchable(src, 72, 64, 6))
    with pytest.raises(ValueError, match="reference clip has 5 frames"):
        N.RemasterRestoreFadedColour().run(src, reference=_untouchable(src, 72, 96, 5))
    with pytest.raises(ValueError, match="damage mask has 7 frames .* use the same clip range"):
        N.RemasterDustScratches().run(src, damage=_untouchable(src, 72, 96, 7))
    with pytest.raises(ValueError, match="protect mask is 96x36 .* load or resize it"):
        N.RemasterTapeFixes().run(src, protect=_untouchable(src, 36, 96, 6))
    with pytest.raises(ValueError, match="protect mask has 3 frames"):
        N.RemasterDenoiseRegrain().run(src, protect=_untouchable(src, 72, 96, 3))
    with pytest.raises(ValueError, match="preset must be one of"):
        N.RemasterFilmDamage().run(src, preset="super8")


def test_protect_mask_keeps_areas_untouched():
    x = _real(frames=7, side=320)
    dmg, _ = _damage(x, D.DamageSettings(preset="16mm", seed=3, dust=4.0))
    protect = torch.zeros(len(x), *x.shape[1:3])
    protect[:, :, : x.shape[2] // 2] = 1.0
    out = DS.dust_scratches(from_tensor(dmg), protect=from_tensor(dmg, mask=protect)).read().frames
    left = slice(0, x.shape[2] // 2)
    assert torch.equal(out[:, :, left], dmg[:, :, left])
    assert not torch.equal(out, dmg)
    for stage in (TF.tape_fixes, DN.denoise_regrain):
        out = stage(from_tensor(dmg), protect=from_tensor(dmg, mask=protect)).read().frames
        assert torch.equal(out[:, :, left], dmg[:, :, left]), stage.__name__
        assert not torch.equal(out[:, :, x.shape[2] // 2:], dmg[:, :, x.shape[2] // 2:]), stage.__name__


def test_known_damage_mask_is_repaired():
    """Film Damage's own mask handed to Dust & Scratches with detection off: exactly that is repaired."""
    x = _real(frames=7, side=320)
    dmg = D.film_damage(from_tensor(x), D.DamageSettings(preset="16mm", seed=3, dust=4.0, scratches=0.0), True).read()
    known = from_tensor(dmg.frames, mask=dmg.mask)
    st = DS.DustSettings(dust=False, scratches=False)
    out = DS.dust_scratches(from_tensor(dmg.frames), st, mask_output=True, damage=known).read()
    m = dmg.mask > 0.5
    assert torch.equal(out.mask > 0.5, m)  # the detection is the given mask
    rim = torch.nn.functional.max_pool2d(m.float()[:, None], 2 * st.grow + 1, 1, st.grow)[:, 0] > 0
    assert torch.equal(out.frames[~rim], dmg.frames[~rim])  # nothing beyond the repair's rim touched
    err = lambda y: float(((y - x)[m] ** 2).mean())  # noqa: E731
    assert err(out.frames) < 0.5 * err(dmg.frames)


# ---- shipped workflows --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["restore_film", "restore_tape"])
def test_restore_workflows_run_end_to_end_and_keep_audio(name, tmp_path, clips_dir):
    from pathlib import Path

    import av
    from spandrel.architectures.Compact import Compact

    from remaster import host
    from remaster.headless.cli import main

    d = host.model_dirs("upscale_models")[0]
    d.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save({"params": Compact(num_conv=4, upscale=4).state_dict()}, d / "realesr-general-x4v3.pth")
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    from test_rife import official_state_dict  # the graph names RIFE (multiplier 1 = off): the file must exist

    r = host.model_dirs("rife")[0]
    r.mkdir(parents=True, exist_ok=True)
    torch.save(official_state_dict("4.25"), r / "rife425.pth")
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / f"{name}.mp4"
    code = main(["run", str(root / "workflows" / "api" / f"{name}.json"), "--input", str(clip("dog_720p30_audio.mp4")),
                 "--output", str(out), "--set", "Save Video.speed=ultrafast", "--set", "Load Video.end_time=0.3",
                 "--set", "Load Video.max_side=96"])
    assert code == 0
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(v))
        assert (n, v.width, v.height, bool(c.streams.audio)) == (8, 192, 108, True)  # 0.3 s at 29.97 fps


def test_windows_stop_at_scene_cuts():
    a = _real("juggle_720p24.mp4", frames=10, side=320)
    b = _real("dog_720p30_audio.mp4", frames=10, side=320)
    b = torch.nn.functional.interpolate(b.permute(0, 3, 1, 2), size=a.shape[1:3], mode="area").permute(0, 2, 3, 1)
    x = torch.cat([a, b])  # a hard cut at frame 10
    det = DS.dust_scratches(from_tensor(x, 24), mask_output=True).read().mask.numpy()
    assert det[9].mean() < 0.01 and det[10].mean() < 0.01  # the other shot is never taken for a defect
    den = DN.denoise_regrain(from_tensor(x, 24)).read().frames
    assert _psnr(den[10], x[10]) > 30 and _psnr(den[9], x[9]) > 30  # nothing blended across the cut
    st = SB.stabilise(from_tensor(x, 24), SB.StabiliseSettings(radius=4)).read().frames
    assert _psnr(st[10], x[10]) > 25  # the path restarts: no jump carried over from the other shot


def test_a_range_renders_on_its_own_as_the_slice_of_the_full_render():
    """The stages declare their centred window: frames 4..9 read alone equal those of a full read
    (companions read in step over the same span)."""
    x = _real(frames=12, side=160)
    dmg, _ = _damage(x, D.DamageSettings(preset="16mm", seed=4, dust=3.0))
    protect = torch.zeros(len(x), *x.shape[1:3])
    protect[:, :20] = 1.0
    stages = [lambda s: DS.dust_scratches(s, protect=from_tensor(dmg, mask=protect)),
              lambda s: SB.stabilise(s, SB.StabiliseSettings(radius=3)),
              lambda s: FR.restore_fade(s, FR.FadeSettings(radius=3), reference=from_tensor(x)),
              lambda s: DN.denoise_regrain(s, DN.DenoiseSettings(regrain=0.5))]
    for make in stages:
        full = make(from_tensor(dmg)).read().frames
        part = make(from_tensor(dmg)).read(4, 10).frames
        assert torch.equal(part, full[4:10]), make
