"""BiRefNet architecture: the official checkpoint layout (key names, shapes, dtypes) for the
Swin-L and Swin-T releases, the real file format through the real loader, a snapshot for fixed
random weights, and a clear refusal of other files.

Published facts the layout is checked against (from public code that loads the released files):
``BiRefNet_HR-matting/model.safetensors`` (Swin-L, the general model's architecture) is
444,473,596 bytes in fp16 with int64 buffers; ``bb.patch_embed.proj.weight`` [192,3,4,4],
``relative_position_index`` int64 [144,144], ``bb.layers.3.blocks.1.attn.qkv.weight`` [4608,1536],
``squeeze_module.0.conv_in.weight`` [64,5760,3,3],
``decoder.decoder_block1.dec_att.aspp_deforms.2.atrous_conv.regular_conv.weight`` [256,64,7,7],
``decoder.conv_out1.0.weight`` [1,240,1,1]; about 220 M parameters (BiRefNet) and 44 M (lite).
"""
from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import save, save_file

from remaster.models import birefnet, registry
from remaster.models.swin import SWIN_L, SWIN_T, config_from_state_dict
from snapshot import check, inputs, seeded

# sorted "name [shape] f|i" lines of the official layouts: count and sha256 (first 16 hex digits)
KEYS = {"T": (586, "7d5f78ceed9cc34f"), "L": (754, "5a2739e636d29f20")}
HR_MATTING_BYTES = 444_473_596


def _layout(cfg) -> dict:
    with torch.device("meta"):
        return birefnet.BiRefNet(cfg).state_dict()


def _key_digest(sd: dict) -> tuple[int, str]:
    lines = sorted(f"{k} {list(v.shape)} {'f' if v.is_floating_point() else 'i'}" for k, v in sd.items())
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _safetensors_bytes(shapes: dict) -> int:
    """Size of a safetensors file holding ``shapes`` (name -> (dtype, shape)), F16/I64 only, as
    ``safetensors.torch.save(..., metadata={"format": "pt"})`` writes it."""
    size = {"I64": 8, "F16": 2}
    order = sorted(shapes, key=lambda k: (-size[shapes[k][0]], k))
    parts, off = [], 0
    for k in order:
        dt, shape = shapes[k]
        n = size[dt]
        for d in shape:
            n *= d
        parts.append(json.dumps({k: {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + n]}},
                                separators=(",", ":"))[1:-1])
        off += n
    header = '{"__metadata__":{"format":"pt"},' + ",".join(parts) + "}"
    header += " " * (-len(header) % 8)
    return 8 + len(header) + off


def _fp16_shapes(sd: dict) -> dict:
    return {k: ("F16" if v.is_floating_point() else "I64", tuple(v.shape)) for k, v in sd.items()}


@pytest.mark.parametrize("name,cfg", [("T", SWIN_T), ("L", SWIN_L)])
def test_key_layout_snapshot(name, cfg):
    sd = _layout(cfg)
    assert _key_digest(sd) == KEYS[name]
    assert config_from_state_dict(sd) == cfg
    n = sum(v.numel() for k, v in sd.items() if v.is_floating_point() and "running_" not in k)
    assert abs(n / 1e6 - {"T": 44, "L": 220}[name]) < 1.5


def test_swin_l_layout_matches_the_published_checkpoint():
    sd = _layout(SWIN_L)
    expect = {
        "bb.patch_embed.proj.weight": [192, 3, 4, 4],
        "bb.layers.0.blocks.0.attn.relative_position_index": [144, 144],
        "bb.layers.3.blocks.1.attn.qkv.weight": [4608, 1536],
        "squeeze_module.0.conv_in.weight": [64, 5760, 3, 3],
        "decoder.decoder_block1.dec_att.aspp_deforms.2.atrous_conv.regular_conv.weight": [256, 64, 7, 7],
        "decoder.conv_out1.0.weight": [1, 240, 1, 1],
    }
    for k, shape in expect.items():
        assert list(sd[k].shape) == shape, k
    assert sd["bb.layers.0.blocks.0.attn.relative_position_index"].dtype == torch.int64
    for i, depth in enumerate((2, 2, 18, 2)):
        assert f"bb.layers.{i}.blocks.{depth - 1}.attn.qkv.weight" in sd
        assert f"bb.layers.{i}.blocks.{depth}.attn.qkv.weight" not in sd
    # the whole layout saved as the released fp16 file has exactly the published file's size: the
    # header spells out every name, dtype and shape, so a renamed, missing or reshaped tensor shows
    assert _safetensors_bytes(_fp16_shapes(sd)) == HR_MATTING_BYTES


def test_safetensors_size_helper_matches_the_library():
    sd = {k: v for k, v in birefnet.BiRefNet(SWIN_T).state_dict().items() if k.startswith(("bb.layers.0.", "decoder.gdt"))}
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
    assert len(save(half, metadata={"format": "pt"})) == _safetensors_bytes(_fp16_shapes(half))


@pytest.fixture(scope="module")
def lite():
    torch.manual_seed(0)
    net = seeded(birefnet.BiRefNet(SWIN_T))
    with torch.no_grad():  # the released offsets are not zero: let the deformable sampling matter
        for k, p in net.named_parameters():
            if "offset_conv" in k:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(5))
    return net


@torch.inference_mode()
def test_snapshot(lite):
    x = birefnet.normalise(inputs(1, 3, 64, 96))
    check("birefnet_swin_t", {"alpha": lite(x)})


@torch.inference_mode()
def test_official_safetensors_round_trip(lite, tmp_path):
    """The released file format: fp16 floats, int64 buffers, no prefix, through the real loader."""
    path = tmp_path / "model.safetensors"
    save_file({k: (v.half() if v.is_floating_point() else v) for k, v in lite.state_dict().items()}, str(path),
              metadata={"format": "pt"})
    loaded = birefnet.load(path)
    x = birefnet.normalise(inputs(2, 3, 256, 256))
    a, b = lite(x), loaded(x)
    assert a.shape == (2, 1, 256, 256)
    assert float(a.min()) > 0 and float(a.max()) < 1
    assert torch.equal(loaded(x), b)  # deterministic
    assert float((a - b).abs().max()) < 0.01  # fp16 weights
    assert not torch.equal(a[0], a[1])


@torch.inference_mode()
def test_pth_with_training_prefixes_loads(lite, tmp_path):
    path = tmp_path / "BiRefNet-general-epoch_244.pth"
    torch.save({f"module._orig_mod.{k}": v for k, v in lite.state_dict().items()}, path)
    x = birefnet.normalise(inputs(1, 3, 64, 64))
    assert torch.equal(birefnet.load(path)(x), lite(x))


def test_foreign_and_mismatched_files_are_refused(lite, tmp_path):
    other = tmp_path / "other.safetensors"
    save_file({"conv.weight": torch.zeros(1, 1, 1, 1)}, str(other))
    with pytest.raises(registry.ModelError, match="not a BiRefNet checkpoint"):
        birefnet.load(other)
    sd = dict(lite.state_dict())
    sd.pop("decoder.gdt_convs_attn_2.0.bias")
    sd["decoder.ipt_blk1.conv1.weight"] = torch.zeros(64, 4, 3, 3)
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(registry.ModelError, match="not a BiRefNet checkpoint.*gdt_convs_attn_2.*ipt_blk1"):
        birefnet.load(bad)


def test_image_patches_orders():
    x = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).view(2, 3, 8, 12)
    cm = birefnet.image_patches(x, (4, 4), "channel-major")  # grid 2 rows x 3 columns
    col = birefnet.image_patches(x, (4, 4), "column-major")
    assert cm.shape == col.shape == (2, 18, 4, 4)
    for c in range(3):
        for i in range(2):
            for j in range(3):
                patch = x[:, c, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4]
                assert torch.equal(cm[:, c * 6 + i * 3 + j], patch)
                assert torch.equal(col[:, (j * 2 + i) * 3 + c], patch)


def test_input_sides_must_be_multiples_of_32(lite):
    with pytest.raises(ValueError, match="multiples of 32"):
        lite(torch.zeros(1, 3, 64, 80))
    with pytest.raises(ValueError, match="patch_order"):
        birefnet.BiRefNet(SWIN_T, patch_order="rows")


@pytest.mark.parametrize("k,budget", [(1, 2**24), (3, 5000), (7, 2**24), (7, 40000)])
def test_cpu_deformable_conv_equals_torchvision(k, budget):
    from torchvision.ops import deform_conv2d

    g = torch.Generator().manual_seed(k)
    x = torch.randn(2, 8, 13, 17, generator=g)
    offset = torch.randn(2, 2 * k * k, 13, 17, generator=g) * 4  # many samples fall off the map
    mask = torch.rand(2, k * k, 13, 17, generator=g) * 2
    weight = torch.randn(5, 8, k, k, generator=g)
    want = deform_conv2d(x, offset, weight, None, padding=(k // 2, k // 2), mask=mask)
    got = birefnet.sampled_deform_conv(x, offset, mask, weight, k // 2, budget=budget)
    assert float((got - want).abs().max()) < 1e-4 * float(want.abs().max())
