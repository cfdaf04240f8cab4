"""Automatic light and colour on real clips: cast removal, steady parameters, shot resets, masks."""
import numpy as np
import pytest
import torch

from conftest import clip
from remaster.media.decode import open_video
from remaster.stages import colour as C
from remaster.analysis.colourspace import linear_to_srgb, srgb_to_linear
from remaster.stream import from_tensor

CAST = torch.tensor([1.25, 1.0, 0.75])  # a strong warm cast in linear light


def _load(name, seconds=1.0, side=320):
    return open_video(clip(name), end_time=seconds, max_side=side).read().frames.clone()


def _with_grey_card(frames):
    """Paste a neutral grey card (display 0.5) into a corner: the known-grey patch."""
    h, w = frames.shape[1:3]
    y0, x0, s = int(h * 0.05), int(w * 0.05), int(h * 0.15)
    frames[:, y0:y0 + s, x0:x0 + s] = 0.5
    return frames, (x0 / w, y0 / h, s / w, s / h), (slice(y0, y0 + s), slice(x0, x0 + s))


def _cast(frames, cast=CAST):
    return linear_to_srgb(srgb_to_linear(frames) * cast).clamp(0, 1)


def _chroma(frames, patch):
    m = frames[:, patch[0], patch[1]].mean((0, 1, 2))
    return float(m.max() - m.min())


@pytest.mark.parametrize("clip_name,mode,tolerance", [
    ("juggle_720p24.mp4", "region", 0.002),
    ("juggle_720p24.mp4", "white_patch", 0.03),
    ("dog_720p30_audio.mp4", "white_patch", 0.035),
    ("bedroom_540p30.mp4", "grey_world", 0.02),
])
def test_white_balance_removes_synthetic_cast(clips_dir, clip_name, mode, tolerance):
    clean, region, patch = _with_grey_card(_load(clip_name))
    cast = _cast(clean)
    before = _chroma(cast, patch)
    assert before > 0.1
    out = C.auto_colour(from_tensor(cast, 24), white_balance=mode, wb_strength=1.0, vibrance=0.0, region=region)
    after = _chroma(out.read().frames, patch)
    assert after < tolerance, (before, after)


def test_steady_shot_parameters_do_not_flicker(clips_dir):
    src = from_tensor(_load("talking_head_512_30_audio.mp4", 3.0, 160), 30)  # decoded once, analysed 3 times
    smooth, cuts = C.analyse(src, C.AutoColourSettings())
    raw, _ = C.analyse(src, C.AutoColourSettings(smoothing_seconds=0.0))
    assert cuts == [] and smooth.shape == (src.info.frame_count, C.N_PARAMS)
    step_smooth = np.abs(np.diff(smooth, axis=0)).max(0)
    step_raw = np.abs(np.diff(raw, axis=0)).max(0)
    # frame-to-frame change of every parameter (gains, black, white, gamma) stays tiny ...
    assert step_smooth.max() < 2e-3, step_smooth
    # ... and smoothing is what makes it so
    assert step_smooth.sum() < 0.25 * step_raw.sum()
    per_shot, _ = C.analyse(src, C.AutoColourSettings(temporal="per_shot"))
    assert np.ptp(per_shot, axis=0).max() == 0.0


def test_statistics_reset_at_scene_cuts(clips_dir):
    a = _cast(_load("juggle_720p24.mp4", 1.0, 192)[:, :108], torch.tensor([1.2, 1.0, 0.8]))
    b = _cast(_load("bedroom_540p30.mp4", 1.0, 192)[:, :108], torch.tensor([0.8, 1.0, 1.2]))
    n = a.shape[0]
    stream = from_tensor(torch.cat([a, b]), 24)
    params, cuts = C.analyse(stream, C.AutoColourSettings(white_balance="grey_world", smoothing_seconds=2.0))
    assert cuts == [n]
    # red gain is below 1 for the warm shot and above 1 for the cool one, right up to the cut
    assert params[n - 1, 0] < 0.95 and params[n, 0] > 1.05
    within_a, within_b = np.ptp(params[:n], axis=0), np.ptp(params[n:], axis=0)
    jump = np.abs(params[n] - params[n - 1])
    assert jump[0] > 5 * max(within_a[0], within_b[0])


def test_person_and_background_corrected_separately(clips_dir):
    frames, _, _ = _with_grey_card(_load("dog_720p30_audio.mp4", 0.5, 192))
    w = frames.shape[2]
    mask = torch.zeros(frames.shape[:3])
    mask[:, :, : w // 2] = 1.0
    graded = frames.clone()
    graded[:, :, : w // 2] = _cast(frames[:, :, : w // 2], torch.tensor([1.3, 1.0, 0.7]))
    graded[:, :, w // 2:] = _cast(frames[:, :, w // 2:], torch.tensor([0.7, 1.0, 1.3]))
    stream = from_tensor(graded, 24, mask=mask)

    def balance(x, sl):
        m = srgb_to_linear(x[:, :, sl]).mean((0, 1, 2))
        return float(m[0] / m[2])

    left, right = slice(0, w // 2), slice(w // 2, w)
    ref_l, ref_r = balance(frames, left), balance(frames, right)
    sep = C.auto_colour(stream, white_balance="grey_world", wb_strength=1.0, vibrance=0.0, mask_mode="separate",
                        levels_strength=0.0, exposure_strength=0.0).read().frames
    # each side's red/blue balance goes back toward its own original balance
    for sl, ref in ((left, ref_l), (right, ref_r)):
        assert abs(np.log(balance(sep, sl) / ref)) < 0.5 * abs(np.log(balance(graded, sl) / ref))
    only = C.auto_colour(stream, mask_mode="person_only").read().frames
    assert torch.equal(only[:, :, w // 2 + 1:], graded[:, :, w // 2 + 1:])  # background untouched
    with pytest.raises(C.ColourError, match="person mask"):
        C.auto_colour(from_tensor(graded, 24), mask_mode="separate")


def test_levels_exposure_contrast_and_skin_protection(clips_dir):
    frames = _load("talking_head_512_30_audio.mp4", 0.5, 160)
    dull = 0.25 + frames * 0.4  # flat and grey-ish: lifted blacks, dim whites
    out = C.auto_colour(from_tensor(dull, 24), wb_strength=0.0, vibrance=0.0).read().frames
    lo, hi = np.percentile(out.mean(-1).numpy(), [0.5, 99.5])
    assert lo < 0.08 and hi > 0.9  # levels stretched back out
    dark = frames * 0.45  # underexposed
    lit = C.auto_colour(from_tensor(dark, 24), wb_strength=0.0, vibrance=0.0, levels_strength=0.0,
                        exposure_strength=1.0).read().frames
    med = lambda x: float(torch.median((x * torch.tensor(C.LUMA)).sum(-1)))  # noqa: E731
    assert abs(med(lit) - 0.46) < 0.3 * abs(med(dark) - 0.46)
    lc = C.clahe_luma(dull[:2], 1.0, 2.0)
    assert lc.std() > dull[:2].std()
    skin = torch.tensor([[[[0.80, 0.58, 0.47]]]])
    blue = torch.tensor([[[[0.35, 0.45, 0.70]]]])
    sat = lambda x: float(x.max() - x.min())  # noqa: E731
    gain_skin = sat(C.saturate(skin, 0.5, 0.0, 1.0)) / sat(skin)
    gain_blue = sat(C.saturate(blue, 0.5, 0.0, 1.0)) / sat(blue)
    assert gain_skin < 1.1 and gain_blue > 1.4


def test_bad_settings_name_the_input():
    x = from_tensor(torch.rand(2, 8, 8, 3))
    with pytest.raises(C.ColourError, match="region_x"):
        C.auto_colour(x, white_balance="region")
    with pytest.raises(C.ColourError, match="white_balance must be one of"):
        C.auto_colour(x, white_balance="purple")


def test_node_and_chunking_give_the_same_frames(clips_dir):
    from nodes.colour import NODE_CLASS_MAPPINGS

    src = open_video(clip("juggle_720p24.mp4"), end_time=0.5, max_side=128)
    (out,) = NODE_CLASS_MAPPINGS["RemasterAutoColour"]().run(src, local_contrast=0.3)
    a = out.read().frames
    (out2,) = NODE_CLASS_MAPPINGS["RemasterAutoColour"]().run(src.rechunked(4), local_contrast=0.3)
    assert torch.allclose(a, out2.read().frames, atol=1e-6)
    assert a.shape == src.read().frames.shape


def test_grade_lut_workflow_runs_end_to_end(tmp_path, capsys, clips_dir):
    from pathlib import Path

    from remaster.headless.cli import main

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "graded.mp4"
    code = main(["run", str(root / "workflows/api/grade_lut.json"), "--input", str(clip("juggle_720p24.mp4")),
                 "--output", str(out), "--set", "Load Video.end_time=0.5", "--set", "Load Video.resize=max_side",
                 "--set", "Load Video.max_side=256", "--set", "Save Video.speed=ultrafast"])
    assert code == 0 and out.is_file()
    graded = open_video(out).read().frames
    plain = open_video(clip("juggle_720p24.mp4"), end_time=0.5, max_side=256).read().frames
    assert graded.shape == plain.shape == (12, 144, 256, 3)
    assert float((graded - plain).abs().mean()) > 0.01  # it was graded
