import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("REMASTER_SHARED", ROOT.parent / "shared"))
CLIPS = SHARED / "clips"
SHARED_MODELS = SHARED / "models"


@pytest.fixture(scope="session")
def clips_dir() -> Path:
    if not CLIPS.is_dir():
        pytest.skip("../shared/clips is not present")
    return CLIPS


@pytest.fixture(scope="session")
def shared_models() -> Path:
    if not SHARED_MODELS.is_dir():
        pytest.skip("../shared/models is not present")
    return SHARED_MODELS


def clip(name: str) -> Path:
    p = CLIPS / name
    if not p.is_file():
        pytest.skip(f"clip {name} is not present")
    return p


def shared_model(rel: str) -> Path:
    p = SHARED_MODELS / rel
    if not p.is_file():
        pytest.skip(f"model {rel} is not present in ../shared/models")
    return p


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """Every test gets its own ComfyUI-like input/output/temp/models folders."""
    from remaster import host

    for kind in ("input", "output", "temp", "models"):
        d = tmp_path / f"_{kind}"
        d.mkdir()
        monkeypatch.setitem(host._state, f"{kind}_dir", str(d))
    yield
