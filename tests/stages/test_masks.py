"""SAM2 video masks with a random-weight tiny SAM2.1 saved as a Hugging Face folder (the format
transformers loads offline), loaded through the real loader and run on the stream."""
from __future__ import annotations

import json

import pytest
import torch

from remaster.models.cache import MODELS
from remaster import host
from remaster.models import registry
from remaster.stages import masks
from remaster.stream import from_tensor

S = 128  # model input size of the tiny test model (the real ones use 1024)


def _tiny_sam2(name="sam2-tiny-random"):
    from transformers import Sam2VideoConfig, Sam2VideoModel

    cfg = Sam2VideoConfig(
        vision_config=dict(
            model_type="sam2_vision_model",
            backbone_config=dict(
                model_type="sam2_hiera_det_model", hidden_size=16, num_attention_heads=1,
                blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[16, 32, 64, 128],
                num_attention_heads_per_stage=[1, 1, 1, 1], global_attention_blocks=[3],
                window_size_per_stage=[8, 4, 4, 4], window_positional_embedding_background_size=[4, 4],
                image_size=[S, S],
            ),
            backbone_channel_list=[128, 64, 32, 16],
            backbone_feature_sizes=[[S // 4, S // 4], [S // 8, S // 8], [S // 16, S // 16]],
            fpn_hidden_size=128,
        ),
        prompt_encoder_config=dict(hidden_size=128, image_size=S, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=128, mlp_dim=32, num_attention_heads=2, iou_head_hidden_dim=32),
        image_size=S, memory_attention_hidden_size=128, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=32, memory_attention_rope_feat_sizes=[S // 16, S // 16],
        memory_encoder_hidden_size=128, memory_encoder_output_channels=64, mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=64,
        num_maskmem=3, max_object_pointers_in_encoder=4,  # a short memory so a short clip shows the bound
    )
    torch.manual_seed(0)
    model = Sam2VideoModel(cfg).eval()
    with torch.no_grad():  # random weights would often say "no object"; make it always present
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(10.0)
    folder = host.model_dirs("sam2")[0] / name
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture
def tiny(monkeypatch):
    MODELS.clear()
    return _tiny_sam2()


def _frames(n=8, h=48, w=80):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, h, w, 3, generator=g)


def test_sam2_random_weights_on_stream_soft_masks(tiny):
    frames = _frames(6)
    prompts = json.dumps([
        {"frame": 0, "points": [[40, 24, 1], [5, 5, 0]], "obj_id": 1},
        {"frame": 2, "boxes": [[10, 10, 30, 40]], "obj_id": 2},
    ])
    # the dropdown gives a file inside the folder
    out = masks.sam2_mask(from_tensor(frames).rechunked(3), "sam2-tiny-random/model.safetensors", prompts)
    assert out.info.has_mask
    got = out.read()
    assert got.mask.shape == (6, 48, 80)
    assert torch.equal(got.frames, frames)
    m = got.mask
    assert float(m.min()) >= 0 and float(m.max()) <= 1
    soft = ((m > 0.01) & (m < 0.99)).float().mean()
    assert float(soft) > 0.01  # probabilities, not a hard threshold
    # the same result whatever the chunking (state carried across chunks)
    again = masks.sam2_mask(from_tensor(frames).rechunked(6), str(tiny), prompts).read().mask
    assert float((again - m).abs().max()) < 1e-4


def test_frames_before_the_first_prompt_are_empty(tiny):
    frames = _frames(6)
    p = {"frame": 3, "points": [[20, 20, 1]]}
    out = masks.sam2_mask(from_tensor(frames), str(tiny), [p]).read().mask
    assert float(out[:3].abs().max()) == 0.0
    # from the prompted frame on, tracking is what it would be on a clip starting there
    fresh = masks.sam2_mask(from_tensor(frames[3:]), str(tiny), [dict(p, frame=0)]).read().mask
    assert float((out[3:] - fresh).abs().max()) < 1e-4


def test_memory_bank_stays_bounded_on_a_long_stream(tiny):
    device = torch.device("cpu")
    model, processor = masks.load_sam2(str(tiny), device, torch.float32)
    prompts = masks.parse_prompts([{"frame": 0, "points": [[10, 10, 1]]}], 32, 32, 100)
    tracker = masks.Sam2Tracker(model, processor, prompts, 32, 32, device, torch.float32)
    frame = torch.rand(3, 32, 32)
    pixels = processor(images=[frame], return_tensors="pt", do_rescale=False).pixel_values[0]
    sizes = []
    for i in range(14):
        tracker.step(i, pixels)
        sizes.append(tracker.memory_frames())
    assert tracker.window == 5
    assert max(sizes) <= tracker.window + 2  # the prompted frame + the recent window
    assert sizes[-1] == sizes[-5]  # flat, not growing with length
    assert len(tracker.session.processed_frames or {}) == 0
    assert len(tracker.session.cache._vision_features) <= 1


def test_reseed_at_cut_starts_fresh_with_the_latest_prompt(tiny):
    frames = _frames(7)
    prompt = [{"frame": 0, "points": [[30, 20, 1]], "obj_id": 5}]
    s = from_tensor(frames).with_info(scene_cuts=(4,))
    with_reseed = masks.sam2_mask(s, str(tiny), prompt, reseed_at_cuts=True).read().mask
    without = masks.sam2_mask(s, str(tiny), prompt, reseed_at_cuts=False).read().mask
    fresh = masks.sam2_mask(from_tensor(frames[4:]), str(tiny), prompt).read().mask
    assert float((with_reseed[4] - fresh[0]).abs().max()) < 1e-4
    assert float((with_reseed[:4] - without[:4]).abs().max()) < 1e-4
    assert float((without[4] - fresh[0]).abs().max()) > 1e-4


def test_combine_with_an_existing_mask(tiny):
    frames = _frames(3)
    base = torch.zeros(3, 48, 80)
    base[:, :, :10] = 1.0
    s = from_tensor(frames, mask=base)
    p = [{"frame": 0, "points": [[40, 24, 1]]}]
    only = masks.sam2_mask(s, str(tiny), p).read().mask
    union = masks.sam2_mask(s, str(tiny), p, combine="union").read().mask
    assert torch.allclose(union, torch.maximum(only, base))


@pytest.mark.parametrize("bad,msg", [
    ("", "no SAM2 prompts"),
    ("[{frame: 0}]", "not valid JSON"),
    ('[{"frame": 0}]', "neither points nor boxes"),
    ('[{"frame": 99, "points": [[1, 1]]}]', "outside the stream"),
    ('[{"frame": 0, "points": [[500, 1, 1]]}]', "outside the 80x48 frame"),
    ('[{"frame": 0, "points": [[1, 1, 2]]}]', "label"),
    ('[{"frame": 0, "boxes": [[10, 10, 5, 20]]}]', "empty"),
    ('[{"frame": 0, "boxes": [[1, 1, 5, 5], [6, 6, 9, 9]]}]', "one box per object"),
    ('[{"frame": 0, "point": [[1, 1]]}]', "unknown key"),
])
def test_prompt_errors_name_the_problem(bad, msg):
    with pytest.raises(ValueError, match=msg):
        masks.parse_prompts(bad, 80, 48, 10)


def test_official_pt_checkpoint_gets_a_clear_error():
    d = host.model_dirs("sam2")[0]
    d.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"image_encoder.trunk.pos_embed": torch.zeros(1)}}, d / "sam2.1_hiera_tiny.pt")
    with pytest.raises(registry.ModelError, match="Hugging Face release"):
        masks.sam2_mask(from_tensor(_frames(1)), "sam2.1_hiera_tiny.pt", [{"frame": 0, "points": [[1, 1]]}])
    with pytest.raises(registry.ModelNotFound, match="sam2"):
        masks.sam2_mask(from_tensor(_frames(1)), "nothing.safetensors", [{"frame": 0, "points": [[1, 1]]}])


def test_sam2_node_takes_widget_points_and_json(tiny):
    from nodes.masks import RemasterSAM2VideoMask, widget_prompt

    assert widget_prompt(2, "10,20; 30 40", "5,5", "1,2,30,40") == [
        {"frame": 2, "points": [[10.0, 20.0, 1], [30.0, 40.0, 1], [5.0, 5.0, 0]], "boxes": [[1.0, 2.0, 30.0, 40.0]], "obj_id": 1}
    ]
    with pytest.raises(ValueError, match="positive_points needs 2 numbers"):
        widget_prompt(0, "10", "", "")
    frames = _frames(2)
    node = RemasterSAM2VideoMask()
    (out,) = node.run(from_tensor(frames), "sam2-tiny-random/model.safetensors", frame=0, positive_points="40,24",
                      prompts_json='[{"frame": 1, "boxes": [[10, 10, 30, 40]], "obj_id": 2}]')
    assert out.read().mask.shape == (2, 48, 80)
    with pytest.raises(ValueError, match="no prompt given"):
        node.run(from_tensor(frames), "sam2-tiny-random/model.safetensors")


def test_sam2_weights_not_matching_config_are_refused(tiny):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(tiny / "model.safetensors"))
    sd = {k: v for k, v in sd.items() if not k.startswith("mask_decoder.")}
    save_file(sd, str(tiny / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(registry.ModelError, match="do not match"):
        masks.sam2_mask(from_tensor(_frames(1)), str(tiny), [{"frame": 0, "points": [[1, 1]]}]).read()


def test_preview_mask_for_the_editor(tiny):
    frames = _frames(3)
    p = [{"frame": 2, "points": [[40, 24, 1]], "obj_id": 1}]
    m = masks.preview_mask(frames[2].numpy(), p, "sam2-tiny-random/model.safetensors")
    assert m.shape == (48, 80)
    # the same as the stream stage on that frame
    want = masks.sam2_mask(from_tensor(frames[2:]), str(tiny), [dict(p[0], frame=0)]).read().mask[0]
    assert torch.allclose(m, want)
    with pytest.raises(ValueError, match="outside"):
        masks.preview_mask(frames[2], [{"frame": 2, "points": [[400, 24, 1]]}], str(tiny))
    with pytest.raises(FileNotFoundError):
        masks.preview_mask(frames[2], p, "missing/model.safetensors")
