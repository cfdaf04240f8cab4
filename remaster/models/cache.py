"""The one cache of loaded models, shared by every stage.

Loading a model costs seconds; a workflow queued again, or two stages using the same file, should
not pay it twice. Entries are keyed by the stage's kind and what identifies the loaded object (file
path, size and modification time, device, dtype, ...); each kind keeps at most ``keep`` entries and
drops its oldest first, so a long session never holds every model it ever used."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable, Optional


def file_key(path: Path | str) -> tuple:
    """What identifies a model file's bytes cheaply: path, size, modification time."""
    st = Path(path).stat()
    return (str(path), st.st_size, st.st_mtime_ns)


class ModelCache:
    def __init__(self) -> None:
        self._kinds: dict[str, OrderedDict] = {}

    def get(self, kind: str, key: Hashable, load: Callable[[], Any], keep: int = 1) -> Any:
        """The cached object for ``(kind, key)``, loading it with ``load()`` when absent."""
        entries = self._kinds.setdefault(kind, OrderedDict())
        if key in entries:
            entries.move_to_end(key)
            return entries[key]
        value = load()  # a failed load leaves the cache as it was
        while len(entries) >= max(1, keep):
            entries.popitem(last=False)
        entries[key] = value
        return value

    def clear(self, kind: Optional[str] = None) -> None:
        if kind is None:
            self._kinds.clear()
        else:
            self._kinds.pop(kind, None)

    def __len__(self) -> int:
        return sum(len(v) for v in self._kinds.values())


MODELS = ModelCache()
