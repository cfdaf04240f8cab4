"""Print the README's node table from the node classes (category, display name, class, first
sentence of the description): `python scripts/readme_nodes.py`."""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from remaster.headless.cli import node_mappings  # noqa: E402


def first_sentence(text: str) -> str:
    text = " ".join((text or "").split()).replace("e.g.", "e\0g\0").replace("i.e.", "i\0e\0")
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    return (m.group(1) if m else text).replace("\0", ".").replace("|", "\\|")


def main() -> None:

    mappings = node_mappings()
    display = sys.modules["remaster_pack_nodes"].NODE_DISPLAY_NAME_MAPPINGS
    rows = sorted(mappings.items(), key=lambda kv: (kv[1].CATEGORY, display.get(kv[0], kv[0])))
    print("| category | node | class | what it does |")
    print("|---|---|---|---|")
    for key, cls in rows:
        print(f"| {cls.CATEGORY} | {display.get(key, key)} | `{key}` | {first_sentence(getattr(cls, 'DESCRIPTION', ''))} |")


if __name__ == "__main__":
    main()
