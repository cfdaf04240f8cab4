"""Voice isolation: the vocals stem of HT-Demucs (``demucs`` package, MIT), streamed block by block.

No separation model ships inside a PyPI wheel, so the weights are a registry entry
(``models.json`` id ``htdemucs``: the single-model HT-Demucs v4 checkpoint in the safetensors form
that ``demucs`` 4.1 loads, folder ``audio_separation``). The file is checked before any of it is
used: its metadata must name the HT-Demucs class (``demucs``' own loader imports and calls
whatever class a file names), the tensors are read by safetensors, and the model is built by
``demucs.hf.load_safetensors_model`` — the package's own loading code.

The model separates fixed segments (7.8 s for HT-Demucs) of 44.1 kHz stereo. :class:`Vocals`
runs it on consecutive segments overlapping by a quarter, cross-fades them with complementary
linear ramps, and hands out exactly as many samples as it is given, one segment late (the
latency the runner removes). A mono channel goes in as identical left and right; the two vocal
channels that come out are averaged.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MODEL_ID = "htdemucs"
FOLDER = "audio_separation"
KLASS = "demucs.htdemucs.HTDemucs"


def _metadata(path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise ValueError(f"'{path.name}' cannot be read as a safetensors file ({exc}); download it again") from exc
    if meta.get("klass") != KLASS:
        raise ValueError(f"'{path.name}' is not an HT-Demucs model (its metadata names {meta.get('klass')!r}, "
                         f"expected {KLASS}); use the htdemucs file listed in models.json")
    return meta


def model_path(name: str = MODEL_ID) -> Path:
    """The checked model file (a missing file raises naming the file, its folder and URL)."""
    from ..models import registry

    p = registry.resolve(name, FOLDER)
    _metadata(p)
    return p


def samplerate(path: Path) -> int:
    kwargs = json.loads(_metadata(path).get("kwargs", "{}"))
    return int(kwargs.get("samplerate", 44100))


def load(path: Path):
    """The HT-Demucs model of a checked file, in eval mode, from the shared model cache."""
    from ..models.cache import MODELS, file_key

    def build():
        _metadata(path)
        try:
            from demucs.hf import load_safetensors_model
        except ImportError as exc:  # pragma: no cover - a requirement
            raise RuntimeError("voice isolation needs the package 'demucs': pip install demucs") from exc
        model = load_safetensors_model(path)
        if "vocals" not in model.sources:
            raise ValueError(f"'{path.name}' has no vocals source (it separates {model.sources})")
        return model.eval()

    return MODELS.get("htdemucs", file_key(path), build)


class Vocals:
    """One channel in, its vocals out: HT-Demucs on overlapping segments, one segment late."""

    def __init__(self, path: Path):
        import torch

        self.torch = torch
        self.model = load(path)
        self.seg = int(self.model.segment * self.model.samplerate)
        self.ov = self.seg // 4
        self.hop = self.seg - self.ov
        self.latency = self.seg
        self.src = self.model.sources.index("vocals")
        up = (np.arange(self.ov, dtype=np.float32) + 0.5) / self.ov
        self.fade_in, self.fade_out = up, 1.0 - up  # they sum to one where two segments overlap
        self.inp = np.zeros(0, np.float32)  # input not yet behind a whole segment
        self.tail = np.zeros(self.ov, np.float32)  # the last segment's faded-out end
        self.ready = [np.zeros(self.latency, np.float32)]  # finished output, behind `latency` zeros
        self.first = True

    def _run(self, x: np.ndarray) -> np.ndarray:
        t = self.torch.from_numpy(np.ascontiguousarray(x)).reshape(1, 1, -1).repeat(1, self.model.audio_channels, 1)
        with self.torch.inference_mode():
            y = self.model(t)[0, self.src].mean(0)
        return y.float().numpy()

    def frames(self, x: np.ndarray) -> np.ndarray:
        self.inp = np.concatenate([self.inp, np.asarray(x, np.float32)])
        while len(self.inp) >= self.seg:
            y = self._run(self.inp[: self.seg])
            if not self.first:
                y[: self.ov] *= self.fade_in
            y[-self.ov:] *= self.fade_out
            y[: self.ov] += self.tail
            self.ready.append(y[: self.hop])
            self.tail = y[self.hop:].copy()
            self.inp = self.inp[self.hop:]
            self.first = False
        out = np.concatenate(self.ready)
        self.ready = [out[len(x):]]
        return out[: len(x)]
