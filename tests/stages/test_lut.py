"""LUT grading: .cube reading, interpolation against colour-science, transfer curves, errors."""
import sys
import warnings

import numpy as np
import pytest
import torch

from conftest import clip
from remaster import host
from remaster.media.decode import open_video
from remaster.stages import lut as L
from remaster.stages.lut import cube as LC
from remaster.stages.lut import interp as LI
from remaster.stream import from_tensor

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import colour  # colour-science, the reference implementation

# colour-science puts a MagicMock in sys.modules["matplotlib"] when matplotlib is absent, which
# later breaks diffusers' import-time package probing in the same test process: take it out.
for _name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
    if type(sys.modules[_name]).__name__.endswith("Mock"):
        del sys.modules[_name]


def _random_lut(n: int, seed: int = 0) -> np.ndarray:
    """A non-trivial [N(r), N(g), N(b), 3] cube: curved, channel-mixing, plus noise."""
    rng = np.random.default_rng(seed)
    v = np.linspace(0, 1, n)
    r, g, b = np.meshgrid(v, v, v, indexing="ij")
    base = np.stack([r**1.4 + 0.2 * g * b, np.sqrt(g) * 0.9 + 0.1 * r, 0.5 * b + 0.5 * b**3 - 0.1 * r], -1)
    return base + rng.normal(0, 0.05, base.shape)


def _write_with_colour_science(tmp_path, table: np.ndarray, domain=None, name="t.cube"):
    lut = colour.LUT3D(table, name="random", domain=domain) if domain is not None else colour.LUT3D(table, name="random")
    path = tmp_path / name
    colour.write_LUT(lut, str(path))
    return path, lut


@pytest.mark.parametrize("interpolation", L.INTERPOLATIONS)
@pytest.mark.parametrize("size", [2, 17, 33, 65])
def test_identity_lut_returns_input(interpolation, size):
    cube = L.parse_cube(L.format_cube(L.identity_grid(size), "identity", decimals=9))
    x = torch.rand(20000, 3, generator=torch.Generator().manual_seed(size))
    x[:8] = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5], [1, 1, 0], [0, 1, 1]])
    y = L.apply_lut(x, cube, interpolation)
    assert (y - x).abs().max() < 1e-6


def test_identity_1d_lut_and_real_frames(clips_dir):
    frames = open_video(clip("talking_head_512_30_audio.mp4"), end_time=0.2, max_side=128).read().frames
    v = np.linspace(0, 1, 1024)
    text = "LUT_1D_SIZE 1024\n" + "\n".join(f"{a:.9f} {a:.9f} {a:.9f}" for a in v)
    lut1 = L.parse_cube(text)
    assert lut1.kind == "1D"
    assert (L.apply_lut(frames, lut1) - frames).abs().max() < 1e-6
    cube = L.parse_cube(L.format_cube(L.identity_grid(33), decimals=9))
    assert (L.apply_lut(frames, cube) - frames).abs().max() < 1e-6


@pytest.mark.parametrize("interpolation,reference", [
    ("tetrahedral", colour.algebra.table_interpolation_tetrahedral),
    ("trilinear", colour.algebra.table_interpolation_trilinear),
])
@pytest.mark.parametrize("size", [9, 33])
@pytest.mark.parametrize("path_", ["fast", "torch"])
def test_matches_colour_science(tmp_path, interpolation, reference, size, path_, monkeypatch):
    """Both CPU paths: OpenColorIO's (used when installed) and the torch one (GPUs, fallback)."""
    if path_ == "torch":
        monkeypatch.setattr(LI, "cpu_processor", lambda *a: None)
    else:
        pytest.importorskip("PyOpenColorIO")
    table = _random_lut(size, seed=size)
    path, ref_lut = _write_with_colour_science(tmp_path, table)
    ours = L.read_cube(path)
    assert ours.size == size and ours.title == "random"
    rng = np.random.default_rng(1)
    rgb = rng.random((50000, 3))
    expected = ref_lut.apply(rgb, interpolator=reference)
    x = torch.tensor(rgb, dtype=torch.float32)
    got = L.apply_3d(x, ours.cube, ours.size, interpolation=interpolation)
    assert np.abs(got.double().numpy() - expected).max() < 1e-4
    assert torch.equal(x, torch.tensor(rgb, dtype=torch.float32))  # the input is left alone


@pytest.mark.parametrize("path_", ["fast", "torch"])
def test_domain_matches_colour_science(tmp_path, path_, monkeypatch):
    """A domain other than 0..1 (OpenColorIO: a matrix before the cube, in the same pass), with
    inputs inside and outside it (clamped to it, as colour-science does)."""
    if path_ == "torch":
        monkeypatch.setattr(LI, "cpu_processor", lambda *a: None)
    else:
        pytest.importorskip("PyOpenColorIO")
    table = _random_lut(17, seed=3)
    domain = np.array([[-0.1, 0.0, 0.05], [1.2, 1.5, 1.0]])
    path, ref_lut = _write_with_colour_science(tmp_path, table, domain=domain)
    ours = L.read_cube(path)
    assert ours.domain_min == pytest.approx((-0.1, 0.0, 0.05)) and ours.domain_max == pytest.approx((1.2, 1.5, 1.0))
    rng = np.random.default_rng(2)
    rgb = rng.uniform(domain[0] - 0.2, domain[1] + 0.2, (20000, 3))
    expected = ref_lut.apply(rgb, interpolator=colour.algebra.table_interpolation_tetrahedral)
    got = L.apply_3d(torch.tensor(rgb, dtype=torch.float32), ours.cube, ours.size, ours.domain_min,
                     ours.domain_max, "tetrahedral")
    assert np.abs(got.double().numpy() - expected).max() < 1e-4


def test_cpu_bands_threads_and_shapes_agree_with_the_torch_path(monkeypatch):
    """OpenColorIO's path cuts the pixels into lines and bands over threads: any pixel count (a
    partial last line), any thread count and a non-contiguous input give the torch path's values,
    and neither the input nor the thread setting is touched."""
    pytest.importorskip("PyOpenColorIO")
    lut = L.parse_cube(L.format_cube(torch.tensor(_random_lut(33, seed=7)), decimals=7))
    g = torch.Generator().manual_seed(8)
    x = torch.rand(2, 37, 61, 3, generator=g) * 1.4 - 0.2  # 4514 pixels, some outside 0..1
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            outs.append(L.apply_3d(x, lut.cube, lut.size))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    strided = L.apply_3d(x.transpose(1, 2), lut.cube, lut.size)
    assert torch.equal(strided, outs[0].transpose(1, 2))
    with monkeypatch.context() as m:
        m.setattr(LI, "cpu_processor", lambda *a: None)
        ref = L.apply_3d(x, lut.cube, lut.size)
    assert outs[0].shape == x.shape and (outs[0] - ref).abs().max() < 1e-5
    one = L.apply_3d(x[0, 0, :1], lut.cube, lut.size)  # a single pixel
    assert (one - ref[0, 0, :1]).abs().max() < 1e-5


def test_clamp_in_place_leaves_the_input_alone():
    """The final clamp runs in place on the LUT's own result, never on the caller's frames."""
    lut = L.parse_cube(L.format_cube(torch.tensor(_random_lut(9, seed=9)) * 1.5 - 0.2, decimals=7))
    x = torch.rand(4, 8, 8, 3, generator=torch.Generator().manual_seed(10))
    keep = x.clone()
    for kw in ({}, dict(strength=0.5), dict(lut_input="linear"), dict(lut_input="slog3", lut_output="display")):
        y = L.apply_lut(x, lut, **kw)
        assert torch.equal(x, keep) and y.data_ptr() != x.data_ptr()
        assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    raw = L.apply_lut(x, lut, clamp=False)
    assert float(raw.min()) < 0.0 or float(raw.max()) > 1.0  # the table does leave 0..1
    assert torch.equal(L.apply_lut(x, lut), raw.clamp(0.0, 1.0))


def test_1d_lut_matches_colour_science(tmp_path):
    rng = np.random.default_rng(4)
    table = np.stack([np.linspace(0, 1, 64) ** p for p in (0.8, 1.0, 2.2)], -1) + rng.normal(0, 0.01, (64, 3))
    ref = colour.LUT3x1D(table, name="one-d")
    path = tmp_path / "oned.cube"
    colour.write_LUT(ref, str(path))
    ours = L.read_cube(path)
    assert ours.kind == "1D" and ours.shaper.shape == (64, 3)
    rgb = rng.random((20000, 3))
    got = L.apply_lut(torch.tensor(rgb, dtype=torch.float32), ours, clamp=False)
    assert np.abs(got.double().numpy() - ref.apply(rgb)).max() < 1e-4


def test_shaper_plus_cube_and_comments():
    text = "\n".join([
        "# made by hand", 'TITLE "shaper test"', "LUT_1D_SIZE 3", "LUT_3D_SIZE 2", "LUT_1D_INPUT_RANGE 0 2",
        "LUT_3D_INPUT_RANGE 0 1", "LUT_IN_VIDEO_RANGE",
        "0 0 0", "0.5 0.5 0.5", "1 1 1",  # shaper: x/2
    ] + [f"{r} {g} {b}" for b in (0, 1) for g in (0, 1) for r in (0, 1)] + [""])
    lut = L.parse_cube(text)
    assert lut.kind == "1D+3D" and lut.title == "shaper test" and lut.comments == ["made by hand"]
    x = torch.tensor([[0.4, 1.0, 1.6]])
    assert torch.allclose(L.apply_lut(x, lut), x / 2, atol=1e-6)


@pytest.mark.parametrize("text,message", [
    ("LUT_3D_SIZE 2\n0 0 0\n1 1 1\n", "declare"),
    ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 7 + "0 0\n", "needs 3 numbers"),
    ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 7 + "0 zero 0\n", "line 9"),
    ("LUT_3D_SIZE two\n", "whole number"),
    ("TITLE \"x\"\n0 0 0\n", "table line|no LUT_3D_SIZE"),
    ("0 0 0\n1 1 1\n", "no LUT_3D_SIZE"),
    ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 4 + "DOMAIN_MIN 0 0 0\n" + "0 0 0\n" * 4, "after the table"),
    ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 7 + "nan 0 0\n", "not a keyword|NaN"),
    ("LUT_3D_SIZE 2\nDOMAIN_MIN 1 0 0\nDOMAIN_MAX 1 1 1\n" + "0 0 0\n" * 8, "above its minimum"),
    ("LUT_3D_SIZE 2\n%%garbage\n" + "0 0 0\n" * 8, "cannot read"),
])
def test_malformed_cube_files_give_clear_errors(tmp_path, text, message):
    p = tmp_path / "bad.cube"
    p.write_text(text)
    with pytest.raises(L.LUTError, match=message) as exc:
        L.read_cube(p)
    assert "bad.cube" in str(exc.value)


def test_oversized_cube_files_are_refused(tmp_path, monkeypatch):
    p = tmp_path / "huge.cube"
    p.write_text("LUT_3D_SIZE 129\n0 0 0\n")
    with pytest.raises(L.LUTError, match="outside 2..65.*resample"):
        L.read_cube(p)
    p.write_text("LUT_1D_SIZE 70000\n")
    with pytest.raises(L.LUTError, match="LUT_1D_SIZE 70000"):
        L.read_cube(p)
    monkeypatch.setattr(LC, "MAX_FILE_BYTES", 1000)
    p.write_text(L.format_cube(L.identity_grid(5)))
    with pytest.raises(L.LUTError, match="refused"):
        L.read_cube(p)
    with pytest.raises(L.LUTError, match="does not exist"):
        L.read_cube(tmp_path / "missing.cube")
    (tmp_path / "bin.cube").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(L.LUTError, match="not a text"):
        L.read_cube(tmp_path / "bin.cube")


def test_transfer_curves_match_colour_science():
    lin = torch.linspace(0.0005, 4.0, 2000, dtype=torch.float64)
    ref_logc = colour.models.log_encoding_ARRILogC3(lin.numpy())
    ref_slog = colour.models.log_encoding_SLog3(lin.numpy())
    assert np.abs(L._logc3_encode(lin).numpy() - ref_logc).max() < 1e-5
    assert np.abs(L._slog3_encode(lin).numpy() - ref_slog).max() < 1e-5
    disp = torch.linspace(0, 1, 500, dtype=torch.float64)
    ref_lin = colour.models.eotf_sRGB(disp.numpy())
    assert np.abs(L.srgb_to_linear(disp).numpy() - ref_lin).max() < 1e-7
    # an identity LUT used in any input encoding gives the frames back
    cube = L.parse_cube(L.format_cube(L.identity_grid(65), decimals=9))
    x = torch.rand(5000, 3, generator=torch.Generator().manual_seed(5))
    for enc in ("linear", "logc3", "slog3"):
        y = L.apply_lut(x, cube, lut_input=enc, lut_output="same")
        assert (y - x).abs().max() < 2e-3, enc  # the cube's own grid error in that encoding


def test_log_to_display_conversion_lut():
    """A LogC3→display LUT (built with colour-science) applied with lut_input=logc3, lut_output=display
    reproduces display values from display input."""
    n = 65
    v = np.linspace(0, 1, n)
    r, g, b = np.meshgrid(v, v, v, indexing="ij")
    logc = np.stack([r, g, b], -1)
    disp = colour.models.eotf_inverse_sRGB(np.clip(colour.models.log_decoding_ARRILogC3(logc), 0, 1))
    lut = L.parse_cube(L.format_cube(torch.tensor(disp), decimals=7))
    x = torch.rand(5000, 3, generator=torch.Generator().manual_seed(6))
    y = L.apply_lut(x, lut, lut_input="logc3", lut_output="display")
    assert (y - x).abs().mean() < 2e-3


def test_strength_and_stream_chunking(clips_dir):
    src = open_video(clip("juggle_720p24.mp4"), end_time=0.5, max_side=160)
    look = "shipped/warm_gym.cube"
    full = L.lut_stream(src, look).read().frames
    rechunked = L.lut_stream(src.rechunked(5), look).read().frames
    assert torch.equal(full, rechunked)
    orig = src.read().frames
    assert (full - orig).abs().mean() > 0.02  # the look does something
    half = L.lut_stream(src, look, strength=0.5).read().frames
    assert torch.allclose(half, (orig + (full - orig) * 0.5).clamp(0, 1), atol=1e-5)
    assert torch.equal(L.lut_stream(src, look, strength=0.0).read().frames, orig)


def test_luts_from_models_folder_and_shipped(tmp_path):
    shipped = L.shipped_luts()
    assert {"shipped/clean_studio.cube", "shipped/warm_gym.cube", "shipped/neutral_film.cube"} <= set(shipped)
    for name in shipped:
        lut = L.load_lut(name)
        assert lut.size == 33 and lut.title
        assert L.resolve_lut(name).stat().st_size < 1_000_000
    folder = host.model_dirs("luts")[0]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mine.cube").write_text(L.format_cube(L.identity_grid(3)))
    assert L.lut_choices()[0] == "mine.cube" and set(shipped) <= set(L.lut_choices())
    assert L.load_lut("mine.cube").size == 3
    with pytest.raises(L.LUTError, match="'luts' models folder"):
        L.resolve_lut("nope.cube")
    with pytest.raises(L.LUTError, match="no LUT chosen"):
        L.resolve_lut("")


def test_node_builds_a_lazy_stream():
    from nodes.colour import NODE_CLASS_MAPPINGS

    node = NODE_CLASS_MAPPINGS["RemasterApplyLUT"]()
    schema = NODE_CLASS_MAPPINGS["RemasterApplyLUT"].INPUT_TYPES()["required"]
    assert "shipped/clean_studio.cube" in schema["lut"][0]
    assert all("tooltip" in v[1] for v in schema.values())
    x = torch.rand(3, 16, 16, 3)
    (out,) = node.run(from_tensor(x), "shipped/neutral_film.cube", 1.0, "trilinear")
    y = out.read().frames
    assert y.shape == x.shape and not torch.equal(x, y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    lut = L.load_lut("shipped/warm_gym.cube")
    x = torch.rand(4, 64, 64, 3)
    for interp in L.INTERPOLATIONS:
        a = L.apply_lut(x, lut, interp)
        b = L.apply_lut(x.cuda(), lut, interp).cpu()
        assert (a - b).abs().max() < 1e-5
