"""``models`` and ``workflows`` commands: aligned tables, one line per problem."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .cli import ROOT, UsageError


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def human_size(n: int) -> str:
    if not n:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def models(args) -> int:
    from .. import host
    from ..models import registry

    if args.mcmd == "list":
        rows = []
        for e in registry.entries().values():
            p = registry.find(e.id)
            size = p.stat().st_size if p else e.size
            rows.append([e.id, e.folder, human_size(size), e.licence[:24], "present" if p else "missing"])
        print(table(rows, ["id", "folder", "size", "licence", "state"]))
        print(f"\nmodels folder: {host.models_root() if host._folder_paths is None else 'ComfyUI folder_paths'}"
              "  (size ?: the release publishes none and the file is not here)")
        return 0
    if args.mcmd == "download":
        unknown = [m for m in args.ids if m not in registry.entries()]
        if unknown:
            raise UsageError(f"unknown model id(s) {', '.join(unknown)}: `python -m remaster models list` shows the ids")
        code = 0
        for mid in args.ids:
            e = registry.entry(mid)
            print(f"{mid}: writing into {host.model_dirs(e.folder)[0]}", file=sys.stderr)
            try:
                p = registry.download(mid, progress=lambda have, total: print(
                    f"\r{mid}: {have / 2**20:.1f}/{total / 2**20:.1f} MB", end="", file=sys.stderr))
                print(f"\n{mid}: {p}")
            except (registry.ModelError, OSError) as exc:
                print(f"\nerror: {mid}: {exc}", file=sys.stderr)
                code = 1
        return code
    if args.mcmd == "verify":
        unknown = [m for m in args.ids if m not in registry.entries()]
        if unknown:
            raise UsageError(f"unknown model id(s) {', '.join(unknown)}: `python -m remaster models list` shows the ids")
        bad, rows = 0, []
        for e in registry.entries().values():
            if args.ids and e.id not in args.ids:
                continue
            p = registry.find(e.id)
            if p is None:
                if args.ids:
                    rows.append([e.id, "missing", "", "", e.sha256 or "-"])
                    bad += 1
                continue
            status, sha = registry.check_file(p, e)
            rows.append([e.id, status, str(p), sha, e.sha256 or "-"])
            bad += status in ("corrupt", "different")
        print(table(rows, ["id", "status", "file", "file sha256", "registry sha256"]))
        print("\nok: the registry's file; variant: a re-save the registry accepts; unverified: no sha256 published;\n"
              "different: readable weights but another file (another release or a conversion) - results may differ;\n"
              "corrupt: not readable, or the registry's size with other bytes - download it again "
              "(`python -m remaster models download ID`).")
        return 1 if bad else 0
    if args.mcmd == "link":
        src = Path(args.dir).expanduser()
        if not src.is_dir():
            raise UsageError(f"'{src}' is not a folder: give the folder that holds your model files")
        print(f"linking registry files found under {src.resolve()} into {host.models_root()}", file=sys.stderr)
        placed = registry.link_existing(src, link=not args.copy)
        for mid, dest in placed:
            print(f"{mid:32} -> {dest}")
        if not placed:
            print("nothing new to place (files already there, or no registry file names found)", file=sys.stderr)
        return 0
    return 2


def workflows(args, node_mappings) -> int:
    from .. import workflows as wf

    if args.wcmd == "list":
        from ..models import registry
        from . import runner

        rows = []
        for name in runner.shipped_workflows():
            prompt = runner.load_workflow(name)
            about = _describe(prompt)
            needed = []
            for node in prompt.values():
                for v in (node.get("inputs") or {}).values():
                    e = registry.by_filename(v) if isinstance(v, str) and v else None
                    if e is not None:
                        needed.append(f"{e.id} ({'present' if registry.find(e.id) else 'MISSING'})")
            rows.append([name, about, ", ".join(needed) or "-"])
        print(table(rows, ["name", "what it does", "models (state)"]))
        print("\nrun one: python -m remaster run NAME --input VIDEO --output OUT.mp4")
        return 0
    from .cli import workflow_mappings

    mappings = workflow_mappings()
    if args.wcmd == "build":
        for p in wf.build_all(ROOT, mappings):
            print(p.relative_to(ROOT))
        return 0
    bad = 0
    for api_path in sorted((ROOT / "workflows" / "api").glob("*.json")):
        ui_path = ROOT / "workflows" / api_path.name
        api = json.loads(api_path.read_text())
        if not ui_path.exists():
            print(f"missing UI twin: {ui_path.relative_to(ROOT)}")
            bad += 1
            continue
        back = wf.ui_to_api(json.loads(ui_path.read_text()), mappings)
        if wf.normalise_api(back, mappings) != wf.normalise_api(api, mappings):
            print(f"out of step: {ui_path.relative_to(ROOT)} vs {api_path.relative_to(ROOT)}")
            bad += 1
    return 1 if bad else 0


def _describe(prompt: dict) -> str:
    """The chain of node titles from the loader to the saver (a workflow's one-line summary)."""
    titles = [(n.get("_meta") or {}).get("title") or n.get("class_type", "") for _, n in
              sorted(prompt.items(), key=lambda kv: (0, int(kv[0])) if kv[0].isdigit() else (1, kv[0]))]
    inner = [t for t in titles if t not in ("Load Video", "Save Video")]
    return " > ".join(inner) if inner else "load and save (re-encode)"
