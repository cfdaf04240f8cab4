"""The main shipped workflows (passthrough, fast, enhance, quality) run end to end in-process on a
real clip. Real weights from ../shared/models are placed with `models link` where they exist;
every other model is a random-weight checkpoint built here in its official file format and
loaded by the real loaders. (The stage examples — upscale, face_restore, background, grade_lut,
interpolate_60fps, inpainting — have end-to-end tests beside their stages.)"""
from __future__ import annotations

import sys
from pathlib import Path

import av
import pytest
import torch

from conftest import SHARED_MODELS, clip
from remaster import host
from remaster.headless.cli import main
from remaster.models import registry

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "models"))


def _place(folder: str, name: str, state: dict) -> None:
    d = host.model_dirs(folder)[0]
    d.mkdir(parents=True, exist_ok=True)
    if not (d / name).exists():
        torch.save(state, d / name)


@pytest.fixture
def models():
    """Real weights where ../shared has them, random official-format checkpoints otherwise."""
    if SHARED_MODELS.is_dir():
        registry.link_existing(SHARED_MODELS)
    torch.manual_seed(0)
    from remaster.models import modnet, rvm
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.GFPGAN import GFPGAN
    from test_rife import official_state_dict

    net = modnet.MODNet()
    _place("matting", "modnet_photographic_portrait_matting.ckpt", {"module." + k: v for k, v in net.state_dict().items()})
    _place("matting", "rvm_mobilenetv3.pth", rvm.RVM("mobilenetv3").state_dict())
    _place("facerestore_models", "GFPGANv1.4.pth", {"params_ema": GFPGAN().state_dict()})
    _place("upscale_models", "RealESRGAN_x4plus.pth", {"params_ema": ESRGAN(num_blocks=2).state_dict()})
    _place("upscale_models", "realesr-general-x4v3.pth", {"params": Compact(num_conv=4, upscale=4).state_dict()})
    _place("rife", "rife425.pth", official_state_dict("4.25"))
    return host.model_dirs("upscale_models")[0].parent


def run(name: str, src: Path, out: Path, *sets: str) -> None:
    code = main(["run", str(ROOT / "workflows" / "api" / f"{name}.json"), "--input", str(src), "--output", str(out),
                 "--set", "Save Video.speed=ultrafast", *sum((["--set", s] for s in sets), [])])
    assert code == 0
    assert out.is_file()


def probe(path: Path) -> tuple:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = sum(1 for _ in c.decode(v))
        return frames, v.width, v.height, bool(c.streams.audio)


def test_fast_and_enhance(models, tmp_path, clips_dir):
    src = clip("talking_head_512_30_audio.mp4")
    for name in ("fast", "enhance"):
        out = tmp_path / f"{name}.mp4"
        run(name, src, out, "Load Video.end_time=0.5", "Load Video.max_side=96")
        assert probe(out) == (15, 192, 192, True), name


def test_quality(models, tmp_path, clips_dir):
    src = clip("talking_head_512_30_audio.mp4")
    out = tmp_path / "quality.mp4"
    run("quality", src, out, "Load Video.end_time=0.4", "Load Video.max_side=64")
    frames, w, h, audio = probe(out)
    assert (w, h, audio) == (256, 256, True)
    assert frames == 12  # 0.4 s at 30 fps (60 fps is the premium workflow's)


def test_sam2_points_of_every_workflow_lie_in_the_clip_it_opens():
    """A template's SAM2 points are pixels of the clip it opens (the shipped example), as loaded
    by its Load Video: a point outside the frame stops the workflow at its first run."""
    import json

    from nodes.masks import widget_prompt
    from remaster.media.decode import open_video
    from remaster.stages.masks import parse_prompts

    seen = 0
    for path in sorted((ROOT / "workflows" / "api").glob("*.json")):
        graph = json.loads(path.read_text())
        for node in graph.values():
            if node["class_type"] != "RemasterSAM2VideoMask":
                continue
            load = graph[node["inputs"]["frames"][0]]
            assert load["class_type"] == "RemasterLoadVideo", path.name
            info = open_video(ROOT / "assets" / load["inputs"]["video"], max_side=load["inputs"]["max_side"]).info
            i = node["inputs"]
            prompt = widget_prompt(i["frame"], i["positive_points"], i["negative_points"], i["box"])
            parse_prompts(prompt, info.width, info.height, info.frame_count)  # raises naming the point
            seen += 1
    assert seen >= 1
