"""Every mistake a script author makes is one line on stderr naming what to fix, exit code 2,
and nothing runs (no output file, no ./output folder)."""
import json
import socket
from pathlib import Path

import pytest

from remaster.headless.cli import main
from videogen import colour_pattern, write_video

ROOT = Path(__file__).resolve().parents[2]
PASS = str(ROOT / "workflows" / "api" / "passthrough.json")


@pytest.fixture
def video(tmp_path):
    p = tmp_path / "in.mp4"
    write_video(p, [colour_pattern(48, 64, i) for i in range(6)], fps=12)
    return p


def one_line_error(capsys, argv, code=2):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == code, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    return err


def run_args(video, out, *sets):
    args = ["run", PASS, "--input", str(video), "--output", str(out)]
    for s in sets:
        args += ["--set", s]
    return args


def test_misspelt_node_names_the_node_and_the_choices(capsys, video, tmp_path):
    err = one_line_error(capsys, run_args(video, tmp_path / "o.mp4", "Load Vidoe.end_time=0.5"))
    assert "'Load Vidoe'" in err and "did you mean 'Load Video'" in err and "'Save Video'" in err
    assert not (tmp_path / "o.mp4").exists()


def test_unknown_input_names_the_input_and_the_accepted_ones(capsys, video, tmp_path):
    err = one_line_error(capsys, run_args(video, tmp_path / "o.mp4", "Load Video.end_tim=0.5"))
    assert "'Load Video'" in err and "no input 'end_tim'" in err and "did you mean 'end_time'" in err
    assert "start_time" in err


@pytest.mark.parametrize("setting, words", [
    ("Load Video.end_time=half", ["'end_time'", "must be a number", "'half'"]),
    ("Load Video.every_nth=1.5", ["'every_nth'", "whole number"]),
    ("Load Video.every_nth=0", ["'every_nth'", "between 1 and 1000"]),
    ("Save Video.crf=\"x\"", ["'crf'", "whole number"]),
    ("Load Video.resize=big", ["'resize'", "one of", "'max_side'"]),
    ("Save Video.format=mp5", ["'format'", "one of", "'h264_mp4'"]),
])
def test_wrong_types_ranges_and_choices(capsys, video, tmp_path, setting, words):
    err = one_line_error(capsys, run_args(video, tmp_path / "o.mp4", setting))
    for w in words:
        assert w in err


def test_malformed_set_says_the_form(capsys, video, tmp_path):
    err = one_line_error(capsys, run_args(video, tmp_path / "o.mp4", "crf20"))
    assert "NODE.INPUT=VALUE" in err


def test_missing_workflow_file_lists_the_shipped_ones(capsys, video, tmp_path):
    err = one_line_error(capsys, ["run", str(tmp_path / "nope.json"), "--input", str(video)])
    assert "nope.json" in err and "not found" in err and "enhance" in err


def test_missing_input_video(capsys, tmp_path):
    err = one_line_error(capsys, ["run", PASS, "--input", str(tmp_path / "gone.mp4"), "--output", str(tmp_path / "o.mp4")])
    assert "gone.mp4" in err and "not found" in err


def test_bad_value_in_the_file_itself_is_found_before_running(capsys, video, tmp_path):
    wf = json.loads(Path(PASS).read_text())
    save = next(n for n in wf.values() if n["class_type"] == "RemasterSaveVideo")
    save["inputs"]["crf"] = 99
    p = tmp_path / "wf.json"
    p.write_text(json.dumps(wf))
    err = one_line_error(capsys, ["run", str(p), "--input", str(video), "--output", str(tmp_path / "o.mp4")])
    assert "'crf'" in err and "between 0 and 63" in err


def test_every_missing_model_is_listed_at_once_with_folder_and_url(capsys, video, tmp_path):
    err = one_line_error(capsys, ["run", "enhance", "--input", str(video), "--output", str(tmp_path / "o.mp4")])
    assert "rvm_mobilenetv3.pth" in err and "realesr-general-x4v3.pth" in err
    assert "matting" in err and "upscale_models" in err and "https://" in err


def test_existing_output_needs_overwrite(capsys, video, tmp_path):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"old")
    err = one_line_error(capsys, run_args(video, out))
    assert "already exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"old"
    assert main(run_args(video, out) + ["--overwrite"]) == 0
    assert out.stat().st_size > 100 and not list(tmp_path.glob(".overwrite-*"))


def test_no_subcommand_prints_help_and_exits_2(capsys):
    for argv in ([], ["models"], ["workflows"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "usage:" in err and "the following arguments are required" not in err


def test_submit_to_a_server_that_is_not_running(capsys, video):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    err = one_line_error(capsys, ["submit", PASS, "--input", str(video), "--server", f"http://127.0.0.1:{port}"])
    assert f"127.0.0.1:{port}" in err and "start it" in err


def test_a_run_leaves_no_stray_folders(video, tmp_path, monkeypatch):
    from remaster import host

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for k in ("output_dir", "temp_dir"):
        monkeypatch.setitem(host._state, k, None)
    out = work / "sub" / "o.mp4"
    assert main(run_args(video, out)) == 0
    assert [p.name for p in work.iterdir()] == ["sub"]
    assert [p.name for p in (work / "sub").iterdir()] == ["o.mp4"]
