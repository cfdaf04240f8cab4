"""ComfyUI-Remaster: turn poor video into professional video, as ComfyUI nodes on a lazy frame
stream. Importing this package loads no model and opens no network connection."""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)  # so node modules can `import remaster`

if __package__:  # ComfyUI loads the folder as a package
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402
else:  # imported as a plain module, e.g. by pytest collecting a checkout folder named "ComfyUI-Remaster"
    from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

WEB_DIRECTORY = "./web/js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
