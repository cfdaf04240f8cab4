"""ComfyUI node classes of Remaster: one module per stage, each exporting NODE_CLASS_MAPPINGS and
NODE_DISPLAY_NAME_MAPPINGS. This package collects them; node modules stay thin and call into
the ``remaster`` engine."""
from __future__ import annotations

import importlib
import logging
import pkgutil

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

log = logging.getLogger("remaster.nodes")

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name.startswith("_"):
        continue
    _mod = importlib.import_module(f"{__name__}.{_info.name}")
    for _key, _cls in getattr(_mod, "NODE_CLASS_MAPPINGS", {}).items():
        if _key in NODE_CLASS_MAPPINGS:
            raise RuntimeError(f"node '{_key}' is defined twice (in {_info.name})")
        NODE_CLASS_MAPPINGS[_key] = _cls
    NODE_DISPLAY_NAME_MAPPINGS.update(getattr(_mod, "NODE_DISPLAY_NAME_MAPPINGS", {}))
