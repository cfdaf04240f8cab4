"""Folders: models (ComfyUI's ``folder_paths`` inside ComfyUI, ``--models-dir`` /
``REMASTER_MODELS_DIR`` outside), input, output and temp."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .comfy import _folder_paths


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
    "audio_separation",
)
CORE_MODEL_FOLDERS = ("checkpoints",)  # ComfyUI's own folders that registry entries may name (not re-registered)
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
    d = _state["models_dir"] or os.environ.get("REMASTER_MODELS_DIR")
    if not d:
        pack = Path(__file__).resolve().parents[1]
        comfy_models = pack.parent.parent / "models"  # the pack inside ComfyUI/custom_nodes/
        d = comfy_models if pack.parent.name == "custom_nodes" and comfy_models.is_dir() else Path.cwd() / "models"
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
