"""Interrupt stops within about one frame's work, never a chunk's: in decoding (the prefetch
thread and the YUV → RGB conversion), in the scene-cut analysis and in per-shot statistics, and
a stopped Save leaves no output, temp or spill file behind."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from remaster import host
from remaster.analysis import scenes
from remaster.media import decode, encode, frames as media_frames, yuv
from remaster.stages import colour as C
from remaster.stages import deflicker as D
from remaster.stream import Chunk, Temporal, from_tensor
from tests.videogen import write_video

N = 96


@pytest.fixture
def clip(tmp_path):
    """96 frames 128x72, a cut at 48 (two different scenes)."""
    g = np.random.default_rng(3)
    a, b = g.integers(0, 120, (72, 128, 3)), g.integers(120, 255, (72, 128, 3))
    frames = [((a if i < 48 else b) + (i % 5)).clip(0, 255).astype(np.uint8) for i in range(N)]
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=24)
    return path


@pytest.fixture
def dirs(tmp_path):
    out, temp = tmp_path / "out", tmp_path / "temp"
    out.mkdir()
    temp.mkdir()
    host.set_dirs(output_dir=str(out), temp_dir=str(temp))
    scenes._cache.clear()
    yield out, temp
    host.clear_interrupt()
    scenes._cache.clear()


class Tally:
    """Counts the frames each piece of work handled, and how many of them after the stop flag."""

    def __init__(self, stop_at: int) -> None:
        self.stop_at, self.flag = stop_at, False
        self.n: dict = {}
        self.after: dict = {}
        self.lock = threading.Lock()

    def hit(self, key: str, k: int = 1) -> None:
        with self.lock:
            if self.flag:
                self.after[key] = self.after.get(key, 0) + k
            self.n[key] = self.n.get(key, 0) + k
            if key == "convert" and self.n[key] == self.stop_at and not self.flag:
                self.flag = True
                host.request_interrupt()  # the user's stop, mid-chunk


@pytest.fixture
def tally(monkeypatch):
    t = Tally(stop_at=30)  # inside the second 24-frame chunk
    one = media_frames._Converter._one

    def counted_one(self, fr, out):
        one(self, fr, out)
        t.hit("convert")

    push = scenes.CutDetector.push

    def counted_push(self, x):
        t.hit("cuts", x.shape[0])
        return push(self, x)

    monkeypatch.setattr(media_frames._Converter, "_one", counted_one)
    monkeypatch.setattr(scenes.CutDetector, "push", counted_push)
    return t


def no_decoder_threads() -> bool:
    return not any(th.name == "remaster-decode" and th.is_alive() for th in threading.enumerate())


def test_scene_cut_analysis_stops_within_a_frame(clip, dirs, tally, monkeypatch):
    monkeypatch.setattr(scenes, "ANALYSIS_CHUNK", 24)  # a chunk far longer than a frame
    stream = decode.open_video(clip)
    with pytest.raises(host.Interrupted):
        scenes.detect_scene_cuts(stream)
    in_flight = yuv.workers()._max_workers - 1  # frames other conversion threads had begun
    assert tally.after.get("convert", 0) <= in_flight
    assert tally.after.get("cuts", 0) == 0
    assert tally.n["convert"] < 48, "the chunk being converted must not be finished"
    assert no_decoder_threads()


def test_save_stopped_during_auto_colour_analysis_leaves_no_file(clip, dirs, tally):
    out, temp = dirs
    stream = decode.open_video(clip, chunk_size=24)  # Auto Colour measures on the decoder first
    with pytest.raises(host.Interrupted):
        encode.save_video(C.auto_colour(stream), "stopped", speed="ultrafast", audio="none")
    assert tally.after.get("convert", 0) <= yuv.workers()._max_workers - 1
    assert tally.after.get("cuts", 0) == 0  # the cuts are found in that same read, frame by frame
    assert not [p for p in out.rglob("*") if p.is_file()], "no output and no temp file"
    assert not list((temp / "remaster_spill").glob("*/*")) if (temp / "remaster_spill").exists() else True
    assert no_decoder_threads()


def test_save_stopped_during_look_ahead_removes_spill(dirs, monkeypatch):
    out, temp = dirs
    monkeypatch.setenv("REMASTER_LOOKAHEAD_MB", "0.01")  # held frames go to temp files
    x = torch.rand(80, 24, 32, 3)
    seen = []

    def costly(up, size):  # a stage nothing can re-read cheaply: Deflicker holds frames after it
        for c in up.chunks(size):
            for i in range(len(c)):
                seen.append(c.start + i)
                if c.start + i == 50:
                    host.request_interrupt()
            yield c

    stream = from_tensor(x, 24).derive("costly", {}, costly, temporal=Temporal())
    with pytest.raises(host.Interrupted):
        encode.save_video(D.deflicker(stream), "stopped", speed="ultrafast", audio="none")
    assert max(seen) < 80
    assert not [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in (temp / "remaster_spill").rglob("*") if p.is_file()], "spill files removed"


def test_decoder_stops_between_frames(clip, monkeypatch):
    """The decode loop checks its stop event per frame: a 64-frame chunk is abandoned part-way."""
    p = decode.probe(str(clip))
    conv = media_frames._Converter(p, (128, 72), 0, False)
    stop = threading.Event()
    decoded = []
    real_open = decode.open_container

    class Counting:
        def __init__(self, path):
            self._c = real_open(path)

        def decode(self, *a):
            for fr in self._c.decode(*a):
                decoded.append(fr)
                if len(decoded) == 10:
                    stop.set()
                yield fr

        def __getattr__(self, name):
            return getattr(self._c, name)

    monkeypatch.setattr(decode, "open_container", Counting)
    got = list(decode._decode_chunks(p, list(range(N)), conv, False, 64, stop))
    assert got == [] and len(decoded) == 10


def test_prefetch_thread_ends_when_the_consumer_stops():
    started = threading.Event()

    def make(stop):
        def gen():
            yield Chunk(0, torch.zeros(1, 2, 2, 3))
            started.set()
            while not stop.is_set():  # "decoding" until told to stop
                stop.wait(0.001)

        return gen()

    it = decode._prefetched(make)
    assert len(next(it)) == 1
    started.wait(5)
    it.close()
    assert no_decoder_threads()


def test_comfy_stop_raised_by_a_stage_bar_is_not_swallowed(monkeypatch):
    """ComfyUI's progress hook raises its interrupt exception (and clears its flag): a lazy
    stage's bar must pass it on, or the stop would be lost."""
    from remaster.host import progress

    class Stop(Exception):
        pass

    class Bar:
        def __init__(self, total, node_id=None):
            pass

        def update_absolute(self, value, total=None):
            raise Stop()

    class MM:
        InterruptProcessingException = Stop

        @staticmethod
        def throw_exception_if_processing_interrupted():
            pass

    class Utils:
        ProgressBar = Bar

    monkeypatch.setattr(progress, "_mm", MM)
    monkeypatch.setattr(progress, "_comfy_utils", Utils)
    bar = progress.StageBar("7", 10)
    with pytest.raises(Stop):
        bar.update(1)


def test_waiting_for_the_decoder_checks_interrupt():
    """While the decoder thread is still on a long chunk, the consumer waiting for it stops."""

    def make(stop):
        def gen():
            yield Chunk(0, torch.zeros(1, 2, 2, 3))
            stop.wait(20)  # a chunk that takes long to decode
            yield Chunk(1, torch.zeros(1, 2, 2, 3))

        return gen()

    it = decode._prefetched(make)
    next(it)
    timer = threading.Timer(0.1, host.request_interrupt)
    timer.start()
    try:
        with pytest.raises(host.Interrupted):
            next(it)
    finally:
        timer.join()
        host.clear_interrupt()
    assert no_decoder_threads()
