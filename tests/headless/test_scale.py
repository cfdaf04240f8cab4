"""Batch runs and segmented runs on local worker processes and on a real local Ray cluster:
a corrupt input is skipped and reported, a long clip split into segments and joined equals the
single-process run frame for frame, a worker killed mid-segment does not change the output."""
import json
import os
from pathlib import Path

import pytest

from remaster.headless.cli import main
from videogen import assert_same_video, colour_pattern, decode_all, tone, write_video

ROOT = Path(__file__).resolve().parents[2]
PASS = str(ROOT / "workflows" / "api" / "passthrough.json")


def make_clip(path: Path, frames: int, fps: int = 12, size=(64, 48), audio: bool = True) -> Path:
    rate = 16000
    sound = (tone(frames / fps, rate, at=frames / fps / 3), rate, "stereo") if audio else None
    write_video(path, [colour_pattern(size[1], size[0], i) for i in range(frames)], fps=fps, audio=sound)
    return path


@pytest.fixture
def clips(tmp_path):
    d = tmp_path / "clips"
    d.mkdir()
    make_clip(d / "a.mp4", 10)
    make_clip(d / "b.mp4", 14, audio=False)
    (d / "c.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))  # corrupt
    return d


def single(tmp_path, src, name="single.mp4"):
    out = tmp_path / name
    assert main(["run", PASS, "--input", str(src), "--output", str(out)]) == 0
    return out


def check_batch(tmp_path, clips, *executor):
    out = tmp_path / "out"
    code = main(["run", PASS, "--input", str(clips / "a.mp4"), str(clips / "*.mp4"), str(clips),
                 "--output-dir", str(out), *executor])
    assert code == 1  # one input failed: reported, not fatal
    records = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    done = {Path(r["input"]).name: r for r in records if r["status"] == "done"}
    failed = [r for r in records if r["status"] == "error"]
    assert set(done) == {"a.mp4", "b.mp4"} and done["b.mp4"]["frames"] == 14
    assert [Path(r["input"]).name for r in failed] == ["c.mp4"] and failed[0]["error"]
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mp4", "manifest.jsonl"]
    mtime = (out / "a.mp4").stat().st_mtime_ns
    assert main(["run", PASS, "--input", str(clips), "--output-dir", str(out), *executor]) == 1
    assert (out / "a.mp4").stat().st_mtime_ns == mtime  # resumed: complete outputs are not redone


def check_segments(tmp_path, *executor, kill: str = ""):
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = make_clip(tmp_path / "long.mp4", 40)
    ref = single(tmp_path, src)
    out = tmp_path / "joined.mp4"
    env = {}
    if kill:
        env["REMASTER_TEST_KILL_ONCE"] = f"{kill}:{tmp_path / 'killed'}"
    os.environ.update(env)
    try:
        assert main(["run", PASS, "--input", str(src), "--output", str(out), "--segment-seconds", "1", *executor]) == 0
    finally:
        for k in env:
            os.environ.pop(k, None)
    if kill:
        assert (tmp_path / "killed").exists()
    a, b = decode_all(ref), decode_all(out)
    assert a.shape == b.shape and a.shape[0] == 40
    assert_same_video(a, b)
    import av

    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 1
    assert not list(tmp_path.glob(".joined.mp4.segments"))


def test_batch_with_two_local_workers(tmp_path, clips):
    check_batch(tmp_path, clips, "--workers", "2")


def test_batch_in_process(tmp_path, clips):
    check_batch(tmp_path, clips)


def test_segments_on_two_workers_equal_the_single_run_even_when_a_worker_is_killed(tmp_path):
    check_segments(tmp_path, "--workers", "2", kill="segment 1 (frames 10-20)")


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install -r requirements-scale.txt)")
    from ray.cluster_utils import Cluster

    try:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"a local Ray cluster could not start: {exc}")
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_ray_batch_segments_and_a_killed_worker(tmp_path, clips, ray_cluster):
    import ray

    assert len([n for n in ray.nodes() if n["Alive"]]) == 3
    check_batch(tmp_path / "b", clips, "--ray", ray_cluster.address)
    check_segments(tmp_path / "s", "--ray", ray_cluster.address, kill="segment 2 (frames 20-30)")


def test_ctrl_c_before_the_join_then_a_rerun_renders_only_what_is_missing(tmp_path, monkeypatch, capsys):
    from remaster.headless import segments

    src = make_clip(tmp_path / "long.mp4", 30)
    out = tmp_path / "joined.mp4"
    argv = ["run", PASS, "--input", str(src), "--output", str(out), "--segment-seconds", "1", "--workers", "1"]
    real_join = segments.join

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(segments, "join", interrupted)
    assert main(argv) == 130
    assert not out.exists()
    work = tmp_path / ".joined.mp4.segments"
    done = sorted(work.glob("seg_*.done"))
    assert len(done) == 3
    done[1].unlink()  # as if Ctrl-C had come while segment 1 was rendering
    monkeypatch.setattr(segments, "join", real_join)
    capsys.readouterr()
    assert main(argv) == 0
    assert "3 segments of ~1s (1 to render" in capsys.readouterr().err
    assert out.exists() and not work.exists()
    assert decode_all(out).shape[0] == 30


def test_segment_plan_moves_boundaries_to_nearby_scene_cuts():
    from fractions import Fraction

    from remaster.headless.segments import plan

    assert plan(100, Fraction(10), 3.0) == [(0, 25), (25, 50), (50, 75), (75, 100)]
    assert plan(100, Fraction(10), 3.0, cuts=[28, 70]) == [(0, 28), (28, 50), (50, 70), (70, 100)]
    assert plan(5, Fraction(10), 3.0) == [(0, 5)]
