"""Interpolate stage: exact frame counts and rates, no ghost frames at cuts, chunk borders
invisible, duplicate removal, and real quality (RIFE beats a plain blend on real footage)."""
import math
from fractions import Fraction

import pytest
import torch

from conftest import clip, shared_model
from remaster import host
from remaster.models import rife
from remaster.analysis import scenes
from remaster.stages.interpolate import interpolate, output_count, parse_fps
from remaster.stream import AudioRef, from_tensor

REAL = "rife/flownet_v4.25.pkl"


def psnr(a, b) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return 99.0 if mse == 0 else 10 * math.log10(1.0 / mse)


def collect(stream, chunk=None):
    chunks = list(stream.chunks(chunk))
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)
    return torch.cat([c.frames for c in chunks]) if chunks else torch.zeros(0)


@pytest.fixture
def small_model():
    """A random-weight 4.25-layout checkpoint in the rife models folder (official key names)."""
    cfg = rife.RifeConfig(widths=(32, 32, 24, 16, 16), in_channels=(15, 28, 28, 28, 28), encoder="head",
                          enc_hidden=16, enc_out=4, block_out=13, feat_out=8, accumulate_mask=False)
    torch.manual_seed(0)
    sd = rife.IFNet(cfg).state_dict()
    folder = host.model_dirs("rife")[0]
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(sd, folder / "tiny_rife.pth")
    return "tiny_rife.pth"


def ramp(n=10, h=40, w=56, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, h, w, 3, generator=g)
    return torch.cat([torch.roll(base, i, dims=2) for i in range(n)])


def real_frames(name, n, max_side, start_time=0.0):
    from remaster.media.decode import open_video

    return open_video(str(clip(name)), max_side=max_side, start_time=start_time).read(0, n).frames


# ------------------------------------------------------------------------------------------------
def test_times_two_exact_count_fps_and_originals(small_model):
    frames = ramp(10)
    audio = AudioRef(path="a.m4a", duration=10 / 24)
    src = from_tensor(frames, fps=24, audio=audio)
    out = interpolate(src, small_model, mode="multiply", multiplier=2, detect_cuts=False)
    assert out.info.fps == Fraction(48) and out.info.frame_count == 20
    assert out.info.duration == src.info.duration and out.info.audio == audio
    y = collect(out, 3)
    assert y.shape == (20, 40, 56, 3)
    for i in range(10):
        assert torch.equal(y[2 * i], frames[i])  # source frames pass through bit for bit
    assert torch.equal(y[19], frames[9])  # after the last frame: held, not extrapolated
    assert not torch.equal(y[1], frames[0]) and not torch.equal(y[1], frames[1])


def test_24_to_60_exact_count_and_fps(small_model):
    frames = ramp(12)
    out = interpolate(from_tensor(frames, fps=24), small_model, mode="fps", target_fps=60, detect_cuts=False)
    assert out.info.fps == Fraction(60) and out.info.frame_count == 30
    y = collect(out, 7)
    assert y.shape[0] == 30
    for j in range(0, 30, 5):  # output j shows source position j * 24/60: integers every 5 frames
        assert torch.equal(y[j], frames[j * 2 // 5])
    # NTSC rates stay exact
    ntsc = interpolate(from_tensor(ramp(11), fps=Fraction(24000, 1001)), small_model, mode="fps", target_fps=59.94)
    assert ntsc.info.fps == Fraction(60000, 1001)
    assert ntsc.info.frame_count == output_count(11, Fraction(24000, 1001), Fraction(60000, 1001)) == 28
    assert parse_fps("30000/1001") == Fraction(30000, 1001) and parse_fps(60) == 60


def test_chunk_borders_are_invisible(small_model):
    src = from_tensor(ramp(9), fps=25)
    out = interpolate(src, small_model, multiplier=3, detect_cuts=False)
    whole = collect(out, 64)
    for size in (1, 4):
        assert torch.equal(collect(out, size), whole)
    assert whole.shape[0] == 27


def test_synthetic_cut_has_no_ghost_frame(small_model):
    a = ramp(10, seed=1) * 0.5  # two different shots
    b = 0.5 + ramp(10, seed=2) * 0.5
    src = from_tensor(torch.cat([a, b]), fps=24)
    assert scenes.detect_scene_cuts(src) == [10]
    y = collect(interpolate(src, small_model, multiplier=2))  # cuts detected on the fly
    assert y.shape[0] == 40
    # the slot between the last frame of shot A and the first of shot B repeats A's last frame
    assert torch.equal(y[19], a[9]) and torch.equal(y[20], b[0])
    for j in range(40):  # no output frame mixes the two shots
        m = float(y[j].mean())
        assert m < 0.5 if j < 20 else m >= 0.5
    blended = collect(interpolate(src, small_model, multiplier=2, cut_mode="blend"))
    assert torch.allclose(blended[19], 0.5 * (a[9] + b[0]))
    crossing = collect(interpolate(src, small_model, multiplier=2, detect_cuts=False))
    assert not torch.equal(crossing[19], a[9])  # without cut handling the pair would be interpolated
    # x1 with duplicate removal: a frozen end of shot A is not bridged into shot B
    frozen = torch.cat([a[:8], a[7:8].repeat(2, 1, 1, 1), b])
    fixed = collect(interpolate(from_tensor(frozen, fps=24), small_model, multiplier=1, remove_duplicates=True))
    assert torch.equal(fixed[8], a[7]) and torch.equal(fixed[9], a[7]) and torch.equal(fixed[10], b[0])
    # cuts attached to the stream are used and mapped to the output timeline
    attached = interpolate(scenes.with_cuts(src, [10]), small_model, multiplier=2)
    assert attached.info.scene_cuts == (20,)


def test_masks_follow_frames(small_model):
    frames = ramp(4)
    mask = torch.zeros(4, 40, 56)
    mask[3:] = 1
    y = list(interpolate(from_tensor(frames, fps=24, mask=mask), small_model, multiplier=4, detect_cuts=False).chunks(5))
    masks = torch.cat([c.mask for c in y])
    assert masks.shape == (16, 40, 56)
    # an in-between frame takes the mask of the nearer source frame: 2.25 -> frame 2, 2.75 -> frame 3
    assert float(masks[9].mean()) == 0 and float(masks[11].mean()) == 1


def test_bad_input_is_reported(small_model):
    src = from_tensor(ramp(4), fps=30)
    with pytest.raises(ValueError, match="cut_mode"):
        interpolate(src, small_model, cut_mode="ghost")
    with pytest.raises(ValueError, match="force_fps"):
        interpolate(src, small_model, mode="fps", target_fps=24)
    with pytest.raises(ValueError, match="scale"):
        interpolate(src, small_model, scale=3)
    from remaster.models.registry import ModelNotFound

    with pytest.raises(ModelNotFound, match="'rife' models folder"):
        collect(interpolate(src, "nope.pth"))


# -- real weights and real footage ---------------------------------------------------------------
# clips with motion (a held anime drawing or a still talking head says nothing about interpolation)
CLIPS = ["juggle_720p24.mp4", "bedroom_540p30.mp4", "dog_720p30_audio.mp4"]


def test_drop_every_other_frame_beats_blend_by_3db():
    model = str(shared_model(REAL))
    gains = []
    for name in CLIPS:
        frames = real_frames(name, 5, 480, start_time=1.0)  # f0..f4; keep f0, f2, f4, rebuild f1, f3
        kept = frames[0::2]
        y = collect(interpolate(from_tensor(kept, fps=12), model, multiplier=2, detect_cuts=False))
        assert y.shape[0] == 6
        for j, truth in ((1, frames[1]), (3, frames[3])):
            blend = 0.5 * (frames[j - 1] + frames[j + 1])
            gains.append(psnr(y[j], truth) - psnr(blend, truth))
    assert sum(gains) / len(gains) >= 3.0, gains


def test_duplicate_removal_rebuilds_the_repeated_frame():
    model = str(shared_model(REAL))
    frames = real_frames("bedroom_540p30.mp4", 4, 480, start_time=1.0)
    stutter = frames.clone()
    stutter[1] = frames[0]  # frame 1 lost and replaced by a repeat of frame 0
    src = from_tensor(stutter, fps=24)
    plain = collect(interpolate(src, model, multiplier=1, detect_cuts=False))
    assert torch.equal(plain, stutter)  # x1 without dedup changes nothing
    fixed = collect(interpolate(src, model, multiplier=1, detect_cuts=False, remove_duplicates=True))
    assert fixed.shape == stutter.shape
    assert torch.equal(fixed[0], frames[0]) and torch.equal(fixed[2], frames[2])
    assert psnr(fixed[1], frames[1]) >= psnr(stutter[1], frames[1]) + 3.0


def test_node_and_shipped_workflow_run_end_to_end(tmp_path):
    """workflows/api/interpolate_60fps.json through the CLI on a real clip with audio."""
    import json
    import os
    from pathlib import Path

    import av

    from remaster.headless.cli import main, node_mappings

    real = shared_model(REAL)
    folder = host.model_dirs("rife")[0]
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink(real, folder / "rife425.pth")
    node = node_mappings()["RemasterInterpolate"]
    spec = node.INPUT_TYPES()
    for section in spec.values():
        for name, (_, opts) in section.items():
            assert opts.get("tooltip"), name
    wf = Path(__file__).resolve().parents[2] / "workflows/api/interpolate_60fps.json"
    assert json.loads(wf.read_text())["2"]["class_type"] == "RemasterInterpolate"
    src = clip("dog_720p30_audio.mp4")  # 29.97 fps with AAC audio
    out = tmp_path / "dog60.mp4"
    code = main(["run", str(wf), "--input", str(src), "--output", str(out), "--set", "Load Video.end_time=0.5",
                 "--set", "Load Video.resize=max_side", "--set", "Load Video.max_side=256",
                 "--set", "Save Video.speed=ultrafast"])
    assert code == 0
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.average_rate == 60
        n = sum(1 for _ in c.decode(video=0))
        assert c.streams.audio
    from remaster.media.decode import open_video

    n_in = open_video(str(src), end_time=0.5).info.frame_count
    assert n == output_count(n_in, Fraction(30000, 1001), Fraction(60))
    assert abs(n / 60 - n_in * 1001 / 30000) <= 0.5 / 60  # same duration, within half an output frame
