"""One pass through the graph: a chain's wall time against the sum of its stages run alone, and
peak memory of temporal stages on 10 s vs 60 s of 1080p.

    python bench/onepass.py chains [--clip PATH] [--seconds 2] [--root REPO]
    python bench/onepass.py rss
    python bench/onepass.py ranges [--seconds 6]

``chains`` runs the shipped ``enhance`` workflow and ``quality`` without Face Restore (no GFPGAN
weights here) on a real clip, weights from ../shared/models. "Alone" means each stage fed from
frames already in memory (its input rendered once by the previous stage alone), plus decoding
alone; the chain is the same stages pulled lazily from the decoder. Ratio = chain / sum (1.0: no
work repeated). The chain is timed on its second run (models already loaded, as they are for the
stages alone; ``--cold`` times the first). ``--root`` runs another checkout of the pack (e.g. the commit before the one-pass
stream) for the "before" figure. Encoding is left out of both.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def _setup(root: Path) -> None:
    sys.path.insert(0, str(root))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _prompt(root: Path, name: str, clip: str, seconds: float, max_side: int, drop: tuple = ()) -> dict:
    from remaster.headless import runner

    prompt = runner.load_workflow(root / "workflows" / "api" / f"{name}.json")
    for nid in [k for k, v in prompt.items() if v["class_type"] in drop]:
        src = prompt[nid]["inputs"]["frames"]
        for v in prompt.values():
            for k, val in v.get("inputs", {}).items():
                if val == [nid, 0]:
                    v["inputs"][k] = src
        del prompt[nid]
    for v in prompt.values():
        if v["class_type"] == "RemasterLoadVideo":
            v["inputs"].update(video=clip, end_time=float(seconds), max_side=int(max_side), resize="max_side")
    return prompt


def _final_stream(prompt: dict):
    from remaster.headless import runner
    from remaster.headless.cli import node_mappings

    maps = dict(node_mappings())
    got = {}

    class Capture(maps["RemasterSaveVideo"]):
        def save(self, frames, **_):
            got["s"] = frames
            return {"ui": {}, "result": ("",)}

    maps["RemasterSaveVideo"] = Capture
    runner.run(prompt, maps)
    return got["s"]


CPU = {"s": 0.0}  # CPU seconds of the last drain (all threads): steadier than wall time on a busy machine


def _drain(stream) -> tuple:
    t0, c0 = time.perf_counter(), time.process_time()
    frames, masks = [], []
    for ch in stream.chunks():
        frames.append(ch.frames)
        if ch.mask is not None:
            masks.append(ch.mask)
    CPU["s"] = time.process_time() - c0
    return time.perf_counter() - t0, frames, masks


def _alone(stage, frames, masks, cuts):
    """``stage`` re-rooted on its input held in memory."""
    import torch

    from remaster.stream import FrameStream, from_tensor

    up = stage.upstream
    mem = from_tensor(torch.cat(frames), up.info.fps, torch.cat(masks) if masks else None)
    mem.info = up.info.with_(scene_cuts=tuple(cuts)) if up.info.scene_cuts is None else up.info
    try:
        s = FrameStream(stage.info, stage._producer, stage.fingerprint + "-alone", upstream=mem,
                        label=stage.label, temporal=getattr(stage, "temporal", None))
    except TypeError:  # a checkout before declared temporal context
        s = FrameStream(stage.info, stage._producer, stage.fingerprint + "-alone", upstream=mem, label=stage.label)
    if stage.frames_source is not stage:
        s.frames_source = mem
    return s


def chains(args) -> dict:
    root = Path(args.root).resolve()
    _setup(root)
    from remaster import host
    from remaster.models import registry
    from remaster.analysis import scenes

    tmp = Path(tempfile.mkdtemp(prefix="onepass-bench-"))
    host.set_dirs(models_dir=str(tmp / "models"), temp_dir=str(tmp / "temp"), output_dir=str(tmp / "out"))
    registry.link_existing(HERE.parent / "shared" / "models")
    results = {}
    for name, side, drop in (("enhance", args.enhance_side, ()), ("quality", args.quality_side, ("RemasterFaceRestore",))):
        if args.only and name not in args.only:
            continue
        final = _final_stream(_prompt(root, name, args.clip, args.seconds, side, drop))
        chain = []
        s = final
        while s.upstream is not None:
            chain.append(s)
            s = s.upstream
        source = s
        chain.reverse()
        t_chain, out, _ = _drain(final)
        cpu_chain = CPU["s"]
        print(name, "chain", json.dumps({"chain_s": round(t_chain, 2), "chain_cpu_s": round(cpu_chain, 2)}), flush=True)
        cold = {"chain_s": round(t_chain, 2), "chain_cpu_s": round(cpu_chain, 2)}
        if args.warm:  # models loaded and first-call set-up done: time the chain again, as the stages alone are
            scenes._cache.clear()
            t_chain, out, _ = _drain(final)
            cpu_chain = CPU["s"]
            print(name, "chain, warm", json.dumps({"chain_s": round(t_chain, 2), "chain_cpu_s": round(cpu_chain, 2)}),
                  flush=True)
        if args.save_dir:  # every 10th output frame, to compare two checkouts (``compare``)
            import torch

            allf = torch.cat(out)
            Path(args.save_dir).mkdir(parents=True, exist_ok=True)
            torch.save(allf[::10].clone(), Path(args.save_dir) / f"{name}-{root.name}.pt")
        t_decode, frames, masks = _drain(source)
        cpu = {"decode": CPU["s"]}
        cuts = scenes.detect_scene_cuts(source)
        per = {"decode": round(t_decode, 2)}
        for st in chain:
            t, frames, new_masks = _drain(_alone(st, frames, masks, cuts))
            masks = new_masks
            per[st.label] = round(t, 2) + per.get(st.label, 0)
            cpu[st.label] = CPU["s"] + cpu.get(st.label, 0.0)
        total, cpu_total = sum(per.values()), sum(cpu.values())
        results[name] = {"frames_out": sum(len(f) for f in out), "chain_s": round(t_chain, 2),
                         "sum_alone_s": round(total, 2), "ratio": round(t_chain / total, 3),
                         "chain_cpu_s": round(cpu_chain, 2), "sum_alone_cpu_s": round(cpu_total, 2),
                         "cpu_ratio": round(cpu_chain / max(cpu_total, 1e-9), 3), "stages": per,
                         "stages_cpu_s": {k: round(v, 2) for k, v in cpu.items()}, "cold_chain": cold}
        print(name, json.dumps(results[name]), flush=True)
    return results


def _make_clip(path: Path, seconds: int, fps: int = 10) -> Path:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    f"testsrc2=size=1920x1080:rate={fps}:duration={seconds}", "-c:v", "libx264", "-preset",
                    "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def rss_job(src: str, out: str) -> None:
    """Load → Auto Colour → Film look (grain, temporal median: a centred window; not replayable)
    → Deflicker (look-ahead, frames held) → Save."""
    _setup(HERE)
    from remaster.media.decode import open_video
    from remaster.media.encode import save_video
    from remaster.stages import colour, deflicker, film

    s = colour.auto_colour(open_video(src))
    s = film.film_look(s, grain_amount=0.02, median_radius=1)
    s = deflicker.deflicker(s, window_seconds=1.0)
    t0 = time.perf_counter()
    save_video(s, output_path=out, speed="ultrafast")
    print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "seconds": time.perf_counter() - t0, "cpu_s": time.process_time(),
                      "frames": s.info.frame_count}))


def rss(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="onepass-rss-"))
    res = {}
    for sec in (10, 60):
        src = _make_clip(tmp / f"{sec}.mp4", sec, args.fps)
        env = dict(os.environ, REMASTER_CHUNK_FRAMES="8", OMP_WAIT_POLICY="PASSIVE", REMASTER_TEMP_DIR=str(tmp))
        r = subprocess.run([sys.executable, __file__, "rss-job", str(src), str(tmp / f"out{sec}.mp4")],
                           capture_output=True, text=True, env=env, check=True)
        res[f"{sec}s"] = json.loads(r.stdout.strip().splitlines()[-1])
        print(sec, res[f"{sec}s"], flush=True)
    res["ratio"] = round(res["60s"]["peak_mb"] / res["10s"]["peak_mb"], 3)
    print(json.dumps(res))
    return res


def ranges(args) -> dict:
    """Range render vs slice of the full render for the recurrent stages on a real clip (RVM real
    weights, mask smoothing after it): the error a mid-shot range start leaves after the warm-up."""
    _setup(HERE)
    from remaster import host
    from remaster.media.decode import open_video
    from remaster.models import registry
    from remaster.stages import mask_tools, matting

    tmp = Path(tempfile.mkdtemp(prefix="onepass-ranges-"))
    host.set_dirs(models_dir=str(tmp / "models"), temp_dir=str(tmp / "temp"))
    registry.link_existing(HERE.parent / "shared" / "models")
    src = open_video(args.clip, end_time=args.seconds, max_side=args.quality_side)
    rvm = matting.rvm_matte(src)
    smooth = mask_tools.smooth_stream(rvm, 0.6, 0.3)
    res = {}
    for name, s in (("rvm", rvm), ("rvm+mask_smooth", smooth)):
        full = s.read()
        n = full.frames.shape[0]
        worst = 0.0
        for a in range(s.temporal.behind + 1, n - 5, 17):
            part = s.read(a, a + 5)
            worst = max(worst, float((part.mask - full.mask[a:a + 5]).abs().max()))
        res[name] = {"frames": n, "warm_up": s.temporal.behind, "max_abs_mask_error": worst}
        print(name, res[name], flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["chains", "rss", "rss-job", "ranges"])
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--clip", default=str(HERE.parent / "shared" / "clips" / "talking_head_512_30_audio.mp4"))
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--enhance-side", type=int, default=384)
    ap.add_argument("--quality-side", type=int, default=160)
    ap.add_argument("--root", default=str(HERE))
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--only", action="append", default=[], help="enhance / quality (repeatable)")
    ap.add_argument("--save-dir", default="/tmp/onepass-bench-out")
    ap.add_argument("--cold", dest="warm", action="store_false",
                    help="time the chain's first run only (model loading and first-call set-up included)")
    args = ap.parse_args()
    if args.what == "chains":
        chains(args)
    elif args.what == "rss":
        rss(args)
    elif args.what == "ranges":
        ranges(args)
    else:
        rss_job(*args.paths)


if __name__ == "__main__":
    main()
