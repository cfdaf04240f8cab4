"""What only exists inside ComfyUI: its modules (imported here and nowhere else in the pack),
the websocket UI messages, the executing node, ComfyUI's own sampling nodes, server routes."""
from __future__ import annotations

import time
from typing import Callable, Optional

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
