"""Colour of every kind of source: 8/10/12-bit, 4:2:0/4:2:2/4:4:4, limited/full range, BT.601/709/2020,
tagged or untagged, HDR PQ/HLG. Test files are made by the ffmpeg command line (its own RGB → YUV),
one per combination, so our decoder is checked against an independent encoder."""
from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import CLIPS
from videogen import colour_pattern

from remaster.media import hdr
from remaster.media.decode import open_video, probe
from remaster.media.encode import save_video


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


W, H, N = 64, 48, 5

# name: (size, codec args, pix_fmt, matrix for RGB→YUV, range, tags (None = untagged), expected decoded matrix)
COMBOS = {
    "h264_420_709": ((W, H), ["-c:v", "libx264", "-qp", "0"], "yuv420p", "bt709", "tv", "bt709", "bt709"),
    "h264_420_untagged_sd": ((W, H), ["-c:v", "libx264", "-qp", "0"], "yuv420p", "bt601", "tv", None, "smpte170m"),
    "h264_420_untagged_hd": ((1280, 720), ["-c:v", "libx264", "-qp", "0"], "yuv420p", "bt709", "tv", None, "bt709"),
    "h264_420_601_full": ((W, H), ["-c:v", "libx264", "-qp", "0"], "yuv420p", "bt601", "pc", "smpte170m", "smpte170m"),
    "h264_422_709": ((W, H), ["-c:v", "libx264", "-qp", "0"], "yuv422p", "bt709", "tv", "bt709", "bt709"),
    "h264_444_709": ((W, H), ["-c:v", "libx264", "-qp", "0"], "yuv444p", "bt709", "tv", "bt709", "bt709"),
    "hevc10_420_709": ((W, H), ["-c:v", "libx265", "-x265-params", "lossless=1:log-level=error"], "yuv420p10le", "bt709", "tv", "bt709", "bt709"),
    "hevc10_422_601": ((W, H), ["-c:v", "libx265", "-x265-params", "lossless=1:log-level=error"], "yuv422p10le", "bt601", "tv", "smpte170m", "smpte170m"),
    "hevc10_444_709": ((W, H), ["-c:v", "libx265", "-x265-params", "lossless=1:log-level=error"], "yuv444p10le", "bt709", "tv", "bt709", "bt709"),
    "hevc12_420_709": ((W, H), ["-c:v", "libx265", "-x265-params", "lossless=1:log-level=error"], "yuv420p12le", "bt709", "tv", "bt709", "bt709"),
    "hevc10_420_2020_sdr": ((W, H), ["-c:v", "libx265", "-x265-params", "lossless=1:log-level=error"], "yuv420p10le", "bt2020", "tv", "bt2020nc", "bt2020nc"),
    "prores_422_10": ((W, H), ["-c:v", "prores_ks", "-profile:v", "3"], "yuv422p10le", "bt709", "tv", "bt709", "bt709"),
    "ffv1_420_10_untagged_sd": ((W, H), ["-c:v", "ffv1"], "yuv420p10le", "bt601", "tv", None, "smpte170m"),
}
_PRIM = {"bt709": "bt709", "smpte170m": "smpte170m", "bt2020nc": "bt2020"}
_TRC = {"bt709": "bt709", "smpte170m": "smpte170m", "bt2020nc": "bt2020-10"}


def pattern(w: int, h: int) -> np.ndarray:
    return np.stack([colour_pattern(h, w, i) for i in range(N)])


def make(path: Path, rgb: np.ndarray, codec: list, pix_fmt: str, matrix: str, rng: str, tags, fps: int = 5,
         in_fmt: str = "rgb24", trc: str = "", prim: str = "") -> Path:
    n, h, w = rgb.shape[:3]
    vf = f"scale=out_color_matrix={matrix}:out_range={'full' if rng == 'pc' else 'tv'}:flags=bicubic+accurate_rnd+full_chroma_int"
    tag_args = []
    if tags:  # on the frames (newer ffmpeg takes the frames' tags over the encoder options)
        prim, trc = prim or _PRIM[tags], trc or _TRC[tags]
        vf += f",setparams=colorspace={tags}:color_primaries={prim}:color_trc={trc}"
        tag_args = ["-colorspace", tags, "-color_primaries", prim, "-color_trc", trc, "-color_range", rng]
    else:
        vf += ",setparams=colorspace=unknown:color_primaries=unknown:color_trc=unknown"
        if rng == "pc":
            tag_args = ["-color_range", "pc"]
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", in_fmt, "-s", f"{w}x{h}", "-r", str(fps),
                    "-i", "-", "-vf", vf, *codec, "-pix_fmt", pix_fmt, *tag_args, str(path)],
                   input=rgb.tobytes(), check=True)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("colour_sources")
    out = {}
    for name, (size, codec, pix_fmt, matrix, rng, tags, _) in COMBOS.items():
        truth = pattern(*size)
        ext = ".mov" if "prores" in name else (".mkv" if "ffv1" in name else ".mp4")
        out[name] = (make(d / f"{name}{ext}", truth, codec, pix_fmt, matrix, rng, tags), truth)
    return out


def ours(path, **kw) -> np.ndarray:
    return open_video(path, **kw).read().frames.numpy().astype(np.float64) * 255


def ffmpeg_reencode(src: Path, dst: Path, codec: list, pix_fmt: str) -> Path:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(src), *codec, "-pix_fmt", pix_fmt, str(dst)], check=True)
    return dst


@pytest.mark.parametrize("name", list(COMBOS))
def test_decoded_colour_matches_the_picture_and_passthrough_keeps_it(name, sources, tmp_path):
    src, truth = sources[name]
    size, codec, pix_fmt, matrix, rng, tags, expect_matrix = COMBOS[name]
    p = probe(src)
    assert p.color_matrix == expect_matrix, p
    assert p.matrix_guessed == (tags is None)
    assert ("guessed" in open_video(src).info.get_extra("colour")) == (tags is None)
    assert p.color_range == rng
    got = ours(src)
    truth = truth.astype(np.float64)
    # colours as encoded by ffmpeg's own RGB → YUV: only rounding and (where subsampled) the
    # chroma resolution differ. 4:4:4 must match everywhere; subsampled sources on the smooth
    # gradients (the bars' edges cannot survive halved chroma). ffmpeg's full-range encode is
    # itself ≈0.8 level off (its own decoder shows the same), hence the bias bound.
    err = np.abs(got - truth)
    smooth = err[:, size[1] // 2 + 3 :]
    if "444" in pix_fmt:
        assert err.mean() < 0.8, (name, err.mean())
    assert smooth.mean() < 1.2, (name, smooth.mean())
    assert np.all(np.abs((got - truth).mean(axis=(0, 1, 2))) < 1.0), (name, (got - truth).mean(axis=(0, 1, 2)))
    # colour bars keep their hues: bar centres within 2° of hue and 6 levels
    import cv2

    bw = size[0] // 8
    rows = slice(size[1] // 8, size[1] // 4)
    for k in range(1, 7):  # the saturated bars (white and grey have no hue)
        cols = slice(k * bw + bw // 2 - 1, k * bw + bw // 2 + 1)
        a, b = got[0][rows, cols].reshape(-1, 3).mean(0), truth[0][rows, cols].reshape(-1, 3).mean(0)
        hue = [cv2.cvtColor(np.float32(x / 255)[None, None], cv2.COLOR_RGB2HSV)[0, 0, 0] for x in (a, b)]
        dh = abs((hue[0] - hue[1] + 180) % 360 - 180)
        assert dh < 2.0 and np.abs(a - b).max() < 6.0, (name, k, a, b)
    # passthrough (no stage) at crf 18 vs the ffmpeg command line at the same quality
    deep = pix_fmt.endswith(("10le", "12le"))
    fmt = "h265_10bit_mp4" if deep else "h264_mp4"
    enc = (["-c:v", "libx265", "-crf", "18", "-preset", "ultrafast", "-x265-params", "log-level=error"] if deep
           else ["-c:v", "libx264", "-crf", "18", "-preset", "ultrafast"])
    ref = ffmpeg_reencode(src, tmp_path / "ref.mp4", enc, "yuv420p10le" if deep else "yuv420p")
    out = save_video(open_video(src), output_path=tmp_path / "ours.mp4", fmt=fmt, crf=18, speed="ultrafast")
    ours_err = np.abs(ours(out) - got).mean()
    ref_err = np.abs(ours(ref) - got).mean()
    assert ours_err <= max(1.5, ref_err + 0.3), (name, ours_err, ref_err)
    # a stage that reads (and hands back) the frames: RGB → YUV again, still close to the reference
    touched = open_video(src).map("touch", {}, lambda: (lambda c: c.with_(frames=c.frames.clone())))
    out2 = save_video(touched, output_path=tmp_path / "touched.mp4", fmt=fmt, crf=18, speed="ultrafast")
    t_err = np.abs(ours(out2) - got).mean()
    assert t_err <= max(1.5, ref_err + 1.0), (name, t_err, ref_err)


def test_untagged_8bit_passthrough_keeps_yuv(sources, tmp_path):
    src, _ = sources["h264_420_untagged_sd"]
    out = save_video(open_video(src), output_path=tmp_path / "o.mkv", fmt="ffv1_mkv")  # RGB: through floats
    lossless = tmp_path / "o.mp4"
    out = save_video(open_video(src), output_path=lossless, fmt="h264_mp4", crf=0, speed="ultrafast")

    def planes(path):
        with av.open(str(path)) as c:
            f = next(c.decode(video=0))
            return [np.frombuffer(f.planes[i], np.uint8).reshape(f.planes[i].height, -1)[:, : f.planes[i].width]
                    for i in range(3)]

    for a, b in zip(planes(src), planes(out)):
        assert np.array_equal(a, b)  # YUV values kept exactly
    with av.open(str(out)) as c:
        assert int(c.streams.video[0].codec_context.colorspace) == 6  # the guess is written down


def _hdr_file(path: Path, transfer: str) -> tuple[Path, np.ndarray]:
    """An HDR10/HLG clip whose SDR intent is known: grey ramp, mid-grey, skin patches, bars."""
    sdr = np.zeros((H, W, 3), np.float32)
    sdr[:, :16] = 0.5  # mid-grey (SDR code 128)
    sdr[:, 16:32] = np.array([194, 150, 130]) / 255  # light skin (ColorChecker)
    sdr[:, 32:48] = np.array([115, 82, 68]) / 255  # dark skin
    sdr[:, 48:] = np.array([0.3, 0.5, 0.2])
    rgb = hdr.from_sdr(torch.from_numpy(sdr), transfer).numpy()
    rgb16 = np.repeat((rgb * 65535 + 0.5).astype(np.uint16)[None], N, 0)
    make(path, rgb16, ["-c:v", "libx265", "-x265-params", "lossless=1:log-level=error"], "yuv420p10le", "bt2020", "tv",
         "bt2020nc", in_fmt="rgb48le", trc=transfer, prim="bt2020")
    return path, sdr


def _delta_e(a: np.ndarray, b: np.ndarray) -> float:
    import colour

    def lab(x):
        return colour.XYZ_to_Lab(colour.sRGB_to_XYZ(np.clip(x, 0, 1)))

    return float(np.max(colour.delta_E(lab(a), lab(b), method="CIE 2000")))


@pytest.mark.parametrize("transfer", ["smpte2084", "arib-std-b67"])
def test_hdr_is_tone_mapped_keeping_mid_grey_and_skin(transfer, tmp_path):
    src, sdr = _hdr_file(tmp_path / "hdr.mp4", transfer)
    p = probe(src)
    assert p.hdr and p.transfer == transfer and p.color_primaries == "bt2020"
    s = open_video(src)
    assert s.info.transfer == "bt709" and s.info.color_matrix == "bt709"
    assert "tone-mapped" in s.info.get_extra("colour")
    got = s.read().frames[0].numpy()
    patches = {"mid-grey": slice(4, 12), "light skin": slice(20, 28), "dark skin": slice(36, 44)}
    for label, xs in patches.items():
        a = got[8:40, xs].reshape(-1, 3).mean(0)
        b = sdr[8:40, xs].reshape(-1, 3).mean(0)
        bound = 1.0 if label == "mid-grey" else 2.0
        assert _delta_e(a, b) < bound, (transfer, label, a * 255, b * 255)
    # keeping HDR: the frames hold the signal, the 10-bit file carries the HDR tags
    keep = open_video(src, hdr="keep")
    assert keep.info.transfer == transfer and keep.info.color_matrix == "bt2020nc"
    out = save_video(keep, output_path=tmp_path / "kept.mp4", fmt="h265_10bit_mp4", crf=12, speed="ultrafast")
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (int(cc.colorspace), int(cc.color_primaries), int(cc.color_trc)) == (9, 9, 16 if transfer == "smpte2084" else 18)
    again = open_video(out).read().frames[0].numpy()
    assert np.abs(again - got).mean() * 255 < 1.5


def test_real_clips_pass_through_like_the_ffmpeg_command_line(clips_dir, tmp_path):
    """Within 1.5 levels of the source, or no further than the ffmpeg CLI's own re-encode (the
    low-resolution, noisy carphone clip costs x264 2 levels at crf 18 either way)."""
    for path in sorted(CLIPS.glob("*.mp4")):
        src = open_video(path, end_time=0.4)
        n = src.info.frame_count
        ref = tmp_path / f"ref_{path.stem}.mp4"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-t", "0.4", "-an", "-c:v", "libx264", "-crf", "18",
                        "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(ref)], check=True)
        out = save_video(src, output_path=tmp_path / f"{path.stem}.mp4", crf=18, speed="ultrafast", audio="none")
        base = src.read().frames.numpy()
        ours_err = np.abs(open_video(out).read().frames.numpy() - base).mean() * 255
        ref_err = np.abs(open_video(ref).read(0, n).frames.numpy() - base[: open_video(ref).info.frame_count]).mean() * 255
        assert ours_err <= max(1.5, ref_err + 0.3), (path.name, ours_err, ref_err)


def test_truncated_ten_bit_file_error_names_the_file(sources, tmp_path):
    src, _ = sources["hevc10_420_709"]
    data = src.read_bytes()
    cut = tmp_path / "phone_clip.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(Exception) as e:
        save_video(open_video(cut), output_path=tmp_path / "x.mp4")
    msg = str(e.value)
    assert "phone_clip.mp4" in msg and "\n" not in msg
