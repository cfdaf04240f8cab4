"""Video in and out on real clips and on files made here: colour, audio sync, rotation, VFR,
odd inputs, atomic output."""
from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import clip
from videogen import audio_onset, colour_pattern, decode_all, tone, write_video

from remaster import host
from remaster.media import decode
from remaster.media.decode import VideoError, open_video
from remaster.media.encode import EncodeError, save_video
from remaster.stream import from_tensor


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_rgb(path: Path, w: int, h: int) -> np.ndarray:
    """Decode with the ffmpeg command line (as a player would, honouring colour tags)."""
    raw = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        check=True, capture_output=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def outputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
def test_colour_round_trip_within_one_level(tmp_path):
    h, w = 128, 192
    pattern = [colour_pattern(h, w, i) for i in range(6)]
    src = write_video(tmp_path / "pattern.mp4", pattern, fps=25, options={"crf": "0", "preset": "ultrafast"})
    stream = open_video(src)
    assert stream.info.color_matrix == "bt709"
    first = stream.read().frames.numpy()
    out = save_video(stream, "rt", fmt="h264_mp4", crf=0, speed="ultrafast")
    again = open_video(out).read().frames.numpy()
    diff = (again - first) * 255
    # 4:2:0 cannot carry a saturated colour step inside a 2-pixel chroma block: leave out a
    # 3-pixel band around the bar edges; everything else (flat colours, gradients) must be
    # within one level, with no drift of any channel (the classic "colour shift").
    keep = np.ones((h, w), bool)
    bar_w = w // 8
    edges = [(k * bar_w + 2 * i) % w for k in range(9) for i in range(6)]
    for e in edges:
        keep[: h // 2, max(0, e - 3) : e + 3] = False
    keep[h // 2 - 3 : h // 2 + 3] = False
    assert np.abs(diff[:, keep]).mean() < 1.0
    assert np.all(np.abs(diff.mean(axis=(0, 1, 2))) < 0.25), diff.mean(axis=(0, 1, 2))
    # the whole picture, bar edges included, is no worse than an RGB round trip through the
    # ffmpeg command line (decode to rgb24, encode back to BT.709 yuv420p)
    rgb = ffmpeg_rgb(src, w, h)
    ref_out = tmp_path / "ffmpeg_rt.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", "25",
                    "-i", "-", "-vf", "scale=out_color_matrix=bt709:out_range=tv", "-c:v", "libx264", "-crf", "0",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-colorspace", "bt709", "-color_primaries", "bt709",
                    "-color_trc", "bt709", "-color_range", "tv", str(ref_out)], input=rgb.tobytes(), check=True)
    truth = np.stack(pattern).astype(np.float64)
    theirs = np.abs(ffmpeg_rgb(ref_out, w, h) - truth).mean()
    ours = np.abs(ffmpeg_rgb(out, w, h) - truth).mean()
    assert ours <= theirs * 1.1 + 0.1, (ours, theirs)
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (int(cc.colorspace), int(cc.color_primaries), int(cc.color_trc), int(cc.color_range)) == (1, 1, 1, 1)


def test_lossless_formats_round_trip_exactly(tmp_path):
    x = torch.rand(4, 34, 50, 3)
    s = from_tensor(x, 24)
    q = (x * 255).round() / 255
    ffv1 = open_video(save_video(s, "ll", fmt="ffv1_mkv")).read().frames
    assert torch.allclose(ffv1, q, atol=1e-6, rtol=0)  # exact 8-bit levels
    folder = save_video(s, "seq", fmt="png_sequence")
    files = sorted(folder.glob("*.png"))
    assert len(files) == 4
    import cv2

    img = cv2.imread(str(files[2]), cv2.IMREAD_UNCHANGED)[..., ::-1].astype(np.float32) / 65535
    assert np.abs(img - x[2].numpy()).max() < 1e-4


def test_tone_lands_at_the_same_time(tmp_path):
    rate, fps = 44100, 30
    src = write_video(
        tmp_path / "beep.mp4",
        [np.full((48, 64, 3), 255 if i == 45 else 0, np.uint8) for i in range(90)],
        fps=fps,
        audio=(tone(3.0, rate, at=1.5), rate, "stereo"),
    )
    stream = open_video(src, start_time=0.5, end_time=2.5)
    assert stream.info.frame_count == 60
    for fmt in ("h264_mp4", "prores_422hq_mov", "vp9_webm"):
        out = save_video(stream, f"sync_{fmt}", fmt=fmt, speed="ultrafast")
        onset, dur, _ = audio_onset(out)
        assert onset == pytest.approx(1.0, abs=1 / fps), fmt
        assert dur == pytest.approx(2.0, abs=0.05), fmt
        flash = int(np.argmax(decode_all(out).mean(axis=(1, 2, 3))))
        assert abs(flash / fps - onset) <= 1 / fps, fmt


def test_rotation_metadata_comes_out_upright(tmp_path):
    img = np.zeros((48, 80, 3), np.uint8)
    img[:16, :16] = (255, 0, 0)  # red square top-left
    src = write_video(tmp_path / "plain.mp4", [img] * 3, fps=10, options={"crf": "0"})
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-display_rotation", "90", "-i", str(src), "-c", "copy", str(rotated)],
        check=True,
    )
    # ffmpeg's own autorotation is the reference for "upright"
    ref = ffmpeg_rgb(rotated, 48, 80)[0].astype(np.float32) / 255
    s = open_video(rotated)
    assert (s.info.width, s.info.height) == (48, 80)
    got = s.read().frames[0].numpy()
    assert np.abs(got - ref).mean() < 0.02
    # and the original is not upright when rotation is ignored
    raw = open_video(rotated, auto_rotate=False)
    assert (raw.info.width, raw.info.height) == (80, 48)


def test_vfr_becomes_cfr_with_the_right_duration(tmp_path):
    # 40 frames with irregular gaps (phone-like), each frame a distinct grey level
    rng = np.random.default_rng(0)
    gaps = rng.choice([1, 2, 3], size=40)  # in 1/60 s
    pts = np.concatenate([[0], np.cumsum(gaps)[:-1]]).tolist()
    levels = np.linspace(20, 230, 40).astype(np.uint8)
    frames = [np.full((32, 32, 3), lv, np.uint8) for lv in levels]
    src = write_video(tmp_path / "vfr.mkv", frames, fps=60, pts=pts, time_base=Fraction(1, 60), fmt="matroska",
                      options={"crf": "0"})
    p = decode.probe(src)
    assert p.vfr
    s = open_video(src, force_fps=30)
    true_dur = (pts[-1] + gaps[-1]) / 60
    assert s.info.fps == 30
    assert abs(s.info.frame_count - true_dur * 30) <= 1.5
    got = s.read().frames[:, 0, 0, 0].numpy() * 255
    # each output frame shows the source frame nearest its time
    times = np.array(pts) / 60
    for i, g in enumerate(got):
        t = i / 30
        dist = np.abs(times - t)
        near = np.nonzero(dist <= dist.min() + 0.002)[0]  # Matroska stores milliseconds: ties may round either way
        assert min(abs(g - float(levels[k])) for k in near) <= 2.5, (i, g, levels[near])


def test_odd_size_is_padded_or_cropped_and_lossless_keeps_it(tmp_path, caplog):
    frames = [colour_pattern(75, 101, i) for i in range(3)]
    src = write_video(tmp_path / "odd.mkv", frames, fps=10, codec="ffv1", pix_fmt="bgr0", fmt="matroska")
    s = open_video(src)
    assert (s.info.width, s.info.height) == (101, 75)
    orig = s.read().frames
    with caplog.at_level("WARNING", logger="remaster.media"):
        padded = open_video(save_video(s, "odd", fmt="h264_mp4", crf=0, speed="ultrafast"))
    assert any("padded to 102x76" in r.getMessage() for r in caplog.records)
    assert (padded.info.width, padded.info.height) == (102, 76)
    got = padded.read().frames
    assert (got[:, :75, :101] - orig).abs().mean() < 3 / 255  # the picture itself (4:2:0 chroma loss only)
    # the added column and row repeat the edge
    assert (got[:, :75, 101] - orig[:, :, 100]).abs().mean() < 3 / 255
    assert (got[:, 75, :101] - orig[:, 74]).abs().mean() < 3 / 255
    cropped = open_video(save_video(s, "odd", fmt="h265_mp4", speed="ultrafast", odd_size="crop"))
    assert (cropped.info.width, cropped.info.height) == (100, 74)
    ok = save_video(s, "odd", fmt="ffv1_mkv")
    assert (open_video(ok).info.width, open_video(ok).info.height) == (101, 75)
    assert (open_video(ok).read().frames - orig).abs().max() < 1e-6
    with pytest.raises(EncodeError, match="odd_size"):
        save_video(s, "odd", odd_size="stretch")
    resized = open_video(src, max_side=64)
    assert resized.info.width % 2 == 0 and resized.info.height % 2 == 0


def test_no_audio_and_surround_audio(tmp_path):
    silent = write_video(tmp_path / "silent.mp4", [colour_pattern(32, 32)] * 5, fps=10)
    s = open_video(silent)
    assert s.info.audio is None
    out = save_video(s, "silent")
    with av.open(str(out)) as c:
        assert not c.streams.audio
    rate = 48000
    six = write_video(tmp_path / "surround.mp4", [colour_pattern(32, 32)] * 20, fps=10,
                      audio=(tone(2.0, rate, at=0.5, channels=6), rate, "5.1"))
    out = save_video(open_video(six), "surround")
    onset, dur, ch = audio_onset(out)
    assert ch == 6
    assert onset == pytest.approx(0.5, abs=0.1)


def test_truncated_and_zero_frame_files_give_clear_errors(tmp_path):
    good = write_video(tmp_path / "good.mp4", [colour_pattern(64, 64, i) for i in range(30)], fps=10)
    data = good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # moov atom is at the end: the header is gone
    with pytest.raises(VideoError, match="truncated|cannot open|no video"):
        open_video(cut)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        open_video(empty)
    # a container with a video stream but no frames
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=32x32:r=10", "-frames:v", "0",
                    "-c:v", "ffv1", str(tmp_path / "zero.mkv")], check=True)
    with pytest.raises(VideoError, match="no video frames|cannot open"):
        open_video(tmp_path / "zero.mkv")
    with pytest.raises(VideoError, match="not found"):
        open_video(tmp_path / "missing.mp4")
    assert outputs(host.output_dir()) == []


def test_faststart_truncated_file_decodes_what_is_there(tmp_path):
    src = write_video(tmp_path / "good.mp4", [colour_pattern(64, 64, i) for i in range(40)], fps=10)
    fast = tmp_path / "fast.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(src), "-c", "copy", "-movflags", "+faststart", str(fast)], check=True)
    data = fast.read_bytes()
    cut = tmp_path / "cut_fast.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    try:
        s = open_video(cut)
    except VideoError:
        return  # a clear error is acceptable
    out = save_video(s, "salvage", speed="ultrafast")
    assert open_video(out).info.frame_count == s.info.frame_count


def test_interrupt_leaves_no_file(tmp_path):
    s = from_tensor(torch.rand(40, 32, 32, 3), 10).rechunked(4)

    def stop_midway(info):
        if info["done"] >= 12 and not info.get("closed"):
            host.request_interrupt()

    host.add_progress_listener(stop_midway)
    try:
        with pytest.raises(host.Interrupted):
            save_video(s, "stopped")
    finally:
        host.remove_progress_listener(stop_midway)
        host.clear_interrupt()
    assert outputs(host.output_dir()) == []


def test_never_overwrites_and_counts_up():
    s = from_tensor(torch.rand(2, 16, 16, 3), 10)
    a = save_video(s, "same/name")
    b = save_video(s, "same/name")
    assert a != b and a.exists() and b.exists()
    assert a.name == "name_00001.mp4" and b.name == "name_00002.mp4"
    with pytest.raises(EncodeError, match="leaves the output folder"):
        save_video(s, "../escape")


def test_trim_every_nth_and_seek_on_a_real_clip(clips_dir):
    path = clip("juggle_720p24.mp4")
    full = open_video(path, max_side=320)
    assert full.info.frame_count == 247 and full.info.fps == 24
    part = open_video(path, start_time=5.0, end_time=6.0, max_side=320)
    assert part.info.frame_count == 24
    a = part.read().frames
    b = full.read(120, 144).frames
    assert (a - b).abs().max() < 1e-6  # seeking is frame-accurate
    nth = open_video(path, start_time=5.0, end_time=6.0, every_nth=3, max_side=320)
    assert nth.info.fps == 8 and nth.info.frame_count == 8
    assert (nth.read().frames - b[::3]).abs().max() < 1e-6


def test_real_clip_with_audio_keeps_duration(clips_dir):
    path = clip("fullbody_720x1080_25_audio.mp4")
    s = open_video(path, max_side=360, end_time=2.0)
    assert s.info.frame_count == 50 and s.info.audio is not None
    out = save_video(s, "fullbody", speed="ultrafast")
    _, dur, ch = audio_onset(out)
    assert dur == pytest.approx(2.0, abs=0.05) and ch == 2
    assert open_video(out).info.frame_count == 50


def test_ten_bit_source_keeps_its_precision(tmp_path):
    # a gentle 10-bit ramp: an 8-bit decode would collapse neighbouring levels
    ramp = tmp_path / "ramp10.mkv"
    x = np.linspace(0x4000, 0x4800, 256)  # 16-bit values spanning ≈ 8 levels of 8 bits
    img = np.ascontiguousarray(np.broadcast_to(x[None, :, None], (64, 256, 3)).astype(np.uint16))
    out = av.open(str(ramp), "w")
    v = out.add_stream("ffv1", rate=10)
    v.width, v.height, v.pix_fmt = 256, 64, "yuv444p10le"
    f = av.VideoFrame.from_ndarray(img, format="rgb48le").reformat(format="yuv444p10le", dst_colorspace="ITU709",
                                                                 dst_color_range="MPEG")
    for p in v.encode(f):
        out.mux(p)
    for p in v.encode(None):
        out.mux(p)
    out.close()
    s = open_video(ramp)
    assert s.info.bit_depth == 10
    levels = torch.unique(s.read().frames[0, ..., 1])
    assert len(levels) > 12  # ≈ 8 levels in 8 bits, ≈ 32 in 10 bits
    out = save_video(s, "ten", fmt="h265_10bit_mp4", speed="ultrafast", crf=0)
    again = open_video(out)
    assert again.info.bit_depth == 10
    assert len(torch.unique(again.read().frames[0, ..., 1])) > 12


def test_alpha_kept_as_mask_or_dropped(tmp_path):
    rgba = np.zeros((2, 32, 48, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :, :24, 3] = 255  # left half opaque
    path = tmp_path / "alpha.mkv"
    out = av.open(str(path), "w")
    v = out.add_stream("ffv1", rate=10)
    v.width, v.height, v.pix_fmt = 48, 32, "bgra"
    for i in range(2):
        for p in v.encode(av.VideoFrame.from_ndarray(rgba[i], format="rgba").reformat(format="bgra")):
            out.mux(p)
    for p in v.encode(None):
        out.mux(p)
    out.close()
    kept = open_video(path, alpha="mask")
    assert kept.info.has_mask
    m = kept.read().mask
    assert m[:, :, :24].min() == 1.0 and m[:, :, 24:].max() == 0.0
    dropped = open_video(path)
    assert not dropped.info.has_mask and dropped.read().mask is None
    with pytest.raises(VideoError, match="alpha must be"):
        open_video(path, alpha="keep")


def test_saved_videos_carry_the_workflow_and_load_video_reads_it(tmp_path):
    import shutil

    from nodes.video_io import RemasterSaveVideo
    from remaster import routes

    src = write_video(tmp_path / "plain.mp4", [colour_pattern(48, 64, i) for i in range(4)], fps=10)
    prompt = {"1": {"class_type": "RemasterLoadVideo", "inputs": {}}, "2": {"class_type": "RemasterSaveVideo", "inputs": {}}}
    workflow = {"nodes": [{"id": 1}, {"id": 2}], "links": []}
    for fmt in ("h264_mp4", "prores_422hq_mov", "vp9_webm", "ffv1_mkv"):
        res = RemasterSaveVideo().save(open_video(src), f"wf_{fmt}", fmt, speed="ultrafast", prompt=prompt,
                                       extra_pnginfo={"workflow": workflow})
        out = Path(res["result"][0])
        tags = decode.embedded(decode.probe(out))
        assert tags["prompt"] == prompt and tags["workflow"] == workflow, fmt
        assert tags["remaster"]["source"] == "plain.mp4" and tags["remaster"]["colour"]["matrix"] == "bt709"
    # Load Video's facts (the web UI's info route) say what made the file and how colours are read
    shutil.copy(out, host.input_dir() / "made.mkv")
    facts = routes.video_info({"filename": "made.mkv"})["source"]
    assert "ComfyUI workflow embedded (2 nodes)" in facts["made_by"] and "Remaster chain" in facts["made_by"]
    assert facts["colour"] == "bgr0, 8-bit RGB"
    # a plain save (API/CLI, no prompt) still records the Remaster chain
    plain = save_video(open_video(src), "plain", speed="ultrafast")
    assert "remaster" in decode.embedded(decode.probe(plain))
    assert "bt709" in routes.video_info({"filename": str(plain.name), "type": "output"})["source"]["colour"]
