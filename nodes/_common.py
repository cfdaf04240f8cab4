"""Shared bits for node modules: the socket type names and small schema helpers."""
from __future__ import annotations

FRAMES = "REMASTER_FRAMES"  # the frame stream (remaster.stream.FrameStream)
CUTS = "REMASTER_CUTS"  # scene cuts: list of frame indices where a new shot starts
CATEGORY = "Remaster"
NONE = "(none)"  # the first choice of an optional dropdown: nothing picked


def category(group: str) -> str:
    return f"{CATEGORY}/{group}"


def frames_input(tooltip: str = "Frame stream from a Remaster node (e.g. Load Video).") -> tuple:
    return (FRAMES, {"tooltip": tooltip})


def stream_inputs(required: dict | None = None, optional: dict | None = None, frames: str | None = None) -> dict:
    """``INPUT_TYPES`` of a node on the frame stream: the ``frames`` socket first (``frames``: its
    tooltip, if not the default), then ``required``; an ``optional`` section when given."""
    out = {"required": {"frames": frames_input(frames) if frames else frames_input(), **(required or {})}}
    if optional is not None:
        out["optional"] = optional
    return out


def picked(value) -> str:
    """A dropdown's value, or "" when nothing was picked (:data:`NONE`, empty or missing)."""
    return "" if value in (NONE, None, "") else value


def model_input(folder: str, tooltip: str, task: str | None = None) -> tuple:
    """A dropdown of model files: registry files for the folder plus the user's own files."""
    from remaster.models import registry

    names = registry.choices(folder, task) or ["(no models found)"]
    return (names, {"tooltip": tooltip})


class StreamStage:
    """Base of the nodes that take a frame stream and return a new one through ``run``."""

    FUNCTION = "run"
    RETURN_TYPES = (FRAMES,)
    RETURN_NAMES = ("frames",)
