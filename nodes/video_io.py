"""Video in and out: Load Video, Save Video, Preview, Cache, scene cuts and IMAGE/VIDEO/AUDIO
interop. Thin node classes over ``remaster.media`` and ``remaster.stream``."""
from __future__ import annotations

import logging
import os
import shutil
from fractions import Fraction
from pathlib import Path

from remaster import host
from remaster.media import audio as audio_io
from remaster.media import cache as cache_mod
from remaster.media import decode, encode, preview
from remaster.analysis import scenes
from remaster.headless import segment_worker
from remaster.stream import from_tensor

from ._common import CUTS, FRAMES, StreamStage, category, frames_input, stream_inputs

log = logging.getLogger("remaster")

# A short real clip shipped with the pack (assets/README.md: source and licence) that every template
# opens, so "load a template, press Run" works on a fresh install.
EXAMPLE_VIDEO = "remaster_example.mp4"
EXAMPLE_PATH = Path(__file__).resolve().parents[1] / "assets" / EXAMPLE_VIDEO

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".wmv", ".flv", ".gif", ".3gp")


def install_example(input_dir: Path | None = None) -> Path | None:
    """Copy the shipped example clip into ComfyUI's input folder when it is not there (so the
    dropdown lists it and the preview can play it). Written to a temp name, then renamed."""
    d = Path(input_dir or host.input_dir())
    target = d / EXAMPLE_VIDEO
    if target.exists() or not EXAMPLE_PATH.is_file():
        return None
    try:
        d.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{EXAMPLE_VIDEO}.part")
        shutil.copyfile(EXAMPLE_PATH, tmp)
        os.replace(tmp, target)
        return target
    except OSError as exc:  # a read-only input folder: the pack's own copy is used instead
        log.warning("Remaster: could not copy the example clip into %s (%s)", d, exc)
        return None


def video_path(name: str) -> Path:
    """The file for a Load Video name: the input folder (or a path), else the pack's example clip."""
    p = host.annotated_input_path(name)
    if not p.is_file() and name == EXAMPLE_VIDEO and EXAMPLE_PATH.is_file():
        return EXAMPLE_PATH
    return p


def _input_videos() -> list[str]:
    d = host.input_dir()
    names = []
    if d.is_dir():
        names = sorted(
            p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
        )
    if EXAMPLE_VIDEO not in names and EXAMPLE_PATH.is_file():
        names.append(EXAMPLE_VIDEO)
    return names


class RemasterLoadVideo:
    DESCRIPTION = (
        "Open a video as a lazy frame stream: frames are decoded chunk by chunk when a later node "
        "pulls them, so memory stays bounded for videos of any length. Trims by time, keeps every "
        "n-th frame, resizes, converts variable frame rate to constant by timestamps, applies the "
        "rotation stored by phones and keeps the audio in sync."
    )
    CATEGORY = category("Video")
    FUNCTION = "load"
    RETURN_TYPES = (FRAMES, "FLOAT", "INT", "INT", "INT", "FLOAT")
    RETURN_NAMES = ("frames", "fps", "frame_count", "width", "height", "duration")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "video": (_input_videos() or [""], {
                    "video_upload": True,
                    "tooltip": "A video in ComfyUI's input folder (upload with the button). Through the API "
                               "any readable file path is accepted too.",
                }),
                "start_time": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e7, "step": 0.01,
                                         "tooltip": "Seconds into the video where the stream starts."}),
                "end_time": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e7, "step": 0.01,
                                       "tooltip": "Seconds where the stream ends; 0 means the end of the video."}),
                "every_nth": ("INT", {"default": 1, "min": 1, "max": 1000,
                                      "tooltip": "Keep one frame in n (the frame rate is divided by n, duration unchanged)."}),
                "resize": (["none", "max_side", "exact"], {
                    "tooltip": "Which size inputs apply. none: original size (max_side, width, height ignored). max_side: shrink so the longer side is at most max_side. "
                               "exact: width x height (set one to 0 to keep the aspect ratio). Sizes are made even."}),
                "max_side": ("INT", {"default": 1280, "min": 16, "max": 16384, "step": 2,
                                     "tooltip": "Longest side in pixels. Used only when resize is max_side (ignored otherwise)."}),
                "width": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 2,
                                  "tooltip": "Width when resize is exact (0 = from height and aspect); ignored otherwise."}),
                "height": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 2,
                                   "tooltip": "Height when resize is exact (0 = from width and aspect); ignored otherwise."}),
                "force_fps": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1000.0, "step": 0.001,
                                        "tooltip": "Constant output frame rate; 0 keeps the source's average rate. "
                                                   "Variable-frame-rate footage is resampled by timestamps."}),
                "alpha": (["drop", "mask"], {"tooltip": "For sources with transparency: drop it, or keep it as the stream's mask."}),
                "chunk_frames": ("INT", {"default": 0, "min": 0, "max": 1024,
                                         "tooltip": "Frames per chunk moving through the graph; 0 picks it from frame size and free memory."}),
            },
            "optional": {
                "hdr": (["tonemap", "keep"], {
                    "tooltip": "HDR sources (PQ/HLG, BT.2020): tonemap gives SDR BT.709 frames (BT.2390 roll-off, "
                               "mid-tones and skin unchanged); keep passes the HDR signal on and Save writes it "
                               "with HDR tags (use a 10-bit format)."}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, video, **kwargs):
        try:
            p = video_path(video)
            st = os.stat(p)
            return f"{p}:{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            return video

    @classmethod
    def VALIDATE_INPUTS(cls, video):
        if not video:
            return "no video chosen: upload one or give a file path"
        p = video_path(video)
        if not p.is_file():
            return f"video '{video}' not found in the input folder ({host.input_dir()}) or as a path"
        return True

    def load(self, video, start_time=0.0, end_time=0.0, every_nth=1, resize="none", max_side=1280, width=0,
             height=0, force_fps=0.0, alpha="drop", chunk_frames=0, hdr="tonemap"):
        path = video_path(video)
        if resize != "max_side" and max_side != 1280:
            log.warning("Load Video: max_side=%s is not used because resize is '%s' (set resize to max_side)",
                        max_side, resize)
        if resize != "exact" and (width or height):
            log.warning("Load Video: width/height are not used because resize is '%s' (set resize to exact)", resize)
        stream = decode.open_video(
            path,
            start_time=start_time,
            end_time=end_time,
            every_nth=every_nth,
            max_side=max_side if resize == "max_side" else 0,
            width=width if resize == "exact" else 0,
            height=height if resize == "exact" else 0,
            force_fps=Fraction(force_fps).limit_denominator(1001) if force_fps else 0,
            alpha=alpha,
            chunk_size=chunk_frames,
            hdr=hdr,
        )
        i = stream.info
        return (stream, float(i.fps), i.frame_count, i.width, i.height, i.duration)


class RemasterSaveVideo:
    DESCRIPTION = (
        "Encode the frame stream to a video file in ComfyUI's output folder, pulling frames through "
        "the whole chain chunk by chunk. Formats: H.264/H.265 MP4, ProRes 422 HQ, lossless FFV1, "
        "VP9 WebM, 16-bit PNG sequence. Colours are tagged BT.709 so players show what you saw; "
        "audio stays in sync. The file appears only when complete; nothing is overwritten."
    )
    CATEGORY = category("Video")
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": frames_input("The stream to encode."),
                "filename_prefix": ("STRING", {"default": "remaster/video",
                                               "tooltip": "Name (and sub-folder) under the output folder; a counter is added."}),
                "format": (encode.preset_names(), {"tooltip": "Container and codec; see the README's format table."}),
                "crf": ("INT", {"default": 18, "min": 0, "max": 63,
                                "tooltip": "Quality for H.264/H.265/VP9: lower is better and bigger (18 ≈ visually lossless)."}),
                "speed": (list(encode.SPEEDS), {"default": "medium",
                                                "tooltip": "Encoder speed preset for H.264/H.265: slower gives smaller files."}),
                "audio": (["stream", "none"], {"tooltip": "stream: mux the source's audio (trimmed with the frames). none: silent video."}),
            },
            "optional": {
                "audio_override": ("AUDIO", {"tooltip": "Use this AUDIO instead of the stream's own audio."}),
                "output_path": ("STRING", {"default": "", "tooltip": "API/CLI: exact output file path (must not exist). Empty: use filename_prefix."}),
                "odd_size": (["pad", "crop"], {
                    "tooltip": "Sizes a codec cannot take (odd sides for 4:2:0): pad repeats the edge pixels to the next "
                               "even size, crop drops the last row/column. Lossless formats keep any size."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID", "prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save(self, frames, filename_prefix="remaster/video", format="h264_mp4", crf=18, speed="medium",
             audio="stream", audio_override=None, output_path="", odd_size="pad", unique_id=None, prompt=None,
             extra_pnginfo=None):
        a = audio
        if audio_override is not None:
            a = audio_io.write_audio(audio_override)
        part = segment_worker.request(prompt, unique_id)
        if part is not None:  # one part of a segmented render (python -m remaster run --workers/--ray/--servers)
            ref = frames.info.audio if a == "stream" else (None if a in ("none", None) else a)
            path = segment_worker.render(frames, part, format, odd_size, ref, output_path, filename_prefix)
            return {"ui": {"videos": [preview.ui_entry(path, "ffv1_mkv")]}, "result": (str(path),)}
        cache_mod.keep_shared(frames, prompt)  # a stage feeding several nodes renders once (lossless cache)
        path = encode.save_video(frames, filename_prefix, format, crf, speed, a, output_path or None,
                                 label="Save Video", node_id=unique_id, odd_size=odd_size,
                                 metadata=encode.workflow_metadata(frames, prompt, extra_pnginfo))
        return {"ui": {"videos": [preview.ui_entry(path, format)]}, "result": (str(path),)}


class RemasterPreviewFrames:
    DESCRIPTION = (
        "Show a few frames of the stream in the node without running the whole video: pulls only "
        "the chunks up to the last frame shown."
    )
    CATEGORY = category("Video")
    FUNCTION = "preview"
    OUTPUT_NODE = True
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "first_frame": ("INT", {"default": 0, "min": 0, "max": 10**8, "tooltip": "First frame to show."}),
            "count": ("INT", {"default": 6, "min": 1, "max": 64, "tooltip": "How many frames to show."}),
            "step": ("INT", {"default": 1, "min": 1, "max": 10**6, "tooltip": "Show every step-th frame from first_frame."}),
        })

    def preview(self, frames, first_frame=0, count=6, step=1):
        images = preview.pick_frames(frames, first_frame, count, step)
        return {"ui": {"images": preview.save_temp_images(images)}, "result": (images,)}


class RemasterCache(StreamStage):
    DESCRIPTION = (
        "Render everything upstream once to a lossless file in ComfyUI's temp folder (keyed by the "
        "chain's fingerprint). Re-queueing after changing a later node then reads the file instead of "
        "recomputing earlier stages."
    )
    CATEGORY = category("Video")
    FUNCTION = "cache"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": frames_input("The stream to render once and reuse.")}}

    def cache(self, frames):
        return (cache_mod.cached(frames),)


class RemasterFramesToImage:
    DESCRIPTION = (
        "Turn a (short) stream into a ComfyUI IMAGE batch and MASK, so any third-party image node can "
        "work on it. Refuses streams longer than max_frames instead of exhausting memory."
    )
    CATEGORY = category("Interop")
    FUNCTION = "convert"
    RETURN_TYPES = ("IMAGE", "MASK", "FLOAT")
    RETURN_NAMES = ("images", "mask", "fps")

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "max_frames": ("INT", {"default": 300, "min": 1, "max": 100000,
                                   "tooltip": "Upper bound on frames held in memory; above it the node stops with an error."}),
        })

    def convert(self, frames, max_frames=300):
        import torch

        n = frames.info.frame_count
        if n > max_frames:
            raise ValueError(
                f"the stream has {n} frames, more than max_frames={max_frames}. Trim it (Load Video's "
                "start/end or every_nth) or raise max_frames if you have the memory "
                f"(≈{n * frames.info.width * frames.info.height * 12 / 2**20:.0f} MB)."
            )
        chunk = frames.read(max_frames=max_frames)
        mask = chunk.mask if chunk.mask is not None else torch.ones(chunk.frames.shape[:3])
        return (chunk.frames, mask, float(frames.info.fps))


class RemasterImageToFrames(StreamStage):
    DESCRIPTION = "Wrap a ComfyUI IMAGE batch (and optional MASK and AUDIO) as a Remaster frame stream."
    CATEGORY = category("Interop")
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Frames as a ComfyUI IMAGE batch."}),
                "fps": ("FLOAT", {"default": 24.0, "min": 0.01, "max": 1000.0, "tooltip": "Frame rate of the batch."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Optional mask (one per frame, or one for all)."}),
                "audio": ("AUDIO", {"tooltip": "Optional audio to carry with the frames."}),
            },
        }

    def convert(self, images, fps=24.0, mask=None, audio=None):
        ref = audio_io.write_audio(audio) if audio is not None else None
        return (from_tensor(images, Fraction(fps).limit_denominator(1001), mask=mask, audio=ref, source="IMAGE"),)


class RemasterVideoToFrames(StreamStage):
    DESCRIPTION = "Stream a core ComfyUI VIDEO (from core Load Video or other nodes) without loading it whole."
    CATEGORY = category("Interop")
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"video": ("VIDEO", {"tooltip": "A core VIDEO value."})}}

    def convert(self, video):
        return (decode.open_video(preview.video_input_path(video)),)


class RemasterFramesAudio:
    DESCRIPTION = "The stream's audio (trimmed to its range) as a ComfyUI AUDIO value for audio nodes."
    CATEGORY = category("Interop")
    FUNCTION = "convert"
    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": frames_input("The stream whose audio you want.")}}

    def convert(self, frames):
        if frames.info.audio is None:
            raise ValueError("this stream has no audio (the source video has no audio track)")
        return (audio_io.read_audio(frames.info.audio),)


class RemasterSceneCuts:
    DESCRIPTION = (
        "Find shot boundaries (hard cuts) and attach them to the stream, so temporal stages (RIFE, "
        "colour smoothing, keyframes, SAM2, face tracking) reset there. Also outputs them as a list."
    )
    CATEGORY = category("Video")
    FUNCTION = "detect"
    RETURN_TYPES = (FRAMES, CUTS, "STRING")
    RETURN_NAMES = ("frames", "cuts", "cuts_text")

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "threshold": ("FLOAT", {"default": 0.25, "min": 0.01, "max": 2.0, "step": 0.01,
                                    "tooltip": "How different two frames must be to count as a cut (lower finds more)."}),
            "min_shot_frames": ("INT", {"default": 8, "min": 1, "max": 10000,
                                        "tooltip": "Shortest shot; cuts closer than this to the previous one are ignored (flashes)."}),
        })

    def detect(self, frames, threshold=0.25, min_shot_frames=8):
        cuts = scenes.detect_scene_cuts(frames, threshold, min_shot_frames)
        return (scenes.with_cuts(frames, cuts), cuts, ",".join(str(c) for c in cuts))


NODE_CLASS_MAPPINGS = {
    "RemasterLoadVideo": RemasterLoadVideo,
    "RemasterSaveVideo": RemasterSaveVideo,
    "RemasterPreviewFrames": RemasterPreviewFrames,
    "RemasterCache": RemasterCache,
    "RemasterSceneCuts": RemasterSceneCuts,
    "RemasterFramesToImage": RemasterFramesToImage,
    "RemasterImageToFrames": RemasterImageToFrames,
    "RemasterVideoToFrames": RemasterVideoToFrames,
    "RemasterFramesAudio": RemasterFramesAudio,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "RemasterLoadVideo": "Load Video (Remaster)",
    "RemasterSaveVideo": "Save Video (Remaster)",
    "RemasterPreviewFrames": "Preview Frames (Remaster)",
    "RemasterCache": "Cache Frames (Remaster)",
    "RemasterSceneCuts": "Scene Cuts (Remaster)",
    "RemasterFramesToImage": "Frames to IMAGE (Remaster)",
    "RemasterImageToFrames": "IMAGE to Frames (Remaster)",
    "RemasterVideoToFrames": "VIDEO to Frames (Remaster)",
    "RemasterFramesAudio": "Frames Audio to AUDIO (Remaster)",
}

if host.IN_COMFYUI:  # a fresh install lists and previews the example clip the templates open
    install_example()
