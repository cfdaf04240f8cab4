"""The shipped background workflow, run in-process through the nodes on a real talking head."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from conftest import ROOT, clip, shared_model
from remaster import host
from remaster.headless import runner
from remaster.headless.cli import node_mappings


def test_background_workflow_replaces_the_background_of_a_talking_head(tmp_path):
    src = clip("talking_head_512_30_audio.mp4")
    d = host.model_dirs("matting")[0]
    d.mkdir(parents=True, exist_ok=True)
    (d / "rvm_mobilenetv3.pth").symlink_to(shared_model("matting/rvm_mobilenetv3.pth"))
    prompt = runner.load_workflow(ROOT / "workflows" / "api" / "background.json")
    out = tmp_path / "bg.mp4"
    prompt = runner.apply_overrides(prompt, [
        "Load Video.end_time=0.4", "Load Video.resize=max_side", "Load Video.max_side=192",
        "Replace Background.source=color", 'Replace Background.color="#0000ff"',
    ], str(src), str(out))
    result = runner.run(prompt, node_mappings())
    assert [Path(p) for p in runner.output_paths(result)] == [out]
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        has_audio = any(s.type == "audio" for s in c.streams)
    assert len(frames) == 12 and has_audio
    f = frames[-1].astype(np.float32) / 255
    h, w, _ = f.shape
    # corners: the new blue background; centre (the face): not blue
    for corner in (f[:8, :8], f[:8, -8:]):
        assert corner[..., 2].mean() > 0.8 and corner[..., :2].mean() < 0.15
    centre = f[h // 2 - 8 : h // 2 + 8, w // 2 - 8 : w // 2 + 8]
    assert centre[..., 0].mean() > centre[..., 2].mean()  # skin: more red than blue
