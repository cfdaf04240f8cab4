"""Voice isolation (HT-Demucs vocals): the registry entry, the checked loader on a random-init model
saved in the real file format (safetensors + the class and its arguments as JSON metadata, as
``demucs`` 4.1 reads it), the streamed cross-fade, and the stage path with its latency removed."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import signal

import audiogen as ag

from remaster import host
from remaster.audio import denoise as dn
from remaster.audio import io
from remaster.audio import separate as sep
from remaster.models import registry
from remaster.models.cache import MODELS
from remaster.stream import AudioRef

pytest.importorskip("demucs")
from safetensors.torch import save_file  # noqa: E402

SMALL = dict(sources=["drums", "bass", "other", "vocals"], channels=4, depth=2, nfft=512, t_layers=1, t_heads=2,
             dconv_comp=2, t_hidden_scale=1.0, segment=Fraction(1, 2), samplerate=44100)


def _save_model(seed: int = 0, klass: str = sep.KLASS) -> Path:
    """A random-init HT-Demucs (small) where the registry says the real file goes."""
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    model = HTDemucs(**SMALL)
    enc = {k: ({"_type": "fraction", "numerator": v.numerator, "denominator": v.denominator}
               if isinstance(v, Fraction) else v) for k, v in SMALL.items()}
    folder = host.model_dirs(sep.FOLDER)[0]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / registry.entry(sep.MODEL_ID).filename
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"klass": klass, "args": "[]", "kwargs": json.dumps(enc)})
    MODELS.clear("htdemucs")
    return path


def _ref(tmp_path: Path, x: np.ndarray, rate: int) -> AudioRef:
    x = np.atleast_2d(x)
    p = ag.write_wav(tmp_path / f"in_{rate}_{x.shape[0]}.wav", x, rate)
    return AudioRef(path=str(p), duration=x.shape[1] / rate, sample_rate=rate, channels=x.shape[0])


def test_registry_entry_and_missing_model_message(tmp_path):
    e = registry.entry(sep.MODEL_ID)
    assert e.folder == sep.FOLDER and e.task == "voice_isolation" and e.licence == "MIT"
    ref = _ref(tmp_path, np.zeros(4800, np.float32), 48000)
    with pytest.raises(registry.ModelNotFound) as exc:
        dn.denoise(ref, "voice_isolation")  # checked when the node runs, not later at render
    msg = str(exc.value)
    assert e.filename in msg and sep.FOLDER in msg and e.url in msg


def test_a_file_naming_another_class_is_refused_before_anything_is_called(tmp_path):
    _save_model(klass="os.system")
    ref = _ref(tmp_path, np.zeros(4800, np.float32), 48000)
    with pytest.raises(ValueError, match="is not an HT-Demucs model"):
        dn.denoise(ref, "voice_isolation")
    host.model_dirs(sep.FOLDER)[0].joinpath(registry.entry(sep.MODEL_ID).filename).write_bytes(b"<html>")
    with pytest.raises(ValueError, match="cannot be read as a safetensors file"):
        dn.denoise(ref, "voice_isolation")


def test_loader_builds_the_saved_model():
    path = _save_model(seed=3)
    model = sep.load(path)
    assert model.sources[-1] == "vocals" and model.samplerate == 44100 and sep.samplerate(path) == 44100
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(3)
    want = HTDemucs(**SMALL).state_dict()
    got = model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert sep.load(path) is model  # one load, from the shared cache


def test_segments_cross_fade_exactly_and_the_latency_is_one_segment(monkeypatch):
    v = sep.Vocals(_save_model())
    monkeypatch.setattr(v, "_run", lambda x: x.copy())  # a model that returns its input
    x = np.random.default_rng(0).standard_normal(3 * v.seg + 1234).astype(np.float32)
    sizes = [480, 7, 30000, 1, 99999]
    out, i, k = [], 0, 0
    while i < len(x) + v.latency:
        n = sizes[k % len(sizes)]
        block = x[i:i + n] if i < len(x) else np.zeros(n, np.float32)
        out.append(v.frames(block))
        assert len(out[-1]) == len(block)  # as many samples out as in
        i, k = i + len(block), k + 1
    y = np.concatenate(out)
    assert np.abs(y[: v.latency]).max() == 0
    assert np.abs(y[v.latency: v.latency + len(x)] - x).max() < 1e-5


def test_voice_isolation_on_the_stage_path(tmp_path):
    _save_model()
    rate = 16000
    x = (0.1 * np.random.default_rng(1).standard_normal((2, int(1.3 * rate)))).astype(np.float32)
    ref = _ref(tmp_path, x, rate)
    out = dn.denoise(ref, "voice_isolation", channels="each")
    assert out.sample_rate == rate and out.channels == 2
    y = io.read_all(out)
    assert y.shape == x.shape and np.isfinite(y).all() and np.abs(y).max() > 0
    dry = io.read_all(dn.denoise(ref, "voice_isolation", strength=0.0))
    # the original, in place, after 16 -> 44.1 -> 16 kHz (only the resampler's band edge differs)
    err = signal.sosfiltfilt(signal.butter(8, 7000, fs=rate, output="sos"), dry - x, axis=1)
    assert 10 * np.log10(np.sum(x**2) / np.sum(err**2)) > 40
    again = dn.denoise(ref, "voice_isolation", channels="each")
    assert io.raw_path(again) == io.raw_path(out)  # the same chain: the same file, rendered once
    _save_model(seed=5)
    assert io.raw_path(dn.denoise(ref, "voice_isolation", channels="each")) != io.raw_path(out)
