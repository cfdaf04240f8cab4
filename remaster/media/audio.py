"""Audio interop: a stream's :class:`AudioRef` ↔ ComfyUI's AUDIO dict (``waveform [1,C,T]``,
``sample_rate``). Only used at the edges (short clips, third-party audio nodes); the video path
never decodes audio into memory."""
from __future__ import annotations

import uuid
from pathlib import Path

import av
import numpy as np
import torch

from .. import host
from ..stream import AudioRef


def read_audio(ref: AudioRef, max_seconds: float = 3600.0) -> dict:
    """Decode the referenced range into ComfyUI's AUDIO dict (float32 waveform [1, C, T])."""
    dur = ref.duration if ref.duration is not None else max_seconds
    if dur > max_seconds:
        raise ValueError(f"audio of {dur:.0f}s is longer than the {max_seconds:.0f}s cap for in-memory AUDIO")
    with av.open(ref.path) as c:
        a = c.streams[ref.stream_index]
        rate = a.rate
        resampler = av.AudioResampler(format="fltp", layout=a.layout.name if len(a.layout.channels) else "stereo", rate=rate)
        if ref.start > 0:
            c.seek(int(max(0.0, ref.start - 1.0) / a.time_base), stream=a, backward=True)
        parts, pos = [], None
        need = int(round(dur * rate))
        got = 0
        for frame in c.decode(a):
            t = float(frame.pts * frame.time_base) if frame.pts is not None else pos
            for rf in resampler.resample(frame):
                x = rf.to_ndarray()
                if t is None:
                    t = pos or 0.0
                if t < ref.start:
                    x = x[:, int(round((ref.start - t) * rate)):]
                t = None
                pos = (pos or 0.0) + rf.samples / rate
                parts.append(x)
                got += x.shape[1]
            if got >= need:
                break
        wave = np.concatenate(parts, axis=1)[:, :need] if parts else np.zeros((2, 0), np.float32)
    lead = int(round(ref.offset * rate))
    if lead > 0:
        wave = np.concatenate([np.zeros((wave.shape[0], lead), np.float32), wave], axis=1)
    return {"waveform": torch.from_numpy(np.ascontiguousarray(wave)).unsqueeze(0), "sample_rate": int(rate)}


def write_audio(audio: dict, folder: Path | None = None) -> AudioRef:
    """Write a ComfyUI AUDIO dict to a WAV file in the temp folder and reference it."""
    wave = audio["waveform"]
    if wave.ndim == 3:
        wave = wave[0]
    wave = wave.detach().float().cpu().clamp(-1, 1).numpy()
    rate = int(audio["sample_rate"])
    channels = wave.shape[0]
    if channels not in (1, 2, 6):
        wave = wave[:2] if channels > 2 else np.repeat(wave, 2, 0)
        channels = 2
    folder = folder or host.temp_dir()
    path = Path(folder) / f"remaster_audio_{uuid.uuid4().hex[:10]}.wav"
    from ..audio.io import write_wav

    write_wav(path, wave, rate, "pcm_s16le")
    return AudioRef(path=str(path), stream_index=0, start=0.0, duration=wave.shape[1] / rate,
                    sample_rate=rate, channels=channels, codec="pcm_s16le")
