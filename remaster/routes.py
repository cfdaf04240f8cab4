"""HTTP routes of the web UI (video facts, single frames for the editors, SAM2 mask preview).

The logic lives in plain functions that take a dict of query/JSON values and return data, so it is
testable without ComfyUI; :func:`make_routes` wraps them as aiohttp handlers, and
``nodes/web.py`` registers those with ComfyUI's server through :func:`remaster.host.register_routes`.

Every route reads only from ComfyUI's input, output and temp folders: file names are resolved
inside the chosen folder, path traversal and absolute paths are refused (403), missing files are
404, parameters out of range are 400, files that are not readable video are 422. Handlers never
answer 500 with a traceback.
"""
from __future__ import annotations

import json
import logging
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Mapping

from . import host

log = logging.getLogger("remaster.routes")

FOLDER_TYPES = ("input", "output", "temp")
MAX_NAME_CHARS = 1024
MAX_SIDE = 4096  # largest preview frame side the routes will render
MAX_INDEX = 10**8
MAX_BODY_BYTES = 1 << 20  # JSON bodies (prompts) larger than 1 MiB are refused
_ANNOTATION = re.compile(r"^(.*?)\s*\[(input|output|temp)\]$")


class RouteError(Exception):
    """A request the routes refuse; ``status`` is the HTTP status (always 4xx or 501)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------------------------------------
# parameter checks
# ---------------------------------------------------------------------------------------------
def _text(q: Mapping[str, Any], name: str, default: str = "") -> str:
    v = q.get(name, default)
    if v is None:
        v = default
    if not isinstance(v, str):
        raise RouteError(400, f"'{name}' must be a string")
    if len(v) > MAX_NAME_CHARS:
        raise RouteError(400, f"'{name}' is longer than {MAX_NAME_CHARS} characters")
    if "\x00" in v:
        raise RouteError(400, f"'{name}' contains a NUL character")
    return v


def _number(q: Mapping[str, Any], name: str, default: float, lo: float, hi: float, kind=float):
    v = q.get(name, default)
    if v is None or v == "":
        v = default
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise RouteError(400, f"'{name}' must be a number, got {str(v)[:40]!r}") from None
    if not math.isfinite(x) or x < lo or x > hi:
        raise RouteError(400, f"'{name}' must be between {lo:g} and {hi:g}, got {str(v)[:40]}")
    if kind is int:
        if x != int(x):
            raise RouteError(400, f"'{name}' must be a whole number, got {str(v)[:40]}")
        return int(x)
    return x


def folder_of(kind: str) -> Path:
    """The ComfyUI folder for ``kind`` (input, output or temp)."""
    if kind == "input":
        return host.input_dir()
    if kind == "output":
        return host.output_dir()
    if kind == "temp":
        return host.temp_dir()
    raise RouteError(400, f"'type' must be one of {', '.join(FOLDER_TYPES)}, got {kind[:40]!r}")


def resolve_file(q: Mapping[str, Any]) -> Path:
    """The file named by ``filename``/``subfolder``/``type`` (as in ComfyUI's ``/view``), resolved
    inside its folder. ``filename`` may carry ComfyUI's ``name [input]`` annotation and a relative
    sub-path such as ``clips/a.mp4``."""
    name = _text(q, "filename").strip()
    sub = _text(q, "subfolder")
    kind = _text(q, "type", "input") or "input"
    m = _ANNOTATION.match(name)
    if m:
        name, kind = m.group(1), m.group(2)
    if not name:
        raise RouteError(400, "'filename' is required")
    base = folder_of(kind).resolve()
    for part in (name, sub):
        if Path(part).is_absolute() or part.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", part):
            raise RouteError(403, "absolute paths are not allowed; give a name inside the folder")
        if ".." in re.split(r"[\\/]", part):
            raise RouteError(403, "'..' is not allowed in file names")
    path = (base / sub / name).resolve()
    try:
        path.relative_to(base)
    except ValueError:
        raise RouteError(403, f"'{name}' is outside the {kind} folder") from None
    if not path.is_file():
        raise RouteError(404, f"no file '{(Path(sub) / name).as_posix()}' in the {kind} folder")
    return path


def stream_options(q: Mapping[str, Any]) -> dict:
    """Load Video settings (same names and ranges as the node's widgets) as open_video kwargs."""
    resize = _text(q, "resize", "none") or "none"
    if resize not in ("none", "max_side", "exact"):
        raise RouteError(400, f"'resize' must be none, max_side or exact, got {resize[:40]!r}")
    max_side = _number(q, "max_side", 1280, 16, 16384, int)
    width = _number(q, "width", 0, 0, 16384, int)
    height = _number(q, "height", 0, 0, 16384, int)
    force_fps = _number(q, "force_fps", 0.0, 0.0, 1000.0)
    return dict(
        start_time=_number(q, "start_time", 0.0, 0.0, 1e7),
        end_time=_number(q, "end_time", 0.0, 0.0, 1e7),
        every_nth=_number(q, "every_nth", 1, 1, 1000, int),
        max_side=max_side if resize == "max_side" else 0,
        width=width if resize == "exact" else 0,
        height=height if resize == "exact" else 0,
        force_fps=Fraction(force_fps).limit_denominator(1001) if force_fps else 0,
    )


def _open(path: Path, opts: dict, **extra):
    from .media import decode

    try:
        return decode.open_video(path, **{**opts, **extra})
    except decode.VideoError as exc:
        raise RouteError(422, str(exc)) from None


def _stream_frame(path: Path, opts: dict, index: int):
    """Frame ``index`` of the stream (float [H,W,3]) and the stream's info, decoding only that frame:
    the stream is opened again at the frame's own time (``start + index / fps``), which picks the
    same source frame as the full stream's plan."""
    info = _open(path, opts).info
    if index >= info.frame_count:
        raise RouteError(416, f"frame {index} is past the end: the stream has {info.frame_count} frames")
    t = opts["start_time"] + index / float(info.fps)
    one = _open(path, {**opts, "every_nth": 1}, start_time=t, end_time=t + 1.0 / float(info.fps), chunk_size=1)
    chunk = one.read(0, 1, max_frames=1)
    if len(chunk) == 0:
        raise RouteError(422, f"frame {index} could not be decoded")
    return chunk.frames[0], info


# ---------------------------------------------------------------------------------------------
# route logic
# ---------------------------------------------------------------------------------------------
def video_info(q: Mapping[str, Any]) -> dict:
    """Facts of a video file and of the stream Load Video makes of it with the given settings."""
    from .media import decode

    path = resolve_file(q)
    opts = stream_options(q)
    try:
        p = decode.probe(path)
    except decode.VideoError as exc:
        raise RouteError(422, str(exc)) from None
    dw, dh = p.display_size
    out = {
        "source": {
            "width": dw, "height": dh, "fps": float(p.fps), "fps_fraction": f"{p.fps.numerator}/{p.fps.denominator}",
            "frame_count": p.frame_count, "duration": round(p.duration, 6), "vfr": p.vfr,
            "rotation": p.rotation, "bit_depth": p.bit_depth, "has_alpha": p.has_alpha,
            "colour": p.colour_note, "made_by": decode.made_by(p),
            "audio": None if p.audio is None else {
                "codec": p.audio.codec, "sample_rate": p.audio.sample_rate, "channels": p.audio.channels,
            },
        },
    }
    s = _open(path, opts).info
    end = opts["end_time"] if opts["end_time"] > 0 else p.duration
    out["stream"] = {
        "width": s.width, "height": s.height, "fps": float(s.fps), "frame_count": s.frame_count,
        "duration": round(s.duration, 6), "start_time": opts["start_time"], "end_time": round(min(end, p.duration), 6),
        "every_nth": opts["every_nth"],
    }
    return out


def frame_jpeg(q: Mapping[str, Any]) -> tuple[bytes, dict, str]:
    """Frame ``index`` of the stream Load Video makes with the given settings, as JPEG, scaled so its
    longer side is at most ``preview_side``. Headers give the stream's frame size (the pixel space
    of SAM2 point coordinates) and the number of frames."""
    import cv2
    import numpy as np

    path = resolve_file(q)
    opts = stream_options(q)
    index = _number(q, "index", 0, 0, MAX_INDEX, int)
    side = _number(q, "preview_side", 768, 16, MAX_SIDE, int)
    frame, info = _stream_frame(path, opts, index)
    img = frame.clamp(0, 1).mul(255).round().byte().numpy()
    h, w = img.shape[:2]
    if max(h, w) > side:
        s = side / max(h, w)
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise RouteError(422, "JPEG encoding failed")
    headers = {
        "X-Remaster-Width": str(info.width), "X-Remaster-Height": str(info.height),
        "X-Remaster-Frames": str(info.frame_count),
    }
    return buf.tobytes(), headers, "image/jpeg"


def sam2_preview(body: Mapping[str, Any]) -> tuple[bytes, dict, str]:
    """A quick mask for one frame from its prompts, as a grey PNG (white = object), computed by the
    SAM2 stage's ``preview_mask(frame[H,W,3], prompts, model)`` (``remaster/stages/masks.py``) with
    the prompt entries of frame ``index`` (the editor's JSON; the stage validates them)."""
    import cv2
    import numpy as np

    path = resolve_file(body)
    opts = stream_options(body)
    index = _number(body, "index", 0, 0, MAX_INDEX, int)
    model = _text(body, "model")
    prompts = body.get("prompts", "[]")
    if isinstance(prompts, str):
        try:
            prompts = json.loads(prompts or "[]")
        except json.JSONDecodeError as exc:
            raise RouteError(400, f"prompts are not valid JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(prompts, list):
        raise RouteError(400, "prompts must be a JSON list of {frame, obj_id, points, boxes} objects")
    here = [p for p in prompts if isinstance(p, dict) and p.get("frame") == index]
    if not here:
        raise RouteError(400, f"no prompts on frame {index}")
    try:
        from .stages import masks as masks_stage  # SAM2 point prompts

        preview_mask = masks_stage.preview_mask
    except (ImportError, AttributeError):
        raise RouteError(501, "mask preview needs the SAM2 stage (remaster.stages.masks.preview_mask)") from None
    frame, _info = _stream_frame(path, opts, index)
    try:
        mask = preview_mask(frame, here, model)
    except FileNotFoundError as exc:
        raise RouteError(404, str(exc)) from None
    except ValueError as exc:  # bad prompts or model choice: the stage's message names the fix
        raise RouteError(400, str(exc)) from None
    m = np.asarray(mask, dtype=np.float32)
    ok, buf = cv2.imencode(".png", (np.clip(m, 0, 1) * 255).round().astype(np.uint8))
    if not ok:
        raise RouteError(422, "PNG encoding failed")
    return buf.tobytes(), {"X-Remaster-Width": str(m.shape[1]), "X-Remaster-Height": str(m.shape[0])}, "image/png"


# ---------------------------------------------------------------------------------------------
# aiohttp wrappers
# ---------------------------------------------------------------------------------------------
def _handler(fn: Callable, body: bool = False, binary: bool = False):
    from aiohttp import web
    import asyncio

    async def handle(request: "web.Request") -> "web.Response":
        try:
            if body:
                if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
                    raise RouteError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
                raw = await request.content.read(MAX_BODY_BYTES + 1)
                if len(raw) > MAX_BODY_BYTES:
                    raise RouteError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
                try:
                    args = json.loads(raw.decode("utf-8") or "{}")
                except (UnicodeDecodeError, json.JSONDecodeError):
                    raise RouteError(400, "the request body must be JSON") from None
                if not isinstance(args, dict):
                    raise RouteError(400, "the request body must be a JSON object")
            else:
                args = dict(request.query)
            result = await asyncio.get_running_loop().run_in_executor(None, fn, args)
        except RouteError as exc:
            return web.json_response({"error": exc.message}, status=exc.status)
        except Exception as exc:  # our bug or the host's: log it, answer without a traceback
            log.exception("remaster route %s failed", request.path)
            return web.json_response({"error": f"{type(exc).__name__}: {str(exc)[:300]}"}, status=500)
        if binary:
            data, headers, ctype = result
            return web.Response(body=data, content_type=ctype,
                                headers={**headers, "Cache-Control": "no-store"})
        return web.json_response(result)

    return handle


def make_routes() -> list[tuple[str, str, Callable]]:
    """``(method, path, handler)`` for every route (ComfyUI also serves them under ``/api``)."""
    return [
        ("GET", "/remaster/video_info", _handler(video_info)),
        ("GET", "/remaster/frame", _handler(frame_jpeg, binary=True)),
        ("POST", "/remaster/sam2_preview", _handler(sam2_preview, body=True, binary=True)),
    ]


def make_app():
    """A plain aiohttp application with the routes (tests and stand-alone use)."""
    from aiohttp import web

    app = web.Application(client_max_size=MAX_BODY_BYTES + 1024)
    for method, path, handler in make_routes():
        app.router.add_route(method, path, handler)
    return app
