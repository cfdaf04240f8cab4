"""The web extensions in a real browser (Debian's chromium driven by Playwright) against a real,
running ComfyUI that serves this checkout as custom_nodes/ComfyUI-Remaster.

Which ComfyUI:
* REMASTER_COMFYUI_DIR=<a ComfyUI checkout> (and REMASTER_COMFYUI_PYTHON=<its python>, default this
  one): the tests start their own CPU ComfyUI on a free 127.0.0.1 port with a temporary base
  directory whose custom_nodes/ComfyUI-Remaster is this checkout, and stop it afterwards;
* otherwise REMASTER_COMFY_URL (default http://127.0.0.1:8188): a running ComfyUI, used only if it
  serves this checkout's web/js.
Skips cleanly when Playwright, chromium or a server is missing. REMASTER_CHROMIUM defaults to
/usr/bin/chromium (Debian's package; never a downloaded browser). Screenshots go to
docs/img/web_*.png (REMASTER_WEB_SHOTS=0 turns that off).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
URL = os.environ.get("REMASTER_COMFY_URL", "http://127.0.0.1:8188").rstrip("/")
COMFYUI_DIR = os.environ.get("REMASTER_COMFYUI_DIR", "")
CHROMIUM = os.environ.get("REMASTER_CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "docs" / "img"
SAVE_SHOTS = os.environ.get("REMASTER_WEB_SHOTS", "1") != "0"
CLIP = "remaster_webtest.mp4"
SUB = "remaster_webtest"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


def _get(path, timeout=5):
    with urllib.request.urlopen(URL + path, timeout=timeout) as r:
        return json.loads(r.read())


def _start_comfyui(tmp):
    """Our own ComfyUI (CPU, loopback, free port) with this checkout as its only custom node pack."""
    global URL
    main = Path(COMFYUI_DIR) / "main.py"
    if not main.is_file():
        pytest.skip(f"REMASTER_COMFYUI_DIR={COMFYUI_DIR} has no main.py")
    for d in ("custom_nodes", "input", "output", "temp", "user", "models"):
        (tmp / d).mkdir()
    (tmp / "custom_nodes" / "ComfyUI-Remaster").symlink_to(ROOT, target_is_directory=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(tmp / "comfyui.log", "w")
    proc = subprocess.Popen(
        [os.environ.get("REMASTER_COMFYUI_PYTHON", sys.executable), str(main), "--cpu", "--listen", "127.0.0.1",
         "--port", str(port), "--base-directory", str(tmp), "--disable-auto-launch"],
        cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT)
    URL = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while time.time() - t0 < 240:
        if proc.poll() is not None:
            pytest.fail(f"ComfyUI exited with {proc.returncode}: {(tmp / 'comfyui.log').read_text()[-3000:]}")
        try:
            _get("/system_stats", timeout=2)
            return proc, log
        except (OSError, urllib.error.URLError, ValueError):
            time.sleep(1)
    proc.terminate()
    pytest.fail("ComfyUI did not answer within 240 s")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    proc = None
    if COMFYUI_DIR:
        proc, log = _start_comfyui(tmp_path_factory.mktemp("comfyui"))
    try:
        yield _check_server()
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def _check_server():
    try:
        exts = _get("/extensions")
        info = _get("/object_info", timeout=30)
    except (OSError, urllib.error.URLError, ValueError):
        pytest.skip(f"no ComfyUI answering at {URL} (start one, see docs/web.md)")
    if "RemasterLoadVideo" not in info:
        pytest.skip(f"the ComfyUI at {URL} has no Remaster nodes")
    served = {e.rsplit("/", 1)[-1]: e for e in exts if "/ComfyUI-Remaster/" in e}
    for f in sorted((ROOT / "web" / "js").glob("*.js")):
        try:
            with urllib.request.urlopen(URL + served[f.name], timeout=10) as r:
                same = r.read() == f.read_bytes()
        except (KeyError, OSError, urllib.error.URLError):
            same = False
        if not same:
            pytest.skip(f"the ComfyUI at {URL} does not serve this checkout's web/js/{f.name} "
                        "(it runs another checkout; set REMASTER_COMFYUI_DIR to start one for this checkout)")
    return info


def _upload(path, name, subfolder=""):
    boundary = "----remasterwebtest"
    body = b"".join([
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
        f"Content-Type: application/octet-stream\r\n\r\n".encode(), Path(path).read_bytes(), b"\r\n",
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n".encode(),
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"subfolder\"\r\n\r\n{subfolder}\r\n".encode(),
        f"--{boundary}--\r\n".encode(),
    ])
    req = urllib.request.Request(URL + "/upload/image", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def clip(server, tmp_path_factory):
    """A short real clip (a person) in ComfyUI's input folder; synthetic when ../shared is absent."""
    from conftest import CLIPS

    shared = CLIPS / "talking_head_512_30_audio.mp4"
    tmp = tmp_path_factory.mktemp("clip")
    src = tmp / CLIP
    if shared.is_file():
        shutil.copy(shared, src)
    else:
        from test_routes import make_clip  # a 2 s grey ramp with audio

        make_clip(src)
    _upload(src, CLIP)
    return CLIP


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        pg = browser.new_page(viewport={"width": 1500, "height": 1000})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.request.post(URL + "/api/settings/Comfy.TutorialCompleted", data="true")
        pg.goto(URL)
        pg.wait_for_function("window.app && window.app.graph && window.app.extensionManager", timeout=90000)
        pg.wait_for_function("window.app.extensions.some(e => e.name === 'Remaster.VideoPreview')", timeout=30000)
        pg.page_errors = errors
        yield pg
        browser.close()


def shot(pg, name, node_ids, pad=12):
    """Screenshot of the nodes' area on screen (with the progress line under them)."""
    if not SAVE_SHOTS:
        return
    box = pg.evaluate("""(ids) => {
        const ds = app.canvas.ds, r = app.canvas.canvas.getBoundingClientRect(), T = LiteGraph.NODE_TITLE_HEIGHT;
        let x0 = 1e9, y0 = 1e9, x1 = -1e9, y1 = -1e9;
        for (const id of ids) { const n = app.graph.getNodeById(id);
            x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - T);
            x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1] + 26); }
        return {x: (x0 + ds.offset[0]) * ds.scale + r.left, y: (y0 + ds.offset[1]) * ds.scale + r.top,
                width: (x1 - x0) * ds.scale, height: (y1 - y0) * ds.scale};
    }""", node_ids)
    vp = pg.viewport_size
    x, y = max(0, box["x"] - pad), max(0, box["y"] - pad)
    clip = {"x": x, "y": y, "width": min(vp["width"] - x, box["width"] + 2 * pad),
            "height": min(vp["height"] - y, box["height"] + 2 * pad)}
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / name), clip=clip)


def load_api(pg, graph):
    pg.evaluate("async (g) => { await app.loadApiJson(g, 'remaster-webtest'); }", graph)
    pg.wait_for_timeout(500)


def place(pg, layout):
    """Put nodes at fixed places and sizes, at zoom 1, so screenshots are readable."""
    pg.evaluate("""(layout) => {
        for (const [id, x, y, w, h] of layout) { const n = app.graph.getNodeById(id);
            n.pos = [x, y + 40]; n.setSize([w, Math.max(h, n.computeSize()[1])]); }
        app.canvas.ds.scale = 1; app.canvas.ds.offset = [0, 0]; app.graph.setDirtyCanvas(true, true);
    }""", layout)
    pg.wait_for_timeout(300)


def load_node(clip, **kw):
    inputs = {"video": clip, "start_time": 1.0, "end_time": 3.0, "every_nth": 1, "resize": "max_side",
              "max_side": 320, "width": 0, "height": 0, "force_fps": 0.0, "alpha": "drop", "chunk_frames": 0}
    inputs.update(kw)
    return {"class_type": "RemasterLoadVideo", "inputs": inputs, "_meta": {"title": "Load Video"}}


def wait_playing(pg, expr, timeout=60):
    """Wait until the <video> found by the JS expression plays (currentTime > 0, not paused)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        st = pg.evaluate(f"() => {{ const v = {expr}; return v ? [v.currentTime, v.paused, v.readyState, v.error && v.error.code] : null; }}")
        if st and st[0] > 0 and not st[1]:
            return st
        pg.wait_for_timeout(250)
    raise AssertionError(f"video {expr} did not play: {st}")


KNOWN_EDITORS = {"keyframe_picks": {"RemasterSelectCandidates": "picks"}}  # as in web/js (by class name)


def editor_node(info, editor):
    for cls, name in KNOWN_EDITORS.get(editor, {}).items():
        if cls in info:
            return cls, name, info[cls]
    for cls, d in info.items():
        req = d.get("input", {}).get("required") or {}
        if editor == "sam2_prompts" and "SAM2" in cls.upper() and cls.startswith("Remaster"):
            for name in ("prompts_json", "prompts"):
                if req.get(name, [None])[0] == "STRING":
                    return cls, name, d
        for group in ("required", "optional"):
            for name, spec in (d.get("input", {}).get(group) or {}).items():
                if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("remaster_editor") == editor:
                    return cls, name, d
    return None


def default_inputs(d, frames_link):
    """Inputs for an API graph node from its object_info: the frames link and widget defaults."""
    out = {}
    for group in ("required", "optional"):
        for name, spec in (d.get("input", {}).get(group) or {}).items():
            t, opts = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
            if t == "REMASTER_FRAMES":
                out[name] = frames_link
            elif isinstance(t, list):
                if t:
                    out[name] = t[0]
            elif t in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                out[name] = opts.get("default", {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[t])
            elif t == "COMBO":
                out[name] = (opts.get("options") or [""])[0]
    return out


# ---------------------------------------------------------------------------------------------
def test_shipped_workflows_load(page, clip):
    files = sorted((ROOT / "workflows").glob("*.json"))
    assert files, "no shipped workflows"
    for f in files:
        page.evaluate("async (g) => { await app.loadGraphData(g, true, true, 'shipped'); }", json.loads(f.read_text()))
        page.wait_for_timeout(300)
        missing = page.evaluate("() => app.graph._nodes.filter(n => !LiteGraph.registered_node_types[n.type]).map(n => n.type)")
        assert missing == [], f"{f.name}: node types unknown to the server: {missing}"
        # our panels are never saved: the workflow serialises back to the same widget values
        saved = {n["id"]: n.get("widgets_values") for n in page.evaluate("() => app.graph.serialize()")["nodes"]}
        for n in json.loads(f.read_text())["nodes"]:
            orig, back = n.get("widgets_values") or [], saved[n["id"]] or []
            # the frontend's own upload button (video_upload) adds a trailing "image" value
            assert back[:len(orig)] == orig and back[len(orig):] in ([], ["image"]), (f.name, n["type"], back)
        loads = page.evaluate("() => app.graph._nodes.filter(n => n.type === 'RemasterLoadVideo').map(n => n.id)")
        for nid in loads:  # point it at our clip: the preview must play it
            page.evaluate("""(id) => { const n = app.graph.getNodeById(id);
                const w = n.widgets.find(w => w.name === 'video'); w.value = %s; w.callback?.(w.value); }""" % json.dumps(clip), nid)
            wait_playing(page, f"app.graph.getNodeById({nid}).remasterPlayer.video")


def test_load_video_preview_follows_settings(page, clip):
    load_api(page, {"1": load_node(clip, start_time=1.0, end_time=2.5)})
    place(page, [(1, 40, 60, 380, 300)])
    st = wait_playing(page, "app.graph.getNodeById(1).remasterPlayer.video")
    page.wait_for_function("() => app.graph.getNodeById(1).remasterInfo", timeout=30000)
    info = page.evaluate("() => app.graph.getNodeById(1).remasterInfo")
    assert info["stream"]["start_time"] == 1.0 and info["stream"]["end_time"] == 2.5
    assert info["stream"]["width"] <= 320
    # the preview loops inside start..end
    page.wait_for_timeout(2500)
    t = page.evaluate("() => app.graph.getNodeById(1).remasterPlayer.video.currentTime")
    assert 0.95 <= t <= 2.6, t
    # the built-in upload preview is replaced by ours: exactly one <video> in the node
    names = page.evaluate("() => app.graph.getNodeById(1).widgets.map(w => w.name)")
    assert "video-preview" not in names and "remaster_preview" in names
    # changing every_nth updates the stream facts
    page.evaluate("""() => { const n = app.graph.getNodeById(1); const w = n.widgets.find(w => w.name === 'every_nth');
        w.value = 3; w.callback?.(3); app.graph.setDirtyCanvas(true, true); }""")
    page.wait_for_function("() => app.graph.getNodeById(1).remasterInfo.stream.every_nth === 3", timeout=30000)
    text = page.evaluate("() => app.graph.getNodeById(1).remasterPlayer.video.parentElement.parentElement.innerText")
    assert "1 in 3 frames" in text and "fps" in text
    shot(page, "web_load_preview.png", [1])
    assert st[3] in (None, 0)


def test_save_preview_wipe_and_progress(page, clip):
    graph = {
        "1": load_node(clip, start_time=1.0, end_time=2.0),
        "2": {"class_type": "RemasterSaveVideo", "inputs": {"frames": ["1", 0], "filename_prefix": f"{SUB}/result",
              "format": "h264_mp4", "crf": 23, "speed": "fast", "audio": "stream", "output_path": ""},
              "_meta": {"title": "Save Video"}},
    }
    load_api(page, graph)
    place(page, [(1, 40, 60, 340, 300), (2, 420, 60, 440, 420)])
    page.evaluate("async () => { await app.queuePrompt(0, 1); }")
    wait_playing(page, "(() => { const v = app.graph.getNodeById(2).remasterPlayer.video; return v.src ? v : null; })()", timeout=240)
    src = page.evaluate("() => app.graph.getNodeById(2).remasterPlayer.video.src")
    assert "type=output" in src and f"subfolder={SUB}" in src
    # progress text from host.Progress arrived over the websocket
    page.wait_for_function("() => app.graph.getNodeById(2).remasterProgress?.closed", timeout=30000)
    prog = page.evaluate("() => app.graph.getNodeById(2).remasterProgress")
    assert prog["done"] == prog["total"] > 0 and "frames done" in prog["text"]
    # before/after wipe against the Load Video source
    page.evaluate("""() => [...app.graph.getNodeById(2).remasterPlayer.video.parentElement.parentElement
        .querySelectorAll('button')].find(b => b.textContent === 'compare').click()""")
    wait_playing(page, "app.graph.getNodeById(2).remasterPlayer.before")
    box = page.evaluate("() => { const r = app.graph.getNodeById(2).remasterPlayer.video.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }")
    page.mouse.move(box[0] + box[2] * 0.5, box[1] + box[3] * 0.5)
    page.wait_for_timeout(300)
    clip_path = page.evaluate("() => app.graph.getNodeById(2).remasterPlayer.before.style.clipPath")
    assert clip_path.startswith("inset(")
    # the source plays offset by Load Video's start_time
    t = page.evaluate("() => { const p = app.graph.getNodeById(2).remasterPlayer; return [p.video.currentTime, p.before.currentTime]; }")
    assert abs((t[1] - t[0]) - 1.0) < 0.35, t
    shot(page, "web_save_wipe.png", [1, 2])


def test_sam2_point_editor(page, clip, server):
    found = editor_node(server, "sam2_prompts")
    if not found:
        pytest.skip("no node with a sam2_prompts editor on this server (the SAM2 node is not installed)")
    cls, widget_name, d = found
    graph = {"1": load_node(clip, start_time=1.0, end_time=3.0),
             "2": {"class_type": cls, "inputs": default_inputs(d, ["1", 0]), "_meta": {"title": "SAM2"}}}
    graph["2"]["inputs"][widget_name] = ""
    load_api(page, graph)
    place(page, [(1, 40, 60, 300, 300), (2, 380, 60, 560, 560)])
    page.wait_for_function("() => app.graph.getNodeById(2).remasterSam2?.image", timeout=60000)
    st = page.evaluate("() => { const s = app.graph.getNodeById(2).remasterSam2; return [s.frames, s.size]; }")
    assert st[0] == 60 and max(st[1]) == 320
    # go to frame 12, then click two points and drag a box with the real mouse
    page.evaluate("() => app.graph.getNodeById(2).remasterSam2Api.showFrame(12)")
    page.wait_for_timeout(800)
    canvas = page.evaluate("""() => { const c = app.graph.getNodeById(2).widgets.find(w => w.name === 'remaster_sam2_editor')
        .element.querySelector('canvas'); const r = c.getBoundingClientRect(); return [r.x, r.y, r.width, r.height, c.width, c.height]; }""")
    x, y, w, h = canvas[:4]
    sw, sh = st[1]
    s = min(w / sw, h / sh)
    ox, oy = x + (w - sw * s) / 2, y + (h - sh * s) / 2

    def at(px, py):  # stream pixel -> screen
        return ox + px * s, oy + py * s

    page.mouse.click(*at(160, 150))
    page.keyboard.down("Shift")
    page.mouse.click(*at(40, 40))
    page.keyboard.up("Shift")
    page.mouse.move(*at(90, 60))
    page.mouse.down()
    page.mouse.move(*at(160, 140), steps=5)
    page.mouse.move(*at(230, 280), steps=5)
    page.mouse.up()
    value = json.loads(page.evaluate("(n) => app.graph.getNodeById(2).widgets.find(w => w.name === n).value", widget_name))
    assert len(value) == 1 and value[0]["frame"] == 12 and value[0]["obj_id"] == 1
    pts = value[0]["points"]
    assert [p[2] for p in pts] == [1, 0]
    assert abs(pts[0][0] - 160) <= 2 and abs(pts[0][1] - 150) <= 2
    assert abs(pts[1][0] - 40) <= 2 and abs(pts[1][1] - 40) <= 2
    (bx,) = value[0]["boxes"]
    assert all(abs(a - b) <= 2 for a, b in zip(bx, [90, 60, 230, 280]))
    # a second object on another frame
    page.evaluate("() => { const a = app.graph.getNodeById(2).remasterSam2Api; a.setObj(2); return a.showFrame(30); }")
    page.wait_for_timeout(800)
    page.mouse.click(*at(200, 100))
    value = json.loads(page.evaluate("(n) => app.graph.getNodeById(2).widgets.find(w => w.name === n).value", widget_name))
    assert [(e["frame"], e["obj_id"], len(e["points"])) for e in value] == [(12, 1, 2), (30, 2, 1)]
    # the value goes to the server as the node's input (what API users send)
    prompt = page.evaluate("async () => (await app.graphToPrompt()).output")
    assert json.loads(prompt["2"]["inputs"][widget_name]) == value
    # undo removes the last point; back on frame 12 for the screenshot
    page.evaluate("() => app.graph.getNodeById(2).remasterSam2Api.undo()")
    value = json.loads(page.evaluate("(n) => app.graph.getNodeById(2).widgets.find(w => w.name === n).value", widget_name))
    assert [(e["frame"], e["obj_id"]) for e in value] == [(12, 1)]
    page.evaluate("() => app.graph.getNodeById(2).remasterSam2Api.showFrame(12)")
    page.wait_for_timeout(800)
    shot(page, "web_sam2_editor.png", [1, 2])
    # the mask button overlays the server's mask, or says why there is none (no SAM2 stage: 501)
    panel = "app.graph.getNodeById(2).widgets.find(w => w.name === 'remaster_sam2_editor').element"
    page.evaluate(f"() => [...{panel}.querySelectorAll('button')].find(b => b.textContent === 'mask').click()")
    page.wait_for_function(f"""() => app.graph.getNodeById(2).remasterSam2.mask ||
        {panel}.querySelector('.rm-info').textContent.startsWith('mask preview:')""", timeout=120000)
    # undoing everything leaves the widget empty (no JSON prompts), as the SAM2 node expects
    page.evaluate("() => { const a = app.graph.getNodeById(2).remasterSam2Api; a.undo(); a.undo(); a.undo(); }")
    assert page.evaluate("(n) => app.graph.getNodeById(2).widgets.find(w => w.name === n).value", widget_name) == ""


def test_keyframe_picker(page, clip, server, tmp_path):
    import cv2

    found = editor_node(server, "keyframe_picks")
    if not found:
        pytest.skip("no node with a keyframe_picks editor on this server (the inpainting select node is not installed)")
    cls, widget_name, d = found
    graph = {"1": load_node(clip), "2": {"class_type": cls, "inputs": default_inputs(d, ["1", 0]), "_meta": {"title": "Pick"}}}
    graph["2"]["inputs"][widget_name] = ""
    load_api(page, graph)
    place(page, [(1, 40, 60, 300, 300), (2, 380, 60, 560, 420)])
    # the gallery as the node sends it after a run ({"ui": {"remaster_candidates": candidates_ui(...)}})
    cands = []
    for k, kf in enumerate((0, 24)):
        entry = {"keyframe": kf, "frames": [kf, kf + 23], "auto": 1, "pick": 1, "manual": False,
                 "scores": [0.4, 0.1, 0.6], "candidates": []}
        for i in range(4):
            img = np.zeros((90, 120, 3), np.uint8)
            img[:] = (70, 70, 70) if i == 3 else (60 + 60 * i, 90 + 40 * k, 200 - 50 * i)
            label = "orig" if i == 3 else f"k{kf} c{i}"
            cv2.putText(img, label, (8, 52), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
            name = f"cand_{kf}_{i}.png"
            cv2.imwrite(str(tmp_path / name), img)
            _upload(tmp_path / name, name, SUB)
            ref = {"filename": name, "subfolder": SUB, "type": "input"}
            if i == 3:
                entry["source"] = ref
            else:
                entry["candidates"].append(ref)
        cands.append(entry)
    page.evaluate("(c) => app.graph.getNodeById(2).onExecuted({remaster_candidates: c})", cands)
    page.wait_for_timeout(800)
    panel = "app.graph.getNodeById(2).widgets.find(w => w.name === 'remaster_keyframe_picker').element"
    loaded = page.evaluate(f"() => [...{panel}.querySelectorAll('img')].map(i => i.complete && i.naturalWidth)")
    assert loaded == [120] * 8
    assert page.evaluate(f"() => [...{panel}.querySelectorAll('img.auto')].map(i => i.dataset.index)") == ["1", "1"]

    def centre(selector):
        return page.evaluate(f"""() => {{ const r = {panel}.querySelector('{selector}').getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2]; }}""")

    # click candidate 2 of the first keyframe with the real mouse, drop the second keyframe's group
    page.mouse.click(*centre('img[data-group="0"][data-index="2"]'))
    page.mouse.click(*centre('button[data-group="1"]'))
    read = "(n) => app.graph.getNodeById(2).widgets.find(w => w.name === n).value"
    assert page.evaluate(read, widget_name) == "2, drop"
    prompt = page.evaluate("async () => (await app.graphToPrompt()).output")
    assert prompt["2"]["inputs"][widget_name] == "2, drop"
    # the gallery survives a save/load of the workflow (kept in the node's properties)
    wf = page.evaluate("() => app.graph.serialize()")
    page.evaluate("async (g) => { await app.loadGraphData(g, true, true, 'reloaded'); }", wf)
    page.wait_for_timeout(800)
    assert page.evaluate(f"() => {panel}.querySelectorAll('img.picked').length") == 1
    assert page.evaluate(read, widget_name) == "2, drop"
    shot(page, "web_keyframe_picker.png", [2])


def test_no_page_errors_from_our_modules(page):
    ours = [e for e in page.page_errors if "remaster" in e.lower()]
    assert ours == []
