"""The model registry: ``models.json`` is the one place that knows model facts.

Code asks for a model by registry id or by the file name a user picked in a dropdown. Files are
looked up in the ComfyUI models folders (through :mod:`remaster.host`, so
``extra_model_paths.yaml`` works) or, outside ComfyUI, under ``--models-dir`` /
``REMASTER_MODELS_DIR`` laid out the same way. Nothing here touches the network unless
:func:`download` is called explicitly.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import urllib.request
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch

from .. import host

log = logging.getLogger("remaster.models")

REGISTRY_PATH = Path(__file__).resolve().parents[2] / "models.json"


class ModelError(Exception):
    """A model file is missing, corrupt or not what the registry says."""


class ModelNotFound(ModelError, FileNotFoundError):
    pass


@dataclass(frozen=True)
class ModelEntry:
    id: str
    task: str
    filename: str
    folder: str
    urls: tuple
    sha256: str
    size: int
    licence: str
    arch: str = ""
    notes: str = ""
    aliases: tuple = ()  # other names the same file is known by (e.g. inside a wheel), for `models link`
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def url(self) -> str:
        return self.urls[0] if self.urls else ""


@lru_cache(maxsize=4)
def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    out = {}
    for item in data["models"]:
        known = {k: item[k] for k in ("id", "task", "filename", "folder", "sha256", "size", "licence")}
        extra = {k: v for k, v in item.items() if k not in known and k not in ("urls", "arch", "notes", "aliases")}
        out[item["id"]] = ModelEntry(
            urls=tuple(item.get("urls", ())),
            arch=item.get("arch", ""),
            aliases=tuple(item.get("aliases", ())),
            notes=item.get("notes", ""),
            extra=extra,
            **known,
        )
    return out


def entries(registry_path: Optional[Path] = None) -> dict[str, ModelEntry]:
    return dict(_load(str(registry_path or REGISTRY_PATH)))


def entry(model_id: str) -> ModelEntry:
    e = entries().get(model_id)
    if e is None:
        raise ModelError(f"unknown model id '{model_id}'; `python -m remaster models list` shows the known ids")
    return e


def by_filename(filename: str, folder: Optional[str] = None) -> Optional[ModelEntry]:
    """The entry for a file name as a dropdown shows it: the registry's own (possibly nested) name,
    e.g. ``sam2.1-hiera-tiny/model.safetensors``, or else a bare file name that only one entry has."""
    name = str(filename).replace("\\", "/")
    cands = [e for e in entries().values() if folder is None or e.folder == folder]
    for e in cands:
        if e.filename == name:
            return e
    base = os.path.basename(name)
    same = [e for e in cands if os.path.basename(e.filename) == base]
    return same[0] if len(same) == 1 else None


def choices(folder: str, task: Optional[str] = None) -> list[str]:
    """Names for a node dropdown: registry files for ``folder`` (present or downloadable) plus
    any user files found in the folder."""
    names = [e.filename for e in entries().values() if e.folder == folder and (task is None or e.task == task)]
    for f in host.list_model_files(folder):
        if f not in names:
            names.append(f)
    return names


def find(name: str, folder: Optional[str] = None) -> Optional[Path]:
    """The path of an existing file for a registry id or file name, or None."""
    e = entries().get(name)
    if e is not None:
        folder, name = e.folder, e.filename
    elif folder is None:
        e = by_filename(name)
        folder = e.folder if e else None
    if folder is None:
        return None
    for d in host.model_dirs(folder):
        p = d / name
        if p.is_file():
            return p
    return None


def resolve(name: str, folder: Optional[str] = None, check_hash: bool = True, download_missing: bool = False) -> Path:
    """Path of the model ``name`` (registry id or file name) in ``folder``.

    Raises :class:`ModelNotFound` naming the file, the folder it belongs in and its download URL.
    A registry file whose sha256 differs is reported with a warning (and still loaded).
    ``download_missing`` (a node's explicit toggle) fetches a missing registry file first.
    """
    if name is None or str(name).strip() == "":
        raise ModelNotFound("no model was chosen: pick a model file in the node's model input")
    p_direct = Path(str(name)).expanduser()
    if p_direct.is_absolute() and p_direct.is_file():
        return p_direct
    e = entries().get(name) or by_filename(name, folder)
    folder = folder or (e.folder if e else None)
    path = find(name, folder)
    if path is None and download_missing and e is not None:
        path = download(e.id)
    if path is None:
        filename = e.filename if e else os.path.basename(name)
        dirs = host.model_dirs(folder) if folder else []
        where = dirs[0] if dirs else Path("models") / str(folder)
        msg = f"model file '{filename}' was not found. Put it in the '{folder}' models folder ({where})"
        if e is not None and e.urls:
            msg += f"; download it from {e.url} or run `python -m remaster models download {e.id}`"
        else:
            msg += "; it is not in models.json, so it must be your own file"
        raise ModelNotFound(msg)
    if check_hash and e is not None and e.sha256:
        if not hash_matches(path, e):
            log.warning("%s is not the file models.json lists for %s (sha256 differs): run `python -m remaster models "
                        "verify %s` to see whether it is corrupt or another release", path, e.id, e.id)
    return path


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


_hash_cache: dict = {}


def cached_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _hash_cache:
        _hash_cache[key] = sha256_of(path)
    return _hash_cache[key]


def accepted_hashes(e: ModelEntry) -> set:
    """The registry's sha256 and those of the re-saves it accepts (``variants``)."""
    hashes = {v["sha256"].lower() for v in e.extra.get("variants", ()) if v.get("sha256")}
    return hashes | ({e.sha256.lower()} if e.sha256 else set())


def hash_matches(path: Path, e: ModelEntry) -> bool:
    return cached_sha256(path) in accepted_hashes(e)


def check_file(path: Path, e: ModelEntry) -> tuple[str, str]:
    """(status, the file's sha256). ok: the registry's file; variant: an accepted re-save;
    unverified: the registry publishes no sha256; corrupt: it cannot be read as weights, or it has
    the registry's size but other bytes; different: readable weights, but another file than the
    registry's (another release or a conversion)."""
    sha = cached_sha256(path)
    if e.sha256 and sha == e.sha256.lower():
        return "ok", sha
    if sha in accepted_hashes(e):
        return "variant", sha
    size = path.stat().st_size
    if e.size and size == e.size and e.sha256:
        return "corrupt", sha
    if path.suffix.lower() in (".pth", ".pt", ".pkl", ".ckpt", ".safetensors", ".bin"):
        try:
            load_state_dict(path)
        except Exception:
            return "corrupt", sha
    elif size == 0:
        return "corrupt", sha
    return ("unverified" if not accepted_hashes(e) else "different"), sha


def verify(ids: Optional[Iterable[str]] = None) -> list[tuple[str, str, str]]:
    """(id, status, path) for registry models: missing or a :func:`check_file` status."""
    rows = []
    for e in entries().values():
        if ids and e.id not in ids:
            continue
        p = find(e.id)
        if p is None:
            rows.append((e.id, "missing", ""))
        else:
            rows.append((e.id, check_file(p, e)[0], str(p)))
    return rows


def safe_target(folder_dir: Path, filename: str) -> Path:
    """``folder_dir/filename``, refusing anything that escapes the folder."""
    base = folder_dir.resolve()
    target = (base / filename).resolve()
    if base != target.parent and base not in target.parents:
        raise ModelError(f"refusing to write '{filename}': the path leaves the models folder {base}")
    return target


def _fetch(urls, target: Path, sha256: str, opener: Callable, progress, label: str) -> Path:
    """Download ``target`` from the first URL that works: resumable ``.part`` file, optional
    sha256 check, renamed only when complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    errors = []
    for url in urls:
        try:
            have = part.stat().st_size if part.exists() else 0
            req = urllib.request.Request(url, headers={"User-Agent": "ComfyUI-Remaster"})
            if have:
                req.add_header("Range", f"bytes={have}-")
            with opener(req) as resp:
                ctype = ""
                if getattr(resp, "headers", None) is not None:
                    ctype = str(resp.headers.get("Content-Type", ""))
                if ctype.startswith("text/html"):
                    raise ModelError("the link answers with a web page, not the file: download it by hand")
                status = getattr(resp, "status", 200)
                mode = "ab" if have and status == 206 else "wb"
                if mode == "wb":
                    have = 0
                with open(part, mode) as f:
                    while True:
                        b = resp.read(1 << 20)
                        if not b:
                            break
                        f.write(b)
                        have += len(b)
                        if progress:
                            progress(have, 0)
            if sha256 and sha256_of(part) != sha256.lower():
                part.unlink(missing_ok=True)
                raise ModelError(f"sha256 of the download from {url} does not match models.json")
            os.replace(part, target)
            return target
        except Exception as exc:  # try the next mirror
            errors.append(f"{url}: {exc}")
    raise ModelError(f"could not download '{label}':\n  " + "\n  ".join(errors))


def download(
    model_id: str,
    opener: Callable = urllib.request.urlopen,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Path:
    """Fetch a registry model (and the companion files it lists, e.g. a config.json) into its
    folder: resumable, verified, renamed when complete. Tries each URL (main, then mirrors)."""
    e = entry(model_id)
    folder_dir = host.model_dirs(e.folder)[0]
    target = safe_target(folder_dir, e.filename)
    for extra in e.extra.get("extra_files", []):
        extra_target = safe_target(folder_dir, extra["filename"])
        if not extra_target.is_file():
            _fetch(extra.get("urls", []), extra_target, extra.get("sha256", ""), opener, None, extra["filename"])
    if target.is_file() and (not e.sha256 or hash_matches(target, e)):
        return target
    return _fetch(e.urls, target, e.sha256, opener, progress and (lambda have, _t: progress(have, e.size)), model_id)


def load_state_dict(path: Path | str) -> dict:
    """Load weights safely: safetensors, or ``torch.load(weights_only=True)``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(
            f"could not load '{path.name}' safely ({exc.__class__.__name__}: {exc}). "
            "Only plain tensor checkpoints (.pth/.pt/.ckpt/.safetensors) are accepted."
        ) from exc
    return sd


def unwrap_state_dict(sd: dict, keys: tuple = ("params_ema", "params", "state_dict", "model", "net")) -> dict:
    """Strip the usual wrappers (``params_ema``, ``state_dict``…) and ``module.`` prefixes."""
    for k in keys:
        if isinstance(sd, dict) and k in sd and isinstance(sd[k], dict):
            sd = sd[k]
            break
    if any(k.startswith("module.") for k in sd):
        sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    return sd


def link_existing(src_dir: Path, link: bool = True) -> list[tuple[str, Path]]:
    """Place registry files found anywhere under ``src_dir`` (matched by file name or a known alias;
    a registry name with a folder, such as ``sam2.1-hiera-small/model.safetensors``, by its last
    parts, and its extra files along with it) into their models folders under the registry's file
    name, as symlinks (or copies). Returns (id, path) placed."""
    placed = []
    by_name: dict[str, list[tuple[ModelEntry, str]]] = {}
    for e in entries().values():
        for name in (e.filename, *e.aliases, *(x["filename"] for x in e.extra.get("extra_files", []))):
            by_name.setdefault(name, []).append((e, name))
    for p in sorted(Path(src_dir).rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(src_dir).as_posix()
        hits = [hit for name, found in by_name.items() if name == p.name or ("/" in name and (rel == name or rel.endswith("/" + name)))
                for hit in found]
        for e, name in hits:
            target = name if "/" in name and name != e.filename and name not in e.aliases else e.filename
            dest = safe_target(host.model_dirs(e.folder)[0], target)
            if dest.exists():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            if link:
                os.symlink(p.resolve(), dest)
            else:
                shutil.copy2(p, dest)
            placed.append((e.id, dest))
    return placed
