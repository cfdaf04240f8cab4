"""What a video file holds, read without decoding pictures: a demux-only scan of presentation
timestamps (exact frame times, also for variable-frame-rate phone footage), size, rotation, pixel
format, colour tags (untagged files guessed by size as players do), audio, and the tags a saved
video carries about how it was made."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import av
import numpy as np

from ..stream import AudioRef
from . import yuv

log = logging.getLogger("remaster.media")

RGB_PREFIXES = ("rgb", "bgr", "gbr", "argb", "abgr", "pal", "gray", "0rgb", "0bgr")


class VideoError(ValueError):
    """A video file cannot be read, or the requested range/options do not fit it."""


@dataclass(frozen=True)
class Probe:
    path: str
    width: int  # coded size (before rotation)
    height: int
    rotation: int  # degrees, counter-clockwise as stored in the display matrix
    fps: Fraction  # average rate
    times: tuple  # presentation times (seconds) of every frame, sorted, relative to t0
    t0: float  # container time of the first frame
    pix_fmt: str
    bit_depth: int
    has_alpha: bool
    color_range: str
    color_matrix: str
    audio: Optional[AudioRef]
    vfr: bool
    color_primaries: str = "bt709"
    transfer: str = "bt709"
    matrix_guessed: bool = False  # the file has no matrix tag: guessed by size like players do
    metadata: tuple = ()  # container tags as (key, value) pairs

    @property
    def hdr(self) -> bool:
        return self.transfer in yuv.HDR_TRANSFERS

    @property
    def colour_note(self) -> str:
        """One line on how colours are read (shown in Load Video's facts)."""
        if self.pix_fmt.startswith(RGB_PREFIXES):
            return f"{self.pix_fmt}, {self.bit_depth}-bit RGB"
        rng = "full" if self.color_range == "pc" else "limited"
        text = f"{self.pix_fmt}, {self.bit_depth}-bit, {rng} range, matrix {self.color_matrix}"
        if self.matrix_guessed:
            text += " (untagged: guessed from the frame size, as players do)"
        if self.hdr:
            text += f", HDR {'PQ' if self.transfer == 'smpte2084' else 'HLG'} {self.color_primaries}"
        return text

    @property
    def frame_count(self) -> int:
        return len(self.times)

    @property
    def duration(self) -> float:
        """Source duration: last frame time plus one frame."""
        if not self.times:
            return 0.0
        return self.times[-1] + (1.0 / float(self.fps) if self.fps else 0.0)

    @property
    def display_size(self) -> tuple[int, int]:
        if self.rotation % 180 != 0:
            return self.height, self.width
        return self.width, self.height


_probe_cache: dict = {}



def open_container(path: str):
    if not os.path.exists(path):
        raise VideoError(f"video file not found: '{path}'. Put it in ComfyUI's input folder or give a full path.")
    if os.path.getsize(path) == 0:
        raise VideoError(f"video file '{path}' is empty (0 bytes); re-export or re-copy it")
    try:
        return av.open(path)
    except av.FFmpegError as exc:
        raise VideoError(
            f"cannot open '{os.path.basename(path)}' as video ({exc}). The file may be truncated or "
            "not a video; re-export it or check that the copy finished."
        ) from exc


def probe(path: str | os.PathLike) -> Probe:
    """Scan a file's video timestamps (demux only) and read its stream facts. Cached per file."""
    path = str(path)
    try:
        st = os.stat(path)
        key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _probe_cache:
        return _probe_cache[key]
    container = open_container(path)
    try:
        if not container.streams.video:
            raise VideoError(f"'{os.path.basename(path)}' has no video stream")
        vs = container.streams.video[0]
        cc = vs.codec_context
        tb = vs.time_base
        pts = []
        try:
            for packet in container.demux(vs):
                if packet.size == 0:
                    continue
                t = packet.pts if packet.pts is not None else packet.dts
                if t is not None:
                    pts.append(t)
        except av.FFmpegError as exc:
            log.warning("%s: demux stopped early (%s); using the %d frames before the damage", path, exc, len(pts))
        if not pts:
            raise VideoError(
                f"'{os.path.basename(path)}' contains no video frames (zero-frame or damaged file)"
            )
        pts.sort()
        times_abs = [float(p * tb) for p in pts]
        t0 = times_abs[0]
        times = tuple(t - t0 for t in times_abs)
        fps = vs.average_rate or vs.guessed_rate
        if not fps or fps <= 0:
            if len(times) > 1 and times[-1] > 0:
                fps = Fraction(len(times) - 1) / Fraction(times[-1]).limit_denominator(100000)
            else:
                fps = Fraction(25)
        fps = Fraction(fps).limit_denominator(100000)
        # VFR if frame intervals differ noticeably from the average rate
        vfr = False
        if len(times) > 2:
            d = np.diff(np.asarray(times))
            vfr = bool(np.max(np.abs(d - 1.0 / float(fps))) > 0.25 / float(fps))
        pix_fmt = cc.pix_fmt or "yuv420p"
        fmt = av.VideoFormat(pix_fmt)
        bit_depth = max((c.bits for c in fmt.components), default=8)
        has_alpha = any(getattr(c, "is_alpha", False) for c in fmt.components) or pix_fmt.startswith(("yuva", "rgba", "bgra", "argb", "abgr", "gbrap", "ya"))
        # rotation: decode one frame's display matrix when the stream carries one
        rotation = 0
        color_range = "tv"
        matrix = primaries = transfer = ""
        container.seek(0)
        try:
            for frame in container.decode(vs):
                rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
                color_range = "pc" if int(frame.color_range or 0) == 2 else "tv"
                matrix = yuv.MATRIX_NAMES.get(int(frame.colorspace or 0), "")
                primaries = yuv.PRIMARIES_NAMES.get(int(frame.color_primaries or 0), "")
                transfer = yuv.TRC_NAMES.get(int(frame.color_trc or 0), "")
                break
        except av.FFmpegError:
            pass
        if pix_fmt.startswith("yuvj"):
            color_range = "pc"
        guessed = not matrix
        if guessed:
            matrix = yuv.guess_matrix(vs.width, vs.height)
        primaries = primaries or yuv.primaries_for(matrix)
        transfer = transfer or ("bt709" if primaries != "bt2020" else "bt2020-10")
        if pix_fmt.startswith(RGB_PREFIXES):
            color_range = "pc"
            guessed = False
        metadata = tuple((str(k), str(v)) for k, v in (container.metadata or {}).items())
        audio = None
        if container.streams.audio:
            a = container.streams.audio[0]
            a_start = float(a.start_time * a.time_base) if a.start_time is not None else 0.0
            audio = AudioRef(
                path=os.path.abspath(path),
                stream_index=a.index,
                start=t0,  # container time where frame 0 is shown
                duration=None,
                offset=0.0,
                sample_rate=int(a.rate or 0),
                channels=int(a.channels or 0),
                codec=a.codec_context.name,
            )
            _ = a_start
        result = Probe(
            path=os.path.abspath(path),
            width=int(vs.width),
            height=int(vs.height),
            rotation=rotation,
            fps=fps,
            times=times,
            t0=t0,
            pix_fmt=pix_fmt,
            bit_depth=int(bit_depth),
            has_alpha=bool(has_alpha),
            color_range=color_range,
            color_matrix=matrix,
            audio=audio,
            vfr=vfr,
            color_primaries=primaries,
            transfer=transfer,
            matrix_guessed=guessed,
            metadata=metadata,
        )
    finally:
        container.close()
    if key is not None:
        _probe_cache[key] = result
    return result


def embedded(p: Probe) -> dict:
    """What a saved video says about how it was made: ``prompt``, ``workflow`` and ``remaster``
    container tags (JSON) as Save Video (ours, ComfyUI core's, VHS's) writes them."""
    out = {}
    for k, v in p.metadata:
        if k.lower() in ("prompt", "workflow", "remaster", "comment"):
            try:
                out[k.lower()] = json.loads(v)
            except ValueError:
                if k.lower() != "comment":
                    out[k.lower()] = v
    return out


def made_by(p: Probe) -> str:
    """One line for Load Video's facts: the workflow embedded in the file, if any."""
    e = embedded(p)
    parts = []
    if "workflow" in e or "prompt" in e:
        g = e.get("prompt") if isinstance(e.get("prompt"), dict) else {}
        parts.append(("ComfyUI workflow" if "workflow" in e else "ComfyUI prompt") + " embedded"
                     + (f" ({len(g)} nodes)" if g else ""))
    r = e.get("remaster")
    if isinstance(r, dict):
        parts.append(f"Remaster chain {r.get('fingerprint', '?')} from {r.get('source') or '?'}")
    return "; ".join(parts)
