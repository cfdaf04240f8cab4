"""The web UI's server routes, without ComfyUI: plain functions and an aiohttp app on real files in
the test's isolated input/output/temp folders."""
import asyncio
import json
import sys
import types

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from remaster import host, routes
from videogen import write_video

W, H, FPS, N = 320, 240, 24, 48


def make_clip(path, n=N, fps=FPS, audio=True):
    """Frame i is a flat grey of level 5*i, so a decoded frame tells which source frame it is."""
    frames = [np.full((H, W, 3), 5 * i, np.uint8) for i in range(n)]
    sound = None
    if audio:
        t = np.arange(int(48000 * n / fps)) / 48000
        sound = ((0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], 48000, "mono")
    return write_video(path, frames, fps=fps, options={"crf": "1", "g": "12"}, audio=sound)


@pytest.fixture
def clip_name():
    make_clip(host.input_dir() / "clip.mp4")
    return "clip.mp4"


def status_of(fn, q):
    try:
        fn(q)
    except routes.RouteError as exc:
        return exc.status
    return 200


def decode_jpeg(data):
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


# ---------------------------------------------------------------------------------------------
# plain functions
# ---------------------------------------------------------------------------------------------
def test_video_info_reports_file_and_stream(clip_name):
    info = routes.video_info({"filename": clip_name})
    s = info["source"]
    assert (s["width"], s["height"], s["frame_count"]) == (W, H, N)
    assert s["fps"] == pytest.approx(FPS)
    assert s["duration"] == pytest.approx(N / FPS, abs=1e-3)
    assert s["audio"] == {"codec": "aac", "sample_rate": 48000, "channels": 1}
    assert info["stream"]["frame_count"] == N

    info = routes.video_info({"filename": clip_name, "start_time": "0.5", "end_time": "1.5", "every_nth": "2",
                              "resize": "max_side", "max_side": "160"})
    t = info["stream"]
    assert (t["width"], t["height"]) == (160, 120)
    assert t["fps"] == pytest.approx(FPS / 2)
    assert t["frame_count"] == 12  # 24 source frames in 0.5..1.5 s, every 2nd
    assert (t["start_time"], t["end_time"]) == (0.5, 1.5)
    # settings of inactive resize modes are ignored, like the node does
    assert routes.video_info({"filename": clip_name, "max_side": "160"})["stream"]["width"] == W


def test_video_info_without_audio():
    make_clip(host.input_dir() / "silent.mp4", n=12, audio=False)
    assert routes.video_info({"filename": "silent.mp4"})["source"]["audio"] is None


def test_frame_is_the_stream_frame(clip_name):
    # stream frame k of (start 0.5 s, every 2nd) is source frame 12 + 2k: grey level 5 * (12 + 2k)
    for k in (0, 3, 11):
        data, headers, ctype = routes.frame_jpeg({"filename": clip_name, "start_time": "0.5", "every_nth": "2",
                                                  "index": str(k)})
        assert ctype == "image/jpeg"
        img = decode_jpeg(data)
        assert img.shape[:2] == (H, W)
        assert abs(float(img.mean()) - 5 * (12 + 2 * k)) < 2.5
        assert headers["X-Remaster-Width"] == str(W) and headers["X-Remaster-Height"] == str(H)
        assert headers["X-Remaster-Frames"] == str((N - 12 + 1) // 2)


def test_frame_preview_side_and_stream_size(clip_name):
    data, headers, _ = routes.frame_jpeg({"filename": clip_name, "index": "5", "preview_side": "100",
                                          "resize": "exact", "width": "200", "height": "100"})
    img = decode_jpeg(data)
    assert max(img.shape[:2]) == 100
    # the point-coordinate space is the stream's size, not the preview's
    assert (headers["X-Remaster-Width"], headers["X-Remaster-Height"]) == ("200", "100")


def test_files_in_output_and_temp_and_subfolders(clip_name):
    sub = host.output_dir() / "remaster"
    sub.mkdir()
    make_clip(sub / "out.mp4", n=6, audio=False)
    assert routes.video_info({"filename": "out.mp4", "subfolder": "remaster", "type": "output"})["source"]["frame_count"] == 6
    assert routes.video_info({"filename": "remaster/out.mp4 [output]"})["source"]["frame_count"] == 6
    make_clip(host.temp_dir() / "t.mp4", n=4, audio=False)
    assert routes.video_info({"filename": "t.mp4", "type": "temp"})["source"]["frame_count"] == 4


@pytest.mark.parametrize("q, status", [
    ({"filename": "../clip.mp4"}, 403),
    ({"filename": "clip.mp4", "subfolder": ".."}, 403),
    ({"filename": "clip.mp4", "subfolder": "a/../../x"}, 403),
    ({"filename": "/etc/passwd"}, 403),
    ({"filename": "clip.mp4", "subfolder": "/etc"}, 403),
    ({"filename": "..\\..\\clip.mp4"}, 403),
    ({"filename": "C:\\Windows\\win.ini"}, 403),
    ({"filename": "clip.mp4", "type": "models"}, 400),
    ({"filename": "clip.mp4", "type": "../input"}, 400),
    ({"filename": ""}, 400),
    ({}, 400),
    ({"filename": "a\x00b.mp4"}, 400),
    ({"filename": "x" * 5000}, 400),
    ({"filename": "missing.mp4"}, 404),
    ({"filename": "clip.mp4", "type": "output"}, 404),
    ({"filename": "clip.mp4", "every_nth": "0"}, 400),
    ({"filename": "clip.mp4", "every_nth": "1.5"}, 400),
    ({"filename": "clip.mp4", "every_nth": "99999999999"}, 400),
    ({"filename": "clip.mp4", "start_time": "nan"}, 400),
    ({"filename": "clip.mp4", "start_time": "inf"}, 400),
    ({"filename": "clip.mp4", "start_time": "-1"}, 400),
    ({"filename": "clip.mp4", "start_time": "abc"}, 400),
    ({"filename": "clip.mp4", "max_side": "1e12", "resize": "max_side"}, 400),
    ({"filename": "clip.mp4", "resize": "huge"}, 400),
    ({"filename": "clip.mp4", "start_time": "100"}, 422),  # past the end of the video
])
def test_video_info_refuses(clip_name, q, status):
    assert status_of(routes.video_info, q) == status


@pytest.mark.parametrize("q, status", [
    ({"index": "48"}, 416),
    ({"index": "100000000"}, 416),
    ({"index": "1e12"}, 400),
    ({"index": "-1"}, 400),
    ({"index": "2.5"}, 400),
    ({"preview_side": "100000"}, 400),
    ({"preview_side": "0"}, 400),
])
def test_frame_refuses(clip_name, q, status):
    assert status_of(routes.frame_jpeg, {"filename": clip_name, **q}) == status


def test_symlink_out_of_the_folder_is_refused(tmp_path, clip_name):
    outside = tmp_path / "secret.mp4"
    make_clip(outside, n=4, audio=False)
    (host.input_dir() / "link.mp4").symlink_to(outside)
    assert status_of(routes.video_info, {"filename": "link.mp4"}) == 403


def test_not_a_video_is_422():
    (host.input_dir() / "notes.mp4").write_text("not a video")
    (host.input_dir() / "empty.mp4").write_bytes(b"")
    assert status_of(routes.video_info, {"filename": "notes.mp4"}) == 422
    assert status_of(routes.video_info, {"filename": "empty.mp4"}) == 422
    assert status_of(routes.frame_jpeg, {"filename": "notes.mp4"}) == 422


def test_sam2_preview_checks_before_needing_the_model(clip_name):
    body = {"filename": clip_name, "index": 2, "prompts": '[{"frame": 2, "obj_id": 1, "points": [[5, 5, 1]]}]'}
    assert status_of(routes.sam2_preview, {**body, "prompts": "[]"}) == 400  # nothing on that frame
    assert status_of(routes.sam2_preview, {**body, "index": 3}) == 400
    assert status_of(routes.sam2_preview, {**body, "prompts": "oops"}) == 400
    assert status_of(routes.sam2_preview, {**body, "prompts": '{"frame": 2}'}) == 400
    assert status_of(routes.sam2_preview, {**body, "filename": "../x.mp4"}) == 403
    assert status_of(routes.sam2_preview, {**body, "index": "1e12"}) == 400
    try:
        from remaster.stages import masks
        has_stage = hasattr(masks, "preview_mask")
    except ImportError:
        has_stage = False
    if not has_stage:
        assert status_of(routes.sam2_preview, body) == 501
    else:  # the stage's own errors (here: no such model) are 4xx too
        assert 400 <= status_of(routes.sam2_preview, {**body, "model": "no-such-model"}) < 500


# ---------------------------------------------------------------------------------------------
# over HTTP (a plain aiohttp app with the same handlers ComfyUI gets)
# ---------------------------------------------------------------------------------------------
def http(requests):
    """Run (method, path, kwargs) requests against the app; returns (status, content type, body)."""
    async def go():
        async with TestClient(TestServer(routes.make_app())) as client:
            out = []
            for method, path, kwargs in requests:
                r = await client.request(method, path, **kwargs)
                out.append((r.status, r.content_type, await r.read()))
            return out

    return asyncio.run(go())


def test_http_answers(clip_name):
    res = http([
        ("GET", "/remaster/video_info", {"params": {"filename": clip_name, "every_nth": "3"}}),
        ("GET", "/remaster/frame", {"params": {"filename": clip_name, "index": "4"}}),
        ("GET", "/remaster/video_info", {"params": {"filename": "../../etc/passwd"}}),
        ("GET", "/remaster/video_info", {"params": {"filename": "nope.mp4"}}),
        ("GET", "/remaster/frame", {"params": {"filename": clip_name, "index": "99999999999999"}}),
        ("POST", "/remaster/sam2_preview", {"data": b"not json"}),
        ("POST", "/remaster/sam2_preview", {"data": b"[1, 2]"}),
        ("POST", "/remaster/sam2_preview", {"data": b"{" + b" " * (routes.MAX_BODY_BYTES + 10) + b"}"}),
        ("POST", "/remaster/sam2_preview", {"json": {"filename": "/etc/passwd", "prompts": "[]"}}),
    ])
    status, ctype, body = res[0]
    assert status == 200 and ctype == "application/json"
    assert json.loads(body)["stream"]["frame_count"] == N // 3
    status, ctype, body = res[1]
    assert status == 200 and ctype == "image/jpeg"
    assert abs(float(decode_jpeg(body).mean()) - 20) < 2.5
    assert [r[0] for r in res[2:]] == [403, 404, 400, 400, 400, 413, 403]
    for status, ctype, body in res[2:]:
        assert ctype == "application/json"
        msg = json.loads(body)["error"]
        assert msg and "Traceback" not in msg


# ---------------------------------------------------------------------------------------------
# host: route registration and progress messages (ComfyUI's server module stood in by a fake)
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def fake_server(monkeypatch):
    sent = []
    instance = types.SimpleNamespace(routes=web.RouteTableDef(), last_node_id="7",
                                     send_sync=lambda event, data, sid=None: sent.append((event, data)))
    mod = types.ModuleType("server")
    mod.PromptServer = types.SimpleNamespace(instance=instance)
    monkeypatch.setitem(sys.modules, "server", mod)
    monkeypatch.setattr(host.comfy, "IN_COMFYUI", True)
    return instance, sent


def test_host_registers_routes_only_inside_comfyui(fake_server, monkeypatch):
    instance, _ = fake_server
    assert host.register_routes(routes.make_routes())
    assert {(r.method, r.path) for r in instance.routes} == {
        ("GET", "/remaster/video_info"), ("GET", "/remaster/frame"), ("POST", "/remaster/sam2_preview")}
    monkeypatch.setattr(host.comfy, "IN_COMFYUI", False)
    assert host.register_routes(routes.make_routes()) is False


def test_progress_reaches_the_ui(fake_server):
    _, sent = fake_server
    listener = host.ui_progress_listener(min_interval=3600)
    host.add_progress_listener(listener)
    try:
        p = host.Progress(10, "Save Video", node_id="4")
        for _ in range(10):
            p.update(1)
        p.close()
        q = host.Progress(3, "Upscale")  # no node given: the executing node (last_node_id) is used
        q.update(3)
    finally:
        host.remove_progress_listener(listener)
    msgs = [d for e, d in sent if e == host.PROGRESS_EVENT]
    # throttled: the opening (total known before the first frame), the last one (done == total), the close
    assert [(m["node"], m["done"], m["closed"]) for m in msgs] == [
        ("4", 0, False), ("4", 10, False), ("4", 10, True), ("7", 0, False), ("7", 3, False)]
    assert msgs[1]["total"] == 10 and msgs[1]["fps"] > 0 and msgs[1]["eta"] == 0
    json.dumps(msgs)  # websocket payloads must be JSON
