"""``python -m remaster``: run workflows here, on many files or many machines, or on a ComfyUI
server; manage models; list workflows.

  python -m remaster demo                          make a poor clip and enhance it (first run)
  python -m remaster run WORKFLOW --input VIDEO --output FILE [--set NODE.INPUT=VALUE]...
  python -m remaster run WORKFLOW --input A.mp4 DIR/ 'clips/*.mov' --output-dir OUT
  python -m remaster run WORKFLOW --input LONG.mp4 --output OUT.mp4 --workers 2 (or --ray auto, --servers URL,URL)
  python -m remaster submit WORKFLOW --server http://127.0.0.1:8188 [same overrides]
  python -m remaster models list | download ID... | verify [ID...] | link DIR
  python -m remaster workflows list | build | check

WORKFLOW is an API-format .json or the name of a shipped one (enhance, fast, ...).
Exit codes: 0 done, 1 a run failed, 2 a mistake in the command, the workflow or its inputs.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class UsageError(Exception):
    """A mistake the user can fix: printed as one line, exit code 2."""


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


def workflow_mappings() -> dict:
    """The pack's nodes plus schema stand-ins of the ComfyUI core nodes shipped workflows use
    (for building and checking UI twins; they cannot run in-process)."""
    from .core_nodes import NODE_CLASS_MAPPINGS as core

    return {**core, **node_mappings()}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2, and help when a command is incomplete."""

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("workflow", help="API-format workflow .json, or a shipped workflow's name (see `workflows list`)")
    p.add_argument("--input", nargs="+", metavar="VIDEO",
                   help="video(s) for the first Load Video node; several files, folders or quoted globs run a batch")
    p.add_argument("--output", metavar="FILE", help="exact output file of the first Save Video node")
    p.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="override an input: NODE is a node id, title or type; VALUE is JSON (0.5, true, \"text\") or text")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file (written to a temp name first)")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m remaster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", metavar="DIR",
                    help="folder laid out like ComfyUI's models/ (default: $REMASTER_MODELS_DIR, ComfyUI's models/ "
                         "when the pack sits in custom_nodes/, else ./models)")
    ap.add_argument("--temp-dir", metavar="DIR", help="temp/cache folder (default: the system temp folder)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log details; show tracebacks of internal errors")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("run", help="run a workflow in this process, on many files, or across workers/machines",
                       description="Run a workflow without a server. One --input and --output: one file. Several inputs "
                                   "(files, folders, quoted globs) and --output-dir: a resumable batch with a manifest. "
                                   "--workers/--ray/--servers: split long videos into segments rendered in parallel.")
    _overrides(p)
    p.add_argument("--output-dir", metavar="DIR", help="where outputs go (a batch: one file per input, named after it)")
    p.add_argument("--workers", type=int, default=0, metavar="N", help="render segments/files in N local worker processes")
    p.add_argument("--ray", metavar="ADDRESS", help="render segments/files as tasks on a Ray cluster ('auto' or host:port; pip install ray)")
    p.add_argument("--servers", metavar="URL,URL", help="render segments/files on running ComfyUI servers")
    p.add_argument("--segment-seconds", type=float, default=0.0, metavar="S",
                   help="split each video into segments of about S seconds (at scene cuts where there are any); "
                        "default with an executor: 60, without: no split")

    p = sub.add_parser("submit", help="queue a workflow on a running ComfyUI and follow it to the end",
                       description="Send the API workflow to a ComfyUI server, follow its websocket, print the saved files.")
    _overrides(p)
    p.add_argument("--server", default="http://127.0.0.1:8188", help="ComfyUI address (default %(default)s)")
    p.add_argument("--timeout", type=float, default=24 * 3600, help="seconds to wait for the result (default: a day)")

    p = sub.add_parser("demo", help="make a poor (small, dim, noisy) clip from a real one and enhance it",
                       description="The first thing to try: degrades a real clip with the pack's own tools, runs the "
                                   "enhance workflow on it and writes poor.mp4, enhanced.mp4 and before_after.png.")
    p.add_argument("--clip", help="clean source clip (default: ../shared/clips/talking_head_512_30_audio.mp4)")
    p.add_argument("--seconds", type=float, default=2.0, help="length to use (default %(default)s)")
    p.add_argument("--out-dir", default="demo", help="folder for the three files (default %(default)s; replaced on re-run)")

    p = sub.add_parser("models", help="the model registry: list, download, verify, link")
    msub = p.add_subparsers(dest="mcmd", metavar="ACTION", parser_class=_Parser)
    msub.add_parser("list", help="every registry model: folder, size, licence, present or missing")
    q = msub.add_parser("download", help="download models by id (explicit, resumable, sha256-verified)")
    q.add_argument("ids", nargs="+", metavar="ID", help="registry ids (see `models list`)")
    q = msub.add_parser("verify", help="check present files against the registry's sha256 (or its accepted re-saves)")
    q.add_argument("ids", nargs="*", metavar="ID", help="only these ids (default: every present file)")
    q = msub.add_parser("link", help="place registry files found under DIR into the models folders (symlinks)")
    q.add_argument("dir", help="folder to search (any layout; files are matched by name)")
    q.add_argument("--copy", action="store_true", help="copy instead of symlinking")

    p = sub.add_parser("workflows", help="shipped workflows: list, build, check")
    wsub = p.add_subparsers(dest="wcmd", metavar="ACTION", parser_class=_Parser)
    wsub.add_parser("list", help="name, what it does, models it needs and whether they are present")
    wsub.add_parser("build", help="regenerate workflows/*.json (UI) from workflows/api/*.json")
    wsub.add_parser("check", help="fail if a UI workflow differs from its API twin")

    from ..train import cli as train_cli  # argparse only: --help stays fast

    train_cli.add_parser(sub)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.cmd is None or (args.cmd == "models" and not args.mcmd) or (args.cmd == "workflows" and not args.wcmd):
        target = ap if args.cmd is None else ap._subparsers._group_actions[0].choices[args.cmd]
        target.print_help(sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    WorkflowError = NodeFailed = UsageError  # the real ones below; the except clauses stay valid if imports fail
    try:
        from .. import host
        from .runner import WorkflowError, NodeFailed

        host.set_dirs(models_dir=args.models_dir, temp_dir=args.temp_dir)
        if args.cmd in ("run", "submit", "demo"):
            from . import commands

            return getattr(commands, args.cmd)(args)
        if args.cmd == "train":
            from ..train import cli as train_cli

            return train_cli.run(args)
        from . import admin

        return admin.models(args) if args.cmd == "models" else admin.workflows(args, node_mappings)
    except KeyboardInterrupt:
        print("\ninterrupted; no partial output was left (a batch or segmented run resumes when re-run)", file=sys.stderr)
        return 130
    except (UsageError, WorkflowError) as exc:
        if isinstance(exc, NodeFailed) and not exc.user_error:
            if args.verbose:
                raise
            print(f"error: {exc} (an internal error: --verbose shows the traceback)", file=sys.stderr)
            return 1
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        print(f"error: the Python package '{exc.name}' is missing: run README's set-up command "
              "(pip install torch==2.14.1 torchvision==0.29.1 -r requirements.txt)", file=sys.stderr)
        return 2
    except Exception as exc:
        from ..models.registry import ModelError
        from .client import ServerError

        if isinstance(exc, ServerError) and not args.verbose:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if isinstance(exc, (ModelError, OSError)) and not args.verbose:
            print(f"error: {exc}".replace("\n", " "), file=sys.stderr)
            return 2
        if args.verbose:
            raise
        print(f"error: {exc.__class__.__name__}: {exc} (an internal error: --verbose shows the traceback)".replace("\n", " "),
              file=sys.stderr)
        return 1
