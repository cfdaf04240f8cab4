"""JumpMeter: an edit that changes inside the mask more than the source scores its group; one
that follows the source scores 0; a shot cut is not a jump."""
from types import SimpleNamespace

import torch

from remaster.analysis.jumps import JumpMeter


def test_jump_inside_the_mask_scores_its_group_and_cuts_do_not():
    torch.manual_seed(0)
    plan = SimpleNamespace(cuts=[6], frame_count=8, groups=[(0, 3), (3, 6), (6, 8)])
    meter = JumpMeter(plan, side=32)
    src = torch.rand(8, 48, 64, 3)
    out = src.clone()
    mask = torch.zeros(8, 48, 64)
    mask[:, 10:30, 20:40] = 1
    out[3:, 10:30, 20:40] = 0.0  # the edit switches on at frame 3: a jump there
    out[6:] = torch.rand(2, 48, 64, 3)  # a new shot: large change, but at a cut
    for i in range(8):
        meter.add(i, src[i], out[i], mask[i])
    a, b, c = meter.group_scores()
    assert a == 0.0 and c < 0.05
    assert b > 0.2


def test_following_the_source_scores_nothing():
    plan = SimpleNamespace(cuts=[], frame_count=4, groups=[(0, 4)])
    meter = JumpMeter(plan)
    src = torch.rand(4, 20, 20, 3)
    for i in range(4):
        meter.add(i, src[i], src[i], None)
    assert meter.group_scores() == [0.0]
