"""The UI templates as ComfyUI's frontend reads them.

The golden files in tests/data/frontend_widgets were captured from the real frontend
(comfyui-frontend-package, in a real ComfyUI) by ``scripts/real_host.py --capture-golden``: for each
node of the pack, the input spec it was given and the widget values it saved for a fresh node.
These tests check that ``remaster.workflows.widget_slots`` (the rule the UI twins are written with)
reproduces the frontend's order for every captured node, and that every shipped UI twin decodes,
under that rule, to its API twin's values.
"""
import json
from pathlib import Path

import pytest

from remaster import workflows
from remaster.cli import node_mappings

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = sorted((ROOT / "tests" / "data" / "frontend_widgets").glob("*.json"))
UI = sorted((ROOT / "workflows").glob("*.json"))
RECAPTURE = ("recapture with: python scripts/real_host.py --comfyui <ComfyUI> --python <its python> "
             "--capture-golden tests/data/frontend_widgets")


class _Spec:
    """A node class stand-in built from a golden file's captured input spec."""

    def __init__(self, spec):
        self.spec = spec

    def INPUT_TYPES(self):
        out = {"required": {}, "optional": {}}
        for name, section, t, flags in self.spec:
            out[section][name] = ((["a", "b"] if t == "COMBO" else t), dict(flags))
        return out


def _golden(path):
    return json.loads(path.read_text())


def test_golden_files_exist():
    assert len(GOLDEN) >= 20, "no golden widget files; " + RECAPTURE


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_rule_matches_the_frontend(path):
    g = _golden(path)
    slots = workflows.widget_slots(_Spec(g["input_spec"]))
    names = [("upload" if k == "upload" else "control_after_generate" if k == "control" else n) for n, k in slots]
    assert names == g["serialized_widgets"], g["class_type"]
    assert len(g["widgets_values"]) == len(slots)
    for (n, k), v in zip(slots, g["widgets_values"]):
        if k == "upload":
            assert v == workflows.UPLOAD_VALUE
        elif k == "control":  # a fresh node randomises; templates store fixed, one of the same choices
            assert v in ("fixed", "increment", "decrement", "randomize")


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_spec_is_current(path):
    """The captured spec is the node's current one (same widget inputs, order and flags); when a
    node's inputs change, the golden file must be captured again from the real frontend."""
    g = _golden(path)
    cls = node_mappings().get(g["class_type"])
    if cls is None:
        pytest.fail(f"{g['class_type']} no longer exists; delete {path.name}")
    now = [(name, k) for name, k in workflows.widget_slots(cls)]
    then = workflows.widget_slots(_Spec(g["input_spec"]))
    assert now == then, f"{g['class_type']}: inputs changed since the capture; " + RECAPTURE


def test_shipped_ui_twins_equal_api_twins_under_the_frontend_rule():
    mappings = node_mappings()
    golden = {g["class_type"]: g for g in map(_golden, GOLDEN)}
    assert UI
    for ui_path in UI:
        ui = json.loads(ui_path.read_text())
        api = json.loads((ROOT / "workflows" / "api" / ui_path.name).read_text())
        for n in ui["nodes"]:
            g = golden.get(n["type"])
            assert g is not None, f"{ui_path.name}: no golden file for {n['type']}; " + RECAPTURE
            # the saved values line up with the widgets the frontend serialises, one for one
            assert len(n["widgets_values"]) == len(g["serialized_widgets"]), (ui_path.name, n["type"])
            for name, v in zip(g["serialized_widgets"], n["widgets_values"]):
                if name == "upload":
                    assert v == workflows.UPLOAD_VALUE, (ui_path.name, n["id"])
                elif name == "control_after_generate":
                    assert v == workflows.CONTROL_VALUE, (ui_path.name, n["id"])
                else:
                    want = api[str(n["id"])]["inputs"].get(name)
                    if want is not None and not (isinstance(want, list) and len(want) == 2):
                        assert v == want, f"{ui_path.name} node {n['id']} {name}: {v!r} != {want!r}"
        back = workflows.ui_to_api(ui, mappings)
        assert workflows.normalise_api(back, mappings) == workflows.normalise_api(api, mappings), ui_path.name


def test_no_node_covers_another():
    """Boxes (title bar included, plus the room kept for result panels and the progress line)
    do not intersect in any shipped template."""
    for ui_path in UI:
        ui = json.loads(ui_path.read_text())
        boxes = []
        for n in ui["nodes"]:
            x, y = n["pos"]
            w, h = n["size"]
            h += workflows.RESULT_RESERVE.get(n["type"], 0) + 26
            boxes.append((n["id"], x, y - workflows.TITLE_H, x + w, y + h))
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not (a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]), (ui_path.name, a[0], b[0])


def test_every_template_opens_the_shipped_example_clip():
    from nodes.video_io import EXAMPLE_PATH, EXAMPLE_VIDEO

    assert EXAMPLE_PATH.is_file() and EXAMPLE_PATH.stat().st_size < 2_000_000
    for ui_path in UI:
        ui = json.loads(ui_path.read_text())
        for n in ui["nodes"]:
            if n["type"] == "RemasterLoadVideo":
                assert n["widgets_values"][0] == EXAMPLE_VIDEO, ui_path.name


def test_every_template_has_a_thumbnail():
    """The template browser shows workflows/<name>.jpg for a custom node's template."""
    for ui_path in UI:
        thumb = ui_path.with_suffix(".jpg")
        assert thumb.is_file(), f"{thumb.name} missing (scripts/real_host.py writes it)"
        assert thumb.stat().st_size < 150_000


def test_example_clip_lands_in_the_input_folder_once(tmp_path, monkeypatch):
    from remaster import host
    from nodes import video_io

    target = video_io.install_example(tmp_path / "input")
    assert target is not None and target.read_bytes() == video_io.EXAMPLE_PATH.read_bytes()
    target.write_bytes(b"the user's own file of that name")
    assert video_io.install_example(tmp_path / "input") is None  # never overwrites
    assert target.read_bytes() == b"the user's own file of that name"
    # an input folder without it still lists and finds the pack's copy
    monkeypatch.setattr(host, "input_dir", lambda: tmp_path / "empty")
    assert video_io.EXAMPLE_VIDEO in video_io._input_videos()
    assert video_io.video_path(video_io.EXAMPLE_VIDEO) == video_io.EXAMPLE_PATH
    assert video_io.RemasterLoadVideo.VALIDATE_INPUTS(video_io.EXAMPLE_VIDEO) is True


def test_load_video_says_when_max_side_is_not_used(caplog):
    from nodes import video_io

    node = video_io.RemasterLoadVideo()
    with caplog.at_level("WARNING", logger="remaster"):
        out = node.load(str(video_io.EXAMPLE_PATH), resize="none", max_side=128)
    assert out[3] == 256  # not resized
    assert "max_side=128 is not used because resize is 'none'" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="remaster"):
        out = node.load(str(video_io.EXAMPLE_PATH), resize="max_side", max_side=128)
    assert out[3] == 128 and "not used" not in caplog.text
