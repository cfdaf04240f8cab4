"""The one adapter between Remaster and ComfyUI (``comfy``: what exists only inside ComfyUI;
``paths``: folders; ``progress``: bars, listeners, interrupt; ``device``: devices and memory).
Callers use ``host.<name>``; the names below are the adapter's whole surface.

The one adapter between Remaster and ComfyUI.

Every touch point with the host (folder_paths, progress bar, interrupt, device and memory
management, UI messages) goes through here. Outside ComfyUI each has a plain fallback, so the
engine, the tests and ``python -m remaster`` run without ComfyUI installed.
"""
from __future__ import annotations

from . import comfy, device, paths, progress  # noqa: F401  (tests patch these modules)
from .comfy import IN_COMFYUI, PROGRESS_EVENT, _comfy_utils, _executing, _folder_paths, _mm, _prompt_server, comfy_nodes, comfy_sampler_choices, executing_node_id, register_routes, send_ui, set_executing_node, ui_progress_listener  # noqa: F401
from .paths import CORE_MODEL_FOLDERS, MODEL_EXTENSIONS, MODEL_FOLDERS, _dir, _state, annotated_input_path, input_dir, list_model_files, model_dirs, models_root, output_dir, register_model_folders, set_dirs, temp_dir  # noqa: F401
from .progress import Interrupted, Progress, StageBar, _comfy_bar, _interrupt_flag, _stage, add_progress_listener, check_interrupt, clear_interrupt, current_node_id, enter_stage, leave_stage, remove_progress_listener, request_interrupt, terminal_progress_listener  # noqa: F401
from .device import cpu_has_fast_bf16, empty_cache, free_memory, is_oom, make_room, torch_device  # noqa: F401

if IN_COMFYUI:  # progress text in the nodes of the web UI
    add_progress_listener(ui_progress_listener())
