"""UI-format ↔ API-format workflows.

The shipped graphs are written once, in API format (``workflows/api/*.json``); their UI twins
(``workflows/*.json``, which ComfyUI lists as templates) are generated from them with the node
schemas, so the two never drift. :func:`ui_to_api` reads a UI graph back for the consistency
test.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
SEED_NAMES = ("seed", "noise_seed")


def _inputs(cls) -> list[tuple[str, Any, dict]]:
    types = cls.INPUT_TYPES()
    out = []
    for section in ("required", "optional"):
        for name, spec in types.get(section, {}).items():
            t = spec[0]
            opts = spec[1] if len(spec) > 1 else {}
            out.append((name, t, opts))
    return out


def _is_widget(t: Any) -> bool:
    return isinstance(t, (list, tuple)) or t in WIDGET_TYPES or t == "COMBO"


def _has_control(name: str, t: Any, opts: dict) -> bool:
    return t == "INT" and bool(opts.get("control_after_generate", name in SEED_NAMES))


def _extra_value(name: str, t: Any, opts: dict):
    """The value the frontend stores after a widget: a seed's "control after generate" mode, or
    the upload button of a file widget (ComfyUI saves "image" for it). None when there is none."""
    if _has_control(name, t, opts):
        return "fixed"
    if opts.get("video_upload") or opts.get("image_upload"):
        return "image"
    return None


def _is_link(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int)


def _depths(api: dict) -> dict:
    depth: dict = {}

    def d(nid: str) -> int:
        if nid not in depth:
            depth[nid] = 0
            ins = [v[0] for v in api[nid].get("inputs", {}).values() if _is_link(v)]
            depth[nid] = 1 + max((d(s) for s in ins), default=-1)
        return depth[nid]

    for nid in api:
        d(nid)
    return depth


def api_to_ui(api: dict, mappings: dict) -> dict:
    """Build the UI-format graph for an API-format workflow."""
    ids = sorted(api, key=lambda k: int(k))
    depth = _depths(api)
    column_y: dict = {}
    nodes, links = [], []
    link_id = 0
    out_links: dict = {}  # (node, slot) -> [link ids]
    pending_inputs: dict = {}
    for nid in ids:
        node = api[nid]
        cls = mappings[node["class_type"]]
        values = node.get("inputs", {})
        inputs_ui, widgets = [], []
        for name, t, opts in _inputs(cls):
            v = values.get(name, opts.get("default"))
            if _is_link(v):
                link_id += 1
                src, slot = v
                src_cls = mappings[api[src]["class_type"]]
                ltype = src_cls.RETURN_TYPES[slot]
                links.append([link_id, int(src), slot, int(nid), None, ltype])
                out_links.setdefault((src, slot), []).append(link_id)
                entry = {"name": name, "type": ltype if not isinstance(ltype, list) else "COMBO", "link": link_id}
                if _is_widget(t):
                    entry["widget"] = {"name": name}
                inputs_ui.append(entry)
                pending_inputs[link_id] = (nid, len(inputs_ui) - 1)
                if _is_widget(t):
                    widgets.append(opts.get("default", t[0] if isinstance(t, (list, tuple)) and t else None))
                    if _extra_value(name, t, opts) is not None:
                        widgets.append(_extra_value(name, t, opts))
                continue
            if _is_widget(t):
                if v is None and isinstance(t, (list, tuple)) and t:
                    v = t[0]
                widgets.append(v)
                if _extra_value(name, t, opts) is not None:
                    widgets.append(_extra_value(name, t, opts))
            elif name in values or not opts.get("optional"):
                inputs_ui.append({"name": name, "type": t, "link": None})
        for lid, (tnid, idx) in pending_inputs.items():
            if tnid == nid:
                for l in links:
                    if l[0] == lid:
                        l[4] = idx
        col = depth[nid]
        y = column_y.get(col, 80)
        height = 80 + 26 * (len(widgets) + len(inputs_ui))
        column_y[col] = y + height + 40
        ui_node = {
            "id": int(nid),
            "type": node["class_type"],
            "pos": [60 + 380 * col, y],
            "size": [340, height],
            "flags": {},
            "order": 0,
            "mode": 0,
            "inputs": inputs_ui,
            "outputs": [
                {"name": (cls.RETURN_NAMES[i] if hasattr(cls, "RETURN_NAMES") else str(rt)), "type": rt, "links": [], "slot_index": i}
                for i, rt in enumerate(cls.RETURN_TYPES)
            ],
            "properties": {"Node name for S&R": node["class_type"]},
            "widgets_values": widgets,
        }
        title = (node.get("_meta") or {}).get("title")
        if title:
            ui_node["title"] = title
        nodes.append(ui_node)
    by_id = {n["id"]: n for n in nodes}
    for (src, slot), lids in out_links.items():
        by_id[int(src)]["outputs"][slot]["links"] = lids
    order = sorted(nodes, key=lambda n: (depth[str(n["id"])], n["id"]))
    for i, n in enumerate(order):
        n["order"] = i
    return {
        "last_node_id": max(by_id),
        "last_link_id": link_id,
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"remaster": {"generated_from": "workflows/api"}},
        "version": 0.4,
    }


def ui_to_api(ui: dict, mappings: dict) -> dict:
    """Read a UI-format graph back into API format (for the consistency test)."""
    link_src = {l[0]: (str(l[1]), l[2]) for l in ui["links"]}
    api = {}
    for n in ui["nodes"]:
        cls = mappings[n["type"]]
        vals = list(n.get("widgets_values") or [])
        linked = {i["name"]: i["link"] for i in n.get("inputs", []) if i.get("link") is not None}
        inputs: dict = {}
        pos = 0
        for name, t, opts in _inputs(cls):
            if _is_widget(t):
                v = vals[pos] if pos < len(vals) else None
                pos += 1
                if _extra_value(name, t, opts) is not None:
                    pos += 1
                if name in linked:
                    src = link_src[linked[name]]
                    inputs[name] = [src[0], src[1]]
                else:
                    inputs[name] = v
            elif name in linked:
                src = link_src[linked[name]]
                inputs[name] = [src[0], src[1]]
        node = {"class_type": n["type"], "inputs": inputs}
        if n.get("title"):
            node["_meta"] = {"title": n["title"]}
        api[str(n["id"])] = node
    return api


def normalise_api(api: dict, mappings: dict) -> dict:
    """API graph with every widget input present (defaults filled), for comparisons."""
    out = {}
    for nid, node in api.items():
        cls = mappings[node["class_type"]]
        inputs = {}
        for name, t, opts in _inputs(cls):
            v = node.get("inputs", {}).get(name)
            if v is None and _is_widget(t):
                v = opts.get("default", t[0] if isinstance(t, (list, tuple)) and t else None)
            if v is not None:
                inputs[name] = v
        out[str(nid)] = {"class_type": node["class_type"], "inputs": inputs}
    return out


def build_all(root: Path, mappings: dict) -> list[Path]:
    """Regenerate ``workflows/<name>.json`` from every ``workflows/api/<name>.json``."""
    written = []
    for api_path in sorted((root / "workflows" / "api").glob("*.json")):
        api = json.loads(api_path.read_text())
        ui = api_to_ui(api, mappings)
        target = root / "workflows" / api_path.name
        target.write_text(json.dumps(ui, indent=2) + "\n")
        written.append(target)
    return written
