"""Replace the soundtrack, or lay a music bed under speech that ducks while someone talks.

Ducking follows the speech: a 20 ms power envelope of the speech (mono sum) against a threshold
marks where someone talks; that is held for ``hold`` seconds (so the music does not pump between
words) and smoothed, and the music is lowered by ``duck_db`` there. Every filter keeps its state
from block to block. The music is read from its own file at the speech's rate and layout, from
``music_start`` seconds on, cut or padded with silence to exactly the video's range, with a fade
out over its last ``fade_s`` seconds.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import signal
from scipy.ndimage import maximum_filter1d

from ..stream import AudioRef
from . import io

MODES = ("mix", "replace")


class Ducker:
    """speech + music · gain, the gain lowered while the speech envelope is over a threshold."""

    latency = 0

    def __init__(self, rate: int, channels: int, music: AudioRef, duration: float, mode: str = "mix",
                 music_db: float = -18.0, duck_db: float = -12.0, threshold_db: float = -40.0,
                 hold_s: float = 0.4, fade_s: float = 2.0):
        self.rate, self.mode = rate, mode
        self.music = io.read_blocks(music, rate, channels, duration=duration)
        self.music_buf = np.zeros((channels, 0), np.float32)
        self.music_gain = 10 ** (music_db / 20)
        self.duck = 1.0 - 10 ** (duck_db / 20)  # fraction of the music removed at full duck
        self.threshold = 10 ** (threshold_db / 10)
        a_env = np.exp(-1.0 / (0.020 * rate))
        self.env = ([1 - a_env], [1, -a_env])
        self.env_zi = np.zeros(1)
        a_gain = np.exp(-1.0 / (0.080 * rate))
        self.smooth = ([1 - a_gain], [1, -a_gain])
        self.smooth_zi = np.zeros(1)
        self.hold = max(1, int(hold_s * rate))
        self.active_hist = np.zeros(self.hold)
        self.total = io.total_samples(duration, rate)
        self.fade = int(fade_s * rate)
        self.pos = 0

    def _music(self, n: int) -> np.ndarray:
        while self.music_buf.shape[1] < n:
            try:
                self.music_buf = np.concatenate([self.music_buf, next(self.music)], axis=1)
            except StopIteration:
                pad = np.zeros((self.music_buf.shape[0], n - self.music_buf.shape[1]), np.float32)
                self.music_buf = np.concatenate([self.music_buf, pad], axis=1)
        m, self.music_buf = self.music_buf[:, :n], self.music_buf[:, n:]
        return m

    def gain(self, speech: np.ndarray) -> np.ndarray:
        """Per-sample music gain (0..1 of ``music_db``) for a block of speech."""
        power = np.mean(np.square(speech.astype(np.float64)), axis=0)
        env, self.env_zi = signal.lfilter(*self.env, power, zi=self.env_zi)
        active = (env > self.threshold).astype(np.float64)
        ext = np.concatenate([self.active_hist, active])
        held = maximum_filter1d(ext, self.hold, origin=(self.hold - 1) // 2)[self.hold:]
        self.active_hist = ext[-self.hold:]
        duck, self.smooth_zi = signal.lfilter(*self.smooth, held, zi=self.smooth_zi)
        return 1.0 - self.duck * duck

    def process(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[1]
        m = self._music(n) * self.music_gain
        if self.fade:
            t = self.pos + np.arange(n)
            m = m * np.clip((self.total - t) / self.fade, 0.0, 1.0)[None]
        self.pos += n
        if self.mode == "replace":
            return m.astype(np.float32)
        return (x + m * self.gain(x)[None]).astype(np.float32)


def mix_music(ref: AudioRef, music: AudioRef, mode: str = "mix", music_db: float = -18.0,
              duck_db: float = -12.0, threshold_db: float = -40.0, music_start: float = 0.0,
              fade_s: float = 2.0, duration: Optional[float] = None) -> io.PendingAudioRef:
    """The ref with ``music`` under it (ducked under speech), or replaced by it (lazy)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    dur = ref.duration if ref.duration is not None else duration
    if dur is None:
        raise ValueError("the audio's duration is unknown; pass the stream's duration")
    bed = music.trimmed(max(0.0, music_start), None)

    def make(rate: int, ch: int) -> Ducker:
        return Ducker(rate, ch, bed, dur, mode, music_db, duck_db, threshold_db, fade_s=fade_s)

    params = {"music": io.audio_key(bed), "mode": mode, "music_db": float(music_db), "duck_db": float(duck_db),
              "threshold_db": float(threshold_db), "fade_s": float(fade_s)}
    return io.process(ref, "mix", params, make, duration=dur)


def replace_track(music: AudioRef, duration: float, offset: float = 0.0, music_start: float = 0.0,
                  fade_s: float = 2.0) -> io.PendingAudioRef:
    """A new soundtrack for a video with none (or to drop the old one): ``music`` fitted to its range."""
    bed = music.trimmed(max(0.0, music_start), None)

    def make(rate: int, ch: int) -> Ducker:
        return Ducker(rate, ch, bed, duration, "replace", 0.0, 0.0, fade_s=fade_s)

    params = {"music": io.audio_key(bed), "fade_s": float(fade_s), "start": float(music_start)}
    base = io.ref_with(bed, duration=duration, offset=offset)
    return io.process(base, "replace", params, make, duration=duration)
