"""Encoding a :class:`~remaster.stream.FrameStream` to a video file (or PNG sequence) with PyAV.

* Encoder presets are data (``presets.json``): container, codec, pixel format, options.
* RGB → YUV uses BT.709 limited range and the file is tagged BT.709 (primaries, transfer,
  matrix, range), so decode → encode round trips show no colour shift in players.
* Audio from the stream's :class:`~remaster.stream.AudioRef` (or an explicit one) is decoded,
  trimmed sample-accurately, resampled and muxed in step with the video.
* The file is written under a temporary name in the target folder and renamed only when
  complete; an error or an interrupt removes the temporary file. Existing files are never
  overwritten.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional

import av
from av.video.reformatter import Interpolation
import numpy as np
import torch

from .. import host
from ..stream import AudioRef, FrameStream
from . import yuv
from .mux import AudioPump

log = logging.getLogger("remaster.media")

PRESETS: dict = json.loads((Path(__file__).with_name("presets.json")).read_text())
_ENC_FLAGS = Interpolation.AREA | Interpolation.FULL_CHR_H_INP
SPEEDS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


class EncodeError(ValueError):
    pass


def preset_names() -> list[str]:
    return list(PRESETS)


# ---------------------------------------------------------------------------------------------
# output names
# ---------------------------------------------------------------------------------------------
_SAFE = re.compile(r"[^A-Za-z0-9._\-/ ]+")


def output_target(filename_prefix: str, ext: str, base: Optional[Path] = None) -> tuple[Path, str]:
    """(folder, stem) for ``prefix_00001.ext`` under the output folder; the prefix may hold
    sub-folders but never leaves the output folder."""
    base = (base or host.output_dir()).resolve()
    prefix = _SAFE.sub("_", filename_prefix.strip() or "remaster").strip("/")
    target_dir = (base / os.path.dirname(prefix)).resolve()
    if target_dir != base and base not in target_dir.parents:
        raise EncodeError(f"filename_prefix '{filename_prefix}' leaves the output folder; use a plain name")
    target_dir.mkdir(parents=True, exist_ok=True)
    return target_dir, os.path.basename(prefix) or "remaster"


def next_free_path(folder: Path, stem: str, ext: str) -> Path:
    pat = re.compile(re.escape(stem) + r"_(\d{5})")
    used = [int(m.group(1)) for p in folder.iterdir() if (m := pat.match(p.name))]
    n = max(used, default=0) + 1
    while True:
        p = folder / f"{stem}_{n:05d}{ext}"
        if not p.exists():
            return p
        n += 1


def _publish(tmp: Path, final: Path) -> Path:
    """Move a finished temp file/folder to its final name without overwriting anything."""
    folder, ext = final.parent, "".join(final.suffixes) if final.suffix else ""
    for _ in range(1000):
        try:
            if tmp.is_dir():
                if final.exists():
                    raise FileExistsError
                os.rename(tmp, final)
            else:
                os.link(tmp, final)  # fails if final exists: no overwrite, even under a race
                os.unlink(tmp)
            return final
        except FileExistsError:
            m = re.match(r"(.*)_(\d{5})$", final.name[: len(final.name) - len(ext)] if ext else final.name)
            stem = m.group(1) if m else final.stem
            final = next_free_path(folder, stem, ext)
        except OSError:
            if tmp.is_dir():
                raise
            os.replace(tmp, final) if not final.exists() else None
            return final
    raise EncodeError(f"could not find a free output name in {folder}")


# ---------------------------------------------------------------------------------------------
# video
# ---------------------------------------------------------------------------------------------
def _quantize(frames: torch.Tensor, bits: int) -> np.ndarray:
    """0..1 float frames to integers with rounding and clipping. 8 bits go through OpenCV's
    saturating SIMD conversion (twice as fast as the same in torch on this CPU)."""
    maxv = (1 << bits) - 1
    if bits <= 8:
        import cv2

        a = frames.detach().cpu().float().contiguous().numpy()
        n, h = a.shape[0], a.shape[1]
        out = np.empty(a.shape, np.uint8)
        for i in range(n):
            flat = a[i].reshape(h, -1)
            cv2.convertScaleAbs(cv2.max(flat, 0.0), dst=out[i].reshape(h, -1), alpha=255.0)
        return out
    x = frames.mul(maxv).add_(0.5).clamp_(0, maxv)  # +0.5 then truncation = rounding
    return x.to(torch.int32).numpy().astype(np.uint16)


def _rgb_frame(rgb: np.ndarray, spec: dict) -> "av.VideoFrame":
    """Integer RGB → the preset's RGB pixel format (lossless formats: no colour matrix)."""
    deep = rgb.dtype == np.uint16
    return av.VideoFrame.from_ndarray(rgb, format="rgb48le" if deep else "rgb24").reformat(format=spec["pix_fmt"])


@dataclass(frozen=True)
class Tags:
    """Colour tags of an output file (FFmpeg names) and the matrix its YUV is made with."""

    matrix: str = "bt709"
    primaries: str = "bt709"
    transfer: str = "bt709"

    def apply(self, target) -> None:
        """Set the tags on a codec context or frame (limited range)."""
        target.colorspace = yuv.MATRIX_IDS.get(self.matrix, 1)
        target.color_primaries = yuv.PRIMARIES_IDS.get(self.primaries, 1)
        target.color_trc = yuv.TRC_IDS.get(self.transfer, 1)
        target.color_range = 1


def output_tags(info) -> Tags:
    """The stream's own colour (so an untouched picture keeps its YUV values), BT.709 if unknown."""
    matrix = info.color_matrix if info.color_matrix in yuv.MATRIX_IDS else "bt709"
    primaries = info.get_extra("color_primaries") or yuv.primaries_for(matrix)
    transfer = info.transfer if info.transfer in yuv.TRC_IDS else "bt709"
    return Tags(matrix, primaries, transfer)


def aligned_size(w: int, h: int, spec: dict, odd_size: str) -> tuple[int, int]:
    """The encoded size: lossless RGB formats keep any size; subsampled YUV needs multiples of
    the chroma block, reached by padding (edge pixels repeated) or cropping."""
    lay = None if spec.get("rgb") else yuv.layout_of(spec["pix_fmt"])
    if lay is None:
        return w, h
    ax, ay = 1 << lay.sub_x, 1 << lay.sub_y
    if odd_size == "crop":
        return max(ax, w // ax * ax), max(ay, h // ay * ay)
    return -(-w // ax) * ax, -(-h // ay) * ay


def _fit(frames: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """Pad (replicating the edge) or crop ``[n,H,W,3]`` to ``h×w``."""
    n, fh, fw, _ = frames.shape
    frames = frames[:, : min(fh, h), : min(fw, w)]
    if fh < h or fw < w:
        x = frames.permute(0, 3, 1, 2)
        x = torch.nn.functional.pad(x, (0, max(0, w - fw), 0, max(0, h - fh)), mode="replicate")
        frames = x.permute(0, 2, 3, 1)
    return frames


def _native_usable(chunk, tags: Tags, spec: dict, size: tuple) -> bool:
    """Whether a chunk's decoded YUV can be written as it is (nobody read its frames)."""
    n = chunk.native if chunk.native_intact else None
    return (
        n is not None and n.same_geometry and (n.width, n.height) == size and not spec.get("rgb")
        and _same_subsampling(n.pix_fmt, spec["pix_fmt"]) and not n.full_range and n.matrix == tags.matrix and n.transfer == tags.transfer
    )


def _same_subsampling(a: str, b: str) -> bool:
    la, lb = yuv.layout_of(a), yuv.layout_of(b)
    return la is not None and lb is not None and (la.sub_x, la.sub_y) == (lb.sub_x, lb.sub_y)


def _native_frames(chunk, spec: dict, tags: Tags):
    for fr in chunk.native.frames:
        if fr.format.name != spec["pix_fmt"]:  # bit depth only: same matrix, range and subsampling
            fr = fr.reformat(format=spec["pix_fmt"], interpolation=_ENC_FLAGS)
        fr.pict_type = 0  # let the encoder place keyframes, as ffmpeg does
        tags.apply(fr)
        yield fr


def encoder_frames(chunk, spec: dict, size: tuple, tags: Tags):
    """The frames of ``chunk`` exactly as the encoder of ``spec`` is handed them (``av.VideoFrame``
    in its pixel format, at the aligned ``size``): the decoder's own YUV when no stage touched
    the pixels, else the RGB frames converted with the output's matrix (or quantized, for RGB
    formats). A lossless copy of these is what segments of a long render keep."""
    w, h = size
    if _native_usable(chunk, tags, spec, (w, h)):
        return _native_frames(chunk, spec, tags)
    if spec.get("rgb"):
        arr = _quantize(_fit(chunk.frames, w, h), 16 if spec.get("bits", 8) > 8 else 8)
        return (_rgb_frame(arr[i], spec) for i in range(arr.shape[0]))
    x = _fit(chunk.frames, w, h).contiguous().numpy()
    return yuv.workers().map(lambda i: yuv.rgb_to_frame(x[i], spec["pix_fmt"], tags.matrix), range(x.shape[0]))


def resolve_preset(fmt: str) -> dict:
    if fmt not in PRESETS:
        raise EncodeError(f"unknown format '{fmt}'; choose one of: {', '.join(PRESETS)}")
    return PRESETS[fmt]


def _fill(options: dict, crf: int, speed: str) -> dict:
    return {k: str(v).replace("{crf}", str(int(crf))).replace("{speed}", speed) for k, v in options.items()}


def save_video(
    stream: FrameStream,
    filename_prefix: str = "remaster",
    fmt: str = "h264_mp4",
    crf: int = 18,
    speed: str = "medium",
    audio: Optional[AudioRef] | str = "stream",
    output_path: Optional[str | os.PathLike] = None,
    label: str = "Save Video",
    node_id: Optional[str] = None,
    odd_size: str = "pad",
    metadata: Optional[dict] = None,
) -> Path:
    """Encode ``stream`` and return the final path (a folder for PNG sequences).

    ``audio``: "stream" (the stream's own audio, if any), None/"none" (no audio), or an AudioRef.
    ``output_path``: an exact destination (CLI); otherwise ``prefix_NNNNN.ext`` in the output
    folder. ``odd_size``: "pad" (repeat the edge) or "crop" to the codec's chroma alignment.
    ``metadata``: container tags (values that are not strings are stored as JSON), e.g. the
    ComfyUI prompt and workflow.
    """
    if odd_size not in ("pad", "crop"):
        raise EncodeError(f"odd_size must be 'pad' or 'crop', got '{odd_size}'")
    spec = resolve_preset(fmt)
    if speed not in SPEEDS:
        raise EncodeError(f"speed must be one of {', '.join(SPEEDS)}, got '{speed}'")
    if not (0 <= int(crf) <= 63):
        raise EncodeError(f"crf must be between 0 and 63, got {crf}")
    info = stream.info
    if info.frame_count <= 0:
        raise EncodeError("the stream has no frames to save")
    if audio == "stream":
        audio_ref = info.audio
    elif audio in (None, "none", ""):
        audio_ref = None
    elif isinstance(audio, AudioRef):
        audio_ref = audio
    else:
        raise EncodeError(f"audio must be 'stream', 'none' or an AudioRef, got {audio!r}")
    if audio_ref is not None and audio_ref.duration is None:
        audio_ref = AudioRef(**{**audio_ref.__dict__, "duration": info.duration})

    if output_path:
        final = Path(output_path).expanduser().resolve()
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            raise EncodeError(f"output '{final}' already exists; choose another name (nothing is overwritten)")
    else:
        folder, stem = output_target(filename_prefix, spec["ext"])
        final = next_free_path(folder, stem, spec["ext"])
    tmp = final.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{final.name}")
    progress = host.Progress(info.frame_count, label, node_id)
    try:
        if spec["kind"] == "images":
            _write_images(stream, tmp, spec, audio_ref, progress)
        else:
            if metadata is None:
                metadata = workflow_metadata(stream)
            _write_video(stream, tmp, spec, crf, speed, audio_ref, progress, odd_size, metadata)
        result = _publish(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        progress.close()
    return result


def workflow_metadata(stream: FrameStream, prompt=None, extra_pnginfo=None) -> dict:
    """Container tags for a saved video, as ComfyUI's own Save Video writes them: ``prompt``
    (the API graph) and each ``extra_pnginfo`` entry (``workflow``), plus ``remaster`` (the chain
    fingerprint, source and colour of the frames). Load Video's facts read them back."""
    out: dict = {}
    if prompt is not None:
        out["prompt"] = prompt
    for k, v in (extra_pnginfo or {}).items():
        out[str(k)] = v
    i = stream.info
    out["remaster"] = {"fingerprint": stream.fingerprint, "source": os.path.basename(i.source or ""),
                       "colour": {"matrix": i.color_matrix, "transfer": i.transfer,
                                  "primaries": i.get_extra("color_primaries") or yuv.primaries_for(i.color_matrix)}}
    return out


def _tag_values(metadata: dict) -> dict:
    return {str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for k, v in metadata.items()}


def _write_video(stream, tmp: Path, spec: dict, crf: int, speed: str, audio_ref, progress, odd_size: str = "pad",
                 metadata: Optional[dict] = None) -> None:
    info = stream.info
    fps = Fraction(info.fps).limit_denominator(1_000_000)
    options = dict(spec.get("container_options", {}))
    if spec["container"] in ("mp4", "mov"):  # free-form tags (prompt, workflow) need this flag
        options["movflags"] = (options.get("movflags", "") + "+use_metadata_tags").lstrip("+") if options.get("movflags") else "use_metadata_tags"
    out = av.open(str(tmp), mode="w", format=spec["container"], options=options)
    pump = None
    try:
        for k, v in _tag_values(metadata or {}).items():
            out.metadata[k] = v
        tags = output_tags(info)
        w, h = aligned_size(info.width, info.height, spec, odd_size)
        if (w, h) != (info.width, info.height):
            log.warning("%s: %dx%d %s to %dx%d (%s needs sides divisible by its chroma block)", tmp.name[14:],
                        info.width, info.height, "padded" if odd_size == "pad" else "cropped", w, h, spec["label"])
        if info.transfer in yuv.HDR_TRANSFERS and spec.get("bits", 8) <= 8:
            log.warning("HDR (%s) written in an 8-bit format: expect banding; h265_10bit_mp4 keeps 10 bits", info.transfer)
        vs = out.add_stream(spec["codec"], rate=fps)
        vs.width, vs.height = w, h
        vs.pix_fmt = spec["pix_fmt"]
        vs.time_base = Fraction(1, 1) / fps if fps.denominator < 100000 else Fraction(1, 90000)
        vs.options = _fill(spec.get("options", {}), crf, speed)
        if spec.get("codec_tag"):
            vs.codec_tag = spec["codec_tag"]
        if not spec.get("rgb"):
            tags.apply(vs.codec_context)
        vs.thread_type = "AUTO"
        if audio_ref is not None:
            try:
                pump = AudioPump(out, audio_ref, spec["audio"])
            except Exception as exc:
                raise EncodeError(f"cannot read the audio of '{audio_ref.path}': {exc}") from exc
            pump.run_in_background()
        index = 0
        for chunk in stream.chunks():
            frames = encoder_frames(chunk, spec, (w, h), tags)
            n = 0
            for vf in frames:
                if not spec.get("rgb"):
                    tags.apply(vf)
                vf.pts = index
                vf.time_base = Fraction(1) / fps
                index += 1
                n += 1
                for packet in vs.encode(vf):
                    out.mux(packet)
            progress.update(n)
            if pump is not None:
                pump.drain(out)
        if index != info.frame_count:
            raise EncodeError(f"the stream promised {info.frame_count} frames but gave {index}")
        for packet in vs.encode(None):
            out.mux(packet)
        if pump is not None:
            pump.drain(out, wait=True)
    finally:
        if pump is not None:
            pump.close()
        out.close()




def _write_images(stream, tmp_dir: Path, spec: dict, audio_ref, progress) -> None:
    import cv2

    tmp_dir.mkdir(parents=True)
    digits = max(6, len(str(stream.info.frame_count)))
    for chunk in stream.chunks():
        arr = _quantize(chunk.frames, spec.get("bits", 16))
        for i in range(arr.shape[0]):
            bgr = np.ascontiguousarray(arr[i][..., ::-1])
            if not cv2.imwrite(str(tmp_dir / f"frame_{chunk.start + i:0{digits}d}.png"), bgr):
                raise EncodeError(f"could not write PNG into {tmp_dir}")
        progress.update(arr.shape[0])
    if audio_ref is not None:
        out = av.open(str(tmp_dir / "audio.wav"), mode="w", format="wav")
        try:
            pump = AudioPump(out, audio_ref, spec["audio"])
            pump.pump(out, None)
            pump.close()
        finally:
            out.close()
