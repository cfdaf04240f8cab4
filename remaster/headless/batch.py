"""Many inputs (a resumable batch with a manifest) and long inputs (segments on many workers).

``run --input A.mp4 DIR/ 'glob/*.mov' --output-dir OUT``: one output per input named after it,
``OUT/manifest.jsonl`` appended as each file finishes (input, output, status, seconds, frames,
error); a re-run skips inputs whose output is there and has the recorded frame count; a bad input
is reported and skipped. ``--workers N`` / ``--ray`` / ``--servers`` render files (a batch) or
segments of one video (one input) in parallel; see :mod:`.segments` and :mod:`.executors`.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import time
from pathlib import Path

from .. import host
from .cli import UsageError
from .progress import _clock

VIDEO_EXT = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mts", ".m2ts", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"}


def expand(patterns: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """(files, [(pattern, problem)]) from files, folders (their videos) and quoted globs."""
    files, bad = [], []
    for pat in patterns:
        p = Path(pat).expanduser()
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in VIDEO_EXT)
        elif any(c in pat for c in "*?["):
            found = sorted(Path(q) for q in glob.glob(os.path.expanduser(pat), recursive=True) if Path(q).is_file())
        else:
            found = [p] if p.is_file() else []
        if not found:
            bad.append((pat, "no such file" if not any(c in pat for c in "*?[") and not p.is_dir() else "matches no video"))
        files += [f.resolve() for f in found if f.resolve() not in files]
    return files, bad


def frames_of(path: Path) -> int:
    from ..media import decode

    return decode.probe(path).frame_count


class Manifest:
    """JSON lines, one record per finished (or failed) input, appended and flushed as it goes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
                if r.get("status") == "done":
                    self.done[r["input"]] = r

    def complete(self, src: Path, out: Path) -> bool:
        r = self.done.get(str(src))
        if not r or r.get("output") != str(out) or not out.exists():
            return False
        try:
            return frames_of(out) == r.get("frames")
        except Exception:
            return False

    def add(self, **record) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _dirs() -> dict:
    return {"models_dir": str(host.models_root()), "temp_dir": str(host.temp_dir())}


def run_cli(args) -> int:
    from .commands import run_dirs

    files, bad = expand(args.input or [])
    single = len(args.input or []) == 1 and len(files) == 1 and not Path(args.input[0]).is_dir() and args.output
    with run_dirs(args, args.output if single else None):
        if single:
            return run_segmented(args, files[0])
        if not args.output_dir:
            if len(files) <= 1 and len(args.input or []) <= 1:
                raise UsageError("--workers/--ray/--servers/--segment-seconds need --output FILE for one video "
                                 "(or --output-dir DIR for several)")
            raise UsageError("several inputs need --output-dir DIR (one output per input, named after it)")
        if args.output:
            raise UsageError("--output names one file; with several inputs use --output-dir")
        return run_batch(args, files, bad)


def run_batch(args, files: list[Path], bad: list) -> int:
    from .commands import prepare, execute
    from ..media import encode
    from . import executors, segments

    out_dir = Path(args.output_dir).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out_dir / "manifest.jsonl")
    for pat, why in bad:
        print(f"skipped {pat}: {why}", file=sys.stderr)
        manifest.add(input=pat, output=None, status="error", seconds=0, error=why)
    jobs, names = [], set()
    for src in files:
        try:
            frames_of(src)
        except Exception as exc:
            msg = f"not a readable video ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            print(f"skipped {src}: {msg}", file=sys.stderr)
            manifest.add(input=str(src), output=None, status="error", seconds=0, error=msg)
            bad.append((str(src), msg))
            continue
        probe_prompt, _ = prepare(args.workflow, args.set, str(src), None, True)
        fmt = probe_prompt[segments.find(probe_prompt, "RemasterSaveVideo")]["inputs"].get("format", "h264_mp4")
        stem, k = src.stem, 2
        while stem in names:
            stem, k = f"{src.stem}_{k}", k + 1
        names.add(stem)
        out = out_dir / f"{stem}{encode.resolve_preset(fmt)['ext']}"
        if manifest.complete(src, out):
            print(f"already done: {out.name}", file=sys.stderr)
            continue
        if out.exists() and not args.overwrite:
            out.unlink()  # an output the manifest does not vouch for is a leftover: redo it
        prompt, _ = prepare(args.workflow, args.set, str(src), str(out), True)
        if args.servers:  # a server writes into its own output folder; the file comes back via /view
            si = prompt[segments.find(prompt, "RemasterSaveVideo")]["inputs"]
            si.update(output_path="", filename_prefix=f"remaster_batch/{stem}")
        jobs.append({"id": src.name, "prompt": prompt, "output": str(out), "input": str(src),
                     "frames_in": segments.source_stream(prompt).info.frame_count})
    total_frames = sum(j["frames_in"] for j in jobs)
    state = {"files": 0, "frames": 0, "t0": time.perf_counter(), "failed": 0}

    def report(job, seconds, error=None):
        state["files"] += 1
        state["frames"] += job["frames_in"]
        if error:
            state["failed"] += 1
            manifest.add(input=job["input"], output=None, status="error", seconds=round(seconds, 2), error=error)
            print(f"failed {job['input']}: {error}", file=sys.stderr)
            return
        n = frames_of(Path(job["output"]))
        if n <= 0:
            raise ValueError(f"{job['output']} has no frames")
        manifest.add(input=job["input"], output=job["output"], status="done", seconds=round(seconds, 2), frames=n, error=None)
        el = time.perf_counter() - state["t0"]
        rate = state["frames"] / max(el, 1e-6)
        left = (total_frames - state["frames"]) / rate if rate else 0
        print(f"[{state['files']}/{len(jobs)} files, {state['frames']}/{total_frames} frames, {rate:.2f} fr/s, "
              f"left {_clock(left)}] {job['output']}", file=sys.stderr)

    if args.workers or args.ray or args.servers:
        ex = executors.make(args, _dirs())
        _run_tolerant(ex, jobs, report)
    else:
        for job in jobs:
            t0 = time.perf_counter()
            try:
                execute(job["prompt"], [], prefix=f"[{state['files'] + 1}/{len(jobs)}] ")
                report(job, time.perf_counter() - t0)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                Path(job["output"]).unlink(missing_ok=True)
                report(job, time.perf_counter() - t0, f"{exc}".replace("\n", " "))
    print(f"batch: {state['files'] - state['failed']} done, {state['failed'] + len(bad)} failed or skipped, manifest {manifest.path}", file=sys.stderr)
    return 1 if state["failed"] or bad else 0


def _run_tolerant(ex, jobs, report) -> None:
    """Run file tasks; a file failing on every attempt is recorded, the others continue."""
    from . import executors

    pending = list(jobs)
    while pending:
        try:
            ex.run(pending, lambda job, secs: (pending.remove(job), report(job, secs)))
        except executors.TaskFailed as exc:
            failed = next((j for j in pending if str(exc).startswith(j["id"] + " ")), None)
            if failed is None:
                raise
            pending.remove(failed)
            report(failed, 0.0, str(exc))


def run_segmented(args, src: Path) -> int:
    from .commands import prepare
    from . import executors, segment_worker, segments

    prompt, renames = prepare(args.workflow, args.set, str(src), args.output, args.overwrite)
    final = Path(prompt[segments.find(prompt, "RemasterSaveVideo")]["inputs"]["output_path"])
    stream = segments.source_stream(prompt)
    n, fps = stream.info.frame_count, stream.info.fps
    target = args.segment_seconds or 60.0
    li = prompt[segments.find(prompt, "RemasterLoadVideo")]["inputs"]
    cuts = []
    if n > target * float(fps) * 1.25:
        from ..media import decode
        from ..analysis import scenes

        small = decode.open_video(stream.info.source, start_time=float(li.get("start_time", 0)),
                                  end_time=float(li.get("end_time", 0)), max_side=160)
        cuts = scenes.detect_scene_cuts(small)
    ranges = segments.plan(n, fps, target, cuts)
    work = final.parent / f".{Path(args.output).name}.segments"
    key = segments.state_key(prompt | {"_out": str(Path(args.output).resolve())}, ranges)
    if (work / "job.json").exists() and json.loads((work / "job.json").read_text()).get("key") != key:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "job.json").write_text(json.dumps({"key": key, "ranges": ranges}))
    for_server = bool(args.servers)
    parts, tasks = [], []
    for i, (a, b) in enumerate(ranges):
        seg, marker = work / f"seg_{i:04d}.mkv", work / f"seg_{i:04d}.done"
        parts.append(str(seg))
        if marker.exists() and seg.exists():
            try:
                segments.check_segment(seg)
                continue
            except Exception:
                pass
        out_name = f"remaster_segments/{key}_{i:04d}" if for_server else str(seg)
        tasks.append({"id": f"segment {i} (frames {a}-{b})", "output": str(seg), "marker": str(marker), "frames": b - a,
                      "prompt": segments.part_prompt(prompt, {"kind": "video", "range": [a, b], "of": n}, out_name, for_server)})
    audio_file = work / "audio.part"
    if segments.wants_audio(prompt) and not ((work / "audio.done").exists() and audio_file.exists()):
        out_name = f"remaster_segments/{key}_audio" if for_server else str(audio_file)
        tasks.append({"id": "audio (whole range)", "output": str(audio_file), "marker": str(work / "audio.done"),
                      "frames": 0, "prompt": segments.part_prompt(prompt, {"kind": "audio"}, out_name, for_server)})
    done_frames = n - sum(t["frames"] for t in tasks)
    t0 = time.perf_counter()
    state = {"segs": len(ranges) - sum(1 for t in tasks if t["frames"]), "frames": done_frames, "read": 0, "kept": 0}
    print(f"{len(ranges)} segments of ~{target:.0f}s ({sum(1 for t in tasks if t['frames'])} to render) "
          f"on {_where(args)}", file=sys.stderr)

    def on_done(task, secs):
        if task["frames"]:
            meta = segments.check_segment(task["output"])
            state["read"] += meta["read"][1] - meta["read"][0]
            state["kept"] += meta["range"][1] - meta["range"][0]
            state["undeclared"] = meta.get("undeclared") or state.get("undeclared")
            state["segs"] += 1
        else:
            segment_worker.audio_of(task["output"])  # readable, or the task failed
        Path(task["marker"]).write_text(json.dumps({"seconds": secs}))
        state["frames"] += task["frames"]
        rate = (state["frames"] - done_frames) / max(1e-6, time.perf_counter() - t0)
        left = (n - state["frames"]) / rate if rate else 0
        print(f"[{state['segs']}/{len(ranges)} segments, {state['frames']}/{n} frames, {rate:.2f} fr/s, "
              f"left {_clock(left)}] {task['id']} in {secs:.2f}s", file=sys.stderr)

    if tasks:
        executors.make(args, _dirs()).run(tasks, on_done)
    if state["kept"]:
        print(f"warm-up declared by the chain: {state['read'] - state['kept']} extra source frames read for "
              f"{state['kept']} rendered", file=sys.stderr)
    if state.get("undeclared"):
        print(f"note: {', '.join(state['undeclared'])} declare(s) no temporal context, so every segment was rendered "
              "from frame 0 (exact, but no faster than one run); run this workflow without segments", file=sys.stderr)
    audio = segment_worker.audio_of(audio_file) if segments.wants_audio(prompt) else None
    t_join = time.perf_counter()
    out = segments.join(parts, prompt, final, audio)
    print(f"joined {len(parts)} segments in {time.perf_counter() - t_join:.2f}s", file=sys.stderr)
    for tmp, fin in renames:
        os.replace(tmp, fin)
        out = fin
    shutil.rmtree(work, ignore_errors=True)
    print(out)
    return 0


def _where(args) -> str:
    if args.ray:
        return f"Ray ({args.ray})"
    if args.servers:
        return f"ComfyUI servers {args.servers}"
    return f"{args.workers or 1} local worker process(es)"
