"""Every shipped workflow (whatever is in workflows/api/) runs with every stage instrumented:

* each stage processes each frame exactly once: no stream that costs more than decoding is
  iterated twice by the same pull (a stage pass starts at most one pass of each stream it reads,
  and an output node pulls its stream once);
* a range render of the stream each output node saves equals the slice of its full render
  (bit-exact where every stage is frame-wise or windowed, within ``RECURRENT_ATOL`` otherwise).

Real weights from ../shared/models where they exist, random-weight checkpoints in the official
format otherwise (the fixture of test_shipped_workflows), tiny clips.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from conftest import clip
from remaster.headless import runner
from remaster.media.cache import keep_shared
from remaster.stream import FrameStream

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "core"))
sys.path.insert(0, str(ROOT / "tests" / "stages"))
from test_shipped_workflows import models  # noqa: E402,F401  (fixture)

# workflows with ComfyUI core nodes (text-to-image backdrops) run only in a real ComfyUI
WORKFLOWS = [p for p in sorted((ROOT / "workflows" / "api").glob("*.json"))
             if '"CheckpointLoaderSimple"' not in p.read_text()]
RECURRENT_ATOL = 2e-3  # recurrent stages warmed up on their declared frames (docs/onepass.md)
CACHE_ATOL = 1e-4  # a kept (fan-out) stream is served from the 14-bit lossless cache

# settings that make any shipped workflow tiny, by node type (unknown types keep their settings)
TINY = {
    "RemasterLoadVideo": {"end_time": 0.5, "max_side": 64, "resize": "max_side", "start_time": 0.0},
    "RemasterInpaintKeyframes": {"diffusers_model": "tiny-inpaint", "steps": 4, "resolution": 64, "candidates": 2},
    "RemasterKeyframes": {"min_group": 3},
    "RemasterFaceRestore": {"detector": "retinaface_mobilenet0.25.pth"},
}


class Instrument:
    """Counts, per stream, the passes started, by whom, and the frames produced."""

    def __init__(self) -> None:
        self.passes: Counter = Counter()
        self.edges: Counter = Counter()
        self.frames: Counter = Counter()
        self.streams: dict = {}
        self.stack: list = []

    def install(self) -> callable:
        """Wrap the stream's driver: it runs only when a stage's producer really computes (a pass
        served from a kept stream's cache does not count)."""
        orig = FrameStream._drive
        inst = self

        def drive(stream, gen, a, b, size, full):
            caller = inst.stack[-1] if inst.stack else None
            key = id(stream)
            inst.streams[key] = stream
            inst.passes[key] += 1
            inst.edges[(caller, key)] += 1
            it = orig(stream, gen, a, b, size, full)
            while True:
                inst.stack.append(key)
                try:
                    ch = next(it)
                except StopIteration:
                    return
                finally:
                    inst.stack.pop()
                inst.frames[key] += len(ch)
                yield ch

        FrameStream._drive = drive

        def uninstall():
            FrameStream._drive = orig

        return uninstall

    def costly(self) -> list:
        return [k for k, s in self.streams.items() if not s.replayable]

    def report(self) -> dict:
        return {f"{self.streams[k].label}#{k % 9973}": (self.passes[k], self.frames[k]) for k in self.streams}


def tiny_prompt(path: Path, video: Path) -> dict:
    prompt = runner.load_workflow(path)
    for node in prompt.values():
        for k, v in TINY.get(node["class_type"], {}).items():
            if k in node.get("inputs", {}):
                node["inputs"][k] = v
        if node["class_type"] == "RemasterLoadVideo":
            node["inputs"]["video"] = str(video)
    return prompt


def capture_mappings(saved: dict) -> dict:
    from remaster.headless.cli import node_mappings

    maps = dict(node_mappings())
    real = maps["RemasterSaveVideo"]

    class Capture(real):
        def save(self, frames, unique_id=None, prompt=None, **_):
            keep_shared(frames, prompt)  # as the real Save node does
            n = 0
            chunks = []
            for ch in frames.chunks():
                chunks.append(ch.frames)
                n += len(ch)
            saved[unique_id] = (frames, torch.cat(chunks) if chunks else None, n)
            return {"ui": {}, "result": ("",)}

    maps["RemasterSaveVideo"] = Capture
    return maps


def prepare(name: str) -> None:
    if name == "inpainting":
        from remaster import host
        from tiny_sd import build_tiny_inpaint_pipeline

        build_tiny_inpaint_pipeline(host.model_dirs("diffusers")[0] / "tiny-inpaint")


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_every_stage_once_and_ranges_equal_slices(path, models, clips_dir):  # noqa: F811  (pytest fixture)
    video = clip("talking_head_512_30_audio.mp4")
    prepare(path.stem)
    prompt = tiny_prompt(path, video)
    saved: dict = {}
    inst = Instrument()
    uninstall = inst.install()
    try:
        runner.run(prompt, capture_mappings(saved))
    finally:
        uninstall()
    assert saved, "the workflow saved nothing"

    print(path.stem, inst.report())
    # one pull per output node reaches each costly stream; no stage pass starts two of its upstream
    outputs = Counter()
    for stream, _, _ in saved.values():
        outputs[id(stream)] += 1
    for key in inst.costly():
        s = inst.streams[key]
        for (caller, callee), n in inst.edges.items():
            if callee != key:
                continue
            limit = outputs[key] if caller is None else inst.passes[caller]
            assert n <= limit, f"{path.stem}: '{s.label}' iterated {n}x by {caller and inst.streams[caller].label}: {inst.report()}"
        assert inst.frames[key] == inst.passes[key] * s.info.frame_count, (s.label, inst.report())
    if len(saved) == 1:  # a linear chain: every costly stage produced every frame exactly once
        for key in inst.costly():
            assert inst.passes[key] == 1, f"{path.stem}: {inst.report()}"

    # a range render equals the slice of the full render
    for stream, full, n in saved.values():
        assert full is not None and full.shape[0] == n == stream.info.frame_count
        exact, kept = _exact(stream), _kept(stream)
        for a, b in {(1, min(n, 4)), (n // 2, min(n, n // 2 + 5)), (max(0, n - 3), n)}:
            if b <= a:
                continue
            part = stream.read(a, b).frames
            if exact and not kept:
                assert torch.equal(part, full[a:b]), (path.stem, a, b, float((part - full[a:b]).abs().max()))
            elif exact:
                assert torch.allclose(part, full[a:b], atol=CACHE_ATOL), (path.stem, a, b)
            else:
                assert torch.allclose(part, full[a:b], atol=RECURRENT_ATOL), (path.stem, a, b)


def _exact(stream) -> bool:
    s = stream
    while s is not None:
        if s.temporal is not None and not s.temporal.exact:
            return False
        s = s.upstream
    return True


def _kept(stream) -> bool:
    """True when the stream reads a kept stream: its chain, or any stream its stages read."""
    seen, todo = set(), [stream]
    while todo:
        s = todo.pop()
        if s is None or id(s) in seen:
            continue
        seen.add(id(s))
        if getattr(s, "_keep", False):
            return True
        todo.append(s.upstream)
        for cell in getattr(s._producer, "__closure__", None) or ():
            try:
                v = cell.cell_contents
            except ValueError:
                continue
            if isinstance(v, FrameStream):
                todo.append(v)
    return False


def test_workflow_folder_is_covered():
    names = {p.stem for p in WORKFLOWS}
    assert {"enhance", "quality", "passthrough"} <= names
    for p in WORKFLOWS:
        json.loads(p.read_text())
