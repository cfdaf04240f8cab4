"""Fine-tuning a compact Real-ESRGAN for one's own material, with or without the temporal module.

* Start: realesr-general-x4v3 (or any Compact file), derived exactly to x1 / x2 when asked.
* Data: a pool of short sequences (:mod:`remaster.train.pairs`) from clean clips damaged by a
  degradation (the film damage simulator, or the simple one), or from user damaged/clean pairs.
* Loss per frame: Charbonnier distance to the clean target, plus ``temporal_weight`` times the
  short-term temporal loss of Lai et al. 2018 (difference to the previous output warped along the
  clean target's flow, where that flow is trusted). Both variants get the same loss.
* ``freeze_head`` (the default on a CPU) trains only the layers after the fusion point (and the
  temporal module): a fine-tune of minutes on a CPU. On a GPU the whole body trains, in bf16/fp16
  autocast.
* Output: ``<name>.safetensors`` in the upscale_models folder (the Upscale node loads it: a plain
  Compact file for the frame-wise variant, the pack's own loader for the temporal one), and in
  ``<output>/train/<name>/``: ``state.pt`` (model + optimiser + step, to resume), ``log.jsonl``,
  ``loss.png``. Files are written to a temporary name and renamed.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .. import host
from ..models import registry
from ..models import temporal_compact as tcm
from ..analysis import flow as flowlib
from ..stages.upscale.temporal import TemporalRunner, autocast_dtype
from . import pairs as P

log = logging.getLogger("remaster.train")


class TrainError(ValueError):
    pass


@dataclass
class TrainConfig:
    name: str
    clips: list = field(default_factory=list)  # clean clips (paths) damaged by `degradation`
    pairs: list = field(default_factory=list)  # (damaged path, clean path)
    base: str = "realesr-general-x4v3"  # starting weights (a compact Real-ESRGAN in upscale_models)
    scale: int = 1  # 1, 2 or 4: derived exactly from the x4 weights
    temporal: bool = True  # add the recurrent, flow-warped fusion (else frame by frame)
    degradation: str = "simple"  # how clean clips are damaged into training inputs
    steps: int = 200
    batch: int = 2
    seq_len: int = 3  # frames per training sequence
    patch: int = 64  # crop side in pixels
    samples: int = 48
    lr: float = 2e-4
    new_module_lr_scale: float = 5.0
    temporal_weight: float = 0.2
    freeze_head: Optional[bool] = None  # None: True on a CPU, False on a GPU
    max_side: int = 640
    max_frames: int = 90
    save_every: int = 50
    seed: int = 0
    precision: str = "auto"
    resume: bool = True

    def check(self) -> None:
        if not self.name or any(c in self.name for c in "/\\") or self.name.startswith("."):
            raise TrainError(f"name must be a plain file stem (no folders), got '{self.name}'")
        if not self.clips and not self.pairs:
            raise TrainError("no training data: give clean clips (damaged by the simulator) or damaged/clean pairs")
        if self.scale not in (1, 2, 4):
            raise TrainError(f"scale must be 1, 2 or 4, got {self.scale}")
        for k, lo, hi in (("steps", 1, 10**6), ("batch", 1, 256), ("seq_len", 2, 16), ("patch", 16, 1024),
                          ("samples", 1, 10**5)):
            v = getattr(self, k)
            if not lo <= v <= hi:
                raise TrainError(f"{k} must be within {lo}..{hi}, got {v}")


# ---------------------------------------------------------------------------------------------
def base_state_dict(base: str, scale: int) -> dict:
    path = registry.resolve(base, "upscale_models")
    sd = registry.unwrap_state_dict(registry.load_state_dict(path))
    sd = {k: v.float() for k, v in sd.items() if not k.startswith("temporal.")}
    try:
        return tcm.derive_scale(sd, scale)
    except (KeyError, ValueError) as exc:
        raise TrainError(f"base model '{base}' is not a compact Real-ESRGAN that can be made x{scale} ({exc}); "
                         "use realesr-general-x4v3") from exc


def build_model(sd: dict, temporal: bool) -> torch.nn.Module:
    compact = tcm.compact_from_state_dict(sd)
    model = tcm.TemporalCompact(compact) if temporal else tcm.FrameWise(compact)
    if temporal and any(k.startswith("temporal.") for k in sd):
        model.load_state_dict(sd)
    return model


def read_clip(path: str, max_side: int, max_frames: int) -> torch.Tensor:
    from ..media.decode import open_video

    s = open_video(path, max_side=max_side)
    return s.read(0, min(max_frames, s.info.frame_count), max_frames=max_frames).frames


def make_pool(cfg: TrainConfig, degrade: Optional[P.Degradation] = None) -> list:
    """The training sequences. ``cfg.clips`` / ``cfg.pairs`` hold paths, or frames already in
    memory (``[N,H,W,3]`` tensors, e.g. from a node's streams)."""
    degrade = degrade or P.degradation(cfg.degradation)
    srcs = len(cfg.clips) + len(cfg.pairs)
    per = max(1, math.ceil(cfg.samples / srcs))

    def frames_of(c, side):
        return c[: cfg.max_frames] if torch.is_tensor(c) else read_clip(c, side, cfg.max_frames)

    pool = []
    for k, c in enumerate(cfg.clips):
        pool += P.sample_from_clip(frames_of(c, cfg.max_side), cfg.scale, degrade, per, cfg.seq_len, cfg.patch, cfg.seed + k)
    for k, (d, c) in enumerate(cfg.pairs):
        pool += P.sample_from_pairs(frames_of(d, 0), frames_of(c, 0), per, cfg.seq_len, cfg.patch, cfg.seed + 1000 + k)
    return pool


def _charbonnier(a, b, eps=1e-3):
    return torch.sqrt((a - b) ** 2 + eps * eps).mean()


def sequence_loss(model, s: P.Sample, temporal: bool, temporal_weight: float, freeze_head: bool):
    """Loss over a batch of sequences ``s`` (tensors with a leading batch dim)."""
    T = s.inp.shape[1]
    prev_h = prev_y = None
    rec = tem = 0.0
    for t in range(T):
        x = s.inp[:, t]
        if freeze_head:
            with torch.no_grad():
                h = model.head(x)
        else:
            h = model.head(x)
        warped = conf = None
        if temporal and prev_h is not None:
            warped, conf = flowlib.backward_warp(prev_h, s.flow[:, t]), s.conf[:, t]
        y, prev_h = model.tail(h, x, warped, conf)
        rec = rec + _charbonnier(y.float(), s.target[:, t])
        if prev_y is not None and temporal_weight > 0:
            w = flowlib.backward_warp(prev_y.float(), s.tflow[:, t])
            tem = tem + (s.tconf[:, t] * (y.float() - w).abs()).sum() / (3 * s.tconf[:, t].sum() + 1e-6)
        prev_y = y
    rec = rec / T
    tem = tem / max(T - 1, 1)
    total = rec + temporal_weight * tem
    return total, float(rec.detach()), float(tem.detach()) if torch.is_tensor(tem) else float(tem)


# ---------------------------------------------------------------------------------------------
def loss_curve_png(rows: list, path: Path, title: str = "") -> Path:
    """A small loss-curve image (training loss per step, smoothed) drawn with OpenCV."""
    W, H, m = 640, 360, 48
    img = np.full((H, W, 3), 255, np.uint8)
    steps = np.array([r["step"] for r in rows if "loss" in r], float)
    loss = np.array([r["loss"] for r in rows if "loss" in r], float)
    cv2.rectangle(img, (m, m // 2), (W - m // 2, H - m), (0, 0, 0), 1)
    cv2.putText(img, title or "training loss", (m, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if len(loss) >= 2:
        k = max(1, len(loss) // 20)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ss = steps[k - 1 :]
        lo, hi = float(loss.min()), float(loss.max())
        hi = hi if hi > lo else lo + 1e-6

        def pt(s, v):
            x = m + (s - steps[0]) / max(steps[-1] - steps[0], 1) * (W - 1.5 * m)
            y = (H - m) - (v - lo) / (hi - lo) * (H - 1.5 * m)
            return int(x), int(y)

        cv2.polylines(img, [np.array([pt(s, v) for s, v in zip(steps, loss)], np.int32)], False, (200, 200, 200), 1, cv2.LINE_AA)
        cv2.polylines(img, [np.array([pt(s, v) for s, v in zip(ss, smooth)], np.int32)], False, (200, 60, 0), 2, cv2.LINE_AA)
        for v in (lo, hi):
            cv2.putText(img, f"{v:.4f}", (2, pt(steps[0], v)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"step {int(steps[0])}", (m, H - m + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"step {int(steps[-1])}", (W - 3 * m, H - m + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    tmp = path.with_name(path.stem + ".part.png")
    cv2.imwrite(str(tmp), img[..., ::-1])
    tmp.replace(path)
    return path


def run_dir(name: str) -> Path:
    d = host.output_dir() / "train" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def model_path(name: str) -> Path:
    d = host.model_dirs("upscale_models")[0]
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{name}.safetensors"


def train(cfg: TrainConfig, degrade: Optional[P.Degradation] = None,
          on_step: Optional[Callable[[dict], None]] = None) -> dict:
    """Train (or resume) as configured. Returns a summary: checkpoint path, steps, losses."""
    cfg.check()
    device = host.torch_device()
    freeze = cfg.freeze_head if cfg.freeze_head is not None else device.type == "cpu"
    torch.manual_seed(cfg.seed)
    rdir = run_dir(cfg.name)
    state_path, log_path = rdir / "state.pt", rdir / "log.jsonl"
    model = build_model(base_state_dict(cfg.base, cfg.scale), cfg.temporal).to(device)
    if freeze:
        for p in model.body[: model.fuse_at + 1].parameters():
            p.requires_grad_(False)
    # the new temporal module starts from zero and learns at new_module_lr_scale x the fine-tune rate
    new = [p for n, p in model.named_parameters() if n.startswith("temporal.")]
    old = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("temporal.")]
    groups = [{"params": old, "lr": cfg.lr}] + ([{"params": new, "lr": cfg.lr * cfg.new_module_lr_scale}] if new else [])
    opt = torch.optim.Adam(groups, betas=(0.9, 0.99))
    step, rows = 0, []
    if cfg.resume and state_path.is_file():
        st = torch.load(str(state_path), map_location="cpu", weights_only=True)
        if st.get("config", {}).get("temporal") != cfg.temporal or st.get("config", {}).get("scale") != cfg.scale:
            raise TrainError(f"{state_path} is a run with other settings (temporal/scale); pick another name or resume=False")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        step = int(st["step"])
        if log_path.is_file():
            rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        log.info("resuming %s at step %d", cfg.name, step)
    elif log_path.is_file():
        log_path.unlink()
    amp = autocast_dtype(device, cfg.precision) if device.type == "cuda" else None
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    pool = make_pool(cfg, degrade)
    rng = np.random.default_rng(cfg.seed + step)
    model.train()
    t0 = time.perf_counter()
    progress = host.Progress(cfg.steps, f"train {cfg.name}")
    progress.done = step

    def save(final: bool = False):
        tcm.save(model, model_path(cfg.name), {"base": cfg.base, "scale": cfg.scale, "steps": step})
        tmp = state_path.with_name("state.part")
        conf = {k: v for k, v in asdict(cfg).items() if k not in ("clips", "pairs")}
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "config": conf}, str(tmp))
        tmp.replace(state_path)
        loss_curve_png(rows, rdir / "loss.png", f"{cfg.name}: loss per step")

    with log_path.open("a") as lf:
        while step < cfg.steps:
            batch = P.collate([pool[i] for i in rng.integers(0, len(pool), cfg.batch)])
            batch = P.Sample(*(getattr(batch, f).to(device) for f in P.Sample.__dataclass_fields__))
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                loss, rec, tem = sequence_loss(model, batch, cfg.temporal, cfg.temporal_weight, freeze)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            step += 1
            row = {"step": step, "loss": float(loss.detach()), "reconstruction": rec, "temporal": tem,
                   "seconds": round(time.perf_counter() - t0, 2)}
            rows.append(row)
            lf.write(json.dumps(row) + "\n")
            lf.flush()
            if on_step:
                on_step(row)
            progress.update(1)
            if step % cfg.save_every == 0 or step == cfg.steps:
                save()
    model.eval()
    first = [r["loss"] for r in rows[: max(1, len(rows) // 10)]]
    last = [r["loss"] for r in rows[-max(1, len(rows) // 10):]]
    return {"checkpoint": str(model_path(cfg.name)), "run_dir": str(rdir), "steps": step,
            "loss_first": float(np.mean(first)) if first else None, "loss_last": float(np.mean(last)) if last else None,
            "device": str(device), "freeze_head": freeze}


# ---------------------------------------------------------------------------------------------
def evaluate(model: torch.nn.Module, damaged: torch.Tensor, clean: torch.Tensor,
             device: Optional[torch.device] = None) -> dict:
    """Run ``model`` (temporal or frame-wise) over ``damaged`` ``[N,h,w,3]`` in order; PSNR against
    ``clean`` and the warping error (measured on the clean clip's motion). Returns the outputs too."""
    from ..analysis.flow import warping_error

    runner = TemporalRunner(model, device or torch.device("cpu"), "fp32")
    outs = torch.stack([runner.step(damaged[i]).cpu() for i in range(damaged.shape[0])])
    return {"psnr": P.psnr(outs, clean), "warping_error": warping_error(outs, clean), "frames": outs}


def compare_on_clip(cfg: TrainConfig, clip: str, frames: int = 12, degrade: Optional[P.Degradation] = None,
                    max_side: int = 0, return_frames: bool = False) -> dict:
    """Held-out check: damage ``frames`` frames of ``clip`` the way training did (another seed) and
    score the starting weights and the trained checkpoint on them (PSNR, warping error). The clip
    is read at ``max_side`` (0 = the training size)."""
    degrade = degrade or P.degradation(cfg.degradation)
    clean = read_clip(clip, max_side or cfg.max_side, frames)
    h, w = (clean.shape[1] // cfg.scale) * cfg.scale, (clean.shape[2] // cfg.scale) * cfg.scale
    clean = clean[:, :h, :w].contiguous()
    damaged = degrade(P.downscale(clean, cfg.scale), 0, cfg.seed + 99991).clamp(0, 1)
    start = build_model(base_state_dict(cfg.base, cfg.scale), False)
    trained = tcm.load(model_path(cfg.name)) if cfg.temporal else build_model(
        registry.unwrap_state_dict(registry.load_state_dict(model_path(cfg.name))), False)
    res = {"clip": clip, "frames": int(clean.shape[0]), "damaged_psnr": P.psnr(damaged if cfg.scale == 1 else
           F.interpolate(damaged.permute(0, 3, 1, 2), scale_factor=cfg.scale, mode="bicubic").clamp(0, 1).permute(0, 2, 3, 1), clean)}
    for key, m in (("start", start), ("trained", trained)):
        r = evaluate(m, damaged, clean)
        res[key] = {"psnr": r["psnr"], "warping_error": r["warping_error"]}
        if return_frames:
            res[key]["frames"] = r["frames"]
    if return_frames:
        res["damaged_frames"], res["clean_frames"] = damaged, clean
    return res
