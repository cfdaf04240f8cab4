"""The one adapter between Remaster and ComfyUI.

Every touch point with the host (folder_paths, progress bar, interrupt, device and memory
management, UI messages) goes through here. Outside ComfyUI each has a plain fallback, so the
engine, the tests and ``python -m remaster`` run without ComfyUI installed.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch

try:  # ComfyUI present: these are top-level modules of the ComfyUI process
    import folder_paths as _folder_paths  # type: ignore
    import comfy.model_management as _mm  # type: ignore
    import comfy.utils as _comfy_utils  # type: ignore

    IN_COMFYUI = True
except Exception:  # pragma: no cover - depends on the host
    _folder_paths = None
    _mm = None
    _comfy_utils = None
    IN_COMFYUI = False


class Interrupted(Exception):
    """Raised when the user stops a run (ComfyUI's cancel button, or Ctrl+C in the CLI)."""


# ---------------------------------------------------------------------------------------------
# folders
# ---------------------------------------------------------------------------------------------
_state = {"models_dir": None, "input_dir": None, "output_dir": None, "temp_dir": None}

# our own model folders, registered with ComfyUI so extra_model_paths.yaml can point at them
MODEL_FOLDERS = (
    "upscale_models",
    "sam2",
    "matting",
    "facerestore_models",
    "facedetection",
    "rife",
    "luts",
    "diffusers",
)
MODEL_EXTENSIONS = {".pth", ".pt", ".pkl", ".safetensors", ".ckpt", ".bin", ".onnx", ".cube", ".json"}


def set_dirs(
    models_dir: Optional[str] = None,
    input_dir: Optional[str] = None,
    output_dir: Optional[str] = None,
    temp_dir: Optional[str] = None,
) -> None:
    """Override folders for runs outside ComfyUI (CLI flags, tests)."""
    for key, value in (
        ("models_dir", models_dir),
        ("input_dir", input_dir),
        ("output_dir", output_dir),
        ("temp_dir", temp_dir),
    ):
        if value is not None:
            _state[key] = str(value)


def models_root() -> Path:
    """Outside ComfyUI: the directory laid out like ComfyUI's ``models/``."""
    d = _state["models_dir"] or os.environ.get("REMASTER_MODELS_DIR") or os.path.join(os.getcwd(), "models")
    return Path(d).expanduser().resolve()


def register_model_folders() -> None:
    """Make ComfyUI know our folders (``models/<name>``), keeping any paths already configured."""
    if _folder_paths is None:
        return
    base = Path(_folder_paths.models_dir)
    for name in MODEL_FOLDERS:
        if name in _folder_paths.folder_names_and_paths:
            paths, exts = _folder_paths.folder_names_and_paths[name]
            exts = set(exts) | MODEL_EXTENSIONS
            _folder_paths.folder_names_and_paths[name] = (paths, exts)
        else:
            _folder_paths.folder_names_and_paths[name] = ([str(base / name)], set(MODEL_EXTENSIONS))


def model_dirs(folder: str) -> list[Path]:
    """All directories searched for models of ``folder`` (first one is where downloads go)."""
    if _folder_paths is not None and _state["models_dir"] is None:
        register_model_folders()
        try:
            return [Path(p) for p in _folder_paths.get_folder_paths(folder)]
        except Exception:
            return [Path(_folder_paths.models_dir) / folder]
    return [models_root() / folder]


def list_model_files(folder: str) -> list[str]:
    """File names (relative to their folder) available in ``folder``."""
    names: set[str] = set()
    for d in model_dirs(folder):
        if not d.is_dir():
            continue
        for p in d.rglob("*"):
            if p.is_file() and p.suffix.lower() in MODEL_EXTENSIONS and not p.name.endswith(".part"):
                names.add(p.relative_to(d).as_posix())
    return sorted(names)


def _dir(kind: str) -> Path:
    if _state[f"{kind}_dir"]:
        return Path(_state[f"{kind}_dir"])
    env = os.environ.get(f"REMASTER_{kind.upper()}_DIR")
    if env:
        return Path(env)
    if _folder_paths is not None:
        return Path(getattr(_folder_paths, f"get_{kind}_directory")())
    return Path(os.getcwd()) / kind


def input_dir() -> Path:
    return _dir("input")


def output_dir() -> Path:
    p = _dir("output")
    p.mkdir(parents=True, exist_ok=True)
    return p


def temp_dir() -> Path:
    p = _dir("temp")
    p.mkdir(parents=True, exist_ok=True)
    return p


def annotated_input_path(name: str) -> Path:
    """Resolve a file name from the input folder (ComfyUI's annotated names too) or a path."""
    if _folder_paths is not None:
        try:
            p = _folder_paths.get_annotated_filepath(name)
            if p and os.path.exists(p):
                return Path(p)
        except Exception:
            pass
    p = Path(name).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return input_dir() / name


# ---------------------------------------------------------------------------------------------
# progress and interrupt
# ---------------------------------------------------------------------------------------------
_interrupt_flag = {"set": False}
_progress_listeners: list[Callable[[dict], None]] = []


def request_interrupt() -> None:
    _interrupt_flag["set"] = True


def clear_interrupt() -> None:
    _interrupt_flag["set"] = False


def check_interrupt() -> None:
    """Raise :class:`Interrupted` (or ComfyUI's own exception) if the user asked to stop."""
    if _mm is not None:
        _mm.throw_exception_if_processing_interrupted()
    if _interrupt_flag["set"]:
        _interrupt_flag["set"] = False
        raise Interrupted("run interrupted")


def add_progress_listener(fn: Callable[[dict], None]) -> None:
    _progress_listeners.append(fn)


def remove_progress_listener(fn: Callable[[dict], None]) -> None:
    if fn in _progress_listeners:
        _progress_listeners.remove(fn)


_stage = {"node": None}


def enter_stage(node_id: Optional[str]) -> Optional[str]:
    """Mark the lazy stage built by ``node_id`` as the one computing now (the frame stream calls
    this around each step of a stage); returns the previous mark for :func:`leave_stage`."""
    prev = _stage["node"]
    if node_id is not None:
        _stage["node"] = node_id
    return prev


def leave_stage(prev: Optional[str]) -> None:
    _stage["node"] = prev


def current_node_id() -> Optional[str]:
    """The node whose work is running now: the lazy stage being pulled, else the executing node."""
    return _stage["node"] or executing_node_id()


def _comfy_bar(total: int, node_id: Optional[str]):
    if _comfy_utils is None:
        return None
    try:
        try:
            return _comfy_utils.ProgressBar(total, node_id=node_id)
        except TypeError:  # ComfyUI before per-node bars
            return _comfy_utils.ProgressBar(total)
    except Exception:
        return None


class StageBar:
    """A lazy stage's own ComfyUI progress bar (frames it has produced in this pass); no-op
    outside ComfyUI. Updates are throttled to a few per second."""

    def __init__(self, node_id: Optional[str], total: int) -> None:
        self.total, self.done, self._last = max(1, int(total)), 0, 0.0
        self._bar = _comfy_bar(self.total, node_id) if node_id is not None else None

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is None:
            return
        now = time.perf_counter()
        if now - self._last >= 0.1 or self.done >= self.total:
            self._last = now
            try:
                self._bar.update_absolute(min(self.done, self.total), self.total)
            except Exception:
                self._bar = None


class Progress:
    """Frames done / total, with frames/s and time left; ComfyUI's bar or a terminal line. The
    bar is the node's whose stage is running (``node_id``, else the lazy stage being pulled)."""

    def __init__(self, total: int, label: str = "", node_id: Optional[str] = None) -> None:
        self.total = max(0, int(total))
        self.done = 0
        self.label = label
        self.node_id = node_id if node_id is not None else current_node_id()
        self.t0 = time.perf_counter()
        self._last_print = 0.0
        self._bar = _comfy_bar(self.total or 1, self.node_id)

    def update(self, n: int = 1) -> None:
        self.done += n
        elapsed = max(1e-9, time.perf_counter() - self.t0)
        fps = self.done / elapsed
        left = (self.total - self.done) / fps if fps > 0 and self.total else 0.0
        info = {
            "label": self.label,
            "node": self.node_id,
            "done": self.done,
            "total": self.total,
            "fps": fps,
            "eta": left,
        }
        if self._bar is not None:
            self._bar.update_absolute(min(self.done, self.total or self.done), self.total or None)
        for fn in list(_progress_listeners):
            fn(info)
        check_interrupt()

    def close(self) -> None:
        for fn in list(_progress_listeners):
            fn({"label": self.label, "node": self.node_id, "done": self.done, "total": self.total,
                "fps": 0.0, "eta": 0.0, "closed": True})


def terminal_progress_listener(stream=sys.stderr) -> Callable[[dict], None]:
    """A listener that draws a one-line progress bar (used by ``python -m remaster run``)."""
    state = {"last": 0.0}

    def listener(info: dict) -> None:
        now = time.perf_counter()
        if not info.get("closed") and now - state["last"] < 0.2 and info["done"] != info["total"]:
            return
        state["last"] = now
        total = info["total"] or 0
        frac = min(1.0, info["done"] / total) if total else 0.0
        bar = "#" * int(frac * 30)
        line = (
            f"\r{info['label'][:28]:<28} [{bar:<30}] {info['done']}/{total} "
            f"{info['fps']:.1f} fr/s eta {info['eta']:.0f}s"
        )
        stream.write(line + ("\n" if info.get("closed") else ""))
        stream.flush()

    return listener


# ---------------------------------------------------------------------------------------------
# devices and memory
# ---------------------------------------------------------------------------------------------
def torch_device() -> torch.device:
    forced = os.environ.get("REMASTER_DEVICE")
    if forced:
        return torch.device(forced)
    if _mm is not None:
        try:
            return _mm.get_torch_device()
        except Exception:
            pass
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def free_memory(device: torch.device) -> int:
    """Bytes free for tensors on ``device``."""
    if device.type == "cuda":
        if _mm is not None:
            try:
                return int(_mm.get_free_memory(device))
            except Exception:
                pass
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:
        return 4 * 2**30


def make_room(device: torch.device, needed_bytes: int) -> None:
    """Ask ComfyUI to unload other models so ``needed_bytes`` fit (no-op outside ComfyUI)."""
    if _mm is not None and device.type == "cuda":
        try:
            _mm.free_memory(needed_bytes, device)
        except Exception:
            pass


def empty_cache() -> None:
    if _mm is not None:
        try:
            _mm.soft_empty_cache()
            return
        except Exception:
            pass
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX or AVX-512 BF16, where bf16 convolutions beat fp32."""
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:
        cap = ""
    if "AMX" in str(cap).upper():
        return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        return " amx_bf16" in flags or " avx512_bf16" in flags
    except OSError:
        return False


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    if _mm is not None and isinstance(exc, getattr(_mm, "OOM_EXCEPTION", ())):
        return True
    return "out of memory" in str(exc).lower()


# ---------------------------------------------------------------------------------------------
# UI messages (ComfyUI's websocket), used by previews and progress widgets
# ---------------------------------------------------------------------------------------------
def _prompt_server():
    """ComfyUI's PromptServer instance, or None outside ComfyUI (or before the server exists)."""
    if not IN_COMFYUI:
        return None
    try:
        from server import PromptServer  # type: ignore
    except Exception:
        return None
    return getattr(PromptServer, "instance", None)


def send_ui(event: str, data: dict, node_id: Optional[str] = None) -> None:
    """Send a websocket message to the browser (no-op outside ComfyUI)."""
    server = _prompt_server()
    if server is None:
        return
    try:
        payload = dict(data)
        if node_id is not None:
            payload["node"] = node_id
        server.send_sync(event, payload)
    except Exception:
        pass


# ---------------------------------------------------------------------------------------------
# ComfyUI's own node classes, for back-ends that sample with ComfyUI's models
# ---------------------------------------------------------------------------------------------
def comfy_nodes():
    """ComfyUI's ``nodes`` module (CLIPTextEncode, KSampler, ...); only inside ComfyUI."""
    if not IN_COMFYUI:
        raise RuntimeError("the ComfyUI inpainting back-end runs only inside ComfyUI; outside it use the "
                           "diffusers back-end (a diffusers model folder in models/diffusers)")
    import nodes as comfy_nodes_module  # type: ignore

    return comfy_nodes_module


def comfy_sampler_choices() -> tuple[list, list]:
    """ComfyUI's sampler and scheduler names (a short default list outside ComfyUI)."""
    if IN_COMFYUI:
        try:
            import comfy.samplers  # type: ignore

            return list(comfy.samplers.KSampler.SAMPLERS), list(comfy.samplers.KSampler.SCHEDULERS)
        except Exception:
            pass
    return ["euler", "euler_ancestral", "dpmpp_2m", "ddim", "uni_pc"], ["normal", "karras", "simple", "sgm_uniform"]


_executing = {"node": None}


def set_executing_node(node_id: Optional[str]) -> None:
    """Outside ComfyUI: the in-process runner names the node it is calling (None when done)."""
    _executing["node"] = None if node_id is None else str(node_id)


def executing_node_id() -> Optional[str]:
    """The id of the node ComfyUI (or the in-process runner) is executing now, else None."""
    if not IN_COMFYUI:
        return _executing["node"]
    try:
        from comfy_execution.utils import get_executing_context  # type: ignore

        ctx = get_executing_context()
        if ctx is not None and ctx.node_id is not None:
            return str(ctx.node_id)
    except Exception:
        pass
    server = _prompt_server()
    node = getattr(server, "last_node_id", None) if server is not None else None
    return None if node is None else str(node)


def register_routes(routes) -> bool:
    """Add ``(method, path, handler)`` aiohttp routes to ComfyUI's server (reachable under ``/`` and
    ``/api``). Returns False outside ComfyUI, where nothing is registered."""
    server = _prompt_server()
    if server is None:
        return False
    for method, path, handler in routes:
        server.routes.route(method, path)(handler)
    return True


PROGRESS_EVENT = "remaster.progress"


def ui_progress_listener(min_interval: float = 0.25) -> Callable[[dict], None]:
    """A progress listener that sends ``remaster.progress`` websocket messages (frames done, total,
    frames/s, seconds left) for the web UI, at most one per ``min_interval`` seconds per node."""
    last: dict = {}

    def listener(info: dict) -> None:
        node = info.get("node") or executing_node_id()
        if node is None:
            return
        now = time.perf_counter()
        final = bool(info.get("closed")) or info.get("done") == info.get("total")
        if not final and node in last and now - last[node] < min_interval:
            return
        last[node] = now
        send_ui(PROGRESS_EVENT, {
            "label": info.get("label", ""), "done": int(info.get("done", 0)), "total": int(info.get("total", 0)),
            "fps": round(float(info.get("fps", 0.0)), 3), "eta": round(float(info.get("eta", 0.0)), 1),
            "closed": bool(info.get("closed", False)),
        }, node_id=str(node))

    return listener


if IN_COMFYUI:  # progress text in the nodes of the web UI
    add_progress_listener(ui_progress_listener())
