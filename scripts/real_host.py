"""Real-host check: every shipped template in a real ComfyUI, through its own frontend in Chromium.

Not part of CI (CI has no ComfyUI). Run it with a Python that has Playwright and PyAV (the
harness venv has both), pointing at a ComfyUI checkout and the venv that runs it:

    python scripts/real_host.py --comfyui /work/comfy/ComfyUI --python /work/comfy/venv/bin/python \
        --models ../shared/models [--only upscale --only passthrough] [--port 8199]

What it does, in a temporary base directory (``--base-directory``) whose custom_nodes/ holds this
checkout as ComfyUI-Remaster and whose models/ is filled by ``python -m remaster models link``:
starts ComfyUI (CPU, 127.0.0.1, a free port); opens the real frontend in headless Chromium; for
each ``workflows/<name>.json`` fetches it from the server's template route, loads it on the canvas,
checks that no node hides another and that the frontend's own prompt (``app.graphToPrompt``) equals
the API twin, screenshots it (docs/img/templates/<name>.jpg, plus a thumbnail
workflows/<name>.jpg for the template browser), presses Run, and follows the websocket
(``progress`` per node id, ``execution_*``) until the run ends; then checks the output video
decodes, collects browser console errors and the server log's tracebacks. Every
``workflows/api/<name>.json`` is also submitted over HTTP. The table goes to stdout and to
docs/real_host.md.

``--capture-golden DIR`` instead writes, for every Remaster node, the widget order and values that
the frontend itself serialises for a freshly created node (tests/data/frontend_widgets/).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

PACK_DEFAULT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
MISSING_MODEL = re.compile(r"model (?:file|folder) '([^']+)' was not found.*folder.*(https?://\S+)", re.S)


# ------------------------------------------------------------------------------------------------
# server
# ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, args, base: Path):
        self.args, self.base = args, base
        self.port = args.port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "comfyui.log"
        self.proc = None

    def start(self):
        for d in ("custom_nodes", "input", "output", "temp", "user", "models"):
            (self.base / d).mkdir(exist_ok=True)
        link = self.base / "custom_nodes" / "ComfyUI-Remaster"
        if not link.exists():
            link.symlink_to(Path(self.args.pack).resolve(), target_is_directory=True)
        if self.args.models:
            out = subprocess.run([self.args.python, "-m", "remaster", "--models-dir", str(self.base / "models"), "models",
                                  "link", str(Path(self.args.models).resolve())], cwd=self.args.pack,
                                 capture_output=True, text=True)
            print(out.stdout.strip() or out.stderr.strip()[-500:], flush=True)
        cmd = [self.args.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base), "--disable-auto-launch"]
        if self.args.front_end_root:
            cmd += ["--front-end-root", str(Path(self.args.front_end_root).resolve())]
        self.log = open(self.log_path, "w")
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, cwd=self.args.comfyui, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        t0 = time.time()
        while time.time() - t0 < self.args.start_timeout:
            if self.proc.poll() is not None:
                sys.exit(f"ComfyUI exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            try:
                self.get("/system_stats", timeout=2)
                return
            except (OSError, urllib.error.URLError, ValueError):
                time.sleep(1)
        self.stop()
        sys.exit(f"ComfyUI did not answer within {self.args.start_timeout:g} s:\n{self.log_text()[-2000:]}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def get(self, path, timeout=30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def post(self, path, data, timeout=60):
        req = urllib.request.Request(self.url + path, data=json.dumps(data).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                body = r.read()
                return r.status, (json.loads(body) if body else {})
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body)
            except ValueError:
                return e.code, {"error": body.decode(errors="replace")}


# ------------------------------------------------------------------------------------------------
# checks shared by the canvas and the API runs
# ------------------------------------------------------------------------------------------------
def decode_video(path: Path) -> str:
    """'N frames WxH, audio' if the file decodes, else the error."""
    try:
        import av

        with av.open(str(path)) as c:
            vs = c.streams.video[0]
            n = sum(1 for _ in c.decode(vs))
            has_audio = bool(c.streams.audio)
        return f"{n} frames {vs.codec_context.width}x{vs.codec_context.height}{', audio' if has_audio else ''}"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"DOES NOT DECODE: {exc}"


def outputs_of(server: Server, prompt_id: str, wait: float = 20.0) -> list[Path]:
    """Output files of a finished prompt from /history (waits for the entry to be written)."""
    t0 = time.time()
    while True:
        hist = server.get(f"/history/{prompt_id}").get(prompt_id) or {}
        files = []
        for node_out in (hist.get("outputs") or {}).values():
            for key in ("videos", "gifs", "images"):
                for item in node_out.get(key, []) or []:
                    if item.get("type", "output") == "output" and item.get("filename"):
                        files.append(server.base / "output" / item.get("subfolder", "") / item["filename"])
        if files or time.time() - t0 > wait:
            return files
        time.sleep(0.5)


def expected_models(api: dict, models_root: Path, pack: Path) -> list[tuple[str, str, bool]]:
    """(file, folder, present) for every registry model the API graph names."""
    reg = json.loads((pack / "models.json").read_text())["models"]
    by_name = {}
    for m in reg:
        by_name[m["filename"]] = m
        by_name[m["id"]] = m
    out = []
    for node in api.values():
        for v in node.get("inputs", {}).values():
            if isinstance(v, str) and v in by_name:
                m = by_name[v]
                out.append((m["filename"], m["folder"], (models_root / m["folder"] / m["filename"]).exists()))
    return out


def server_errors(text: str) -> list[str]:
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback") or "!!! Exception" in line or line.startswith("ERROR"):
            out.append(line.strip()[:200])
    return out


def verdict_for(run: dict, models: list) -> str:
    if run.get("status") == "success":
        return "PASS" if " frames " in run.get("decoded", "") and "DOES NOT" not in run.get("decoded", "") \
            else "FAIL (no output)"
    msg = run.get("error", "")
    m = MISSING_MODEL.search(msg)
    # told which file, where, and from where; and it is indeed one we do not have
    if m and not any(name == m.group(1) and present for name, _, present in models):
        return "PASS (missing model, told)"
    return "FAIL"


# ------------------------------------------------------------------------------------------------
# the browser
# ------------------------------------------------------------------------------------------------
class Browser:
    def __init__(self, server: Server, args):
        from playwright.sync_api import sync_playwright

        self.server, self.args = server, args
        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport={"width": 2200, "height": 1240})
        self.console, self.ws, self.responses = [], [], []
        pg = self.page
        pg.on("console", lambda m: self.console.append(f"console.{m.type}: {m.text}"[:300]) if m.type == "error" else None)
        pg.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"[:300]))
        pg.on("response", self._on_response)
        pg.on("websocket", lambda ws: ws.on("framereceived", self._on_frame))
        pg.request.post(server.url + "/api/settings/Comfy.TutorialCompleted", data="true")
        pg.goto(server.url)
        pg.wait_for_function("window.app && window.app.graph && window.app.extensionManager", timeout=120000)
        pg.wait_for_timeout(2000)

    def _on_response(self, r):
        try:
            if r.status >= 400:
                self.console.append(f"HTTP {r.status} {r.request.method} {r.url.replace(self.server.url, '')}"[:300])
            if r.url.endswith("/api/prompt") and r.request.method == "POST":
                self.responses.append((r.status, r.text()))
        except Exception:  # noqa: BLE001 - a closed page
            pass

    def _on_frame(self, payload):
        if isinstance(payload, (bytes, bytearray)):
            return
        try:
            msg = json.loads(payload)
        except ValueError:
            return
        self.ws.append((time.time(), msg))

    def close(self):
        self.browser.close()
        self._pw.stop()

    # -- golden widget values -------------------------------------------------------------------
    def capture_golden(self, out_dir: Path, info: dict, frontend: str):
        out_dir.mkdir(parents=True, exist_ok=True)
        # the pack's nodes, and the ComfyUI core nodes its shipped workflows use (remaster/headless/core_nodes.py)
        core = set(re.findall(r"^class (\w+)\(_Core\)", (PACK_DEFAULT / "remaster" / "headless" / "core_nodes.py").read_text(), re.M))
        for cls in sorted(c for c in info if c.startswith("Remaster") or c in core):
            got = self.page.evaluate("""(type) => {
                const n = LiteGraph.createNode(type); app.graph.add(n);
                const s = n.serialize(), size = [Math.round(n.size[0]), Math.round(n.size[1])];
                const widgets = (n.widgets || []).map((w, i) => ({name: w.name, type: w.type,
                    serialized: w.serialize !== false && i in (s.widgets_values || [])}));
                app.graph.remove(n);
                return {widgets, size, widgets_values: s.widgets_values || []};
            }""", cls)
            spec = []
            for section in ("required", "optional"):
                for name, sp in (info[cls]["input"].get(section) or {}).items():
                    t, opts = sp[0], (sp[1] if len(sp) > 1 and isinstance(sp[1], dict) else {})
                    flags = {k: opts[k] for k in ("control_after_generate", "image_upload", "video_upload",
                                                  "animated_image_upload", "forceInput") if k in opts}
                    spec.append([name, section, "COMBO" if isinstance(t, list) else t, flags])
            doc = {"class_type": cls, "frontend": frontend, "input_spec": spec,
                   "serialized_widgets": [w["name"] for w in got["widgets"] if w["serialized"]],
                   "widget_types": {w["name"]: w["type"] for w in got["widgets"] if w["serialized"]},
                   "widgets_values": got["widgets_values"], "size": got["size"]}
            (out_dir / f"{cls}.json").write_text(json.dumps(doc, indent=1) + "\n")
            print("golden", cls, doc["serialized_widgets"])

    # -- one template ---------------------------------------------------------------------------
    def template(self, name: str, api: dict, shots: Path, thumbs: Path | None) -> dict:
        pg, row = self.page, {"template": name}
        self.console.clear()
        self.responses.clear()
        listed = self.server.get("/workflow_templates").get("ComfyUI-Remaster", [])
        row["listed"] = name in listed
        pg.evaluate(QUIET_JS, False)
        for _ in range(3):  # the error dialog of a previous run would cover the Run button
            pg.keyboard.press("Escape")
        pg.evaluate("() => app.graph.clear()")
        ok = pg.evaluate("""async (name) => {
            const r = await fetch('api/workflow_templates/ComfyUI-Remaster/' + name + '.json');
            if (!r.ok) return 'HTTP ' + r.status;
            await app.loadGraphData(await r.json(), true, true, name);
            return 'ok';
        }""", name)
        row["loaded"] = ok
        pg.wait_for_timeout(2500)  # previews, sizes
        row["unknown_types"] = pg.evaluate(
            "() => app.graph._nodes.filter(n => !LiteGraph.registered_node_types[n.type]).map(n => n.type)")
        row["overlaps"] = self._overlaps()
        # the prompt the frontend itself builds from the canvas, against the API twin
        prompt = pg.evaluate("async () => (await app.graphToPrompt()).output")
        row["api_equal"], row["api_diff"] = compare_prompts(prompt, api)
        row["no_file_text"] = pg.evaluate("() => /no file/i.test(document.body.innerText)")
        self._fit()
        pg.wait_for_timeout(1500)
        shots.mkdir(parents=True, exist_ok=True)
        shot = shots / f"{name}.jpg"
        pg.locator("#graph-canvas").screenshot(path=str(shot), type="jpeg", quality=85)
        shrink(shot, 1600, 62)
        if thumbs is not None:
            make_thumb(shot, thumbs / f"{name}.jpg")
        if self.args.no_run:
            row["status"] = "not run"
            row["console"] = list(self.console)
            return row
        # Run, as a person would: the Run button, else the same call the button makes
        self.ws.clear()
        t_run = time.time()
        try:
            pg.get_by_role("button", name=re.compile(r"^\s*Run\b")).first.click(timeout=5000)
            row["run_by"] = "Run button"
        except Exception:  # noqa: BLE001 - fall back to the call behind the button
            pg.evaluate("() => app.queuePrompt(0, 1)")
            row["run_by"] = "app.queuePrompt"
        # while it runs, the page draws nothing and plays no preview: on a shared CPU the browser's
        # 60 fps canvas and looping <video>s would take the time ComfyUI needs
        pg.evaluate(QUIET_JS, True)
        pid = None
        t0 = time.time()
        while time.time() - t0 < 30 and pid is None:
            pg.wait_for_timeout(250)
            for status, text in self.responses:
                try:
                    body = json.loads(text)
                except ValueError:
                    body = {}
                if status != 200:
                    row["status"] = "rejected"
                    row["error"] = json.dumps(body)[:600]
                    row["console"] = list(self.console)
                    return row
                pid = body.get("prompt_id")
        if pid is None:
            row["status"] = "not queued"
            row["console"] = list(self.console)
            return row
        row.update(follow(self.ws, pid, self.args.timeout, lambda s: pg.wait_for_timeout(int(s * 1000))))
        row["seconds"] = round(time.time() - t_run, 1)
        if row["status"] == "success":
            files = outputs_of(self.server, pid)
            row["outputs"] = [str(f.relative_to(self.server.base / "output")) for f in files]
            row["decoded"] = "; ".join(decode_video(f) for f in files if f.suffix in (".mp4", ".mov", ".mkv", ".webm")) \
                or ("no video output" if not files else "")
        pg.evaluate(QUIET_JS, False)
        pg.wait_for_timeout(1500)  # result panels grow
        row["overlaps_after_run"] = self._overlaps()
        row["console"] = list(self.console)
        return row

    def _overlaps(self):
        return self.page.evaluate(OVERLAPS_JS)

    def _fit(self):
        self.page.evaluate("""() => {
            const ns = app.graph._nodes, T = LiteGraph.NODE_TITLE_HEIGHT, c = app.canvas;
            let x0 = 1e9, y0 = 1e9, x1 = -1e9, y1 = -1e9;
            for (const n of ns) { x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - T);
                x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]); }
            const W = c.canvas.clientWidth, H = c.canvas.clientHeight, pad = 30;
            const s = Math.min(1, (W - 2 * pad) / (x1 - x0), (H - 2 * pad) / (y1 - y0));
            c.ds.scale = s; c.ds.offset = [pad / s - x0, pad / s - y0 + 40 / s];
            c.setDirty(true, true);
        }""")


QUIET_JS = """(quiet) => {
    app.canvas.pause_rendering = quiet;
    for (const v of document.querySelectorAll('video')) { if (quiet) v.pause(); else v.play?.().catch(() => {}); }
    if (!quiet) app.graph.setDirtyCanvas(true, true);
}"""

OVERLAPS_JS = """() => {
    const T = LiteGraph.NODE_TITLE_HEIGHT, ns = app.graph._nodes, out = [];
    const box = n => [n.pos[0], n.pos[1] - T, n.pos[0] + n.size[0], n.pos[1] + n.size[1]];
    for (let i = 0; i < ns.length; i++) for (let j = i + 1; j < ns.length; j++) {
        const a = box(ns[i]), b = box(ns[j]);
        if (a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3]) out.push(ns[i].id + '/' + ns[j].id);
    }
    return out;
}"""


def follow(ws: list, pid: str, timeout: float, sleep) -> dict:
    """Follow a prompt's websocket messages until it ends: status, error, progress per node."""
    t0 = time.time()
    seen = 0
    res = {"status": "timeout", "progress": {}, "executed": []}
    while time.time() - t0 < timeout:
        msgs = ws[seen:]
        seen += len(msgs)
        for t, m in msgs:
            d, typ = m.get("data") or {}, m.get("type")
            if d.get("prompt_id") not in (None, pid):
                continue
            if typ == "progress" and d.get("node") is not None:
                res["progress"].setdefault(str(d["node"]), []).append((round(t - t0, 2), d.get("value"), d.get("max")))
            elif typ == "executing" and d.get("node") is not None:
                res["executed"].append(str(d["node"]))
            elif typ == "execution_cached":
                res["cached"] = [str(n) for n in d.get("nodes", [])]
            elif typ == "execution_success":
                res["status"] = "success"
                return res
            elif typ == "execution_error":
                res["status"] = "error"
                res["error"] = f"{d.get('node_type')} #{d.get('node_id')}: {d.get('exception_message', '').strip()}"[:700]
                return res
            elif typ == "execution_interrupted":
                res["status"] = "interrupted"
                return res
        sleep(0.5)
    return res


def progress_summary(progress: dict) -> tuple[str, float]:
    """'id:n/max' for each node that reported, and the longest silence between any two reports."""
    parts, gaps = [], [0.0]
    for nid, ev in sorted(progress.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0):
        vals = [v for _, v, _ in ev]
        advanced = len(set(vals)) > 1 or (vals and vals[-1] and ev[-1][2] and vals[-1] >= ev[-1][2])
        parts.append(f"{nid}:{len(ev)}{'' if advanced else '(stuck)'}")
        ts = [t for t, _, _ in ev]
        gaps += [b - a for a, b in zip(ts, ts[1:])]
    return " ".join(parts) or "none", round(max(gaps), 1)


def compare_prompts(prompt: dict, api: dict) -> tuple[bool, str]:
    """The frontend's prompt against the API twin: every input the twin sets must match."""
    diffs = []
    for nid, node in api.items():
        got = prompt.get(nid)
        if got is None:
            diffs.append(f"#{nid} missing")
            continue
        for k, v in node.get("inputs", {}).items():
            g = got.get("inputs", {}).get(k)
            if isinstance(v, list) and isinstance(g, list):
                same = [str(x) for x in v] == [str(x) for x in g]
            elif isinstance(v, float) or isinstance(g, float):
                same = isinstance(g, (int, float)) and abs(float(v) - float(g)) < 1e-6
            else:
                same = v == g
            if not same:
                diffs.append(f"#{nid}.{k}: {g!r} != {v!r}")
    return not diffs, "; ".join(diffs)[:400]


def shrink(path: Path, width: int, quality: int):
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        im.save(path, "JPEG", quality=quality, optimize=True)


def make_thumb(src: Path, dst: Path, width: int = 480):
    from PIL import Image

    with Image.open(src) as im:
        h = round(im.height * width / im.width)
        im.convert("RGB").resize((width, h), Image.LANCZOS).save(dst, "JPEG", quality=70, optimize=True)


# ------------------------------------------------------------------------------------------------
def run_api(server: Server, name: str, api: dict, timeout: float, seconds: float = 0.0) -> dict:
    """Submit an API workflow over HTTP and wait for its history entry (``seconds`` > 0: only the
    clip's first seconds, to keep the second pass short on a CPU)."""
    api = json.loads(json.dumps(api))
    for node in api.values():
        if seconds > 0 and node["class_type"] == "RemasterLoadVideo" and not node["inputs"].get("end_time"):
            node["inputs"]["end_time"] = float(seconds)
    server.post("/free", {"unload_models": False, "free_memory": True})  # no cached results from the canvas run
    status, body = server.post("/prompt", {"prompt": api, "client_id": "real_host_api"})
    row = {"template": name}
    if status != 200:
        return {**row, "status": "rejected", "error": json.dumps(body.get("node_errors") or body)[:600]}
    pid = body["prompt_id"]
    t0 = time.time()
    while time.time() - t0 < timeout:
        h = server.get(f"/history/{pid}").get(pid)
        if h and (h.get("status") or {}).get("completed") is not None and (h.get("status") or {}).get("status_str"):
            st = h["status"]
            if st.get("status_str") == "success":
                files = outputs_of(server, pid)
                row.update(status="success", seconds=round(time.time() - t0, 1),
                           decoded="; ".join(decode_video(f) for f in files) or "no output")
            else:
                err = [m[1] for m in st.get("messages", []) if m[0] == "execution_error"]
                e = err[0] if err else {}
                row.update(status="error", error=f"{e.get('node_type')} #{e.get('node_id')}: "
                                                 f"{(e.get('exception_message') or '').strip()}"[:700])
            return row
        time.sleep(1)
    return {**row, "status": "timeout"}


def write_report(path: Path, meta: dict, rows: list, api_rows: list):
    lines = ["# Real-host check", "",
             "Every shipped template loaded in a real ComfyUI through its own frontend (headless Chromium), "
             "run from the canvas, and every API workflow submitted over HTTP, by `scripts/real_host.py`. "
             "Not run in CI (no ComfyUI there); run it each round.", "",
             "| fact | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in meta.items()]
    lines += ["", "## Templates from the canvas", "",
              "| template | loaded | canvas = API twin | overlaps | run | seconds | output | progress (node:reports) | longest silence s | console errors | verdict |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        prog, gap = r.get("progress_text") or progress_summary(r.get("progress", {}))
        run = r.get("status", "")
        if r.get("error"):
            run += ": " + r["error"].replace("|", "/").replace("\n", " ")
        lines.append("| " + " | ".join(str(x) for x in [
            r["template"], r.get("loaded"), "yes" if r.get("api_equal") else f"NO: {r.get('api_diff')}",
            (", ".join(r.get("overlaps", [])) or "none") + (f"; after run: {', '.join(r['overlaps_after_run'])}"
                                                           if r.get("overlaps_after_run") else ""), run, r.get("seconds", ""),
            (", ".join(r.get("outputs", [])) + (f" ({r.get('decoded')})" if r.get("decoded") else "")) or "-",
            prog, gap, len(r.get("console", [])), r.get("verdict", "")]) + " |")
    errs = [(r["template"], c) for r in rows for c in r.get("console", [])]
    if errs:
        lines += ["", "### Console errors", ""] + [f"- {t}: `{c}`" for t, c in errs[:60]]
    if api_rows:
        lines += ["", "## API workflows over HTTP", "", f"`workflows/api/*.json` as shipped, posted to `/prompt`; "
                  f"{meta.get('api pass', '')}", "", "| workflow | result | seconds | output | verdict |", "|---|---|---|---|---|"]
        for r in api_rows:
            res = r.get("status", "") + (": " + r["error"].replace("|", "/").replace("\n", " ") if r.get("error") else "")
            lines.append(f"| {r['template']} | {res} | {r.get('seconds', '')} | {r.get('decoded', '-')} | {r.get('verdict', '')} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def meta_for(server: Server, frontend: str, args) -> dict:
    version = server.get("/system_stats").get("system", {})
    return {"ComfyUI": version.get("comfyui_version", "?"), "frontend": frontend or "?",
            "python / torch": f"{version.get('python_version', '?').split()[0]} / {version.get('pytorch_version', '?')}",
            "device": "CPU (--cpu), 2 shared cores: times are under load",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "api pass": (f"Load Video end_time set to {args.api_seconds:g} s to keep the CPU run short"
                         if args.api_seconds else "whole clip"),
            "command": "python scripts/real_host.py --comfyui <ComfyUI> --python <its venv python> --models ../shared/models"}


def report_from_log(log: Path, out: Path, meta: dict) -> str:
    """Rebuild the report from a run's printed rows (a run stopped before its end)."""
    import ast

    rows, api_rows, api = [], [], False
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("--- api "):
            api = True
        if not line.startswith('{"template"'):
            continue
        body, _, tail = line.partition("} ('")
        try:
            row = json.loads(body + "}" if tail else line)
        except ValueError:
            continue
        if tail:  # older print: progress summary as a tuple after the row
            summary, gap = ast.literal_eval("('" + tail)
            row["progress_text"] = (summary, gap)
        if row.get("status") == "error" and not str(row.get("verdict", "")).startswith("FAIL (load"):
            row["verdict"] = verdict_for(row, row.get("models", []))
        (api_rows if api else rows).append(row)
    return write_report(out, meta, rows, api_rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfyui", required=True, help="the ComfyUI folder (has main.py)")
    ap.add_argument("--python", default=sys.executable, help="the Python that runs ComfyUI (its venv)")
    ap.add_argument("--pack", default=str(PACK_DEFAULT), help="this pack's checkout (default: this one)")
    ap.add_argument("--models", help="a folder of weights to link into the models folders (e.g. ../shared/models)")
    ap.add_argument("--only", action="append", default=[], help="template name (repeatable)")
    ap.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    ap.add_argument("--front-end-root", help="serve this frontend build instead of the installed package")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--start-timeout", type=float, default=900, help="seconds to wait for ComfyUI to answer")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per run")
    ap.add_argument("--no-run", action="store_true", help="load and screenshot only")
    ap.add_argument("--no-api", action="store_true", help="skip the HTTP submissions of workflows/api")
    ap.add_argument("--api-seconds", type=float, default=1.0,
                    help="HTTP pass: run only the clip's first N seconds (0 = all); the canvas pass runs all of it")
    ap.add_argument("--no-thumbs", action="store_true", help="do not rewrite workflows/<name>.jpg")
    ap.add_argument("--report", default=None, help="report file (default: <pack>/docs/real_host.md)")
    ap.add_argument("--shots", default=None, help="screenshot folder (default: <pack>/docs/img/templates)")
    ap.add_argument("--capture-golden", metavar="DIR", help="write the frontend's widget order per node and exit")
    ap.add_argument("--keep", action="store_true", help="keep the temporary base directory")
    ap.add_argument("--report-from-log", metavar="LOG", help="only rebuild the report from a stopped run's output")
    args = ap.parse_args(argv)
    if args.report_from_log:
        meta = {"ComfyUI": "0.3.64", "frontend": "1.27.10", "device": "CPU (--cpu), 2 shared cores: times are under load",
                "note": "rebuilt from the run's log", "api pass": f"Load Video end_time set to {args.api_seconds:g} s"}
        print(report_from_log(Path(args.report_from_log), Path(args.report or Path(args.pack) / "docs" / "real_host.md"), meta))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop ComfyUI and clean up
    pack = Path(args.pack).resolve()
    args.pack = str(pack)
    base = Path(tempfile.mkdtemp(prefix="remaster_realhost_"))
    server = Server(args, base)
    rows, api_rows = [], []
    try:
        server.start()
        info = server.get("/object_info", timeout=120)
        if "RemasterLoadVideo" not in info:
            sys.exit("the server has no Remaster nodes:\n" + server.log_text()[-4000:])
        browser = Browser(server, args)
        frontend = browser.page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__ || ''")
        if args.capture_golden:
            browser.capture_golden(Path(args.capture_golden), info, frontend)
            browser.close()
            return 0
        report_path = Path(args.report) if args.report else pack / "docs" / "real_host.md"
        names = sorted(p.stem for p in (pack / "workflows").glob("*.json"))
        if args.only:
            names = [n for n in names if n in args.only]
        for name in names:
            api = json.loads((pack / "workflows" / "api" / f"{name}.json").read_text())
            models = expected_models(api, base / "models", pack)
            log0 = len(server.log_text())
            print(f"--- {name}", flush=True)
            row = browser.template(name, api, Path(args.shots) if args.shots else pack / "docs" / "img" / "templates",
                                   None if args.no_thumbs else pack / "workflows")
            row["server_errors"] = server_errors(server.log_text()[log0:])
            row["models"] = models
            row["verdict"] = verdict_for(row, models) if row.get("status") != "not run" else ""
            if not (row.get("api_equal") and not row.get("overlaps") and not row.get("overlaps_after_run")
                    and row.get("loaded") == "ok" and not row.get("no_file_text")):
                row["verdict"] = "FAIL (load)"
            rows.append(row)
            print(json.dumps(row, default=str), flush=True)
            write_report(report_path, meta_for(server, frontend, args), rows, api_rows)  # so far, in case of a stop
        browser.close()
        if not args.no_api and not args.no_run:
            for name in names:
                api = json.loads((pack / "workflows" / "api" / f"{name}.json").read_text())
                print(f"--- api {name}", flush=True)
                r = run_api(server, name, api, args.timeout, args.api_seconds)
                r["verdict"] = verdict_for(r, expected_models(api, base / "models", pack))
                api_rows.append(r)
                print(json.dumps(r, default=str), flush=True)
                write_report(report_path, meta_for(server, frontend, args), rows, api_rows)
        meta = meta_for(server, frontend, args)
        report = write_report(report_path, meta, rows, api_rows)
        print(report)
        bad = [r for r in rows + api_rows if str(r.get("verdict", "")).startswith("FAIL")]
        return 1 if bad else 0
    finally:
        server.stop()
        if args.keep:
            print("base directory kept:", base)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
