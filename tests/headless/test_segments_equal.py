"""A segmented render against the same workflow run in one go: the final encoder gets the same
YUV planes (passthrough and a pixel-changing frame-wise stage), lossless output is equal frame
for frame, temporal chains stay within the tolerance their declared warm-up allows, and an
audio stage is applied once, at the join."""
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import clip, shared_model
from videogen import colour_pattern, decode_all, write_video

from remaster import host
from remaster.headless.cli import main, node_mappings

ROOT = Path(__file__).resolve().parents[2]
SEGMENTED = ["--segment-seconds", "1", "--workers", "1"]


def node(class_type: str, upstream: str, **inputs) -> dict:
    """A node with every required input at its default (first choice for lists)."""
    spec = node_mappings()[class_type].INPUT_TYPES()["required"]
    values = {}
    for name, (kind, *opts) in spec.items():
        if isinstance(kind, list):
            values[name] = kind[0]
        elif opts and "default" in opts[0]:
            values[name] = opts[0]["default"]
    values["frames"] = [upstream, 0]
    values.update(inputs)
    return {"class_type": class_type, "inputs": values, "_meta": {"title": class_type}}


def chain(tmp_path: Path, *stages, fmt: str = "h264_mp4", load: dict | None = None) -> Path:
    """Load Video -> stages -> Save Video as an API workflow file."""
    base = json.loads((ROOT / "workflows" / "api" / "passthrough.json").read_text())
    prompt = {"1": base["1"]}
    prompt["1"]["inputs"].update(load or {})
    up = "1"
    for i, (ct, kw) in enumerate(stages, start=2):
        prompt[str(i)] = node(ct, up, **kw)
        up = str(i)
    save = base["2"]
    save["inputs"].update(frames=[up, 0], format=fmt)
    prompt[str(len(stages) + 2)] = save
    path = tmp_path / f"wf_{len(list(tmp_path.glob('wf_*')))}.json"
    path.write_text(json.dumps(prompt))
    return path


def both(tmp_path: Path, wf: Path, src: Path, ext: str = ".mp4", *extra) -> tuple:
    one, joined = tmp_path / f"one{ext}", tmp_path / f"joined{ext}"
    assert main(["run", str(wf), "--input", str(src), "--output", str(one), *extra]) == 0
    assert main(["run", str(wf), "--input", str(src), "--output", str(joined), *SEGMENTED, *extra]) == 0
    return one, joined


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "src.mp4"
    write_video(path, [colour_pattern(48, 64, i) for i in range(40)], fps=12)
    return path


LUT = ("RemasterApplyLUT", {"lut": "shipped/clean_studio.cube", "strength": 0.8})


@pytest.mark.parametrize("stages", [(), (LUT,)], ids=["passthrough", "lut"])
def test_the_join_hands_the_encoder_the_planes_of_a_single_run(tmp_path, src, monkeypatch, stages):
    from remaster.media import encode

    fed: dict = {}
    real = encode.encoder_frames

    def spy(chunk, spec, size, tags):
        for f in real(chunk, spec, size, tags):
            if spec["codec"] == "libx264":  # segments keep these frames, then the join's encoder gets them
                fed.setdefault(which, []).append(f.to_ndarray().copy())
            yield f

    monkeypatch.setattr(encode, "encoder_frames", spy)
    wf = chain(tmp_path, *stages)
    which = "one"
    assert main(["run", str(wf), "--input", str(src), "--output", str(tmp_path / "one.mp4")]) == 0
    which = "joined"
    assert main(["run", str(wf), "--input", str(src), "--output", str(tmp_path / "j.mp4"), *SEGMENTED]) == 0
    assert len(fed["one"]) == 40 and len(fed["joined"]) == 80  # 40 into the segments, 40 into the join
    assert all(np.array_equal(a, b) for a, b in zip(fed["one"], fed["joined"][40:]))


@pytest.mark.parametrize("stages", [(), (LUT,)], ids=["passthrough", "lut"])
def test_lossless_output_of_a_segmented_render_equals_the_single_run(tmp_path, src, stages):
    one, joined = both(tmp_path, chain(tmp_path, *stages, fmt="ffv1_mkv"), src, ".mkv")
    a, b = decode_all(one), decode_all(joined)
    assert a.shape == b.shape == (40, 48, 64, 3)
    assert np.array_equal(a, b)


def test_windowed_temporal_stages_are_exact_over_segment_boundaries(tmp_path, src):
    # Deflicker (look-ahead window) and the shipped grade_lut chain's Auto Colour (smoothed per shot)
    wf = chain(tmp_path, ("RemasterDeflicker", {"window_seconds": 1.0}),
               ("RemasterAutoColour", {"temporal": "smooth", "smoothing_seconds": 2.0}), fmt="ffv1_mkv")
    one, joined = both(tmp_path, wf, src, ".mkv")
    a, b = decode_all(one), decode_all(joined)
    assert a.shape == b.shape and np.array_equal(a, b)


def test_recurrent_matting_drifts_less_than_its_tolerance_after_a_segment_start(tmp_path):
    src = clip("talking_head_512_30_audio.mp4")
    d = host.model_dirs("matting")[0]
    d.mkdir(parents=True, exist_ok=True)
    (d / "rvm_mobilenetv3.pth").symlink_to(shared_model("matting/rvm_mobilenetv3.pth"))
    wf = chain(tmp_path, ("RemasterVideoMatting", {"model": "rvm_mobilenetv3.pth", "reset_at_cuts": True}),
               ("RemasterReplaceBackground", {"source": "color", "color": "#0000ff"}), fmt="ffv1_mkv",
               load={"end_time": 3.0, "resize": "max_side", "max_side": 96})
    one, joined = both(tmp_path, wf, src, ".mkv")
    a, b = decode_all(one).astype(np.int16), decode_all(joined).astype(np.int16)
    assert a.shape == b.shape and a.shape[0] == 90
    diff = np.abs(a - b)
    # segments start at 30 and 60, each after the warm-up RVM and its mask smoothing declare: the
    # tolerance is one 8-bit level at any pixel (measured: 0 at 96 and 128 px)
    assert diff.max() <= 1 and diff.mean() <= 0.01, (int(diff.max()), float(diff.mean()))


def test_an_audio_stage_is_applied_once_at_the_join(tmp_path):
    import av

    src = tmp_path / "hum.mp4"
    rate, n, fps = 16000, 36, 12
    t = np.arange(int(n / fps * rate)) / rate
    hum = 0.3 * np.sin(2 * np.pi * 50 * t) + 0.1 * np.sin(2 * np.pi * 440 * t)
    write_video(src, [colour_pattern(48, 64, i) for i in range(n)], fps=fps,
                audio=(np.repeat(hum[None].astype(np.float32), 2, 0), rate, "stereo"))
    wf = json.loads(chain(tmp_path).read_text())
    wf["3"] = wf.pop("2")
    wf["2"] = {"class_type": "RemasterHumRemove", "inputs": {"frames": ["1", 0], "mains": "50", "highpass_hz": 0.0},
               "_meta": {"title": "Hum"}}
    spec = node_mappings()["RemasterHumRemove"].INPUT_TYPES()["required"]
    for k, (kind, *o) in spec.items():
        wf["2"]["inputs"].setdefault(k, kind[0] if isinstance(kind, list) else o[0].get("default"))
    wf["3"]["inputs"]["frames"] = ["2", 0]
    (tmp_path / "hum.json").write_text(json.dumps(wf))
    one, joined = both(tmp_path, tmp_path / "hum.json", src)

    def sound(p):
        with av.open(str(p)) as c:
            return np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)

    a, b, raw = sound(one), sound(joined), sound(src)
    assert a.shape == b.shape
    assert np.abs(a - b).max() < 1e-3  # the same processed audio (AAC encoded once from it)

    def level_50hz(x):
        spec = np.abs(np.fft.rfft(x[0, rate // 2: rate // 2 + rate]))
        return spec[50] / spec[440]

    assert level_50hz(b) < 0.05 * level_50hz(raw)  # hum removed in the joined file, not the source audio
    assert not list(tmp_path.glob(".joined.mp4.segments"))
