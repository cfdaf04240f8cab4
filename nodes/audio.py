"""Audio nodes: speech denoise, hum & rumble, loudness, music bed / replace.

Each takes the frame stream (its audio) and/or ComfyUI's AUDIO, and returns both. On a stream the
audio is processed lazily, once, into a file in the cache folder when the encoder (or anything
else) first reads it; the frames pass through untouched and the audio keeps its place in time.
A stream without audio passes through unchanged with a warning.
"""
from __future__ import annotations

import logging

from remaster import host
from remaster.audio import denoise as dn
from remaster.audio import hum as hm
from remaster.audio import io
from remaster.audio import loudness as ld
from remaster.audio import mix as mx

from ._common import FRAMES, category

log = logging.getLogger("remaster.audio")
RETURNS = (FRAMES, "AUDIO")
NAMES = ("frames", "audio")


def _optional_inputs(extra: dict | None = None) -> dict:
    d = {
        "frames": (FRAMES, {"tooltip": "Frame stream whose audio to process (frames pass through unchanged)."}),
        "audio": ("AUDIO", {"tooltip": "Or ComfyUI AUDIO to process (returned on the audio output)."}),
    }
    d.update(extra or {})
    return d


def _with_audio(frames, ref, name: str):
    """The stream with a new audio ref (frames untouched, the ref not rendered)."""
    info = frames.info.with_(audio=ref)
    return frames.derive(f"audio_{name}", {"audio": io.raw_path(ref) if ref is not None else None},
                         lambda up, n: up.chunks(n), info, frames_unchanged=True)


def run_audio(name: str, frames, audio, fn):
    """Apply ``fn(ref, duration) -> ref`` to a stream's audio and/or an AUDIO dict."""
    if frames is None and audio is None:
        raise ValueError(f"{name}: connect 'frames' (a Remaster stream) or 'audio' (ComfyUI AUDIO)")
    out_frames, out_audio = frames, None
    if frames is not None:
        ref = frames.info.audio
        if ref is None:
            log.warning("%s: the stream has no audio; passing it through unchanged", name)
        else:
            new = fn(ref, frames.info.duration)
            out_frames = _with_audio(frames, new, name)
            out_audio = io.LazyAudio(new)
    if audio is not None:
        from remaster.media.audio import read_audio, write_audio

        out_audio = read_audio(fn(write_audio(audio), None))
    if out_audio is None:  # a silent stream: a short silence keeps AUDIO consumers working
        import torch

        out_audio = {"waveform": torch.zeros(1, 1, 0), "sample_rate": 48000}
    return out_frames, out_audio


def _number(kind: str, default, lo, hi, step, tooltip: str) -> tuple:
    """A FLOAT or INT widget (``step`` None: the frontend's default)."""
    spec = {"default": default, "min": lo, "max": hi, "step": step, "tooltip": tooltip}
    return kind, {k: v for k, v in spec.items() if v is not None}


class _AudioNode:
    """What the audio nodes share: category, outputs, and the optional frames/audio inputs after
    each node's own ``REQUIRED`` widgets (plus ``EXTRA`` optional inputs)."""

    CATEGORY = category("Audio")
    FUNCTION = "run"
    RETURN_TYPES = RETURNS
    RETURN_NAMES = NAMES
    EXTRA: dict = {}

    @classmethod
    def REQUIRED(cls) -> dict:
        raise NotImplementedError

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": cls.REQUIRED(), "optional": _optional_inputs(cls.EXTRA)}


class RemasterSpeechDenoise(_AudioNode):
    DESCRIPTION = (
        "Remove background noise (hiss, fan, traffic, room noise, babble) from speech with DeepFilterNet 3 "
        "(best) or RNNoise (fastest); both ship inside their Python packages, nothing is downloaded. "
        "voice_isolation keeps only the voice (HT-Demucs vocals; its model file is listed in models.json). "
        "Works block by block on any length, resampling to the model's 48 kHz and back; the result lines "
        "up with the video to the sample. For 5.1 only the centre (dialogue) channel is cleaned by default."
    )

    @classmethod
    def REQUIRED(cls):
        return {
            "method": (list(dn.METHODS), {"tooltip": "deepfilternet3: strongest, natural (about 10x real time "
                                                      "on a CPU core). rnnoise: lighter and faster. voice_isolation: "
                                                      "keeps only the voice (removes music and effects too) with "
                                                      "HT-Demucs; needs its model file in models/audio_separation."}),
            "strength": _number("FLOAT", 1.0, 0.0, 1.0, 0.05,
                                "Mix with the original: 1 = fully denoised, 0.7 keeps some room tone."),
            "channels": (list(dn.CHANNEL_MODES), {
                "tooltip": "auto: centre channel for 5.1/7.1, every channel otherwise. each: every channel on its "
                           "own. centre: only the dialogue channel of 5.1. mono: downmix to one channel first."}),
        }

    def run(self, method="deepfilternet3", strength=1.0, channels="auto", frames=None, audio=None):
        return run_audio("Speech Denoise", frames, audio,
                         lambda ref, d: dn.denoise(ref, method, strength, channels, duration=d))


class RemasterHumRemove(_AudioNode):
    DESCRIPTION = (
        "Remove mains hum (50 or 60 Hz, found automatically, with its harmonics) with narrow notches a "
        "few hertz wide, and rumble / handling noise with a high-pass. Speech is left as it was."
    )

    @classmethod
    def REQUIRED(cls):
        return {
            "mains": (list(hm.MAINS), {"tooltip": "auto: find 50 or 60 Hz hum in the first 30 s (nothing is "
                                                   "notched if there is none). off: high-pass only."}),
            "highpass_hz": _number("FLOAT", 80.0, 0.0, 300.0, 5.0,
                                   "Rumble filter corner; 0 = off. 80 Hz suits speech, 40 Hz keeps music's bass."),
            "harmonics": _number("INT", 16, 1, 40, None,
                                 "Highest harmonic of the hum to look for (only those that stand out are notched)."),
            "notch_width_hz": _number("FLOAT", 3.0, 0.5, 20.0, 0.5,
                                      "Width of each notch. Wider copes with drifting mains, narrower keeps more sound."),
        }

    def run(self, mains="auto", highpass_hz=80.0, harmonics=16, notch_width_hz=3.0, frames=None, audio=None):
        return run_audio("Hum & Rumble", frames, audio,
                         lambda ref, d: hm.remove_hum(ref, mains, highpass_hz, harmonics, notch_width_hz, duration=d))


class RemasterLoudness(_AudioNode):
    DESCRIPTION = (
        "Set the loudness to a target (EBU R128 / ITU-R BS.1770 integrated loudness: -16 LUFS for the web "
        "and podcasts, -23 LUFS for broadcast, or your own) with a true-peak limit, for the whole file or "
        "per scene. Measures the audio first (a quick pass over the audio only), then applies the gain "
        "and a look-ahead true-peak limiter."
    )

    @classmethod
    def REQUIRED(cls):
        return {
            "target": (list(ld.TARGETS), {"tooltip": "Integrated loudness to reach."}),
            "custom_lufs": _number("FLOAT", -16.0, -70.0, 0.0, 0.5, "Target when 'target' is custom."),
            "true_peak_db": _number("FLOAT", -1.0, -20.0, 0.0, 0.1,
                                    "Highest true (inter-sample) peak allowed, dBTP. -1 is the usual limit; -2 for "
                                    "lossy codecs at low bit rates."),
            "per": (["file", "scene"], {"tooltip": "file: one gain for everything. scene: a gain per scene "
                                                   "(scene cuts attached by a Scene Cuts node, else detected), 50 ms ramps at cuts."}),
        }

    def run(self, target="-16 LUFS (web, podcasts)", custom_lufs=-16.0, true_peak_db=-1.0, per="file",
            frames=None, audio=None):
        lufs = ld.TARGETS.get(target)
        lufs = float(custom_lufs) if lufs is None else lufs
        cuts, key = None, ""
        if per == "scene" and frames is not None and frames.info.audio is not None:
            cuts, key = _scene_times(frames), frames.fingerprint
        return run_audio("Loudness", frames, audio,
                         lambda ref, d: ld.normalise(ref, lufs, true_peak_db, per, cuts, key, duration=d))


def _scene_times(frames):
    """A function giving the scene starts in the audio's own seconds (looked up when rendered)."""
    fps, offset = frames.info.fps, frames.info.audio.offset

    def times():
        from remaster.analysis.scenes import scene_cuts

        return [float(c / fps) - offset for c in scene_cuts(frames)]

    return times


class RemasterAudioMix(_AudioNode):
    DESCRIPTION = (
        "Lay a music bed under the speech that ducks while someone talks, or replace the soundtrack. The "
        "music is cut or padded to exactly the video's length and fades out at the end. Give a file "
        "(any audio or video file; a name in the input folder or a path) or connect AUDIO."
    )

    @classmethod
    def REQUIRED(cls):
        return {
            "mode": (list(mx.MODES), {"tooltip": "mix: music under the speech, ducked while someone talks. "
                                                 "replace: the music becomes the soundtrack."}),
            "music_file": ("STRING", {"default": "", "tooltip": "Music file (input folder name or path). "
                                                                "Ignored when 'music' AUDIO is connected."}),
            "music_db": _number("FLOAT", -18.0, -60.0, 12.0, 0.5, "Music level (gain in dB) while nobody talks."),
            "duck_db": _number("FLOAT", -12.0, -60.0, 0.0, 0.5, "How much lower the music goes under speech."),
            "speech_threshold_db": _number("FLOAT", -40.0, -80.0, 0.0, 1.0,
                                           "Speech level (dBFS, 20 ms power) above which the music ducks."),
            "music_start": _number("FLOAT", 0.0, 0.0, 1e6, 0.1, "Where in the music file to start (seconds)."),
            "fade_out_s": _number("FLOAT", 2.0, 0.0, 60.0, 0.5, "Fade the music out over the video's last seconds."),
        }

    EXTRA = {"music": ("AUDIO", {"tooltip": "Music as ComfyUI AUDIO (instead of a file)."})}

    def run(self, mode="mix", music_file="", music_db=-18.0, duck_db=-12.0, speech_threshold_db=-40.0,
            music_start=0.0, fade_out_s=2.0, frames=None, audio=None, music=None):
        if music is not None:
            from remaster.media.audio import write_audio

            bed = write_audio(music)
        elif music_file.strip():
            bed = io.file_ref(host.annotated_input_path(music_file.strip()))
        else:
            raise ValueError("Audio Mix: give 'music_file' (a file in the input folder or a path) or connect 'music'")
        if frames is not None and frames.info.audio is None and audio is None:
            # a silent video: the music becomes its soundtrack, whatever the mode
            new = mx.replace_track(bed, frames.info.duration, 0.0, music_start, fade_out_s)
            return _with_audio(frames, new, "Audio Mix"), io.LazyAudio(new)
        return run_audio("Audio Mix", frames, audio,
                         lambda ref, d: mx.mix_music(ref, bed, mode, music_db, duck_db, speech_threshold_db,
                                                     music_start, fade_out_s, duration=d))


NODE_CLASS_MAPPINGS = {
    "RemasterSpeechDenoise": RemasterSpeechDenoise,
    "RemasterHumRemove": RemasterHumRemove,
    "RemasterLoudness": RemasterLoudness,
    "RemasterAudioMix": RemasterAudioMix,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "RemasterSpeechDenoise": "Speech Denoise (Remaster)",
    "RemasterHumRemove": "Hum & Rumble (Remaster)",
    "RemasterLoudness": "Loudness (Remaster)",
    "RemasterAudioMix": "Audio Mix / Replace (Remaster)",
}
