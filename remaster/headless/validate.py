"""Check an API-format graph before anything runs, the way ComfyUI validates a prompt.

Every node type known; every input name one the node declares; links to existing outputs of the
right type; literal values of the right type, inside their range and among their choices; every
registry model the graph names present (all missing ones at once, each with its folder and URL);
the output file writable and free. Problems come back as one message per problem, each naming the
node, the input and what is accepted, so the CLI can print them on one line and exit 2.
"""
from __future__ import annotations

import difflib
import inspect
import os
from pathlib import Path
from typing import Any, Optional

from .runner import WorkflowError, _is_link, _title


class GraphError(WorkflowError):
    """The graph or its overrides are wrong; ``problems`` lists every one found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        Exception.__init__(self, "; ".join(self.problems))
        self.node_id, self.class_type, self.title = None, "", ""


def where(nid: str, node: dict) -> str:
    title = _title(node) or node.get("class_type", "?")
    return f"node {nid} '{title}'"


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _choices_text(choices: list, limit: int = 12) -> str:
    shown = ", ".join(repr(c) for c in choices[:limit])
    return shown + (f", … ({len(choices)} in all)" if len(choices) > limit else "")


def _spec(types: dict, name: str) -> Optional[tuple]:
    for section in ("required", "optional"):
        if name in types.get(section, {}):
            s = types[section][name]
            return s if isinstance(s, tuple) else tuple(s)
    return None


def _self_validated(cls) -> set:
    """Inputs the node checks itself in ``VALIDATE_INPUTS`` (ComfyUI then skips its own check)."""
    fn = getattr(cls, "VALIDATE_INPUTS", None)
    if fn is None:
        return set()
    return {n for n, p in inspect.signature(fn).parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def check_value(value: Any, spec: tuple) -> tuple[Any, Optional[str]]:
    """(value converted the way ComfyUI does, or the reason it is not accepted)."""
    kind, opts = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
    if isinstance(kind, (list, tuple)):
        if value not in kind:
            return value, f"must be one of {_choices_text(list(kind))}, not {value!r}{_suggest(value, kind)}"
        return value, None
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
            return value, f"must be a whole number, not {value!r}"
        value = int(value)
    elif kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, f"must be a number, not {value!r}"
        value = float(value)
    elif kind == "BOOLEAN":
        if not isinstance(value, bool):
            return value, f"must be true or false, not {value!r}"
        return value, None
    elif kind == "STRING":
        if isinstance(value, (dict, list)):
            return value, f"must be text, not {value!r}"
        return str(value), None
    else:
        return value, f"takes a {kind} connection from another node, not the value {value!r}"
    lo, hi = opts.get("min"), opts.get("max")
    if lo is not None and value < lo or hi is not None and value > hi:
        return value, f"must be between {lo} and {hi}, not {value!r}"
    return value, None


def _model_problem(value: Any) -> Optional[str]:
    """A registry model file named by ``value`` that is not present: where it goes and its URL."""
    if not isinstance(value, str) or not value or os.sep in value and Path(value).is_absolute():
        return None
    from ..models import registry
    from .. import host

    e = registry.by_filename(value)
    if e is None or registry.find(e.id) is not None:
        return None
    folder = host.model_dirs(e.folder)[0]
    how = f"download {e.url} or run `python -m remaster models download {e.id}`" if e.urls else "it has no download URL"
    return f"model '{e.filename}' is missing: put it in {folder} ({how})"


def validate(prompt: dict, mappings: dict, *, overwrite: bool = False) -> dict:
    """Return the prompt with literal values converted (INT/FLOAT as ComfyUI does); raise
    :class:`GraphError` listing every problem found."""
    problems: list[str] = []
    missing_models: list[str] = []
    if not isinstance(prompt, dict) or not prompt:
        raise GraphError(["the workflow is empty or not an API-format graph (a JSON object of nodes)"])
    out = {}
    for nid, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            problems.append(f"node {nid}: not a node (no class_type); is this an API-format workflow?")
            continue
        ct = node["class_type"]
        if ct not in mappings:
            problems.append(f"{where(nid, node)}: unknown node type '{ct}'{_suggest(ct, mappings)} "
                            "(is the pack that provides it installed?)")
            continue
        cls = mappings[ct]
        types = cls.INPUT_TYPES()
        declared = list(types.get("required", {})) + list(types.get("optional", {}))
        hidden = set(types.get("hidden", {}))
        own = _self_validated(cls)
        inputs = dict(node.get("inputs") or {})
        for name in list(inputs):
            if name not in declared and name not in hidden:
                problems.append(f"{where(nid, node)}: has no input '{name}'{_suggest(name, declared)}; "
                                f"its inputs are {', '.join(declared)}")
                continue
            value = inputs[name]
            spec = _spec(types, name)
            if spec is None:
                continue
            if _is_link(value):
                src = prompt.get(value[0])
                if not isinstance(src, dict) or src.get("class_type") not in mappings:
                    if src is None:
                        problems.append(f"{where(nid, node)}: input '{name}' links to node '{value[0]}', which is not in the workflow")
                    continue
                rtypes = getattr(mappings[src["class_type"]], "RETURN_TYPES", ())
                if value[1] >= len(rtypes):
                    problems.append(f"{where(nid, node)}: input '{name}' links to output {value[1]} of "
                                    f"{where(value[0], src)}, which has {len(rtypes)} outputs")
                elif isinstance(spec[0], str) and spec[0] != "*" and rtypes[value[1]] != "*" and rtypes[value[1]] != spec[0]:
                    problems.append(f"{where(nid, node)}: input '{name}' takes {spec[0]} but is linked to a "
                                    f"{rtypes[value[1]]} output of {where(value[0], src)}")
                continue
            if name in own:
                continue
            if isinstance(spec[0], (list, tuple)):
                m = _model_problem(value)
                if m:
                    missing_models.append(f"{where(nid, node)} input '{name}': {m}")
                    continue
            conv, why = check_value(value, spec)
            if why:
                problems.append(f"{where(nid, node)}: input '{name}' {why}")
            else:
                inputs[name] = conv
        for name in types.get("required", {}):
            if name not in inputs:
                problems.append(f"{where(nid, node)}: required input '{name}' is missing")
        fn = getattr(cls, "VALIDATE_INPUTS", None)
        if fn is not None and own and all(n in inputs and not _is_link(inputs[n]) for n in own):
            try:
                ok = fn(**{n: inputs[n] for n in own})
            except Exception as exc:  # a node's own check must not hide the others
                ok = f"{exc.__class__.__name__}: {exc}"
            if ok is not True:
                problems.append(f"{where(nid, node)}: {ok}")
        out[nid] = {**node, "inputs": inputs}
    if not problems and not any(getattr(mappings[n["class_type"]], "OUTPUT_NODE", False) for n in out.values()):
        problems.append("the workflow has no output node (e.g. Save Video), so nothing would run")
    problems += missing_models
    problems += check_outputs(out, overwrite)
    if problems:
        raise GraphError(problems)
    return out


def check_outputs(prompt: dict, overwrite: bool) -> list[str]:
    """Exact output paths (``output_path``) must be writable and free unless ``overwrite``."""
    problems = []
    for nid, node in prompt.items():
        path = (node.get("inputs") or {}).get("output_path")
        if not isinstance(path, str) or not path:
            continue
        p = Path(path).expanduser()
        if p.exists() and not overwrite:
            problems.append(f"output '{p}' already exists: pass --overwrite or choose another --output")
            continue
        parent = p.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not os.access(parent, os.W_OK):
            problems.append(f"output '{p}' cannot be written: '{parent}' is not writable")
    return problems
