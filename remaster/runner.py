"""Execute an API-format workflow of Remaster nodes in-process, without a ComfyUI server.

The node classes are passed in (``NODE_CLASS_MAPPINGS``); the runner itself imports no node
module and no ComfyUI module. Semantics follow ComfyUI's executor where it matters to our
graphs: only output nodes and what they depend on run, each node once; literal inputs and
``[node_id, output_index]`` links; ``VALIDATE_INPUTS``; ``{"ui": ..., "result": ...}`` returns;
the ``UNIQUE_ID`` hidden input.
"""
from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path
from typing import Any, Optional


class WorkflowError(Exception):
    """A workflow cannot run: names the node (id, type, title) that failed and why."""

    def __init__(self, message: str, node_id: Optional[str] = None, class_type: str = "", title: str = ""):
        self.node_id, self.class_type, self.title = node_id, class_type, title
        where = f"node {node_id} ({class_type}{': ' + title if title and title != class_type else ''})" if node_id else "workflow"
        super().__init__(f"{where}: {message}")


def load_workflow(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise WorkflowError(f"workflow file '{path}' not found") from None
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"workflow file '{path}' is not valid JSON ({exc})") from None
    if "nodes" in data and "links" in data:
        raise WorkflowError(
            f"'{path}' is a UI-format workflow; run its API twin in workflows/api/ (or export with 'Save (API)')"
        )
    if "prompt" in data and isinstance(data["prompt"], dict):
        data = data["prompt"]
    return data


def _title(node: dict) -> str:
    return (node.get("_meta") or {}).get("title", "")


def find_nodes(prompt: dict, ref: str) -> list[str]:
    """Node ids matching an id, a title or a class_type."""
    if ref in prompt:
        return [ref]
    hits = [k for k, v in prompt.items() if _title(v) == ref]
    if hits:
        return hits
    return [k for k, v in prompt.items() if v.get("class_type") == ref]


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text


def apply_overrides(
    prompt: dict,
    sets: Optional[list[str]] = None,
    input_video: Optional[str] = None,
    output_video: Optional[str] = None,
) -> dict:
    """``--set NODE.INPUT=VALUE`` (NODE = id, title or class_type), ``--input``, ``--output``."""
    prompt = copy.deepcopy(prompt)
    for item in sets or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise WorkflowError(f"--set '{item}' must look like NODE.INPUT=VALUE (NODE = id, title or class)")
        lhs, value = item.split("=", 1)
        node_ref, name = lhs.rsplit(".", 1)
        ids = find_nodes(prompt, node_ref)
        if not ids:
            raise WorkflowError(f"--set '{item}': no node with id, title or type '{node_ref}'")
        for i in ids:
            prompt[i].setdefault("inputs", {})[name] = parse_value(value)
    if input_video:
        ids = find_nodes(prompt, "RemasterLoadVideo")
        if not ids:
            raise WorkflowError("--input given but the workflow has no Load Video (Remaster) node")
        prompt[sorted(ids, key=_id_key)[0]]["inputs"]["video"] = str(Path(input_video).expanduser().resolve())
    if output_video:
        ids = find_nodes(prompt, "RemasterSaveVideo")
        if not ids:
            raise WorkflowError("--output given but the workflow has no Save Video (Remaster) node")
        prompt[sorted(ids, key=_id_key)[0]]["inputs"]["output_path"] = str(Path(output_video).expanduser().resolve())
    return prompt


def _id_key(k: str):
    return (0, int(k)) if str(k).isdigit() else (1, str(k))


def _is_link(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int)


def run(prompt: dict, mappings: dict, on_node: Optional[callable] = None) -> dict:
    """Run the workflow; returns ``{node_id: {"ui": ..., "result": tuple}}`` for output nodes."""
    for nid, node in prompt.items():
        ct = node.get("class_type")
        if ct not in mappings:
            raise WorkflowError(f"unknown node type '{ct}' (is the pack that provides it installed?)", nid, ct or "?", _title(node))
    outputs = [nid for nid, n in prompt.items() if getattr(mappings[n["class_type"]], "OUTPUT_NODE", False)]
    if not outputs:
        raise WorkflowError("the workflow has no output node (e.g. Save Video), so nothing would run")
    results: dict[str, tuple] = {}
    ui: dict[str, dict] = {}
    visiting: set = set()

    def execute(nid: str) -> tuple:
        if nid in results:
            return results[nid]
        if nid not in prompt:
            raise WorkflowError(f"a link points to node '{nid}', which is not in the workflow")
        if nid in visiting:
            raise WorkflowError("the workflow has a cycle", nid, prompt[nid]["class_type"])
        visiting.add(nid)
        node = prompt[nid]
        ct, title = node["class_type"], _title(node)
        cls = mappings[ct]
        kwargs = {}
        for name, value in (node.get("inputs") or {}).items():
            if _is_link(value):
                src = execute(value[0])
                if value[1] >= len(src):
                    raise WorkflowError(f"input '{name}' links to output {value[1]} of node {value[0]}, which has only {len(src)}", nid, ct, title)
                kwargs[name] = src[value[1]]
            else:
                kwargs[name] = value
        try:
            types = cls.INPUT_TYPES()
            hidden = types.get("hidden", {})
            for hname, htype in hidden.items():
                if htype == "UNIQUE_ID":
                    kwargs[hname] = nid
                elif htype == "PROMPT":
                    kwargs[hname] = prompt
            required = types.get("required", {})
            for rname in required:
                if rname not in kwargs:
                    raise WorkflowError(f"required input '{rname}' is missing", nid, ct, title)
            if hasattr(cls, "VALIDATE_INPUTS"):
                sig = inspect.signature(cls.VALIDATE_INPUTS)
                vargs = {k: v for k, v in kwargs.items() if k in sig.parameters or any(
                    p.kind == p.VAR_KEYWORD for p in sig.parameters.values())}
                ok = cls.VALIDATE_INPUTS(**vargs)
                if ok is not True:
                    raise WorkflowError(str(ok), nid, ct, title)
            if on_node:
                on_node(nid, ct, title)
            from . import host

            host.set_executing_node(nid)  # lazy stages built now remember their node (progress)
            try:
                out = getattr(cls(), cls.FUNCTION)(**kwargs)
            finally:
                host.set_executing_node(None)
        except WorkflowError:
            raise
        except Exception as exc:
            raise WorkflowError(f"{exc.__class__.__name__}: {exc}", nid, ct, title) from exc
        if isinstance(out, dict):
            if "ui" in out:
                ui[nid] = out["ui"]
            out = tuple(out.get("result", ()))
        results[nid] = tuple(out) if out is not None else ()
        visiting.discard(nid)
        return results[nid]

    for nid in sorted(outputs, key=_id_key):
        execute(nid)
    return {nid: {"ui": ui.get(nid, {}), "result": results[nid]} for nid in outputs}


def output_paths(result: dict) -> list[str]:
    """File paths written by output nodes (their STRING results that are existing paths)."""
    paths = []
    for r in result.values():
        for v in r["result"]:
            if isinstance(v, str) and Path(v).exists():
                paths.append(v)
    return paths
