"""Test audio: real synthetic speech (espeak-ng), real-world noise types, SNR mixing, scores.

Speech comes from the ``espeak-ng`` program (Debian package ``espeak-ng``); callers skip when it
is missing. Noises: white, pink (1/f), babble (six other voices talking at once), mains hum
(50 Hz and harmonics), fan (low-passed broadband noise with a blade tone and its harmonics).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
from scipy import signal

from remaster.audio.io import write_wav  # noqa: F401  (tests and bench write their WAVs with it)

NOISES = ("white", "pink", "babble", "hum", "fan")
TEXT = "The old recording of this talk was hard to follow. Please speak clearly into the microphone."
BABBLE = [
    ("en-gb", "Meanwhile the committee discussed the budget for next year at some length."),
    ("en-us+f3", "I think we should move the meeting to Thursday afternoon instead."),
    ("de", "Das Wetter ist heute wirklich schön, wir sollten spazieren gehen."),
    ("fr", "Nous avons besoin de plus de temps pour terminer ce projet important."),
    ("en-us+m3", "Could somebody please pass me the salt and the pepper over there."),
    ("es", "La reunión empieza a las diez y termina a las doce en punto."),
]


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


@lru_cache(maxsize=32)
def _say(text: str, voice: str, rate: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", str(wav), text], check=True,
                       capture_output=True)
        with av.open(str(wav)) as c:
            src_rate = c.streams.audio[0].rate
            x = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)]).astype(np.float32)
    if x.dtype.kind == "i" or np.abs(x).max() > 1.5:
        x = x / 32768.0
    g = np.gcd(rate, src_rate)
    x = signal.resample_poly(x, rate // g, src_rate // g).astype(np.float32)
    return x


def speech(rate: int = 48000, text: str = TEXT, voice: str = "en-us", seconds: float | None = None) -> np.ndarray:
    """Mono speech, peak 0.5, optionally cut or zero-padded to ``seconds``."""
    x = _say(text, voice, rate).copy()
    x = 0.5 * x / max(1e-9, np.abs(x).max())
    if seconds is not None:
        n = int(round(seconds * rate))
        x = np.pad(x, (0, max(0, n - len(x))))[:n]
    return x


def noise(kind: str, n: int, rate: int = 48000, seed: int = 0, mains: float = 50.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / rate)
        spec[1:] /= np.sqrt(f[1:])
        spec[0] = 0
        x = np.fft.irfft(spec, n)
    elif kind == "babble":
        x = np.zeros(n)
        for i, (voice, text) in enumerate(BABBLE):
            v = _say(text, voice, rate)
            v = np.tile(v, n // len(v) + 2)
            shift = int(rng.integers(0, len(v) - n))
            x += v[shift: shift + n] / (np.std(v) + 1e-9)
    elif kind == "hum":
        x = sum((1.0 / k) * np.sin(2 * np.pi * mains * k * t + k) for k in range(1, 9))
    elif kind == "fan":
        b, a = signal.butter(2, 800, fs=rate)
        x = signal.lfilter(b, a, rng.standard_normal(n))
        x = x / np.std(x) + 0.3 * sum(np.sin(2 * np.pi * 117 * k * t) / k for k in range(1, 4))
        x *= 1 + 0.1 * np.sin(2 * np.pi * 0.7 * t)
    else:
        raise ValueError(kind)
    return (x / (np.std(x) + 1e-12)).astype(np.float32)


def mix(clean: np.ndarray, noise_: np.ndarray, snr_db: float) -> np.ndarray:
    """clean + noise scaled so that the speech-to-noise power ratio is ``snr_db``."""
    ps = np.mean(clean.astype(np.float64) ** 2)
    pn = np.mean(noise_.astype(np.float64) ** 2)
    return (clean + noise_ * np.sqrt(ps / (pn * 10 ** (snr_db / 10)))).astype(np.float32)


def si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB."""
    est = est.astype(np.float64) - est.mean()
    ref = ref.astype(np.float64) - ref.mean()
    target = ref * np.dot(est, ref) / (np.dot(ref, ref) + 1e-12)
    return float(10 * np.log10(np.sum(target**2) / (np.sum((est - target) ** 2) + 1e-12)))


def stoi(est: np.ndarray, ref: np.ndarray, rate: int) -> float:
    from pystoi import stoi as _stoi

    return float(_stoi(ref, est, rate, extended=False))
