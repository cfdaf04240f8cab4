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
UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")
UPLOAD_VALUE = "image"  # what ComfyUI's frontend stores for its upload button
CONTROL_VALUE = "fixed"  # templates are reproducible: "control after generate" is fixed
# Extra height, beyond the frontend's own size for a fresh node, kept free under nodes whose
# panel grows once a result arrives (the video player of Save Video / Comparison).
RESULT_RESERVE = {"RemasterSaveVideo": 120, "RemasterComparison": 420, "RemasterPreviewFrames": 300}


def _inputs(cls) -> list[tuple[str, Any, dict]]:
    types = cls.INPUT_TYPES()
    out = []
    for section in ("required", "optional"):
        for name, spec in types.get(section, {}).items():
            t = spec[0]
            opts = dict(spec[1]) if len(spec) > 1 and isinstance(spec[1], dict) else {}
            opts["_section"] = section
            out.append((name, t, opts))
    return out


def _is_widget(t: Any, opts: dict | None = None) -> bool:
    if opts and opts.get("forceInput"):
        return False
    return isinstance(t, (list, tuple)) or t in WIDGET_TYPES or t == "COMBO"


def _has_control(name: str, t: Any, opts: dict) -> bool:
    return t == "INT" and bool(opts.get("control_after_generate", name in SEED_NAMES))


def widget_slots(cls) -> list[tuple[str, str]]:
    """The node's ``widgets_values`` layout as ComfyUI's frontend saves it: ``(name, kind)`` with
    kind ``value`` (an input's widget), ``control`` (the "control after generate" combo, right
    after its INT) or ``upload`` (the upload button the frontend adds to a node with an
    image/video upload combo: created after all the node's other widgets, optional ones included,
    so its value is the last). Checked against golden files captured from the real frontend
    (tests/data/frontend_widgets; Load Video's optional ``hdr`` comes before the upload value)."""
    slots: list[tuple[str, str]] = []
    inputs = _inputs(cls)
    upload = any(o.get(f) for _, t, o in inputs for f in UPLOAD_FLAGS if o["_section"] == "required")
    for name, t, opts in inputs:
        if not _is_widget(t, opts):
            continue
        slots.append((name, "value"))
        if _has_control(name, t, opts):
            slots.append((name, "control"))
    if upload:
        slots.append(("upload", "upload"))
    return slots


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


def _default(t: Any, opts: dict):
    if "default" in opts:
        return opts["default"]
    if isinstance(t, (list, tuple)):
        return t[0] if t else ""
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(t)


def _size(cls_name: str, cls, sizes: dict, n_widgets: int, n_inputs: int) -> list[int]:
    """Node size: the frontend's own size for a fresh node (captured in ``sizes``) when known,
    else an estimate from its rows; at least 340 wide."""
    if cls_name in sizes:
        w, h = sizes[cls_name]
    else:
        w, h = 340, 30 + 24 * (n_widgets + max(n_inputs, len(cls.RETURN_TYPES)))
    return [max(340, int(w)), int(h)]


def api_to_ui(api: dict, mappings: dict, sizes: dict | None = None) -> dict:
    """Build the UI-format graph for an API-format workflow, in the form ComfyUI's frontend saves
    (widget order from :func:`widget_slots`), laid out in columns by depth so that no node covers
    another, with room left for panels that grow when results arrive."""
    sizes = sizes or {}
    ids = sorted(api, key=lambda k: int(k))
    depth = _depths(api)
    nodes, links = [], []
    link_id = 0
    out_links: dict = {}  # (node, slot) -> [link ids]
    for nid in ids:
        node = api[nid]
        cls = mappings[node["class_type"]]
        values = node.get("inputs", {})
        specs = {name: (t, opts) for name, t, opts in _inputs(cls)}
        inputs_ui = []
        for name, (t, opts) in specs.items():
            v = values.get(name)
            if _is_link(v):
                link_id += 1
                src, slot = v
                ltype = mappings[api[src]["class_type"]].RETURN_TYPES[slot]
                links.append([link_id, int(src), slot, int(nid), len(inputs_ui), ltype])
                out_links.setdefault((src, slot), []).append(link_id)
                entry = {"name": name, "type": "COMBO" if isinstance(ltype, list) else ltype, "link": link_id}
                if _is_widget(t, opts):
                    entry["widget"] = {"name": name}
                inputs_ui.append(entry)
            elif not _is_widget(t, opts) and (name in values or opts["_section"] == "required"):
                inputs_ui.append({"name": name, "type": t, "link": None})
        widgets = []
        for name, kind in widget_slots(cls):
            if kind == "upload":
                widgets.append(UPLOAD_VALUE)
            elif kind == "control":
                widgets.append(CONTROL_VALUE)
            else:
                t, opts = specs[name]
                v = values.get(name)
                widgets.append(_default(t, opts) if v is None or _is_link(v) else v)
        ui_node = {
            "id": int(nid),
            "type": node["class_type"],
            "pos": [0, 0],
            "size": _size(node["class_type"], cls, sizes, len(widgets), len(inputs_ui)),
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
    _layout(nodes, depth)
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
        "extra": {"remaster": {"generated_from": "workflows/api"}, "ds": {"scale": 0.8, "offset": [20, 40]}},
        "version": 0.4,
    }


TITLE_H = 30  # the frontend draws the title above pos[1]
GAP_X, GAP_Y = 60, 70  # room for links, and for the progress line drawn under a node


COLUMNS_PER_ROW = 5  # longer chains continue in a second band below, so the default zoom stays readable


def _layout(nodes: list, depth: dict) -> None:
    """Columns by depth, nodes stacked in id order, each column as wide as its widest node; chains
    longer than COLUMNS_PER_ROW wrap into bands below one another."""
    cols: dict = {}
    for n in nodes:
        cols.setdefault(depth[str(n["id"])], []).append(n)
    x, band_top, band_bottom = 40, 40 + TITLE_H, 0
    for i, c in enumerate(sorted(cols)):
        if i and i % COLUMNS_PER_ROW == 0:
            x, band_top = 40, band_bottom + GAP_Y
        y = band_top
        for n in cols[c]:
            n["pos"] = [x, y]
            y += n["size"][1] + RESULT_RESERVE.get(n["type"], 0) + TITLE_H + GAP_Y
        band_bottom = max(band_bottom, y)
        x += max(n["size"][0] for n in cols[c]) + GAP_X


def ui_to_api(ui: dict, mappings: dict) -> dict:
    """Read a UI-format graph back into API format the way the frontend does (values by
    :func:`widget_slots`, links for linked inputs)."""
    link_src = {l[0]: (str(l[1]), l[2]) for l in ui["links"]}
    api = {}
    for n in ui["nodes"]:
        cls = mappings[n["type"]]
        vals = list(n.get("widgets_values") or [])
        linked = {i["name"]: i["link"] for i in n.get("inputs", []) if i.get("link") is not None}
        slots = widget_slots(cls)
        if len(vals) != len(slots):
            raise ValueError(f"node #{n['id']} ({n['type']}): {len(vals)} widget values, the frontend expects "
                             f"{len(slots)} ({', '.join(name if k == 'value' else k for name, k in slots)})")
        widget_vals = {name: v for (name, kind), v in zip(slots, vals) if kind == "value"}
        inputs: dict = {}
        for name, t, opts in _inputs(cls):
            if name in linked:
                src = link_src[linked[name]]
                inputs[name] = [src[0], src[1]]
            elif name in widget_vals:
                inputs[name] = widget_vals[name]
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
            if v is None and _is_widget(t, opts):
                v = _default(t, opts)
            if v is not None:
                inputs[name] = v
        out[str(nid)] = {"class_type": node["class_type"], "inputs": inputs}
    return out


def frontend_sizes(root: Path) -> dict:
    """Fresh-node sizes captured from the real frontend (tests/data/frontend_widgets), if present."""
    out = {}
    for p in sorted((root / "tests" / "data" / "frontend_widgets").glob("*.json")):
        d = json.loads(p.read_text())
        if d.get("size"):
            out[d["class_type"]] = d["size"]
    return out


def build_all(root: Path, mappings: dict) -> list[Path]:
    """Regenerate ``workflows/<name>.json`` from every ``workflows/api/<name>.json``."""
    written = []
    sizes = frontend_sizes(root)
    for api_path in sorted((root / "workflows" / "api").glob("*.json")):
        api = json.loads(api_path.read_text())
        ui = api_to_ui(api, mappings, sizes)
        target = root / "workflows" / api_path.name
        target.write_text(json.dumps(ui, indent=2) + "\n")
        written.append(target)
    return written
