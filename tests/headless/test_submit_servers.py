"""`submit` and `run --servers` against a stand-in of ComfyUI's API (tests/headless/standin_server.py)
that sends execution_success before /history holds the outputs, as ComfyUI 0.3.64 can; and
against two real ComfyUI instances where a ComfyUI checkout is configured."""
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from remaster.headless.cli import main
from standin_server import StandIn
from test_scale import PASS, make_clip, single
from videogen import assert_same_video, decode_all


@pytest.mark.parametrize("send_executed", [True, False])
def test_submit_prints_the_output_even_when_history_comes_late(tmp_path, capsys, send_executed):
    src = make_clip(tmp_path / "in.mp4", 6, audio=False)
    server = StandIn(tmp_path / "srv", history_delay=1.0, send_executed=send_executed).start()
    (tmp_path / "srv").mkdir(exist_ok=True)
    assert main(["submit", PASS, "--input", str(src), "--server", server.url]) == 0
    out = capsys.readouterr().out.split()
    assert len(out) == 1 and (tmp_path / "srv" / out[0]).is_file()


def test_segments_on_two_servers_one_failing_equal_the_single_run(tmp_path):
    src = make_clip(tmp_path / "long.mp4", 30)
    ref = single(tmp_path, src)
    (tmp_path / "srv").mkdir()
    good = StandIn(tmp_path / "srv").start()
    bad = StandIn(tmp_path / "srv", broken=True).start()
    out = tmp_path / "joined.mp4"
    assert main(["run", PASS, "--input", str(src), "--output", str(out), "--segment-seconds", "1",
                 "--servers", f"{bad.url},{good.url}"]) == 0
    assert bad.prompts == 1  # the failing server got one segment, which then ran on the other
    assert_same_video(decode_all(ref), decode_all(out))


# a real ComfyUI checkout and its venv's python (see docs/real_host.md); unset: the test skips
COMFY = Path(os.environ.get("REMASTER_COMFYUI", "/nonexistent"))
COMFY_PY = Path(os.environ.get("REMASTER_COMFYUI_PYTHON", "/nonexistent"))


@pytest.fixture(scope="module")
def two_comfyui(tmp_path_factory):
    if not (COMFY / "main.py").is_file() or not COMFY_PY.is_file():
        pytest.skip("no real ComfyUI given: set REMASTER_COMFYUI (a ComfyUI checkout) and REMASTER_COMFYUI_PYTHON (its python)")
    from standin_server import StandIn  # noqa: F401  (same folder)
    import socket

    root = Path(__file__).resolve().parents[2]
    procs, urls = [], []
    for k in range(2):
        base = tmp_path_factory.mktemp(f"comfy{k}")
        (base / "custom_nodes").mkdir()
        (base / "custom_nodes" / "ComfyUI-Remaster").symlink_to(root)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = open(base / "log.txt", "w")
        procs.append(subprocess.Popen([str(COMFY_PY), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                                       "--base-directory", str(base), "--disable-auto-launch"], cwd=COMFY,
                                      stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}))
        urls.append(f"http://127.0.0.1:{port}")
    deadline = time.time() + 300
    for url, p in zip(urls, procs):
        while True:
            try:
                urllib.request.urlopen(url + "/object_info/RemasterLoadVideo", timeout=5).read()
                break
            except Exception:
                if p.poll() is not None or time.time() > deadline:
                    for q in procs:
                        q.kill()
                    pytest.skip("ComfyUI did not start (see its log in the test's temp folder)")
                time.sleep(2)
    yield urls
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


def test_segments_on_two_real_comfyui_servers(tmp_path, two_comfyui):
    src = make_clip(tmp_path / "long.mp4", 30)
    ref = single(tmp_path, src)
    out = tmp_path / "joined.mp4"
    assert main(["run", PASS, "--input", str(src), "--output", str(out), "--segment-seconds", "1",
                 "--servers", ",".join(two_comfyui)]) == 0
    assert_same_video(decode_all(ref), decode_all(out))
