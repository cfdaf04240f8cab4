"""Real-ComfyUI check of the one-pass stream: progress lands on each node's own bar, and an
interrupt during the scene-cut analysis stops at once and writes no file.

Not part of CI (CI has no ComfyUI). Run with the harness venv (aiohttp comes with ComfyUI):

    OMP_WAIT_POLICY=PASSIVE nice /work/comfy/venv/bin/python scripts/onepass_comfy_check.py \
        --comfyui /work/comfy/ComfyUI --python /work/comfy/venv/bin/python --models ../shared/models

1. queues the shipped ``enhance`` workflow (a short real clip, small size) over HTTP, follows the
   websocket and records, per node id, the ``progress`` messages (value/max) it received;
2. queues Load Video → Scene Cuts → Save Video on a long generated 720p clip, waits for the Scene
   Cuts node's first progress message, POSTs /interrupt, and measures the time to
   ``execution_interrupted`` (from sending the request, and from its answer: the flag is set
   by then); then checks the output folder holds no file (no video, no temp file);
3. the same for ``enhance`` on that clip, interrupted during Auto Colour's analysis read (cuts are
   found in that read), while Save Video already has its temp file open.
``--repeat`` runs each interrupt case several times. Prints a JSON report (and writes it to
--report if given). ``--port`` picks the port (default: a free one).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]
VERBOSE = False
SIZE = {"seconds": 2.0, "side": 256}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_clip(path: Path, seconds: int) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    f"testsrc2=size=1280x720:rate=30:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(path)], check=True)


async def run_prompt(url: str, prompt: dict, on_msg=None, timeout: float = 900) -> dict:
    import aiohttp

    cid = uuid.uuid4().hex
    log = {"progress": {}, "executing": [], "events": [], "t_msgs": []}
    async with aiohttp.ClientSession() as sess:
        async with sess.ws_connect(f"{url}/ws?clientId={cid}", max_msg_size=0) as ws:
            async with sess.post(f"{url}/prompt", json={"prompt": prompt, "client_id": cid}) as r:
                body = await r.json()
                if r.status != 200:
                    raise RuntimeError(f"prompt rejected: {body}")
                pid = body["prompt_id"]
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < timeout:
                msg = await ws.receive(timeout=timeout)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                m = json.loads(msg.data)
                t, d = m.get("type"), m.get("data", {})
                if d.get("prompt_id") not in (None, pid):
                    continue
                now = round(time.perf_counter() - t0, 2)
                if VERBOSE:
                    print(now, t, json.dumps(d)[:160], flush=True)
                if t == "progress":
                    log["progress"].setdefault(str(d.get("node")), []).append((d.get("value"), d.get("max"), now))
                elif t == "executing":
                    log["executing"].append((d.get("node"), now))
                elif t in ("execution_success", "execution_error", "execution_interrupted"):
                    log["events"].append((t, now, d.get("exception_message", "")))
                    return log
                if on_msg is not None:
                    await on_msg(sess, t, d, now, log)
    return log


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--comfyui", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--models", default=str(PACK.parent / "shared" / "models"))
    ap.add_argument("--clip", default=str(PACK.parent / "shared" / "clips" / "talking_head_512_30_audio.mp4"))
    ap.add_argument("--report", default="")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--start-timeout", type=float, default=1800)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each interrupt case")
    ap.add_argument("--skip-enhance", action="store_true", help="only the interrupt cases")
    args = ap.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    SIZE.update(seconds=args.seconds, side=args.side)
    base = Path(tempfile.mkdtemp(prefix="onepass-comfy-"))
    for d in ("custom_nodes", "input", "output", "temp", "user", "models"):
        (base / d).mkdir()
    (base / "custom_nodes" / "ComfyUI-Remaster").symlink_to(PACK, target_is_directory=True)
    subprocess.run([args.python, "-m", "remaster", "--models-dir", str(base / "models"), "models", "link",
                    str(Path(args.models).resolve())], cwd=PACK, capture_output=True)
    shutil.copy(args.clip, base / "input" / "clip.mp4")
    make_clip(base / "input" / "long.mp4", 60)
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    logf = open(base / "comfyui.log", "w")
    LOG["path"] = base / "comfyui.log"
    proc = subprocess.Popen([args.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                             "--base-directory", str(base), "--disable-auto-launch"], cwd=args.comfyui,
                            stdout=logf, stderr=subprocess.STDOUT, env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1"))
    report: dict = {}
    try:
        import urllib.request

        t0 = time.time()
        while True:  # a busy machine can take many minutes to import ComfyUI and the packs
            try:
                urllib.request.urlopen(f"{url}/system_stats", timeout=2)
                break
            except Exception:
                if proc.poll() is not None or time.time() - t0 > args.start_timeout:
                    raise SystemExit(f"ComfyUI did not answer on {url}; see {base / 'comfyui.log'}")
                time.sleep(1)
        report["startup_s"] = round(time.time() - t0, 1)
        def step(key, coro, many=True):
            try:
                got = asyncio.run(coro)
            except Exception as exc:  # keep what the other steps found
                got = {"failed": f"{type(exc).__name__}: {exc}"}
            report.setdefault(key, []).append(got) if many else report.update({key: got})
            print(key, json.dumps(got), flush=True)
            if args.report:
                Path(args.report).write_text(json.dumps(report, indent=1))

        if not args.skip_enhance:
            step("enhance", check_enhance(url), many=False)
        for k in range(args.repeat):
            report.setdefault("load_average", []).append(os.getloadavg()[0])
            step("interrupt_scene_cuts", check_interrupt(url, base, k))
            step("interrupt_enhance", check_interrupt_enhance(url, base, k))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    text = json.dumps(report, indent=1)
    print(text)
    if args.report:
        Path(args.report).write_text(text)


async def check_enhance(url: str) -> dict:
    prompt = json.loads((PACK / "workflows" / "api" / "enhance.json").read_text())
    for node in prompt.values():
        if node["class_type"] == "RemasterLoadVideo":
            node["inputs"].update(video="clip.mp4", end_time=SIZE["seconds"], max_side=SIZE["side"], chunk_frames=6)
        if node["class_type"] == "RemasterSaveVideo":
            node["inputs"].update(speed="ultrafast", filename_prefix="onepass/enhance")
    log = await run_prompt(url, prompt)
    stages = {nid: n["class_type"] for nid, n in prompt.items()}
    out = {"result": log["events"], "nodes": {}}
    for nid, ct in stages.items():
        p = log["progress"].get(nid, [])
        values = [v for v, _, _ in p]
        out["nodes"][f"{nid} {ct}"] = {"messages": len(p), "advancing": len(set(values)) > 1,
                                       "first_last": (p[0][:2], p[-1][:2]) if p else None}
    return out


LOG = {"path": None}  # ComfyUI's log: it says "Processing interrupted" when the node's exception reached it


def _caught_count() -> int:
    try:
        return Path(LOG["path"]).read_text(errors="replace").count("Processing interrupted")
    except OSError:
        return 0


def _interrupter(url: str, node: str, state: dict):
    """A websocket handler: POST /interrupt on ``node``'s first progress message past 0, then
    watch ComfyUI's log for the moment the stop reached ComfyUI (before it sends the message)."""

    async def watch(before: int, t_sent: float) -> None:
        while _caught_count() == before and time.perf_counter() - t_sent < 120:
            await asyncio.sleep(0.01)
        state["caught_after_sent"] = round(time.perf_counter() - t_sent, 3)

    async def on_msg(sess, t, d, now, log):
        if t == "progress" and str(d.get("node")) == node and state.get("sent") is None and (d.get("value") or 0) > 0:
            state["sent"] = now
            before = _caught_count() if LOG["path"] else None
            t0 = time.perf_counter()
            async with sess.post(f"{url}/interrupt", json={}) as r:
                await r.read()
            state["answered"] = round(now + time.perf_counter() - t0, 3)
            if before is not None:
                state["watch"] = asyncio.ensure_future(watch(before, t0))

    return on_msg


async def _outcome(log: dict, state: dict, base: Path, prefix: str, node: str) -> dict:
    if "watch" in state:
        await asyncio.wait_for(state.pop("watch"), 130)
    end = log["events"][-1] if log["events"] else None
    files = [str(p.relative_to(base)) for p in (base / "output").rglob("*") if p.is_file() and prefix in str(p)]
    ok = end is not None and state.get("sent") is not None
    return {"end": end, "interrupt_sent_s": state.get("sent"),
            "stop_latency_s": round(end[1] - state["sent"], 2) if ok else None,
            "stop_latency_after_answer_s": round(end[1] - state["answered"], 2) if ok and "answered" in state else None,
            "reached_comfyui_s": state.get("caught_after_sent"),  # the stop seen in ComfyUI's log
            "progress_messages": len(log["progress"].get(node, [])), "output_files": files}


async def check_interrupt(url: str, base: Path, k: int = 0) -> dict:
    prompt = {
        "1": {"class_type": "RemasterLoadVideo", "inputs": {"video": "long.mp4"}},
        "2": {"class_type": "RemasterSceneCuts", "inputs": {"frames": ["1", 0], "threshold": 0.25, "min_shot_frames": 8}},
        "3": {"class_type": "RemasterSaveVideo", "inputs": {"frames": ["2", 0], "filename_prefix": f"onepass/interrupt{k}",
                                                             "format": "h264_mp4", "crf": 18, "speed": "ultrafast",
                                                             "audio": "none"}},
    }
    defaults = json.loads((PACK / "workflows" / "api" / "passthrough.json").read_text())
    for node in defaults.values():  # fill the optional inputs the same way the shipped file does
        if node["class_type"] == "RemasterLoadVideo":
            prompt["1"]["inputs"] = dict(node["inputs"], video="long.mp4", max_side=1280)
    state: dict = {}
    log = await run_prompt(url, prompt, _interrupter(url, "2", state))
    return await _outcome(log, state, base, f"interrupt{k}", "2")


async def check_interrupt_enhance(url: str, base: Path, k: int = 0) -> dict:
    """``enhance`` on the long 720p clip, stopped while Auto Colour reads the decoder for its
    statistics (and finds the cuts in that read); Save Video has its temp file open then."""
    prompt = json.loads((PACK / "workflows" / "api" / "enhance.json").read_text())
    colour = next(nid for nid, n in prompt.items() if n["class_type"] == "RemasterAutoColour")
    for node in prompt.values():
        if node["class_type"] == "RemasterLoadVideo":
            node["inputs"].update(video="long.mp4", max_side=1280)
        if node["class_type"] == "RemasterSaveVideo":
            node["inputs"].update(speed="ultrafast", filename_prefix=f"onepass/stopped{k}", audio="none")
    state: dict = {}
    log = await run_prompt(url, prompt, _interrupter(url, colour, state))
    return await _outcome(log, state, base, f"stopped{k}", colour)


if __name__ == "__main__":
    sys.path.insert(0, str(PACK))
    main()
