"""Audio stages on real (synthetic) speech with real-world noise: denoise, hum, loudness, mixing;
sync with the video, channel layouts and rates, ComfyUI AUDIO interop, laziness."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import signal

import audiogen as ag
from videogen import audio_onset, colour_pattern, tone, write_video

from remaster.audio import denoise as dn
from remaster.audio import hum as hm
from remaster.audio import io
from remaster.audio import loudness as ld
from remaster.audio import mix as mx
from remaster.media.decode import open_video
from remaster.media.encode import save_video
from remaster.stream import AudioRef

needs_speech = pytest.mark.skipif(not ag.have_espeak(), reason="espeak-ng is not installed (apt-get install espeak-ng)")


def _ref(tmp_path: Path, x: np.ndarray, rate: int, name: str = "a.wav") -> AudioRef:
    x = np.atleast_2d(x)
    p = ag.write_wav(tmp_path / name, x, rate)
    return AudioRef(path=str(p), duration=x.shape[1] / rate, sample_rate=rate, channels=x.shape[0])


def _lag(y: np.ndarray, x: np.ndarray) -> int:
    c = signal.correlate(y, x, mode="full", method="fft")
    return int(np.argmax(c)) - (len(x) - 1)


# ---------------------------------------------------------------------------------------------
# speech denoise


@needs_speech
@pytest.mark.parametrize("method,gain", [("deepfilternet3", 8.0), ("rnnoise", 4.0)])
def test_denoise_improves_noisy_speech_in_place(tmp_path, method, gain):
    rate = 48000
    s = ag.speech(rate, seconds=4.0)
    x = ag.mix(s, ag.noise("white", len(s), rate), 5.0)
    out = dn.denoise(_ref(tmp_path, x, rate), method)
    y = io.read_all(out)[0]
    assert y.shape == s.shape
    assert _lag(y, s) == 0  # the model's latency is removed
    assert ag.si_sdr(y, s) - ag.si_sdr(x, s) >= gain
    if method == "deepfilternet3":
        assert ag.stoi(y, s, rate) >= ag.stoi(x, s, rate)


@needs_speech
def test_denoise_strength_mixes_with_the_original(tmp_path):
    rate = 48000
    s = ag.speech(rate, seconds=2.0)
    x = ag.mix(s, ag.noise("pink", len(s), rate), 10.0)
    ref = _ref(tmp_path, x, rate)
    dry = io.read_all(dn.denoise(ref, "rnnoise", strength=0.0))[0]
    assert np.abs(dry - x).max() < 1e-6  # the original, in place (24-bit FLAC)
    half = io.read_all(dn.denoise(ref, "rnnoise", strength=0.5))[0]
    full = io.read_all(dn.denoise(ref, "rnnoise", strength=1.0))[0]
    assert np.abs(half - 0.5 * (dry + full)).max() < 1e-6
    # at 16 kHz the audio goes to 48 kHz for the model and back: only the resampler's band edge differs
    x16 = signal.resample_poly(x, 1, 3).astype(np.float32)
    dry16 = io.read_all(dn.denoise(_ref(tmp_path, x16, 16000, "x16.wav"), "rnnoise", strength=0.0))[0]
    assert dry16.shape == x16.shape and _lag(dry16, x16) == 0
    lp = signal.butter(8, 7000, fs=16000, output="sos")
    err = signal.sosfiltfilt(lp, dry16 - x16)
    assert 10 * np.log10(np.sum(x16**2) / np.sum(err**2)) > 40


@needs_speech
def test_denoise_babble_and_fan_do_not_hurt(tmp_path):
    rate = 48000
    s = ag.speech(rate, seconds=3.0)
    for kind in ("fan", "babble"):
        x = ag.mix(s, ag.noise(kind, len(s), rate, seed=3), 5.0)
        y = io.read_all(dn.denoise(_ref(tmp_path, x, rate, f"{kind}.wav"), "deepfilternet3"))[0]
        assert ag.si_sdr(y, s) > ag.si_sdr(x, s), kind


def test_denoise_51_centre_only_and_mono_8k(tmp_path):
    rate = 48000
    rng = np.random.default_rng(0)
    x = (0.05 * rng.standard_normal((6, rate))).astype(np.float32)
    out = dn.denoise(_ref(tmp_path, x, rate, "six.wav"), "rnnoise", channels="auto")
    y = io.read_all(out)
    assert y.shape == x.shape and out.channels == 6
    others = [0, 1, 3, 4, 5]
    assert np.abs(y[others] - x[others]).max() < 1e-6  # untouched (24-bit FLAC)
    assert np.std(y[2]) < 0.5 * np.std(x[2])  # the centre channel's noise went down
    low = (0.1 * np.sin(2 * np.pi * 300 * np.arange(8000) / 8000)).astype(np.float32)
    out8 = dn.denoise(_ref(tmp_path, low, 8000, "eight.wav"), "deepfilternet3")
    assert out8.sample_rate == 8000 and io.read_all(out8).shape == (1, 8000)
    mono = dn.denoise(_ref(tmp_path, x, rate, "six.wav"), "rnnoise", channels="mono")
    assert io.read_all(mono).shape == (1, rate)


# ---------------------------------------------------------------------------------------------
# hum and rumble


def _band_db(x: np.ndarray, rate: int, f: float) -> float:
    n = len(x)
    spec = np.abs(np.fft.rfft(x * np.hanning(n)))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    return float(20 * np.log10(spec[np.argmin(np.abs(freqs - f))] + 1e-12))


@needs_speech
@pytest.mark.parametrize("mains", [50.0, 60.0, 50.3])
def test_hum_found_and_notched_speech_kept(tmp_path, mains):
    rate = 48000
    s = ag.speech(rate, seconds=4.0)
    hum = ag.noise("hum", len(s), rate, mains=mains)
    hum *= np.sqrt(np.mean(s**2) / np.mean(hum**2))  # 0 dB SNR
    f = hm.HumFilter(rate, 1)
    f.analyse(lambda: iter([(s + hum)[None]]))
    assert f.found == pytest.approx(mains, abs=0.05)
    yh, ys = f.filtered(hum), f.filtered(s)
    skip = rate // 2  # the notches' settling time
    for k in range(1, 9):
        red = _band_db(hum[skip:], rate, k * mains) - _band_db(yh[skip:], rate, k * mains)
        assert red >= 30.0, (k, red)
    for lo, hi in [(250, 500), (500, 1000), (1000, 2000), (2000, 4000)]:
        sos = signal.butter(4, [lo, hi], "bandpass", fs=rate, output="sos")
        change = 10 * np.log10(np.mean(signal.sosfilt(sos, ys) ** 2) / np.mean(signal.sosfilt(sos, s) ** 2))
        assert abs(change) < 1.0, (lo, hi, change)


def test_no_hum_no_notches_and_rumble_goes(tmp_path):
    rate = 16000
    rng = np.random.default_rng(1)
    t = np.arange(2 * rate) / rate
    x = (0.05 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * 20 * t)).astype(np.float32)
    out = hm.remove_hum(_ref(tmp_path, x, rate), highpass_hz=80)
    y = io.read_all(out)[0]
    assert y.shape == x.shape
    assert _band_db(y[rate // 2:], rate, 20) < _band_db(x[rate // 2:], rate, 20) - 30  # rumble gone
    f = hm.HumFilter(rate, 1)
    f.analyse(lambda: iter([x[None]]))
    assert f.notches == []


# ---------------------------------------------------------------------------------------------
# loudness


@needs_speech
@pytest.mark.parametrize("rate,channels", [(8000, 1), (48000, 2), (48000, 6)])
@pytest.mark.parametrize("target", [-16.0, -23.0])
def test_loudness_reaches_target_under_true_peak(tmp_path, rate, channels, target):
    s = 0.05 * ag.speech(rate, seconds=4.0)
    x = np.stack([s * (1 - 0.1 * c) for c in range(channels)])
    out = ld.normalise(_ref(tmp_path, x, rate), target, -1.0)
    y = io.read_all(out)
    assert y.shape == x.shape
    m = ld.Meter(rate, channels)
    m.feed(y)
    assert m.integrated() == pytest.approx(target, abs=0.5)
    assert ld.true_peak_db(y, rate) <= -1.0


@needs_speech
def test_meter_matches_pyloudnorm_and_per_scene_levels(tmp_path):
    import pyloudnorm

    rate = 48000
    s = ag.speech(rate, seconds=3.0)
    x = np.stack([s, 0.7 * s])
    m = ld.Meter(rate, 2)
    for i in range(0, x.shape[1], 10000):
        m.feed(x[:, i:i + 10000])
    assert m.integrated() == pytest.approx(pyloudnorm.Meter(rate).integrated_loudness(x.T), abs=0.05)
    two = np.concatenate([0.02 * s, 0.3 * s])[None]  # a quiet scene, then a loud one
    out = ld.normalise(_ref(tmp_path, two, rate, "two.wav"), -20.0, -1.0, per="scene", cuts_s=[3.0])
    y = io.read_all(out)
    for a, b in [(0, 3 * rate), (3 * rate, 6 * rate)]:
        mm = ld.Meter(rate, 1)
        mm.feed(y[:, a:b])
        assert mm.integrated() == pytest.approx(-20.0, abs=1.0)


# ---------------------------------------------------------------------------------------------
# mix and replace


@needs_speech
def test_music_ducks_under_speech(tmp_path):
    rate = 48000
    s = ag.speech(rate, seconds=5.0)
    speech = np.concatenate([np.zeros(rate), s[: 3 * rate], np.zeros(rate)]).astype(np.float32)
    t = np.arange(len(speech)) / rate
    music = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    out = mx.mix_music(_ref(tmp_path, speech, rate), _ref(tmp_path, music, rate, "m.wav"),
                       music_db=-6.0, duck_db=-12.0, fade_s=0.0)
    y = io.read_all(out)[0]
    assert y.shape == speech.shape
    bed = y - speech
    quiet = np.std(bed[int(0.2 * rate): int(0.9 * rate)])
    talking = np.std(bed[int(2.0 * rate): int(3.0 * rate)])
    assert 20 * np.log10(quiet / np.std(music)) == pytest.approx(-6.0, abs=0.5)
    assert 20 * np.log10(talking / quiet) == pytest.approx(-12.0, abs=1.5)


def test_replace_fits_the_video_range(tmp_path):
    rate = 44100
    short = (0.2 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    out = mx.replace_track(_ref(tmp_path, np.stack([short, short]), rate), duration=2.5, fade_s=0.0)
    y = io.read_all(out)
    assert y.shape == (2, int(2.5 * rate))
    assert np.abs(y[:, rate + 10:]).max() == 0.0  # padded with silence


# ---------------------------------------------------------------------------------------------
# the nodes on a real stream: sync, laziness, interop, silent video


@needs_speech
def test_every_audio_node_keeps_sync_and_length(tmp_path):
    from nodes import audio as na

    rate, fps = 44100, 30
    marker = np.zeros(3 * rate, np.float32)
    s = ag.speech(rate, seconds=1.2)
    marker[int(1.5 * rate): int(1.5 * rate) + len(s)] = s / np.abs(s).max() * 0.6
    src = write_video(tmp_path / "talk.mp4", [colour_pattern(48, 64, i) for i in range(90)], fps=fps,
                      audio=(np.stack([marker, marker]), rate, "stereo"))
    ref_onset = audio_onset(save_video(open_video(src, start_time=0.5, end_time=2.5), "plain", speed="ultrafast"))[0]
    expected = np.nonzero(np.abs(marker) > 0.1)[0][0] / rate - 0.5  # the first word, in output time
    assert ref_onset == pytest.approx(expected, abs=1 / fps)
    music = _ref(tmp_path, 0.001 * np.ones((2, rate), np.float32), rate, "bed.wav")
    nodes = {
        "dfn3": lambda st: na.RemasterSpeechDenoise().run("deepfilternet3", frames=st),
        "rnnoise": lambda st: na.RemasterSpeechDenoise().run("rnnoise", frames=st),
        "hum": lambda st: na.RemasterHumRemove().run(frames=st),
        "loudness": lambda st: na.RemasterLoudness().run(frames=st),
        "mix": lambda st: na.RemasterAudioMix().run("mix", music_file=music.path, frames=st),
    }
    stream = open_video(src, start_time=0.5, end_time=2.5)
    for name, node in nodes.items():
        out, _ = node(stream)
        assert not io.is_rendered(out.info.audio), name  # lazy: nothing rendered yet
        path = save_video(out, f"sync_{name}", speed="ultrafast")
        onset, dur, ch = audio_onset(path)
        assert onset == pytest.approx(ref_onset, abs=1 / fps), name
        assert dur == pytest.approx(2.0, abs=0.05), name
        assert out.info.audio.duration == pytest.approx(2.0, abs=1e-6)


@needs_speech
def test_chain_renders_once_and_reuses(tmp_path):
    from nodes import audio as na

    rate = 48000
    s = ag.speech(rate, seconds=2.0)
    src = write_video(tmp_path / "v.mp4", [colour_pattern(32, 32)] * 20, fps=10,
                      audio=(np.stack([s, s]), rate, "stereo"))
    st = open_video(src)
    a, _ = na.RemasterHumRemove().run(frames=st)
    b, aud = na.RemasterLoudness().run(frames=a)
    assert not io.is_rendered(a.info.audio) and not io.is_rendered(b.info.audio)
    wave = aud["waveform"]  # reading the AUDIO output renders the chain
    assert wave.shape == (1, 2, 2 * rate) and aud["sample_rate"] == rate
    assert io.is_rendered(a.info.audio) and io.is_rendered(b.info.audio)
    p = io.raw_path(b.info.audio)
    mtime = os.stat(p).st_mtime_ns
    b2, _ = na.RemasterLoudness().run(frames=na.RemasterHumRemove().run(frames=st)[0])
    assert io.raw_path(b2.info.audio) == p and b2.info.audio.path == p
    assert os.stat(p).st_mtime_ns == mtime  # same chain, same file, not rendered again


def test_comfy_audio_in_and_out():
    from nodes import audio as na

    rate = 22050
    t = torch.arange(rate) / rate
    wave = torch.stack([0.1 * torch.sin(2 * torch.pi * 440 * t), 0.05 * torch.sin(2 * torch.pi * 660 * t)])[None]
    frames, out = na.RemasterLoudness().run(audio={"waveform": wave, "sample_rate": rate})
    assert frames is None
    assert out["sample_rate"] == rate and tuple(out["waveform"].shape) == (1, 2, rate)
    m = ld.Meter(rate, 2)
    m.feed(out["waveform"][0].numpy())
    assert m.integrated() == pytest.approx(-16.0, abs=0.5)


def test_silent_video_passes_through_with_a_warning(tmp_path, caplog):
    from nodes import audio as na

    src = write_video(tmp_path / "silent.mp4", [colour_pattern(32, 32)] * 5, fps=10)
    st = open_video(src)
    with caplog.at_level(logging.WARNING, logger="remaster.audio"):
        out, aud = na.RemasterSpeechDenoise().run(frames=st)
    assert out is st and "no audio" in caplog.text
    assert aud["waveform"].shape[-1] == 0
    with pytest.raises(ValueError, match="connect 'frames'"):
        na.RemasterHumRemove().run()
    beep = _ref(tmp_path, tone(1.0, 48000, at=0.2), 48000, "beep.wav")
    withm, _ = na.RemasterAudioMix().run("mix", music_file=beep.path, frames=st)  # music becomes the track
    assert io.read_all(withm.info.audio).shape == (2, 24000)


def test_blocks_are_bounded_and_exact(tmp_path):
    rate = 8000
    x = np.random.default_rng(0).standard_normal((1, 7 * rate + 123)).astype(np.float32) * 0.1
    ref = _ref(tmp_path, x, rate)
    sizes = [b.shape[1] for b in io.read_blocks(ref, block_seconds=1.0)]
    assert max(sizes) == rate and sum(sizes) == x.shape[1]
    part = io.read_all(ref.trimmed(2.0, 1.5))
    assert np.abs(part - x[:, 2 * rate: 2 * rate + int(1.5 * rate)]).max() < 1e-7
    long = io.read_all(AudioRef(path=ref.path, duration=9.0, sample_rate=rate, channels=1))
    assert long.shape == (1, 9 * rate) and np.abs(long[:, x.shape[1]:]).max() == 0
    with pytest.raises(ValueError, match="does not exist"):
        io.file_ref(tmp_path / "missing.mp3")


# ---------------------------------------------------------------------------------------------
# the shipped workflow


def test_restore_talk_workflow_end_to_end(tmp_path, clips_dir):
    """restore_talk: hum, denoise, loudness, upscale, RIFE, save, run by the CLI on a real talk clip
    (random-weight upscaler and RIFE in their official formats: this checks the wiring and the sound)."""
    import sys

    import av

    from conftest import ROOT, clip
    from remaster import host
    from remaster.headless.cli import main

    sys.path.insert(0, str(ROOT / "tests" / "models"))
    from spandrel.architectures.Compact import Compact
    from test_rife import official_state_dict

    torch.manual_seed(0)
    for folder, name, state in [("upscale_models", "realesr-general-x4v3.pth", {"params": Compact(num_conv=4, upscale=4).state_dict()}),
                                ("rife", "rife425.pth", official_state_dict("4.25"))]:
        d = host.model_dirs(folder)[0]
        d.mkdir(parents=True, exist_ok=True)
        torch.save(state, d / name)
    src = clip("talking_head_512_30_audio.mp4")
    out = tmp_path / "talk.mp4"
    code = main(["run", str(ROOT / "workflows" / "api" / "restore_talk.json"), "--input", str(src), "--output", str(out),
                 "--set", "Save Video.speed=ultrafast", "--set", "Load Video.end_time=1.0",
                 "--set", "Load Video.max_side=64", "--set", "Load Video.resize=max_side"])
    assert code == 0 and out.is_file()
    with av.open(str(out)) as c:
        assert c.streams.video[0].width == 128 and c.streams.audio
        a = c.streams.audio[0]
        x = np.concatenate([f.to_ndarray().reshape(a.channels, -1) if not f.format.is_planar else f.to_ndarray()
                            for f in c.decode(a)], axis=1)
    assert x.shape[1] / a.rate == pytest.approx(1.0, abs=0.05)
    m = ld.Meter(a.rate, a.channels)
    m.feed(x.astype(np.float32))
    assert m.integrated() == pytest.approx(-16.0, abs=1.0)  # after AAC


def test_interrupted_render_leaves_no_file_and_renders_later(tmp_path):
    from remaster import host

    rate = 16000
    x = (0.1 * np.sin(2 * np.pi * 50 * np.arange(5 * rate) / rate)).astype(np.float32)
    out = hm.remove_hum(_ref(tmp_path, x, rate), mains="50")
    host.request_interrupt()
    try:
        with pytest.raises(host.Interrupted):
            io.read_all(out)
    finally:
        host.clear_interrupt()
    assert not io.is_rendered(out)
    assert not list(io.cache_folder().glob("*.part.flac"))
    y = io.read_all(out)
    assert y.shape == (1, 5 * rate) and np.abs(y[0, rate:-rate // 10]).max() < 0.01  # the hum is gone


@needs_speech
def test_loudness_per_scene_uses_the_streams_cuts(tmp_path):
    from nodes import audio as na

    rate = 48000
    s = ag.speech(rate, seconds=3.0)
    a = np.concatenate([0.02 * s, 0.3 * s]).astype(np.float32)  # a quiet shot, then a loud one
    src = write_video(tmp_path / "two.mp4", [colour_pattern(32, 32)] * 60, fps=10,
                      audio=(np.stack([a, a]), rate, "stereo"))
    st = open_video(src).with_info(scene_cuts=(30,))
    out, _ = na.RemasterLoudness().run(target="custom", custom_lufs=-20.0, per="scene", frames=st)
    y = io.read_all(out.info.audio)
    for lo, hi in [(0, 3 * rate), (3 * rate, 6 * rate)]:
        m = ld.Meter(rate, 2)
        m.feed(y[:, lo:hi])
        assert m.integrated() == pytest.approx(-20.0, abs=1.0)


def test_long_audio_is_processed_in_bounded_memory(tmp_path):
    """Hum & Rumble then Loudness on 30 s and on 120 s of stereo: the render's peak memory does not
    grow with the length (blocks of one second; the hum analysis keeps 30 s at 4 kHz at most)."""
    import tracemalloc

    rate = 16000
    peaks = []
    for seconds in (30, 120):
        t = np.arange(seconds * rate) / rate
        x = (0.1 * np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 0.5 * t))
             + 0.05 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)
        ref = _ref(tmp_path, np.stack([x, x]), rate, f"long{seconds}.wav")
        del t, x
        out = ld.normalise(hm.remove_hum(ref), -23.0)
        tracemalloc.start()
        try:
            io.ensure(io.raw_path(out))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert io.is_rendered(out)
    assert peaks[1] < 1.1 * peaks[0], peaks  # four times the audio, the same peak
    assert peaks[1] < 20e6, peaks  # mostly the hum analysis's zoomed DFTs, whatever the length
