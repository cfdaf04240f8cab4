"""Masking throughput at 720p on this machine, and memory on a long clip.

    python bench/masks.py [--shared ../shared] [--frames 12] [--long]

* steady-state frames/s (a warm-up pass first) of each masking model on 1280x720 frames of ``juggle_720p24.mp4`` through the stream
  stages (decode excluded: frames are decoded once up front): RVM MobileNetV3 (real weights from
  ../shared), RVM ResNet-50, MODNet (reference size 512) and SAM2.1 tiny/small (random weights with
  the real architectures: speed does not depend on the weights).
* ``--long``: peak RSS while RVM runs over the whole clip (247 frames, decoded lazily);
  ``--sam2-frames N``: SAM2.1-tiny's resident memory frame by frame (flat = bounded memory bank).

The device and dtype are the ones the stages pick (host.torch_device(); bf16 on CPUs with fast
bf16, fp16/bf16 on CUDA).
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from remaster import host  # noqa: E402
from remaster.media.decode import open_video  # noqa: E402
from remaster.stages import masks, matting  # noqa: E402
from remaster.stream import from_tensor  # noqa: E402


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _timed(stream, n) -> float:
    t = time.perf_counter()
    for _ in stream.chunks(n):
        pass
    return n / (time.perf_counter() - t)


def _sam2_folder(models: Path, name: str, **backbone) -> str:
    from transformers import Sam2VideoConfig, Sam2VideoModel

    folder = models / "sam2" / name
    if not (folder / "config.json").exists():
        cfg = Sam2VideoConfig()
        if backbone:
            cfg = Sam2VideoConfig(vision_config=dict(model_type="sam2_vision_model",
                                                     backbone_config=dict(model_type="sam2_hiera_det_model", **backbone)))
        model = Sam2VideoModel(cfg)
        with torch.no_grad():
            model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(10.0)
        model.save_pretrained(str(folder))
    return str(folder)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--long", action="store_true", help="peak RSS of RVM over the whole clip")
    ap.add_argument("--long-side", type=int, default=0, help="longer side for --long (0 = 1280, the source)")
    ap.add_argument("--sam2-frames", type=int, default=0, help="SAM2.1-tiny RSS over this many frames (0 = skip)")
    args = ap.parse_args()
    clip = Path(args.shared) / "clips" / "juggle_720p24.mp4"
    models = Path(tempfile.mkdtemp(prefix="remaster_bench_"))
    try:
        run(args, clip, models)
    finally:
        shutil.rmtree(models, ignore_errors=True)


def run(args, clip: Path, models: Path) -> None:
    host.set_dirs(models_dir=str(models))
    (models / "matting").mkdir(parents=True)
    (models / "matting" / "rvm_mobilenetv3.pth").symlink_to(Path(args.shared) / "models/matting/rvm_mobilenetv3.pth")
    from remaster.models import modnet, rvm

    torch.save(rvm.RVM("resnet50").state_dict(), models / "matting" / "rvm_resnet50.pth")
    torch.save({"module." + k: v for k, v in modnet.MODNet().state_dict().items()},
               models / "matting" / "modnet_photographic_portrait_matting.ckpt")

    dev = host.torch_device()
    print(f"device {dev}, torch threads {torch.get_num_threads()}, cpu fast bf16 {host.cpu_has_fast_bf16()}, "
          f"matting dtype {matting.compute_dtype(dev)}, SAM2 dtype {masks.sam2_dtype(dev)}")
    n = args.frames
    frames = open_video(clip).read(0, n).frames
    src = from_tensor(frames, fps=24)
    print(f"input: {n} frames {frames.shape[2]}x{frames.shape[1]}")
    for label, make in [
        ("RVM MobileNetV3 (auto ratio 0.5)", lambda s: matting.rvm_matte(s, "rvm_mobilenetv3.pth", reset_at_cuts=False)),
        ("RVM ResNet-50 (auto ratio 0.5)", lambda s: matting.rvm_matte(s, "rvm_resnet50.pth", reset_at_cuts=False)),
        ("MODNet (ref 512 -> 512x896)", lambda s: matting.modnet_matte(s, "modnet_photographic_portrait_matting.ckpt")),
    ]:
        _timed(make(src), n)  # load, and let oneDNN build its kernels for these shapes
        fps = _timed(make(src), n)
        print(f"{label:40s} {fps:6.2f} frames/s")
    prompt = [{"frame": 0, "points": [[700, 300, 1]]}]
    for label, folder in [
        ("SAM2.1 tiny (1024x1024 input)", _sam2_folder(models, "sam2.1-hiera-tiny")),
        ("SAM2.1 small (1024x1024 input)", _sam2_folder(models, "sam2.1-hiera-small", blocks_per_stage=[1, 2, 11, 2],
                                                         global_attention_blocks=[7, 10, 13])),
    ]:
        m = max(3, n // 3)
        s = masks.sam2_mask(from_tensor(frames[:m], fps=24), folder, prompt)
        _timed(masks.sam2_mask(from_tensor(frames[:2], fps=24), folder, prompt), 2)  # load, warm up
        fps = _timed(s, m)
        print(f"{label:40s} {fps:6.2f} frames/s ({m} frames)")

    if args.long:
        before = _rss_mb()
        long_src = open_video(clip, max_side=args.long_side)
        t = time.perf_counter()
        count = 0
        peak = before
        for ch in matting.rvm_matte(long_src, "rvm_mobilenetv3.pth").chunks():
            count += len(ch)
            peak = max(peak, _rss_mb())
        dt = time.perf_counter() - t
        print(f"RVM over the whole clip: {count} frames {long_src.info.width}x{long_src.info.height} in {dt:.0f} s ({count / dt:.2f} frames/s incl. decode), "
              f"RSS {before:.0f} MB before, peak {peak:.0f} MB")
    if args.sam2_frames:
        k = args.sam2_frames
        sam_src = from_tensor(frames[:1].expand(k, -1, -1, -1).contiguous(), fps=24)
        rss = [_rss_mb() for _ in masks.sam2_mask(sam_src, _sam2_folder(models, "sam2.1-hiera-tiny"), prompt).chunks(1)]
        print("SAM2.1 tiny RSS (MB) frame by frame: " + ", ".join(f"{r:.0f}" for r in rss))
    print(f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
