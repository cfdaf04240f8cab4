"""``python -m remaster``: run workflows in-process, submit them to a ComfyUI server, manage models.

    python -m remaster run WORKFLOW [--input VIDEO] [--output VIDEO] [--set NODE.INPUT=VALUE]...
    python -m remaster submit WORKFLOW --server http://127.0.0.1:8188 [same overrides]
    python -m remaster models list | download ID... | verify [ID...] | link DIR
    python -m remaster workflows build | check
    python -m remaster train --name NAME --clip CLEAN.mp4 [...]   (see remaster/train/cli.py)
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import sys
from pathlib import Path

from . import host

ROOT = Path(__file__).resolve().parents[1]


def node_mappings() -> dict:
    """The pack's NODE_CLASS_MAPPINGS, imported from the repository's ``nodes`` package under a
    private name (ComfyUI has a top-level ``nodes`` module of its own)."""
    name = "remaster_pack_nodes"
    if name in sys.modules:
        return sys.modules[name].NODE_CLASS_MAPPINGS
    spec = importlib.util.spec_from_file_location(name, ROOT / "nodes" / "__init__.py",
                                                  submodule_search_locations=[str(ROOT / "nodes")])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod.NODE_CLASS_MAPPINGS


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("workflow", help="API-format workflow JSON (e.g. workflows/api/fast.json)")
    p.add_argument("--input", help="video for the (first) Load Video node")
    p.add_argument("--output", help="exact output file for the (first) Save Video node")
    p.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="override an input; NODE is a node id, title or class name; VALUE is JSON or text")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m remaster", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", help="folder laid out like ComfyUI's models/ (default: $REMASTER_MODELS_DIR or ./models)")
    ap.add_argument("--output-dir", help="where Save nodes write (default ./output)")
    ap.add_argument("--temp-dir", help="temp/cache folder (default ./temp)")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p_run = sub.add_parser("run", help="execute a workflow in this process (no server)")
    _common(p_run)
    p_sub = sub.add_parser("submit", help="queue a workflow on a running ComfyUI and follow it")
    _common(p_sub)
    p_sub.add_argument("--server", default="http://127.0.0.1:8188")
    p_sub.add_argument("--timeout", type=float, default=24 * 3600, help="seconds to wait for the result")

    p_models = sub.add_parser("models", help="the model registry")
    msub = p_models.add_subparsers(dest="mcmd", required=True)
    msub.add_parser("list")
    p_dl = msub.add_parser("download")
    p_dl.add_argument("ids", nargs="+")
    p_ver = msub.add_parser("verify")
    p_ver.add_argument("ids", nargs="*")
    p_link = msub.add_parser("link", help="place registry files found under DIR into the models folders (symlinks)")
    p_link.add_argument("dir")
    p_link.add_argument("--copy", action="store_true")

    p_wf = sub.add_parser("workflows", help="shipped workflows")
    wsub = p_wf.add_subparsers(dest="wcmd", required=True)
    wsub.add_parser("build", help="regenerate workflows/*.json (UI) from workflows/api/*.json")
    wsub.add_parser("check", help="fail if a UI workflow differs from its API twin")

    from .train import cli as train_cli

    train_cli.add_parser(sub)

    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    host.set_dirs(models_dir=args.models_dir, output_dir=args.output_dir, temp_dir=args.temp_dir)

    try:
        if args.cmd == "run":
            return _run(args)
        if args.cmd == "submit":
            from .client import submit

            return submit(args)
        if args.cmd == "models":
            return _models(args)
        if args.cmd == "workflows":
            return _workflows(args)
        if args.cmd == "train":
            return train_cli.run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; no partial output was left", file=sys.stderr)
        return 130
    return 2


def _run(args) -> int:
    from . import runner

    prompt = runner.load_workflow(args.workflow)
    prompt = runner.apply_overrides(prompt, args.set, args.input, args.output)
    mappings = node_mappings()
    listener = host.terminal_progress_listener()
    host.add_progress_listener(listener)
    try:
        result = runner.run(prompt, mappings, on_node=lambda nid, ct, title: print(f"· {nid} {title or ct}", file=sys.stderr))
    except runner.WorkflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        host.remove_progress_listener(listener)
    for path in runner.output_paths(result):
        print(path)
    return 0


def _models(args) -> int:
    from .models import registry

    if args.mcmd == "list":
        for e in registry.entries().values():
            p = registry.find(e.id)
            state = "present" if p else "missing"
            print(f"{e.id:32} {e.task:16} {e.folder:20} {e.size / 2**20:8.1f} MB  {e.licence:14} {state}")
        return 0
    if args.mcmd == "download":
        code = 0
        for mid in args.ids:
            try:
                p = registry.download(mid, progress=lambda have, total: print(
                    f"\r{mid}: {have / 2**20:.1f}/{total / 2**20:.1f} MB", end="", file=sys.stderr))
                print(f"\n{mid}: {p}")
            except registry.ModelError as exc:
                print(f"\nerror: {exc}", file=sys.stderr)
                code = 1
        return code
    if args.mcmd == "verify":
        bad = 0
        for mid, status, path in registry.verify(args.ids or None):
            if args.ids or status != "missing":
                print(f"{mid:32} {status:9} {path}")
            if status == "mismatch" or (args.ids and status == "missing"):
                bad += 1
        return 1 if bad else 0
    if args.mcmd == "link":
        for mid, dest in registry.link_existing(Path(args.dir), link=not args.copy):
            print(f"{mid:32} -> {dest}")
        return 0
    return 2


def _workflows(args) -> int:
    from . import workflows

    mappings = node_mappings()
    if args.wcmd == "build":
        for p in workflows.build_all(ROOT, mappings):
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
        back = workflows.ui_to_api(json.loads(ui_path.read_text()), mappings)
        if workflows.normalise_api(back, mappings) != workflows.normalise_api(api, mappings):
            print(f"out of step: {ui_path.relative_to(ROOT)} vs {api_path.relative_to(ROOT)}")
            bad += 1
    return 1 if bad else 0
