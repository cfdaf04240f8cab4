"""Audio figures: speech denoise quality (SI-SDR, STOI) per method, noise type and SNR; hum
reduction; loudness accuracy; real-time factor per method.

    python bench/audio.py [--seconds 6] [--rtf-seconds 30] [--sheet docs/img/audio_denoise.png]

Speech is synthesised with espeak-ng (Debian package), the noises are made as in the tests
(``tests/audiogen.py``: white, pink, babble of six voices, 50 Hz hum with 8 harmonics, fan). Every
score runs the real stage path: a WAV on disk, read block-wise, the stage, FLAC out, read back.
Real-time factor = seconds of audio per second, best of ``--reps``, on one thread: by wall clock
and by the process's CPU time (the fairer figure on a shared, loaded machine).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import audiogen as ag  # noqa: E402

from remaster import host  # noqa: E402
from remaster.audio import denoise as dn  # noqa: E402
from remaster.audio import hum as hm  # noqa: E402
from remaster.audio import io  # noqa: E402
from remaster.audio import loudness as ld  # noqa: E402
from remaster.stream import AudioRef  # noqa: E402

RATE = 48000
MODELS = ("deepfilternet3", "rnnoise")  # shipped in their wheels; voice isolation is timed on its own


def ref_of(folder: Path, x: np.ndarray, rate: int, name: str) -> AudioRef:
    x = np.atleast_2d(x)
    p = ag.write_wav(folder / name, x, rate)
    return AudioRef(path=str(p), duration=x.shape[1] / rate, sample_rate=rate, channels=x.shape[0])


def quality(folder: Path, seconds: float) -> list[dict]:
    s = ag.speech(RATE, seconds=seconds)
    rows = []
    for kind in ag.NOISES:
        n = ag.noise(kind, len(s), RATE, seed=7)
        for snr in (0, 5, 10):
            x = ag.mix(s, n, snr)
            ref = ref_of(folder, x, RATE, f"{kind}_{snr}.wav")
            row = {"noise": kind, "snr": snr, "in_sdr": ag.si_sdr(x, s), "in_stoi": ag.stoi(x, s, RATE)}
            for m in MODELS:
                y = io.read_all(dn.denoise(ref, m))[0]
                row[m] = (ag.si_sdr(y, s) - row["in_sdr"], ag.stoi(y, s, RATE))
            y = io.read_all(hm.remove_hum(ref))[0]
            row["hum"] = (ag.si_sdr(y, s) - row["in_sdr"], ag.stoi(y, s, RATE))
            rows.append(row)
            print(f"  {kind:6s} {snr:2d} dB  " + "  ".join(
                f"{k}: {row[k][0]:+5.1f} dB / {row[k][1]:.3f}" for k in (*MODELS, "hum")), flush=True)
    return rows


def hum_figures(seconds: float) -> list[tuple]:
    s = ag.speech(RATE, seconds=seconds)
    out = []
    for mains in (50.0, 60.0):
        h = ag.noise("hum", len(s), RATE, mains=mains)
        h *= np.sqrt(np.mean(s**2) / np.mean(h**2))
        f = hm.HumFilter(RATE, 1)
        f.analyse(lambda: iter([(s + h)[None]]))
        yh, ys = f.filtered(h, 9600), f.filtered(s, 9600)
        k0 = RATE // 2
        spec = lambda v: np.abs(np.fft.rfft(v[k0:] * np.hanning(len(v) - k0)))  # noqa: E731
        fr = np.fft.rfftfreq(len(s) - k0, 1 / RATE)
        a, b = spec(h), spec(yh)
        red = [20 * np.log10(a[np.argmin(abs(fr - k * mains))] / b[np.argmin(abs(fr - k * mains))]) for k in range(1, 9)]
        from scipy import signal

        bands = []
        for lo, hi in [(250, 500), (500, 1000), (1000, 2000), (2000, 4000)]:
            sos = signal.butter(4, [lo, hi], "bandpass", fs=RATE, output="sos")
            bands.append(10 * np.log10(np.mean(signal.sosfilt(sos, ys) ** 2) / np.mean(signal.sosfilt(sos, s) ** 2)))
        out.append((mains, f.found, min(red), max(abs(v) for v in bands)))
    return out


def loudness_figures(folder: Path, seconds: float) -> list[tuple]:
    out = []
    for rate, ch in [(8000, 1), (48000, 2), (48000, 6)]:
        s = 0.05 * ag.speech(rate, seconds=seconds)
        x = np.stack([s * (1 - 0.1 * c) for c in range(ch)])
        ref = ref_of(folder, x, rate, f"loud_{rate}_{ch}.wav")
        for target in (-16.0, -23.0):
            y = io.read_all(ld.normalise(ref, target, -1.0))
            m = ld.Meter(rate, ch)
            m.feed(y)
            out.append((rate, ch, target, m.integrated(), ld.true_peak_db(y, rate)))
    return out


def c_call_rtf(method: str, x: np.ndarray) -> tuple[float, float]:
    """Real-time factor of the library's own frame call alone (thread CPU time; 1 s chunks):
    (best chunk, mean). The Python loop around it costs under 1 µs a frame."""
    m = dn._model(method)
    y = np.ascontiguousarray(x * (32768.0 if method == "rnnoise" else 1.0), np.float32)
    z = np.empty_like(y)
    px, pz, chunks = y.ctypes.data, z.ctypes.data, []
    if method == "rnnoise":  # rnnoise_process_frame(state, out, in); df_process_frame(state, in, out)
        px, pz = pz, px
    call = m.lib.rnnoise_process_frame if method == "rnnoise" else m.lib.df_process_frame
    for j in range(0, len(y) // RATE * RATE, RATE):
        t = time.thread_time()
        for i in range(4 * j, 4 * (j + RATE), 4 * dn.FRAME):
            call(m.st, px + i, pz + i)
        chunks.append(time.thread_time() - t)
    return 1.0 / min(chunks), len(chunks) / sum(chunks)


def isolation_rtf(folder: Path, x: np.ndarray) -> list[float]:
    """Voice isolation speed with a random-init HT-Demucs of the published size (default
    architecture, 7.8 s segments; speed does not depend on the weights), saved in the real format."""
    import json
    from fractions import Fraction

    import torch
    from demucs.htdemucs import HTDemucs
    from safetensors.torch import save_file

    from remaster.audio import separate as sep
    from remaster.models import registry

    kwargs = {"sources": ["drums", "bass", "other", "vocals"], "segment": Fraction(39, 5)}
    model = HTDemucs(**kwargs)
    host.set_dirs(models_dir=str(folder / "models"), temp_dir=str(folder))
    path = host.model_dirs(sep.FOLDER)[0] / registry.entry(sep.MODEL_ID).filename
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"klass": sep.KLASS, "args": "[]",
            "kwargs": json.dumps({"sources": kwargs["sources"], "segment": {"_type": "fraction", "numerator": 39, "denominator": 5}})}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)
    print(f"  HT-Demucs: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters", flush=True)
    m = sep.load(path)
    seg = torch.zeros(1, 2, int(m.segment * m.samplerate))
    w, c = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        m(seg)
    w, c = time.perf_counter() - w, time.process_time() - c
    seconds = len(x) / RATE
    ref = ref_of(folder, x, RATE, "rtf_isolation.wav")
    w2, c2 = time.perf_counter(), time.process_time()
    io.read_all(dn.denoise(ref, "voice_isolation"))
    w2, c2 = time.perf_counter() - w2, time.process_time() - c2
    hop = float(m.segment) * 0.75  # new audio per segment run (a quarter overlaps)
    return [hop / w, hop / c, seconds / w2, seconds / c2]


def rtf(folder: Path, seconds: float, reps: int) -> list[tuple]:
    s = ag.speech(RATE, seconds=seconds)
    x = ag.mix(s, ag.noise("white", len(s), RATE), 5)
    rows = []
    def timed(fn) -> tuple[float, float]:
        w, c = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - w, time.process_time() - c

    for m in MODELS:
        model, path = [], []
        for r in range(reps):
            st = dn.Denoiser(m, 1)
            model.append(timed(lambda: [st.process(x[None, i:i + 2 * RATE]) for i in range(0, len(x), 2 * RATE)]))
            ref = ref_of(folder, x, RATE, f"rtf_{m}_{r}.wav")  # a new file each time: no reuse
            path.append(timed(lambda: io.read_all(dn.denoise(ref, m))))
        rows.append((m, *c_call_rtf(m, x), *[seconds / min(t[k] for t in model) for k in (0, 1)],
                     *[seconds / min(t[k] for t in path) for k in (0, 1)]))
    nan = float("nan")
    rows.append(("voice_isolation", nan, nan, *isolation_rtf(folder, x[: int(min(seconds, 16.0) * RATE)])))
    for name, fn in [("hum", lambda r: hm.remove_hum(r)), ("loudness", lambda r: ld.normalise(r, -16.0))]:
        path = []
        for r in range(reps):
            ref = ref_of(folder, x, RATE, f"rtf_{name}_{r}.wav")
            path.append(timed(lambda: io.read_all(fn(ref))))
        rows.append((name, nan, nan, nan, nan, *[seconds / min(t[k] for t in path) for k in (0, 1)]))
    return rows


def sheet(folder: Path, path: Path, seconds: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = ag.speech(RATE, seconds=seconds)
    n = ag.mix(s, ag.noise("fan", len(s), RATE, seed=2), 5) - s
    hum = ag.noise("hum", len(s), RATE) * np.std(s) * 0.5
    x = (s + n + hum).astype(np.float32)
    ref = ref_of(folder, x, RATE, "sheet.wav")
    cleaned = dn.denoise(hm.remove_hum(ref), "deepfilternet3")
    panels = [("noisy: fan 5 dB SNR + 50 Hz hum", x), ("Hum & Rumble → Speech Denoise (DFN3)", io.read_all(cleaned)[0]),
              ("RNNoise only", io.read_all(dn.denoise(ref, "rnnoise"))[0]), ("clean speech", s)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 8), sharex=True)
    floor = 1e-6 * np.random.default_rng(0).standard_normal(len(s))  # display only: no log(0) holes
    for ax, (title, v) in zip(axes, panels):
        ax.specgram(v + floor, NFFT=1024, Fs=RATE, noverlap=768, cmap="magma", vmin=-140, vmax=-30)
        ax.set_ylim(0, 8000)
        score = "" if v is s else f"   SI-SDR {ag.si_sdr(v, s):+.1f} dB"
        ax.set_title(title + score, fontsize=9)
        ax.set_ylabel("Hz")
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rtf-seconds", type=float, default=30.0)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--sheet", type=Path)
    ap.add_argument("--only", choices=["quality", "hum", "loudness", "rtf", "sheet"])
    a = ap.parse_args()
    if not ag.have_espeak():
        sys.exit("needs espeak-ng (apt-get install espeak-ng)")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        host.set_dirs(temp_dir=str(folder))
        if a.only in (None, "quality"):
            print("\n## Speech denoise: SI-SDR improvement (dB) / STOI after, per noise and input SNR")
            rows = quality(folder, a.seconds)
            print("\n| noise | SNR in | SI-SDR in | STOI in | DFN3 ΔSI-SDR | DFN3 STOI | RNNoise ΔSI-SDR | RNNoise STOI |")
            print("|---|---|---|---|---|---|---|---|")
            for r in rows:
                print(f"| {r['noise']} | {r['snr']} dB | {r['in_sdr']:.1f} | {r['in_stoi']:.3f} | "
                      f"{r['deepfilternet3'][0]:+.1f} | {r['deepfilternet3'][1]:.3f} | "
                      f"{r['rnnoise'][0]:+.1f} | {r['rnnoise'][1]:.3f} |")
            hum_rows = [r for r in rows if r["noise"] == "hum"]
            print("\nHum & Rumble on the hum rows (ΔSI-SDR / STOI): " + ", ".join(
                f"{r['snr']} dB: {r['hum'][0]:+.1f} / {r['hum'][1]:.3f}" for r in hum_rows))
        if a.only in (None, "hum"):
            print("\n## Hum: least reduction over harmonics 1-8, largest speech-band change")
            for mains, found, red, band in hum_figures(a.seconds):
                print(f"| {mains:.0f} Hz | found {found:.3f} Hz | ≥ {red:.1f} dB | ≤ {band:.2f} dB |")
        if a.only in (None, "loudness"):
            print("\n## Loudness: target, result, true peak (limit -1 dBTP)")
            for rate, ch, target, got, tp in loudness_figures(folder, a.seconds):
                print(f"| {rate} Hz × {ch} | {target:.0f} LUFS | {got:.2f} LUFS | {tp:.2f} dBTP |")
        if a.only in (None, "rtf"):
            print(f"\n## Real-time factor ({a.rtf_seconds:.0f} s of 48 kHz mono), load average {os.getloadavg()[0]:.1f}")
            print("| stage | C call alone, best 1 s | C call alone, mean | model alone, wall | model alone, CPU "
                  "| whole path, wall | whole path, CPU |")
            print("|---|---|---|---|---|---|---|")
            for name, *v in rtf(folder, a.rtf_seconds, a.reps):
                print(f"| {name} | " + " | ".join("—" if f != f else f"{f:.1f}x" for f in v) + " |")
        if a.sheet is not None or a.only == "sheet":
            sheet(folder, a.sheet or ROOT / "docs/img/audio_denoise.png", a.seconds)


if __name__ == "__main__":
    main()
