"""ui payloads for the web editors: the keyframe picker's gallery from a selection."""
from types import SimpleNamespace

import cv2
import numpy as np
import torch

from remaster import host, webui


def selection():
    rng = np.random.default_rng(0)
    edits = [
        SimpleNamespace(index=0, source=torch.from_numpy(rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)),
                        candidates=torch.from_numpy(rng.integers(0, 255, (3, 300, 200, 3), dtype=np.uint8))),
        SimpleNamespace(index=10, source=None, candidates=None),  # no mask on that keyframe
        SimpleNamespace(index=20, source=torch.rand(40, 60, 3), candidates=torch.rand(2, 40, 60, 3)),
    ]
    plan = SimpleNamespace(groups=[(0, 10), (10, 20), (20, 31)])
    return SimpleNamespace(candidates=SimpleNamespace(edits=edits, plan=plan), picks=[1, None, 0],
                           scores=[[0.5, 0.2, 0.9], [], [0.3, 0.1]], manual=[False, False, True]), edits


def test_candidates_ui_entries_and_thumbnails():
    sel, edits = selection()
    ui = webui.candidates_ui(sel, side=128)
    assert [(e["keyframe"], e["frames"], e["pick"], e["auto"], e["manual"]) for e in ui] == [
        (0, [0, 9], 1, 1, False), (10, [10, 19], "drop", None, False), (20, [20, 30], 0, 1, True)]
    assert ui[1]["candidates"] == [] and ui[1]["source"] is None
    assert len(ui[0]["candidates"]) == 3 and len(ui[2]["candidates"]) == 2
    for e in ui[0]["candidates"] + [ui[0]["source"]] + ui[2]["candidates"]:
        assert e["type"] == "temp" and e["subfolder"] == ""
        img = cv2.imread(str(host.temp_dir() / e["filename"]))
        assert img is not None and max(img.shape[:2]) <= 128
    # the saved thumbnail is the candidate (RGB order kept), downscaled
    img = cv2.imread(str(host.temp_dir() / ui[0]["candidates"][2]["filename"]))[..., ::-1]
    ref = cv2.resize(edits[0].candidates[2].numpy(), (img.shape[1], img.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(img.astype(int) - ref.astype(int)).max() <= 1
    assert img.shape[:2] == (128, 85)
