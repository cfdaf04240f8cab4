"""The ``run``, ``submit`` and ``demo`` commands (heavy imports happen here, not in ``cli``)."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

from .. import host
from . import runner
from .cli import UsageError, node_mappings
from .validate import validate


def prepare(workflow, sets, input_video=None, output=None, overwrite=False, mappings=None) -> tuple[dict, list]:
    """Load, override and validate a workflow. Returns (prompt, renames) where renames are
    (temp, final) pairs to publish after the run when ``overwrite`` replaces existing files."""
    mappings = mappings or node_mappings()
    prompt = runner.load_workflow(workflow)
    prompt = runner.apply_overrides(prompt, sets, input_video, output)
    prompt = validate(prompt, mappings, overwrite=overwrite)
    renames = []
    if overwrite:
        for node in prompt.values():
            p = (node.get("inputs") or {}).get("output_path")
            if isinstance(p, str) and p and Path(p).exists():
                tmp = Path(p).with_name(f".overwrite-{uuid.uuid4().hex[:8]}-{Path(p).name}")
                node["inputs"]["output_path"] = str(tmp)
                renames.append((tmp, Path(p)))
    return prompt, renames


@contextmanager
def run_dirs(args, output: str | None):
    """Output folder: --output-dir, else the --output file's folder, else ./output (made only when
    written). Temp folder: --temp-dir, else a private one removed after the run."""
    out_dir = getattr(args, "output_dir", None) or (str(Path(output).expanduser().resolve().parent) if output else None)
    own_temp = None if args.temp_dir else tempfile.mkdtemp(prefix="remaster-")
    host.set_dirs(output_dir=out_dir, temp_dir=own_temp)
    try:
        yield
    finally:
        if own_temp:
            shutil.rmtree(own_temp, ignore_errors=True)


def execute(prompt: dict, renames: list, mappings=None, prefix: str = "") -> list[str]:
    """Run a validated prompt with one progress line; returns the written paths."""
    from .progress import RunProgress

    mappings = mappings or node_mappings()
    listener = RunProgress(prefix=prefix)
    host.add_progress_listener(listener)
    try:
        result = runner.run(prompt, mappings)
    except BaseException:
        for tmp, _ in renames:
            Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        host.remove_progress_listener(listener)
        listener.finish()
    paths = runner.output_paths(result)
    for tmp, final in renames:
        os.replace(tmp, final)
        paths = [str(final) if p == str(tmp) else p for p in paths]
    return paths


def run(args) -> int:
    inputs = args.input or []
    scale = args.workers or args.ray or args.servers or args.segment_seconds
    if len(inputs) > 1 or (inputs and not args.output and args.output_dir) or any(_is_pattern(i) for i in inputs) or scale:
        from . import batch

        return batch.run_cli(args)
    with run_dirs(args, args.output):
        prompt, renames = prepare(args.workflow, args.set, inputs[0] if inputs else None, args.output, args.overwrite)
        for path in execute(prompt, renames):
            print(path)
    return 0


def _is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[") or Path(text).is_dir()


def submit(args) -> int:
    from .client import submit_prompt

    inputs = args.input or []
    if len(inputs) > 1:
        raise UsageError("submit takes one --input; use `run --servers URL,...` for many files")
    prompt = runner.load_workflow(args.workflow)
    prompt = runner.apply_overrides(prompt, args.set, inputs[0] if inputs else None, args.output)
    paths = submit_prompt(prompt, args.server.rstrip("/"), args.timeout)
    for p in paths:
        print(p)
    return 0


def demo(args) -> int:
    from .demo import make_poor_clip, before_after

    src = Path(args.clip) if args.clip else ROOT_SHARED / "clips" / "talking_head_512_30_audio.mp4"
    if not src.is_file():
        raise UsageError(f"demo clip '{src}' not found: pass --clip PATH (any video of a person)")
    out = Path(args.out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    poor, enhanced = out / "poor.mp4", out / "enhanced.mp4"
    args.output_dir = str(out)
    with run_dirs(args, str(enhanced)):
        print(f"making a poor copy of {src.name}: half size, dim, noisy, compressed -> {poor}", file=sys.stderr)
        make_poor_clip(src, poor, seconds=args.seconds)
        prompt, renames = prepare("enhance", [], str(poor), str(enhanced), overwrite=True)
        print(f"enhancing it with workflows/api/enhance.json -> {enhanced}", file=sys.stderr)
        execute(prompt, renames)
        sheet = before_after(poor, enhanced, out / "before_after.png")
    print(enhanced)
    print(sheet)
    return 0


ROOT_SHARED = Path(__file__).resolve().parents[3] / "shared"
