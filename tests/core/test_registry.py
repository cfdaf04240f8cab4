"""Model registry: lookup, the three-part missing-model error, hash checks, safe downloads."""
import hashlib
import io
import json

import pytest
import torch

from remaster import host
from remaster.models import registry


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    payload = b"weights" * 100
    data = {"models": [{
        "id": "tiny", "task": "test", "filename": "tiny.pth", "folder": "upscale_models",
        "urls": ["https://example.invalid/tiny.pth", "https://mirror.invalid/tiny.pth"],
        "sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload), "licence": "MIT"}]}
    path = tmp_path / "models.json"
    path.write_text(json.dumps(data))
    monkeypatch.setattr(registry, "REGISTRY_PATH", path)
    return payload


class FakeResponse(io.BytesIO):
    status = 200

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_missing_model_error_names_file_folder_and_url(fake_registry):
    with pytest.raises(registry.ModelNotFound) as exc:
        registry.resolve("tiny")
    msg = str(exc.value)
    assert "tiny.pth" in msg and "upscale_models" in msg and "https://example.invalid/tiny.pth" in msg


def test_download_verifies_and_renames(fake_registry):
    p = registry.download("tiny", opener=lambda req: FakeResponse(fake_registry))
    assert p.read_bytes() == fake_registry
    assert p.parent == host.model_dirs("upscale_models")[0]
    assert not list(p.parent.glob("*.part"))
    assert registry.verify(["tiny"])[0][1] == "ok"


def test_download_rejects_wrong_hash_and_leaves_nothing(fake_registry):
    with pytest.raises(registry.ModelError, match="sha256"):
        registry.download("tiny", opener=lambda req: FakeResponse(b"tampered"))
    assert not any(host.model_dirs("upscale_models")[0].glob("*")) if host.model_dirs("upscale_models")[0].exists() else True


def test_mismatch_is_reported_by_verify_and_loading_warns(fake_registry, caplog):
    d = host.model_dirs("upscale_models")[0]
    d.mkdir(parents=True)
    (d / "tiny.pth").write_bytes(b"other")
    assert registry.verify(["tiny"])[0][1] == "corrupt"  # not loadable as weights
    with caplog.at_level("WARNING"):
        registry.resolve("tiny")
    assert "sha256 differs" in caplog.text and "models verify tiny" in caplog.text


def test_verify_tells_a_different_release_from_a_corrupt_file_and_accepts_variants(fake_registry, tmp_path, monkeypatch, caplog):
    d = host.model_dirs("upscale_models")[0]
    d.mkdir(parents=True)
    torch.save({"w": torch.zeros(3)}, d / "tiny.pth")  # readable weights, other bytes
    assert registry.verify(["tiny"])[0][1] == "different"
    (d / "tiny.pth").write_bytes(fake_registry[:-1] + b"X")  # registry's size, flipped byte
    assert registry.verify(["tiny"])[0][1] == "corrupt"
    torch.save({"w": torch.ones(3)}, d / "tiny.pth")
    sha = registry.sha256_of(d / "tiny.pth")
    data = json.loads(registry.REGISTRY_PATH.read_text())
    data["models"][0]["variants"] = [{"sha256": sha, "size": (d / "tiny.pth").stat().st_size, "source": "re-save"}]
    path = tmp_path / "models2.json"
    path.write_text(json.dumps(data))
    monkeypatch.setattr(registry, "REGISTRY_PATH", path)
    assert registry.verify(["tiny"])[0][1] == "variant"
    with caplog.at_level("WARNING"):
        registry.resolve("tiny")
    assert "sha256" not in caplog.text


def test_shared_offline_copies_are_accepted_variants(shared_models):
    shared = shared_models
    by_name = {}
    for e in registry.entries().values():
        for n in (e.filename, *e.aliases):
            by_name[n] = e
    for p in shared.rglob("*"):
        e = by_name.get(p.name)
        if e is None or not p.is_file():
            continue
        assert registry.check_file(p, e)[0] in ("ok", "variant"), p


def test_paths_outside_the_models_folder_are_refused(tmp_path):
    with pytest.raises(registry.ModelError, match="leaves the models folder"):
        registry.safe_target(tmp_path / "models" / "rife", "../../etc/passwd")
    assert registry.safe_target(tmp_path / "m", "sub/ok.pth").name == "ok.pth"


def test_user_files_unknown_to_the_registry_load_too(fake_registry):
    d = host.model_dirs("upscale_models")[0]
    d.mkdir(parents=True)
    torch.save({"w": torch.ones(2)}, d / "my_model.pth")
    assert "my_model.pth" in registry.choices("upscale_models")
    sd = registry.load_state_dict(registry.resolve("my_model.pth", "upscale_models"))
    assert torch.equal(sd["w"], torch.ones(2))


def test_unsafe_pickles_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, p)
    with pytest.raises(registry.ModelError, match="safely"):
        registry.load_state_dict(p)


def test_shipped_registry_is_well_formed():
    ids = set()
    for e in registry.entries().values():
        assert e.id not in ids
        ids.add(e.id)
        assert e.folder in host.MODEL_FOLDERS + host.CORE_MODEL_FOLDERS, e.id
        assert e.urls and all(u.startswith("https://") for u in e.urls), e.id
        assert e.licence, e.id
        assert e.sha256 == "" or len(e.sha256) == 64, e.id


def test_download_fetches_companion_files_and_refuses_web_pages(tmp_path, monkeypatch):
    payload = b"tensor bytes"
    data = {"models": [{
        "id": "folder-model", "task": "test", "filename": "repo/model.safetensors", "folder": "sam2",
        "urls": ["https://a.invalid/model.safetensors"], "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload), "licence": "MIT",
        "extra_files": [{"filename": "repo/config.json", "urls": ["https://a.invalid/config.json"]}]},
        {"id": "drive", "task": "test", "filename": "d.ckpt", "folder": "matting",
         "urls": ["https://drive.invalid/folder"], "sha256": "", "size": 0, "licence": "MIT"}]}
    path = tmp_path / "models.json"
    path.write_text(json.dumps(data))
    monkeypatch.setattr(registry, "REGISTRY_PATH", path)

    def opener(req):
        return FakeResponse(b'{"model_type": "x"}' if req.full_url.endswith("config.json") else payload)

    p = registry.download("folder-model", opener=opener)
    assert p.read_bytes() == payload
    assert (p.parent / "config.json").read_text() == '{"model_type": "x"}'

    class Page(FakeResponse):
        headers = {"Content-Type": "text/html; charset=utf-8"}

    with pytest.raises(registry.ModelError, match="web page"):
        registry.download("drive", opener=lambda req: Page(b"<html>"))
    assert not (host.model_dirs("matting")[0] / "d.ckpt").exists()


def test_every_registry_name_a_dropdown_shows_resolves(tmp_path, monkeypatch):
    """Each registry file name listed by a node's model dropdown (nested ones such as
    sam2.1-hiera-tiny/model.safetensors included) is found in the registry, and when the file is
    absent the error names that file, its folder and its URL."""
    from remaster.headless.cli import node_mappings

    by_name = {e.filename: e for e in registry.entries().values()}
    seen = set()
    for cls in node_mappings().values():
        types = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for spec in types.get(section, {}).values():
                if isinstance(spec[0], (list, tuple)):
                    seen.update(v for v in spec[0] if v in by_name)
    assert "sam2.1-hiera-tiny/model.safetensors" in seen and "RealESRGAN_x4plus.pth" in seen
    monkeypatch.setattr(host, "model_dirs", lambda folder: [tmp_path / folder])
    for name in sorted(seen):
        e = registry.by_filename(name)
        assert e is by_name[name], name
        with pytest.raises(registry.ModelNotFound) as exc:
            registry.resolve(name)
        msg = str(exc.value)
        assert f"'{name}'" in msg and f"'{e.folder}'" in msg and e.url in msg, msg
        assert "your own file" not in msg


def test_bare_names_resolve_only_when_unambiguous():
    assert registry.by_filename("model.safetensors") is None  # four SAM2 sizes share it
    assert registry.by_filename("RealESRGAN_x4plus.pth").id == "RealESRGAN_x4plus"
    assert registry.by_filename("sam2.1-hiera-small/model.safetensors", "sam2").id == "sam2.1-hiera-small"


def test_link_places_a_folder_model_and_its_extra_files(tmp_path):
    """A registry name with a folder (a Hugging Face release: model.safetensors + config.json) is
    matched by its last parts and placed with its extra files; a bare model.safetensors is not."""
    src = tmp_path / "weights"
    (src / "hub" / "sam2.1-hiera-small").mkdir(parents=True)
    (src / "hub" / "sam2.1-hiera-small" / "model.safetensors").write_bytes(b"w")
    (src / "hub" / "sam2.1-hiera-small" / "config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(b"other")
    placed = dict((str(p.relative_to(host.model_dirs("sam2")[0])), i) for i, p in registry.link_existing(src))
    assert placed == {"sam2.1-hiera-small/model.safetensors": "sam2.1-hiera-small",
                      "sam2.1-hiera-small/config.json": "sam2.1-hiera-small"}
    assert (host.model_dirs("sam2")[0] / "sam2.1-hiera-small" / "config.json").read_text() == "{}"
