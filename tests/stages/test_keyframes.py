"""Keyframe analysis: exact change points inside the mask, blindness to changes outside it."""
import numpy as np
import pytest
import torch

from remaster.stream import from_tensor
from remaster.analysis import flow as flowlib
from remaster.stages.inpaint.keyframes import analyse_keyframes, keyframe_stream

H, W, N = 120, 160, 48
CHANGES = [12, 25, 37]


def _scene(inside_changes=True, outside_motion=True):
    """Textured background; a patch inside the mask moves/recolours at CHANGES only; a square
    outside the mask moves every frame."""
    rng = np.random.default_rng(0)
    bg = rng.random((H, W, 3)).astype(np.float32) * 0.3 + 0.2
    frames = np.repeat(bg[None], N, axis=0).copy()
    mask = np.zeros((N, H, W), np.float32)
    mask[:, 20:100, 80:150] = 1.0
    positions = [(30, 90), (50, 110), (35, 120), (60, 95)]
    colours = [(0.9, 0.1, 0.1), (0.1, 0.9, 0.1), (0.1, 0.1, 0.9), (0.9, 0.9, 0.1)]
    seg = 0
    for t in range(N):
        if inside_changes:
            while seg < len(CHANGES) and t >= CHANGES[seg]:
                seg += 1
        y, x = positions[seg]
        frames[t, y : y + 25, x : x + 25] = colours[seg]
        if outside_motion:
            ox = 5 + (t * 3) % 50
            frames[t, 60:90, ox : ox + 20] = (1.0, 1.0, 1.0)
    return torch.from_numpy(frames), torch.from_numpy(mask)


def test_change_points_inside_mask_are_found_exactly():
    frames, mask = _scene()
    plan = analyse_keyframes(from_tensor(frames, 24, mask=mask), min_group=2, detect_cuts=True)
    assert plan.keyframes == [0] + CHANGES
    assert plan.groups == [[0, 12], [12, 25], [25, 37], [37, N]]
    assert plan.frame_count == N
    assert plan.group_of(24) == 1 and plan.group_of(25) == 2


def test_changes_outside_mask_make_no_keyframe():
    frames, mask = _scene(inside_changes=False, outside_motion=True)
    # even at the most sensitive weights
    plan = analyse_keyframes(from_tensor(frames, 24, mask=mask), 1.0, 1.0, min_group=2)
    assert plan.keyframes == [0]
    # and the same motion *inside* a mask covering it is seen
    mask2 = torch.zeros_like(mask)
    mask2[:, 50:100, 0:80] = 1.0
    plan2 = analyse_keyframes(from_tensor(frames, 24, mask=mask2), 1.0, 1.0, min_group=2, max_group=100)
    assert len(plan2.keyframes) > 3


def test_max_group_and_scene_cuts_start_groups():
    frames, mask = _scene(inside_changes=False, outside_motion=False)
    s = from_tensor(frames, 24, mask=mask).with_info(scene_cuts=(20,))
    plan = analyse_keyframes(s, max_group=16)
    assert plan.keyframes == [0, 16, 20, 36]
    assert all(b - a <= 16 for a, b in plan.groups)


def test_weights_change_group_size_on_steady_motion():
    # a patch drifting steadily inside the mask: more "movement"/"determinism" → more keyframes
    frames = torch.full((N, H, W, 3), 0.3)
    rng = np.random.default_rng(1)
    tex = torch.from_numpy(rng.random((30, 30, 3)).astype(np.float32))
    for t in range(N):
        frames[t, 40:70, 20 + 2 * t : 50 + 2 * t] = tex
    mask = torch.ones(N, H, W)
    s = from_tensor(frames, 24, mask=mask)
    few = analyse_keyframes(s, movement=0.0, determinism=0.0, min_group=1, max_group=100)
    many = analyse_keyframes(s, movement=1.0, determinism=1.0, min_group=1, max_group=100)
    assert len(many.keyframes) > len(few.keyframes) >= 1
    with pytest.raises(ValueError, match="movement"):
        analyse_keyframes(s, movement=2.0)


def test_keyframe_stream_holds_the_keyframes():
    frames, mask = _scene()
    s = from_tensor(frames, 24, mask=mask)
    plan = analyse_keyframes(s, min_group=2)
    ks = keyframe_stream(s, plan)
    got = ks.read()
    assert ks.info.frame_count == len(plan.keyframes) == len(got)
    assert torch.equal(got.frames, frames[plan.keyframes])
    assert torch.equal(got.mask, mask[plan.keyframes])


def test_backward_warp_follows_flow():
    rng = np.random.default_rng(2)
    a = rng.random((64, 96, 3)).astype(np.float32)
    a = torch.from_numpy(np.asarray(__import__("cv2").GaussianBlur(a, (0, 0), 2)))
    b = torch.roll(a, shifts=(2, 5), dims=(0, 1))  # b(x) = a(x - (5,2))
    fl = flowlib.estimate_flow(flowlib.to_gray_u8(a), flowlib.to_gray_u8(b), "dis_medium")
    assert abs(float(np.median(fl[..., 0])) - 5) < 0.5 and abs(float(np.median(fl[..., 1])) - 2) < 0.5
    rebuilt = flowlib.backward_warp(b.permute(2, 0, 1)[None], fl)[0].permute(1, 2, 0)
    inner = (slice(10, -10), slice(10, -10))
    assert float((rebuilt[inner] - a[inner]).abs().mean()) < 0.02
    zero = flowlib.backward_warp(a.permute(2, 0, 1)[None], np.zeros((64, 96, 2), np.float32))
    assert torch.allclose(zero[0].permute(1, 2, 0), a, atol=1e-5)


def test_detected_scene_cut_starts_a_group_despite_min_group():
    rng = np.random.default_rng(3)
    a = torch.from_numpy(rng.random((H, W, 3)).astype(np.float32))
    b = torch.from_numpy(rng.random((H, W, 3)).astype(np.float32)) * 0.5
    frames = torch.cat([a.expand(20, -1, -1, -1), b.expand(20, -1, -1, -1)]).clone()
    frames += torch.from_numpy(rng.random(frames.shape).astype(np.float32)) * 0.01
    mask = torch.zeros(40, H, W)
    mask[:, 10:50, 10:50] = 1
    plan = analyse_keyframes(from_tensor(frames, 24, mask=mask), min_group=30, max_group=100)
    assert plan.cuts == [20]
    assert plan.keyframes == [0, 20]


def test_real_clip_static_region_vs_moving_region():
    from conftest import clip
    from remaster.media.decode import open_video
    from remaster.stages.inpaint import rectangle_mask

    src = open_video(clip("juggle_720p24.mp4"), max_side=320, end_time=4)
    trees = analyse_keyframes(rectangle_mask(src, 0.0, 0.0, 0.2, 0.2), max_group=200)  # swaying trees, far
    person = analyse_keyframes(rectangle_mask(src, 0.35, 0.25, 0.3, 0.5), max_group=200)  # the juggler
    assert trees.keyframes == [0]
    assert len(person.keyframes) >= 5
    assert all(b - a >= 4 for a, b in person.groups)  # min_group
