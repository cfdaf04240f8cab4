"""Shipped workflows: UI twins in step with the API graphs, and every API graph runs end to end
in-process on a real clip (models the graph needs are built by the tests in their real format)."""
import json
from pathlib import Path

import av
import pytest

from conftest import clip
from remaster import workflows
from remaster.headless import runner
from remaster.headless.cli import main, node_mappings, workflow_mappings

ROOT = Path(__file__).resolve().parents[2]
API = sorted((ROOT / "workflows" / "api").glob("*.json"))


def test_ui_and_api_workflows_are_in_step():
    mappings = workflow_mappings()
    assert API, "no shipped workflows"
    for api_path in API:
        ui_path = ROOT / "workflows" / api_path.name
        assert ui_path.exists(), f"{ui_path.name} has no UI twin (python -m remaster workflows build)"
        api = json.loads(api_path.read_text())
        ui = json.loads(ui_path.read_text())
        back = workflows.ui_to_api(ui, mappings)
        assert workflows.normalise_api(back, mappings) == workflows.normalise_api(api, mappings), api_path.name
        # same links in both
        n_links = sum(1 for n in api.values() for v in n["inputs"].values() if isinstance(v, list) and len(v) == 2)
        assert len(ui["links"]) == n_links


def test_runner_names_the_failing_node(tmp_path):
    prompt = json.loads((ROOT / "workflows/api/passthrough.json").read_text())
    prompt["1"]["inputs"]["video"] = str(tmp_path / "nope.mp4")
    with pytest.raises(runner.WorkflowError) as exc:
        runner.run(prompt, node_mappings())
    assert "node 1 (RemasterLoadVideo: Load Video)" in str(exc.value) and "not found" in str(exc.value)
    prompt["2"]["class_type"] = "NoSuchNode"
    with pytest.raises(runner.WorkflowError, match="unknown node type 'NoSuchNode'"):
        runner.run(prompt, node_mappings())


def test_overrides_by_title_id_and_class():
    prompt = json.loads((ROOT / "workflows/api/passthrough.json").read_text())
    p = runner.apply_overrides(prompt, ["Load Video.end_time=2.5", "2.crf=20", "RemasterSaveVideo.format=vp9_webm"],
                               input_video="a.mp4", output_video="out.webm")
    assert p["1"]["inputs"]["end_time"] == 2.5 and p["2"]["inputs"]["crf"] == 20
    assert p["2"]["inputs"]["format"] == "vp9_webm" and p["2"]["inputs"]["output_path"].endswith("out.webm")
    with pytest.raises(runner.WorkflowError, match="NODE.INPUT=VALUE"):
        runner.apply_overrides(prompt, ["crf20"])


def test_cli_runs_passthrough_with_audio(tmp_path, capsys, clips_dir):
    src = clip("talking_head_512_30_audio.mp4")
    out = tmp_path / "th.mp4"
    code = main(["run", str(ROOT / "workflows/api/passthrough.json"), "--input", str(src), "--output", str(out),
                 "--set", "Load Video.end_time=1.0", "--set", "Save Video.speed=ultrafast"])
    assert code == 0
    assert capsys.readouterr().out.strip() == str(out)
    with av.open(str(out)) as c:
        assert c.streams.video[0].frames == 30
        assert c.streams.audio and c.streams.audio[0].channels == 2
