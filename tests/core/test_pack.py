"""The pack as ComfyUI imports it: light import, node schemas, no network, no model load."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import importlib.util, socket, sys, json
opened = []
class NoNet(socket.socket):
    def connect(self, *a, **k):
        opened.append(a)
        raise OSError("network disabled in this test")
socket.socket = NoNet
spec = importlib.util.spec_from_file_location("ComfyUI_Remaster", sys.argv[1] + "/__init__.py",
                                              submodule_search_locations=[sys.argv[1]])
m = importlib.util.module_from_spec(spec); sys.modules["ComfyUI_Remaster"] = m; spec.loader.exec_module(m)
heavy = sorted(k for k in sys.modules if k.split(".")[0] in ("spandrel", "transformers", "diffusers", "kornia"))
nodes = {}
for key, cls in m.NODE_CLASS_MAPPINGS.items():
    types = cls.INPUT_TYPES()
    nodes[key] = {
        "category": cls.CATEGORY, "description": getattr(cls, "DESCRIPTION", ""),
        "display": m.NODE_DISPLAY_NAME_MAPPINGS.get(key, ""),
        "untooltipped": [n for s in ("required", "optional") for n, spec in types.get(s, {}).items()
                         if len(spec) < 2 or not spec[1].get("tooltip")],
        "has_function": hasattr(cls, cls.FUNCTION),
        "returns": len(cls.RETURN_TYPES) == len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
    }
print(json.dumps({"heavy": heavy, "opened": opened, "web": m.WEB_DIRECTORY, "nodes": nodes}))
"""


def probe():
    out = subprocess.run([sys.executable, "-c", PROBE, str(ROOT)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_is_light_and_offline():
    info = probe()
    assert info["opened"] == []
    assert info["heavy"] == [], "importing the pack must not load model libraries"
    assert (ROOT / info["web"].lstrip("./")).is_dir()


def test_every_node_is_documented():
    info = probe()
    assert len(info["nodes"]) >= 9
    for key, n in info["nodes"].items():
        assert key.startswith("Remaster"), key
        assert n["category"].startswith("Remaster/"), key
        assert len(n["description"]) > 40, key
        assert n["display"] and "(Remaster)" in n["display"], key
        assert n["untooltipped"] == [], (key, n["untooltipped"])
        assert n["has_function"] and n["returns"], key
